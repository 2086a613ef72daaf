"""random.method: tpe / gp (issue 28): Optuna's samplers asked a round at a time, told honestly,
reproducible and resumable from the folder; end to end with pruning."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import pytest
from optuna.trial import TrialState

from dlbench import search
from dlbench.search import Trial, bayes
from sweep_util import dlbench, one_thread, run_dirs, summary, tiny_config, write_config  # noqa: F401

SPACE = search.space_of({"lr": {"log_uniform": [1e-5, 1.0]}, "momentum": {"uniform": [0.0, 0.99]},
                         "width": {"int_uniform": [1, 8]}, "hidden": {"choice": [[10], [20, 20], [40]]}})


def score(p: dict[str, Any]) -> float:
    """Best at lr = 1e-2 and hidden [20, 20]; momentum and width do not matter."""
    return 1.0 - abs(math.log10(p["lr"]) + 2) / 5 - 0.2 * (p["hidden"] != [20, 20])


def rounds(method: search.Method, n: int, trials: int, seed: int = 0) -> list[list[Trial]]:
    history: list[list[Trial]] = []
    for _ in range(n):
        points = search.plan_round(SPACE, history, method=method, trials=trials, seed=seed)
        history.append([Trial(p, score(p)) for p in points])
    return history


def fresh(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """As a new process would: nothing asked before."""
    bayes._ASKED.clear()
    return fn(*args, **kwargs)


@pytest.mark.parametrize("method", search.LEARNED)
def test_points_are_in_the_space_and_a_function_of_seed_and_history(method: search.Method) -> None:
    trials = 6 if method == "tpe" else 3  # GP fits take seconds on a loaded machine
    history = fresh(rounds, method, 2, trials)
    for p in (t.values for r in history for t in r):
        assert 1e-5 <= p["lr"] <= 1.0 and 0.0 <= p["momentum"] <= 0.99
        assert isinstance(p["width"], int) and 1 <= p["width"] <= 8
        assert p["hidden"] in ([10], [20, 20], [40])
    assert len({search.point_key(t.values) for r in history for t in r}) == 2 * trials
    assert fresh(rounds, method, 2, trials) == history  # same seed: same points, in a new process too
    assert fresh(rounds, method, 1, trials, seed=1) != history[:1]
    # resumed after round 1: the history rebuilt from the folder gives round 2 again
    assert [dict(t.values) for t in history[1]] == fresh(search.plan_round, SPACE, history[:1], method=method,
                                                         trials=trials, seed=0)


def test_tpe_learns_where_the_good_points_are() -> None:
    history = rounds("tpe", 4, 16)
    first, last = ([score(dict(t.values)) for t in r] for r in (history[0], history[-1]))
    assert sorted(last)[8] > sorted(first)[8] + 0.1  # the median point of round 4 beats round 1's
    assert sum(t.values["hidden"] == [20, 20] for t in history[-1]) > 16 / 3


def test_the_sampler_is_told_every_trial_honestly() -> None:
    point = {"lr": 1e-3, "momentum": 0.5, "width": 2, "hidden": [20, 20]}
    other, third, fourth = ({**point, "width": w} for w in (3, 4, 5))
    trials = [Trial(point, 0.6), Trial(point, 0.8),  # two seeds: one trial, their mean
              Trial(other, math.nan, "diverged"), Trial(third, math.nan, "failed"),
              Trial(fourth, 0.3, "pruned", ((4, 0.2), (8, 0.3))), Trial(fourth, 0.5, "pruned", ((4, 0.4), (8, 0.5)))]
    told = list(bayes.told(SPACE, trials))
    assert [t.state for t in told] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED]
    assert told[0].value == pytest.approx(0.7) and told[0].params["hidden"] == 1  # a choice by its index
    assert told[1].value == bayes.WORST  # diverged: the worst accuracy, not a failure the sampler would skip
    assert told[3].intermediate_values == pytest.approx({4: 0.3, 8: 0.4})


def test_keep_and_a_single_round_are_refused_for_learned_methods() -> None:
    from dlbench.config import schema

    base = {"random": {"method": "tpe", "space": {"optimizer.lr": {"log_uniform": [1e-4, 1.0]}}}}
    assert schema.validate(base).random.rounds == 4
    with pytest.raises(schema.ConfigError, match=r"^random.keep: 0.5 is invalid: search method 'tpe' does not read "
                                                 r"it \(it reads trials, rounds, prune, seed, space\)$"):
        schema.validate({"random": {**base["random"], "keep": 0.5}})
    with pytest.raises(schema.ConfigError, match=r"^random.rounds: 1 is invalid: method gp learns"):
        schema.validate({"random": {**base["random"], "method": "gp", "rounds": 1}})


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> tuple[Path, Path, dict[str, dict]]:
    """3 rounds of 4 TPE points over lr and label smoothing, pruned at step 4 and 8 of 12."""
    tmp = tmp_path_factory.mktemp("tpe")
    cfg = tiny_config(data_root, random={"method": "tpe", "trials": 4, "rounds": 3, "seed": 2,
                                         "prune": {"every": 4, "keep": 0.5},
                                         "space": {"optimizer.lr": {"log_uniform": [1e-3, 1.0]},
                                                   "regularization.label_smoothing": {"choice": [0.0, 0.1]}}})
    cfg["data"]["val_size"] = 0.2
    path = write_config(tmp / "c.yaml", cfg)
    result = dlbench("run", path, "--out", tmp / "out")
    assert result.exit_code == 0, result.output
    root = tmp / "out" / "tiny"
    return path, root, {rid: summary(d) for rid, d in run_dirs(root).items()}


def test_every_round_trains_as_pruned_stacks(searched: tuple[Path, Path, dict[str, dict]]) -> None:
    _, _, runs = searched
    per_round = [[s for s in runs.values() if s["params"]["round"] == r] for r in (1, 2, 3)]
    assert [len(r) for r in per_round] == [4, 4, 4]
    for r in per_round:
        assert sum(s["status"] == "pruned" for s in r) == 3, [(s["status"], s["steps"]) for s in r]


@pytest.mark.parametrize("after", [1, 2])
def test_a_search_resumed_after_any_round_draws_the_same_points(searched: tuple[Path, Path, dict[str, dict]],
                                                                tmp_path: Path, after: int) -> None:
    path, root, runs = searched
    copy = tmp_path / "out" / "tiny"
    shutil.copytree(root, copy)
    for rid, s in runs.items():
        if s["params"]["round"] > after:
            shutil.rmtree(copy / "runs" / rid)
    bayes._ASKED.clear()  # nothing from the first run's process: the history comes from the folder
    result = dlbench("run", path, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    resumed = {rid: summary(d) for rid, d in run_dirs(copy).items()}
    assert set(resumed) == set(runs)
    for rid, s in runs.items():  # and trains them to the same numbers
        assert (resumed[rid]["status"], resumed[rid]["final"]["val_acc"]) == (s["status"], s["final"]["val_acc"])


# ---------------------------------------------------------------- importance (Optuna's evaluators)


def test_importance_finds_the_key_that_matters_and_says_when_it_cannot() -> None:
    from dlbench.search import importance as imp

    points = search.sample(SPACE, "random", 400, seed=0)
    values = [score(p) for p in points]  # lr and hidden matter; momentum and width do not
    small = imp.importance(SPACE, points[:64], values[:64])  # 16 a key
    assert small.evaluator == "fANOVA" and small.of_variance and small.points == 64
    assert min(small.share["lr"], small.share["hidden"]) > max(small.share["momentum"], small.share["width"])
    assert sum(small.share.values()) <= 1 + 1e-9 and all(s >= 0 for s in small.spread.values())
    large = imp.importance(SPACE, points, values)  # past 300 points: PED-ANOVA, shares of one
    assert large.evaluator == "PED-ANOVA" and sum(large.share.values()) == pytest.approx(1)
    assert large.share["lr"] > max(large.share["momentum"], large.share["width"])
    # 16 points for 4 keys: width (no effect) got 28 % of the variance, as much as lr: refused, not shown
    with pytest.raises(imp.TooFew, match="^31 points for 4 searched keys; importance needs at least 32"):
        imp.importance(SPACE, points[:31], values[:31])
