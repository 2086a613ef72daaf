"""Reports on hand-made results folders with known numbers: every statistic is checked
against numpy / scipy directly, then selection, time-to-target, grouping, filtering,
the exports, the comparison of two experiments and the CLI's exit codes."""

from __future__ import annotations

import io
import itertools
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats
from sweep_util import Outcome, dlbench

from dlbench.catalog.metrics import METRICS
from dlbench.results.options import FORMATS
from dlbench.results import report as rp
from dlbench.results import load as load_mod
from dlbench.results.render import columns as columns_mod
from dlbench.results.render import formats as formats_mod
from dlbench.results.render import terminal as terminal_mod
from dlbench.cli import main
from dlbench.errors import ConfigError

KEYS = ["optimizer.name", "init.scheme"]
LR = {"adam": 0.001, "sgd": 0.1}
# final validation accuracy of each configuration over seeds 0, 1, 2; chosen so that
# sgd/he_normal differs significantly from the best and adam/xavier_normal does not
VAL = {
    ("adam", "he_normal"): [0.90, 0.92, 0.91],
    ("adam", "xavier_normal"): [0.895, 0.915, 0.90],
    ("sgd", "he_normal"): [0.80, 0.82, 0.79],
    ("sgd", "xavier_normal"): [0.86, 0.70, 0.95],
}
# sgd/xavier_normal has the best test accuracy but not the best validation accuracy:
# selection must not see it
TEST_SHIFT = {("sgd", "xavier_normal"): 0.12}
# at the best-validation evaluation adam/xavier_normal wins
BEST_SHIFT = {("adam", "xavier_normal"): 0.04}


def block(val: float, test: float, train: float, epoch: float, seed: int) -> dict[str, float]:
    return {"epoch": epoch, "step": 10 * epoch, "train_batch_loss": 0.3, "train_loss": 1.1 - train,
            "train_acc": train, "val_loss": 1.2 - val + 0.01 * seed, "val_acc": val, "test_loss": 1.3 - test,
            "test_acc": test, "lr": 0.1, "seconds": 2.0 + seed, "gap": train - test}


def write_run(root: Path, run_id: str, params: dict[str, Any], seed: int, status: str = "ok",
              final: dict[str, float] | None = None, best: dict[str, float] | None = None,
              curve: list[tuple[float, float, float, float]] | None = None) -> None:
    """One run folder as the store writes it; curve rows are (epoch, step, seconds, val_acc)."""
    d = root / "runs" / run_id
    d.mkdir(parents=True)
    config = {"optimizer": {"name": params.get("optimizer.name", "adam"), "lr": 0.01},
              "init": {"scheme": params.get("init.scheme", "default")}, "model": {"hidden": [100, 100]},
              "train": {"epochs": 5, "seeds": [seed]}}
    if "optimizer.name" in params:
        config["optimizer"]["lr"] = LR[params["optimizer.name"]]
    (d / "config.yaml").write_text(yaml.safe_dump(config))
    summary = {"run_id": run_id, "seed": seed, "params": params, "status": status, "wall_time": 3.0 + seed}
    if status != "failed":
        summary.update(final=final, best=best or final)
        lines = ["epoch,step,train_batch_loss,train_loss,train_acc,val_loss,val_acc,test_loss,test_acc,lr,seconds"]
        lines += [f"{e},{s},0.5,0.5,0.5,0.5,{v},0.5,0.5,0.1,{t}" for e, s, t, v in curve or []]
        (d / "metrics.csv").write_text("\n".join(lines) + "\n")
    (d / "summary.json").write_text(json.dumps(summary))


def make_grid(root: Path, shift: float = 0.0) -> Path:
    """Four configurations x three seeds with the numbers above, plus sgd/zeros: one ok
    seed, one diverged, one failed."""
    for (opt, init), vals in VAL.items():
        for seed, v in enumerate(vals):
            v = v + shift
            test = v - 0.02 + 0.003 * seed + TEST_SHIFT.get((opt, init), 0.0)
            train = min(1.0, v + 0.05 + 0.01 * seed)
            final = block(v, test, train, 5, seed)
            bv = v + 0.01 * (seed + 1) + BEST_SHIFT.get((opt, init), 0.0)
            best = block(bv, test + 0.005 * seed, train - 0.01, 2 + seed, seed)
            write_run(root, f"{opt}-{init}-{seed}", {"optimizer.name": opt, "init.scheme": init}, seed,
                      final=final, best=best)
    zeros = {"optimizer.name": "sgd", "init.scheme": "zeros"}
    write_run(root, "sgd-zeros-0", zeros, 0, final=block(0.1, 0.1, 0.1, 5, 0))
    nan = {k: math.nan for k in block(0, 0, 0, 0, 0)} | {"epoch": 1, "step": 10}
    write_run(root, "sgd-zeros-1", zeros, 1, status="diverged", final=nan, best=block(0.5, 0.5, 0.5, 1, 1))
    write_run(root, "sgd-zeros-2", zeros, 2, status="failed")
    return root


def values(root: Path, config: tuple[str, str], metric: str, at: str = "final") -> np.ndarray:
    """The per-seed numbers of one configuration, read back from the files we wrote."""
    out = []
    for d in sorted((root / "runs").iterdir()):
        s = json.loads((d / "summary.json").read_text())
        if tuple(s["params"][k] for k in KEYS) == config and s["status"] == "ok":
            out.append(s[at][metric])
    return np.array(out)


def row(summary: pd.DataFrame, **key_values: str) -> pd.Series:
    hit = np.ones(len(summary), dtype=bool)
    for k, v in key_values.items():
        hit &= (summary[k.replace("__", ".")] == v).to_numpy()
    assert hit.sum() == 1
    return summary[hit].iloc[0]


