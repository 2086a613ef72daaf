"""The GPU path's parts a CPU can check: per-run values declared once, divergence read from a device
tensor at evaluations, train.precision, memory-aware stacks (estimate, split, --dry-run, resuming a
stack that ran out of memory in halves). tests/test_cuda.py runs the rest where a GPU is."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from dlbench.plan import stacks, sweep
from dlbench.config import schema
from dlbench.execution.launchers import EXECUTORS, Options
from dlbench.training import engine, memory, per_run, scaling
from dlbench.training.run import RunResult
from sweep_util import REPO, ONE_THREAD, tiny_config

CPU = torch.device("cpu")


def _specs(raw: dict[str, Any]) -> list[sweep.RunSpec]:
    return sweep.expand(schema.validate(raw), raw)


def _untimed(results: list[RunResult]) -> dict[str, tuple[str, list[dict[str, Any]]]]:
    return {r.spec.run_id: (r.status, [{k: "nan" if isinstance(v, float) and math.isnan(v) else v
                                        for k, v in m.items() if k != "seconds"} for m in r.metrics])
            for r in results}


def _assert_close(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.keys() == b.keys()
        assert all(a[k] == b[k] or a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-7) for k in a), (a, b)


# ------------------------------------------------------------------ per-run values


def test_every_saved_per_run_value_is_in_the_checkpoint_and_comes_back(data_root: Path) -> None:
    raw = tiny_config(data_root, model={"hidden": [8], "dropout": 0.2}, regularization={"input_noise": 0.1},
                      grid={"optimizer.lr": [0.1, 0.2, 0.3]})
    stack = engine.Stack(_specs(raw), CPU)
    saved = [f.name for f in dataclasses.fields(per_run.PerRun) if f.metadata.get("save") is not None]
    rows = [f.name for f in dataclasses.fields(per_run.PerRun)
            if f.metadata.get("save") is not None and not f.metadata["stacked"]]
    class Pause(Exception):
        pass

    def pause_at_6(st: engine.Stack) -> None:
        if st.step == 6:
            raise Pause

    with pytest.raises(Pause):
        list(stack.run(after_step=pause_at_6))
    state = stack.state()
    assert all(name in state or all(name in r for r in state["runs"]) for name in saved)
    assert set(state["runs"][0]) == set(rows)
    # a stack of two of its runs resumes from it: each run's values are its own rows
    part = engine.Stack(_specs(raw)[1:], CPU)
    part.restore(state)
    ids = [s.run_id for s in part.runs]
    assert ids == [s.run_id for s in stack.runs[1:]] and part.step == stack.step
    for name in ("batch_loss_sum", "perms", "diverged_at"):
        assert torch.equal(getattr(part.v, name), getattr(stack.v, name)[1:])
    assert part.v.metrics == stack.v.metrics[1:]
    assert all(torch.equal(a.get_state(), b.get_state()) for a, b in zip(part.v.rng, stack.v.rng[1:]))


# ------------------------------------------------------------------ divergence without a per-step sync


def test_divergence_read_at_evaluations_finds_the_step_it_happened(data_root: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the step reads nothing back (GPUs), a diverged run trains on until the next evaluation; it is
    then diverged at the step its loss first went non-finite, and the other runs' numbers do not change."""
    raw = tiny_config(data_root, grid={"optimizer": [{"name": "adam", "lr": 0.01}, {"name": "sgd", "lr": 1.0e5}]},
                      train={"steps": 24, "batch_size": 50, "eval_every": 8, "seeds": [0], "device": "cpu"})
    every_step = {r.spec.run_id: r for r in engine.train(_specs(raw), CPU)}
    monkeypatch.setattr(engine, "DIVERGENCE_EVERY_STEP", frozenset())
    deferred = {r.spec.run_id: r for r in engine.train(_specs(raw), CPU)}
    statuses = sorted(r.status for r in deferred.values())
    assert statuses == ["diverged", "ok"]
    for run_id, r in deferred.items():
        before = every_step[run_id]
        assert r.status == before.status and r.summary["diverged_step"] == before.summary["diverged_step"]
        if r.status == "ok":  # its stack-mate left the stack later: float rounding only
            _assert_close(_untimed([r])[run_id][1], _untimed([before])[run_id][1])
        else:  # evaluated at the next evaluation, not before the step
            assert r.metrics[-1]["step"] % 8 == 0 and r.metrics[-1]["step"] >= r.summary["diverged_step"]


