"""Hyperparameter search as pure functions: sample a round, narrow the ranges, pick the
configurations to confirm, and decide which runs successive halving keeps.

Nothing here trains or reads files; `sweep` and the engine call these with what the
results folder says, so a round's points are a function of the config and the
finished runs of the rounds before it (resuming mid-search draws the same points).

A *space* maps each searched key to a `Range`. A search is run once per group (one
grid point x case: every optimizer of a comparison gets its own search with the same
budget); round 1 is the same for every group, later rounds narrow each group's
ranges to the best `keep` fraction of its previous round.
"""

from __future__ import annotations

import json
import math
import random as pyrandom
import warnings
from dataclasses import dataclass
from typing import Any, Literal
from collections.abc import Hashable, Iterable, Mapping, Sequence

import numpy as np

Kind = Literal["log_uniform", "uniform", "int_uniform", "choice"]
KINDS: tuple[Kind, ...] = ("log_uniform", "uniform", "int_uniform", "choice")
Method = Literal["random", "sobol", "halton"]
METHODS: tuple[Method, ...] = ("random", "sobol", "halton")


@dataclass(frozen=True)
class Range:
    """One searched key: bounds (`low`, `high`, inclusive) or the values of a choice."""

    kind: Kind
    low: float = 0.0
    high: float = 0.0
    choices: tuple[Any, ...] = ()

    @classmethod
    def of(cls, declared: Any) -> Range:
        """From the config's form: `{log_uniform: [lo, hi]}`, or a `Distribution` with one field set."""
        if not isinstance(declared, Mapping):
            declared = {k: getattr(declared, k) for k in KINDS if getattr(declared, k, None) is not None}
        (kind, value), = declared.items()
        if kind == "choice":
            return cls("choice", choices=tuple(value))
        if kind not in KINDS:
            raise ValueError(f"unknown distribution {kind!r}; allowed: {', '.join(KINDS)}")
        return cls(kind, *value)

    def as_dict(self) -> dict[str, list[Any]]:
        """The config's form again, e.g. to record a round's narrowed space."""
        return {self.kind: list(self.choices) if self.kind == "choice" else [self.low, self.high]}

    # ---- the scale a range is sampled and narrowed on: log for log_uniform, linear otherwise

    def _to_scale(self, x: float) -> float:
        return math.log(x) if self.kind == "log_uniform" else float(x)

    def _from_scale(self, t: float) -> float:
        return math.exp(t) if self.kind == "log_uniform" else t

    def from_unit(self, u: float) -> Any:
        """The value at unit coordinate u in [0, 1): linear in the range's scale; a choice or
        an integer is the cell of [0, 1) split into equal parts that u falls in."""
        if self.kind == "choice":
            return self.choices[min(int(u * len(self.choices)), len(self.choices) - 1)]
        if self.kind == "int_uniform":
            n = int(self.high) - int(self.low) + 1
            return int(self.low) + min(int(u * n), n - 1)
        a, b = self._to_scale(self.low), self._to_scale(self.high)
        return float(self._from_scale(a + (b - a) * u))

    def draw(self, rng: pyrandom.Random) -> Any:
        """One pseudo-random value. Consumes `rng` exactly as random search always has
        (random.uniform / randint / choice), so the points, and so the run ids, of
        existing results folders stay the same."""
        if self.kind == "choice":
            return rng.choice(self.choices)
        if self.kind == "int_uniform":
            return rng.randint(int(self.low), int(self.high))
        return self.from_unit(rng.random())  # what rng.uniform(a, b) computes: a + (b - a) * random()

    def narrow(self, kept: Sequence[Any], keep: float) -> Range:
        """The range spanned by the kept points' values (on the range's own scale).

        A choice keeps the values that survive, in their declared order. When the kept
        values are all one number there is no span to take: the range becomes a window
        `keep` times as wide as this one (on its scale), centred on the value and moved
        inside this range, so the next round still explores around the best value instead
        of sampling one point over and over. An integer window is rounded to whole numbers.
        """
        if self.kind == "choice":
            survivors = set(map(_key, kept))
            return Range("choice", choices=tuple(c for c in self.choices if _key(c) in survivors))
        low, high = min(kept), max(kept)  # the scales are monotonic: the span is the same on either
        if low != high:
            return Range(self.kind, low, high)
        value = low
        a, b = self._to_scale(self.low), self._to_scale(self.high)
        width = keep * (b - a)
        lo = min(max(self._to_scale(value) - width / 2, a), b - width)
        low, high = self._from_scale(lo), self._from_scale(lo + width)
        if self.kind == "int_uniform":
            return Range("int_uniform", round(low), round(high))
        # exp(log(x)) can miss x by an ulp: the window holds the value and stays inside this range
        return Range(self.kind, max(min(low, value), self.low), min(max(high, value), self.high))

    def width(self) -> float:
        """Span on the range's scale (log for log_uniform); the number of values of a choice."""
        if self.kind == "choice":
            return float(len(self.choices))
        return self._to_scale(self.high) - self._to_scale(self.low)

    def contains(self, value: Any) -> bool:
        if self.kind == "choice":
            return _key(value) in set(map(_key, self.choices))
        return self.low <= value <= self.high


