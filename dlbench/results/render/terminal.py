"""The report as a terminal table that fits any width: from the whole table down through narrower
layouts, then split over several tables (each with the configuration's keys).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from dlbench.results.render.columns import Column, Layout, caption, columns
from dlbench.results.report import CONFIDENCE, EXPERIMENT, Report

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


def _draw(rep: Report, title: str | None, cols: list[Column], layout: Layout,
          notes: list[str] | None) -> Table:
    """One table in `layout`; notes None: no caption (a part of a split table: the whole has it)."""
    n_keys = sum(c.kind == "key" for c in cols)
    tall = any("\n" in cell for c in cols for cell in c.cells)
    # compact: two spaces between columns, a blank line between rows of several lines
    options: dict[str, Any] = dict(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0),
                                   show_lines=tall) if layout.compact else {}
    table = Table(title=title, caption="\n".join([*caption(rep), *notes]) if notes is not None else None,
                  caption_justify="left", **options)
    for i, col in enumerate(cols):
        header, cells = col.header, col.cells
        if layout.compact:
            widest = max((len(line) for cell in cells for line in cell.split("\n")), default=1)
            header = _wrap_header(header, max(widest, *(len(w) for w in re.split(_BREAK, header))))
        table.add_column(header, justify="left" if i < n_keys else "right", no_wrap=True)
    comparing = EXPERIMENT in rep.keys
    rows = list(zip(*(c.cells for c in cols)))
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


def _layouts(rep: Report) -> Iterator[Layout]:
    """From the whole table down: lossless steps first, then what is least telling. Columns
    the user asked for (losses, time to target, the compared metric) never go; the gap and
    test accuracy stay."""
    layout = Layout()
    yield layout
    for change in ({"compact": True}, {"intervals": False}, {"std": "below"}, {"narrow_vs": True},
                   {"dropped": ("epoch",)}, {"dropped": ("epoch", "n")}, {"std": "none"}):
        layout = replace(layout, **change)
        yield layout
    if rep.metric != "train_acc" and "train_acc" in rep.show:  # train = gap + test
        yield replace(layout, dropped=(*layout.dropped, "train_acc"))


def _given_up(rep: Report, layout: Layout) -> str:
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
        return _draw(rep, title, columns(rep, layouts[0]), layouts[0], [])
    for layout in layouts:
        notes = []
        if _given_up(rep, layout):
            notes = [f"left out to fit {width} columns: {_given_up(rep, layout)}; see everything with "
                     "--format csv (or markdown), or in a wider terminal."]
        table = _draw(rep, title, columns(rep, layout), layout, notes)
        if _width(table) <= width:
            return table
    # still too wide: every column kept (only the intervals go), over several tables
    split = replace(layouts[0], compact=True, intervals=False, std="below", narrow_vs=True)
    return _split_table(rep, title, split, [f"left out to fit {width} columns: {_given_up(rep, split)}; see them with "
                                      "--format csv (or markdown), or in a wider terminal."], width)


def _split_table(rep: Report, title: str, layout: Layout, notes: list[str], width: int) -> Table:
    """The narrowest layout's columns over several tables, each with the keys: nothing dropped."""
    cols = columns(rep, layout)
    keys, rest = cols[:len(rep.keys)], cols[len(rep.keys):]
    parts: list[list[Column]] = [[]]
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
