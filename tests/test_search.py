"""Search rounds, quasi-random points, narrowing, confirm selection and pruning (dlbench.search)."""

from __future__ import annotations

import math
import random as pyrandom
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import qmc

from dlbench.config import vocabulary
from dlbench import search
from dlbench.plan import pruning, sweep
from dlbench.config import schema
from dlbench.search import Range, Trial

ROOT = Path(__file__).resolve().parents[1]
SPACE = search.space_of({"optimizer.lr": {"log_uniform": [1e-6, 1e-2]},
                         "optimizer.weight_decay": {"uniform": [0.0, 0.1]},
                         "model.hidden": {"choice": [[10], [20, 20], [30]]},
                         "train.batch_size": {"int_uniform": [16, 64]}})


def unit_space(d: int) -> search.Space:
    """d uniform [0, 1] ranges: the sampled values are the unit points themselves."""
    return {f"k{i}": Range("uniform", 0.0, 1.0) for i in range(d)}


def as_array(points: list[dict]) -> np.ndarray:
    return np.array([list(p.values()) for p in points])


# ---------------------------------------------------------------- sampling


def test_random_round_one_draws_the_points_sweep_always_drew() -> None:
    """Old results folders keep their run ids: same seed, same points as sweep.points."""
    cfg, _, _ = vocabulary.load(ROOT / "configs" / "random_search.yaml")
    declared = {**cfg.random.space, "model.hidden": schema.Distribution(choice=[[10], [20, 20]]),
                "train.batch_size": schema.Distribution(int_uniform=[10, 50]),
                "optimizer.momentum": schema.Distribution(uniform=[0.5, 0.99])}
    cfg = cfg.model_copy(update={"random": cfg.random.model_copy(update={"space": declared, "seed": 7})})
    rng = pyrandom.Random(7)  # what sweep._sample drew before search.py existed, written out
    expected = [{"optimizer.lr": math.exp(rng.uniform(math.log(1e-6), math.log(1e-2))),
                 "optimizer.weight_decay": math.exp(rng.uniform(math.log(1e-8), math.log(1e-4))),
                 "model.hidden": rng.choice([[10], [20, 20]]), "train.batch_size": rng.randint(10, 50),
                 "optimizer.momentum": rng.uniform(0.5, 0.99)} for _ in range(cfg.random.trials)]
    assert sweep.points(cfg) == expected
    assert search.sample(search.space_of(declared), "random", cfg.random.trials, 7) == expected


@pytest.mark.parametrize("method", ["sobol", "halton", "random"])
def test_points_are_in_range_and_determined_by_seed_and_round(method: search.Method) -> None:
    points = search.sample(SPACE, method, 16, seed=3, round_=2)
    assert len(points) == 16 and all(list(p) == list(SPACE) for p in points)
    for p in points:
        for key, r in SPACE.items():
            assert r.contains(p[key]), (key, p[key])
        assert isinstance(p["train.batch_size"], int)
    assert search.sample(SPACE, method, 16, seed=3, round_=2) == points
    assert search.sample(SPACE, method, 16, seed=4, round_=2) != points
    assert search.sample(SPACE, method, 16, seed=3, round_=3) != points


@pytest.mark.parametrize("method", ["sobol", "halton"])
def test_quasi_random_points_are_better_spread_than_random(method: search.Method) -> None:
    n, d = 64, 3
    quasi = [qmc.discrepancy(as_array(search.sample(unit_space(d), method, n, seed))) for seed in range(5)]
    plain = [qmc.discrepancy(as_array(search.sample(unit_space(d), "random", n, seed))) for seed in range(5)]
    assert max(quasi) < min(plain)