# ------------------------------------------------------------------ precision


def test_fp16_is_refused_on_cpu_in_one_line(cli: Any, data_root: Path) -> None:
    raw = tiny_config(data_root, train={"steps": 4, "seeds": [0], "device": "cpu", "precision": "fp16"})
    for args in ([], ["--dry-run"]):
        out = cli("run", cli.write(raw), "--out", cli.tmp_path / "r", *args)
        assert out.exit_code == 2
        assert "train.precision: 'fp16' is invalid on cpu" in out.error_line and "fp32 or bf16" in out.error_line


def test_bf16_trains_on_cpu_is_recorded_and_fp32_keeps_its_run_ids(data_root: Path) -> None:
    raw = tiny_config(data_root, grid={"optimizer.lr": [0.1, 0.2]})
    fp32 = _specs(raw)
    explicit = _specs({**raw, "train": {**raw["train"], "precision": "fp32"}})
    bf16 = _specs({**raw, "train": {**raw["train"], "precision": "bf16"}})
    assert [s.run_id for s in explicit] == [s.run_id for s in fp32]  # the key's default leaves ids as they were
    assert not {s.run_id for s in bf16} & {s.run_id for s in fp32}
    results = {r.spec.seed: r for r in engine.train(bf16, CPU)}
    reference = {r.spec.seed: r for r in engine.train(fp32, CPU)}
    for seed, r in results.items():
        assert r.status == "ok" and r.summary["precision"] == "bf16"
        # bfloat16 keeps 8 bits of mantissa: the losses agree to about 1e-2, not bit for bit
        assert r.metrics[-1]["train_loss"] == pytest.approx(reference[seed].metrics[-1]["train_loss"], rel=0.05)


