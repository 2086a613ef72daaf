"""The CUDA path on a real GPU (`make test-gpu`; skipped where there is none): stacks of one and of many
train without a host read in the step, checkpoint and resume, the launchers with GPU requests, mixed
precision, memory estimates and an out-of-memory stack split, and CPU / CUDA agreement.

Tolerances, stated once: a run trained on CPU and on CUDA (same batches: the batch order is drawn on
the host) agrees to rel 1e-3 in its losses and 1 percentage point in its accuracies after 40 steps
(different matmul kernels, float32 throughout: TF32 stays off, torch's default for matmuls).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any
from collections.abc import Iterator

import pytest
import torch

from dlbench.plan import sweep
from dlbench.config import schema
from dlbench.execution.launchers import EXECUTORS, Options
from dlbench.training import engine, memory
from dlbench.training.run import RunResult
from sweep_util import tiny_config

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (make test-gpu)")]

GPU = torch.device("cuda")
CPU = torch.device("cpu")


def _specs(raw: dict[str, Any]) -> list[sweep.RunSpec]:
    return sweep.expand(schema.validate(raw), raw)


def _raw(data_root: Path, runs: int = 4, **sections: Any) -> dict[str, Any]:
    train = {"steps": 40, "batch_size": 50, "eval_every": 10, "seeds": [0], "device": "cuda",
             **sections.pop("train", {})}
    return tiny_config(data_root, model={"hidden": [32, 32]}, optimizer={"name": "adam", "lr": 0.01},
                       grid={"optimizer.lr": [0.01 * (i + 1) for i in range(runs)]}, train=train, **sections)


def _rows(results: list[RunResult]) -> dict[str, list[dict[str, float]]]:
    return {r.spec.run_id: [{k: v for k, v in m.items() if k != "seconds"} for m in r.metrics] for r in results}


def _close(a: dict[str, list[dict[str, float]]], b: dict[str, list[dict[str, float]]], rel: float,
           acc: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for run_id in a:
        assert len(a[run_id]) == len(b[run_id])
        for x, y in zip(a[run_id], b[run_id]):
            for k in x:
                if isinstance(x[k], float) and math.isnan(x[k]):
                    assert math.isnan(y[k])
                elif k.endswith("_acc"):
                    assert abs(x[k] - y[k]) <= acc + 1e-12, (k, x[k], y[k])
                else:
                    assert x[k] == pytest.approx(y[k], rel=rel, abs=1e-7), (k, x[k], y[k])


@pytest.fixture
def no_sync_in_steps(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Raise on any synchronizing CUDA call made by a training step (evaluations may read back)."""
    evaluation = engine.Stack._evaluation

    def allowed(self: engine.Stack, progress: Any) -> Iterator[RunResult]:
        torch.cuda.set_sync_debug_mode(0)
        try:
            yield from evaluation(self, progress)
        finally:
            torch.cuda.set_sync_debug_mode("error")

    run = engine.Stack.run

    def checked(self: engine.Stack, progress: Any = None, after_step: Any = None) -> Iterator[RunResult]:
        def watch(stack: engine.Stack) -> None:  # from the second step on: the first builds cached tensors
            torch.cuda.set_sync_debug_mode("error" if stack.step >= 1 else 0)
            if after_step:
                after_step(stack)
        try:
            yield from run(self, progress, watch)
        finally:
            torch.cuda.set_sync_debug_mode(0)

    monkeypatch.setattr(engine.Stack, "_evaluation", allowed)
    monkeypatch.setattr(engine.Stack, "run", checked)
    yield


