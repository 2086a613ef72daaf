"""End to end: a config in, runs trained, files and numbers out."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from dlbench.config.schema import Config, section
from dlbench.components.data import prepare
from dlbench.results.store import metric_columns
from dlbench.training.run import schedule


def run(cli, config: dict, *args: str) -> tuple[object, Path]:
    out = cli.tmp_path / "results"
    # figures cost about a second per run; tests/test_experiments.py checks them
    result = cli("run", cli.write(config), "--out", out, "--no-plots", *args)
    return result, out / config["name"]


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_sweep_writes_the_results_layout(cli, tiny) -> None:
    tiny["grid"] = {"optimizer": [{"name": "sgd", "lr": 0.1}, {"name": "adam", "lr": 0.01}]}
    tiny["train"]["seeds"] = [0, 1]
    result, root = run(cli, tiny)
    assert result.exit_code == 0, result.output
    runs = sorted((root / "runs").iterdir())
    assert len(runs) == 4
    for d in runs:
        assert {p.name for p in d.iterdir()} == {"config.yaml", "metrics.csv", "summary.json"}
        summary = json.loads((d / "summary.json").read_text())
        assert summary["status"] == "ok" and summary["run_id"] == d.name
        assert summary["n_params"] == 40 * 32 + 32 + 32 * 10 + 10
        assert summary["device"].startswith("cpu") and summary["versions"]["torch"] == torch.__version__
        for block in ("final", "best"):
            m = summary[block]
            assert 0 <= m["test_acc"] <= 1 and m["gap"] == pytest.approx(m["train_acc"] - m["test_acc"])
        assert summary["best"]["val_acc"] >= summary["final"]["val_acc"]
        rows = read_metrics(d)
        assert list(rows[0]) == metric_columns()
        assert [int(r["step"]) for r in rows] == [0, 10, 20]  # eval at init and every eval_every steps
        resolved = Config.model_validate(yaml.safe_load((d / "config.yaml").read_text()))
        assert resolved.train.seeds == [summary["seed"]]
    runs_csv = pd.read_csv(root / "runs.csv")
    assert len(runs_csv) == 4 and {"config.optimizer.lr", "final.test_acc", "status"} <= set(runs_csv.columns)
    summary_csv = pd.read_csv(root / "summary.csv")
    assert len(summary_csv) == 2 and set(summary_csv["n"]) == {2}
    # the printed table: one row per optimizer, sorted by validation accuracy, with the gap column
    assert "gap" in result.stdout and "sgd" in result.stdout and "adam" in result.stdout
    val = summary_csv["val_acc_mean"].tolist()
    assert val == sorted(val, reverse=True)


def test_training_learns(cli, tiny) -> None:
    tiny["train"] = {**tiny["train"], "steps": 200, "eval_every": 100}
    result, root = run(cli, tiny)
    summary = json.loads(next((root / "runs").glob("*/summary.json")).read_text())
    assert summary["final"]["train_acc"] > 0.4  # well above chance (10 classes)
    rows = read_metrics(next((root / "runs").iterdir()))
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])


def test_same_seed_same_metrics(cli, tiny) -> None:
    tiny["model"].update(dropout=0.2)
    tiny["regularization"] = {"input_noise": 0.1, "l1": 1e-4}
    _, root_a = run(cli, tiny)
    other = copy.deepcopy(tiny)
    other["name"] = "tiny_again"
    _, root_b = run(cli, other)
    (a,), (b,) = list((root_a / "runs").iterdir()), list((root_b / "runs").iterdir())
    assert a.name == b.name
    drop_time = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop_time(read_metrics(a)) == drop_time(read_metrics(b))
    third = copy.deepcopy(tiny)
    third.update(name="tiny_seed1")
    third["train"]["seeds"] = [1]
    _, root_c = run(cli, third)
    (c,) = list((root_c / "runs").iterdir())
    assert drop_time(read_metrics(c)) != drop_time(read_metrics(a))


def test_divergence_is_recorded_and_the_sweep_goes_on(cli, tiny) -> None:
    tiny["grid"] = {"optimizer": [{"name": "sgd", "lr": 1.0e6}, {"name": "adam", "lr": 0.01}]}
    tiny["model"]["hidden"] = [32, 32]
    result, root = run(cli, tiny)
    assert result.exit_code == 0, result.output
    by_opt = {}
    for f in (root / "runs").glob("*/summary.json"):
        s = json.loads(f.read_text())
        by_opt[s["params"]["optimizer.name"]] = s
    assert by_opt["sgd"]["status"] == "diverged" and by_opt["sgd"]["diverged_step"] >= 1
    assert by_opt["adam"]["status"] == "ok"
    assert "diverged" in result.stdout


def test_early_stopping_stops_on_validation_accuracy(cli, tiny) -> None:
    tiny["optimizer"] = {"name": "sgd", "lr": 1e-9}  # nothing changes, so validation never improves
    tiny["regularization"] = {"early_stopping": 2}
    tiny["train"].update(steps=1000, eval_every=5)
    _, root = run(cli, tiny)
    summary = json.loads(next((root / "runs").glob("*/summary.json")).read_text())
    assert summary["stopped_early"] is True
    assert summary["steps"] == 15  # best at step 5, then two evaluations without improvement


@pytest.mark.parametrize("batch_size,per_epoch", [("full", 1), (1, 400), (32, 13)])
def test_batch_size_regimes(batch_size, per_epoch: int) -> None:
    cfg = Config.model_validate({"train": {"epochs": 3, "batch_size": batch_size}})
    bs, steps_per_epoch, total = schedule(400, cfg.train)
    assert steps_per_epoch == per_epoch and total == 3 * per_epoch
    assert bs == (400 if batch_size == "full" else batch_size)


def test_full_batch_epochs_run(cli, tiny) -> None:
    tiny["train"] = {**tiny["train"], "steps": None, "epochs": 3, "batch_size": "full", "eval_every": 1}
    del tiny["train"]["steps"]
    _, root = run(cli, tiny)
    rows = read_metrics(next((root / "runs").iterdir()))
    assert [int(r["step"]) for r in rows] == [0, 1, 2, 3]
    assert [float(r["epoch"]) for r in rows] == [0.0, 1.0, 2.0, 3.0]


def test_data_subset_split_and_standardize(data_root: Path) -> None:
    splits = prepare(section("data", root=str(data_root), train_size=300, val_size=0.2), "cpu")
    assert len(splits.x_train) == 240 and len(splits.x_val) == 60 and len(splits.x_test) == 1000
    assert splits.sample_shape == (40,) and splits.num_classes == 10
    # standardized with training statistics only: train is exactly zero-mean, the others only roughly
    assert splits.x_train.mean(0).abs().max() < 1e-5
    assert splits.x_train.std(0).sub(1).abs().max() < 1e-4
    assert splits.x_test.mean(0).abs().max() > 1e-4
    full = prepare(section("data", root=str(data_root), val_size=500, preprocess="none"), "cpu")
    assert len(full.x_train) == 3500 and len(full.x_val) == 500
    again = prepare(section("data", root=str(data_root), train_size=300, val_size=0.2, seed=1), "cpu")
    assert not torch.equal(again.y_train, splits.y_train)  # data.seed picks the subset


def test_mnist1d_is_the_papers_dataset(data_root: Path) -> None:
    splits = prepare(section("data", root=str(data_root), val_size=0, preprocess="none"), "cpu")
    assert splits.x_train.shape == (4000, 40) and splits.x_test.shape == (1000, 40)
    assert set(splits.y_train.tolist()) == set(range(10))
    assert len(splits.x_val) == 0


def test_report_command_formats(cli, tiny) -> None:
    tiny["grid"] = {"model.activation": ["relu", "tanh"]}
    _, root = run(cli, tiny)
    table = cli("report", root)
    assert table.exit_code == 0 and "relu" in table.stdout and "tanh" in table.stdout
    as_csv = cli("report", root, "--format", "csv")
    assert as_csv.stdout.splitlines()[0].startswith("model.activation,n,")
    records = json.loads(cli("report", root, "--format", "json").stdout)["configurations"]
    assert {r["model.activation"] for r in records} == {"relu", "tanh"}
    assert all(r["gap_mean"] == pytest.approx(r["train_acc_mean"] - r["test_acc_mean"]) for r in records)
    md = cli("report", root, "--format", "markdown").stdout
    assert md.startswith("| model.activation |") and md.split("\n\n")[0].count("\n") == 3
    missing = cli("report", cli.tmp_path / "nothing")
    assert missing.exit_code == 2 and "nothing: no such folder" in missing.stderr


def test_finished_runs_are_skipped_on_rerun(cli, tiny) -> None:
    _, root = run(cli, tiny)
    (run_dir,) = list((root / "runs").iterdir())
    before = (run_dir / "metrics.csv").read_text()
    result, _ = run(cli, tiny)
    assert "already finished" in result.stdout
    assert (run_dir / "metrics.csv").read_text() == before


def test_cuda_without_a_gpu_is_a_clear_error(cli, tiny, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result, _ = run(cli, tiny, "--device", "cuda")
    assert result.exit_code == 2 and "train.device" in result.stderr and "CUDA is not available" in result.stderr


def test_list_shows_every_registry(cli) -> None:
    from dlbench.components.data import DATASETS
    from dlbench.components.inits import INITS
    from dlbench.components.losses import LOSSES
    from dlbench.components.models import ACTIVATIONS, MODELS, NORMS
    from dlbench.components.optimizers import OPTIMIZERS

    result = cli("list")
    assert result.exit_code == 0
    for registry in (DATASETS, MODELS, ACTIVATIONS, NORMS, INITS, OPTIMIZERS, LOSSES):
        for name in registry.names():
            assert name in result.stdout