def test_sobol_maps_each_kind_through_its_scale() -> None:
    """Scrambled Sobol' points at a power of 2 are balanced: exactly half of them in each half
    of every coordinate, so the log range splits at its geometric middle and a choice or an
    integer range gets each value equally often."""
    space = search.space_of({"lr": {"log_uniform": [1e-6, 1e-2]}, "act": {"choice": ["relu", "tanh", "gelu", "elu"]},
                             "width": {"int_uniform": [1, 4]}, "p": {"uniform": [0.2, 0.4]}})
    points = search.sample(space, "sobol", 16, seed=0)
    assert sum(p["lr"] < 1e-4 for p in points) == 8  # 1e-4: the middle of [1e-6, 1e-2] on a log scale
    assert sum(p["p"] < 0.3 for p in points) == 8
    assert sorted(p["act"] for p in points) == sorted(["relu", "tanh", "gelu", "elu"] * 4)
    assert sorted(p["width"] for p in points) == sorted([1, 2, 3, 4] * 4)


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown sampling method .grid.; allowed: random, sobol, halton"):
        search.sample(SPACE, "grid", 4, 0)  # type: ignore[arg-type]


def test_range_round_trips_the_config_form() -> None:
    for r in SPACE.values():
        assert Range.of(r.as_dict()) == r
    assert Range.of(schema.Distribution(log_uniform=[1e-3, 1e-1])) == Range("log_uniform", 1e-3, 1e-1)


# ---------------------------------------------------------------- narrowing


def peaked(point: dict, seed: int = 0) -> float:
    """A validation accuracy with its peak at lr = 1e-3 (log scale) and weight decay 0.02, plus seed noise."""
    lr_term = (math.log10(point["optimizer.lr"]) + 3) ** 2 / 4
    wd_term = ((point["optimizer.weight_decay"] - 0.02) / 0.1) ** 2
    return 0.9 - 0.5 * (lr_term + wd_term) + 0.01 * math.sin(7 * seed + 1000 * point["optimizer.lr"])


@pytest.mark.parametrize("method", ["sobol", "halton", "random"])
def test_rounds_narrow_around_the_best_point(method: search.Method) -> None:
    space = {k: SPACE[k] for k in ("optimizer.lr", "optimizer.weight_decay")}
    history: list[list[Trial]] = []
    for _ in range(3):
        points = search.plan_round(space, history, method=method, trials=16, seed=0, keep=0.25)
        history.append([Trial(p, peaked(p, seed)) for p in points for seed in (0, 1)])
    spaces = search.round_spaces(space, history, keep=0.25)
    best, _ = search.ranked(t for round_ in history for t in round_)[0]
    last = spaces[-1]
    for key in space:
        assert last[key].width() < 0.5 * space[key].width(), key
        assert last[key].contains(best[key]), key
        widths = [s[key].width() for s in spaces]
        assert widths == sorted(widths, reverse=True), key  # every round is inside the one before
    assert 1e-4 < last["optimizer.lr"].low < 1e-3 < last["optimizer.lr"].high < 1e-2


def test_narrowing_spans_the_kept_points_and_samples_on_their_scale() -> None:
    space = {"lr": Range("log_uniform", 1e-6, 1e-1), "wd": Range("uniform", 0.0, 1.0)}
    points = [{"lr": 1e-5, "wd": 0.9}, {"lr": 1e-4, "wd": 0.2}, {"lr": 1e-2, "wd": 0.6}, {"lr": 1e-1, "wd": 0.1}]
    trials = [Trial(p, acc) for p, acc in zip(points, [0.3, 0.8, 0.7, 0.1])]
    narrowed = search.narrow(space, trials, keep=0.5)  # keeps the 0.8 and 0.7 points
    assert narrowed["lr"] == Range("log_uniform", 1e-4, 1e-2)
    assert narrowed["wd"] == Range("uniform", 0.2, 0.6)
    drawn = search.sample(narrowed, "sobol", 32, seed=1)
    assert sum(p["lr"] < 1e-3 for p in drawn) == 16  # the log middle, not the linear one (~5e-3)
    assert sum(p["wd"] < 0.4 for p in drawn) == 16


