"""Reference pages generated from the code at build time (mkdocs-gen-files): the CLI from the
Typer app, every config key from the pydantic schema, every component from the registries
(what `dlbench list` prints), the results folder's files and columns. One file, kept small:
the schema is about to be generated from a catalog, and only `config_page` reads it."""

from __future__ import annotations

import inspect
import types
import typing
from typing import Any

import mkdocs_gen_files
from pydantic import BaseModel
from pydantic_core import PydanticUndefined


def cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def cli_page() -> str:
    from typer.core import TyperArgument

    from dlbench.cli import command

    group = command()
    lines = ["# Command line", "", "Generated from the Typer app (`dlbench --help`, `dlbench COMMAND --help`).", ""]
    for name, cmd in group.commands.items():
        ctx = cmd.make_context(name, [], resilient_parsing=True, parent=group.make_context("dlbench", [],
                                                                                          resilient_parsing=True))
        lines += [f"## dlbench {name}", "", "```", cmd.get_usage(ctx).replace("Usage: ", "", 1), "```", "",
                  inspect.cleandoc(cmd.help or ""), "", "| argument / option | value | default | what it does |",
                  "|---|---|---|---|"]
        for p in cmd.params:
            if getattr(p, "hidden", False):
                continue
            names = p.metavar if isinstance(p, TyperArgument) else ", ".join([*p.opts, *p.secondary_opts])
            value = "" if isinstance(p, TyperArgument) else (p.display_type_rich(ctx) or "").strip("<>")
            default = "" if p.required or p.default in (None, False, [], ()) else getattr(p.default, "value", p.default)
            lines.append(f"| `{cell(names)}` | {cell(value)} | {cell(default)} | {cell(p.help or '')} |")
        lines.append("")
    return "\n".join(lines)


_BOUNDS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def _type(annotation: Any) -> str:
    """A field's type as a reader says it: 'int > 0', 'float | null', 'list of int > 0', 'pre | post'."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        metadata = [m for extra in args[1:] for m in getattr(extra, "metadata", [extra])]
        bounds = [f"{_BOUNDS[k]} {getattr(m, k)}" for m in metadata for k in _BOUNDS if hasattr(m, k)]
        return " ".join([_type(args[0]), *bounds])
    if origin is typing.Literal:
        return " | ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join("null" if a is type(None) else _type(a) for a in args)
    if origin in (list, tuple):
        return f"list of {_type(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping of {_type(args[0])} to {_type(args[1])}" if args else "mapping"
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The sections (pydantic models) a field holds, directly or in a list / union / dict."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def _keys(model: type[BaseModel], prefix: str) -> list[list[str]]:
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        if field.default is not PydanticUndefined:
            default = repr(field.default)
        else:
            default = repr(field.default_factory()) if field.default_factory else "required"
        sections = _models(field.annotation)
        if sections and len(sections) == 1:
            rows.append([key, "section", "", field.description or sections[0].__dict__.get("__doc__") or ""])
            rows += _keys(sections[0], key + ".")
        else:
            rows.append([key, _type(field.annotation), default, field.description or ""])
    return rows


def config_page() -> str:
    from dlbench.config.schema import Config

    lines = ["# Config keys", "", "Every key a config file (or `--set KEY=VALUE`) can give, generated from the "
             "pydantic schema: its type, its default and what it does.", "",
             "| key | type | default | doc |", "|---|---|---|---|"]
    lines += [f"| `{k}` | {cell(t)} | `{cell(d)}` | {cell(doc)} |" if d else f"| `{k}` | {cell(t)} | | {cell(doc)} |"
              for k, t, d, doc in _keys(Config, "")]
    return "\n".join(lines) + "\n"


def components_page() -> str:
    from dlbench.components import catalogue

    lines = ["# Components", "", "Every name a config can use, by kind: what `dlbench list` prints, from the same "
             "registries.", ""]
    for registry in catalogue.read():
        lines += [f"## {registry['kind']}", "", "| name | what it is | facts |", "|---|---|---|"]
        for entry in registry["entries"]:
            facts = "; ".join(f"{k}: {v}" for k, v in entry["facts"].items())
            lines.append(f"| `{cell(entry['name'])}` | {cell(entry['help'])} | {cell(facts)} |")
        lines.append("")
    return "\n".join(lines)


def results_page() -> str:
    import pandas as pd

    from dlbench.results import report, store

    layout = inspect.getdoc(store).split("\n\n")
    runs = pd.DataFrame([{"status": "ok", "wall_time": 1.0, **{f"final.{m}": 0.5 for m in ["epoch", *store.METRICS]}}])
    summary_columns = list(report.build(runs, []).summary.columns)
    return "\n".join([
        "# Results folder: files and columns", "", "Generated from `dlbench/results/`.", "", "```",
        *layout[1].splitlines(), "```", "", layout[2].replace("\n", " "), "",
        "## metrics.csv", "", "One row per evaluation of a run:", "",
        ", ".join(f"`{c}`" for c in store.METRIC_COLUMNS), "",
        "## runs.csv", "", "One row per finished run: `config.<key>` for every key of the run's resolved config, "
        "the swept keys, then " + ", ".join(f"`{c}`" for c in report.RUN_COLUMNS) + ", and every metric at the "
        "final and best-validation evaluations: " + ", ".join(f"`final.{m}`" for m in store.METRICS) +
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
