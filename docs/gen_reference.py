"""Reference pages generated from the code at build time (mkdocs-gen-files): the CLI from the
Typer app, every config key and every component from the catalog (what the schema is built
from and `dlbench list` prints), the results folder's files and columns."""

from __future__ import annotations

import html
import inspect
from typing import Any

import mkdocs_gen_files


def cell(text: Any) -> str:
    """A table cell's text: one line, its pipes escaped."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def prose(text: Any) -> str:
    """Text outside code spans: `<name>` in a help text must not be read as an HTML tag."""
    return html.escape(cell(text), quote=False)


def cli_page() -> str:
    from typer.core import TyperArgument, TyperOption

    from dlbench.cli import command

    group = command()
    lines = ["# Command line", "", "Generated from the Typer app (`dlbench --help`, `dlbench COMMAND --help`).", ""]
    for name, cmd in group.commands.items():
        ctx = cmd.make_context(name, [], resilient_parsing=True, parent=group.make_context("dlbench", [],
                                                                                          resilient_parsing=True))
        lines += [f"## dlbench {name}", "", "```", cmd.get_usage(ctx).replace("Usage: ", "", 1), "```", "",
                  html.escape(inspect.cleandoc(cmd.help or ""), quote=False), "",
                  "| argument / option | value | default | what it does |",
                  "|---|---|---|---|"]
        for p in cmd.params:
            if getattr(p, "hidden", False):
                continue
            names = p.metavar if isinstance(p, TyperArgument) else ", ".join([*p.opts, *p.secondary_opts])
            value = (p.display_type_rich(ctx) or "").strip("<>") if isinstance(p, TyperOption) else ""
            default = "" if p.required or p.default in (None, False, [], ()) else getattr(p.default, "value", p.default)
            doc = getattr(p, "help", None) or ""
            lines.append(f"| `{cell(names)}` | {prose(value)} | {prose(default)} | {prose(doc)} |")
        lines.append("")
    return "\n".join(lines)


def _row(key: str, setting: Any, readers: str = "") -> str:
    from dlbench.catalog import type_text

    from dlbench.catalog import CATALOG

    default = "required" if setting.required else f"`{cell(repr(setting.default))}`"
    doc = setting.doc + (f" ({readers})" if readers else "")
    # a setting that names a component of another kind (model.activation, loss) lists the names it takes
    kind = setting.choices and CATALOG[setting.choices]
    typed = f"one of {', '.join(kind.names())}" if kind else type_text(setting.type)
    return f"| `{key}` | {prose(typed)} | {default} | {prose(doc)} |"


def config_page() -> str:
    """Every key, section by section, from the catalog the schema is generated from: a section's own
    keys, then, for a section that chooses a component, the keys each component reads."""
    from dlbench.catalog import CATALOG, SECTIONS, TOP

    header = ["| key | type | default | what it does |", "|---|---|---|---|"]
    lines = ["# Config keys", "", "Every key a config file (or `--set KEY=VALUE`) can give, generated from the catalog "
             "that the schema is built from (`dlbench schema` prints the same as JSON Schema). A section that "
             "chooses a component accepts its own keys and exactly the keys of the chosen component, with that "
             "component's defaults; any other key is refused.", "", "## top level", "", *header]
    lines += [_row(s.name, s) for s in TOP.settings]
    for section in SECTIONS.values():
        lines += ["", f"## {section.name}", "", section.summary + ".", ""]
        if section.role == "sweep":
            lines.append("See the guide on sweeps and tuning.")
            continue
        rows = [_row(f"{section.name}.{s.name}", s) for s in section.settings]
        if section.chooses:
            kind = CATALOG[section.chooses]
            rows.insert(0, f"| `{section.name}.{section.key}` | one of {cell(', '.join(kind.names()))} | "
                           f"`{section.default!r}` | the {kind.label} |")
            readers: dict[str, tuple[Any, list[str]]] = {}
            for c in kind:
                for s in c.settings:
                    readers.setdefault(s.name, (s, []))[1].append(c.name)
            rows += [_row(f"{section.name}.{name}", s, "read by " + ", ".join(who)) for name, (s, who) in
                     readers.items()]
        lines += [*header, *rows] if rows else ["No keys of its own."]
    return "\n".join(lines) + "\n"


def components_page() -> str:
    from dlbench.catalog import CATALOG, type_text

    lines = ["# Components", "", "Every name a config can use, by kind, with the settings each reads: what "
             "`dlbench list` prints, from the same catalog.", ""]
    for kind in CATALOG:
        lines += [f"## {kind.label}s", "", "| name | what it is | settings (default) | facts |", "|---|---|---|---|"]
        for c in kind:
            settings = "; ".join(f"{s.name}: {type_text(s.type)} ({'required' if s.required else repr(s.default)})"
                                 for s in c.settings)
            facts = "; ".join(f"{k}: {v}" for k, v in c.facts.items() if k != "values")
            lines.append(f"| `{cell(c.name)}` | {cell(c.summary)} | {cell(settings)} | {cell(facts)} |")
        lines.append("")
    return "\n".join(lines)


def results_page() -> str:
    import pandas as pd

    from dlbench.catalog.metrics import METRICS
    from dlbench.results import report, store
    from dlbench.results import load as load_mod

    layout = (inspect.getdoc(store) or "").split("\n\n")
    runs = pd.DataFrame([{"status": "ok", "wall_time": 1.0,
                          **{f"final.{m}": 0.5 for m in ["epoch", *METRICS.names()]}}])
    summary_columns = list(report.build(runs, []).summary.columns)
    return "\n".join([
        "# Results folder: files and columns", "", "Generated from `dlbench/results/`.", "", "```",
        *layout[1].splitlines(), "```", "", layout[2].replace("\n", " "), "",
        "## metrics.csv", "", "One row per evaluation of a run:", "",
        ", ".join(f"`{c}`" for c in store.metric_columns()), "",
        "## runs.csv", "", "One row per finished run: `config.<key>` for every key of the run's resolved config, "
        "the swept keys, then " + ", ".join(f"`{c}`" for c in load_mod.RUN_COLUMNS) + ", and every metric at the "
        "final and best-validation evaluations: " + ", ".join(f"`final.{m}`" for m in METRICS.names()) +
        " (and `best.<metric>`).", "",
        "## summary.csv", "", "One row per configuration (the swept keys first), best first; a key a configuration "
        "has not got is an empty cell:", "", ", ".join(f"`{c}`" for c in summary_columns), "",
        "`<metric>_ci_low` / `_ci_high`: the 95% t-interval of the mean over seeds, clipped to what the metric can "
        "be; `delta`, `p_value`, `p_adjusted` and `verdict` compare the row with the reference (the best, a "
        "baseline, or the first folder).", ""])


for path, make in {"reference/cli.md": cli_page, "reference/config.md": config_page,
                   "reference/components.md": components_page, "reference/results.md": results_page}.items():
    with mkdocs_gen_files.open(path, "w") as f:
        f.write(make())
