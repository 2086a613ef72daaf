"""Reports from results folders only: statistics over seeds, comparisons, exports.

One row per configuration (the swept keys, or the `group_by` keys with everything
else pooled). For every accuracy, loss and gap: n, mean, std and a 95% confidence
interval of the mean (t-distribution) over the runs that finished `ok`; diverged
and failed runs are counted, not averaged. Configurations are ranked on
validation accuracy only, so the test accuracy of the winner is an honest final
figure, and each configuration is compared with a reference (the best, a named
baseline, or the same configuration in the first of several experiments) by
Welch's t-test. Time-to-target reads each run's metrics.csv.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast
from collections.abc import Iterable, Iterator

import numpy as np
import pandas as pd
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from dlbench.catalog.metrics import METRICS, TRAINING_BEST
from dlbench.catalog.status import OK, TROUBLE
from dlbench.config.keys import flatten
from dlbench.config.yaml_io import parse_yaml, read_written
from dlbench.errors import ConfigError
from dlbench.results.adjust import Adjustment, adjust
from dlbench.results.options import AT, FORMATS, ReportOptions
from dlbench.results.store import Store, atomic_write

TIMES = ["epoch", "step", "seconds"]  # units of time-to-target
CONFIDENCE = 0.95
ALPHA = 0.05
STAGE = "stage"  # a staged search's key: search | confirm | defaults
EXPERIMENT = "experiment"  # the key column that tells experiments apart when several folders are compared
TOO_FEW = "too few seeds"
MISSING = "–"


# ---------------------------------------------------------------- loading


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
               "n_params", "device")


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


def best_on(results_dir: Path, runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """best.* from each run's metrics.csv: the first evaluation with the best `metric` (in its direction),
    for a report that chooses on another metric than the engine did (summary.json's best: TRAINING_BEST)."""
    store, higher = Store(results_dir), METRICS[metric].higher_is_better
    runs = runs.copy()
    for i, run_id in zip(runs.index, runs.get("run_id", [])):
        file = store.run_dir(run_id) / "metrics.csv"
        curve = pd.read_csv(file) if file.is_file() and file.stat().st_size else pd.DataFrame()
        rows = [METRICS.with_derived(r) for r in curve.to_dict("records")]
        rows = [r for r in rows if math.isfinite(r.get(metric, math.nan))]
        if not rows:
            continue
        best = max(rows, key=lambda r: r[metric]) if higher else min(rows, key=lambda r: r[metric])
        for k, v in best.items():
            if f"best.{k}" in runs or k in METRICS or k == "epoch":
                runs.loc[i, f"best.{k}"] = v
    return runs


# ---------------------------------------------------------------- statistics


# what the numbers beside the metrics can be (a metric's own range is its record's `possible`)
POSSIBLE = {"epoch": (0.0, math.inf), **{f"ttt_{u}": (0.0, math.inf) for u in TIMES}}


def possible(column: str) -> tuple[float, float]:
    """What a summarized column can be: intervals are clipped to it (a t-interval of 96.7 ± 2.1 % runs past 100 %)."""
    return METRICS[column].possible if column in METRICS else POSSIBLE[column]


def describe(values: Iterable[float], possible: tuple[float, float] = (-math.inf, math.inf)) -> dict[str, float]:
    """n, mean, sample std and the 95% t-interval of the mean, clipped to the `possible` range;
    NaN values are missing. With one value there is no spread: std and the interval are NaN, not 0."""
    x = np.asarray(list(values), dtype=float)
    x = x[~np.isnan(x)]
    n = len(x)
    mean = float(x.mean()) if n else math.nan
    std = float(x.std(ddof=1)) if n > 1 else math.nan
    half = math.nan
    if n > 1:
        from scipy import special  # here: a sweep of single runs does not pay its import

        half = float(special.stdtrit(n - 1, (1 + CONFIDENCE) / 2)) * std / math.sqrt(n)
    low, high = possible
    return {"n": n, "mean": mean, "std": std, "ci_low": max(mean - half, low), "ci_high": min(mean + half, high)}


def welch(a: np.ndarray, b: np.ndarray) -> tuple[float, str]:
    """p-value of Welch's t-test (unequal variances) and the verdict at ALPHA."""
    if len(a) < 2 or len(b) < 2:
        return math.nan, TOO_FEW
    # Welch's t-test written out (scipy.stats.ttest_ind(equal_var=False) is the reference in the
    # tests): scipy.stats alone costs a second of start-up, scipy.special a tenth
    from scipy import special

    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    if va + vb == 0:  # both constant: equal (nothing to test) or certainly different
        return (math.nan, "identical") if a.mean() == b.mean() else (0.0, "significant")
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (a.mean() - b.mean()) / np.sqrt(va + vb)
        df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
        p = float(2 * special.stdtr(df, -abs(t)))
    if math.isnan(p):  # both samples constant and equal: nothing to test
        return p, "identical"
    return p, "significant" if p < ALPHA else "not significant"


def _groups(runs: pd.DataFrame, keys: list[str]) -> list[tuple[tuple[Any, ...], pd.DataFrame]]:
    """Runs grouped by their key values, in first-seen order; missing values become '–'."""
    if not keys:
        return [((), runs)]
    df = runs.copy()
    for k in keys:
        df[k] = df[k].astype(object).where(df[k].notna(), MISSING)
    return [(v if isinstance(v, tuple) else (v,), g) for v, g in df.groupby(keys, sort=False, dropna=False)]


def _values(runs: pd.DataFrame, column: str) -> np.ndarray:
    values = runs[column].to_numpy(dtype=float) if column in runs else np.empty(0)
    return values[~np.isnan(values)]


def aggregate(runs: pd.DataFrame, keys: list[str], at: str = "final") -> pd.DataFrame:
    """One row per configuration: run counts, and describe() of every metric over the ok runs
    (also of `epoch`, the evaluation the numbers come from, and of time-to-target when loaded)."""
    out = []
    for values, g in _groups(runs, keys):
        ok = g[g["status"] == OK]
        row: dict[str, Any] = dict(zip(keys, values))
        # a column per troubled status (diverged, failed, pruned): counted, never averaged
        row.update(n=len(ok), **{status: int((g["status"] == status).sum()) for status in TROUBLE},
                   runs=len(g), at=at)
        for m in ["epoch", *METRICS.names()]:
            row.update({f"{m}_{k}": v for k, v in describe(_values(ok, f"{at}.{m}"), possible(m)).items()})
        if "ttt.step" in g:
            for u in TIMES:
                row.update({f"ttt_{u}_{k}": v for k, v in describe(_values(g, f"ttt.{u}"),
                                                                    POSSIBLE[f"ttt_{u}"]).items()})
            row["reached"] = row.pop("ttt_step_n")
            del row["ttt_epoch_n"], row["ttt_seconds_n"]
        row["wall_time_mean"] = float(g["wall_time"].astype(float).mean())
        out.append(row)
    return pd.DataFrame(out)


# ---------------------------------------------------------------- selecting runs and keys


def _column(runs: pd.DataFrame, key: str, keys: list[str], option: str) -> str:
    """The runs column for a user key: a swept key, the seed, or any config key (optimizer.lr)."""
    if key in keys or key == "seed":
        return key
    if f"config.{key}" in runs:
        return f"config.{key}"
    raise ConfigError(f"{option}: {key!r} is not a key of these runs; swept keys: {', '.join(keys) or 'none'} "
                      f"(or seed, or any config key such as optimizer.lr)")


def _split(item: str, option: str) -> tuple[str, Any]:
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{option}: {item!r} is invalid: expected KEY=VALUE, e.g. {option} optimizer.name=sgd")
    return key.strip(), _cell(parse_yaml(text, f"{option} {item}")) if text.strip() else ""


def _matches(column: pd.Series, value: Any) -> pd.Series:
    """Cells equal to a YAML-typed value; numbers compare as numbers (1e-3 == 0.001)."""
    def same(cell: Any) -> bool:
        if isinstance(cell, (int, float)) and isinstance(value, (int, float)) and not isinstance(value, bool):
            return math.isclose(cell, value, rel_tol=1e-9, abs_tol=0.0)
        return cell == value or str(cell) == str(value)

    return column.map(same).astype(bool)


def _choices(column: pd.Series) -> str:
    return ", ".join(sorted({str(v) for v in column.dropna()}))


def where(runs: pd.DataFrame, keys: list[str], conditions: list[str]) -> pd.DataFrame:
    """Runs matching every `KEY=VALUE` condition; several values of one key are alternatives."""
    wanted: dict[str, list[tuple[str, Any]]] = {}
    for item in conditions:
        key, value = _split(item, "--where")
        wanted.setdefault(_column(runs, key, keys, "--where"), []).append((item, value))
    for column, alternatives in wanted.items():
        keep = np.zeros(len(runs), dtype=bool)
        for item, value in alternatives:
            hit = _matches(runs[column], value).to_numpy()
            if not hit.any():
                raise ConfigError(f"--where {item}: matches no runs; values here: {_choices(runs[column])}")
            keep |= hit
        runs = runs[keep]
    return runs


# ---------------------------------------------------------------- the report


@dataclass
class Report:
    summary: pd.DataFrame  # one row per configuration, numbers only; best first
    keys: list[str]  # columns that name a configuration (EXPERIMENT first when comparing)
    at: str  # final | best
    metric: str  # the metric the significance tests compare
    reference: str  # what each row is compared with: best | baseline | the first experiment
    reference_text: str  # the same, in words for the caption
    target: float | None = None
    show: tuple[str, ...] = ()  # metrics shown in the tables (csv / json carry all)
    adjust: Adjustment = "holm"  # how the p-values are adjusted for the many comparisons
    rank_by: str = "val_acc"  # the validation split's of the metric asked; without one, the metric asked
    fallback: bool = False  # ranked without a validation split (data.val_size: 0)
    notes: list[str] = field(default_factory=list)  # what the caption adds (rows left out)
    sources: list[str] = field(default_factory=list)  # the caption's last lines: where plugin components came from
    options: ReportOptions = ReportOptions()  # what it was asked (`metric` above: what it compares, which may differ)

    def ranked_text(self) -> str:
        words = METRICS[self.rank_by].words
        if not self.fallback:
            return words
        return (f"{words} (no validation split: data.val_size is 0; a best picked on the test set is an "
                "optimistic estimate)" if METRICS[self.rank_by].split == "test" else
                f"{words} (no validation split: data.val_size is 0)")

    def at_text(self) -> str:
        """Which evaluation of each run the numbers come from."""
        if self.at == "best" and self.rank_by != TRAINING_BEST:
            return f"the evaluation with the best {METRICS[self.rank_by].words}"
        return AT[self.at]

    def confirmed(self) -> bool:
        """Whether a confirm stage is in the table: the best then comes from its runs (fresh seeds)."""
        return STAGE in self.keys and bool((self.summary[STAGE] == "confirm").any())

    def best(self) -> pd.DataFrame:
        """The configuration with the best mean of `rank_by` (in its direction; per experiment);
        with a confirm stage, among its reruns only (a search's best is optimistic: picked on
        the same runs it is measured on)."""
        ranked = self.summary.dropna(subset=[f"{self.rank_by}_mean"])
        if self.confirmed():
            ranked = ranked[ranked[STAGE] == "confirm"]
        if EXPERIMENT in self.keys:
            return ranked.sort_values(f"{self.rank_by}_mean", ascending=not METRICS[self.rank_by].higher_is_better,
                                      kind="stable").groupby(EXPERIMENT, sort=False).head(1)
        return ranked.head(1)


def rank_by(runs: pd.DataFrame, metric: str) -> tuple[str, bool]:
    """What the best is chosen on when `metric` is compared: the metric on the validation split where there
    is one, else the metric itself; with no validation split at all (data.val_size: 0), a validation
    metric falls back to its test split. Also whether it fell back."""
    chosen = METRICS.selection(metric)
    if METRICS[chosen].split != "val" or _has_validation(runs, chosen):
        return chosen, False
    test = METRICS.on_split(metric, "test")
    return (test.name if metric == chosen and test is not None else metric), True


def _has_validation(runs: pd.DataFrame, metric: str) -> bool:
    """Whether the runs had a validation split: some run measured `metric` (a run that diverged at once
    measured nothing, so the config says: data.val_size)."""
    if any(runs[c].notna().any() for c in (f"{at}.{metric}" for at in AT) if c in runs):
        return True
    size = runs.get("config.data.val_size")
    return size is not None and bool((pd.to_numeric(size, errors="coerce") > 0).any())


def _rank(summary: pd.DataFrame, keys: list[str], first: str | None, rank_by: str = "val_acc") -> pd.DataFrame:
    """Best first (by `rank_by`, in its direction). When comparing experiments, the rows of one
    configuration stay together, ordered as the folders were given, and configurations
    are ranked on the `first` experiment."""
    sign = 1.0 if METRICS[rank_by].higher_is_better else -1.0
    if first is None:
        return summary.sort_values(f"{rank_by}_mean", ascending=sign < 0, na_position="last", kind="stable")
    configs = [tuple(r) for r in summary[keys[1:]].itertuples(index=False)]
    experiments = list(summary[EXPERIMENT])
    score = {c: sign * v for c, e, v in zip(configs, experiments, summary[f"{rank_by}_mean"]) if e == first}
    order = {c: i for i, c in enumerate(dict.fromkeys(configs))}
    position = {e: i for i, e in enumerate(dict.fromkeys(experiments))}

    def rank(i: int) -> tuple[float, int, int]:
        best_first = -score.get(configs[i], math.nan)
        return (math.inf if math.isnan(best_first) else best_first, order[configs[i]], position[experiments[i]])

    return summary.iloc[sorted(range(len(summary)), key=rank)]


def _references(summary: pd.DataFrame, keys: list[str], baseline: list[str],
                first: str | None, rank_by: str = "val_acc") -> tuple[list[int | None], str, str]:
    """For each row the position of the row it is compared with; that reference, short and in words."""
    if first is not None:
        if baseline:
            raise ConfigError("--baseline: not available when comparing experiments; "
                              "each configuration is compared with itself in the first folder")
        at = {tuple(r[k] for k in keys[1:]): i for i, (_, r) in enumerate(summary.iterrows())
              if r[EXPERIMENT] == first}
        return ([at.get(tuple(r[k] for k in keys[1:])) for _, r in summary.iterrows()], first,
                f"the same configuration in {first}")
    if not baseline:
        ranked = summary[f"{rank_by}_mean"].notna().to_numpy()
        if STAGE in keys and (summary[STAGE] == "confirm").any():  # a search point has one seed: not a reference
            best = np.flatnonzero(ranked & (summary[STAGE] == "confirm").to_numpy())
            return ([int(best[0]) if len(best) else None] * len(summary), "best",
                    f"the best confirm run by {METRICS[rank_by].words}")
        best = np.flatnonzero(ranked)
        return ([int(best[0]) if len(best) else None] * len(summary), "best",
                f"the best configuration by {METRICS[rank_by].words}")
    hit = np.ones(len(summary), dtype=bool)
    for item in baseline:
        key, value = _split(item, "--baseline")
        if key not in keys:
            raise ConfigError(f"--baseline {item}: {key!r} is not a key of this report; "
                              f"keys: {', '.join(keys) or 'none (one configuration)'}")
        match = _matches(summary[key], value).to_numpy()
        if not match.any():
            raise ConfigError(f"--baseline {item}: matches no configuration; values here: {_choices(summary[key])}")
        hit &= match
    if hit.sum() != 1:
        rest = [k for k in keys if k not in {_split(b, '--baseline')[0] for b in baseline}]
        raise ConfigError(f"--baseline {' '.join(baseline)}: matches {int(hit.sum())} configurations; "
                          f"pin one with another --baseline on {', '.join(rest) or 'these keys'}")
    return [int(np.flatnonzero(hit)[0])] * len(summary), "baseline", "the baseline " + ", ".join(baseline)


def _compare(runs: pd.DataFrame, summary: pd.DataFrame, keys: list[str], at: str, metric: str,
             references: list[int | None]) -> pd.DataFrame:
    """delta (row mean − reference mean), Welch p-value and verdict on `metric` for each row."""
    samples = {values: _values(g[g["status"] == OK], f"{at}.{metric}") for values, g in _groups(runs, keys)}
    names = [tuple(r[k] for k in keys) for _, r in summary.iterrows()]
    rows: list[tuple[float, float, str]] = []  # (delta, p, verdict) per row
    for i, ref in enumerate(references):
        if ref is None:
            rows.append((math.nan, math.nan, "no reference"))
        elif ref == i:
            rows.append((0.0, math.nan, "reference"))
        else:
            a, b = samples[names[i]], samples[names[ref]]
            p_i, v = welch(a, b)
            rows.append((float(a.mean() - b.mean()) if len(a) and len(b) else math.nan, p_i, v))
    return summary.assign(delta=[r[0] for r in rows], p_value=[r[1] for r in rows], verdict=[r[2] for r in rows])


def _adjusted(summary: pd.DataFrame, method: Adjustment) -> pd.DataFrame:
    """p_adjusted beside p_value; the verdict of every test from the adjusted p-value."""
    p_adjusted = adjust(summary["p_value"].to_numpy(dtype=float), method)
    tested = summary["verdict"].isin(["significant", "not significant"]).to_numpy() & ~np.isnan(p_adjusted)
    verdict = np.where(tested, np.where(p_adjusted < ALPHA, "significant", "not significant"), summary["verdict"])
    return summary.assign(p_adjusted=p_adjusted, verdict=verdict)


def build(runs: pd.DataFrame, keys: list[str], options: ReportOptions = ReportOptions()) -> Report:
    """Aggregate, rank on the metric's validation split (or the metric itself; in its direction) and compare
    with the reference (`options.where` and `group_by` are applied by `report`, which loads the runs)."""
    at, metric, adjust = options.at, options.metric, cast(Adjustment, options.adjust)
    summary = aggregate(runs, keys, at)
    first = summary[EXPERIMENT].iloc[0] if EXPERIMENT in keys else None  # folders keep the order given
    ranked_on, fallback = rank_by(runs, metric)
    if fallback and METRICS[metric].split == "val":  # no validation split: compare on what ranks
        metric = ranked_on
    summary = _rank(summary, keys, first, ranked_on).reset_index(drop=True)
    references, reference, reference_text = _references(summary, keys, list(options.baseline), first, ranked_on)
    summary = _adjusted(_compare(runs, summary, keys, at, metric, references), adjust)
    show = [m.name for m in METRICS if m.shown_with is None or getattr(options, m.shown_with) or m.name == metric]
    return Report(summary, keys, at, metric, reference, reference_text, options.target, tuple(show), adjust,
                  ranked_on, fallback, options=options)


def _label(path: Path, paths: list[Path]) -> str:
    """The folder name, or the path as given when two folders share a name."""
    names = [p.name for p in paths]
    return path.name if names.count(path.name) == 1 else str(path)


def report(results_dirs: list[Path], options: ReportOptions = ReportOptions()) -> Report:
    """The report of one results folder, or of several side by side (keys must line up)."""
    filters, target, group_by = list(options.where), options.target, list(options.group_by)
    if len(set(map(Path.resolve, results_dirs))) < len(results_dirs):
        raise ConfigError("report: the same results folder is given twice")
    frames, all_keys, hidden, recorded = [], [], [], []
    for d in results_dirs:
        runs, keys = load_runs(d)
        if runs.empty:
            raise ConfigError(f"{d}: no finished runs yet")
        recorded.append(PLUGIN_SOURCES in runs)  # some run here records its plugins (a folder since they do)
        if filters:
            runs = where(runs, keys, filters)
        if target is not None:
            runs = time_to_target(d, runs, target)
        if options.at == "best" and rank_by(runs, options.metric)[0] != TRAINING_BEST:
            runs = best_on(d, runs, rank_by(runs, options.metric)[0])
        if STAGE in keys and not filters and not group_by and (runs[STAGE] == "confirm").any():
            # a staged search: the confirm and defaults runs are the comparison (fresh seeds);
            # the search's one-seed points are in summary.csv, or shown with --where stage=search
            searched = int((runs[STAGE] == "search").sum())
            runs = runs[runs[STAGE] != "search"]
            hidden.append(searched)
        if group_by:  # a config key that was not swept becomes a column under its own name
            runs = runs.assign(**{k: runs[_column(runs, k, keys, "--group-by")] for k in group_by})
            keys = list(group_by)
        frames.append(runs.assign(**{EXPERIMENT: _label(d, results_dirs)}) if len(results_dirs) > 1 else runs)
        all_keys.append(keys)
    keys = all_keys[0]
    for d, other in zip(results_dirs[1:], all_keys[1:]):
        if set(other) != set(keys):
            common = [k for k in keys if k in other]
            hint = f"compare on common keys with --group-by {' --group-by '.join(common)}" if common else \
                "they share no swept key"
            raise ConfigError(f"{results_dirs[0]} and {d} sweep different keys "
                              f"({', '.join(keys) or 'none'} vs {', '.join(other) or 'none'}); {hint}")
    runs = pd.concat(frames, ignore_index=True)
    result = build(runs, [EXPERIMENT, *keys] if len(results_dirs) > 1 else keys, options)
    result.sources = plugin_notes(list(zip(results_dirs, frames, recorded)))
    if hidden:
        result.notes.append(f"the confirm and defaults stages; {sum(hidden)} search runs are left out "
                            "(see them with --where stage=search, or in summary.csv).")
    return result


def plugin_notes(folders: list[tuple[Path, pd.DataFrame, bool]]) -> list[str]:
    """Where each plugin component of these runs came from, one line each, from what each run's
    summary.json records (nothing is imported). A folder whose runs predate that record (none
    `recorded`) but which keeps plugin sources: those files, named."""
    versions: dict[tuple[str, str], dict[str, tuple[dict[str, Any], int, str]]] = {}
    older = []
    for root, runs, recorded in folders:
        where = f"{root.name}/" if len(folders) > 1 else ""
        records = runs[PLUGIN_SOURCES].dropna() if PLUGIN_SOURCES in runs else pd.Series(dtype=object)
        if not recorded and (root / "plugins").is_dir():
            kept = sorted(p.name for p in (root / "plugins").iterdir() if not p.name.startswith("."))
            if kept:
                older.append(f"{root.name}/plugins/ keeps the plugin sources {', '.join(kept)} (its runs "
                             "predate the record of which names came from them).")
        for text in records:
            for record in json.loads(text).values():
                seen = versions.setdefault((record["kind"], record["name"]), {})
                _, n, _ = seen.get(record["sha256"], (record, 0, where))
                seen[record["sha256"]] = (record, n + 1, where)
    lines = []
    for (kind, name), seen in sorted(versions.items(), key=lambda item: (item[0][0], item[0][1])):
        record, _, folder = next(iter(seen.values()))
        origin = f"module {record['module']}" if record.get("module") else record["file"]
        if len(seen) == 1:
            copy = f"; kept as {folder}{record['kept']}" if record.get("kept") else ""
            lines.append(f"plugin {name}: {kind} from {origin} (sha256 {record['sha256'][:8]}{copy}).")
        else:
            each = ", ".join(f"{digest[:8]} ({n} runs)" for digest, (_, n, _) in seen.items())
            lines.append(f"plugin {name}: {kind} from {origin} in {len(seen)} versions, in rows of their own "
                         f"({PLUGIN_VERSION}): sha256 {each}; each source kept in plugins/.")
    return lines + older


def write_tables(results_dir: Path) -> Report:
    """(Re)write runs.csv and summary.csv (default report: final evaluation, vs the best)."""
    runs, keys = load_runs(results_dir)
    if runs.empty:
        raise ConfigError(f"{results_dir}: no finished runs yet")
    result = build(runs, keys)
    atomic_write(results_dir / "runs.csv", runs.to_csv(index=False))
    atomic_write(results_dir / "summary.csv", _csv(result))
    return result


def _csv(rep: Report) -> str:
    """The summary as csv; a key a configuration has not got is an empty cell, as in runs.csv."""
    keys = [k for k in rep.keys if k in rep.summary]
    return rep.summary.assign(**{k: rep.summary[k].replace(MISSING, None) for k in keys}).to_csv(index=False)


# ---------------------------------------------------------------- display


def _num(value: float, scale: float, digits: int) -> str:
    return f"{scale * value:.{digits}f}"


def _stat(row: pd.Series, prefix: str, scale: float, digits: int) -> str:
    """'mean ± std' and, on a second line, the 95% CI; one value alone when n = 1."""
    mean, std = row[f"{prefix}_mean"], row[f"{prefix}_std"]
    if math.isnan(mean):
        return MISSING
    if math.isnan(std):
        return _num(mean, scale, digits)
    lo, hi = row[f"{prefix}_ci_low"], row[f"{prefix}_ci_high"]
    return (f"{_num(mean, scale, digits)} ± {_num(std, scale, digits)}\n"
            f"[{_num(lo, scale, digits)}, {_num(hi, scale, digits)}]")


def _scale(metric: str, mean: float = math.nan) -> tuple[float, int]:
    """(scale, decimals) of a metric's cells: accuracies in % with one decimal; a loss with three
    significant digits of its mean (a loss of 2.4e-4 reads 0.000240, not 0.000), at least 3 decimals."""
    m = METRICS[metric]
    if m.digits is not None:
        return m.scale, m.digits
    if not math.isfinite(mean) or mean == 0:
        return m.scale, 3
    return m.scale, max(3, min(9, 2 - math.floor(math.log10(abs(m.scale * mean)))))


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _versus(row: pd.Series, metric: str, method: Adjustment) -> str:
    verdict = row["verdict"]
    if verdict in ("reference", "no reference", TOO_FEW):
        return verdict
    scale, digits = _scale(metric, row[f"{metric}_mean"])
    delta = f"{scale * row['delta']:+.{digits}f}" if not math.isnan(row["delta"]) else MISSING
    if verdict == "identical":
        return f"{delta}, identical"
    p = _p(row["p_value"])
    shown = f"{delta}, p{p if p.startswith('<') else '=' + p}"
    if method == "holm" and not math.isnan(row["p_adjusted"]):
        shown += f" (Holm {_p(row['p_adjusted'])})"
    return shown + (" *" if verdict == "significant" else "")


def _status(row: pd.Series) -> str:
    parts = [f"{row[s]} {s}" for s in TROUBLE if row[s]]
    return ", ".join(parts) or OK


def _epoch(row: pd.Series) -> str:
    mean, std = row["epoch_mean"], row["epoch_std"]
    if math.isnan(mean):
        return MISSING
    if math.isnan(std) or std == 0:  # whole epochs as integers; step-based runs end mid-epoch: one decimal
        return f"{mean:.0f}" if float(mean).is_integer() else f"{mean:.1f}"
    return f"{mean:.1f} ± {std:.1f}"


def display_rows(rep: Report) -> tuple[list[str], list[list[str]]]:
    """Header and rows of strings shared by the terminal, markdown and LaTeX tables."""
    header = [*rep.keys, "n", "epoch", *(METRICS[m].label for m in rep.show), f"vs {rep.reference}"]
    if rep.target is not None:
        header += [f"reached {rep.target:g}", *(f"{u} to {rep.target:g}" for u in ("epochs", "steps", "seconds"))]
    troubled = bool(rep.summary[list(TROUBLE)].to_numpy().any())  # a status column only when needed
    header += ["status"] * troubled
    rows = []
    for _, r in rep.summary.iterrows():
        row = [*(value_text(r[k]) for k in rep.keys), str(r["n"]), _epoch(r),
               *(_stat(r, m, *_scale(m, r[f"{m}_mean"])) for m in rep.show), _versus(r, rep.metric, rep.adjust)]
        if rep.target is not None:
            row += [f"{r['reached']}/{r['runs']}", _stat(r, "ttt_epoch", 1, 1), _stat(r, "ttt_step", 1, 0),
                    _stat(r, "ttt_seconds", 1, 1)]
        rows.append(row + [_status(r)] * troubled)
    return header, rows


def caption(rep: Report) -> list[str]:
    """What the numbers are, and the final figure: test accuracy of the best by validation."""
    n_tests = int(rep.summary["verdict"].isin(["significant", "not significant"]).sum())
    lines = [
        f"mean ± std over seeds [{CONFIDENCE:.0%} CI, t-distribution, clipped to what is possible: accuracy "
        f"0-100 %, losses and times >= 0] at {rep.at_text()} of each run; n = runs that finished ok; "
        f"ranked by {rep.ranked_text()}.",
        f"vs: difference in {METRICS[rep.metric].difference()} from {rep.reference_text}; * p < {ALPHA} "
        "(Welch's t-test, "
        f"{n_tests} comparisons, " + ("p Holm-adjusted for the comparisons made, beside the raw p; * from the "
                                      "adjusted p)." if rep.adjust == "holm" else
                                      "not corrected for multiple testing)."),
    ]
    if rep.target is not None:
        lines.append(f"time to target: first evaluation with validation accuracy >= {rep.target:g}, "
                     "over the runs that reached it; seconds are the wall clock of the stack that trained "
                     "the run, shared by the runs trained together (compare steps and epochs).")
    lines += rep.notes
    if rep.best().empty and not rep.summary["n"].any():  # every run diverged, failed or was pruned
        counts = ", ".join(f"{int(rep.summary[s].sum())} {s}" for s in TROUBLE if rep.summary[s].sum())
        lines.append(f"no run finished ok ({counts}): none is picked as best.")
    elif rep.best().empty:
        lines.append(f"no configuration has a {METRICS[rep.rank_by].words} (data.val_size: 0?): none is picked "
                     "as best.")
    return lines + best_lines(rep) + rep.sources


def best_lines(rep: Report) -> list[str]:
    """The best configuration (one per experiment) and its compared metric on the test split, in words."""
    lines = []
    # the final figure: the compared metric on the test split (an honest estimate: not what chose the best)
    final = METRICS.on_split(rep.metric, "test") or METRICS[rep.metric]
    for _, r in rep.best().iterrows():
        name = ", ".join(f"{k}={value_text(r[k])}" for k in rep.keys) or "the only configuration"
        test = _stat(r, final.name, *_scale(final.name, r[f"{final.name}_mean"])).replace("\n", " ")
        warn = f" ({_status(r)} among {r['runs']} runs)" if _status(r) != OK else ""
        words = METRICS[rep.rank_by].words
        how = (f"best by {words} among the confirm runs (configurations chosen on the search's "
               "validation accuracy, rerun on fresh seeds)" if rep.confirmed() else f"best by {words}")
        lines.append(f"{how}: {name}: {final.words} {test}{' ' + final.unit if final.unit else ''} "
                     f"(n = {r['n']}){warn}.")
    return lines


@dataclass(frozen=True)
class _Layout:
    """How the terminal table is drawn; rich_table tries these from the whole table down."""

    compact: bool = False  # no vertical rules; headers and the comparison over several lines
    intervals: bool = True  # the 95% interval on a second line
    std: str = "inline"  # '74.4 ± 0.1' | 'below' ('74.4' over '±0.1') | 'none'
    narrow_vs: bool = False  # the comparison over three lines
    dropped: tuple[str, ...] = ()  # columns left out


def _stat_cell(row: pd.Series, prefix: str, scale: float, digits: int, layout: _Layout) -> str:
    mean, std = row[f"{prefix}_mean"], row[f"{prefix}_std"]
    if math.isnan(mean):
        return MISSING
    text = _num(mean, scale, digits)
    if math.isnan(std) or layout.std == "none":
        return text
    if layout.std == "below":
        text += f"\n±{_num(std, scale, digits)}"
    else:
        text += f" ± {_num(std, scale, digits)}"
    if layout.intervals:
        text += f"\n[{_num(row[f'{prefix}_ci_low'], scale, digits)}, {_num(row[f'{prefix}_ci_high'], scale, digits)}]"
    return text


def _versus_cell(row: pd.Series, metric: str, method: Adjustment, layout: _Layout) -> str:
    line = _versus(row, metric, method)
    if not layout.compact or ", p" not in line:
        return line
    star = " *" if line.endswith(" *") else ""
    delta, _, rest = line.removesuffix(star).partition(", ")
    p, _, holm = rest.partition(" (")
    holm = f"({holm}" if holm else ""
    if layout.narrow_vs:
        return "\n".join(part for part in (delta + star, p, holm) if part)
    return f"{delta}, {p}" + (f"\n{holm}{star}" if holm else star)


def _layout_columns(rep: Report, layout: _Layout) -> list[tuple[str, str, list[str]]]:
    """(column id, header, cells) of the terminal table in this layout."""
    rows = [r for _, r in rep.summary.iterrows()]
    cols: list[tuple[str, str, list[str]]] = [(k, k, [value_text(r[k]) for r in rows]) for k in rep.keys]
    cols += [("n", "n", [str(r["n"]) for r in rows]), ("epoch", "epoch", [_epoch(r) for r in rows])]
    cols += [(m, METRICS[m].label, [_stat_cell(r, m, *_scale(m, r[f"{m}_mean"]), layout) for r in rows])
             for m in rep.show]
    cols.append(("vs", f"vs {rep.reference}", [_versus_cell(r, rep.metric, rep.adjust, layout) for r in rows]))
    if rep.target is not None:
        t = f"{rep.target:.4g}"
        cols.append(("reached", f"reached {t}", [f"{r['reached']}/{r['runs']}" for r in rows]))
        cols += [(f"ttt_{u}", f"{u}s to {t}" if u != "seconds" else f"seconds to {t}",
                  [_stat_cell(r, f"ttt_{u}", 1, d, layout) for r in rows]) for u, d in (("epoch", 1), ("step", 0),
                                                                                        ("seconds", 1))]
    if rep.summary[list(TROUBLE)].to_numpy().any():  # a status column only when needed
        cols.append(("status", "status", [_status(r) for r in rows]))
    return [c for c in cols if c[0] not in layout.dropped]


_BREAK = r"(?<=[ .-])"  # a header breaks after a space, a dot or a hyphen


def _wrap_header(header: str, width: int) -> str:
    """The header over lines no wider than its column, broken after spaces and dots."""
    words = [w for w in re.split(_BREAK, header) if w]
    lines = [""]
    for w in words:
        if lines[-1] and len((lines[-1] + w).rstrip()) > width:
            lines.append("")
        lines[-1] += w
    return "\n".join(line.rstrip() for line in lines)


def _draw(rep: Report, title: str | None, cols: list[tuple[str, str, list[str]]], layout: _Layout,
          notes: list[str] | None) -> Table:
    """One table in `layout`; notes None: no caption (a part of a split table: the whole has it)."""
    n_keys = sum(c[0] in rep.keys for c in cols)
    tall = any("\n" in cell for c in cols for cell in c[2])
    # compact: two spaces between columns, a blank line between rows of several lines
    options: dict[str, Any] = dict(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0),
                                   show_lines=tall) if layout.compact else {}
    table = Table(title=title, caption="\n".join([*caption(rep), *notes]) if notes is not None else None,
                  caption_justify="left", **options)
    for i, (_, header, cells) in enumerate(cols):
        if layout.compact:
            widest = max((len(line) for cell in cells for line in cell.split("\n")), default=1)
            header = _wrap_header(header, max(widest, *(len(w) for w in re.split(_BREAK, header))))
        table.add_column(header, justify="left" if i < n_keys else "right", no_wrap=True)
    comparing = EXPERIMENT in rep.keys
    rows = list(zip(*(c[2] for c in cols)))
    for i, row in enumerate(rows):
        # when comparing experiments, a rule after the rows of each configuration
        last = i + 1 == len(rows) or rows[i + 1][1:n_keys] != row[1:n_keys]
        table.add_row(*(Text(c) for c in row), end_section=comparing and last and not layout.compact)
    return table