@pytest.mark.parametrize("runs", [1, 16])
def test_stacks_train_on_cuda_without_a_host_read_in_the_step(data_root: Path, runs: int,
                                                              no_sync_in_steps: None) -> None:
    raw = _raw(data_root, runs, model={"hidden": [32, 32], "dropout": 0.2}, regularization={"input_noise": 0.1},
               optimizer={"name": "adam", "lr": 0.01, "clip_norm": 1.0}, schedule={"name": "cosine", "warmup": 5})
    results = list(engine.train(_specs(raw), GPU))
    assert len(results) == runs and {r.status for r in results} == {"ok"}
    assert all(r.summary["device"].startswith("cuda") for r in results)
    assert all(r.metrics[-1]["train_loss"] < r.metrics[0]["train_loss"] for r in results)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_steps_make_no_host_read(data_root: Path, precision: str, no_sync_in_steps: None) -> None:
    """fp16's per-run loss scaling (unscale, the skipped update of an overflowing run, the scale's update)
    and bf16's autocast stay on the device too."""
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    raw = _raw(data_root, 4, model={"hidden": [32, 32], "dropout": 0.2}, train={"precision": precision})
    results = list(engine.train(_specs(raw), GPU))
    assert {r.status for r in results} == {"ok"} and {r.summary["precision"] for r in results} == {precision}


def test_a_diverging_run_is_found_at_the_next_evaluation(data_root: Path) -> None:
    raw = _raw(data_root, 1, grid={"optimizer": [{"name": "adam", "lr": 0.01}, {"name": "sgd", "lr": 1.0e5}]})
    on_gpu = {r.spec.run_id: r for r in engine.train(_specs(raw), GPU)}
    on_cpu = {r.spec.run_id: r for r in engine.train(_specs({**raw, "train": {**raw["train"], "device": "cpu"}}),
                                                     CPU)}
    for run_id, r in on_gpu.items():
        assert r.status == on_cpu[run_id].status
        assert r.summary["diverged_step"] == on_cpu[run_id].summary["diverged_step"]


def test_cpu_and_cuda_agree(data_root: Path) -> None:
    raw = _raw(data_root, 4)
    gpu = _rows(list(engine.train(_specs(raw), GPU)))
    cpu = _rows(list(engine.train(_specs({**raw, "train": {**raw["train"], "device": "cpu"}}), CPU)))
    _close(gpu, cpu, rel=1e-3, acc=0.01)


def test_a_run_draws_the_same_masks_in_any_stack_on_cuda(data_root: Path) -> None:
    raw = _raw(data_root, 4, model={"hidden": [32, 32], "dropout": 0.3}, regularization={"input_noise": 0.2})
    specs = _specs(raw)
    together = _rows(list(engine.train(specs, GPU)))
    alone = _rows(list(engine.train(specs[2:3], GPU)))
    _close({k: together[k] for k in alone}, alone, rel=1e-4)


def test_augmentation_is_drawn_for_the_stack_without_a_host_read_and_each_runs_own(tmp_path: Path,
                                                                                   no_sync_in_steps: None) -> None:
    from test_techniques import _fake_mnist

    root = _fake_mnist(tmp_path / "mnist")
    raw = tiny_config(root, data={"root": str(root), "dataset": "mnist", "download": False, "train_size": 300},
                      grid={"regularization.augment": ["none", "shift", "crop_flip"]},
                      train={"steps": 20, "batch_size": 50, "eval_every": 10, "seeds": [0, 1], "device": "cuda"})
    specs = _specs(raw)
    together = _rows(list(engine.train(specs, GPU)))
    crop = [s for s in specs if s.params["regularization.augment"] == "crop_flip"]
    _close({s.run_id: together[s.run_id] for s in crop}, _rows(list(engine.train(crop, GPU))), rel=1e-4)


def test_the_same_stack_twice_gives_identical_numbers_with_deterministic_algorithms(data_root: Path) -> None:
    """docs/gpu.md's promise: with torch.use_deterministic_algorithms (and cuBLAS's workspace setting,
    which make test-gpu exports), the same config, seed and stack give bit-identical metrics."""
    if os.environ.get("CUBLAS_WORKSPACE_CONFIG") not in (":4096:8", ":16:8"):
        pytest.skip("CUBLAS_WORKSPACE_CONFIG=:4096:8 must be set before CUDA starts (make test-gpu sets it)")
    raw = _raw(data_root, 4, model={"hidden": [32, 32], "dropout": 0.3}, regularization={"input_noise": 0.2})
    torch.use_deterministic_algorithms(True)
    try:
        first = _rows(list(engine.train(_specs(raw), GPU)))
        assert _rows(list(engine.train(_specs(raw), GPU))) == first
    finally:
        torch.use_deterministic_algorithms(False)


