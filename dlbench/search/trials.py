"""A search's history: what each finished run tells it (`Outcome`), its trials, the points
ranked by the mean of the search's metric over their seeds (its group's train.monitor, in its
direction), and the best ones to confirm."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Iterable, Mapping

import numpy as np

from dlbench.catalog.metrics import METRICS, TRAINING_BEST
from dlbench.catalog.status import OK, Status
from dlbench.search.space import point_key

Curve = tuple[tuple[int, float], ...]  # (step, the search's metric) at each evaluation


@dataclass(frozen=True)
class Outcome:
    """What a finished run tells its search, read from the results folder: its status, its
    final validation metrics (none when it diverged or failed) and, for a pruned run, each
    validation metric at each evaluation it reached (the intermediate values that Optuna's
    samplers weigh a pruned trial by)."""

    final: Mapping[str, float] = field(default_factory=dict)
    status: Status = OK
    curves: Mapping[str, Curve] = field(default_factory=dict)


@dataclass(frozen=True)
class Trial:
    """One finished search run: its searched values and what it gave on the search's `metric` (see
    Outcome; NaN when it diverged or failed). Several seeds of one point are several Trials with
    equal values."""

    values: Mapping[str, Any]
    value: float
    status: Status = OK
    curve: Curve = ()
    metric: str = TRAINING_BEST

    @classmethod
    def of(cls, values: Mapping[str, Any], outcome: Outcome, metric: str = TRAINING_BEST) -> Trial:
        return cls(values, float(outcome.final.get(metric, math.nan)), outcome.status,
                   outcome.curves.get(metric, ()), metric)


def higher_is_better(trials: Iterable[Trial]) -> bool:
    """The direction of the trials' metric (one search ranks on one metric)."""
    metrics = {t.metric for t in trials} or {TRAINING_BEST}
    if len(metrics) > 1:
        raise ValueError(f"trials of one search measured on different metrics: {', '.join(sorted(metrics))}")
    return METRICS[metrics.pop()].higher_is_better


def ranked(trials: Iterable[Trial]) -> list[tuple[dict[str, Any], float]]:
    """Distinct points, best first, scored by the mean of their metric over their seeds, in its direction.

    A point with a NaN seed (diverged or failed) scores NaN and ranks after every point
    that trained: an unstable setting is not a good one. The result does not depend on
    the order the trials come in (a resumed search reads them from disk): seeds are
    averaged in sorted order and ties are broken on the points' values.
    """
    trials = list(trials)
    sign = -1.0 if higher_is_better(trials) else 1.0
    values: dict[str, dict[str, Any]] = {}
    scores: dict[str, list[float]] = {}
    for t in trials:
        k = point_key(dict(t.values))
        values.setdefault(k, dict(t.values))
        scores.setdefault(k, []).append(float(t.value))
    score = {k: float(np.mean(sorted(s))) for k, s in scores.items()}
    order = sorted(score, key=lambda k: (sign * score[k] if not math.isnan(score[k]) else math.inf, k))
    return [(values[k], score[k]) for k in order]


def kept(keep: float, n: int) -> int:
    """How many of n points the best `keep` fraction is: ceil(keep x n), at least one."""
    return max(1, math.ceil(keep * n - 1e-9))  # 1e-9: 0.3 * 10 is 3.0000000000000004 in floats


def select_top(trials: Iterable[Trial], top: int) -> list[dict[str, Any]]:
    """The `top` best points by the mean of their metric over their seeds (all rounds
    together), best first, to be rerun on the confirm seeds. Points that never trained
    are not confirmed."""
    return [v for v, s in ranked(trials) if not math.isnan(s)][:top]
