"""Which searched setting mattered: each key's share of the variance of the validation accuracy,
from Optuna's importance evaluators, on points drawn without bias (a search's first round).

fANOVA (a random forest fitted to the points, its variance decomposed by key) gives each key's
main effect as a fraction of the total variance; what the keys leave is their interactions and
the noise. Its forest is random: it is fitted with several seeds, and the spread over them is
reported with the mean (it is the forest's spread, not the round's: a round too small for its
keys gives confident noise, so such a round is refused, `needed`). Past `PED_ANOVA_FROM`
points PED-ANOVA (far faster; how much the best tenth's distribution of each key differs from
the whole round's) takes over, normalized to sum to one: a share of importance, not of
variance. Optuna is imported inside the functions.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any
from collections.abc import Mapping, Sequence

import numpy as np

from dlbench.search.bayes import distributions, encode
from dlbench.search.space import Space

# below 8 points a key (16 at least) a forest over uniform points hands a key that does nothing a fifth
# of the variance (measured: tests/test_search_bayes.py), and the spread over forest seeds does not show it
MIN_PER_KEY = 8
MIN_POINTS = 16
PED_ANOVA_FROM = 300
SEEDS = 5


class TooFew(ValueError):
    """The round has too few points for the evaluator: its numbers would be noise."""


@dataclass(frozen=True)
class Importance:
    evaluator: str  # "fANOVA" or "PED-ANOVA"
    points: int
    share: dict[str, float]  # key -> mean over the evaluator's seeds, in the space's order
    spread: dict[str, float]  # key -> std over the seeds (0 for PED-ANOVA, which is not random)

    @property
    def of_variance(self) -> bool:
        """fANOVA's shares are of the variance (the rest: interactions and noise); PED-ANOVA's sum to one."""
        return self.evaluator == "fANOVA"


def needed(keys: int) -> int:
    """The fewest points importance is computed from, for a space of `keys` keys."""
    return max(MIN_POINTS, MIN_PER_KEY * keys)


def importance(space: Space, points: Sequence[Mapping[str, Any]], values: Sequence[float],
               seeds: int = SEEDS) -> Importance:
    """Each key's importance for `values` (one per point; finite) over the `points` of `space`."""
    if len(points) != len(values):
        raise ValueError(f"{len(points)} points and {len(values)} values")
    if len(points) < needed(len(space)):
        raise TooFew(f"{len(points)} points for {len(space)} searched key{'s' * (len(space) != 1)}; importance "
                     f"needs at least {needed(len(space))} ({MIN_PER_KEY} a key, {MIN_POINTS} at least)")
    if not all(math.isfinite(v) for v in values):
        raise ValueError("importance needs a finite value for every point")
    import optuna
    from optuna.exceptions import ExperimentalWarning
    from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator, get_param_importances
    from optuna.trial import create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = distributions(space)
    study = optuna.create_study(direction="maximize")
    study.add_trials([create_trial(params=encode(space, p), distributions=dists, value=float(v))
                      for p, v in zip(points, values)])
    keys = list(space)
    if float(np.ptp(values)) == 0.0:  # nothing varies: nothing to attribute
        return Importance("fANOVA", len(points), dict.fromkeys(keys, 0.0), dict.fromkeys(keys, 0.0))
    if len(points) >= PED_ANOVA_FROM:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            found = get_param_importances(study, evaluator=PedAnovaImportanceEvaluator(), params=keys,
                                          normalize=True)
        return Importance("PED-ANOVA", len(points), {k: float(found[k]) for k in keys}, dict.fromkeys(keys, 0.0))
    with warnings.catch_warnings():  # normalize= is marked experimental; False is fANOVA's own fractions
        warnings.simplefilter("ignore", ExperimentalWarning)
        runs = [get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=s), params=keys,
                                      normalize=False) for s in range(seeds)]
    return Importance("fANOVA", len(points), {k: float(np.mean([r[k] for r in runs])) for k in keys},
                      {k: float(np.std([r[k] for r in runs], ddof=1)) if seeds > 1 else 0.0 for k in keys})
