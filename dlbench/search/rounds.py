"""A round's points, whatever the method: ours sample the space narrowed by the rounds before;
Optuna's (tpe, gp) are fitted on them."""

from __future__ import annotations

from typing import Any
from collections.abc import Sequence

from dlbench.search import bayes
from dlbench.search.narrowing import round_spaces
from dlbench.search.samplers import sample
from dlbench.search.space import LEARNED, Method, Space
from dlbench.search.trials import Trial


def plan_round(space: Space, history: Sequence[Sequence[Trial]], *, method: Method, trials: int, seed: int,
               keep: float | None = None) -> list[dict[str, Any]]:
    """The points of round len(history) + 1 of one group's search (history: its complete rounds,
    each in the order its points were planned). `keep`: the narrowing of random / sobol / halton."""
    if method in LEARNED:
        return bayes.ask_round(space, history, method=method, trials=trials, seed=seed)
    if keep is None:
        raise ValueError(f"search method {method!r} narrows its ranges: it needs keep")
    return sample(round_spaces(space, history, keep)[-1], method, trials, seed, len(history) + 1)
