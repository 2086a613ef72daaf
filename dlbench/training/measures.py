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
    return (logits.argmax(-1) == targets).sum(1, dtype=torch.float64).unsqueeze(1)


def _ece(sums: Tensor, n: int) -> Tensor:
    """sum over bins of (samples in the bin / n) |accuracy - mean confidence| = sum |correct - confidence| / n."""
    confidence, correct = sums[:, ECE_BINS:2 * ECE_BINS], sums[:, 2 * ECE_BINS:]
    return (correct - confidence).abs().sum(1) / n


@measure("ece", 3 * ECE_BINS, _ece)
def _calibration_bins(logits: Tensor, targets: Tensor, losses: Tensor) -> Tensor:
    """Per bin of the predicted class's softmax confidence, (lower, upper]: samples, summed confidence,
    correct predictions. One bin at a time: a [runs, samples] mask, never a [runs, samples, bins] tensor."""
    confidence, predicted = logits.double().softmax(-1).max(-1)
    correct = (predicted == targets).double()
    bins = (confidence * ECE_BINS).ceil().long().clamp_(1, ECE_BINS) - 1
    out = torch.empty(logits.shape[0], 3, ECE_BINS, dtype=torch.float64, device=logits.device)
    for b in range(ECE_BINS):
        inside = (bins == b).double()
        out[:, 0, b] = inside.sum(1)
        out[:, 1, b] = (confidence * inside).sum(1)
        out[:, 2, b] = (correct * inside).sum(1)
    return out.view(logits.shape[0], 3 * ECE_BINS)
