"""The results folder: layout, atomic writes, what is finished, one writer at a time.

    results/<name>/experiment.yaml          the config as last given (overrides applied)
    results/<name>/experiment.json          what every run here shares (see `check`)
    results/<name>/vocabulary.json          the experiment's plugins (config/vocabulary.py rebuilds them from it)
    results/<name>/plugins/<hash>-<file>    their sources
    results/<name>/runs/<run_id>/config.yaml    resolved config of one run
    results/<name>/runs/<run_id>/metrics.csv    one row per evaluation
    results/<name>/runs/<run_id>/summary.json   status, final / best metrics, ...
    results/<name>/view.json                name, task, plots, swept keys and points in sweep order
    results/<name>/runs.csv, summary.csv    experiment tables (derived from runs/ by report)
    results/<name>/.checkpoints/            unfinished stacks (the engine's; left alone here)
    results/<name>/.progress/<run_id>.json  a run in training (results/live.py); removed when its folder is written
    results/<name>/jobs.json, .slurm/       --executor slurm's tasks (execution/jobs.py) and submitit's folder
    results/.<name>.lock                    held by the `dlbench run` writing the folder

A run folder is written complete under a hidden temporary name and renamed into
place, so a reader sees either the whole run or none of it; a run whose folder
exists is finished. Many processes may write run folders at once (the `dlbench run`
that holds the lock, and the workers that store their own runs: SLURM tasks, on
other hosts too): a hidden name says who writes it (`.<run>.<host>.<pid>.<random>`,
`.<run>.<host>.<pid>.old`). A process killed at any instant leaves at most hidden
leftovers, which the next `dlbench run` cleans up (`recover`): only a dead writer's
(this host: its pid is gone; another host: untouched for `STALE_S`), never what a
live one is still writing.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import secrets
import shutil
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from collections.abc import Iterator

import filelock
import yaml

from dlbench.catalog.metrics import METRICS
from dlbench.catalog.metrics import SPLITS as SPLITS  # the engine evaluates these splits
from dlbench.errors import ConfigError, did_you_mean
from dlbench.config.keys import flatten

EXPERIMENT_RECORD = "experiment.json"
PROGRESS = ".progress"  # hidden: a run folder still means a finished run
VIEW = "view.json"  # what report, tables and figures need (name, task, swept points in order, task details)


def metric_columns() -> list[str]:
    """metrics.csv's columns: one row per evaluation, the per-split metrics of the catalog (which the engine
    records) between the evaluation's step and its lr and time."""
    return ["epoch", "step", "train_batch_loss", *(name for name, _, _ in METRICS.measured()), "lr", "seconds"]


def _write_synced(path: Path, content: str | bytes, mode: str = "w", sync: bool = True) -> None:
    data = content.encode("utf-8") if isinstance(content, str) else content
    with open(path, mode + "b") as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable (survives power loss, not only a crash)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


HOST = socket.gethostname().replace(".", "_") or "host"  # in hidden names, which split at dots
STALE_S = 600.0  # a hidden entry of another host's writer untouched this long: its writer is gone


def _writer() -> str:
    """Who writes a hidden entry: this host and process."""
    return f"{HOST}.{os.getpid()}"


def _temp_name(path: Path, suffix: str) -> Path:
    # not mkstemp / mkdtemp: they create 0600 / 0700 entries, and results are meant to be shared
    return path.with_name(f".{path.name}.{_writer()}.{secrets.token_hex(4)}{suffix}")


def _alive(host: str, pid: str, entry: Path) -> bool:
    """Whether the writer of a hidden entry may still be writing it."""
    if host == HOST and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's process: alive
            return True
        return True
    try:
        return time.time() - entry.stat().st_mtime < STALE_S
    except FileNotFoundError:  # its writer just renamed it into place
        return True


def atomic_write(path: Path, content: str | bytes, sync: bool = True) -> None:
    """The one writer of results files (tables, records, figures): complete or absent,
    mode 0644 under the usual umask like any file the user creates. `sync=False`: not made
    durable against power loss (still whole or absent to every reader), for files rewritten
    every few seconds (progress)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path, ".tmp")
    try:
        _write_synced(tmp, content, "x", sync)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync:
        _fsync_dir(path.parent)


def progress_file(root: Path, run_id: str) -> Path:
    """Where the process training a run writes its progress (the format: results/live.py)."""
    return root / PROGRESS / f"{run_id}.json"


def _json_safe(value: Any) -> Any:
    """NaN / Inf become null so summary.json stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