def test_fp16_loss_scale_backs_off_on_overflow_and_keeps_the_weights(data_root: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The scaler's logic, run on a CPU (fp16 autocast exists there; dlbench refuses it for speed and support):
    a scale that overflows float32 leaves the run's weights as they were and is halved until it fits."""
    monkeypatch.setattr(engine, "check_precision", lambda precision, device: None)
    monkeypatch.setattr(per_run, "INITIAL_SCALE", 2.0 ** 30)  # fp16's largest is 65504: the backward overflows
    raw = tiny_config(data_root, grid={"optimizer.lr": [0.1, 0.2]},
                      train={"steps": 20, "batch_size": 50, "eval_every": 10, "seeds": [0], "device": "cpu",
                             "precision": "fp16"})
    stack = engine.Stack(_specs(raw), CPU)
    first = {k: v.detach().clone() for k, v in stack.params.items()}
    scales: list[list[float]] = []
    weights_moved: list[bool] = []

    def look(st: engine.Stack) -> None:
        scales.append(st.v.loss_scale.tolist())
        weights_moved.append(any(not torch.equal(first[k], v) for k, v in st.params.items()))

    results = list(stack.run(after_step=look))
    assert [r.status for r in results] == ["ok", "ok"]
    assert scales[0] == [2.0 ** 29] * 2 and not weights_moved[0]  # overflowed: halved, weights kept
    assert scales[-1] == scales[-2] and scales[-1][0] < 2.0 ** 29 and weights_moved[-1]  # it fits: trains



def test_the_scaler_logic_is_grad_scalers_run_by_run() -> None:
    """scaling.unscale_ and scaling.update on three runs against one torch.amp.GradScaler per run, through
    a sequence of steps with inf gradients, nan gradients, growth and backoff."""
    interval = 3
    overflows = [[False, True, False], [False, False, True], [True, False, False], [False, False, False],
                 [False, True, False], [False, False, False], [False, False, False], [False, False, False]]
    scale = torch.tensor([2.0 ** 16, 2.0 ** 3, 2.0 ** 127])  # the last would grow past float32: it stays
    good = torch.zeros(3, dtype=torch.long)
    params = [torch.nn.Parameter(torch.zeros(4)) for _ in range(3)]
    opts = [torch.optim.SGD([p], lr=0.1) for p in params]
    scalers = [torch.amp.GradScaler("cpu", init_scale=float(scale[r]), growth_interval=interval) for r in range(3)]
    for step, flags in enumerate(overflows):
        grad = torch.linspace(-1.0, 1.0, 4).repeat(3, 1) * scale.clamp(max=2.0 ** 20)[:, None] * (step + 1)
        for r, bad in enumerate(flags):
            if bad:
                grad[r, r % 4] = math.inf if step % 2 else math.nan
        stacked = grad.clone()
        overflow = scaling.unscale_([stacked], scale)
        scale, good = scaling.update(scale, good, overflow, growth_interval=interval)
        assert overflow.tolist() == flags
        for r in range(3):
            scalers[r].scale(torch.ones(()))  # what the backward would have scaled (it starts the scaler)
            params[r].grad = grad[r].clone()
            scalers[r].unscale_(opts[r])
            if not flags[r]:
                assert torch.equal(stacked[r], params[r].grad)  # the same unscaled gradient
            else:
                assert torch.equal(stacked[r], torch.zeros(4))
            scalers[r].step(opts[r])
            scalers[r].update()
            assert float(scale[r]) == scalers[r].get_scale(), (step, r)
            assert int(good[r]) == int(scalers[r]._get_growth_tracker()), (step, r)


def test_fp16_overflow_skips_the_runs_update_and_keeps_its_optimizer_state(data_root: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A run whose gradients overflow skips its step as GradScaler skips it: its weights and optimizer state
    (Adam's moments, the momentum buffer) stay as they were; the other run's step is taken."""
    monkeypatch.setattr(engine, "check_precision", lambda precision, device: None)
    raw = tiny_config(data_root, grid={"optimizer": [{"name": "adam", "lr": 0.01}, {"name": "momentum", "lr": 0.1}]},
                      train={"steps": 10, "batch_size": 50, "eval_every": 5, "seeds": [0], "device": "cpu",
                             "precision": "fp16"})
    stack = engine.Stack(_specs(raw), CPU)
    assert [s.config.optimizer.name for s in stack.runs] == ["adam", "momentum"]
    snapshots: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
    scales: dict[int, list[float]] = {}

    def snapshot(st: engine.Stack) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return ([p.detach().clone() for p in st.params.values()],
                [t.clone() for t in st._optimizer_state().values()])

    def look(st: engine.Stack) -> None:
        snapshots[st.step] = snapshot(st)
        scales[st.step] = st.v.loss_scale.tolist()
        if st.step in (5, 7):  # the next step of run 0 (at 5), of run 1 (at 7) overflows fp16; the other's fits
            st.v.loss_scale = torch.tensor([2.0 ** 40, 2.0 ** 16] if st.step == 5 else [2.0 ** 16, 2.0 ** 40])

    results = list(stack.run(after_step=look))
    assert [r.status for r in results] == ["ok", "ok"]
    for step, skipped in ((6, 0), (8, 1)):
        (p_before, s_before), (p_after, s_after) = snapshots[step - 1], snapshots[step]
        assert len(s_after) == len(s_before) > 0
        for before, after in zip(p_before + s_before, p_after + s_after):
            assert torch.equal(after[skipped], before[skipped])  # skipped: as it was
        assert all(not torch.equal(a[1 - skipped], b[1 - skipped]) for a, b in zip(p_after, p_before))
    assert scales[6][0] == 2.0 ** 39 and scales[8][1] == 2.0 ** 39  # halved; the other run's scale went on
    assert scales[6][1] == scales[8][0] == 2.0 ** 16


def test_fp16_trains_as_a_torch_loop_with_grad_scaler(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One run, fp16 (autocast on a CPU, forced) from a scale that overflows for its first steps, and again
    mid-run, against torch.autocast + torch.amp.GradScaler + torch.optim.SGD with momentum: the same scales,
    the same final loss (a skipped step that decayed the momentum buffer would not give it)."""
    from dlbench.components import data as data_mod
    from dlbench.components import inits, models

    monkeypatch.setattr(engine, "check_precision", lambda precision, device: None)
    monkeypatch.setattr(per_run, "INITIAL_SCALE", 2.0 ** 24)
    steps = 24
    raw = tiny_config(data_root, optimizer={"name": "momentum", "lr": 0.05, "momentum": 0.9},
                      data={"root": str(data_root), "train_size": 300, "val_size": 50},  # 5 whole batches an epoch
                      train={"steps": steps, "batch_size": 50, "eval_every": steps, "seeds": [3], "device": "cpu",
                             "precision": "fp16"})
    (spec,) = _specs(raw)
    scales: list[float] = []
    stack = engine.Stack([spec], CPU)
    mid = 12  # from here the scale overflows again, for a few steps: momentum buffers then hold values

    def look(st: engine.Stack) -> None:
        if st.step == mid:
            st.v.loss_scale = torch.tensor([2.0 ** 23])
        scales.append(float(st.v.loss_scale[0]))

    (result,) = stack.run(after_step=look)
    cfg = spec.config
    splits = data_mod.prepare(cfg.data, CPU)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = models.build(cfg.model, splits.sample_shape, splits.num_classes)
        inits.initialize(model, cfg.init)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 24)
    order = torch.Generator().manual_seed(spec.seed)
    n, bs = len(splits.x_train), 50
    torch_scales = []
    for step in range(steps):
        if step % (n // bs) == 0:
            perm = torch.randperm(n, generator=order)
        idx = perm[step % (n // bs) * bs:][:bs]
        with torch.autocast("cpu", dtype=torch.float16):
            loss = torch.nn.functional.cross_entropy(model(splits.x_train[idx]), splits.y_train[idx])
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update(2.0 ** 23 if step + 1 == mid else None)
        torch_scales.append(scaler.get_scale())
    assert scales == torch_scales and scales[0] < 2.0 ** 24 and scales[mid] < 2.0 ** 23  # overflows, then trains
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.float16):
        final = torch.nn.functional.cross_entropy(model(splits.x_train), splits.y_train).item()
    assert result.metrics[-1]["train_loss"] == pytest.approx(final, rel=1e-3)

# ------------------------------------------------------------------ memory


def test_the_estimate_is_near_the_measured_peak(tmp_path: Path, data_root: Path) -> None:
    """Resident memory of a process training one stack against the estimate (roughly: within 0.7x-2x)."""
    script = f"""
import ctypes, torch
from pathlib import Path
from dlbench.config import schema
from dlbench.plan import sweep
from dlbench.components import data
from dlbench.training import engine, memory
def rss(key):
    lines = Path("/proc/self/status").read_text().splitlines()
    return next(int(l.split()[1]) * 1024 for l in lines if l.startswith(key))
raw = {{"name": "p", "data": {{"root": {str(data_root)!r}}}, "model": {{"hidden": [1024, 1024]}},
       "optimizer": {{"name": "adam", "lr": 1e-3}}, "train": {{"device": "cpu", "seeds": list(range(8)), "steps": 2}}}}
specs = sweep.expand(schema.validate(raw), raw)
data.prepare(specs[0].config.data, "cpu")
estimate = memory.estimate(specs[0], torch.device("cpu")).total(8)
ctypes.CDLL("libc.so.6").malloc_trim(0)
base = rss("VmRSS")
Path("/proc/self/clear_refs").write_text("5")  # the high-water mark starts here
list(engine.train(specs, torch.device("cpu")))
print(estimate / (rss("VmHWM") - base))
"""
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux /proc to read a peak")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**ONE_THREAD, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert 0.7 < float(done.stdout.strip().splitlines()[-1]) < 2.0


def test_a_stack_that_does_not_fit_is_split_into_equal_stacks(data_root: Path, monkeypatch: pytest.MonkeyPatch,
                                                              cli: Any) -> None:
    raw = tiny_config(data_root, model={"hidden": [256, 256]}, optimizer={"name": "adam", "lr": 0.01},
                      grid={"optimizer.lr": [0.001 * i for i in range(1, 17)]},
                      train={"steps": 2, "batch_size": 50, "seeds": [0, 1, 2, 3], "device": "cpu"})
    specs = _specs(raw)
    est = memory.estimate(specs[0], CPU)
    room = est.total(16) / memory.FRACTION_OF_FREE  # room for 16 runs of the 64
    monkeypatch.setattr(memory, "free_bytes", lambda device: int(room))
    planned = memory.plan(stacks.stacks(specs), CPU)
    assert [len(p.runs) for p in planned] == [16] * 4 and all(p.fits for p in planned)
    assert est.runs_fitting(int(room)) == 16
    # jobs of the local launcher are split alike, and --dry-run says so
    from dlbench.execution import launchers
    assert [len(j.stack) for j in launchers.jobs(specs, Options(), device=CPU)] == [16] * 4
    out = cli("run", cli.write(raw), "--out", cli.tmp_path / "r", "--dry-run")
    assert out.exit_code == 0, out.err
    line = out.out.strip().splitlines()[-1]
    assert line.startswith("4 stacks × 16 runs, about ") and line.endswith(f"{memory.size_text(int(room))} free on cpu")
    # a quarter of that room: a single run still trains, alone
    monkeypatch.setattr(memory, "free_bytes", lambda device: int(est.total(1)))
    assert {len(j.stack) for j in launchers.jobs(specs, Options(), device=CPU)} == {1}


def test_a_stack_out_of_memory_resumes_in_halves_from_its_checkpoint(data_root: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    raw = tiny_config(data_root, model={"hidden": [16], "dropout": 0.1}, optimizer={"name": "adam", "lr": 0.01},
                      grid={"optimizer.lr": [0.01, 0.02, 0.03, 0.04]},
                      train={"steps": 30, "batch_size": 50, "eval_every": 5, "seeds": [0], "device": "cpu",
                             "checkpoint_seconds": 0})
    specs = _specs(raw)
    reference = _untimed(list(EXECUTORS["local"].builder(specs, CPU)))
    losses = engine.Stack._losses
    seen: list[tuple[int, int]] = []

    def out_of_memory_at_step_17(self: engine.Stack, idx: torch.Tensor) -> torch.Tensor:
        seen.append((len(self.runs), self.step))
        if len(self.runs) == 4 and self.step == 17:
            raise torch.OutOfMemoryError("simulated: CUDA out of memory")
        return losses(self, idx)

    monkeypatch.setattr(engine.Stack, "_losses", out_of_memory_at_step_17)
    told: list[str] = []
    results = list(EXECUTORS["local"].builder(specs, CPU, options=Options(checkpoints=tmp_path / "ck",
                                                                          tell=told.append)))
    assert told == ["a stack of 4 runs ran out of memory (OutOfMemoryError); resuming it as 2 stacks of 2 runs "
                    "from step 17"]
    assert (2, 17) in seen and (2, 0) not in seen  # the halves started from the checkpoint, not afresh
    resumed = _untimed(results)
    assert set(resumed) == set(reference)
    for run_id, (status, rows) in reference.items():
        assert resumed[run_id][0] == status == "ok"
        _assert_close(resumed[run_id][1], rows)  # other stack sizes: float rounding only
    assert list((tmp_path / "ck").iterdir()) == []


# ------------------------------------------------------------------ per-run randomness, batched


def test_counter_streams_are_each_runs_own_and_reproducible() -> None:
    from dlbench.training import streams

    keys = torch.tensor([streams.key(seed, 1) for seed in (0, 1, 2)])
    together = streams.uniform(keys, 1000, (64, 10))
    alone = streams.uniform(keys[1:2], 1000, (64, 10))
    assert torch.equal(together[1:2], alone)  # a run's numbers do not depend on its stack-mates
    assert torch.equal(streams.uniform(keys, 1000, (64, 10)), together)
    assert not torch.equal(together[0], together[1])
    # the stream continues: positions 1000.. then 1640.. are one sequence
    assert torch.equal(torch.cat([together, streams.uniform(keys, 1640, (64, 10))], 1),
                       streams.uniform(keys, 1000, (128, 10)))
    u = streams.uniform(keys, 0, (100_000,))
    assert 0 <= float(u.min()) and float(u.max()) < 1 and abs(float(u.mean()) - 0.5) < 0.01
    k = streams.below(keys, 0, (90_000,), 9)
    assert k.dtype == torch.int64 and torch.equal(torch.bincount(k[0]) > 9_000, torch.ones(9, dtype=torch.bool))
    assert torch.equal(streams.below(keys[2:], 5, (300,), 9), k[2:, 5:305])  # the same hashes as uniform's
    z = streams.normal(keys, 0, (100_000,))
    assert abs(float(z.mean())) < 0.02 and abs(float(z.std()) - 1) < 0.02


def test_batched_dropout_and_noise_keep_each_runs_numbers_its_own(data_root: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """With the masks and noise drawn for the whole stack at once (as on a GPU), a run trains to the same
    numbers alone or beside others (up to the float rounding of batched matmuls), and to identical
    numbers twice."""
    monkeypatch.setattr(engine, "LOOPED_RANDOMNESS", frozenset())
    raw = tiny_config(data_root, model={"hidden": [16, 16], "dropout": 0.3}, regularization={"input_noise": 0.2},
                      grid={"optimizer.lr": [0.05, 0.1, 0.2]})
    specs = _specs(raw)
    stacked = _untimed(list(engine.train(specs, CPU)))
    assert _untimed(list(engine.train(specs, CPU))) == stacked
    alone = _untimed(list(engine.train(specs[1:2], CPU)))
    (run_id, (status, rows)), = alone.items()
    _assert_close(stacked[run_id][1], rows)
    monkeypatch.setattr(engine, "LOOPED_RANDOMNESS", frozenset({"cpu"}))  # other numbers: the batched path ran
    assert _untimed(list(engine.train(specs[1:2], CPU)))[run_id][1][-1] != rows[-1]


def test_batched_augmentation_keeps_each_runs_draws_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Augmentation drawn for a stack's runs at once (as on a GPU): a run trains to the same numbers alone or
    beside runs with other augmentations and seeds (float rounding of batched matmuls), identically twice,
    and continues from a checkpoint as if never stopped (its stream position is in the checkpoint)."""
    from test_techniques import _fake_mnist

    monkeypatch.setattr(engine, "LOOPED_RANDOMNESS", frozenset())
    raw = tiny_config(_fake_mnist(tmp_path / "mnist"), data={"root": str(tmp_path / "mnist"), "dataset": "mnist",
                                                               "download": False, "train_size": 300},
                      grid={"regularization.augment": ["none", "shift", "crop_flip"]},
                      train={"steps": 12, "batch_size": 50, "eval_every": 4, "seeds": [0, 1], "device": "cpu"})
    specs = _specs(raw)
    stacked = _untimed(list(engine.train(specs, CPU)))
    assert len(stacked) == 6 and len({rows[-1]["train_loss"] for _, rows in stacked.values()}) == 6
    assert _untimed(list(engine.train(specs, CPU))) == stacked
    for spec in specs:
        if spec.params["regularization.augment"] != "none":
            (run_id, (_, rows)), = _untimed(list(engine.train([spec], CPU))).items()
            _assert_close(stacked[run_id][1], rows)
    # paused at step 6 and resumed into a new stack: the same numbers as without the pause
    stack = engine.Stack(specs, CPU)

    class Pause(Exception):
        pass

    def pause_at_6(st: engine.Stack) -> None:
        if st.step == 6:
            raise Pause

    with pytest.raises(Pause):
        list(stack.run(after_step=pause_at_6))
    resumed = engine.Stack(specs, CPU)
    resumed.restore(stack.state())
    assert _untimed(list(resumed.run())) == stacked
    # the looped path (CPUs) draws other numbers: the batched path ran above
    monkeypatch.setattr(engine, "LOOPED_RANDOMNESS", frozenset({"cpu"}))
    crop = next(s for s in specs if s.params["regularization.augment"] == "crop_flip")
    assert _untimed(list(engine.train([crop], CPU)))[crop.run_id][1][-1] != stacked[crop.run_id][1][-1]
