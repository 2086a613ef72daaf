"""Stack checkpoints: an interrupted stack resumes from its checkpoint with the metrics of an
uninterrupted sweep, bit for bit on CPU; bad or stale checkpoints never poison a sweep."""

from __future__ import annotations

import math
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from dlbench.config.vocabulary import Vocabulary
from dlbench.plan import sweep
from dlbench.config import schema as config
from dlbench.execution.launchers import EXECUTORS, Options
from dlbench.training import checkpoint
from dlbench.training.run import RunResult
from sweep_util import dlbench, tiny_config

CPU = torch.device("cpu")


def _raw(data_root: Path, **train: Any) -> dict[str, Any]:
    """One stack of 4 runs with state everywhere: Adam moments, dropout masks, input noise, a warmup +
    cosine schedule, clipping, label smoothing, and runs that stop early (leave the stack) while the
    others train on."""
    return tiny_config(data_root, model={"hidden": [16], "dropout": 0.2},
                       optimizer={"name": "adam", "lr": 0.01, "clip_norm": 1.0},
                       schedule={"name": "cosine", "warmup": 5},
                       regularization={"input_noise": 0.1, "label_smoothing": 0.1},
                       grid={"optimizer.lr": [0.01, 0.05], "regularization.early_stopping": [None, 1]},
                       train={"steps": 40, "batch_size": 50, "eval_every": 5, "seeds": [0], "device": "cpu", **train})


def _specs(data_root: Path, **train: Any) -> list[sweep.RunSpec]:
    raw = _raw(data_root, **train)
    return sweep.expand(config.validate(raw), raw)


def _untimed(results: list[RunResult]) -> dict[str, tuple[list[dict[str, float | str]], str]]:
    """run id -> (metric rows without wall time, NaN as text so that NaN equals NaN; status)."""
    return {r.spec.run_id: ([{k: "nan" if math.isnan(v) else v for k, v in m.items() if k != "seconds"}
                             for m in r.metrics], r.status) for r in results}


@pytest.fixture(scope="module")
def reference(data_root: Path) -> dict[str, Any]:
    specs = _specs(data_root)
    assert len({sweep.identity(s.config, 0)["model"]["hidden"][0] for s in specs}) == 1  # one stack
    return _untimed(list(EXECUTORS["local"].builder(specs, CPU)))


def test_ctrl_c_checkpoints_the_stack_and_the_next_run_resumes_it(data_root: Path, tmp_path: Path,
                                                                    reference: dict[str, Any]) -> None:
    specs = _specs(data_root, checkpoint_seconds=None)  # no periodic checkpoints: only the one Ctrl-C writes
    options = Options(checkpoints=tmp_path / ".checkpoints")

    def ctrl_c_at_step_20(stack: list[sweep.RunSpec]) -> Any:
        return lambda step, total, training: step == 20 and os.kill(os.getpid(), signal.SIGINT)

    first: list[RunResult] = []
    with pytest.raises(KeyboardInterrupt):
        for result in EXECUTORS["local"].builder(specs, CPU, ctrl_c_at_step_20, options):
            first.append(result)
    [saved] = list((tmp_path / ".checkpoints").iterdir())
    held, state = checkpoint.read(saved, Vocabulary(), pytest.fail)
    assert state["step"] == 20 and 0 < len(held) <= 4
    assert {s.run_id for s in held} | {r.spec.run_id for r in first} == set(reference)

    rest = [s for s in specs if s.run_id not in {r.spec.run_id for r in first}]
    second = list(EXECUTORS["local"].builder(rest, CPU, None, options))
    assert _untimed(first + second) == reference
    assert list((tmp_path / ".checkpoints").iterdir()) == []  # removed when the stack finished


def test_a_kill_after_the_checkpoint_resumes_runs_that_finished_since(data_root: Path, tmp_path: Path,
                                                                    reference: dict[str, Any]) -> None:
    """Checkpoints every step; the process dies right after a run finished and was stored, before the
    next checkpoint: the resumed stack trains that run again beside the others (the same stack, so the
    same numbers) but yields only the runs still to train."""
    specs = _specs(data_root, checkpoint_seconds=0)
    options = Options(checkpoints=tmp_path / ".checkpoints")
    launch = EXECUTORS["local"].builder(specs, CPU, None, options)
    first = [next(launch)]
    launch.close()  # like a kill: nothing more is written
    [saved] = list((tmp_path / ".checkpoints").iterdir())
    held, state = checkpoint.read(saved, Vocabulary(), pytest.fail)
    assert first[0].spec.run_id in {s.run_id for s in held} and state["step"] < first[0].summary["steps"]

    rest = [s for s in specs if s.run_id != first[0].spec.run_id]
    second = list(EXECUTORS["local"].builder(rest, CPU, None, options))
    assert _untimed(first + second) == reference and len(second) == 3


