"""random: method / rounds / keep / prune and confirm: (issue 13) — valid configs and one-line refusals."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from dlbench.config import schema
from dlbench.config.schema import ConfigError

BASE: dict[str, Any] = {"train": {"epochs": 10, "seeds": [0, 1]},
                        "random": {"trials": 8, "space": {"optimizer.lr": {"log_uniform": [1e-4, 1.0]}}}}


def validate(delta: dict[str, Any]) -> schema.Config:
    return schema.validate(schema.merge(copy.deepcopy(BASE), delta))


def test_defaults_are_one_round_of_random_search_without_pruning_or_confirm() -> None:
    cfg = validate({})
    assert (cfg.random.method, cfg.random.rounds, cfg.random.keep, cfg.random.prune) == ("random", 1, 0.25, None)
    assert cfg.confirm is None


def test_a_full_search_section_is_read() -> None:
    cfg = validate({"random": {"method": "sobol", "rounds": 3, "keep": 0.3, "prune": {"every": 2}},
                    "confirm": {"top": 2, "seeds": [5, 6]}})
    assert (cfg.random.method, cfg.random.rounds, cfg.random.keep) == ("sobol", 3, 0.3)
    assert (cfg.random.prune.every, cfg.random.prune.keep) == (2, 0.5)
    assert (cfg.confirm.top, cfg.confirm.seeds, cfg.confirm.defaults) == (2, [5, 6], False)
    assert validate({"confirm": {"seeds": [5], "defaults": True}}).confirm.defaults is True


def test_pruning_every_steps_when_training_is_counted_in_steps() -> None:
    cfg = validate({"random": {"prune": {"every": 100}}, "train": {"epochs": None, "steps": 400, "eval_every": 50}})
    assert cfg.random.prune.every == 100


@pytest.mark.parametrize("delta, message", [
    ({"random": {"method": "grid"}}, "random.method: 'grid' is invalid: allowed: random, sobol, halton, tpe, gp"),
    ({"random": {"keep": 0.3}}, "random.keep: 0.3 is invalid: it narrows the ranges between rounds, and "
                                "random.rounds is 1"),
    ({"random": {"rounds": 2, "keep": 0}}, "random.keep: 0 is invalid: must be greater than 0"),
    ({"random": {"rounds": 0}}, "random.rounds: 0 is invalid: must be greater than 0"),
    ({"random": {"prune": {"every": 2, "keep": 1}}}, "random.prune.keep: 1 is invalid: must be less than 1"),
    ({"random": {"prune": {"every": 2, "eta": 3}}}, "random.prune.eta: unknown key; allowed keys here: every, keep"),
    ({"random": {"prune": {"every": 10}}}, "random.prune.every: 10 is invalid: runs train 10 epochs, so it would "
                                           "never prune"),
    ({"random": {"prune": {"every": 3}}, "train": {"eval_every": 2}},
     "random.prune.every: 3 is invalid: pruning decides at evaluations, so it must be a multiple of "
     "train.eval_every (2 epochs)"),
    ({"confirm": {"seeds": [1, 5]}}, "confirm.seeds: [1, 5] is invalid: seeds [1] are train.seeds of the search"),
    ({"confirm": {"top": 20}}, "confirm.top: 20 is invalid: more than the 8 configurations the search tries"),
    ({"confirm": {"seeds": [5, 5]}}, "confirm.seeds: [5, 5] is invalid: seeds must be distinct"),
    ({"confirm": {"bogus": 1}}, "confirm.bogus: unknown key; allowed keys here: top, seeds, defaults"),
    ({"random": None, "confirm": {"top": 1}}, "confirm: it reruns the best configurations of a search, and there "
                                              "is no random: section"),
])
def test_bad_search_settings_are_refused_in_one_line(delta: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        validate(delta)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_confirm_is_not_part_of_a_runs_identity() -> None:
    from dlbench.plan import sweep

    plain, confirmed = validate({}), validate({"confirm": {"top": 1, "seeds": [9]}})
    assert sweep.run_id(plain, 0) == sweep.run_id(confirmed, 0)