def _width(table: Table) -> int:
    """The columns a table takes, drawn as wide as it needs (its caption wraps to it)."""
    out = io.StringIO()
    Console(width=10**4, file=out, color_system=None).print(table, crop=False)
    return max(map(len, out.getvalue().splitlines()), default=0)


def _layouts(rep: Report) -> Iterator[_Layout]:
    """From the whole table down: lossless steps first, then what is least telling. Columns
    the user asked for (losses, time to target, the compared metric) never go; the gap and
    test accuracy stay."""
    layout = _Layout()
    yield layout
    for change in ({"compact": True}, {"intervals": False}, {"std": "below"}, {"narrow_vs": True},
                   {"dropped": ("epoch",)}, {"dropped": ("epoch", "n")}, {"std": "none"}):
        layout = replace(layout, **change)
        yield layout
    if rep.metric != "train_acc" and "train_acc" in rep.show:  # train = gap + test
        yield replace(layout, dropped=(*layout.dropped, "train_acc"))


def _given_up(rep: Report, layout: _Layout) -> str:
    parts = ([f"{CONFIDENCE:.0%} intervals"] * (not layout.intervals) + ["± std"] * (layout.std == "none")
             + [{"n": "n (runs ok)", "train_acc": "train acc (= gap + test)"}.get(d, d) for d in layout.dropped])
    return ", ".join(parts)