Space = dict[str, Range]


def space_of(declared: Mapping[str, Any]) -> Space:
    """A config's `random.space` (Distributions or their dict form) as Ranges, in its order."""
    return {key: Range.of(dist) for key, dist in declared.items()}


def _key(value: Any) -> str:
    """A hashable stand-in for a swept value (a choice may be a list, e.g. model.hidden)."""
    return json.dumps(value, sort_keys=True)


# ---------------------------------------------------------------- sampling


def _unit_points(method: Method, n: int, d: int, seed: int, round_: int) -> np.ndarray:
    """n scrambled quasi-random points in [0, 1)^d, determined by (seed, round)."""
    from scipy.stats import qmc  # here, not at the top: scipy.stats costs every `dlbench run` 0.6 s of start-up

    rng = np.random.default_rng([seed % 2**64, round_])
    engine = qmc.Sobol(d, scramble=True, rng=rng) if method == "sobol" else qmc.Halton(d, scramble=True, rng=rng)
    with warnings.catch_warnings():
        # Sobol' points are best balanced at powers of 2; any n is still a valid low-discrepancy prefix
        warnings.filterwarnings("ignore", message="The balance properties of Sobol", category=UserWarning)
        return engine.random(n)


def sample(space: Space, method: Method, n: int, seed: int, round_: int = 1) -> list[dict[str, Any]]:
    """The n points of one round, each {key: value} in the space's key order.

    `random` with round 1 draws exactly the points random search has always drawn from
    `random.seed`; later rounds and the quasi-random methods draw from a stream of
    their own per (seed, round), so every group of a round shares the same unit points.
    """
    if method not in METHODS:
        raise ValueError(f"unknown search method {method!r}; allowed: {', '.join(METHODS)}")
    keys = list(space)
    if method == "random":
        rng = pyrandom.Random(seed if round_ == 1 else f"dlbench search seed {seed} round {round_}")
        return [{k: space[k].draw(rng) for k in keys} for _ in range(n)]
    units = _unit_points(method, n, len(keys), seed, round_)
    return [{k: space[k].from_unit(float(u)) for k, u in zip(keys, row)} for row in units]


# ---------------------------------------------------------------- narrowing and selection


@dataclass(frozen=True)
class Trial:
    """One finished search run: its searched values and validation accuracy (NaN when it
    diverged or failed). Several seeds of one point are several Trials with equal values."""

    values: Mapping[str, Any]
    val_acc: float


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
        k = _key(dict(t.values))
        values.setdefault(k, dict(t.values))
        scores.setdefault(k, []).append(float(t.val_acc))
    score = {k: float(np.mean(sorted(s))) for k, s in scores.items()}
    order = sorted(score, key=lambda k: (-score[k] if not math.isnan(score[k]) else math.inf, k))
    return [(values[k], score[k]) for k in order]


