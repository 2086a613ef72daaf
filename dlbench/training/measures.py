"""What the engine measures on every split at each evaluation, registered against the catalog's metric
records (`Metric.measure`, dlbench/catalog/metrics.py): per chunk of samples, numbers summed per run
(float64, in a fixed order, so a run's value is the same in any stack); from the sums over the whole
split, the value. A new per-split metric is its three records and one `@measure` here.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable

import torch
from torch import Tensor

from dlbench.catalog.metrics import METRICS

ECE_BINS = 15  # equal-width confidence bins of the expected calibration error (Guo et al., 2017)


@dataclass(frozen=True)
class Measure:
    width: int  # numbers summed per run
    # (logits [runs, samples, classes], targets [runs, samples], per-sample losses [runs, samples]) -> [runs, width]
    sums: Callable[[Tensor, Tensor, Tensor], Tensor]
    value: Callable[[Tensor, int], Tensor]  # (sums over the split [runs, width], samples) -> [runs]


MEASURES: dict[str, Measure] = {}


def measure(name: str, width: int, value: Callable[[Tensor, int], Tensor] | None = None
            ) -> Callable[[Callable[[Tensor, Tensor, Tensor], Tensor]], Callable[[Tensor, Tensor, Tensor], Tensor]]:
    """Register the sums of a declared measure (value: the mean over the samples unless given)."""

    def add(sums: Callable[[Tensor, Tensor, Tensor], Tensor]) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
        if not any(m.measure == name for m in METRICS.declared()):
            raise ValueError(f"measure {name!r}: no metric of the catalog is measured by it; declare it first")
        if name in MEASURES:
            raise ValueError(f"measure {name!r} is registered already")
        MEASURES[name] = Measure(width, sums, value or (lambda s, n: s[:, 0] / n))
        return sums

    return add


def measured() -> list[tuple[str, Measure]]:
    """The measures of the catalog's per-split metrics, in the order declared (loss, acc, ...)."""
    return [(name, MEASURES[name]) for name in dict.fromkeys(name for _, _, name in METRICS.measured())]


@measure("loss", 1)
def _loss(logits: Tensor, targets: Tensor, losses: Tensor) -> Tensor:
    return losses.sum(1, dtype=torch.float64).unsqueeze(1)


@measure("acc", 1)
def _correct(logits: Tensor, targets: Tensor, losses: Tensor) -> Tensor:
    # over the classes of [runs, classes, samples]: the same indices (the first of equal maxima) as over the
    # last dimension of [runs, samples, classes], faster on a CPU (a reduction over 10 contiguous values is slow)
    return (logits.transpose(1, 2).argmax(1) == targets).sum(1, dtype=torch.float64).unsqueeze(1)


def _ece(sums: Tensor, n: int) -> Tensor:
    """sum over bins of (samples in the bin / n) |accuracy - mean confidence| = sum |correct - confidence| / n."""
    confidence, correct = sums[:, ECE_BINS:2 * ECE_BINS], sums[:, 2 * ECE_BINS:]
    return (correct - confidence).abs().sum(1) / n


@measure("ece", 3 * ECE_BINS, _ece)
def _calibration_bins(logits: Tensor, targets: Tensor, losses: Tensor) -> Tensor:
    """Per bin of the predicted class's softmax confidence, (lower, upper]: samples, summed confidence,
    correct predictions. The counts are whole numbers, exact in any order: one scatter-add each. The
    confidences are summed as a bin-by-bin mask would sum them, bit for bit: each sample's confidence
    put in its bin's row of a [runs, bins, samples] tensor of zeros, each row summed over its last
    (contiguous) dimension. The softmax runs over the classes of [runs, classes, samples], ~5x faster
    on a CPU than over rows of 10 classes (its probabilities differ from the rows' by at most an ulp
    of float64)."""
    confidence, predicted = logits.double().transpose(1, 2).contiguous().softmax(1).max(1)  # [runs, samples]
    bins = (confidence * ECE_BINS).ceil().long().clamp_(1, ECE_BINS) - 1
    spread = confidence.new_zeros(len(bins), ECE_BINS, bins.shape[1]).scatter_(1, bins.unsqueeze(1),
                                                                                confidence.unsqueeze(1))
    counts = confidence.new_zeros(len(bins), 2, ECE_BINS)
    counts[:, 0].scatter_add_(1, bins, torch.ones_like(confidence))
    counts[:, 1].scatter_add_(1, bins, (predicted == targets).double())
    return torch.cat([counts[:, 0], spread.sum(2), counts[:, 1]], 1)