def rich_table(rep: Report, title: str, width: int | None = None) -> Table:
    """The terminal table. Given the terminal's width, it fits without cutting anything:
    rules and headers compact first, then the interval lines, the std and the least telling
    columns go (the caption says which, and how to see them); if the table is still too
    wide, its columns are split over several tables, each with the configuration's keys."""
    layouts = list(_layouts(rep))
    if width is None:
        return _draw(rep, title, _layout_columns(rep, layouts[0]), layouts[0], [])
    for layout in layouts:
        notes = []
        if _given_up(rep, layout):
            notes = [f"left out to fit {width} columns: {_given_up(rep, layout)}; see everything with "
                     "--format csv (or markdown), or in a wider terminal."]
        table = _draw(rep, title, _layout_columns(rep, layout), layout, notes)
        if _width(table) <= width:
            return table
    # still too wide: every column kept (only the intervals go), over several tables
    split = replace(layouts[0], compact=True, intervals=False, std="below", narrow_vs=True)
    return _split_table(rep, title, split, [f"left out to fit {width} columns: {_given_up(rep, split)}; see them with "
                                      "--format csv (or markdown), or in a wider terminal."], width)


def _split_table(rep: Report, title: str, layout: _Layout, notes: list[str], width: int) -> Table:
    """The narrowest layout's columns over several tables, each with the keys: nothing dropped."""
    cols = _layout_columns(rep, layout)
    keys, rest = cols[:len(rep.keys)], cols[len(rep.keys):]
    parts: list[list[tuple[str, str, list[str]]]] = [[]]
    for col in rest:
        if parts[-1] and _width(_draw(rep, None, keys + parts[-1] + [col], layout, None)) > width:
            parts.append([])
        parts[-1].append(col)
    outer = Table.grid()
    outer.title, outer.caption, outer.caption_justify = title, "\n".join([*caption(rep), *notes,
                                                                         f"the columns continue in {len(parts)} "
                                                                         "tables, each with the keys."]), "left"
    outer.add_column(no_wrap=True)
    for part in parts:
        outer.add_row(_draw(rep, None, keys + part, layout, None))
    return outer


