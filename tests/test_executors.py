"""Launchers: stacking, the same run in different stacks, and the same files from every launcher."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from dlbench.config import schema as config
from dlbench.plan import stacks, sweep
from sweep_util import dlbench
from dlbench.errors import ConfigError
from dlbench.execution.launchers import EXECUTORS, Options, describe, planned, resolve, shares
from dlbench.training.run import RunResult
from dlbench.training import engine

CPU = torch.device("cpu")
# the same run in a stack of many vs a stack of one: batched and single matmuls round differently,
# and training amplifies the differences; measured worst case on these configs ~1e-5, checked with margin
LOSS_RTOL = 2e-4


def _config(data_root: Path, **sections: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "grid",
        "data": {"root": str(data_root), "train_size": 230, "val_size": 30},
        "model": {"hidden": [16, 16]},
        "train": {"steps": 12, "eval_every": 4, "batch_size": 32, "seeds": [0, 1]},
    }
    return config.merge(base, sections)


def _specs(raw: dict[str, Any]) -> list[sweep.RunSpec]:
    return sweep.expand(config.validate(raw), raw)


def _by_id(results: list[RunResult]) -> dict[str, RunResult]:
    return {r.spec.run_id: r for r in results}


def _untimed(metrics: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in m.items() if k != "seconds"} for m in metrics]


def _assert_close_runs(expected: RunResult, got: RunResult) -> None:
    assert (got.status, len(got.metrics)) == (expected.status, len(expected.metrics)), got.spec.params
    for key in ("status", "diverged_step", "stopped_early", "steps", "epochs", "batch_size", "n_params"):
        assert got.summary[key] == expected.summary[key], key
    for a, b in zip(expected.metrics, got.metrics):
        for k, v in a.items():
            if k == "seconds":
                continue
            if k.endswith("_acc"):  # an argmax may flip on a near tie: at most one sample
                n = {"train": 200, "val": 30, "test": 1000}[k.split("_")[0]]
                assert abs(b[k] - v) <= 1 / n + 1e-12, (k, a["step"], v, b[k])
            elif math.isfinite(v):
                assert b[k] == pytest.approx(v, rel=LOSS_RTOL), (k, a["step"], got.spec.params)
            else:
                assert not math.isfinite(b[k]), k


# ------------------------------------------------------------------ grouping


def test_runs_differing_only_in_values_share_a_stack(data_root: Path) -> None:
    raw = _config(data_root, grid={
        "optimizer": [{"name": "sgd", "lr": 0.1}, {"name": "adam", "lr": 0.01, "weight_decay": 0.1}],
        "init.scheme": ["he_normal", "orthogonal"],
        "model.dropout": [0.0, 0.5],
        "regularization": [{}, {"l1": 0.001, "input_noise": 0.1, "early_stopping": 2}],
        "diagnostics.weights": [False, True],
    })
    specs = _specs(raw)
    assert [len(g) for g in stacks.stacks(specs)] == [len(specs)]
    assert [len(g) for g in stacks.stacks(specs, max_stack=20)] == [16, 16, 16, 16]
    # every worker busy: a 64-run stack on 2 workers is two stacks of 32
    assert [len(job.stack) for job in shares(specs, 2)] == [32, 32]
    # ... but a search round that prunes stays whole: halving compares the runs of one stack
    pruning = sweep.Pruning(every=1, keep=0.5, group="g", point="p")
    searched = [dataclasses.replace(s, pruning=pruning) for s in specs[:16]] + specs[16:]
    assert sorted(len(job.stack) for job in shares(searched, 2)) == [16, 24, 24]
    # --dry-run shows the stacks each launcher forms (it once split the pruning round for processes too)
    cpu = torch.device("cpu")
    for executor, workers, expect in [("local", None, [64]), ("serial", None, [1] * 64),
                                      ("processes", 2, [16, 24, 24]), ("ray", 2, [16, 24, 24]),
                                      ("slurm", None, [64]), ("slurm", 3, [16, 16, 16, 16])]:
        shown = planned(executor, searched, cpu, Options(workers=workers))
        assert sorted(len(p.runs) for p in shown) == expect, executor


@pytest.mark.parametrize("key, values", [
    ("model.hidden", [[16], [8]]), ("model.norm", ["none", "batch"]), ("model.activation", ["relu", "tanh"]),
    ("data.train_size", [200, 230]), ("train.batch_size", [32, 16]), ("train.steps", [12, 8]),
    ("loss", ["cross_entropy", "mse"]),
])
def test_runs_differing_in_structure_or_schedule_do_not(data_root: Path, key: str, values: list[Any]) -> None:
    specs = _specs(_config(data_root, grid={key: values}))
    assert [len(g) for g in stacks.stacks(specs)] == [2, 2]


# ------------------------------------------------------------------ the same run in different stacks


def _serial_and_vectorized(raw: dict[str, Any]) -> tuple[dict[str, RunResult], dict[str, RunResult]]:
    """Every run in a stack of one and in the sweep's stacks."""
    specs = _specs(raw)
    serial = _by_id(list(EXECUTORS["serial"].builder(specs, CPU)))
    vec = _by_id(list(EXECUTORS["local"].builder(specs, CPU)))
    assert serial.keys() == vec.keys()
    return serial, vec


