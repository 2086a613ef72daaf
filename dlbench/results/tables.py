"""The task tables beside the report's, from a results folder alone (no torch, no config).

`task: function` (optimizer paths) and `task: activations` (statistics of an untrained
net) print their own table; a training sweep that recorded diagnostics adds a table of
the final diagnostics.
"""

from __future__ import annotations

import math

import pandas as pd
from rich.table import Table

from dlbench.catalog.status import OK
from dlbench.results.plots import Folder, label
from dlbench.results.store import atomic_write


def _table(title: str, header: list[str], rows: list[list[str]], caption: str, n_keys: int) -> Table:
    table = Table(title=title, caption=caption)
    for i, h in enumerate(header):  # in a narrow terminal a cell wraps (at a space, else anywhere), never cut
        table.add_column(h, justify="left" if i < n_keys else "right", overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def function_table(res: Folder) -> Table:
    df = pd.read_csv(res.root / "summary.csv")
    threshold = df["threshold"].iloc[0]
    header = [*res.keys, "final f", f"steps to f < {threshold:g}", "final (x, y)"]
    rows = [[*(label(r, [k]) for k in res.keys), f"{r['final_f']:.3g}",
             "never" if pd.isna(r["steps_to_threshold"]) else str(int(r["steps_to_threshold"])),
             f"({r['final_x']:.3g}, {r['final_y']:.3g})"] for r in df.to_dict("records")]
    caption = f"{res.details.get('function', 'function')}, {int(df['steps'].max())} steps from the start point"
    return _table(res.name, header, rows, caption, len(res.keys))


def activations_table(res: Folder) -> Table:
    df = pd.read_csv(res.root / "layers.csv")
    df["label"] = [label(r, res.keys) for r in df[res.keys].to_dict("records")] if res.keys else "defaults"
    stats = df.groupby(["label", "layer"])[["act_std", "act_saturated"]].mean()
    layers = sorted(set(df["layer"]))
    header = [", ".join(res.keys) or "net", *(f"layer {i}" for i in layers)]

    def cell(lab: str, layer: int) -> str:
        std, sat = stats.loc[(lab, layer)]
        return f"{std:.3g}" + ("" if math.isnan(sat) else f" ({100 * sat:.0f}%)")

    rows = [[lab, *(cell(lab, i) for i in layers)] for lab in res.labels_in(df)]
    caption = ("activation std per layer (saturated %: sigmoid outside [0.05, 0.95], tanh outside [-0.9, 0.9]); "
               f"{res.details.get('samples', '?')} N(0, 1) samples, mean over seeds")
    return _table(res.name, header, rows, caption, 1)


# a training run's final diagnostics (summary.json "diagnostics") -> (column title, scale)
_DIAGNOSTICS = {"weight_near_zero": ("near-zero weights %", 100), "weight_norm": ("‖W‖", 1),
                "grad_norm_first": ("grad norm layer 1", 1), "grad_norm_last": ("grad norm output layer", 1),
                "act_std_first": ("act std layer 1", 1), "act_std_last": ("act std last layer", 1),
                "act_saturated": ("saturated %", 100)}


def diagnostics_summary(res: Folder) -> pd.DataFrame:
    """One row per configuration: mean and std over ok runs of each final diagnostic."""
    if res.runs.empty:
        return pd.DataFrame()
    rows = [{"label": run.label, **(summary.get("diagnostics") or {})}
            for run, summary in zip(res.runs.itertuples(), res.summaries()) if run.status == OK]
    if not rows:
        return pd.DataFrame()
    df = pd.DataFrame(rows)
    out = df.groupby("label").agg(["mean", "std"])
    out.columns = [f"{name}_{stat}" for name, stat in out.columns]
    return out.reindex([lab for lab in res.order if lab in out.index]).reset_index()


def diagnostics_table(res: Folder) -> Table | None:
    if not res.details.get("diagnostics"):
        return None
    df = diagnostics_summary(res)
    if df.empty:
        return None
    atomic_write(res.root / "diagnostics_summary.csv", df.to_csv(index=False))
    names = [n for n in _DIAGNOSTICS if f"{n}_mean" in df and df[f"{n}_mean"].notna().any()]
    header = [", ".join(res.keys) or "runs", *(_DIAGNOSTICS[n][0] for n in names)]

    def cell(row: pd.Series, name: str) -> str:
        scale = _DIAGNOSTICS[name][1]
        mean, std = scale * row[f"{name}_mean"], scale * row[f"{name}_std"]
        return f"{mean:.3g}" + ("" if math.isnan(std) else f" ± {std:.2g}")

    rows = [[row["label"], *(cell(row, n) for n in names)] for _, row in df.iterrows()]
    caption = f"at the final evaluation, mean ± std over seeds; near zero: |w| < {res.details.get('near_zero', 1e-3):g}"
    return _table(f"{res.name}: diagnostics", header, rows, caption, 1)


# the task's own table; keyed by the folder's task, so it needs no code of the task itself
TABLES = {"function": function_table, "activations": activations_table, "train": diagnostics_table}


def table(res: Folder) -> Table | None:
    return TABLES[res.task](res) if res.task in TABLES else None
