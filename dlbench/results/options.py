"""The report's options, defined once.

`ReportOptions` is what `dlbench report` takes as flags (each flag's help and default come
from here), what `Results.table()`, `Results.text()`, `compare()` and `dlbench.load(...)`
take as keyword arguments, what `report.report()` computes from, and what the HTML page
states above its tables. A new option is a field here; the CLI, the API and the page pick it up
(tests/test_report.py checks that every flag of `dlbench report` exists in the API).

Nothing here imports pandas or torch: the CLI reads it to build `--help`.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlbench.errors import ConfigError
from dlbench.results.adjust import ADJUSTMENTS
from dlbench.catalog.metrics import METRICS

AT = {"final": "the final evaluation", "best": "the best-validation evaluation"}
FORMATS = ("table", "csv", "markdown", "json", "latex", "html")
SUFFIXES = {".csv": "csv", ".json": "json", ".md": "markdown", ".tex": "latex", ".txt": "table", ".html": "html"}


def _option(default: Any, help: str, metavar: str | None = None) -> Any:
    """A field with its one-line help (the CLI flag's) and, for repeatable ones, the CLI's metavar."""
    return field(default=default, metadata={"help": help, "metavar": metavar})


@dataclass(frozen=True)
class ReportOptions:
    """How a report is computed from results folders (the flags of `dlbench report`)."""

    at: str = _option("final", "Numbers from each run's final or best-validation evaluation.")
    metric: str = _option("val_acc", "The metric the report ranks on (its validation split's, where it has one), "
                                      "compares and picks the best by, in its direction; see `dlbench list metrics`.",
                          "METRIC")
    baseline: tuple[str, ...] = _option((), "Compare with this configuration instead of the best, e.g. "
                                            "optimizer.name=sgd (repeat to pin several keys).", "KEY=VALUE")
    target: float | None = _option(None, "Time to reach this validation accuracy (0..1): epoch, step and seconds.")
    group_by: tuple[str, ...] = _option((), "Group by KEY only, pooling everything else (repeatable).", "KEY")
    where: tuple[str, ...] = _option((), "Keep runs with KEY=VALUE (repeatable; one key given twice means "
                                         "either).", "KEY=VALUE")
    losses: bool = _option(False, "Show the loss columns too.")
    calibration: bool = _option(False, "Show the calibration columns too (expected calibration error, 15 bins).")
    adjust: str = _option("holm", "Adjust the p-values for the many comparisons (Holm-Bonferroni), or not.")

    def __post_init__(self) -> None:
        """Every value checked here, so the CLI and the API refuse the same inputs with the same line."""
        for name, allowed in (("at", tuple(AT)), ("metric", tuple(METRICS.names())), ("adjust", ADJUSTMENTS)):
            value = getattr(self, name)
            if not isinstance(value, str) or value not in allowed:
                raise ConfigError(f"{flag(name)}: {value!r} is invalid; allowed: {', '.join(allowed)}")
        target = self.target
        if target is not None and (not isinstance(target, numbers.Real) or isinstance(target, bool)
                                   or not 0 < target <= 1):
            raise ConfigError(f"--target: {target!r} is invalid: a validation accuracy in (0, 1], e.g. 0.9")
        for name in ("baseline", "group_by", "where"):
            value = getattr(self, name)
            if isinstance(value, list):  # a list given: kept as a tuple, so options stay hashable and frozen
                value = tuple(value)
                object.__setattr__(self, name, value)
            if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{flag(name)}: {value!r} is invalid: a list of "
                                  f"{FIELDS[name].metadata['metavar']} strings")
        for name in ("losses", "calibration"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{flag(name)}: {getattr(self, name)!r} is invalid: true or false")

    def changed(self) -> list[str]:
        """The options given a value other than their default, in the order of the fields."""
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) != default(f.name)]

    def flags(self) -> str:
        """The options as `dlbench report` flags (only those changed): what the HTML page says it shows."""
        out = []
        for name in self.changed():
            value = getattr(self, name)
            if isinstance(value, bool):
                out.append(flag(name))
            else:
                out += [f"{flag(name)} {v}" for v in (value if isinstance(value, tuple) else (value,))]
        return " ".join(out)


FIELDS = {f.name: f for f in dataclasses.fields(ReportOptions)}
OUTPUT = ("format", "output")  # the report command's other flags: how the report is written, not computed
MODES = ("importance",)  # flags that print another text than the statistics; in Python, a method of Results


def default(name: str) -> Any:
    """An option's default value."""
    return FIELDS[name].default


def help_of(name: str) -> str:
    """An option's one-line help (the CLI flag's)."""
    return str(FIELDS[name].metadata["help"])


def flag(name: str) -> str:
    """The CLI flag of an option: group_by -> --group-by."""
    return "--" + name.replace("_", "-")


def format_of(output: Path | None, format: str | None) -> str:
    """The format a report is written in: the one named, else the output file's suffix's, else table."""
    if format is not None:
        if format not in FORMATS:
            raise ConfigError(f"--format: {format!r} is invalid; allowed: {', '.join(FORMATS)}")
        return format
    if output is None:
        return "table"
    if output.suffix not in SUFFIXES:
        raise ConfigError(f"--output {output}: unknown suffix {output.suffix!r}; allowed: "
                          f"{', '.join(SUFFIXES)} (or name the format with --format)")
    return SUFFIXES[output.suffix]
