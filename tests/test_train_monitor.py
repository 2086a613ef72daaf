"""train.monitor: the validation metric, in its direction, that chooses each run's best evaluation,
early stopping and successive halving; the report reads the choice from the folder."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from dlbench.catalog.builtin import VALIDATION_METRICS
from dlbench.catalog.metrics import METRICS, TRAINING_BEST
from dlbench.config import schema, vocabulary
from dlbench.plan import pruning, sweep
from dlbench.plan.stacks import stacks
from dlbench.training import engine
from sweep_util import dlbench, one_thread, run_dirs, summary, tiny_config, write_config  # noqa: F401

PATIENCE = 3


def overfitting(data_root: Path, **train: Any) -> dict[str, Any]:
    """Runs whose validation loss bottoms out early while their validation accuracy still climbs
    (20 validation samples, a wide layer, a large lr): loss and accuracy choose different evaluations."""
    cfg = tiny_config(data_root, optimizer={"name": "adam", "lr": 0.03}, model={"hidden": [64]},
                      train={"steps": 60, "batch_size": 50, "eval_every": 3, "seeds": [0], "device": "cpu", **train})
    cfg["data"]["train_size"] = 200
    return cfg


def stopped_by_rule(rows: list[dict[str, float]], monitor: str, patience: int | None) -> tuple[int, int]:
    """(index of the best row, index of the last row trained) as the documented rule says: the best is the
    first evaluation that no later one beats in the monitor's direction (the untrained net's, at step 0, is
    none); training stops after `patience` evaluations without a better one."""
    higher = METRICS[monitor].higher_is_better
    best, since = 1, 0
    for i in range(2, len(rows)):
        new, old = rows[i][monitor], rows[best][monitor]
        if new > old if higher else new < old:
            best, since = i, 0
        else:
            since += 1
            if patience is not None and since >= patience:
                return best, i
    return best, len(rows) - 1


@pytest.fixture(scope="module")
def trained(data_root: Path) -> dict[tuple[str, int | None], Any]:
    """One stack: every monitor, with and without early stopping (runs of different monitors share it)."""
    raw = overfitting(data_root)
    raw["grid"] = {"train.monitor": list(VALIDATION_METRICS), "regularization.early_stopping": [None, PATIENCE]}
    specs = sweep.expand(schema.validate(raw), raw)
    assert len(stacks(specs)) == 1
    return {(r.spec.config.train.monitor, r.spec.config.regularization.early_stopping): r
            for r in engine.train(specs, torch.device("cpu"))}


@pytest.mark.parametrize("monitor", VALIDATION_METRICS)
def test_early_stopping_and_the_best_follow_the_monitor(trained: dict[tuple[str, int | None], Any],
                                                        monitor: str) -> None:
    full, early = trained[monitor, None], trained[monitor, PATIENCE]
    best, last = stopped_by_rule(full.metrics, monitor, PATIENCE)
    assert early.summary["stopped_early"] is True
    assert early.summary["steps"] == full.metrics[last]["step"]
    assert early.metrics == full.metrics[:last + 1]  # the same numbers up to where it stopped
    assert early.summary["best"]["step"] == full.metrics[best]["step"]
    assert full.summary["best"]["step"] == full.metrics[stopped_by_rule(full.metrics, monitor, None)[0]]["step"]
    assert full.summary["best_on"] == early.summary["best_on"] == monitor


def test_the_best_on_val_loss_is_the_lowest_loss_and_stops_before_accuracy_would(
        trained: dict[tuple[str, int | None], Any]) -> None:
    losses = [row["val_loss"] for row in trained["val_loss", None].metrics]
    assert trained["val_loss", None].summary["best"]["val_loss"] == min(losses)
    assert trained["val_loss", PATIENCE].summary["steps"] < trained["val_acc", PATIENCE].summary["steps"]
    # the default is unchanged: the best is the highest validation accuracy
    accuracies = [row["val_acc"] for row in trained[TRAINING_BEST, None].metrics]
    assert trained[TRAINING_BEST, None].summary["best"]["val_acc"] == max(accuracies)


def test_pruning_keeps_the_best_of_each_monitor_in_its_direction() -> None:
    plan = pruning.Pruning(every=1, keep=0.5, group="g", point="")
    points = [pruning.Pruning(1, 0.5, "g", str(i)) for i in range(4)]
    loss, acc = METRICS["val_loss"], METRICS["val_acc"]
    assert pruning.pruned(points, [loss] * 4, [0.9, 0.3, 0.5, math.nan], at=1, end=3) == [0, 3]  # lowest stay
    assert pruning.pruned(points, [acc] * 4, [0.9, 0.3, 0.5, math.nan], at=1, end=3) == [1, 3]  # highest stay
    # a loss and an accuracy are never compared: each monitor is a bracket of its own
    assert pruning.pruned(points, [loss, loss, acc, acc], [0.9, 0.3, 0.5, 0.4], at=1, end=3) == [0, 3]
    assert pruning.pruned([plan, None], [loss] * 2, [0.1, 0.2], at=2, end=3) == []  # one candidate keeps itself
    assert pruning.pruned(points, [loss] * 4, [0.9, 0.3, 0.5, 0.1], at=3, end=3) == []  # not at the end


def test_successive_halving_on_val_loss_keeps_the_lowest_losses(data_root: Path) -> None:
    cfg = tiny_config(data_root, random={"method": "halton", "trials": 4, "seed": 1, "prune": {"every": 4, "keep": 0.5},
                                         "space": {"optimizer.lr": {"log_uniform": [1.0e-3, 1.0]}}})
    cfg["data"]["val_size"] = 0.2
    cfg["train"]["monitor"] = "val_loss"
    config, raw, _ = vocabulary.load(cfg, [])
    results = list(engine.Stack(sweep.expand(config, raw), torch.device("cpu")).run())
    for step in (4, 8):  # who was still training at that evaluation, and who trained past it
        there = [r for r in results if r.summary["steps"] >= step]
        at = {r.spec.run_id: next(m["val_loss"] for m in r.metrics if m["step"] == step) for r in there}
        stayed = [at[r.spec.run_id] for r in there if r.summary["steps"] > step]
        left = [at[r.spec.run_id] for r in there if r.summary["steps"] == step and r.status == "pruned"]
        assert len(stayed) == math.ceil(len(there) / 2) and left
        assert max(stayed) < min(left)


def test_the_report_reads_what_the_best_was_chosen_on(tmp_path: Path, data_root: Path) -> None:
    from dlbench.results import report as rp
    from dlbench.results.render import columns

    cfg = overfitting(data_root, monitor="val_loss", steps=30)
    cfg["grid"] = {"optimizer.lr": [0.01, 0.03]}
    assert dlbench("run", write_config(tmp_path / "c.yaml", cfg), "--out", tmp_path, "--no-plots").code == 0
    folder = tmp_path / "tiny"
    curves = {d.name: _metrics(d) for d in run_dirs(folder).values()}
    assert {summary(d)["best_on"] for d in run_dirs(folder).values()} == {"val_loss"}
    # --at best ranked on accuracy: each run's best evaluation found again in metrics.csv, on accuracy
    by_acc = rp.report([folder], rp.ReportOptions(at="best"))
    expected = {lr: max(max(r["val_acc"] for r in curves[d.name] if r["step"] > 0)
                        for d in run_dirs(folder).values() if summary(d)["params"]["optimizer.lr"] == lr)
                for lr in (0.01, 0.03)}
    got = dict(zip(by_acc.summary["optimizer.lr"], by_acc.summary["val_acc_mean"]))
    assert got == pytest.approx(expected)
    # ... and on the loss: the engine's own best (the lowest validation loss)
    by_loss = rp.report([folder], rp.ReportOptions(at="best", metric="val_loss"))
    lowest = {summary(d)["params"]["optimizer.lr"]: summary(d)["best"]["val_loss"] for d in run_dirs(folder).values()}
    assert dict(zip(by_loss.summary["optimizer.lr"], by_loss.summary["val_loss_mean"])) == pytest.approx(lowest)
    caption = columns.caption(by_acc)
    assert "at the evaluation with the best validation accuracy of each run" in " ".join(caption[0].split())
    assert any("chosen on validation loss (train.monitor)" in line for line in caption)
    assert "at the evaluation with the best validation loss of each run" in " ".join(
        columns.caption(by_loss)[0].split())


def _metrics(run: Path) -> list[dict[str, float]]:
    import csv

    with (run / "metrics.csv").open() as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def test_a_search_ranks_its_points_on_the_monitor_in_its_direction() -> None:
    from dlbench import search
    from dlbench.search import bayes

    losses = [search.Trial({"lr": lr}, loss, metric="val_loss") for lr, loss in [(0.1, 0.9), (0.01, 0.2), (1.0, 0.5)]]
    assert search.select_top(losses, 2) == [{"lr": 0.01}, {"lr": 1.0}]  # the lowest losses
    accuracies = [search.Trial(t.values, t.value) for t in losses]
    assert search.select_top(accuracies, 2) == [{"lr": 0.1}, {"lr": 1.0}]  # the highest accuracies
    with pytest.raises(ValueError, match="different metrics"):
        search.ranked([*losses, *accuracies])
    space = {"lr": search.Range("log_uniform", 1e-3, 1.0)}
    diverged = [*losses, search.Trial({"lr": 0.5}, math.nan, "diverged", metric="val_loss")]
    assert [t.value for t in bayes.told(space, diverged)] == [0.9, 0.2, 0.5, math.inf]  # the worst loss there is
    assert len(bayes.ask_round(space, [diverged], method="tpe", trials=3, seed=0)) == 3


def test_a_staged_search_confirms_the_lowest_validation_loss(tmp_path: Path, data_root: Path) -> None:
    cfg = overfitting(data_root, monitor="val_loss")
    cfg["random"] = {"method": "halton", "trials": 4, "seed": 1,
                     "space": {"optimizer.lr": {"log_uniform": [1.0e-3, 0.1]}}}
    cfg["confirm"] = {"top": 1, "seeds": [10]}
    assert dlbench("run", write_config(tmp_path / "c.yaml", cfg), "--out", tmp_path, "--no-plots").code == 0
    runs = [summary(d) for d in run_dirs(tmp_path / "tiny").values()]
    searched = {s["params"]["optimizer.lr"]: s["final"] for s in runs if s["params"]["stage"] == "search"}
    [confirmed] = [s["params"]["optimizer.lr"] for s in runs if s["params"]["stage"] == "confirm"]
    assert confirmed == min(searched, key=lambda lr: searched[lr]["val_loss"])
    # ranked on accuracy, the search would have confirmed another point
    assert searched[confirmed]["val_acc"] < max(final["val_acc"] for final in searched.values())
