"""Sensitivity and performance-profile figures (dlbench.results.tuning_figures) on runs tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.container import ErrorbarContainer

from dlbench.results.tuning_figures import performance_ratios, profile, sensitivity

SPACE = {"optimizer.lr": {"log_uniform": [1e-4, 1.0]}, "optimizer.momentum": {"uniform": [0.0, 0.99]},
         "model.activation": {"choice": ["relu", "tanh"]}}


def search_runs() -> pd.DataFrame:
    """A random search as runs.csv has it: 2 cases x 4 points x 2 seeds; one point diverged on both seeds."""
    rows = []
    for case, shift in (("adam", 0.0), ("sgd", -0.1)):
        for i, (lr, mom, act) in enumerate([(1e-3, 0.1, "relu"), (1e-2, 0.5, "tanh"), (1e-1, 0.9, "relu"),
                                            (0.9, 0.3, "tanh")]):
            for seed in (0, 1):
                diverged = lr == 0.9
                rows.append({"case": case, "optimizer.lr": lr, "optimizer.momentum": mom, "model.activation": act,
                             "seed": seed, "status": "diverged" if diverged else "ok",
                             "final.val_acc": math.nan if diverged else 0.5 + 0.1 * i + shift + 0.02 * seed})
    return pd.DataFrame(rows)


KEYS = ["case", "optimizer.lr", "optimizer.momentum", "model.activation"]


def plot_axes(fig) -> list:
    return [ax for ax in fig.axes if ax.get_visible()]


def test_sensitivity_has_a_panel_per_searched_key_on_its_scale() -> None:
    fig = sensitivity(search_runs(), KEYS, SPACE, by="case", order=["sgd", "adam"])
    axes = plot_axes(fig)
    assert [ax.get_title() for ax in axes] == list(SPACE)
    assert [ax.get_xscale() for ax in axes] == ["log", "linear", "linear"]
    assert [t.get_text() for t in axes[2].get_xticklabels()] == ["relu", "tanh"]
    low, high = axes[0].get_xlim()  # the declared range, not only where the points fell
    assert 5e-5 < low < 1e-4 and 1.0 < high < 2.0
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["sgd", "adam", "no seed trained (diverged / failed)"]
    assert fig.legends[0].get_title().get_text() == "case"


def test_sensitivity_shows_mean_and_std_over_seeds_and_marks_diverged_points() -> None:
    fig = sensitivity(search_runs(), KEYS, SPACE, by="case", order=["adam", "sgd"])
    lr_panel = plot_axes(fig)[0]
    adam = next(c for c in lr_panel.containers if isinstance(c, ErrorbarContainer) and c.get_label() == "adam")
    x, y = adam.lines[0].get_data()
    np.testing.assert_allclose(x, [1e-3, 1e-2, 1e-1])
    np.testing.assert_allclose(y, [51, 61, 71])  # % : mean of seeds 0.5 / 0.52, ...
    bars = adam.lines[2][0].get_segments()
    np.testing.assert_allclose([s[1, 1] - s[0, 1] for s in bars], [2 * 100 * 0.02 / math.sqrt(2)] * 3)
    crosses = [ln for ln in lr_panel.get_lines() if ln.get_marker() == "x"]
    assert sorted(float(ln.get_xdata()[0]) for ln in crosses) == [0.9, 0.9]  # one per case


def test_a_one_dimensional_sweep_draws_a_line_with_a_seed_band() -> None:
    runs = pd.DataFrame([{"optimizer.lr": lr, "seed": s, "status": "ok", "final.val_acc": acc + 0.01 * s}
                         for lr, acc in ((0.1, 0.8), (0.001, 0.6), (0.01, 0.9)) for s in (0, 1, 2)])
    fig = sensitivity(runs, ["optimizer.lr"], {"optimizer.lr": {"log_uniform": [1e-3, 1e-1]}})
    ax = plot_axes(fig)[0]
    (line,) = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-"]
    np.testing.assert_allclose(line.get_xdata(), [0.001, 0.01, 0.1])  # sorted along x
    np.testing.assert_allclose(line.get_ydata(), [61, 91, 81])
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 1
    assert not fig.legends  # one colour, nothing to tell apart


def test_pruned_configurations_are_hollow_and_named_in_the_legend() -> None:
    runs = search_runs()
    runs.loc[runs["optimizer.lr"] == 1e-3, "status"] = "pruned"
    fig = sensitivity(runs, KEYS, SPACE, by="case")
    assert "pruned (accuracy when stopped)" in [t.get_text() for t in fig.legends[0].get_texts()]
    hollow = [c for c in plot_axes(fig)[0].collections if len(c.get_offsets()) and
              np.allclose(c.get_offsets()[:, 0], 1e-3)]
    assert len(hollow) == 2 and all(len(c.get_facecolors()) == 0 for c in hollow)


# ---------------------------------------------------------------- performance profile


def ttt_runs() -> pd.DataFrame:
    """Steps to target per run: 2 settings (tasks), 3 methods, 2 configurations (lr) x 2 seeds each.

    task a: adam's best lr needs median 100 steps, sgd 200, rmsprop never;
    task b: adam 300, sgd 150 (one seed never: the median of 150 and 150), rmsprop 600.
    """
    steps = {("a", "adam"): [(100, 100), (400, None)], ("a", "sgd"): [(200, 200), (None, None)],
             ("a", "rmsprop"): [(None, None), (None, None)],
             ("b", "adam"): [(300, 300), (500, 500)], ("b", "sgd"): [(150, 150), (150, None)],
             ("b", "rmsprop"): [(600, 600), (900, 900)]}
    rows = [{"task": task, "optimizer.name": opt, "optimizer.lr": lr, "seed": seed,
             "ttt.step": math.nan if s is None else float(s)}
            for (task, opt), configs in steps.items() for lr, seeds in zip((0.1, 0.01), configs)
            for seed, s in enumerate(seeds)]
    return pd.DataFrame(rows)


def test_performance_ratios_divide_each_methods_best_time_by_the_fastest() -> None:
    ratios = performance_ratios(ttt_runs(), "optimizer.name", ["task"], ["optimizer.lr"])
    assert list(ratios.columns) == ["adam", "sgd", "rmsprop"] and list(ratios.index) == ["a", "b"]
    np.testing.assert_allclose(ratios.loc["a"], [1.0, 2.0, math.inf])
    # sgd's lr 0.01 has one seed that never reaches: the median of (150, inf) is inf, lr 0.1 is faster anyway
    np.testing.assert_allclose(ratios.loc["b"], [2.0, 1.0, 4.0])


def test_a_setting_nobody_reaches_counts_as_never_for_everyone() -> None:
    runs = ttt_runs()
    runs.loc[runs["task"] == "a", "ttt.step"] = math.nan
    ratios = performance_ratios(runs, "optimizer.name", ["task"], ["optimizer.lr"], order=["sgd"])
    assert list(ratios.columns) == ["sgd", "adam", "rmsprop"]
    assert np.isinf(ratios.loc["a"]).all()
    with pytest.raises(ValueError, match="no ttt.seconds column"):
        performance_ratios(runs, "optimizer.name", ["task"], ["optimizer.lr"], unit="seconds")


def test_profile_is_a_step_curve_per_method_from_tau_1() -> None:
    fig = profile(ttt_runs(), "optimizer.name", ["task"], ["optimizer.lr"], tau_max=3.0, target=0.9)
    ax = plot_axes(fig)[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert list(lines) == ["adam", "sgd", "rmsprop"]
    assert all(ln.get_drawstyle() == "steps-post" for ln in lines.values())

    def at(name: str, tau: float) -> float:  # the step curve's value at tau
        x, y = lines[name].get_data()
        return float(y[np.searchsorted(x, tau, side="right") - 1])

    assert (at("adam", 1.0), at("adam", 2.0)) == (0.5, 1.0)
    assert (at("sgd", 1.0), at("sgd", 1.99), at("sgd", 2.0)) == (0.5, 0.5, 1.0)
    assert (at("rmsprop", 1.0), at("rmsprop", 3.0)) == (0.0, 0.0)  # 4x in task b: beyond tau_max
    assert ax.get_xlim() == (1.0, 3.0)
    assert "val acc ≥ 0.9" in ax.get_xlabel() and ax.get_ylabel() == "fraction of the 2 settings"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["adam", "sgd", "rmsprop"]


def test_a_method_that_never_reaches_says_so() -> None:
    runs = ttt_runs()
    runs.loc[runs["optimizer.name"] == "rmsprop", "ttt.step"] = math.nan
    fig = profile(runs, "optimizer.name", ["task"], ["optimizer.lr"])
    assert "rmsprop (never reaches)" in [t.get_text() for t in fig.legends[0].get_texts()]


def test_sensitivity_without_a_validation_set_says_why() -> None:
    runs = search_runs().assign(**{"final.val_acc": math.nan})
    with pytest.raises(ValueError, match=r"no run has a final.val_acc to draw \(data.val_size: 0"):
        sensitivity(runs, KEYS, SPACE, by="case")


def test_a_section_grids_entries_are_the_profiles_methods() -> None:
    """grid: optimizer: [{name: sgd, lr: 0.1}, {name: adam, lr: 0.001}] x init.scheme: the lr moves with
    the optimizer (part of the method), the init scheme is the setting the methods are compared in."""
    import pandas as pd

    from dlbench.results.tuning_figures import profile_settings

    runs = pd.DataFrame([{"optimizer.name": name, "optimizer.lr": lr, "init.scheme": scheme}
                         for name, lr in (("sgd", 0.1), ("adam", 0.001)) for scheme in ("he", "xavier", "normal")])
    assert profile_settings(runs, "optimizer.name", ["optimizer.name", "optimizer.lr", "init.scheme"]) == \
        ["init.scheme"]
