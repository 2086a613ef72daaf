"""The results folder: layout, atomic writes, what is finished.

    results/<name>/experiment.yaml          the config as given (overrides applied)
    results/<name>/runs/<run_id>/config.yaml    resolved config of one run
    results/<name>/runs/<run_id>/metrics.csv    one row per evaluation
    results/<name>/runs/<run_id>/summary.json   status, final / best metrics, ...
    results/<name>/runs.csv, summary.csv    experiment tables (written by report)

A run folder is written complete under a temporary name and renamed into place,
so a reader sees either the whole run or none of it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from dlbench.train import METRIC_COLUMNS, RunResult


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_safe(value: Any) -> Any:
    """NaN / Inf become null so summary.json stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


def metrics_csv(rows: list[dict[str, float]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: repr(float(row[k])) if k != "step" else int(row[k]) for k in METRIC_COLUMNS})
    return buf.getvalue()


class Store:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.runs_dir = self.root / "runs"

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def begin(self, raw_config: dict[str, Any]) -> None:
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.root / "experiment.yaml", dump_yaml(raw_config))

    def save(self, result: RunResult) -> Path:
        """Write one run's folder complete, then move it into place."""
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        final = self.run_dir(result.spec.run_id)
        tmp = Path(tempfile.mkdtemp(dir=self.runs_dir, prefix=f".{result.spec.run_id}."))
        try:
            (tmp / "config.yaml").write_text(dump_yaml(result.spec.config.model_dump(mode="json")))
            (tmp / "metrics.csv").write_text(metrics_csv(result.metrics))
            (tmp / "summary.json").write_text(json.dumps(_json_safe(result.summary), indent=2))
            for f in tmp.iterdir():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
            if final.exists():  # a rerun replaces the old folder; move it aside first
                old = final.with_name(f".{final.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                final.rename(old)
                tmp.rename(final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                tmp.rename(final)
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
            out.append(json.loads(f.read_text()))
        return out

    def finished(self) -> dict[str, str]:
        """run id -> status of every run with a complete folder."""
        return {s["run_id"]: s["status"] for s in self.summaries()}