def report_cli(*args: Any) -> Outcome:
    return dlbench("report", *args)


@pytest.fixture
def grid(tmp_path: Path) -> Path:
    return make_grid(tmp_path / "grid")


# ---------------------------------------------------------------- statistics


@pytest.mark.parametrize("at", ["final", "best"])
def test_mean_std_ci_match_numpy_and_scipy(grid: Path, at: str) -> None:
    rep = rp.report([grid], rp.ReportOptions(at=at))
    recorded = [m for m in METRICS.names() if m in block(0, 0, 0, 0, 0)]  # what these hand-made runs hold
    for config, metric in itertools.product(VAL, recorded):
        x = values(grid, config, metric, at)
        r = row(rep.summary, optimizer__name=config[0], init__scheme=config[1])
        lo, hi = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
        low, high = METRICS[metric].possible  # clipped to what the metric can be
        lo, hi = max(lo, low), min(hi, high)
        assert r[f"{metric}_n"] == len(x) == 3
        assert r[f"{metric}_mean"] == pytest.approx(np.mean(x), rel=1e-12)
        assert r[f"{metric}_std"] == pytest.approx(np.std(x, ddof=1), rel=1e-12)
        assert (r[f"{metric}_ci_low"], r[f"{metric}_ci_high"]) == (pytest.approx(lo), pytest.approx(hi))
    gap = row(rep.summary, optimizer__name="adam", init__scheme="he_normal")["gap_mean"]
    train, test = (values(grid, ("adam", "he_normal"), m, at) for m in ("train_acc", "test_acc"))
    assert gap == pytest.approx(np.mean(train - test))


@pytest.mark.parametrize("losses", [False, True])
def test_the_caption_says_which_intervals_were_clipped_and_to_what(grid: Path, losses: bool) -> None:
    """Per column shown: in how many rows the t-interval ran past what the metric can be (from scipy), and the
    range it was clipped to, in the cells' unit; nothing where no interval was clipped."""
    rep = rp.report([grid], rp.ReportOptions(losses=losses))
    expected = {}
    for metric in rep.show:
        low, high = METRICS[metric].possible
        n = 0
        for config in VAL:
            x = values(grid, config, metric)
            lo, hi = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
            n += bool(lo < low or hi > high)
        if n:
            expected[METRICS[metric].words] = (n, "0-100 %" if METRICS[metric].unit == "%" else ">= 0")
    assert expected and ("train loss" in expected) == losses  # the fixture clips some: the test sees a mistake
    said = columns_mod.caption(rep)[0].partition("clipped to what is possible: ")[2].partition("]")[0]
    found = {}
    for part in said.split("; "):
        names, _, rest = part.partition(" in ")
        count, _, where = rest.partition(" to ")
        for name in names.replace(" and ", ", ").split(", "):
            found[name] = (int(count.split()[0]), where)
    assert found == expected, said
    two = rp.report([grid], rp.ReportOptions(where=("optimizer.name=adam",)))  # two configurations: one test
    assert "(Welch's t-test, 1 comparison, p Holm-adjusted" in columns_mod.caption(two)[1]
    single = rp.report([grid], rp.ReportOptions(where=("seed=0",)))  # one run each: no interval at all
    assert columns_mod.caption(single)[0].startswith("mean ± std over seeds [95% CI, t-distribution] at ")


def test_failed_and_diverged_runs_are_counted_not_averaged(grid: Path) -> None:
    r = row(rp.report([grid]).summary, optimizer__name="sgd", init__scheme="zeros")
    assert (r["runs"], r["n"], r["diverged"], r["failed"]) == (3, 1, 1, 1)
    assert r["val_acc_mean"] == 0.1
    # one value has no spread: std and CI are unknown, not zero
    assert math.isnan(r["val_acc_std"]) and math.isnan(r["val_acc_ci_low"])
    assert r["verdict"] == rp.TOO_FEW and math.isnan(r["p_value"])


def test_welch_p_values_against_the_best_match_scipy(grid: Path) -> None:
    rep = rp.report([grid], rp.ReportOptions(adjust="none"))
    best = ("adam", "he_normal")
    ref = values(grid, best, "val_acc")
    verdicts = set()
    for config in VAL:
        r = row(rep.summary, optimizer__name=config[0], init__scheme=config[1])
        if config == best:
            assert r["verdict"] == "reference"
            continue
        x = values(grid, config, "val_acc")
        p = stats.ttest_ind(x, ref, equal_var=False).pvalue
        assert r["p_value"] == pytest.approx(p, rel=1e-12)
        assert r["delta"] == pytest.approx(np.mean(x) - np.mean(ref))
        assert r["verdict"] == ("significant" if p < 0.05 else "not significant")
        verdicts.add(r["verdict"])
    assert verdicts == {"significant", "not significant"}  # the data exercises both marks


def test_holm_adjusted_p_values_beside_the_raw_ones_decide_the_verdicts(grid: Path) -> None:
    from statsmodels.stats.multitest import multipletests

    rep = rp.report([grid])  # holm by default
    s = rep.summary[rep.summary["p_value"].notna()]
    expected = multipletests(s["p_value"], method="holm")[1]
    assert s["p_adjusted"].to_numpy() == pytest.approx(expected, rel=1e-12)
    assert list(s["verdict"]) == ["significant" if p < 0.05 else "not significant" for p in expected]
    assert "Holm-adjusted" in columns_mod.caption(rep)[1]
    header, rows = columns_mod.display_rows(rep)
    assert any("(Holm " in r[header.index("vs best")] for r in rows)
    doc = json.loads(formats_mod.export(rep, "json"))
    assert doc["adjust"] == "holm" and "p_adjusted" in doc["configurations"][0]
    assert "p_adjusted" in formats_mod.export(rep, "csv").splitlines()[0]
    raw = rp.report([grid], rp.ReportOptions(adjust="none"))
    tested = raw.summary["p_value"].notna()
    assert (raw.summary.loc[tested, "p_adjusted"] == raw.summary.loc[tested, "p_value"]).all()
    assert "not corrected for multiple testing" in columns_mod.caption(raw)[1]
    assert not any("Holm" in cell for r in columns_mod.display_rows(raw)[1] for cell in r)


