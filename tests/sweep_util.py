"""Helpers for the resume / isolation / fuzzing tests: the CLI run in-process exactly as
the console script runs it, tiny sweep configs, and reading a results folder back."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from dlbench.cli import main

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    # the names click's CliRunner result uses, so every test reads one kind of outcome
    @property
    def exit_code(self) -> int:
        return self.code

    @property
    def stdout(self) -> str:
        return self.out

    @property
    def stderr(self) -> str:
        return self.err

    @property
    def output(self) -> str:
        return self.out + self.err

    @property
    def error_line(self) -> str:
        """The one line a refused input prints (asserting there is exactly one)."""
        lines = self.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), self.err
        return lines[0]


def dlbench(*args: Any) -> Outcome:
    """`dlbench ARGS` through dlbench.cli.main (ConfigError -> exit 2, no traceback)."""
    out, err = io.StringIO(), io.StringIO()
    argv, sys.argv = sys.argv, ["dlbench", *map(str, args)]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = argv
    return Outcome(code, out.getvalue(), err.getvalue())


# Subprocesses get the same: many tiny runs on a busy 2-core machine are many times slower
# with torch's thread pool, and one thread count everywhere keeps results comparable.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(autouse=True)
def one_thread() -> Any:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_config(data_root: Path, **sections: Any) -> dict[str, Any]:
    """A sweep of tiny, fast MLP runs on 300 MNIST-1D samples; `sections` replace keys."""
    cfg: dict[str, Any] = {
        "name": "tiny",
        "data": {"root": str(data_root), "train_size": 300},
        "model": {"hidden": [16]},
        "optimizer": {"name": "sgd", "lr": 0.1},
        "train": {"steps": 12, "batch_size": 50, "eval_every": 4, "seeds": [0], "device": "cpu"},
    }
    cfg.update(sections)
    return cfg


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run_dirs(root: Path) -> dict[str, Path]:
    """Visible run folders of an experiment folder."""
    runs = root / "runs"
    return {d.name: d for d in sorted(runs.iterdir()) if not d.name.startswith(".")} if runs.is_dir() else {}


def hidden_entries(root: Path) -> list[str]:
    runs = root / "runs"
    return [d.name for d in runs.iterdir() if d.name.startswith(".")] if runs.is_dir() else []


def summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text())


def metrics_without_time(run_dir: Path) -> list[dict[str, str]]:
    """metrics.csv as text, every column but `seconds` (wall time never repeats)."""
    with open(run_dir / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def comparable_summary(run_dir: Path) -> dict[str, Any]:
    """summary.json without the wall-clock fields."""
    s = summary(run_dir)
    s.pop("wall_time", None)
    for at in ("final", "best"):
        if isinstance(s.get(at), dict):
            s[at].pop("seconds", None)
    return s


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """run id -> (inode, summary.json bytes): a finished run that is trained again gets a new inode."""
    return {rid: (os.stat(d).st_ino, (d / "summary.json").read_bytes()) for rid, d in run_dirs(root).items()}


def reading(name: str, /, **values: Any) -> Any:
    """Section `name` with those of `values` that its chosen component reads (a test that gives one set
    of values to every component: init.std to every scheme, model.hidden to every kind)."""
    from dlbench.catalog import SECTIONS
    from dlbench.config.schema import MEMBERS, section

    chosen = values.get(SECTIONS[name].key or "", SECTIONS[name].default)
    reads = MEMBERS[name][chosen].model_fields
    return section(name, **{k: v for k, v in values.items() if k in reads})