def render(rep: Report, title: str) -> str:
    """The terminal table as plain text, as wide as it needs: files and pipes have no reason to wrap it."""
    return plain_text(rich_table(rep, title))


def plain_text(table: Table) -> str:
    """A rich table as plain text, as wide as it needs."""
    out = io.StringIO()
    Console(file=out, width=Console(width=10**4).measure(table).maximum, color_system=None).print(table)
    return out.getvalue()


def markdown(rep: Report) -> str:
    header, rows = display_rows(rep)
    esc = lambda s: s.replace("\n", " ").replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(map(esc, header)) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(map(esc, r)) + " |" for r in rows]
    return "\n".join(lines) + "\n\n" + "\n".join(f"_{esc(c)}_  " for c in caption(rep)) + "\n"


_LATEX = str.maketrans({"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                        ">": r"\textgreater{}"})


def latex(rep: Report) -> str:
    header, rows = display_rows(rep)
    frame = pd.DataFrame([[c.replace("\n", " ") for c in r] for r in rows], columns=header)
    text = frame.to_latex(index=False, escape=True, caption=" ".join(caption(rep)).translate(_LATEX),
                          column_format="l" * len(rep.keys) + "r" * (len(header) - len(rep.keys)))
    # our only non-ASCII characters, and '<' (¡ in the default OT1 font), spelled so any LaTeX compiles them
    return text.replace("±", r"$\pm$").replace(MISSING, "--").replace("<", r"\textless{}")


def export(rep: Report, fmt: str) -> str:
    """The report as text: csv / json carry every number, the others the display table."""
    if fmt == "csv":
        return _csv(rep)
    if fmt == "json":
        meta = {"at": rep.at, "ranked_by": rep.rank_by, "compared_on": rep.metric, "reference": rep.reference_text,
                "alpha": ALPHA, "adjust": rep.adjust, "confidence": CONFIDENCE, "target": rep.target, "keys": rep.keys,
                "plugins": rep.sources, "options": dataclasses.asdict(rep.options)}
        doc = {**meta, "best": json.loads(rep.best().to_json(orient="records", double_precision=15)),
               "configurations": json.loads(rep.summary.to_json(orient="records", double_precision=15))}
        return json.dumps(doc, indent=2) + "\n"
    if fmt == "markdown":
        return markdown(rep)
    if fmt == "latex":
        return latex(rep)
    if fmt == "table":
        return render(rep, title="")
    raise ValueError(f"unknown format {fmt!r}")


def text(rep: Report, title: str, fmt: str, roots: list[Path]) -> str:
    """The report in one of FORMATS, as `dlbench report --format FMT` writes it (html: the whole page,
    with the figures, config and environment of `roots`)."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format: {fmt!r} is invalid; allowed: {', '.join(FORMATS)}")
    if fmt == "html":
        from dlbench.results import html

        return html.page(title, [rich_table(rep, title)], roots, rep.options)
    return render(rep, title) if fmt == "table" else export(rep, fmt)
