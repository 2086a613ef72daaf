"""The Python API: dlbench.run / load / compare give the folder's numbers as DataFrames, the
report's numbers as `dlbench report` prints them, figures, and one-line errors."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any
from collections.abc import Callable

import pandas as pd
import pytest
from sweep_util import dlbench as cli, metrics_without_time, run_dirs, tiny_config, write_config

import dlbench
from dlbench import ConfigError
from dlbench.catalog.metrics import METRICS
from dlbench.results.store import metric_columns


def same_csv(frame: pd.DataFrame, text: str) -> None:
    """A DataFrame holds what a CSV file or CLI output holds (both read back the same way)."""
    pd.testing.assert_frame_equal(pd.read_csv(io.StringIO(frame.to_csv(index=False))), pd.read_csv(io.StringIO(text)))


def sweep(data_root: Path, name: str = "tiny", hidden: int = 16) -> dict[str, Any]:
    cfg = tiny_config(data_root, name=name, model={"hidden": [hidden]},
                      grid={"optimizer": [{"name": "sgd", "lr": 0.1}, {"name": "adam", "lr": 0.01}]})
    cfg["train"]["seeds"] = [0, 1, 2]
    return cfg


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> dlbench.Results:
    return dlbench.run(sweep(data_root), out=tmp_path_factory.mktemp("api"), overrides={"train.steps": 16},
                       progress=False)


def test_run_returns_the_folder_as_dataframes(results: dlbench.Results) -> None:
    root = results.root
    assert len(results.runs) == 6 and set(results.runs["status"]) == {"ok"}
    assert {"optimizer.name", "optimizer.lr", "seed", "final.val_acc"} <= set(results.runs.columns)
    same_csv(results.runs, (root / "runs.csv").read_text())
    assert list(results.summary["optimizer.name"]) != [] and len(results.summary) == 2
    same_csv(results.summary, (root / "summary.csv").read_text())


def test_metrics_hold_every_evaluation_with_the_runs_swept_values(results: dlbench.Results) -> None:
    metrics, runs = results.metrics, results.runs.set_index("run_id")
    derived = [name for name, _ in METRICS.derived()]  # the gap at every evaluation, as the figures draw it
    assert list(metrics.columns) == ["run_id", "optimizer.name", "optimizer.lr", "seed", "status", *metric_columns(),
                                     *derived]
    folders = run_dirs(results.root)
    assert len(metrics) == sum(len(pd.read_csv(d / "metrics.csv")) for d in folders.values())
    for run_id, rows in metrics.groupby("run_id"):
        expected = pd.read_csv(folders[str(run_id)] / "metrics.csv")
        pd.testing.assert_frame_equal(rows[metric_columns()].reset_index(drop=True), expected)
        for key in ("optimizer.name", "optimizer.lr", "seed"):
            assert set(rows[key]) == {runs.loc[run_id, key]}
    assert metrics["step"].max() == 16  # the override was honoured


@pytest.mark.parametrize("options, flags", [
    ({}, []),
    ({"at": "best", "target": 0.2, "losses": True}, ["--at", "best", "--target", "0.2", "--losses"]),
    ({"where": {"optimizer.name": ["sgd", "adam"]}, "group_by": "optimizer.name"},
     ["--where", "optimizer.name=sgd", "--where", "optimizer.name=adam", "--group-by", "optimizer.name"]),
    ({"baseline": {"optimizer.name": "sgd"}, "metric": "test_acc"},
     ["--baseline", "optimizer.name=sgd", "--metric", "test_acc"]),
    ({"where": "seed=1"}, ["--where", "seed=1"]),
])
def test_table_is_the_cli_report(results: dlbench.Results, options: dict[str, Any], flags: list[str]) -> None:
    """The table's columns (those the terminal prints with the same flags) as numbers: the csv's numbers."""
    printed = cli("report", results.root, "--format", "csv", *flags)
    assert printed.code == 0, printed.err
    table = results.table(**options)
    same_csv(table, pd.read_csv(io.StringIO(printed.out))[list(table.columns)].to_csv(index=False))
    markdown = cli("report", results.root, "--format", "markdown", *flags).out.splitlines()[0]
    headers = [h.strip() for h in markdown.strip("|").split("|")]
    shown = [m.name for m in METRICS if m.label in headers]
    assert [c.removesuffix("_mean") for c in table.columns if c.endswith("_mean")] == ["epoch", *shown] + (
        ["ttt_epoch", "ttt_step", "ttt_seconds"] if "target" in options else [])
    assert table["n"].dtype.kind == "i" and table["val_acc_mean"].dtype.kind == "f"  # numbers, not text


def test_compare_is_report_of_two_folders(results: dlbench.Results, data_root: Path) -> None:
    wide = dlbench.run(sweep(data_root, "wide", 32), out=results.root.parent, overrides={"train.steps": 16},
                       progress=False)
    comparison = dlbench.compare(results, wide.root)
    table = comparison.table()
    printed = pd.read_csv(io.StringIO(cli("report", results.root, wide.root, "--format", "csv").out))
    same_csv(table, printed[list(table.columns)].to_csv(index=False))
    assert set(comparison.table()["experiment"]) == {"tiny", "wide"}
    assert "tiny vs wide" in comparison._repr_html_()


def _tbody(page: str) -> str:
    return re.search(r"<tbody>.*?</tbody>", page, re.S).group()  # type: ignore[union-attr]


def test_jupyter_shows_the_table_of_the_html_report(results: dlbench.Results, tmp_path: Path) -> None:
    assert cli("report", results.root, "--output", tmp_path / "r.html").code == 0
    shown = results._repr_html_()
    assert _tbody(shown) == _tbody((tmp_path / "r.html").read_text())
    assert "± " in shown and "vs best" in shown
    assert repr(results) == f"<Results {results.root}: 6 runs (6 ok); swept: optimizer.name, optimizer.lr>"
    assert "best by validation accuracy" in str(results)


def test_plot_returns_a_figure(results: dlbench.Results) -> None:
    figure = dlbench.Results(results.root).plot("curves")
    titles = [ax.get_title() for ax in figure.axes]
    assert titles[:4] == ["train loss", "train accuracy %", "validation accuracy % (ranks the table)",
                          "test accuracy %"]
    assert all(len(ax.get_lines()) == 2 for ax in figure.axes[:4])  # one mean curve per configuration


def test_load_gives_the_same_results(results: dlbench.Results) -> None:
    loaded = dlbench.load(str(results.root))
    for frame in ("runs", "summary", "metrics"):
        pd.testing.assert_frame_equal(getattr(loaded, frame), getattr(results, frame))
    pd.testing.assert_frame_equal(loaded.table(target=0.2), results.table(target=0.2))
    assert loaded._repr_html_() == results._repr_html_()


def test_a_config_mapping_trains_as_its_yaml_file(results: dlbench.Results, data_root: Path, tmp_path: Path) -> None:
    """One code path: the same sweep through `dlbench run FILE --set` gives the same folder."""
    path = write_config(tmp_path / "c.yaml", sweep(data_root))
    assert cli("run", path, "--set", "train.steps=16", "--out", tmp_path, "--no-plots").code == 0
    assert (tmp_path / "tiny" / "experiment.yaml").read_text() == (results.root / "experiment.yaml").read_text()
    mine, theirs = run_dirs(results.root), run_dirs(tmp_path / "tiny")
    assert mine.keys() == theirs.keys()
    for run_id in mine:
        assert metrics_without_time(mine[run_id]) == metrics_without_time(theirs[run_id])


def test_a_rerun_of_a_finished_sweep_trains_nothing(results: dlbench.Results, data_root: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    before = {d.name: d.stat().st_ino for d in run_dirs(results.root).values()}
    again = dlbench.run(sweep(data_root), out=results.root.parent, overrides={"train.steps": 16}, progress=False)
    assert "6 of 6 runs already finished" in capsys.readouterr().out
    assert {d.name: d.stat().st_ino for d in run_dirs(again.root).values()} == before


@pytest.mark.parametrize("call, message", [
    (lambda r, d: dlbench.run(d / "missing.yaml", out=d), "config file"),
    (lambda r, d: dlbench.run({"name": "x", "optimizer": {"nme": "sgd"}}, out=d), "optimizer.nme"),
    (lambda r, d: dlbench.run({"name": "x"}, out=d, overrides={"optimizer.lr": Path("x")}), "overrides optimizer.lr"),
    (lambda r, d: dlbench.run({"name": "x"}, out=d, overrides={"optimizer.lr": "fast"}), "optimizer.lr"),
    (lambda r, d: dlbench.run({"name": "x"}, out=d, executor="threads"), "--executor: 'threads' is invalid"),
    (lambda r, d: dlbench.run({"name": "x"}, out=d, rerun="some"), "--rerun: 'some' is invalid"),
    (lambda r, d: dlbench.run({"name": "x"}, out=d, workers=0), "--workers: 0 is invalid"),
    (lambda r, d: dlbench.load(d / "nowhere"), "no such folder"),
    (lambda r, d: r.table(at="last"), "'last' is invalid"),
    (lambda r, d: r.table(target="high"), "target: 'high' is invalid"),
    (lambda r, d: r.table(where={"optimizer.name": "lion"}), "matches no runs"),
    (lambda r, d: r.table(group_by="optimizer.nam"), "'optimizer.nam' is not a key"),
    (lambda r, d: r.plot("curvs"), "plot: 'curvs' is invalid for a task: train folder"),
    (lambda r, d: r.plot("paths"), "plot: 'paths' is invalid"),
    (lambda r, d: dlbench.compare(r), "compare two or more"),
])
def test_bad_input_raises_a_one_line_config_error(results: dlbench.Results, tmp_path: Path,
                                                  call: Callable[[Any, Path], Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        call(results, tmp_path)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "x").exists()  # refused before any folder is written


def test_failed_runs_are_kept_and_named_not_raised(data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from dlbench.components import models

    build = models.build

    def build_or_fail(cfg: Any, shape: Any, classes: int) -> Any:  # found only when the model is built
        if cfg.hidden == [13]:
            raise RuntimeError("simulated: not enough memory for hidden=[13]")
        return build(cfg, shape, classes)

    monkeypatch.setattr(models, "build", build_or_fail)
    res = dlbench.run(tiny_config(data_root, grid={"model.hidden": [[16], [13]]}), out=tmp_path, progress=False)
    assert sorted(res.runs["status"]) == ["failed", "ok"]
    assert "1 of 2 runs failed" in capsys.readouterr().err


def test_a_task_that_trains_nothing_shows_its_own_table(tmp_path: Path) -> None:
    paths = dlbench.run({"name": "paths", "task": "function", "grid": {"optimizer.name": ["sgd", "adam"]},
                         "function": {"steps": 5}}, out=tmp_path, progress=False)
    table = paths.table()
    assert list(table["optimizer.name"]) == ["sgd", "adam"]
    same_csv(paths.summary, (paths.root / "summary.csv").read_text())
    printed = cli("report", paths.root).out
    assert all(cell in printed for cell in table.to_numpy().ravel())
    assert paths.plot("paths").axes
    with pytest.raises(ConfigError, match=r"table\(target=...\): .* holds a task: function experiment"):
        paths.table(target=0.5)
    # what `dlbench report` prints and its page, from Python; the statistics formats are refused
    assert all(cell in paths.text() for cell in table.to_numpy().ravel())
    page = paths.save(tmp_path / "paths.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64" in page
    with pytest.raises(ConfigError, match=r"text\(format='csv'\): .* holds a task: function experiment"):
        paths.text("csv")


@pytest.mark.parametrize("progress", [True, False])
def test_progress_outside_a_notebook_is_the_terminal_bars(data_root: Path, tmp_path: Path, progress: bool,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    dlbench.run(tiny_config(data_root, grid={"optimizer.lr": [0.05, 0.1]}), out=tmp_path, progress=progress)
    err = capsys.readouterr().err
    assert ("tiny on cpu" in err and "2/2" in err) is progress, err
