"""What a metric is, declared once: its name, label, unit and scale, the range it can take,
its direction, how it is shown, the split it is measured on and how it is computed.

The engine records the per-split metrics at every evaluation (metrics.csv, summary.json);
the store writes them, the report, figures and exports read them from here, and
`dlbench list metrics` prints them. A new metric is its record here plus its computation:
a per-split metric's `measure` registered with the engine (`dlbench.training.measures`),
or a `derive` function of the other metrics of the same evaluation (the gap).

Like scikit-learn's scorers (`greater_is_better`) and Optuna's `direction`, a metric
carries its direction once, and every ranking, best and comparison reads it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal
from collections.abc import Callable, Iterator, Mapping

SPLITS = ("train", "val", "test")
SPLIT_WORDS = {"train": "train", "val": "validation", "test": "test"}
# the report option (a flag of `dlbench report`) that shows a metric's columns; None: always shown
SHOWN_WITH = (None, "losses", "calibration")
Shown = Literal["losses", "calibration"] | None
# what the engine's best evaluation (summary.json's "best"), early stopping and pruning are chosen on unless
# train.monitor says otherwise (summary.json's "best_on" records it); a report that ranks on another metric
# finds its own best evaluation in metrics.csv
TRAINING_BEST = "val_acc"


@dataclass(frozen=True)
class Metric:
    """One metric of a run's evaluation."""

    name: str  # the column in metrics.csv and summary.json ("val_acc")
    label: str  # a table's header ("val acc %")
    words: str  # in a sentence ("validation accuracy")
    doc: str  # how it is computed, one line
    higher_is_better: bool
    possible: tuple[float, float] = (-math.inf, math.inf)  # intervals are clipped to it (96.7 ± 2.1 % is not 98.8)
    scale: float = 1.0  # 100: a fraction shown as %
    unit: str = ""  # "%" beside a scaled fraction
    digits: int | None = None  # decimals shown (after scaling); None: three significant digits of the mean
    split: str | None = None  # the split it is measured on; None: computed across splits (the gap)
    measure: str | None = None  # the engine's computation per split ("acc"); the same for the three splits
    derive: Callable[[Any], Any] | None = None  # from the other metrics of one evaluation (a mapping or a frame)
    shown_with: Shown = None  # the report flag that shows its columns (None: always)
    curve: bool = False  # a panel of the curves figure

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"

    def better(self, value: float, than: float) -> bool:
        """Whether `value` is strictly better than `than` in this metric's direction (NaN is never better, and
        nothing is better than NaN: a tie keeps the earlier)."""
        return value > than if self.higher_is_better else value < than

    def difference(self) -> str:
        """What a difference of two values is in: 'val acc (percentage points)'."""
        return self.label.removesuffix(" %") + (" (percentage points)" if self.unit == "%" else "")

    def facts(self) -> str:
        """One line for `dlbench list metrics`."""
        low, high = self.possible
        shown = f"shown with --{self.shown_with}" if self.shown_with else "always shown"
        where = f"measured on the {SPLIT_WORDS[self.split]} split" if self.split else "across splits"
        unit = f"in {self.unit} (x{self.scale:g})" if self.unit else "as it is"
        return f"{self.direction}; range [{low:g}, {high:g}]; {unit}; {where}; {shown}"