NOT_PLAIN = "not tensors and plain data: damaged, or written by something else"


@pytest.mark.parametrize(("content", "why"), [(b"", "empty or cut short"), (b"not a checkpoint at all", NOT_PLAIN),
                                              (b"\x80\x04\x95truncated pickle", NOT_PLAIN)])
def test_a_bad_checkpoint_is_set_aside_and_its_stack_starts_afresh(data_root: Path, tmp_path: Path,
                                                                   reference: dict[str, Any],
                                                                   content: bytes, why: str) -> None:
    specs = _specs(data_root)
    where = tmp_path / ".checkpoints"
    where.mkdir()
    bad = checkpoint.path_for(where, specs)
    bad.write_bytes(content)
    told: list[str] = []
    results = list(EXECUTORS["local"].builder(specs, CPU, None, Options(checkpoints=where, tell=told.append)))
    assert told == [f"checkpoint {bad} is unreadable ({why}); set aside as {bad.name}.bad, its runs start afresh"]
    assert _untimed(results) == reference
    assert sorted(p.name for p in where.iterdir()) == [bad.name + ".bad"]


def test_dlbench_run_says_a_bad_checkpoint_was_set_aside_once_in_its_own_words(data_root: Path,
                                                                                tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(_raw(data_root)))
    bad = checkpoint.path_for(tmp_path / "out" / "tiny" / checkpoint.FOLDER, _specs(data_root))
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a checkpoint at all")
    res = dlbench("run", config, "--out", tmp_path / "out", "--no-plots")
    assert res.code == 0, res.output
    line = (f"checkpoint {bad.relative_to(tmp_path)} is unreadable (not tensors and plain data: damaged, or written "
            f"by something else); set aside as {bad.name}.bad, its runs start afresh")
    assert res.err.count("unreadable") == 1 and line in res.err.replace(str(tmp_path) + "/", ""), res.err
    assert "Warning" not in res.output and ".py:" not in res.output


def test_a_checkpoint_that_carries_code_is_refused(data_root: Path, tmp_path: Path,
                                                   reference: dict[str, Any]) -> None:
    specs = _specs(data_root)
    where = tmp_path / ".checkpoints"
    where.mkdir()
    torch.save({"format": checkpoint.FORMAT, "payload": Path("/")}, checkpoint.path_for(where, specs))
    told: list[str] = []
    results = list(EXECUTORS["local"].builder(specs, CPU, None, Options(checkpoints=where, tell=told.append)))
    assert len(told) == 1 and f"unreadable ({NOT_PLAIN})" in told[0]
    assert _untimed(results) == reference


def test_a_changed_config_never_resumes_a_stale_checkpoint(data_root: Path, tmp_path: Path,
                                                           reference: dict[str, Any]) -> None:
    where = tmp_path / ".checkpoints"
    other = _specs(data_root, steps=41, checkpoint_seconds=0)  # other run ids
    launch = EXECUTORS["local"].builder(other, CPU, None, Options(checkpoints=where))
    next(launch)
    launch.close()
    [stale] = list(where.iterdir())
    results = list(EXECUTORS["local"].builder(_specs(data_root), CPU, None, Options(checkpoints=where)))
    assert _untimed(results) == reference
    assert list(where.iterdir()) == [stale]  # another config's: left alone


@pytest.mark.parametrize("value", [-1, "often", float("inf")])
def test_checkpoint_seconds_is_validated(value: Any) -> None:
    with pytest.raises(config.ConfigError, match=r"^train\.checkpoint_seconds: ") as error:
        config.validate({"train": {"checkpoint_seconds": value}})
    assert "\n" not in str(error.value)


def test_checkpoint_seconds_changes_no_run_id() -> None:
    """How often a stack saves itself does not change what its runs compute."""
    never = config.validate({"train": {"checkpoint_seconds": None}})
    assert sweep.run_id(config.validate({}), 0) == sweep.run_id(never, 0)
