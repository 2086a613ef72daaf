"""Sweeps that survive, in-process: resume and --rerun, a failing and a diverging run in a
grid, --fail-fast, one experiment per folder, the lock, leftovers of killed runs, the
resource guard and --dry-run's estimate, reproducibility."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import filelock
import pytest
from sweep_util import (  # noqa: F401 - one_thread is a fixture
    comparable_summary,
    dlbench,
    hidden_entries,
    metrics_without_time,
    one_thread,
    run_dirs,
    snapshot,
    summary,
    tiny_config,
    write_config,
)

from dlbench.components import models


def test_rerun_skips_finished_and_reruns_on_request(tmp_path: Path, data_root: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", tiny_config(data_root, grid={"optimizer.lr": [0.05, 0.1]}))
    out = tmp_path / "results"
    first = dlbench("run", cfg, "--out", out)
    assert first.code == 0, first.err
    root = out / "tiny"
    before = snapshot(root)
    assert len(before) == 2

    again = dlbench("run", cfg, "--out", out)
    assert again.code == 0 and "2 of 2 runs already finished" in again.out
    assert snapshot(root) == before  # nothing trained twice

    every = dlbench("run", cfg, "--out", out, "--rerun", "all")
    assert every.code == 0
    after = snapshot(root)
    assert after.keys() == before.keys()
    assert all(after[r][0] != before[r][0] for r in before)  # new folders...
    for rid in before:  # ...with the same numbers
        assert json.loads(after[rid][1])["final"]["test_acc"] == json.loads(before[rid][1])["final"]["test_acc"]
    assert hidden_entries(root) == []


def test_failing_and_diverging_runs_are_isolated(tmp_path: Path, data_root: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    build = models.build

    def build_or_fail(cfg, shape, classes):  # a bad combination found only when the model is built
        if cfg.hidden == [13]:
            raise RuntimeError("simulated: not enough memory for hidden=[13]")
        return build(cfg, shape, classes)

    monkeypatch.setattr(models, "build", build_or_fail)
    grid = {"model.hidden": [[8], [13], [16]], "optimizer.lr": [0.1, 1.0e12]}
    cfg = write_config(tmp_path / "c.yaml", tiny_config(data_root, grid=grid))
    out = tmp_path / "results"
    res = dlbench("run", cfg, "--out", out)
    assert res.code == 1  # some run failed
    assert "2 of 6 runs failed" in res.err and "simulated: not enough memory" in res.err
    assert "Traceback" not in res.out + res.err
    root = out / "tiny"
    by_status: dict[str, list[dict]] = {}
    for d in run_dirs(root).values():
        s = summary(d)
        by_status.setdefault(s["status"], []).append(s)
    assert sorted(s["params"]["model.hidden"][0] for s in by_status["failed"]) == [13, 13]
    assert all(s["error"] == "RuntimeError: simulated: not enough memory for hidden=[13]"
               and s["device"].startswith("cpu")
               and "torch" in s["versions"] for s in by_status["failed"])
    diverged = by_status["diverged"]
    assert sorted(s["params"]["model.hidden"][0] for s in diverged) == [8, 16]
    assert all(s["params"]["optimizer.lr"] == 1.0e12 and 1 <= s["diverged_step"] <= 12 for s in diverged)
    assert len(by_status["ok"]) == 2
    runs_csv = (root / "runs.csv").read_text().splitlines()
    assert len(runs_csv) == 1 + 6

    # failed runs are finished too: a plain rerun skips them, and still says the sweep has failures
    skipped = dlbench("run", cfg, "--out", out)
    assert skipped.code == 1 and "6 of 6 runs already finished" in skipped.out
    # --fail-fast stops at the first failure: the [16] runs after it are not trained again
    before = snapshot(root)
    fast = dlbench("run", cfg, "--out", out, "--rerun", "all", "--fail-fast")
    assert fast.code == 1
    after = snapshot(root)
    retrained = {rid for rid in before if after[rid][0] != before[rid][0]}
    hidden_of = {rid: summary(d)["params"]["model.hidden"][0] for rid, d in run_dirs(root).items()}
    assert sorted(hidden_of[r] for r in retrained) == [8, 8, 13]

    monkeypatch.setattr(models, "build", build)  # the cause is fixed: --rerun failed retries only those
    before = snapshot(root)
    fixed = dlbench("run", cfg, "--out", out, "--rerun", "failed")
    assert fixed.code == 0, fixed.err
    after = snapshot(root)
    retrained = {rid for rid in before if after[rid][0] != before[rid][0]}
    assert sorted(hidden_of[r] for r in retrained) == [13, 13]
    assert {summary(run_dirs(root)[r])["status"] for r in retrained} <= {"ok", "diverged"}


def test_one_experiment_one_folder(tmp_path: Path, data_root: Path) -> None:
    base = tiny_config(data_root, grid={"optimizer.lr": [0.1]})
    cfg = write_config(tmp_path / "c.yaml", base)
    out = tmp_path / "results"
    assert dlbench("run", cfg, "--out", out).code == 0
    root = out / "tiny"

    # more values of the swept key and more seeds extend the experiment
    grown = write_config(tmp_path / "grown.yaml", {**base, "grid": {"optimizer.lr": [0.1, 0.05]},
                                                   "train": {**base["train"], "seeds": [0, 1]}})
    res = dlbench("run", grown, "--out", out)
    assert res.code == 0 and "1 of 4 runs already finished" in res.out
    assert len(run_dirs(root)) == 4

    # anything else is another experiment: refused, nothing written, by run and by --dry-run
    before = snapshot(root)
    for args in (["--set", "train.steps=13"], ["--set", "train.steps=13", "--dry-run"]):
        res = dlbench("run", grown, "--out", out, *args)
        assert res.code == 2
        assert "holds runs of a different experiment (train.steps was 12, now 13)" in res.error_line
    other_keys = write_config(tmp_path / "keys.yaml", {**base, "grid": {"init.scheme": ["he_normal"]}})
    res = dlbench("run", other_keys, "--out", out)
    assert res.code == 2 and "the swept keys were ['optimizer.lr'], now ['init.scheme']" in res.error_line
    assert snapshot(root) == before

    # --force-new moves the old folder aside, whole, and starts afresh
    res = dlbench("run", grown, "--out", out, "--set", "train.steps=13", "--force-new")
    assert res.code == 0, res.err
    moved = [d for d in out.iterdir() if d.name.startswith("tiny.")]
    assert len(moved) == 1 and "moved the old results to" in res.out and moved[0].name in res.out
    assert snapshot(moved[0]) == before
    assert len(run_dirs(root)) == 4 and not set(run_dirs(root)) & set(before)


def test_folder_in_use_is_refused(tmp_path: Path, data_root: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", tiny_config(data_root))
    out = tmp_path / "results"
    with filelock.FileLock(out / ".tiny.lock"):  # as another `dlbench run` holds it (flock is per open file)
        res = dlbench("run", cfg, "--out", out)
        assert res.code == 2 and "is being written by another dlbench run" in res.error_line
        assert dlbench("run", cfg, "--out", out, "--dry-run").code == 0  # reading needs no lock
    assert dlbench("run", cfg, "--out", out).code == 0


# bit-for-bit comparisons use the serial executor: the vectorized one matches it only to ~1e-6
# (batched kernels sum in another order), and a resumed sweep may group the remaining runs differently
SERIAL = ("--executor", "serial")


def test_leftovers_of_a_killed_run_are_recovered(tmp_path: Path, data_root: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", tiny_config(data_root, grid={"optimizer.lr": [0.1, 0.05, 0.02]}))
    out = tmp_path / "results"
    assert dlbench("run", cfg, "--out", out, *SERIAL).code == 0
    root = out / "tiny"
    ids = sorted(run_dirs(root))
    reference = {rid: metrics_without_time(d) for rid, d in run_dirs(root).items()}
    # what kill -9 can leave: a half-written run folder; a finished run moved aside for its
    # replacement that never arrived; a replaced run's old copy not yet deleted; a broken summary
    half = root / "runs" / f".{ids[0]}.123.abcd1234"
    shutil.copytree(run_dirs(root)[ids[0]], half)
    (half / "summary.json").unlink()
    (root / "runs" / ids[1]).rename(root / "runs" / f".{ids[1]}.old")
    shutil.copytree(run_dirs(root)[ids[2]], root / "runs" / f".{ids[2]}.old")
    (root / "runs" / ids[0] / "summary.json").write_text('{"run_id": "')
    before = snapshot(root)

    res = dlbench("run", cfg, "--out", out, *SERIAL)
    assert res.code == 0, res.err
    assert "2 of 3 runs already finished" in res.out  # only the broken one is trained again
    assert hidden_entries(root) == []
    after = snapshot(root)
    assert after[ids[2]] == before[ids[2]] and ids[1] in after
    assert {rid: metrics_without_time(d) for rid, d in run_dirs(root).items()} == reference


def test_dry_run_counts_and_estimates(tmp_path: Path, data_root: Path) -> None:
    grid = {"model.hidden": [[8], [32, 32]], "optimizer.lr": [0.1, 0.05]}
    by_epochs = {"epochs": 2, "batch_size": 50, "seeds": [0], "device": "cpu"}  # 270 samples: 6 steps an epoch
    cfg = write_config(tmp_path / "c.yaml", tiny_config(data_root, grid=grid, train=by_epochs))
    out = tmp_path / "results"
    dry = dlbench("run", cfg, "--out", out, "--dry-run")
    assert dry.code == 0 and not (out / "tiny").exists()
    assert dlbench("run", cfg, "--out", out).code == 0
    work = sum(s["n_params"] * s["steps"] for s in map(summary, run_dirs(out / "tiny").values()))
    assert f"4 runs: 0 finished, 4 to train; about {work:.3g} parameters x steps to train" in dry.out
    again = dlbench("run", cfg, "--out", out, "--dry-run")
    assert "4 runs: 4 finished, 0 to train" in again.out


def test_sweeps_over_the_limit_need_yes(tmp_path: Path, data_root: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", tiny_config(data_root, grid={"optimizer.lr": [0.1, 0.2, 0.3]}))
    res = dlbench("run", cfg, "--out", tmp_path, "--max-runs", "2", "--dry-run")
    assert res.code == 2
    assert "experiment 'tiny' has 3 runs, more than --max-runs 2; pass --yes" in res.error_line
    assert dlbench("run", cfg, "--out", tmp_path, "--max-runs", "2", "--dry-run", "--yes").code == 0
    # counted before expanding: 10^10 runs are refused at once, by run and by validate
    keys = ["train.steps", "train.batch_size", "train.eval_every", "optimizer.lr", "optimizer.weight_decay",
            "init.std", "data.seed", "data.train_size", "regularization.l1", "regularization.input_noise"]
    huge = write_config(tmp_path / "huge.yaml", tiny_config(data_root, grid={k: list(range(1, 11)) for k in keys}))
    for command in ("validate", "run"):
        res = dlbench(command, huge, *(["--out", tmp_path] if command == "run" else []))
        assert res.code == 2 and "10,000,000,000 runs, more than --max-runs 1,000" in res.error_line


def test_duplicate_grid_points_train_once(tmp_path: Path, data_root: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", tiny_config(data_root, grid={"optimizer.lr": [0.1, 0.1, 0.05]}))
    res = dlbench("run", cfg, "--out", tmp_path)
    assert res.code == 0 and len(run_dirs(tmp_path / "tiny")) == 2
    assert len((tmp_path / "tiny" / "runs.csv").read_text().splitlines()) == 1 + 2


def test_same_config_and_seed_reproduce_bit_for_bit(tmp_path: Path, data_root: Path) -> None:
    """Every column of metrics.csv but `seconds` (wall time), and summary.json but its times."""
    noisy = tiny_config(data_root, model={"hidden": [16], "dropout": 0.3},
                        regularization={"input_noise": 0.2}, train={**tiny_config(data_root)["train"],
                                                                    "seeds": [0, 1]})
    cfg = write_config(tmp_path / "c.yaml", noisy)
    for out in ("a", "b"):
        assert dlbench("run", cfg, "--out", tmp_path / out).code == 0
    a, b = run_dirs(tmp_path / "a" / "tiny"), run_dirs(tmp_path / "b" / "tiny")
    assert a.keys() == b.keys() and len(a) == 2
    for rid in a:
        assert metrics_without_time(a[rid]) == metrics_without_time(b[rid])
        assert comparable_summary(a[rid]) == comparable_summary(b[rid])
        s = summary(a[rid])
        assert s["device"].startswith("cpu") and {"torch", "numpy", "python", "dlbench"} <= s["versions"].keys()
    seed0, seed1 = (metrics_without_time(d) for d in a.values())
    assert seed0[-1] != seed1[-1]  # and the seed does matter


@pytest.mark.parametrize("name", ["../escape", "a/b", "/abs", "..", ".hidden", "a\\b", "x/../../y", ""])
def test_names_cannot_leave_the_results_folder(tmp_path: Path, data_root: Path, name: str) -> None:
    cfg = write_config(tmp_path / "c.yaml", tiny_config(data_root) | {"name": name})
    res = dlbench("run", cfg, "--out", tmp_path / "results")
    assert res.code == 2 and res.error_line.startswith("error: name: ")
    assert list(tmp_path.iterdir()) == [tmp_path / "c.yaml"]


def test_a_run_writes_only_inside_out(tmp_path: Path, data_root: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", tiny_config(data_root))
    out = tmp_path / "results"
    assert dlbench("run", cfg, "--out", out).code == 0
    written = {p.relative_to(tmp_path) for p in tmp_path.rglob("*")}
    assert {p for p in written if p.parts[0] not in ("results", "c.yaml")} == set()
    assert {p.parts[1] for p in written if p.parts[0] == "results" and len(p.parts) > 1} == {"tiny", ".tiny.lock"}