# libyaml's emitter where PyYAML was built with it: the same text as yaml.safe_dump, ~4x faster
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_DUMPER, sort_keys=False, default_flow_style=None)


def metrics_csv(rows: list[dict[str, float]]) -> str:
    buf = io.StringIO()
    columns = metric_columns()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: repr(float(row[k])) if k != "step" else int(row[k]) for k in columns})
    return buf.getvalue()


def _first_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    if old.get("swept") != new.get("swept"):
        return f"the swept keys were {old.get('swept')}, now {new.get('swept')}"
    a, b = flatten(old.get("fixed", {})), flatten(new.get("fixed", {}))
    for key in sorted(a.keys() | b.keys()):
        if a.get(key, "unset") != b.get(key, "unset"):
            return f"{key} was {a.get(key, 'unset')!r}, now {b.get(key, 'unset')!r}"
    return "its record differs"  # only reachable through a hand-edited experiment.json


class Store:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.runs_dir = self.root / "runs"
        # beside the folder, not in it: --force-new renames the folder while holding the lock
        self.lock_path = self.root.with_name(f".{self.root.name}.lock")

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    @contextmanager
    def session(self, record: dict[str, Any], raw_config: dict[str, Any], view: dict[str, Any],
                force_new: bool = False) -> Iterator[Path | None]:
        """Own the folder for one `dlbench run`: lock it, move it aside if `force_new`
        (yields where it went), clean up after killed runs, refuse a different experiment.
        """
        try:
            self.root.parent.mkdir(parents=True, exist_ok=True)
            lock = filelock.FileLock(self.lock_path, timeout=0)
            lock.acquire()
        except filelock.Timeout:
            raise ConfigError(f"{self.root} is being written by another dlbench run (it holds {self.lock_path}); "
                              "wait for it to finish or use another name") from None
        except OSError as e:
            raise ConfigError(f"--out {self.root.parent}: cannot create the results folder: {e}") from None
        try:
            if self.root.exists() and not self.root.is_dir():
                raise ConfigError(f"{self.root} is a file, not a results folder: remove it or use another name")
            archived = self._move_aside() if force_new else None
            self.recover()
            self.check(record)
            self.runs_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(self.root / "experiment.yaml", dump_yaml(raw_config))
            atomic_write(self.root / EXPERIMENT_RECORD, json.dumps(record, indent=2, sort_keys=True) + "\n")
            atomic_write(self.root / VIEW, json.dumps(_json_safe(view), indent=2) + "\n")
            yield archived
        finally:
            lock.release()

    def _move_aside(self) -> Path | None:
        if not self.root.exists() or not any(self.root.iterdir()):
            return None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        dest, n = self.root.with_name(f"{self.root.name}.{stamp}"), 1
        while dest.exists():
            n += 1
            dest = self.root.with_name(f"{self.root.name}.{stamp}-{n}")
        self.root.rename(dest)
        return dest

    def recover(self) -> None:
        """Clean up what killed writers left: hidden half-written run folders are deleted; a finished
        run moved aside to be replaced (`.<id>.<writer>.old`) is put back when its replacement never
        arrived. What a live writer (a worker storing its own runs) is writing is left alone. Names
        without a host come from a dlbench that had one writer, the lock's holder: always leftovers."""
        if not self.runs_dir.is_dir():
            return
        for entry in self.runs_dir.iterdir():
            if not entry.name.startswith("."):
                continue
            parts = entry.name[1:].split(".")
            run_id = parts[0]
            if len(parts) == 4 and _alive(parts[1], parts[2], entry):
                continue
            try:
                if parts[-1] == "old" and not self.run_dir(run_id).exists():
                    entry.rename(self.run_dir(run_id))
                elif entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            except FileNotFoundError:  # another process recovered it first
                continue

    def check(self, record: dict[str, Any]) -> None:
        """One experiment, one folder: refuse to add runs that differ from the ones here in
        anything but the values of the swept keys (grid, random search, seeds)."""
        f = self.root / EXPERIMENT_RECORD
        if not f.is_file() or not self.finished():
            return
        try:
            old = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ConfigError(f"{f}: cannot read ({e}); use --force-new to move the old results aside") from None
        if old.get("ids") != record.get("ids"):
            raise ConfigError(
                f"{self.root} holds {len(self.finished())} runs stored by an earlier dlbench, whose run ids were "
                "computed before the catalog (dlbench 0.2 records every setting a run reads, so ids changed once): "
                "they stay readable by report and plot but are not reused; pass --force-new to move them aside and "
                "train afresh, or write to another folder (--out)")
        if old != record:
            raise ConfigError(
                f"{self.root} holds runs of a different experiment ({_first_difference(old, record)}); "
                "only the values of swept keys (grid, random, train.seeds) may change between sweeps into one "
                "folder: give the experiment another name (--set name=...) or pass --force-new to move the old "
                "results aside")

    def save(self, run_id: str, config: dict[str, Any], metrics: list[dict[str, float]],
             summary: dict[str, Any], files: dict[str, str] | None = None) -> Path:
        """Write one run's folder complete (its resolved config, metrics rows, summary and
        extra files such as diagnostics), then rename it into place."""
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        final = self.run_dir(run_id)
        tmp = _temp_name(final, "")
        tmp.mkdir()
        try:
            _write_synced(tmp / "config.yaml", dump_yaml(config))
            _write_synced(tmp / "metrics.csv", metrics_csv(metrics))
            _write_synced(tmp / "summary.json", json.dumps(_json_safe(summary), indent=2))
            for name, text in (files or {}).items():
                _write_synced(tmp / name, text)
            if final.exists():  # a rerun replaces the old folder; `recover` undoes a half-done swap
                old = final.with_name(f".{final.name}.{_writer()}.old")
                shutil.rmtree(old, ignore_errors=True)
                final.rename(old)
                try:
                    tmp.rename(final)
                except BaseException:
                    old.rename(final)
                    raise
                shutil.rmtree(old, ignore_errors=True)
            else:
                tmp.rename(final)
            _fsync_dir(self.runs_dir)
            progress_file(self.root, run_id).unlink(missing_ok=True)  # finished: no longer in training
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def summaries(self) -> list[dict[str, Any]]:
        """summary.json of every finished run (folders being written are hidden by a leading dot)."""
        if not self.runs_dir.is_dir():
            return []
        out = []
        for d in sorted(self.runs_dir.iterdir()):
            f = d / "summary.json"
            if d.name.startswith(".") or not f.is_file():
                continue
            try:
                out.append(json.loads(f.read_text(encoding="utf-8")))
            except (OSError, ValueError):  # damaged by hand or by a disk error: not finished, so rerun
                continue
        return out

    def finished(self) -> dict[str, str]:
        """run id -> status of every run with a complete folder."""
        return {s["run_id"]: s["status"] for s in self.summaries()}


