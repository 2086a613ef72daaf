"""A results folder as runs: one row per finished run (its flattened config, swept values, status and
its metrics at the final and best evaluations, the derived ones included), with no statistics. The
report, the figures, the exports and the API read runs through here, never through each other.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from dlbench.catalog.metrics import METRICS, TRAINING_BEST
from dlbench.config.keys import flatten
from dlbench.config.yaml_io import read_written
from dlbench.results.options import AT
from dlbench.results.store import Store

TIMES = ["epoch", "step", "seconds"]  # units of time-to-target
MISSING = "–"  # a value a run or a configuration has not got


def value_text(value: Any) -> str:
    """A swept value as shown in tables and legends: floats with 4 significant digits (a
    random-search lr is 0.01235, not 0.012345678901234567), lists and mappings as JSON."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _cell(value: Any) -> Any:
    """Lists (e.g. model.hidden) become hashable strings so they can be grouped on."""
    return json.dumps(value) if isinstance(value, (list, dict)) else value


# runs.csv: each run's summary.json facts beside its flattened config (config.<key>), its swept
# values and its metrics at the final and best-validation evaluations (final.<metric>, best.<metric>)
PLUGIN_SOURCES = "plugin_sources"  # runs.csv: section -> {name, kind, file, module, sha256, kept} as JSON
PLUGIN_VERSION = "plugin version"  # a key when a plugin source changed between runs: a row per version
RUN_COLUMNS = ("run_id", "seed", "status", "error", "diverged_step", "stopped_early", "steps", "epochs", "wall_time",
               "n_params", "device", "best_on")


def load_runs(results_dir: Path) -> tuple[pd.DataFrame, list[str]]:
    """One row per finished run: flattened config + summary. Also returns the swept keys."""
    store = Store(results_dir)
    rows, keys = [], {}
    for s in store.summaries():
        cfg_file = store.run_dir(s["run_id"]) / "config.yaml"
        config = read_written(cfg_file) if cfg_file.is_file() else {}
        row = {f"config.{k}": _cell(v) for k, v in flatten(config).items()}
        keys.update(dict.fromkeys(s.get("params", {})))
        row.update({k: _cell(v) for k, v in s.get("params", {}).items()})
        for k in RUN_COLUMNS:
            row[k] = s.get(k)
        if s.get("plugins"):  # where its plugin components came from (runs of a plugin-less sweep: no column)
            row[PLUGIN_SOURCES] = json.dumps(s["plugins"], sort_keys=True)
        for at in AT:  # the metrics recorded at that evaluation, and those derived from them (the gap)
            recorded = {k: math.nan if v is None else v for k, v in (s.get(at) or {}).items()}
            for k, v in (METRICS.with_derived(recorded) if recorded else {}).items():
                row[f"{at}.{k}"] = v
        rows.append(row)
    runs = pd.DataFrame(rows)
    versions = _plugin_versions(runs)
    if versions is not None:  # runs of an edited plugin are never pooled with the runs of its earlier source
        return runs.assign(**{PLUGIN_VERSION: versions}), [*keys, PLUGIN_VERSION]
    return runs, list(keys)


def with_derived(frame: pd.DataFrame) -> pd.DataFrame:
    """metrics.csv's rows with the metrics derived from the recorded ones (the gap), as columns."""
    for name, derive in METRICS.derived():
        try:
            frame[name] = derive(frame)
        except KeyError:  # an input the folder did not record
            frame[name] = math.nan
    return frame


def _plugin_versions(runs: pd.DataFrame) -> pd.Series | None:
    """Per run, the source versions (first 8 hex digits of the sha256) of the plugin components that
    changed between runs, e.g. 'adabelief 0bc9417f'; None when no plugin has two sources here."""
    if PLUGIN_SOURCES not in runs:
        return None
    parsed = runs[PLUGIN_SOURCES].map(lambda text: json.loads(text) if isinstance(text, str) else {})
    digests: dict[tuple[str, str], set[str]] = {}
    for records in parsed:
        for r in records.values():
            digests.setdefault((r["kind"], r["name"]), set()).add(r["sha256"])
    changed = {component for component, seen in digests.items() if len(seen) > 1}
    if not changed:
        return None
    return parsed.map(lambda records: ", ".join(
        f"{r['name']} {r['sha256'][:8]}" for r in records.values() if (r["kind"], r["name"]) in changed) or MISSING)


def time_to_target(results_dir: Path, runs: pd.DataFrame, target: float) -> pd.DataFrame:
    """Adds ttt.epoch / ttt.step / ttt.seconds: the first evaluation whose validation
    accuracy reaches `target` (NaN: never reached, or no metrics, as for failed runs).
    A run that reached the target and diverged later still reached it: the time is a
    fact about the trajectory, as in AlgoPerf. (ReportOptions has checked `target`.)"""
    store = Store(results_dir)
    found = []
    for run_id in runs.get("run_id", []):
        file = store.run_dir(run_id) / "metrics.csv"
        curve = pd.read_csv(file) if file.is_file() and file.stat().st_size else pd.DataFrame()
        hit = curve[curve["val_acc"] >= target] if "val_acc" in curve else curve.iloc[:0]
        found.append({f"ttt.{u}": float(hit[u].iloc[0]) if len(hit) else math.nan for u in TIMES})
    return runs.join(pd.DataFrame(found, index=runs.index, columns=[f"ttt.{u}" for u in TIMES]))


def chosen_on(runs: pd.DataFrame) -> set[str]:
    """What the runs' best evaluations (summary.json's best) were chosen on while training: their best_on
    (train.monitor); TRAINING_BEST for runs stored before summary.json recorded it."""
    has_best = runs.filter(like="best.").notna().any(axis=1)
    recorded = runs["best_on"] if "best_on" in runs else pd.Series(None, index=runs.index, dtype=object)
    return set(recorded[has_best].fillna(TRAINING_BEST))


def best_on(results_dir: Path, runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """best.* from each run's metrics.csv: the first evaluation with the best `metric` (in its direction),
    for a report that chooses on another metric than the engine did (summary.json's best_on, `chosen_on`)."""
    store, higher = Store(results_dir), METRICS[metric].higher_is_better
    runs = runs.copy()
    for i, run_id in zip(runs.index, runs.get("run_id", [])):
        file = store.run_dir(run_id) / "metrics.csv"
        curve = pd.read_csv(file) if file.is_file() and file.stat().st_size else pd.DataFrame()
        rows = [METRICS.with_derived(r) for r in curve.to_dict("records")]
        rows = [r for r in rows if math.isfinite(r.get(metric, math.nan))]
        rows = [r for r in rows if r.get("step") != 0] or rows  # the untrained net is no candidate, as in training
        if not rows:
            continue
        best = max(rows, key=lambda r: r[metric]) if higher else min(rows, key=lambda r: r[metric])
        for k, v in best.items():
            if f"best.{k}" in runs or k in METRICS or k == "epoch":
                runs.loc[i, f"best.{k}"] = v
    return runs
