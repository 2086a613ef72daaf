"""One self-contained HTML page from results folders: tables, figures, config, environment.

The tables are the ones the terminal shows (rich Tables built by the report or the
task), turned into HTML cell by cell, so the page and the terminal never disagree.
Every PNG of a folder is inlined as a data: URI and the style sheet is inline, and
a Content-Security-Policy forbids loading anything else: the page opens offline,
from an e-mail attachment or a laptop with no network, exactly as it was written.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from dlbench.results.options import ReportOptions
from dlbench.results.store import Store

# nothing but inline styles and data: images; no script, font, frame or fetch
_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 1em 0; font-variant-numeric: tabular-nums; }
caption { caption-side: top; font-weight: bold; text-align: left; padding-bottom: .4em; }
th, td { border: 1px solid #bbb; padding: .3em .6em; vertical-align: top; }
th { background: #f0f0f0; } tbody tr:nth-child(even) { background: #fafafa; }
td.right, th.right { text-align: right; } td.center, th.center { text-align: center; }
p.note { color: #555; margin: .2em 0; max-width: 60em; }
figure { margin: 1em 0; } img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; font-size: .9em; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; }
"""

# markup in plain-string cells ([bold] ...) is rendered the way the terminal renders it
_MARKUP = Console(color_system=None)


def _plain(cell: object) -> str:
    if isinstance(cell, Text):
        return cell.plain
    return _MARKUP.render_str(str(cell)).plain if isinstance(cell, str) else str(cell)


def _lines(text: str) -> str:
    return "<br>".join(html.escape(line) for line in text.split("\n"))


def cells(table: Table) -> tuple[list[str], list[list[str]]]:
    """The header and rows of a rich Table as the plain text shown (markup rendered)."""
    return ([_plain(c.header) for c in table.columns],
            [[_plain(cell) for cell in row] for row in zip(*(list(c.cells) for c in table.columns))])


def table_html(table: Table) -> str:
    """A rich Table as an HTML <table>: same header, cells, alignment, title and caption."""
    out = ["<table>"]
    if table.title:
        out.append(f"<caption>{_lines(_plain(table.title))}</caption>")
    out.append("<thead><tr>")
    out += [f'<th class="{c.justify}">{_lines(_plain(c.header))}</th>' for c in table.columns]
    out.append("</tr></thead><tbody>")
    for row in zip(*(list(c.cells) for c in table.columns)):
        cells = (f'<td class="{c.justify}">{_lines(_plain(cell))}</td>' for c, cell in zip(table.columns, row))
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    if table.caption:
        out += [f'<p class="note">{html.escape(line)}</p>' for line in _plain(table.caption).split("\n")]
    return "\n".join(out)


def _figures(root: Path) -> str:
    pngs = sorted(root.glob("*.png"))
    if not pngs:
        return f'<p class="note">no figures in {html.escape(str(root))} (draw them with: dlbench plot {root})</p>'
    return "\n".join(
        f'<figure><img alt="{html.escape(p.stem)}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode("ascii")}"><figcaption>{html.escape(p.name)}</figcaption></figure>'
        for p in pngs)


def _environment(root: Path) -> str:
    """Versions and devices the runs recorded (summary.json), with how many runs each."""
    seen: dict[tuple[str, str], int] = {}
    for s in Store(root).summaries():
        versions = ", ".join(f"{k} {v}" for k, v in (s.get("versions") or {}).items()) or "not recorded"
        key = (versions, str(s.get("device") or "not recorded"))
        seen[key] = seen.get(key, 0) + 1
    if not seen:
        return '<p class="note">no run folders here (this task trains nothing): no environment recorded</p>'
    rows = "".join(f"<tr><td>{html.escape(v)}</td><td>{html.escape(d)}</td><td class=\"right\">{n}</td></tr>"
                   for (v, d), n in seen.items())
    return f"<table><thead><tr><th>versions</th><th>device</th><th>runs</th></tr></thead><tbody>{rows}</tbody></table>"


def _config(root: Path) -> str:
    spec = root / "experiment.yaml"
    text = spec.read_text(encoding="utf-8") if spec.is_file() else "(no experiment.yaml)"
    return f"<pre>{html.escape(text)}</pre>"


def _plugins(root: Path) -> str:
    """The plugin sources the folder keeps (plugins/<hash>-<file>), each folded under its name."""
    kept = sorted(p for p in (root / "plugins").glob("*") if p.is_file() and not p.name.startswith("."))
    return "\n".join(f"<details><summary>plugins/{html.escape(p.name)}</summary>"
                     f"<pre>{html.escape(p.read_text(encoding='utf-8', errors='replace'))}</pre></details>"
                     for p in kept)


def page(title: str, tables: list[Table], roots: list[Path], options: ReportOptions | None = None) -> str:
    """The whole page: the tables (computed with `options`, which it states when not the defaults), then per
    folder its figures, config, plugin sources and environment."""
    asked = options.flags() if options is not None else ""
    parts = [f"<h1>{html.escape(title)}</h1>", "<h2>Tables</h2>",
             *([f'<p class="note">report options: {html.escape(asked)}</p>'] if asked else []),
             *map(table_html, tables)]
    for root in roots:
        of = html.escape(f": {root.name}" if len(roots) > 1 else "")
        parts += [f"<h2>Figures{of}</h2>", _figures(root), f"<h2>Config{of}</h2>", _config(root)]
        kept = _plugins(root)
        if kept:  # what the report's plugin lines point to, readable without the folder
            parts += [f"<h2>Plugin sources{of}</h2>", kept]
        parts += [f"<h2>Environment{of}</h2>", _environment(root)]
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n{body}\n</body></html>\n")
