"""The report as numbers: runs (results/load.py) -> a `Report` (statistics over seeds, ranking, comparisons).

One row per configuration (the swept keys, or the `group_by` keys with everything
else pooled). For every metric of the catalog: n, mean, std and a 95% confidence
interval of the mean (t-distribution, clipped to what the metric can be) over the runs
that finished `ok`; diverged, failed and pruned runs are counted, not averaged.
Configurations are ranked on the validation split of the metric asked (`--metric`, in
its direction), so its test split of the winner is an honest final figure, and each
configuration is compared with a reference (the best, a named baseline, or the same
configuration in the first of several experiments) by Welch's t-test. What is shown
and how is results/render/ (columns, terminal, formats).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from dlbench.catalog.metrics import METRICS, TRAINING_BEST
from dlbench.catalog.status import OK, TROUBLE
from dlbench.config.yaml_io import parse_yaml
from dlbench.errors import ConfigError
from dlbench.results.adjust import Adjustment, adjust
from dlbench.results.load import (
    MISSING,
    PLUGIN_SOURCES,
    PLUGIN_VERSION,
    TIMES,
    _cell,
    best_on,
    chosen_on,
    load_runs,
    time_to_target,
)
from dlbench.results.options import AT, ReportOptions
from dlbench.results.store import atomic_write

CONFIDENCE = 0.95
ALPHA = 0.05
STAGE = "stage"  # a staged search's key: search | confirm | defaults
EXPERIMENT = "experiment"  # the key column that tells experiments apart when several folders are compared
TOO_FEW = "too few seeds"
NO_RUN_OK = "no run ok"  # a verdict: every run of the configuration diverged, failed or was pruned


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
    # what the runs' best evaluations were chosen on while training (summary.json's best_on: train.monitor)
    trained_on: tuple[str, ...] = (TRAINING_BEST,)
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
        if self.at == "best" and {self.rank_by, *self.trained_on} != {TRAINING_BEST}:
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
            if not len(a):  # no run of it finished ok: say why, not that seeds are too few
                row = summary.iloc[i]
                v = f"{NO_RUN_OK}: " + ", ".join(f"{row[s]} {s}" for s in TROUBLE if row[s])
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
    frames, all_keys, hidden, recorded, trained_on = [], [], [], [], set()
    for d in results_dirs:
        runs, keys = load_runs(d)
        if runs.empty:
            raise ConfigError(f"{d}: no finished runs yet")
        recorded.append(PLUGIN_SOURCES in runs)  # some run here records its plugins (a folder since they do)
        if filters:
            runs = where(runs, keys, filters)
        if target is not None:
            runs = time_to_target(d, runs, target)
        trained_on |= chosen_on(runs)
        if options.at == "best" and chosen_on(runs) - {rank_by(runs, options.metric)[0]}:
            runs = best_on(d, runs, rank_by(runs, options.metric)[0])  # the engine chose on another metric
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
    result.trained_on = tuple(sorted(trained_on)) or (TRAINING_BEST,)
    if trained_on - {TRAINING_BEST}:
        words = " / ".join(METRICS[m].words if m in METRICS else m for m in result.trained_on)
        result.notes.append(f"while training, each run's best evaluation, early stopping and pruning were chosen on "
                            f"{words} (train.monitor).")
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
    atomic_write(results_dir / "summary.csv", summary_csv(result))
    return result


def summary_csv(rep: Report) -> str:
    """The summary as csv; a key a configuration has not got is an empty cell, as in runs.csv."""
    keys = [k for k in rep.keys if k in rep.summary]
    return rep.summary.assign(**{k: rep.summary[k].replace(MISSING, None) for k in keys}).to_csv(index=False)