def _count(keep: float, n: int) -> int:
    return max(1, math.ceil(keep * n - 1e-9))  # 1e-9: 0.3 * 10 is 3.0000000000000004 in floats


def narrow(space: Space, trials: Sequence[Trial], keep: float) -> Space:
    """The next round's space: each range narrowed to the best `keep` fraction of the
    points (ceil(keep x points), at least one) of this round, among those that trained.
    With no point that trained there is nothing to narrow to: the space stays as it is."""
    good = [(v, s) for v, s in ranked(trials) if not math.isnan(s)]
    if not good:
        return dict(space)
    best = [v for v, _ in good[:_count(keep, len(good))]]
    return {k: r.narrow([v[k] for v in best], keep) for k, r in space.items()}


def round_spaces(space: Space, history: Sequence[Sequence[Trial]], keep: float) -> list[Space]:
    """The space of every round: history[i] holds the finished trials of round i + 1,
    so the result has len(history) + 1 spaces, the last one for the next round."""
    spaces = [space]
    for trials in history:
        spaces.append(narrow(spaces[-1], trials, keep))
    return spaces


def plan_round(space: Space, history: Sequence[Sequence[Trial]], *, method: Method, trials: int, seed: int,
               keep: float) -> list[dict[str, Any]]:
    """The points of round len(history) + 1 of one group's search (history: complete rounds)."""
    return sample(round_spaces(space, history, keep)[-1], method, trials, seed, len(history) + 1)


def select_top(trials: Iterable[Trial], top: int) -> list[dict[str, Any]]:
    """The `top` best points by mean validation accuracy over their seeds (all rounds
    together), best first, to be rerun on the confirm seeds. Points that never trained
    are not confirmed."""
    return [v for v, s in ranked(trials) if not math.isnan(s)][:top]


# ---------------------------------------------------------------- pruning (successive halving)


def prune_due(at: float, every: int, end: float) -> bool:
    """Whether the evaluation at `at` prunes: a positive multiple of `every` before the end
    of training (pruning at the end would save nothing). All three in the unit of
    train.eval_every: epochs, or steps when training is counted in steps."""
    multiple = at / every
    return 0 < at < end and abs(multiple - round(multiple)) < 1e-9


def survivors(val_acc: Sequence[float], keep: float, point: Sequence[Hashable] | None = None,
              bracket: Sequence[Hashable] | None = None) -> list[int]:
    """Indices (ascending) of the runs that stay in the stack after one pruning evaluation.

    Runs are compared only within their `bracket` (one group: runs of different
    optimizers or grid points never eliminate each other), and by `point`: the seeds of
    one point stay or go together, scored by their mean validation accuracy. Each
    bracket keeps ceil(keep x its points), at least one; a NaN accuracy ranks last and
    ties go to the point that comes first in the stack.
    """
    n = len(val_acc)
    point = list(range(n)) if point is None else list(point)
    bracket = [0] * n if bracket is None else list(bracket)
    if not len(point) == len(bracket) == n:
        raise ValueError(f"val_acc, point and bracket differ in length ({n}, {len(point)}, {len(bracket)})")
    stay: set[int] = set()
    for b in dict.fromkeys(bracket):
        members: dict[Hashable, list[int]] = {}
        for i in range(n):
            if bracket[i] == b:
                members.setdefault(point[i], []).append(i)
        scored = [(float(np.mean([val_acc[i] for i in runs])), runs) for runs in members.values()]
        scored.sort(key=lambda s: -s[0] if not math.isnan(s[0]) else math.inf)
        for _, runs in scored[:_count(keep, len(scored))]:
            stay.update(runs)
    return sorted(stay)