def test_a_run_in_a_big_stack_matches_its_stack_of_one_for_every_optimizer_and_per_run_value(data_root: Path) -> None:
    """One stack holding every optimizer with its own hyperparameters, dropout masks, noise, BatchNorm statistics.

    BatchNorm after the activation: before it, the preceding bias has zero true gradient, and adaptive
    optimizers blow its rounding noise up into full steps, in a stack of one as much as here.
    """
    raw = _config(data_root, model={"norm": "batch", "norm_position": "post"},
                  regularization={"l1": 0.001, "input_noise": 0.2}, grid={
        "optimizer": [{"name": "sgd", "lr": 0.1, "weight_decay": 0.01},
                      {"name": "momentum", "lr": 0.05, "momentum": 0.5},
                      {"name": "nesterov", "lr": 0.02, "weight_decay": 0.001},
                      {"name": "adagrad", "lr": 0.05},
                      {"name": "rmsprop", "lr": 0.002, "alpha": 0.9, "momentum": 0.5, "weight_decay": 0.01},
                      {"name": "adam", "lr": 0.01, "betas": [0.8, 0.99]},
                      {"name": "adamw", "lr": 0.003, "weight_decay": 0.1}],
        "model.dropout": [0.0, 0.3],
    })
    raw["train"]["seeds"] = [3]
    serial, vec = _serial_and_vectorized(raw)
    assert len(stacks.stacks(_specs(raw))) == 1
    for run_id, expected in serial.items():
        _assert_close_runs(expected, vec[run_id])
    # BatchNorm statistics stay per run: the eval-mode metrics (running statistics) differ between runs
    assert len({r.metrics[-1]["test_loss"] for r in vec.values()}) == len(vec)


def test_early_stopping_and_divergence_are_per_run(data_root: Path) -> None:
    """... and runs with and without L1 / input noise share the stack."""
    raw = _config(data_root, train={"steps": 24, "eval_every": 2}, grid={
        "optimizer": [{"name": "sgd", "lr": 0.05}, {"name": "sgd", "lr": 1.0e4}, {"name": "adam", "lr": 1.0}],
        "regularization": [{}, {"early_stopping": 1, "l1": 0.001, "input_noise": 0.1}],
    })
    serial, vec = _serial_and_vectorized(raw)
    statuses = {(r.status, r.summary["stopped_early"]) for r in vec.values()}
    assert {("ok", False), ("ok", True), ("diverged", False)} <= statuses
    for run_id, expected in serial.items():
        _assert_close_runs(expected, vec[run_id])


def test_a_diverging_run_does_not_touch_the_others(data_root: Path) -> None:
    healthy = {"name": "adam", "lr": 0.01}
    alone = _specs(_config(data_root, optimizer=healthy))
    crowded = _specs(_config(data_root, grid={"optimizer": [healthy, {"name": "sgd", "lr": 1.0e5}]}))
    results = _by_id(list(EXECUTORS["local"].builder(crowded, CPU)))
    assert sorted(r.status for r in results.values()) == ["diverged", "diverged", "ok", "ok"]
    for r in engine.train(alone, CPU):
        assert _untimed(results[r.spec.run_id].metrics) == _untimed(r.metrics)


