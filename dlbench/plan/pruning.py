"""The pruning plan of a search round (random.prune, successive halving inside a stack): which
runs may be stopped (`Pruning`, given to each search run by the sweep), at which evaluations
(`prune_due`), and which runs of each group stay (`survivors`). The engine only applies it:
at each evaluation it asks `pruned` which of its runs to stop."""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from dlbench.catalog.metrics import Metric
from dlbench.search.trials import kept


@dataclass(frozen=True)
class Pruning:
    """A search run that successive halving may stop (random.prune): at every `every` (in
    train.eval_every's unit) its `group` keeps the best `keep` fraction of its points."""

    every: int
    keep: float
    group: str  # one case x one grid point x one round: runs of other groups never eliminate it
    point: str  # its searched values: the seeds of one point stay or go together


def prune_due(at: float, every: int, end: float) -> bool:
    """Whether the evaluation at `at` prunes: a positive multiple of `every` before the end
    of training (pruning at the end would save nothing). All three in the unit of
    train.eval_every: epochs, or steps when training is counted in steps."""
    multiple = at / every
    return 0 < at < end and abs(multiple - round(multiple)) < 1e-9


def survivors(scores: Sequence[float], keep: float, point: Sequence[Hashable] | None = None,
              bracket: Sequence[Hashable] | None = None) -> list[int]:
    """Indices (ascending) of the runs that stay in the stack after one pruning evaluation.

    Runs are compared only within their `bracket` (one group: runs of different
    optimizers or grid points never eliminate each other), and by `point`: the seeds of
    one point stay or go together, scored by the mean of their `scores` (higher is
    better: a validation accuracy, a negated loss). Each bracket keeps ceil(keep x its
    points), at least one; a NaN score ranks last and ties go to the point that comes
    first in the stack.
    """
    n = len(scores)
    point = list(range(n)) if point is None else list(point)
    bracket = [0] * n if bracket is None else list(bracket)
    if not len(point) == len(bracket) == n:
        raise ValueError(f"scores, point and bracket differ in length ({n}, {len(point)}, {len(bracket)})")
    stay: set[int] = set()
    for b in dict.fromkeys(bracket):
        members: dict[Hashable, list[int]] = {}
        for i in range(n):
            if bracket[i] == b:
                members.setdefault(point[i], []).append(i)
        scored = [(float(np.mean([scores[i] for i in runs])), runs) for runs in members.values()]
        scored.sort(key=lambda s: -s[0] if not math.isnan(s[0]) else math.inf)
        for _, runs in scored[:kept(keep, len(scored))]:
            stay.update(runs)
    return sorted(stay)


def pruned(runs: Sequence[Pruning | None], monitors: Sequence[Metric], values: Sequence[float], at: float,
           end: float) -> list[int]:
    """Indices (ascending) of the runs still training in a stack that the evaluation at `at` stops.

    `runs`: each run's pruning plan (None: never pruned, as confirm and defaults runs); `monitors` and
    `values`: what each run is judged on (train.monitor) and its value at this evaluation; `at` and `end` in
    train.eval_every's unit (epochs, or steps when training is counted in steps). The runs of one stack share
    their plan's `every` and `keep`; runs judged on different metrics never eliminate each other."""
    candidates = [i for i, plan in enumerate(runs) if plan is not None]
    if not candidates:
        return []
    first = runs[candidates[0]]
    assert first is not None
    if not prune_due(at, first.every, end):
        return []
    plans = [runs[i] for i in candidates]
    # scored so that higher is better whatever the metric's direction (NaN stays NaN: it ranks last)
    scores = [values[i] if monitors[i].higher_is_better else -values[i] for i in candidates]
    stay = survivors(scores, first.keep, point=[p.point for p in plans if p is not None],
                     bracket=[(p.group, monitors[i].name) for p, i in zip(plans, candidates) if p is not None])
    return [i for k, i in enumerate(candidates) if k not in stay]