def test_a_single_kept_value_becomes_a_window_on_the_range_scale() -> None:
    space = {"lr": Range("log_uniform", 1e-6, 1e-2), "wd": Range("uniform", 0.0, 1.0),
             "width": Range("int_uniform", 1, 100)}
    narrowed = search.narrow(space, [Trial({"lr": 1e-4, "wd": 0.5, "width": 50}, 0.9),
                                     Trial({"lr": 1e-3, "wd": 0.9, "width": 90}, 0.2)], keep=0.25)
    # a quarter of the log width (4 decades -> 1), centred on 1e-4 in log space
    assert narrowed["lr"].low == pytest.approx(10**-4.5) and narrowed["lr"].high == pytest.approx(10**-3.5)
    assert (narrowed["wd"].low, narrowed["wd"].high) == pytest.approx((0.375, 0.625))
    assert narrowed["width"] == Range("int_uniform", 38, 62)
    at_edge = search.narrow(space, [Trial({"lr": 1e-6, "wd": 1.0, "width": 1}, 0.9)], keep=0.25)
    assert at_edge["lr"].low == 1e-6 and at_edge["lr"].high == pytest.approx(1e-5)  # moved inside, same width
    assert at_edge["wd"] == Range("uniform", 0.75, 1.0)


def test_choices_shrink_to_the_survivors_in_declared_order() -> None:
    space = {"hidden": Range("choice", choices=([10], [20, 20], [30], [40]))}
    trials = [Trial({"hidden": h}, acc) for h, acc in [([40], 0.9), ([20, 20], 0.8), ([10], 0.2), ([30], 0.1)]]
    assert search.narrow(space, trials, keep=0.5)["hidden"].choices == ([20, 20], [40])
    assert search.narrow(space, trials, keep=0.25)["hidden"].choices == ([40],)


def test_points_are_scored_by_their_mean_over_seeds_and_unstable_points_last() -> None:
    trials = [Trial({"lr": 0.1}, 0.95), Trial({"lr": 0.1}, 0.05),  # mean 0.5
              Trial({"lr": 0.01}, 0.6), Trial({"lr": 0.01}, 0.6),
              Trial({"lr": 1.0}, 0.99), Trial({"lr": 1.0}, math.nan),  # one seed diverged
              Trial({"lr": 0.001}, 0.55), Trial({"lr": 0.001}, 0.55)]
    order = [(p["lr"], s) for p, s in search.ranked(trials)]
    assert [lr for lr, _ in order] == [0.01, 0.001, 0.1, 1.0]
    assert order[2][1] == pytest.approx(0.5) and math.isnan(order[3][1])
    space = {"lr": Range("log_uniform", 1e-4, 10.0)}
    assert search.narrow(space, trials, keep=0.5)["lr"] == Range("log_uniform", 0.001, 0.01)


def test_a_round_where_nothing_trained_leaves_the_space_as_it_was() -> None:
    trials = [Trial({"optimizer.lr": 1e-3, "optimizer.weight_decay": 0.0, "model.hidden": [10],
                     "train.batch_size": 20}, math.nan)]
    assert search.narrow(SPACE, trials, keep=0.25) == SPACE


def test_resuming_plans_the_same_round_whatever_order_the_runs_are_read_in() -> None:
    space = {k: SPACE[k] for k in ("optimizer.lr", "optimizer.weight_decay")}
    first = search.plan_round(space, [], method="sobol", trials=8, seed=5, keep=0.25)
    # ties on purpose: two seeds per point, and pairs of points with equal scores
    trials = [Trial(p, round(peaked(p), 1)) for p in first for _ in (0, 1)]
    shuffled = [trials[i] for i in np.random.default_rng(0).permutation(len(trials))]
    assert (search.plan_round(space, [trials], method="sobol", trials=8, seed=5, keep=0.25)
            == search.plan_round(space, [shuffled], method="sobol", trials=8, seed=5, keep=0.25))


# ---------------------------------------------------------------- confirm


