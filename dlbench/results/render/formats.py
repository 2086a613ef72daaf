"""The report in every output format (`dlbench report --format`): the terminal table, csv and json (every
number), markdown and LaTeX (the display table), html (the whole page).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd

from dlbench.errors import ConfigError
from dlbench.results.load import MISSING
from dlbench.results.options import FORMATS
from dlbench.results.render.columns import caption, display_rows
from dlbench.results.render.terminal import render, rich_table
from dlbench.results.report import ALPHA, CONFIDENCE, Report, summary_csv


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
        return summary_csv(rep)
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
