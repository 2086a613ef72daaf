"""Reports from a results folder only: runs.csv, summary.csv and the comparison table.

One row per configuration (the swept keys), mean ± std over seeds of train /
validation / test accuracy and of the gap train − test that shows overfitting,
with status counts; sorted by validation accuracy. Metrics are aggregated over
runs that finished `ok`; diverged and failed runs are counted, not averaged.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from rich.table import Table

from dlbench.store import Store, atomic_write

METRICS = ["train_acc", "val_acc", "test_acc", "gap", "train_loss", "val_loss", "test_loss"]
SHOWN = {"train_acc": "train acc %", "val_acc": "val acc %", "test_acc": "test acc %", "gap": "gap (train−test) %"}
FORMATS = ("table", "csv", "markdown", "json")


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value
    return out


def _cell(value: Any) -> Any:
    """Lists (e.g. model.hidden) become hashable strings so they can be grouped on."""
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def load_runs(results_dir: Path) -> tuple[pd.DataFrame, list[str]]:
    """One row per finished run: flattened config + summary. Also returns the swept keys."""
    store = Store(results_dir)
    rows, keys = [], {}
    for s in store.summaries():
        cfg_file = store.run_dir(s["run_id"]) / "config.yaml"
        config = yaml.safe_load(cfg_file.read_text()) if cfg_file.is_file() else {}
        row = {f"config.{k}": _cell(v) for k, v in _flatten("", config, {}).items()}
        keys.update(dict.fromkeys(s.get("params", {})))
        row.update({k: _cell(v) for k, v in s.get("params", {}).items()})
        for k in ("run_id", "seed", "status", "error", "diverged_step", "stopped_early", "steps", "epochs",
                  "wall_time", "n_params", "device"):
            row[k] = s.get(k)
        for at in ("final", "best"):
            for k, v in (s.get(at) or {}).items():
                row[f"{at}.{k}"] = math.nan if v is None else v
        rows.append(row)
    return pd.DataFrame(rows), list(keys)


def aggregate(runs: pd.DataFrame, keys: list[str], at: str = "final") -> pd.DataFrame:
    """One row per configuration: n, status counts, mean and std of each metric over ok runs."""
    if runs.empty:
        return pd.DataFrame()
    df = runs.copy()
    group = keys or ["_all"]
    if not keys:
        df["_all"] = "all runs"
    for k in group:
        df[k] = df[k].astype(object).where(df[k].notna(), "–")
    out = []
    for values, g in df.groupby(group, sort=False, dropna=False):
        values = values if isinstance(values, tuple) else (values,)
        row: dict[str, Any] = dict(zip(group, values))
        ok = g[g["status"] == "ok"]
        row["n"] = len(g)
        for status in ("ok", "diverged", "failed"):
            row[status] = int((g["status"] == status).sum())
        for m in METRICS:
            col = ok.get(f"{at}.{m}", pd.Series(dtype=float)).astype(float)
            row[f"{m}_mean"] = col.mean() if len(col) else math.nan
            row[f"{m}_std"] = col.std(ddof=1) if len(col) > 1 else (0.0 if len(col) else math.nan)
        row["wall_time_mean"] = g["wall_time"].astype(float).mean()
        out.append(row)
    result = pd.DataFrame(out)
    result = result.sort_values("val_acc_mean", ascending=False, na_position="last", kind="stable")
    if not keys:
        result = result.drop(columns=["_all"])
    return result.reset_index(drop=True)


def write_tables(results_dir: Path) -> tuple[pd.DataFrame, list[str]]:
    """(Re)write runs.csv and summary.csv; returns the summary and the swept keys."""
    runs, keys = load_runs(results_dir)
    summary = aggregate(runs, keys)
    if not runs.empty:
        atomic_write(results_dir / "runs.csv", runs.to_csv(index=False))
        atomic_write(results_dir / "summary.csv", summary.to_csv(index=False))
    return summary, keys


def _pm(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "–"
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def _status(row: pd.Series) -> str:
    parts = [f"{row[s]} {s}" for s in ("diverged", "failed") if row[s]]
    return ", ".join(parts) or "ok"


def display_rows(summary: pd.DataFrame, keys: list[str]) -> tuple[list[str], list[list[str]]]:
    header = [*keys, "seeds", *SHOWN.values(), "status"]
    rows = [
        [*(str(r[k]) for k in keys), str(r["n"]), *(_pm(r[f"{m}_mean"], r[f"{m}_std"]) for m in SHOWN), _status(r)]
        for _, r in summary.iterrows()
    ]
    return header, rows


def rich_table(summary: pd.DataFrame, keys: list[str], title: str) -> Table:
    header, rows = display_rows(summary, keys)
    table = Table(title=title, caption="mean ± std over seeds at the final evaluation; sorted by validation accuracy")
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i < len(keys) else "right", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    return table


def markdown(summary: pd.DataFrame, keys: list[str]) -> str:
    header, rows = display_rows(summary, keys)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def export(summary: pd.DataFrame, keys: list[str], fmt: str) -> str:
    if fmt == "csv":
        return summary.to_csv(index=False)
    if fmt == "json":
        return summary.to_json(orient="records", indent=2) + "\n"
    if fmt == "markdown":
        return markdown(summary, keys)
    raise ValueError(f"unknown format {fmt!r}")
