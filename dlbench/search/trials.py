"""A search's history: what each finished run tells it (`Outcome`), its trials, the points
ranked by mean validation accuracy over their seeds, and the best ones to confirm."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from collections.abc import Iterable, Mapping

import numpy as np

from dlbench.catalog.status import OK, Status
from dlbench.search.space import point_key

Curve = tuple[tuple[int, float], ...]  # (step, validation accuracy) at each evaluation


@dataclass(frozen=True)
class Outcome:
    """What a finished run tells its search, read from the results folder: its status, its
    final validation accuracy (NaN when it diverged or failed) and, for a pruned run, its
    validation accuracy at each evaluation it reached (the intermediate values that
    Optuna's samplers weigh a pruned trial by)."""

    val_acc: float
    status: Status = OK
    curve: Curve = ()


@dataclass(frozen=True)
class Trial:
    """One finished search run: its searched values and what it gave (see Outcome). Several
    seeds of one point are several Trials with equal values."""

    values: Mapping[str, Any]
    val_acc: float
    status: Status = OK
    curve: Curve = ()

    @classmethod
    def of(cls, values: Mapping[str, Any], outcome: Outcome) -> Trial:
        return cls(values, outcome.val_acc, outcome.status, outcome.curve)


def ranked(trials: Iterable[Trial]) -> list[tuple[dict[str, Any], float]]:
    """Distinct points, best first, scored by the mean validation accuracy over their seeds.

    A point with a NaN seed (diverged or failed) scores NaN and ranks after every point
    that trained: an unstable setting is not a good one. The result does not depend on
    the order the trials come in (a resumed search reads them from disk): seeds are
    averaged in sorted order and ties are broken on the points' values.
    """
    values: dict[str, dict[str, Any]] = {}
    scores: dict[str, list[float]] = {}
    for t in trials:
        k = point_key(dict(t.values))
        values.setdefault(k, dict(t.values))
        scores.setdefault(k, []).append(float(t.val_acc))
    score = {k: float(np.mean(sorted(s))) for k, s in scores.items()}
    order = sorted(score, key=lambda k: (-score[k] if not math.isnan(score[k]) else math.inf, k))
    return [(values[k], score[k]) for k in order]


def kept(keep: float, n: int) -> int:
    """How many of n points the best `keep` fraction is: ceil(keep x n), at least one."""
    return max(1, math.ceil(keep * n - 1e-9))  # 1e-9: 0.3 * 10 is 3.0000000000000004 in floats


def select_top(trials: Iterable[Trial], top: int) -> list[dict[str, Any]]:
    """The `top` best points by mean validation accuracy over their seeds (all rounds
    together), best first, to be rerun on the confirm seeds. Points that never trained
    are not confirmed."""
    return [v for v, s in ranked(trials) if not math.isnan(s)][:top]