def test_a_crashing_stack_retrains_its_runs_in_stacks_of_one(data_root: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    specs = _specs(_config(data_root, grid={"optimizer.lr": [0.01, 0.02]}))
    serial = _by_id(list(EXECUTORS["serial"].builder(specs, CPU)))
    run = engine.Stack.run

    def out_of_memory_when_stacked(self: engine.Stack, *args: Any) -> Any:
        if len(self.runs) > 1:
            raise RuntimeError("out of memory")
        return run(self, *args)

    monkeypatch.setattr(engine.Stack, "run", out_of_memory_when_stacked)
    told: list[str] = []
    local = _by_id(list(EXECUTORS["local"].builder(specs, CPU, options=Options(tell=told.append))))
    assert told == ["a stack of 4 runs stopped (RuntimeError: out of memory); training its 4 unfinished runs "
                    "one by one"]
    for run_id, expected in serial.items():  # stacks of one: identical numbers
        assert _untimed(local[run_id].metrics) == _untimed(expected.metrics)


def test_progress_names_the_stack_and_what_varies_in_it(data_root: Path) -> None:
    specs = _specs(_config(data_root, grid={"optimizer.name": ["sgd", "adam"], "optimizer.lr": [0.1, 0.2]}))
    assert describe(specs) == "stack of 8 runs (optimizer.name=sgd|adam, optimizer.lr=0.1|0.2, 2 seeds)"
    assert describe(specs[:1]) == "optimizer.name=sgd, optimizer.lr=0.1, seed=0"
    steps: list[tuple[int, int, int]] = []
    list(EXECUTORS["local"].builder(specs, CPU, lambda stack: lambda *a: steps.append(a)))
    assert steps == [(0, 12, 8), (4, 12, 8), (8, 12, 8), (12, 12, 8)]  # first: where the stack starts


# ------------------------------------------------------------------ the CLI and the files


def _run_cli(tmp_path: Path, raw: dict[str, Any], *args: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "results"
    result = dlbench("run", path, "--out", out, *args)
    assert result.exit_code == 0, result.output
    return out / raw["name"]


def _files(root: Path) -> dict[str, tuple[list[dict[str, str]], dict[str, Any]]]:
    """run id -> (metrics rows without timing, summary without timing / thread count)."""
    out = {}
    for run in sorted((root / "runs").iterdir()):
        with open(run / "metrics.csv") as f:
            rows = [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]
        summary = json.loads((run / "summary.json").read_text())
        for k in ("wall_time", "device"):
            summary.pop(k)
        for k in ("final", "best"):
            summary[k].pop("seconds")
        out[run.name] = (rows, summary)
    return out


@pytest.fixture(scope="module")
def cli_grid(data_root: Path) -> dict[str, Any]:
    return _config(data_root, name="executors", grid={"optimizer.name": ["sgd", "adam"]})


@pytest.fixture(scope="module")
def serial_files(cli_grid: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _files(_run_cli(tmp_path_factory.mktemp("serial"), cli_grid, "--executor", "serial"))


def test_processes_with_a_worker_per_run_give_the_serial_files(cli_grid: dict[str, Any],
                                                               serial_files: dict[str, Any], tmp_path: Path) -> None:
    assert _files(_run_cli(tmp_path, cli_grid, "--executor", "processes", "--workers", "4")) == serial_files


@pytest.fixture(scope="module")
def two_stacks(cli_grid: dict[str, Any]) -> dict[str, Any]:
    """Two structures x 2 seeds: local trains two stacks of 2; 2 workers get the same two stacks."""
    return {**cli_grid, "name": "two_stacks", "grid": {"model.hidden": [[16], [8]]}}


@pytest.fixture(scope="module")
def local_files(two_stacks: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _files(_run_cli(tmp_path_factory.mktemp("local"), two_stacks))


def test_processes_split_stacks_and_match_local_with_the_same_stacks(two_stacks: dict[str, Any],
                                                                     local_files: dict[str, Any],
                                                                     tmp_path: Path) -> None:
    assert _files(_run_cli(tmp_path, two_stacks, "--executor", "processes", "--workers", "2")) == local_files


def test_default_executor_is_local_and_close_to_serial(cli_grid: dict[str, Any], serial_files: dict[str, Any],
                                                           tmp_path: Path) -> None:
    files = _files(_run_cli(tmp_path, cli_grid))
    assert files.keys() == serial_files.keys()
    for run_id, (rows, summary) in files.items():
        expected_rows, expected_summary = serial_files[run_id]
        assert summary.keys() == expected_summary.keys()
        assert [r.keys() for r in rows] == [r.keys() for r in expected_rows]
        for got, want in zip(rows, expected_rows):
            for k in ("train_loss", "val_loss", "test_loss"):
                assert float(got[k]) == pytest.approx(float(want[k]), rel=LOSS_RTOL)


def test_ray_executor_with_a_local_ray_instance(two_stacks: dict[str, Any], local_files: dict[str, Any],
                                                tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert _files(_run_cli(tmp_path, two_stacks, "--executor", "ray", "--workers", "2")) == local_files
    finally:
        ray.shutdown()


@pytest.mark.parametrize("args, message", [
    (["--executor", "threads"], "--executor: 'threads' is invalid; allowed: auto, local, serial, processes, ray"),
    (["--address", "10.0.0.1:6379"], "--address: '10.0.0.1:6379' is invalid with --executor local"),
    (["--executor", "serial", "--workers", "4"], "--workers: 4 is invalid with --executor serial"),
])
def test_bad_executor_options_are_one_line_errors(cli_grid: dict[str, Any], tmp_path: Path, args: list[str],
                                                  message: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cli_grid))
    result = dlbench("run", path, "--out", tmp_path, *args)
    assert result.exit_code == 2
    assert result.error_line.startswith(f"error: {message}")


def test_ray_missing_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch, data_root: Path) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'dlbench\[ray\]'"):
        list(resolve("ray", Options())(_specs(_config(data_root)), CPU))
