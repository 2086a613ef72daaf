"""Importance and parallel coordinates of a search (issue 28): from the folder, per search group,
first round only; too few points said, not printed as noise; a folder with no search refused."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from dlbench.results import plots, search_figures
from sweep_util import dlbench, one_thread, tiny_config, write_config  # noqa: F401 - fixture

SPACE = {"optimizer.lr": {"log_uniform": [1.0e-3, 1.0]},
         "regularization.label_smoothing": {"choice": [0.0, 0.001]}}  # 0.001: next to no effect


def searched(root: Path, data_root: Path, trials: int) -> Path:
    cfg = tiny_config(data_root, cases={"sgd": {"optimizer.name": "sgd"}, "adam": {"optimizer.name": "adam"}},
                      random={"method": "sobol", "trials": trials, "seed": 0, "space": SPACE})
    cfg["data"]["val_size"] = 0.2
    result = dlbench("run", write_config(root / "c.yaml", cfg), "--out", root / "out", "--no-plots")
    assert result.exit_code == 0, result.output
    return root / "out" / "tiny"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    return searched(tmp_path_factory.mktemp("importance"), data_root, 16)


def test_importance_is_per_search_group_and_the_lr_matters(folder: Path) -> None:
    found = search_figures.importance(plots.load(folder))
    assert [g.group for g in found] == ["case=sgd", "case=adam"] and all(g.points == 16 for g in found)
    for g in found:
        assert g.result is not None and g.result.evaluator == "fANOVA" and g.at == "the end of training"
        share = g.result.share
        assert 0 <= share["regularization.label_smoothing"] < share["optimizer.lr"] <= 1
        assert sum(share.values()) <= 1 + 1e-9  # fractions of one variance; the rest: interactions
        assert all(s >= 0 for s in g.result.spread.values())


def test_report_importance_and_the_api_say_the_same(folder: Path) -> None:
    result = dlbench("report", folder, "--importance")
    assert result.exit_code == 0, result.output
    assert "case=sgd: 16 first-round points" in result.output and "First round only" in result.output
    from dlbench import load

    frame = load(folder).importance()
    assert list(frame.columns[:4]) == ["group", "key", "points", "at"] and len(frame) == 4
    lr = frame[(frame["group"] == "case=sgd") & (frame["key"] == "optimizer.lr")]["share"].iloc[0]
    assert re.search(rf"optimizer\.lr +{100 * lr:.1f} %", result.output)


def test_a_first_round_too_small_is_said_not_computed(tmp_path: Path, data_root: Path) -> None:
    folder = searched(tmp_path, data_root, 4)
    found = search_figures.importance(plots.load(folder))
    assert all(g.result is None and "too few to say: 4 points for 2 searched keys" in g.reason for g in found)
    frame = search_figures.importance_frame(found)
    assert frame["share"].isna().all()
    assert plots.write(plots.load(folder), ["importance"])  # the figure says so in its caption


def test_importance_of_a_folder_without_a_search_is_one_line(tmp_path: Path, data_root: Path) -> None:
    cfg = tiny_config(data_root, grid={"optimizer.lr": [0.1, 0.2]})
    assert dlbench("run", write_config(tmp_path / "c.yaml", cfg), "--out", tmp_path / "out").exit_code == 0
    for option in (["--where", "stage=search"], ["--format", "csv"], ["--output", "x.md"]):  # statistics' options
        refused = dlbench("report", tmp_path / "out" / "tiny", "--importance", *option)
        assert refused.exit_code == 2 and refused.output.startswith(f"error: report {option[0]}: ")
    result = dlbench("report", tmp_path / "out" / "tiny", "--importance")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: importance: {tmp_path / 'out' / 'tiny'} holds no search (its config has no random: section); "
        "importance and parallel coordinates read a search's trials"]


def test_parallel_coordinates_draw_every_trial_on_the_declared_axes(folder: Path) -> None:
    res = plots.load(folder)
    fig = search_figures.parallel_plot(res)
    assert fig is not None
    panels = [ax for ax in fig.axes if ax.get_xticklabels()]
    assert len(panels) == 2  # one per case
    for ax in panels:
        trials = [line for line in ax.get_lines() if len(line.get_xdata()) == 3]  # lr, smoothing, accuracy
        assert len(trials) == 16
        assert [t.get_text() for t in ax.get_xticklabels()] == [*SPACE, "val acc %"]
        ys = [y for line in trials for y in line.get_ydata()[:2]]
        # inside the declared ranges (a choice's lines fan out by up to 0.024 around its value)
        assert all(-0.03 <= y <= 1.03 for y in ys if not math.isnan(y))
        widths = [line.get_linewidth() for line in trials]
        assert widths[-1] == max(widths)  # the best, drawn last: on top
    written = plots.write(res)  # a search's figures by default: parallel and importance beside the usual ones
    assert {p.name for p in written} >= {"parallel.png", "importance.png", "curves.png"}


def test_a_search_ranked_on_its_validation_loss_is_drawn_and_weighed_on_it(tmp_path: Path, data_root: Path) -> None:
    """train.monitor: val_loss: the search ranks its points on the loss, and so do its figures: importance is
    of the validation loss's variance, the parallel coordinates' last axis is the loss, and the best trial
    (the lowest loss) is drawn last, thickest."""
    cfg = tiny_config(data_root, random={"method": "sobol", "trials": 16, "seed": 0, "space": SPACE})
    cfg["data"]["val_size"] = 0.2
    cfg["train"]["monitor"] = "val_loss"
    result = dlbench("run", write_config(tmp_path / "c.yaml", cfg), "--out", tmp_path / "out", "--no-plots")
    assert result.exit_code == 0, result.output
    res = plots.load(tmp_path / "out" / "tiny")
    said = dlbench("report", tmp_path / "out" / "tiny", "--importance").output
    assert "share of the variance of the validation loss" in " ".join(said.split()), said
    fig = search_figures.parallel_plot(res)
    assert fig is not None
    ax, = [ax for ax in fig.axes if ax.get_xticklabels()]
    assert [t.get_text() for t in ax.get_xticklabels()] == [*SPACE, "val loss"]
    trials = [line for line in ax.get_lines() if len(line.get_xdata()) == 3]
    thickest = max(trials, key=lambda line: line.get_linewidth())
    assert trials[-1] is thickest
    runs = res.runs[res.runs["status"] == "ok"]
    lowest = runs["final.val_loss"].min()
    scaled = thickest.get_ydata()[-1]  # the loss axis spans the trials' range: the lowest loss at 0
    assert scaled == pytest.approx(0.0, abs=1e-9) and lowest < runs["final.val_loss"].max()
