"""The report's columns, built once: each a header, its cells for a layout (the whole table, or a
narrower one for the terminal) and the report's numbers behind them; the caption that says what the numbers
are. The terminal, markdown, LaTeX and HTML tables draw the cells; the API's DataFrame (`numbers`) holds
the numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from dlbench.catalog.metrics import METRICS
from dlbench.catalog.status import OK, TROUBLE
from dlbench.results.adjust import Adjustment
from dlbench.results.load import MISSING, value_text
from dlbench.results.report import ALPHA, CONFIDENCE, NO_RUN_OK, TOO_FEW, Report, possible


def _num(value: float, scale: float, digits: int) -> str:
    return f"{scale * value:.{digits}f}"


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
    if verdict in ("reference", "no reference", TOO_FEW) or verdict.startswith(NO_RUN_OK):
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


def caption(rep: Report) -> list[str]:
    """What the numbers are, and the final figure: test accuracy of the best by validation."""
    n_tests = int(rep.summary["verdict"].isin(["significant", "not significant"]).sum())
    clips = clipped(rep)
    lines = [
        f"mean ± std over seeds [{CONFIDENCE:.0%} CI, t-distribution"
        f"{'; clipped to what is possible: ' + clips if clips else ''}] at {rep.at_text()} of each run; "
        f"n = runs that finished ok; ranked by {rep.ranked_text()}.",
        f"vs: difference in {METRICS[rep.metric].difference()} from {rep.reference_text}; * p < {ALPHA} "
        f"(Welch's t-test, {n_tests} comparison{'s' * (n_tests != 1)}, "
        + ("p Holm-adjusted for the comparisons made, beside the raw p; * from the adjusted p)."
           if rep.adjust == "holm" else "not corrected for multiple testing)."),
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


def _range(name: str, low: float, high: float) -> str:
    """What a column can be, in the unit its cells show: '0-100 %', '[-100, 100] %', '>= 0'."""
    metric = METRICS[name] if name in METRICS else None
    scale, unit = (metric.scale, f" {metric.unit}" if metric.unit else "") if metric else (1.0, "")
    if math.isinf(low):
        return f"<= {scale * high:g}{unit}"
    if math.isinf(high):
        return f">= {scale * low:g}{unit}"
    return f"{scale * low:g}-{scale * high:g}{unit}" if low >= 0 else f"[{scale * low:g}, {scale * high:g}]{unit}"


def clipped(rep: Report) -> str:
    """Which of the table's intervals were clipped to what their column can be (the t-interval of 96.7 ± 2.1 %
    runs past 100 %), per column, from the metrics' records: 'validation accuracy in 2 rows to 0-100 %';
    '' where none was."""
    said: dict[tuple[int, str], list[str]] = {}  # columns clipped in as many rows to the same range: said once
    for c in columns(rep):
        if f"{c.id}_ci_low" not in c.fields:
            continue
        low, high = possible(c.id)
        s = rep.summary
        # clipped: an interval with a spread that ends on a bound (unclipped, it ends strictly inside)
        hit = (s[f"{c.id}_std"] > 0) & ((s[f"{c.id}_ci_low"] <= low) | (s[f"{c.id}_ci_high"] >= high))
        n = int(hit.sum())
        if n:
            said.setdefault((n, _range(c.id, low, high)), []).append(METRICS[c.id].words if c.id in METRICS
                                                                      else c.header)
    return "; ".join(f"{_and(names)} in {n} row{'s' * (n != 1)} to {where}" for (n, where), names in said.items())


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def best_lines(rep: Report) -> list[str]:
    """The best configuration (one per experiment) and its compared metric on the test split, in words."""
    lines = []
    # the final figure: the compared metric on the test split (an honest estimate: not what chose the best)
    final = METRICS.on_split(rep.metric, "test") or METRICS[rep.metric]
    for _, r in rep.best().iterrows():
        name = ", ".join(f"{k}={value_text(r[k])}" for k in rep.keys) or "the only configuration"
        test = _stat_cell(r, final.name, *_scale(final.name, r[f"{final.name}_mean"]), Layout()).replace("\n", " ")
        warn = f" ({_status(r)} among {r['runs']} runs)" if _status(r) != OK else ""
        words = METRICS[rep.rank_by].words
        how = (f"best by {words} among the confirm runs (configurations chosen on the search's "
               "validation accuracy, rerun on fresh seeds)" if rep.confirmed() else f"best by {words}")
        lines.append(f"{how}: {name}: {final.words} {test}{' ' + final.unit if final.unit else ''} "
                     f"(n = {r['n']}){warn}.")
    return lines


@dataclass(frozen=True)
class Layout:
    """How the terminal table is drawn; rich_table tries these from the whole table down."""

    compact: bool = False  # no vertical rules; headers and the comparison over several lines
    intervals: bool = True  # the 95% interval on a second line
    std: str = "inline"  # '74.4 ± 0.1' | 'below' ('74.4' over '±0.1') | 'none'
    narrow_vs: bool = False  # the comparison over three lines
    dropped: tuple[str, ...] = ()  # columns left out


def _stat_cell(row: pd.Series, prefix: str, scale: float, digits: int, layout: Layout) -> str:
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


def _versus_cell(row: pd.Series, metric: str, method: Adjustment, layout: Layout) -> str:
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


STATISTIC = ("mean", "std", "ci_low", "ci_high")  # a statistic's numbers: Report.summary's <name>_<these>


@dataclass(frozen=True)
class Column:
    """One column of the report's table: what it shows (`kind`), its header, a cell per configuration and
    the Report.summary fields its cells are drawn from (numbers, in the metric's stored unit)."""

    id: str  # a key, n, epoch, a metric's name, vs, reached, ttt_<unit>, status
    kind: str  # key | count | statistic | comparison | status
    header: str
    cells: list[str]
    fields: tuple[str, ...] = ()


def _statistic(name: str) -> tuple[str, ...]:
    return tuple(f"{name}_{part}" for part in STATISTIC)


def columns(rep: Report, layout: Layout = Layout()) -> list[Column]:
    """The table's columns in this layout (the whole table by default): every renderer draws these."""
    rows = [r for _, r in rep.summary.iterrows()]
    cols = [Column(k, "key", k, [value_text(r[k]) for r in rows], (k,)) for k in rep.keys]
    cols += [Column("n", "count", "n", [str(r["n"]) for r in rows], ("n", "runs")),
             Column("epoch", "statistic", "epoch", [_epoch(r) for r in rows], ("epoch_mean", "epoch_std"))]
    cols += [Column(m, "statistic", METRICS[m].label, [_stat_cell(r, m, *_scale(m, r[f"{m}_mean"]), layout)
                                                      for r in rows], _statistic(m)) for m in rep.show]
    cols.append(Column("vs", "comparison", f"vs {rep.reference}",
                       [_versus_cell(r, rep.metric, rep.adjust, layout) for r in rows],
                       ("delta", "p_value", "p_adjusted", "verdict")))
    if rep.target is not None:
        t = f"{rep.target:.4g}"
        cols.append(Column("reached", "count", f"reached {t}", [f"{r['reached']}/{r['runs']}" for r in rows],
                           ("reached",)))
        cols += [Column(f"ttt_{u}", "statistic", f"{u}s to {t}" if u != "seconds" else f"seconds to {t}",
                        [_stat_cell(r, f"ttt_{u}", 1, d, layout) for r in rows], _statistic(f"ttt_{u}"))
                 for u, d in (("epoch", 1), ("step", 0), ("seconds", 1))]
    if rep.summary[list(TROUBLE)].to_numpy().any():  # a status column only when needed
        cols.append(Column("status", "status", "status", [_status(r) for r in rows], TROUBLE))
    return [c for c in cols if c.id not in layout.dropped]


def numbers(rep: Report) -> pd.DataFrame:
    """The whole table as numbers (the API's `table()`): each column's fields, in the columns' order, one
    row per configuration; a key a configuration has not got is None."""
    fields = list(dict.fromkeys(f for c in columns(rep) for f in c.fields))
    frame = rep.summary[fields].reset_index(drop=True)
    return frame.assign(**{k: frame[k].replace(MISSING, None) for k in rep.keys if k in frame})


def display_rows(rep: Report) -> tuple[list[str], list[list[str]]]:
    """The whole table's header and rows (markdown, LaTeX: the columns of the default layout)."""
    cols = columns(rep)
    return [c.header for c in cols], [list(row) for row in zip(*(c.cells for c in cols))]