def check_folder(d: Path) -> None:
    """A results folder is given: refuse a missing one (did you mean), and list the experiments
    of a folder that holds several."""
    if (d / "runs").is_dir() or (d / "experiment.yaml").is_file():
        return
    if not d.exists():
        siblings = [p.name for p in d.parent.iterdir() if p.is_dir()] if d.parent.is_dir() else []
        raise ConfigError(f"{d}: no such folder{did_you_mean(d.name, siblings)}")
    inside = sorted(p.name for p in d.iterdir() if (p / "experiment.yaml").is_file()) if d.is_dir() else []
    if inside:
        if len(inside) == 1:
            raise ConfigError(f"{d} holds one experiment, {inside[0]}: name its folder, {d / inside[0]}")
        raise ConfigError(f"{d} holds {len(inside)} experiments: {', '.join(inside)}; name one, e.g. {d / inside[0]}")
    raise ConfigError(f"{d}: not a results folder (expected {d / 'runs'}/ or {d / 'experiment.yaml'})")


def read_view(root: Path) -> dict[str, Any]:
    """The folder's view.json; for a folder written before it existed, the basics of its
    experiment.yaml (name, task, plots); {} for bare run folders (a training sweep)."""
    from dlbench.config.yaml_io import read_yaml_file

    view_file, spec = root / VIEW, root / "experiment.yaml"
    if view_file.is_file():
        return json.loads(view_file.read_text(encoding="utf-8"))
    if spec.is_file():
        raw = read_yaml_file(spec)
        return {k: raw[k] for k in ("name", "task", "plots") if k in raw}
    if (root / "runs").is_dir():
        return {}
    raise ConfigError(f"{root}: not a results folder (expected {spec})")