def test_an_unknown_adjustment_is_one_line(grid: Path) -> None:
    result = dlbench("report", grid, "--adjust", "bonferroni")
    assert result.exit_code == 2 and "bonferroni" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("metric", ["test_acc", "val_loss", "gap"])
def test_significance_on_a_chosen_metric(grid: Path, metric: str) -> None:
    rep = rp.report([grid], rp.ReportOptions(metric=metric))
    best = rep.best().iloc[0]
    ref = values(grid, (best["optimizer.name"], best["init.scheme"]), metric)
    x = values(grid, ("sgd", "he_normal"), metric)
    r = row(rep.summary, optimizer__name="sgd", init__scheme="he_normal")
    assert r["p_value"] == pytest.approx(stats.ttest_ind(x, ref, equal_var=False).pvalue, rel=1e-12)
    assert METRICS[metric].label in columns_mod.display_rows(rep)[0]  # the compared metric is shown


def test_welch_edge_cases() -> None:
    assert rp.welch(np.array([0.9]), np.array([0.8, 0.7])) == (pytest.approx(math.nan, nan_ok=True), rp.TOO_FEW)
    assert rp.welch(np.array([0.5, 0.5]), np.array([0.5, 0.5]))[1] == "identical"
    p, verdict = rp.welch(np.array([0.9, 0.9]), np.array([0.8, 0.8]))  # no seed noise at all: a real difference
    assert (p, verdict) == (0.0, "significant")


def test_describe_matches_scipy_for_any_sample_size() -> None:
    rng = np.random.default_rng(0)
    for n in range(2, 12):
        x = rng.normal(0.8, 0.05, n)
        d = rp.describe(x)
        lo, hi = stats.t.interval(0.95, n - 1, loc=x.mean(), scale=stats.sem(x))
        assert (d["n"], d["ci_low"], d["ci_high"]) == (n, pytest.approx(lo), pytest.approx(hi))
    assert rp.describe([0.5, math.nan, 0.7])["n"] == 2  # NaN is missing
    assert rp.describe([])["n"] == 0 and math.isnan(rp.describe([])["mean"])


# ---------------------------------------------------------------- selection


def test_best_is_picked_on_validation_and_reported_on_test(grid: Path) -> None:
    rep = rp.report([grid])
    means = {c: np.mean(values(grid, c, "val_acc")) for c in VAL}
    by_val = max(means, key=means.get)
    by_test = max(VAL, key=lambda c: np.mean(values(grid, c, "test_acc")))
    assert by_val != by_test  # the data would catch selection on test
    assert list(rep.summary["val_acc_mean"].dropna()) == sorted(rep.summary["val_acc_mean"].dropna(), reverse=True)
    best = rep.best().iloc[0]
    assert (best["optimizer.name"], best["init.scheme"]) == by_val
    test = values(grid, by_val, "test_acc")
    line = columns_mod.caption(rep)[-1]
    assert line.startswith("best by validation accuracy: optimizer.name=adam, init.scheme=he_normal")
    assert f"test accuracy {100 * test.mean():.1f} ± {100 * test.std(ddof=1):.1f}" in line


def test_at_best_uses_the_best_validation_evaluation(grid: Path) -> None:
    rep = rp.report([grid], rp.ReportOptions(at="best"))
    best = rep.best().iloc[0]
    assert (best["optimizer.name"], best["init.scheme"]) == ("adam", "xavier_normal")
    assert best["test_acc_mean"] == pytest.approx(np.mean(values(grid, ("adam", "xavier_normal"), "test_acc", "best")))
    assert best["epoch_mean"] == pytest.approx(3.0)  # best epochs 2, 3, 4
    assert "at the best-validation evaluation" in columns_mod.caption(rep)[0]
    assert "at the final evaluation" in columns_mod.caption(rp.report([grid]))[0]
    assert set(rep.summary["at"]) == {"best"}


def test_baseline_is_the_reference(grid: Path) -> None:
    rep = rp.report([grid], rp.ReportOptions(baseline=["optimizer.name=sgd", "init.scheme=he_normal"]))
    ref = values(grid, ("sgd", "he_normal"), "val_acc")
    x = values(grid, ("adam", "he_normal"), "val_acc")
    assert row(rep.summary, optimizer__name="sgd", init__scheme="he_normal")["verdict"] == "reference"
    r = row(rep.summary, optimizer__name="adam", init__scheme="he_normal")
    assert r["p_value"] == pytest.approx(stats.ttest_ind(x, ref, equal_var=False).pvalue, rel=1e-12)
    assert "vs baseline" in columns_mod.display_rows(rep)[0]
    assert "optimizer.name=sgd" in columns_mod.caption(rep)[1]


def test_without_validation_data_the_metric_asked_ranks(tmp_path: Path) -> None:
    """data.val_size: 0 -> ranked by test accuracy (or --metric), and the caption says so."""
    for seed in range(2):
        for opt, test in (("sgd", 0.5), ("adam", 0.7)):
            final = block(math.nan, test + 0.01 * seed, 0.8, 5, seed)
            write_run(tmp_path / "noval", f"{opt}{seed}", {"optimizer.name": opt}, seed, final=final)
    rep = rp.report([tmp_path / "noval"])
    assert list(rep.summary["optimizer.name"]) == ["adam", "sgd"] and rep.metric == "test_acc"
    assert rep.best()["optimizer.name"].item() == "adam"
    assert "ranked by test accuracy (no validation split" in columns_mod.caption(rep)[0]
    by_loss = rp.report([tmp_path / "noval"], rp.ReportOptions(metric="test_loss"))  # lower is better
    assert list(by_loss.summary["optimizer.name"]) == ["adam", "sgd"]
    assert "ranked by test loss" in columns_mod.caption(by_loss)[0]