def test_confirm_takes_the_best_points_over_all_rounds_by_mean_validation_accuracy() -> None:
    trials = [Trial({"lr": 0.1}, 0.7), Trial({"lr": 0.1}, 0.9),  # mean 0.8, round 1
              Trial({"lr": 0.2}, 0.85), Trial({"lr": 0.2}, 0.85),  # round 1
              Trial({"lr": 0.15}, 0.6), Trial({"lr": 0.15}, 0.6),  # round 2
              Trial({"lr": 0.12}, 0.99), Trial({"lr": 0.12}, math.nan)]  # diverged on one seed
    assert search.select_top(trials, 2) == [{"lr": 0.2}, {"lr": 0.1}]
    assert search.select_top(trials, 10) == [{"lr": 0.2}, {"lr": 0.1}, {"lr": 0.15}]


# ---------------------------------------------------------------- pruning


def test_successive_halving_keeps_the_best_fraction_of_each_bracket() -> None:
    acc = [0.5, 0.9, 0.1, 0.7, 0.3]
    assert pruning.survivors(acc, 0.5) == [0, 1, 3]  # ceil(2.5) = 3 best
    assert pruning.survivors(acc, 0.2) == [1]
    assert pruning.survivors([0.1], 0.1) == [0]  # at least one stays
    # brackets (e.g. optimizers) never eliminate each other: each keeps its own best half
    assert pruning.survivors([0.9, 0.8, 0.2, 0.1], 0.5, bracket=["adam", "adam", "sgd", "sgd"]) == [0, 2]


def test_pruning_scores_a_point_by_its_seeds_together() -> None:
    # point a: seeds 0.9 and 0.1 (mean 0.5); point b: 0.6 and 0.6: b stays with both seeds
    assert pruning.survivors([0.9, 0.6, 0.1, 0.6], 0.5, point=["a", "b", "a", "b"]) == [1, 3]


def test_pruning_ranks_nan_last_and_breaks_ties_by_stack_position() -> None:
    assert pruning.survivors([math.nan, 0.4, 0.4, 0.2], 0.5) == [1, 2]
    assert pruning.survivors([0.4, 0.4, 0.4, 0.4], 0.5) == [0, 1]
    with pytest.raises(ValueError, match="differ in length"):
        pruning.survivors([0.1, 0.2], 0.5, point=["a"])


def test_pruning_happens_at_multiples_of_every_before_the_end() -> None:
    due = [e for e in (0, 1, 2, 3, 4, 5, 6) if pruning.prune_due(e, every=2, end=6)]
    assert due == [2, 4]
    assert pruning.prune_due(0.5 * 3, every=1, end=3) is False  # 1.5 epochs: not a whole multiple
    assert [s for s in range(0, 401, 50) if pruning.prune_due(s, every=100, end=400)] == [100, 200, 300]


def test_a_pruned_round_narrows_to_the_points_that_trained_to_the_end() -> None:
    """Successive halving inside a round, then narrowing on the accuracies the runs reached."""
    space = {k: SPACE[k] for k in ("optimizer.lr", "optimizer.weight_decay")}
    points = search.plan_round(space, [], method="sobol", trials=16, seed=0, keep=0.25)
    curve = lambda p, epoch: peaked(p) * (1 - math.exp(-epoch / 5))  # noqa: E731 - a learning curve per point
    alive, reached, epochs_trained = list(range(16)), {}, 0
    for epoch in range(1, 31):
        epochs_trained += len(alive)
        if pruning.prune_due(epoch, every=10, end=30):
            stay = pruning.survivors([curve(points[i], epoch) for i in alive], keep=0.5)
            for j, i in enumerate(alive):
                if j not in stay:
                    reached[i] = curve(points[i], epoch)
            alive = [alive[j] for j in stay]
    reached.update({i: curve(points[i], 30) for i in alive})
    assert len(alive) == 4 and epochs_trained == 16 * 10 + 8 * 10 + 4 * 10
    narrowed = search.narrow(space, [Trial(points[i], acc) for i, acc in reached.items()], keep=0.25)
    for key in space:  # the span of exactly the four runs that trained for all 30 epochs
        values = [points[i][key] for i in alive]
        assert (narrowed[key].low, narrowed[key].high) == (min(values), max(values))