class Metrics:
    """Every metric, in the order the report's columns show them (declaration order within
    each SHOWN_WITH group)."""

    def __init__(self) -> None:
        self._records: dict[str, Metric] = {}

    def declare(self, metric: Metric) -> Metric:
        if metric.name in self._records:
            raise ValueError(f"metric {metric.name!r} is already declared")
        if metric.shown_with not in SHOWN_WITH:
            raise ValueError(f"metric {metric.name!r}: shown_with {metric.shown_with!r} is not one of {SHOWN_WITH}")
        self._records[metric.name] = metric
        return metric

    def forget(self, name: str) -> None:
        self._records.pop(name, None)

    def __getitem__(self, name: str) -> Metric:
        try:
            return self._records[name]
        except KeyError:
            raise KeyError(f"unknown metric {name!r}; allowed: {', '.join(self.names())}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._records

    def __iter__(self) -> Iterator[Metric]:
        order = {group: i for i, group in enumerate(SHOWN_WITH)}
        return iter(sorted(self._records.values(), key=lambda m: order[m.shown_with]))

    def declared(self) -> list[Metric]:
        """In the order declared (a figure's panels: the loss, then the accuracies, split by split)."""
        return list(self._records.values())

    def names(self) -> list[str]:
        return [m.name for m in self]

    def measured(self) -> list[tuple[str, str, str]]:
        """(name, split, measure) of the metrics the engine measures, split by split (metrics.csv's order)."""
        declared = list(self._records.values())
        return [(m.name, s, m.measure) for s in SPLITS for m in declared if m.split == s and m.measure]

    def derived(self) -> list[tuple[str, Callable[[Any], Any]]]:
        """(name, derive) of the metrics computed from the others of an evaluation."""
        return [(m.name, m.derive) for m in self._records.values() if m.derive is not None]

    def measured_words(self, measure: str) -> str:
        """A measure in words, as its metrics say it without their split ('calibration error')."""
        m = next(m for m in self._records.values() if m.measure == measure)
        return m.words.removeprefix(SPLIT_WORDS[m.split or "train"]).strip()

    def on_split(self, metric: str, split: str) -> Metric | None:
        """The same measure on another split (val_acc for test_acc); None for a metric across splits."""
        m = self[metric]
        return next((o for o in self._records.values() if o.measure is not None and o.measure == m.measure
                     and o.split == split), None)

    def selection(self, metric: str) -> str:
        """The metric a best is chosen on when comparing on `metric`: its validation split's where
        there is one (never the test set), else the metric itself."""
        val = self.on_split(metric, "val")
        return val.name if val is not None else metric

    def with_derived(self, row: Mapping[str, float]) -> dict[str, float]:
        """One evaluation's metrics with the derived ones computed (NaN where an input is missing)."""
        out = dict(row)
        for name, derive in self.derived():
            try:
                out[name] = float(derive(out))
            except (KeyError, TypeError):
                out[name] = math.nan
        return out


METRICS = Metrics()


def _per_split(measure: str, label: str, words: str, doc: str, *, higher_is_better: bool,
               possible: tuple[float, float], percent: bool = False, shown_with: Shown = None,
               curves: tuple[str, ...] = ()) -> None:
    """The three metrics of one measure: train_X, val_X, test_X."""
    for split in SPLITS:
        METRICS.declare(Metric(
            f"{split}_{measure}", f"{split} {label}" + (" %" if percent else ""), f"{SPLIT_WORDS[split]} {words}",
            f"{doc}, on the {SPLIT_WORDS[split]} split", higher_is_better, possible,
            scale=100.0 if percent else 1.0, unit="%" if percent else "", digits=1 if percent else None,
            split=split, measure=measure, shown_with=shown_with, curve=split in curves))


_per_split("loss", "loss", "loss", "the config's loss averaged over the samples in eval mode (no label smoothing, "
           "no weight penalty)", higher_is_better=False, possible=(0.0, math.inf), shown_with="losses",
           curves=("train",))
_per_split("acc", "acc", "accuracy", "the fraction of samples whose highest logit is the label",
           higher_is_better=True, possible=(0.0, 1.0), percent=True, curves=("train", "val", "test"))
METRICS.declare(Metric(
    "gap", "gap (train-test) %", "the train-test gap", "train accuracy minus test accuracy (overfitting)",
    higher_is_better=False, possible=(-1.0, 1.0), scale=100.0, unit="%", digits=1,
    derive=lambda m: m["train_acc"] - m["test_acc"]))
_per_split("ece", "ECE", "calibration error", "expected calibration error: the predicted class's softmax "
           "confidence in 15 equal-width bins, |accuracy - mean confidence| of each bin weighted by its share of "
           "the samples", higher_is_better=False, possible=(0.0, 1.0), percent=True, shown_with="calibration")
