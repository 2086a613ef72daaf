"""TPE and GP rounds through Optuna's samplers (`random.method: tpe | gp`), asked and told.

A round is asked all at once: `trials` points from one sampler, each asked while the ones
before it are still running, so TPE's constant liar spreads them over the space (the GP
sampler's batch acquisition does the same with the running points). The sampler is
fitted on the finished trials of the group's earlier rounds (round 1 is its random
start-up), told honestly on the search's metric (the group's train.monitor, in its direction):
a pruned point as pruned, with its metric at each evaluation it reached; a diverged one as the
worst value the metric can take (accuracy 0, an infinite loss: a failure would be ignored, and
the sampler would keep proposing the lr that diverges); one that crashed as failed (an error
says nothing about the point).

Nothing is kept between calls: the study is rebuilt in memory from the history, in the
order the rounds planned their points, with a sampler seeded by (seed, round). A round's
points are so a function of the config and the finished runs before it, and a resumed
search draws the same ones. Optuna is imported here, inside the functions, only when a
search asks for it: `dlbench --help`, `list` and `report` start without it.
"""

from __future__ import annotations

import copy
import json
import math
import warnings
from typing import TYPE_CHECKING, Any
from collections.abc import Iterator, Sequence

import numpy as np

from dlbench.catalog.metrics import METRICS
from dlbench.catalog.status import DIVERGED, FAILED, PRUNED
from dlbench.search.space import LEARNED, Method, Space, point_key
from dlbench.search.trials import Curve, Trial, higher_is_better

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.samplers import BaseSampler
    from optuna.trial import FrozenTrial

WORST = 0.0  # the validation accuracy a diverged point is told: nothing trains worse


def worst(metric: str) -> float:
    """What a diverged point is told: the worst value the metric can take (WORST for an accuracy)."""
    low, high = METRICS[metric].possible
    return low if METRICS[metric].higher_is_better else high


def _optuna() -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created in memory" per round
    return optuna


def distributions(space: Space) -> dict[str, BaseDistribution]:
    """The space as Optuna's distributions. A choice is sampled by index: its values may be lists
    (model.hidden), which Optuna's categories cannot hold."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, BaseDistribution] = {}
    for key, r in space.items():
        try:
            if r.kind == "choice":
                out[key] = CategoricalDistribution(tuple(range(len(r.choices))))
            elif r.kind == "int_uniform":
                out[key] = IntDistribution(int(r.low), int(r.high))
            else:
                out[key] = FloatDistribution(float(r.low), float(r.high), log=r.kind == "log_uniform")
        except ValueError as e:
            raise ValueError(f"{key}: Optuna cannot sample {r.as_dict()}: {e}") from None
    return out


def encode(space: Space, values: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, r in space.items():
        if r.kind == "choice":
            out[key] = [point_key(c) for c in r.choices].index(point_key(values[key]))
        else:
            out[key] = values[key]
    return out


def _decode(space: Space, params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, r in space.items():
        value = params[key]
        out[key] = r.choices[value] if r.kind == "choice" else int(value) if r.kind == "int_uniform" else float(value)
    return out


def _mean_curve(curves: Sequence[Curve]) -> dict[int, float]:
    """The seeds' mean metric at each step they all reached (they are pruned together)."""
    steps = set.intersection(*(set(s for s, _ in c) for c in curves)) if curves else set()
    return {s: float(np.mean([dict(c)[s] for c in curves])) for s in sorted(steps)}


def told(space: Space, trials: Sequence[Trial]) -> Iterator[FrozenTrial]:
    """One finished Optuna trial per point (its seeds together), in the order the points come."""
    from optuna.trial import TrialState, create_trial

    dists = distributions(space)
    points: dict[str, list[Trial]] = {}
    for t in trials:
        points.setdefault(point_key(dict(t.values)), []).append(t)
    for seeds in points.values():
        params = encode(space, seeds[0].values)
        statuses = {t.status for t in seeds}
        value = float(np.mean(sorted(t.value for t in seeds)))
        if DIVERGED in statuses:
            yield create_trial(params=params, distributions=dists, value=worst(seeds[0].metric))
        elif FAILED in statuses or math.isnan(value):
            yield create_trial(params=params, distributions=dists, state=TrialState.FAIL)
        elif PRUNED in statuses:
            yield create_trial(params=params, distributions=dists, state=TrialState.PRUNED,
                               intermediate_values=_mean_curve([t.curve for t in seeds]))
        else:
            yield create_trial(params=params, distributions=dists, value=value)


def round_seed(seed: int, round_: int) -> int:
    """The sampler's seed for one round (numpy's seeds are below 2**32)."""
    return int(np.random.SeedSequence([seed % 2**64, round_]).generate_state(1)[0])


def sampler(method: Method, seed: int) -> BaseSampler:
    """Optuna's sampler for `method`. It draws at random until a trial has finished: round 1 (asked
    before any has) is its start-up, whatever its size, and every later round is fitted."""
    optuna = _optuna()
    if method == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=1, multivariate=True, constant_liar=True)
    if method == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=1)
    raise ValueError(f"unknown learned search method {method!r}; allowed: {', '.join(LEARNED)}")


def ask_round(space: Space, history: Sequence[Sequence[Trial]], *, method: Method, trials: int,
              seed: int) -> list[dict[str, Any]]:
    """The `trials` points of round len(history) + 1: the sampler (round 1: its start-up) told
    every finished trial of the rounds before, in their planned order, then asked for a round."""
    key = json.dumps([method, trials, seed, {k: r.as_dict() for k, r in space.items()},
                      [[[t.values, t.value, t.status, t.curve, t.metric] for t in r] for r in history]],
                     sort_keys=True, default=str)
    if key not in _ASKED:  # a sweep plans its rounds again after each stage: a GP round takes seconds
        _ASKED[key] = _ask(space, history, method=method, trials=trials, seed=seed)
    return copy.deepcopy(_ASKED[key])


# the rounds asked in this process, by everything they are a function of (a cache, never a source:
# a resumed search in a new process asks again and gets the same points)
_ASKED: dict[str, list[dict[str, Any]]] = {}


def _ask(space: Space, history: Sequence[Sequence[Trial]], *, method: Method, trials: int,
         seed: int) -> list[dict[str, Any]]:
    optuna = _optuna()
    round_ = len(history) + 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # a diverged point's infinite loss: the GP sampler fits it as the worst finite value, as meant
        warnings.filterwarnings("ignore", "Clip non-finite values", UserWarning)
        direction = "maximize" if higher_is_better(t for r in history for t in r) else "minimize"
        study = optuna.create_study(direction=direction, sampler=sampler(method, round_seed(seed, round_)))
        for earlier in history:
            study.add_trials(list(told(space, earlier)))
        dists = distributions(space)
        return [_decode(space, study.ask(dists).params) for _ in range(trials)]