def _confident(root: Path) -> Path:
    """'sharp' has the higher validation accuracy and the higher (worse) validation loss; 'smooth' the reverse.
    Each run's curve: its lowest validation loss comes at epoch 2, its highest accuracy at epoch 4."""
    for seed in range(3):
        for name, val, loss in (("sharp", 0.90, 1.30), ("smooth", 0.86, 1.20)):
            final = block(val + 0.002 * seed, val - 0.02, 0.97, 4, seed) | {"val_loss": loss + 0.01 * seed}
            d = root / "runs" / f"{name}{seed}"
            write_run(root, f"{name}{seed}", {"loss.smoothing": name}, seed, final=final, best=final)
            rows = [block(val - 0.1, val - 0.1, 0.8, 2, seed) | {"val_loss": loss - 0.3 + 0.01 * seed},
                    final]
            pd.DataFrame(rows).drop(columns="gap").to_csv(d / "metrics.csv", index=False)
    return root


@pytest.mark.parametrize("metric", ["val_loss", "test_loss", "gap"])
def test_a_lower_is_better_metric_ranks_ascending_everywhere(tmp_path: Path, metric: str) -> None:
    """--metric M ranks on M's validation split (or M itself), in M's direction: the best, the order,
    the vs differences and the caption all say M."""
    root = _confident(tmp_path / "smoothing")
    rep = rp.report([root], rp.ReportOptions(metric=metric))
    chosen = "val_loss" if metric != "gap" else "gap"
    means = list(rep.summary[f"{chosen}_mean"])
    assert means == sorted(means)  # ascending: the lowest loss first
    assert rep.best()["loss.smoothing"].item() == ("smooth" if metric != "gap" else "sharp")
    if metric == chosen:  # compared on what ranks: no row is better than the best
        assert (rep.summary["delta"].dropna() >= 0).all()
    words = METRICS[chosen].words
    caption = columns_mod.caption(rep)
    assert f"ranked by {words}." in caption[0] and f"the best configuration by {words}" in caption[1]
    assert caption[-1].startswith(f"best by {words}: loss.smoothing=")
    final = METRICS.on_split(metric, "test") or METRICS[metric]
    assert f": {final.words} " in caption[-1]


def test_at_best_is_the_evaluation_with_the_best_value_of_the_metric(tmp_path: Path) -> None:
    """--at best --metric val_loss: each run's evaluation of lowest validation loss, from metrics.csv
    (summary.json's best is the engine's, on validation accuracy)."""
    root = _confident(tmp_path / "smoothing")
    by_acc = rp.report([root], rp.ReportOptions(at="best"))
    assert set(by_acc.summary["epoch_mean"]) == {4.0}
    rep = rp.report([root], rp.ReportOptions(at="best", metric="val_loss"))
    assert set(rep.summary["epoch_mean"]) == {2.0}
    smooth = row(rep.summary, loss__smoothing="smooth")
    assert smooth["val_loss_mean"] == pytest.approx(np.mean([0.90 + 0.01 * s for s in range(3)]))
    assert smooth["gap_mean"] == pytest.approx(0.8 - 0.76)  # derived at that evaluation too
    assert "at the evaluation with the best validation loss of each run" in columns_mod.caption(rep)[0]


def test_when_every_run_diverged_the_caption_says_so(tmp_path: Path) -> None:
    root = tmp_path / "lr50"
    nan = {k: math.nan for k in block(0, 0, 0, 0, 0)} | {"epoch": 1, "step": 10}
    for seed in range(2):
        write_run(root, f"x{seed}", {"optimizer.lr": 50.0}, seed, status="diverged", final=nan, best=nan)
        config = yaml.safe_load((root / "runs" / f"x{seed}" / "config.yaml").read_text())
        (root / "runs" / f"x{seed}" / "config.yaml").write_text(yaml.safe_dump(config | {"data": {"val_size": 0.1}}))
    caption = columns_mod.caption(rp.report([root]))
    assert "no run finished ok (2 diverged): none is picked as best." in caption
    assert not any("val_size" in line for line in caption)


def test_a_configuration_without_an_ok_run_says_why_in_vs(grid: Path) -> None:
    for seed in range(2):
        write_run(grid, f"sgd-orthogonal-{seed}", {"optimizer.name": "sgd", "init.scheme": "orthogonal"}, seed,
                  status="failed")
    write_run(grid, "sgd-orthogonal-2", {"optimizer.name": "sgd", "init.scheme": "orthogonal"}, 2, status="pruned",
              final=block(0.3, 0.3, 0.3, 1, 2))
    rep = rp.report([grid])
    header, rows = columns_mod.display_rows(rep)
    vs = {(r[0], r[1]): r[header.index("vs best")] for r in rows}
    assert vs[("sgd", "orthogonal")] == "no run ok: 2 failed, 1 pruned"
    assert vs[("sgd", "zeros")] == rp.TOO_FEW  # one ok run: too few to test


