"""Our samplers: a round's points drawn pseudo-randomly (`random`) or quasi-randomly
(scrambled Sobol' or Halton points, scipy.stats.qmc), each a pure function of (seed, round)."""

from __future__ import annotations

import random as pyrandom
import warnings
from typing import Any

import numpy as np

from dlbench.search.space import SAMPLED, Method, Space


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
    if method not in SAMPLED:
        raise ValueError(f"unknown sampling method {method!r}; allowed: {', '.join(SAMPLED)}")
    keys = list(space)
    if method == "random":
        rng = pyrandom.Random(seed if round_ == 1 else f"dlbench search seed {seed} round {round_}")
        return [{k: space[k].draw(rng) for k in keys} for _ in range(n)]
    units = _unit_points(method, n, len(keys), seed, round_)
    return [{k: space[k].from_unit(float(u)) for k, u in zip(keys, row)} for row in units]
