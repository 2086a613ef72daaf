"""Metrics declared once (dlbench/catalog/metrics.py) and measured by the engine (training/measures.py):
every measure the catalog names has its computation, the calibration error matches a hand computation,
a trained run records it at every evaluation and the report ranks, compares and shows it."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from sweep_util import dlbench, run_dirs, write_config

from dlbench.catalog.metrics import METRICS, Metric
from dlbench.results import report as rp
from dlbench.results.render import columns as columns_mod
from dlbench.results.render import formats as formats_mod
from dlbench.results.render import terminal as terminal_mod
from dlbench.training import measures


def test_every_measure_of_the_catalog_is_computed_and_every_computation_declared() -> None:
    declared = {measure for _, _, measure in METRICS.measured()}
    assert declared == set(measures.MEASURES)
    for name, split, _ in METRICS.measured():
        assert METRICS[name].split == split and METRICS.on_split(name, "val") is not None, name


def _ece_reference(logits: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Guo et al. (2017): confidence bins (lower, upper], sum of |accuracy - confidence| weighted by the bin's share."""
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    confidence, correct = p.max(1), p.argmax(1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return ece


def test_expected_calibration_error_matches_a_hand_computation() -> None:
    rng = np.random.default_rng(0)
    runs, samples, classes = 3, 400, 10
    labels = rng.integers(0, classes, (runs, samples))
    # from nearly uniform to over-confident: the runs fill different bins
    logits = rng.normal(size=(runs, samples, classes)) * np.array([0.3, 2.0, 8.0])[:, None, None]
    logits[np.arange(runs)[:, None], np.arange(samples), labels] += 1.0  # better than chance
    ece = measures.MEASURES["ece"]
    t_logits, t_labels = torch.tensor(logits), torch.tensor(labels)
    # summed over two chunks, as the engine sums the chunks of a split
    sums = sum(ece.sums(t_logits[:, a:a + 200], t_labels[:, a:a + 200], torch.zeros(runs, 200)) for a in (0, 200))
    got = ece.value(sums, samples)
    for r in range(runs):
        assert float(got[r]) == pytest.approx(_ece_reference(logits[r], labels[r]), abs=1e-12)
    assert len({round(float(v), 3) for v in got}) == runs  # the three runs differ: the test would see a mistake


def test_a_trained_run_records_its_calibration_and_the_report_ranks_on_it(tmp_path: Path, tiny: dict[str, Any]
                                                                           ) -> None:
    cfg = tiny | {"name": "calib", "grid": {"optimizer.lr": [0.001, 0.05]},
                  "train": tiny["train"] | {"seeds": [0, 1]}}
    assert dlbench("run", write_config(tmp_path / "c.yaml", cfg), "--out", tmp_path, "--no-plots").exit_code == 0
    root = tmp_path / "calib"
    for run in run_dirs(root).values():
        curve = pd.read_csv(run / "metrics.csv")
        for split in ("train", "val", "test"):
            assert curve[f"{split}_ece"].between(0, 1).all() and curve[f"{split}_ece"].nunique() > 1
        final = json.loads((run / "summary.json").read_text())["final"]
        assert final["test_ece"] == curve["test_ece"].iloc[-1]
    rep = rp.report([root], rp.ReportOptions(metric="test_ece"))
    assert rep.rank_by == "val_ece" and list(rep.summary["val_ece_mean"]) == sorted(rep.summary["val_ece_mean"])
    caption = columns_mod.caption(rep)
    assert "ranked by validation calibration error." in caption[0] and "test calibration error" in caption[-1]
    plain = dlbench("report", root).stdout
    assert "ECE" not in plain  # today's default table keeps its width
    shown = dlbench("report", root, "--calibration", "--format", "csv").stdout
    assert "test_ece_mean" in shown.splitlines()[0]
    table = dlbench("report", root, "--calibration", "--format", "markdown").stdout
    assert all(f"{split} ECE %" in table for split in ("train", "val", "test"))
    from dlbench.results import plots

    figure = plots.PLOTS["calibration"].builder(plots.load(root))
    titles = [ax.get_title() for ax in figure.axes]
    assert [t for t in titles if "calibration error" in t] == [f"{w} calibration error %" for w in
                                                               ("train", "validation", "test")]
    figure.savefig(tmp_path / "calibration.png")


@pytest.fixture
def error_rate() -> Any:
    """A metric that exists only in this test: the test error, derived from the test accuracy."""
    metric = METRICS.declare(Metric("test_error", "test error %", "test error", "1 - test accuracy",
                                    higher_is_better=False, possible=(0.0, 1.0), scale=100.0, unit="%", digits=2,
                                    derive=lambda m: 1 - m["test_acc"], curve=True))
    yield metric
    METRICS.forget(metric.name)


def test_a_metric_declared_in_a_test_reaches_every_output(tmp_path: Path, error_rate: Metric) -> None:
    """Its record alone: the terminal table, csv, json, a figure and the API show it, with no other edit."""
    import dlbench
    from dlbench.results import plots
    from test_report import _confident

    root = _confident(tmp_path / "smoothing")
    rep = rp.report([root], rp.ReportOptions(metric="test_error"))
    assert terminal_mod.render(rep, "t").count("test error %") == 1
    errors = 1 - rep.summary["test_acc_mean"]
    csv = pd.read_csv(io.StringIO(formats_mod.export(rep, "csv")))
    assert np.allclose(csv["test_error_mean"], errors) and list(csv["test_error_mean"]) == sorted(errors)
    first = json.loads(formats_mod.export(rep, "json"))["configurations"][0]
    assert first["test_error_mean"] == pytest.approx(errors[0])
    figure = plots.curves(plots.load(root))
    assert figure is not None and "test error %" in [ax.get_title() for ax in figure.axes]
    api = dlbench.load(root).table(metric="test_error")  # the table's columns as numbers: its column is there
    assert np.allclose(api["test_error_mean"], errors) and list(api["test_error_mean"]) == sorted(errors)
    assert [c for c in api.columns if c.startswith("test_error")] == [f"test_error_{s}" for s in columns_mod.STATISTIC]
    assert "ranked by test error." in columns_mod.caption(rep)[0]