@pytest.mark.parametrize("baseline, message", [
    (["optimizer.name=sgd"], "matches 3 configurations; pin one with another --baseline on init.scheme"),
    (["optimizer.name=rmsprop"], "matches no configuration; values here: adam, sgd"),
    (["model.kind=mlp"], "'model.kind' is not a key of this report"),
    (["optimizer.name"], "expected KEY=VALUE"),
])
def test_bad_baseline_is_one_line_config_error(grid: Path, baseline: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as e:
        rp.report([grid], rp.ReportOptions(baseline=baseline))
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- time to target


def test_time_to_target_first_crossing_and_not_reached(tmp_path: Path) -> None:
    root = tmp_path / "ttt"
    p = {"optimizer.name": "adam"}
    ok = block(0.9, 0.9, 0.9, 4, 0)
    # (epoch, step, seconds, val_acc) per evaluation
    write_run(root, "a", p, 0, final=ok, curve=[(0, 0, 0.1, 0.1), (1, 10, 1.1, 0.6), (2, 20, 2.3, 0.85),
                                                (3, 30, 3.0, 0.8), (4, 40, 4.0, 0.9)])
    write_run(root, "b", p, 1, final=ok, curve=[(0, 0, 0.1, 0.1), (2, 20, 2.0, 0.7), (4, 40, 3.5, 0.95)])
    write_run(root, "c", p, 2, final=ok, curve=[(0, 0, 0.1, 0.1), (2, 20, 2.0, 0.5), (4, 40, 4.0, 0.79)])
    # reached the target, then diverged: it did reach it
    write_run(root, "d", p, 3, status="diverged", final=ok,
              curve=[(0, 0, 0.1, 0.1), (1, 10, 0.9, 0.81), (1.5, 15, 1.2, math.nan)])
    write_run(root, "e", p, 4, status="failed")
    rep = rp.report([root], rp.ReportOptions(target=0.8))
    r = rep.summary.iloc[0]
    assert (r["reached"], r["runs"]) == (3, 5)
    for unit, expected in {"epoch": [2, 4, 1], "step": [20, 40, 10], "seconds": [2.3, 3.5, 0.9]}.items():
        assert r[f"ttt_{unit}_mean"] == pytest.approx(np.mean(expected))
        assert r[f"ttt_{unit}_std"] == pytest.approx(np.std(expected, ddof=1))
        lo, hi = stats.t.interval(0.95, 2, loc=np.mean(expected), scale=stats.sem(expected))
        lo = max(lo, 0.0)  # a time is never negative: the interval is clipped there
        assert (r[f"ttt_{unit}_ci_low"], r[f"ttt_{unit}_ci_high"]) == (pytest.approx(lo), pytest.approx(hi))
    header, rows = columns_mod.display_rows(rep)
    assert rows[0][header.index("reached 0.8")] == "3/5"
    epochs = np.array([2, 4, 1])
    assert rows[0][header.index("epochs to 0.8")].startswith(f"{epochs.mean():.1f} ± {epochs.std(ddof=1):.1f}\n")
    assert rp.report([root], rp.ReportOptions(target=0.99)).summary.iloc[0]["reached"] == 0


@pytest.mark.parametrize("target", [0, 1.5, 90, -0.1])
def test_target_outside_0_1_is_rejected(grid: Path, target: float) -> None:
    with pytest.raises(ConfigError, match="--target"):
        rp.report([grid], rp.ReportOptions(target=target))


# ---------------------------------------------------------------- grouping and filtering


def test_group_by_pools_everything_else(grid: Path) -> None:
    rep = rp.report([grid], rp.ReportOptions(group_by=["optimizer.name"]))
    assert rep.keys == ["optimizer.name"] and len(rep.summary) == 2
    for opt in ("adam", "sgd"):
        pooled = np.concatenate([values(grid, c, "test_acc") for c in VAL if c[0] == opt]
                                + ([np.array([0.1])] if opt == "sgd" else []))
        r = row(rep.summary, optimizer__name=opt)
        assert (r["n"], r["test_acc_mean"]) == (len(pooled), pytest.approx(pooled.mean()))
        assert r["test_acc_std"] == pytest.approx(pooled.std(ddof=1))
    sgd = np.concatenate([values(grid, c, "val_acc") for c in VAL if c[0] == "sgd"] + [np.array([0.1])])
    adam = np.concatenate([values(grid, c, "val_acc") for c in VAL if c[0] == "adam"])
    assert row(rep.summary, optimizer__name="sgd")["p_value"] == pytest.approx(
        stats.ttest_ind(sgd, adam, equal_var=False).pvalue)


def test_group_by_a_config_key_that_was_not_swept(grid: Path) -> None:
    rep = rp.report([grid], rp.ReportOptions(group_by=["optimizer.lr"]))
    assert sorted(rep.summary["optimizer.lr"]) == [0.001, 0.1]
    assert row(rep.summary, optimizer__lr=0.001)["n"] == 6


def test_where_filters_and_alternatives(grid: Path) -> None:
    rep = rp.report([grid], rp.ReportOptions(where=["init.scheme=he_normal"]))
    assert set(rep.summary["init.scheme"]) == {"he_normal"} and len(rep.summary) == 2
    both = rp.report([grid], rp.ReportOptions(where=["init.scheme=he_normal", "init.scheme=zeros"]))
    assert set(both.summary["init.scheme"]) == {"he_normal", "zeros"}
    # keys: and; 1e-1 == 0.1
    one = rp.report([grid], rp.ReportOptions(where=["init.scheme=he_normal", "optimizer.lr=1e-1"]))
    assert list(zip(one.summary["optimizer.name"], one.summary["init.scheme"])) == [("sgd", "he_normal")]
    lists = rp.report([grid], rp.ReportOptions(where=["model.hidden=[100, 100]", "seed=1"]))
    assert lists.summary["runs"].sum() == 5


@pytest.mark.parametrize("option, value, message", [
    ("where", ["nope=1"], "--where: 'nope' is not a key of these runs; swept keys: optimizer.name, init.scheme"),
    ("where", ["init.scheme=he"], "--where init.scheme=he: matches no runs; values here: he_normal, xavier_normal"),
    ("where", ["init.scheme"], "expected KEY=VALUE"),
    ("group_by", ["nope"], "--group-by: 'nope' is not a key of these runs"),
])
def test_bad_keys_are_one_line_config_errors(grid: Path, option: str, value: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as e:
        rp.report([grid], rp.ReportOptions(**{option: value}))
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- exports


def test_csv_and_json_carry_every_number(grid: Path) -> None:
    rep = rp.report([grid], rp.ReportOptions(target=0.85))
    back = pd.read_csv(io.StringIO(formats_mod.export(rep, "csv")))
    numeric = [c for c in rep.summary if rep.summary[c].dtype.kind == "f"]
    assert {"val_acc_ci_low", "p_value", "ttt_seconds_mean", "reached"} <= set(back)
    np.testing.assert_allclose(back[numeric].to_numpy(float), rep.summary[numeric].to_numpy(float), rtol=1e-12)
    doc = json.loads(formats_mod.export(rep, "json"))
    assert (doc["at"], doc["ranked_by"], doc["compared_on"], doc["target"]) == ("final", "val_acc", "val_acc", 0.85)
    assert doc["best"][0]["optimizer.name"] == "adam" and len(doc["configurations"]) == len(rep.summary)
    got = pd.DataFrame(doc["configurations"])[numeric].to_numpy(float)
    np.testing.assert_allclose(got, rep.summary[numeric].to_numpy(float), rtol=1e-12)


def test_markdown_latex_and_table_show_the_display_rows(grid: Path) -> None:
    rep = rp.report([grid])
    header, rows = columns_mod.display_rows(rep)
    assert header[:4] == [*KEYS, "n", "epoch"] and len(rows) == 5
    adam = rows[0]
    x = values(grid, ("adam", "he_normal"), "val_acc")
    lo, hi = stats.t.interval(0.95, 2, loc=x.mean(), scale=stats.sem(x))
    cell = f"{100 * x.mean():.1f} ± {100 * x.std(ddof=1):.1f}\n[{100 * lo:.1f}, {100 * hi:.1f}]"
    assert adam[header.index("val acc %")] == cell
    sgd_he = rows[[r[:2] for r in rows].index(["sgd", "he_normal"])]
    assert sgd_he[header.index("vs best")].endswith(" *")  # significant mark
    assert rows[-1][header.index("vs best")] == rp.TOO_FEW and rows[-1][-1] == "1 diverged, 1 failed"

    md = formats_mod.export(rep, "markdown").splitlines()
    assert md[0] == "| " + " | ".join(header) + " |" and md[1].count("---") == len(header)
    assert md[2] == "| " + " | ".join(c.replace("\n", " ") for c in adam) + " |"
    assert any(line.startswith("_best by validation accuracy") for line in md)

    tex = formats_mod.export(rep, "latex")
    assert tex.count(r"\begin{tabular}") == 1 and r"optimizer.name & init.scheme & n & epoch" in tex
    assert r"he\_normal" in tex and r"$\pm$" in tex and r"val acc \%" in tex and r"\caption{" in tex
    assert not {"±", "–", "<"} & set(tex)  # compiles with any LaTeX input encoding and font

    table = formats_mod.export(rep, "table")
    assert "reference" in table and "best by validation accuracy" in table and "1 diverged, 1 failed" in table


def test_write_tables_refreshes_runs_and_summary_csv(grid: Path) -> None:
    rep = rp.write_tables(grid)
    runs = pd.read_csv(grid / "runs.csv")
    summary = pd.read_csv(grid / "summary.csv")
    assert len(runs) == 15 and list(summary["optimizer.name"]) == list(rep.summary["optimizer.name"])
    expected = rep.summary["val_acc_ci_high"].to_numpy()
    assert summary["val_acc_ci_high"].to_numpy() == pytest.approx(expected, nan_ok=True)
    assert terminal_mod.rich_table(rep, title="grid").row_count == 5


# ---------------------------------------------------------------- two experiments


def test_two_experiments_side_by_side(tmp_path: Path) -> None:
    a, b = make_grid(tmp_path / "a"), make_grid(tmp_path / "b", shift=0.03)
    rep = rp.report([a, b])
    assert rep.keys == [rp.EXPERIMENT, *KEYS] and rep.reference == "a"
    pairs = list(zip(rep.summary[rp.EXPERIMENT], rep.summary["optimizer.name"], rep.summary["init.scheme"]))
    assert pairs[:2] == [("a", "adam", "he_normal"), ("b", "adam", "he_normal")]  # same configuration together
    for config in VAL:
        x, ref = values(b, config, "val_acc"), values(a, config, "val_acc")
        r = row(rep.summary, experiment="b", optimizer__name=config[0], init__scheme=config[1])
        assert r["delta"] == pytest.approx(0.03)
        assert r["p_value"] == pytest.approx(stats.ttest_ind(x, ref, equal_var=False).pvalue, rel=1e-12)
        assert row(rep.summary, experiment="a", optimizer__name=config[0], init__scheme=config[1])["verdict"] == \
            "reference"
    assert len(rep.best()) == 2 and "vs a" in columns_mod.display_rows(rep)[0]


def test_experiments_with_different_keys_need_group_by(tmp_path: Path) -> None:
    a = make_grid(tmp_path / "a")
    b = tmp_path / "b"
    for seed in range(3):
        write_run(b, f"r{seed}", {"optimizer.name": "adam"}, seed, final=block(0.9, 0.9, 0.9, 5, seed))
    with pytest.raises(ConfigError, match="sweep different keys .*--group-by optimizer.name"):
        rp.report([a, b])
    rep = rp.report([a, b], rp.ReportOptions(group_by=["optimizer.name"]))
    assert list(zip(rep.summary[rp.EXPERIMENT], rep.summary["optimizer.name"]))[:2] == [("a", "adam"), ("b", "adam")]
    assert not ((rep.summary[rp.EXPERIMENT] == "b") & (rep.summary["optimizer.name"] == "sgd")).any()
    # a configuration the first folder lacks has nothing to be compared with
    flipped = rp.report([b, a], rp.ReportOptions(group_by=["optimizer.name"]))
    assert row(flipped.summary, experiment="a", optimizer__name="sgd")["verdict"] == "no reference"
    assert row(flipped.summary, experiment="a", optimizer__name="adam")["verdict"] in ("significant", "not significant")


# ---------------------------------------------------------------- the command line


def test_cli_formats_and_output_file(grid: Path, tmp_path: Path) -> None:
    for fmt in FORMATS:
        result = report_cli(grid, "--format", fmt, "--target", "0.85", "--at", "best", "--losses")
        assert result.exit_code == 0, result.output
        assert "adam" in result.output and "xavier" in result.output
    out = tmp_path / "report.tex"
    result = report_cli(grid, "--output", out, "--where", "optimizer.name=adam")
    assert result.exit_code == 0 and out.read_text().startswith(r"\begin{table}")  # format from the suffix
    json_out = tmp_path / "r.txt"
    assert report_cli(grid, "-o", json_out, "-f", "json").exit_code == 0
    assert json.loads(json_out.read_text())["keys"] == KEYS


@pytest.mark.parametrize("args", [
    ["--at", "worst"], ["--format", "pdf"], ["--metric", "accuracy"], ["--target", "high"],
])
def test_cli_rejects_bad_choices(grid: Path, args: list[str]) -> None:
    result = report_cli(grid, *args)
    assert result.exit_code == 2


@pytest.mark.parametrize("args, message", [
    (["--where", "nope=1"], "'nope' is not a key"),
    (["--group-by", "nope"], "'nope' is not a key"),
    (["--baseline", "optimizer.name=sgd"], "matches 3 configurations"),
    (["--target", "90"], "--target: 90.0 is invalid"),
])
def test_cli_bad_keys_are_one_line_exit_2(grid: Path, args: list[str], message: str) -> None:
    result = report_cli(grid, *args)
    assert result.exit_code == 2 and message in result.stderr and result.stdout == ""


def test_cli_missing_folder_exits_2(tmp_path: Path) -> None:
    result = report_cli(tmp_path / "nothing")
    assert result.exit_code == 2 and "nothing: no such folder" in result.stderr
    (tmp_path / "empty" / "runs").mkdir(parents=True)
    empty = report_cli(tmp_path / "empty")
    assert empty.exit_code == 2 and "no finished runs yet" in empty.stderr


def test_console_entry_turns_bad_keys_into_exit_2_without_traceback(grid: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", ["dlbench", "report", str(grid), "--where", "nope=1"])
    with pytest.raises(SystemExit) as e:
        main()
    out, err = capsys.readouterr()
    assert e.value.code == 2 and out == ""
    assert err.count("\n") == 1 and "'nope' is not a key" in err and "Traceback" not in err


def test_report_of_a_real_sweep(tmp_path: Path, tiny: dict[str, Any]) -> None:
    """`dlbench run` writes the folder, `dlbench report` reads it back: same numbers as scipy."""
    tiny["train"]["seeds"] = [0, 1, 2]
    tiny["grid"] = {"optimizer": [{"name": "sgd", "lr": 0.1}, {"name": "adam", "lr": 0.01}]}
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny))
    run = dlbench("run", cfg, "--out", tmp_path)
    assert run.exit_code == 0, run.output
    assert "best by validation accuracy" in run.output and (tmp_path / "tiny" / "summary.csv").is_file()
    result = report_cli(tmp_path / "tiny", "--format", "json", "--target", "0.15")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    final: dict[str, list[float]] = {}
    for f in (tmp_path / "tiny" / "runs").glob("*/summary.json"):
        s = json.loads(f.read_text())
        final.setdefault(s["params"]["optimizer.name"], []).append(s["final"]["val_acc"])
    ranked = [c["optimizer.name"] for c in doc["configurations"]]
    assert ranked == sorted(final, key=lambda k: -np.mean(final[k]))
    worse = doc["configurations"][1]
    p = stats.ttest_ind(final[ranked[1]], final[ranked[0]], equal_var=False).pvalue
    assert worse["n"] == 3 and worse["p_value"] == pytest.approx(p, rel=1e-9)
    assert all(0 <= c["reached"] <= 3 for c in doc["configurations"])


@pytest.mark.parametrize("mean, std, shown", [(20.0, 0.0, "20"), (68.96551724, 0.0, "69.0"), (12.5, 2.25, "12.5 ± 2.2"),
                                             (math.nan, math.nan, load_mod.MISSING)])
def test_epoch_column_shows_sensible_precision(mean: float, std: float, shown: str) -> None:
    """Whole epochs as integers; a step-based run ends mid-epoch (68.96551724 -> 69.0), never 6 digits."""
    assert columns_mod._epoch(pd.Series({"epoch_mean": mean, "epoch_std": std})) == shown


def test_results_files_write_a_missing_value_one_way(tmp_path: Path) -> None:
    """A key one configuration has not got (a case leaves it out): an empty cell in runs.csv and summary.csv."""
    import csv

    for seed in range(2):
        write_run(tmp_path / "m", f"a{seed}", {"optimizer.name": "adam", "optimizer.momentum": 0.9}, seed,
                  final=block(0.5, 0.5, 0.6, 5, seed))
        write_run(tmp_path / "m", f"s{seed}", {"optimizer.name": "sgd"}, seed, final=block(0.4, 0.4, 0.6, 5, seed))
    rp.write_tables(tmp_path / "m")
    for name in ("runs.csv", "summary.csv"):
        with open(tmp_path / "m" / name) as f:
            cells = {r["optimizer.momentum"] for r in csv.DictReader(f) if r["optimizer.name"] == "sgd"}
        assert cells == {""}, name


# ---------------------------------------------------------------- one definition of the options

# each report option: (its value on the command line, the same in Python); None: a flag without a value
GIVEN: dict[str, tuple[str | None, Any]] = {
    "at": ("best", "best"), "metric": ("test_acc", "test_acc"),
    "baseline": ("optimizer.name=sgd", {"optimizer.name": "sgd"}), "target": ("0.9", 0.9),
    "group_by": ("optimizer.name", "optimizer.name"), "where": ("init.scheme=he_normal", {"init.scheme": "he_normal"}),
    "losses": (None, True), "calibration": (None, True), "adjust": ("none", "none"),
}


def _cli_args(name: str) -> list[str]:
    from dlbench.results import options

    text = GIVEN[name][0]
    return [options.flag(name)] + ([text] if text is not None else [])


def test_every_report_flag_is_an_option_of_the_python_api() -> None:
    import typer

    from dlbench.cli import app
    from dlbench.results import options

    command = typer.main.get_command(app).commands["report"]  # type: ignore[attr-defined]
    flags = {p.name for p in command.params if p.param_type_name == "option"}
    assert flags == {*options.FIELDS, *options.OUTPUT, *options.MODES} and set(GIVEN) == set(options.FIELDS)
    from dlbench.results.api import Results

    assert all(callable(getattr(Results, mode)) for mode in options.MODES)  # a mode is a method in Python
    for name, (_, value) in GIVEN.items():  # the API's keywords are the options' names
        from dlbench.results.api import report_options

        assert report_options({name: value}, "compare").changed() == [name]


@pytest.mark.parametrize("name", list(GIVEN))
def test_compare_and_the_cli_report_give_the_same_report_for_each_option(tmp_path: Path, name: str) -> None:
    import dlbench

    a, b = make_grid(tmp_path / "a"), make_grid(tmp_path / "b", shift=0.03)
    cli = report_cli(a, b, *_cli_args(name), "--format", "csv")
    try:
        text = dlbench.compare(a, b, **{name: GIVEN[name][1]}).text("csv")
    except ConfigError as e:  # refused (a baseline when comparing folders): the same line as the CLI's
        assert cli.exit_code == 2 and cli.error_line == f"error: {e}"
        return
    assert cli.exit_code == 0 and text == cli.out


@pytest.mark.parametrize("adjust", ["holm", "none"])
def test_compare_with_adjust_gives_the_numbers_of_report_adjust(tmp_path: Path, adjust: str) -> None:
    import dlbench

    a, b = make_grid(tmp_path / "a"), make_grid(tmp_path / "b", shift=0.03)
    cli = pd.read_csv(io.StringIO(report_cli(a, b, "--adjust", adjust, "--format", "csv").out))
    api = dlbench.compare(a, b, adjust=adjust).table()
    for column in ("delta", "p_value", "p_adjusted"):
        assert api[column].to_numpy() == pytest.approx(cli[column].to_numpy(), rel=1e-12, nan_ok=True)
    tested = api["p_value"].notna()
    assert (api["p_adjusted"][tested] == api["p_value"][tested]).all() == (adjust == "none")
    # the page says which options made it; the same options in Python write the same page
    page = tmp_path / "page.html"
    assert report_cli(a, b, "--adjust", adjust, "-o", page).exit_code == 0
    assert ("report options: --adjust none" in page.read_text()) == (adjust == "none")
    assert dlbench.compare(a, b, adjust=adjust).save(tmp_path / "api.html").read_text() == page.read_text()


def test_report_options_are_checked_once_for_the_cli_and_the_api(grid: Path) -> None:
    import dlbench

    results = dlbench.load(grid)
    for name, bad in (("at", "last"), ("metric", "accuracy"), ("adjust", "bonferroni"), ("target", 90)):
        with pytest.raises(ConfigError) as caught:
            results.table(**{name: bad})
        assert str(caught.value).startswith(f"--{name}: {bad!r} is invalid")
    with pytest.raises(ConfigError, match=r"table\(adjsut=...\): not a report option.*did you mean 'adjust'"):
        results.table(adjsut="none")


def test_a_small_loss_keeps_three_significant_digits(tmp_path: Path) -> None:
    """A loss of 2.4e-4 (Muon's train loss) reads 0.000240 ± ..., never 0.000 ± 0.000."""
    root = tmp_path / "tiny_loss"
    for opt, loss in (("adam", 2.4e-4), ("sgd", 0.52)):
        for seed in range(3):
            final = block(0.9, 0.88, 1.0, 5, seed) | {"train_loss": loss * (1 + 0.1 * seed)}
            write_run(root, f"{opt}-{seed}", {"optimizer.name": opt}, seed, final=final)
    res = report_cli(root, "--losses", "--format", "markdown")
    assert res.code == 0, res.err
    table = res.out
    adam = next(line for line in table.splitlines() if line.startswith("| adam"))
    assert "0.000264 ± 0.000024" in adam  # mean of 2.4e-4 x (1, 1.1, 1.2), its std, at 3 significant digits
    sgd = next(line for line in table.splitlines() if line.startswith("| sgd"))
    assert "0.572 ± 0.052" in sgd  # losses near 1 keep 3 decimals


def test_list_metrics_prints_every_metric_with_its_direction() -> None:
    result = dlbench("list", "metrics")
    assert result.exit_code == 0
    for m in METRICS:
        assert m.name in result.stdout and m.direction in result.stdout