def test_checkpoint_and_resume_on_cuda(data_root: Path, tmp_path: Path) -> None:
    raw = _raw(data_root, 4, model={"hidden": [32], "dropout": 0.2}, regularization={"input_noise": 0.1},
               train={"checkpoint_seconds": None})
    specs = _specs(raw)
    reference = _rows(list(EXECUTORS["local"].builder(specs, GPU)))
    options = Options(checkpoints=tmp_path / ".checkpoints")
    stop_at = 17
    run = engine.Stack.run

    def interrupted(self: engine.Stack, progress: Any = None, after_step: Any = None) -> Iterator[RunResult]:
        def stop(stack: engine.Stack) -> None:
            if stack.step == stop_at:
                from dlbench.training import checkpoint
                saves = checkpoint.Checkpoint(checkpoint.path_for(options.checkpoints, specs), None)
                saves.save(stack.state())
                raise KeyboardInterrupt
        return run(self, progress, stop)

    engine.Stack.run = interrupted  # type: ignore[method-assign]
    try:
        with pytest.raises(KeyboardInterrupt):
            list(EXECUTORS["local"].builder(specs, GPU, options=options))
    finally:
        engine.Stack.run = run  # type: ignore[method-assign]
    resumed = _rows(list(EXECUTORS["local"].builder(specs, GPU, options=options)))
    _close(resumed, reference, rel=1e-5)


def test_launchers_with_gpu_requests(data_root: Path) -> None:
    specs = _specs(_raw(data_root, 4))
    local = _rows(list(EXECUTORS["local"].builder(specs, GPU)))
    processes = _rows(list(EXECUTORS["processes"].builder(specs, GPU, options=Options(workers=2))))
    _close(processes, local, rel=1e-4)
    pytest.importorskip("ray")
    ray = _rows(list(EXECUTORS["ray"].builder(specs, GPU, options=Options(workers=1))))
    _close(ray, local, rel=1e-4)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_and_is_recorded(data_root: Path, precision: str) -> None:
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    raw = _raw(data_root, 4, train={"precision": precision})
    results = list(engine.train(_specs(raw), GPU))
    fp32 = {r.spec.config.optimizer.lr: r for r in engine.train(_specs(_raw(data_root, 4)), GPU)}
    for r in results:
        assert r.status == "ok" and r.summary["precision"] == precision
        assert r.metrics[-1]["train_loss"] == pytest.approx(fp32[r.spec.config.optimizer.lr].metrics[-1]["train_loss"],
                                                            rel=0.05)


def test_the_estimate_is_near_the_measured_peak_on_cuda(data_root: Path) -> None:
    raw = _raw(data_root, 8, model={"hidden": [1024, 1024]}, train={"steps": 3})
    specs = _specs(raw)
    est = memory.estimate(specs[0], GPU).total(len(specs))
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    list(engine.train(specs, GPU))
    peak = torch.cuda.max_memory_allocated() - before
    assert 0.7 < est / peak < 2.5, (est, peak)


def test_a_stack_out_of_memory_on_cuda_splits_and_finishes(data_root: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    raw = _raw(data_root, 16, model={"hidden": [2048, 2048]}, train={"steps": 6, "checkpoint_seconds": 0})
    specs = _specs(raw)
    per_run = memory.estimate(specs[0], GPU).per_run
    monkeypatch.setattr(memory, "free_bytes", lambda device: 1 << 50)  # the plan thinks all fits
    total = torch.cuda.get_device_properties(GPU).total_memory
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(min(1.0, (torch.cuda.memory_allocated() + 8 * per_run) / total))
    try:
        told: list[str] = []
        results = list(EXECUTORS["local"].builder(specs, GPU, options=Options(checkpoints=tmp_path / "ck",
                                                                               tell=told.append)))
        assert told and all("ran out of memory" in line for line in told), told
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    assert len(results) == 16 and {r.status for r in results} == {"ok"}


def test_dry_run_reads_the_gpus_free_memory(data_root: Path, cli: Any) -> None:
    out = cli("run", cli.write(_raw(data_root, 4)), "--out", cli.tmp_path / "r", "--dry-run")
    assert out.exit_code == 0, out.err
    assert out.out.strip().splitlines()[-1].endswith("free on cuda")
