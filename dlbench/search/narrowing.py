"""Narrowing: each round after the first samples only the span of the best `keep` fraction
of the round before (the lecture notes' "narrow the ranges and search again")."""

from __future__ import annotations

import math
from collections.abc import Sequence

from dlbench.search.space import Space
from dlbench.search.trials import Trial, kept, ranked


def narrow(space: Space, trials: Sequence[Trial], keep: float) -> Space:
    """The next round's space: each range narrowed to the best `keep` fraction of the
    points (ceil(keep x points), at least one) of this round, among those that trained.
    With no point that trained there is nothing to narrow to: the space stays as it is."""
    good = [(v, s) for v, s in ranked(trials) if not math.isnan(s)]
    if not good:
        return dict(space)
    best = [v for v, _ in good[:kept(keep, len(good))]]
    return {k: r.narrow([v[k] for v in best], keep) for k, r in space.items()}


def round_spaces(space: Space, history: Sequence[Sequence[Trial]], keep: float) -> list[Space]:
    """The space of every round: history[i] holds the finished trials of round i + 1,
    so the result has len(history) + 1 spaces, the last one for the next round."""
    spaces = [space]
    for trials in history:
        spaces.append(narrow(spaces[-1], trials, keep))
    return spaces
