"""A search space: each searched key's `Range` (log-uniform, uniform, integer or a choice),
read from the config's `random.space` and mapped onto the unit interval the samplers draw in."""

from __future__ import annotations

import json
import math
import random as pyrandom
from dataclasses import dataclass
from typing import Any, Literal
from collections.abc import Mapping, Sequence

Kind = Literal["log_uniform", "uniform", "int_uniform", "choice"]
KINDS: tuple[Kind, ...] = ("log_uniform", "uniform", "int_uniform", "choice")
Method = Literal["random", "sobol", "halton", "tpe", "gp"]
SAMPLED: tuple[Method, ...] = ("random", "sobol", "halton")  # ours: drawn, then narrowed round by round
LEARNED: tuple[Method, ...] = ("tpe", "gp")  # Optuna's: fitted on the trials of the rounds before
METHODS: tuple[Method, ...] = (*SAMPLED, *LEARNED)


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
            survivors = set(map(point_key, kept))
            return Range("choice", choices=tuple(c for c in self.choices if point_key(c) in survivors))
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
            return point_key(value) in set(map(point_key, self.choices))
        return self.low <= value <= self.high


Space = dict[str, Range]


def space_of(declared: Mapping[str, Any]) -> Space:
    """A config's `random.space` (Distributions or their dict form) as Ranges, in its order."""
    return {key: Range.of(dist) for key, dist in declared.items()}


def point_key(value: Any) -> str:
    """A hashable stand-in for a swept value (a choice may be a list, e.g. model.hidden)."""
    return json.dumps(value, sort_keys=True)
