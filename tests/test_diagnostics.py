"""Cases, diagnostics, the non-training tasks, plots and their bad-input errors."""

from __future__ import annotations

import copy
import math

import pandas as pd
import pytest
import torch
import yaml

from dlbench.config import schema as config
from dlbench.plan import sweep
from dlbench.errors import ConfigError
from dlbench.training.diagnostics import activation_stats, activations_of
from dlbench.components.functions import FUNCTIONS


def expand(data: dict) -> list[sweep.RunSpec]:
    return sweep.expand(config.validate(data), data)


# ---------------------------------------------------------------- cases


def test_cases_set_keys_across_sections_and_record_only_their_name() -> None:
    specs = expand({
        "cases": {"plain": {}, "wd": {"optimizer.weight_decay": 0.1}, "bn": {"model": {"norm": "batch"}}},
        "grid": {"optimizer.lr": [0.1, 0.01]},
        "train": {"seeds": [0, 1]},
    })
    assert len(specs) == 3 * 2 * 2
    assert [s.params for s in specs[:4:2]] == [{"case": "plain", "optimizer.lr": 0.1},
                                                {"case": "plain", "optimizer.lr": 0.01}]
    wd = [s for s in specs if s.params["case"] == "wd"]
    assert {s.config.optimizer.weight_decay for s in wd} == {0.1}
    assert {s.config.model.norm for s in specs if s.params["case"] == "bn"} == {"batch"}
    assert {s.config.model.norm for s in specs if s.params["case"] != "bn"} == {"none"}
    assert len({s.run_id for s in specs}) == len(specs)
    assert all(s.config.cases == {} for s in specs)


def test_a_folder_takes_new_case_values_but_not_other_changes(cli, tiny) -> None:
    """Keys that cases set are swept keys: changing their values adds runs to the folder."""
    out = cli.tmp_path / "out"
    tiny["train"]["steps"] = 5
    tiny["cases"] = {"plain": {}, "decay": {"optimizer.weight_decay": 0.1}}
    assert cli("run", cli.write(tiny), "--out", out, "--no-plots").exit_code == 0
    tiny["cases"]["decay"] = {"optimizer.weight_decay": 0.01}
    assert cli("run", cli.write(tiny), "--out", out, "--no-plots").exit_code == 0
    assert len(list((out / "tiny" / "runs").iterdir())) == 3
    tiny["model"]["hidden"] = [16]
    refused = cli("run", cli.write(tiny), "--out", out, "--no-plots")
    assert refused.exit_code == 2 and "different experiment" in refused.stderr


@pytest.mark.parametrize("cases, words", [
    ({"x": {"optimizer.wd": 0.1}}, ["cases", "optimizer.wd", "unknown key", "weight_decay"]),
    ({"x": {"model.dropout": 2.0}}, ["model.dropout", "2.0", "less than 1", "case='x'"]),
    ({"x": {"model": "batch"}}, ["cases.x.model", "'batch'", "mapping"]),
])
def test_bad_cases_are_one_line_errors(cases: dict, words: list[str]) -> None:
    with pytest.raises(ConfigError) as e:
        expand({"cases": cases})
    message = str(e.value)
    assert "\n" not in message and all(w in message for w in words), message


# ---------------------------------------------------------------- diagnostics during training


def test_diagnostics_off_keeps_run_ids_on_changes_them() -> None:
    base = config.validate({})
    assert sweep.run_id(base, 0) != sweep.run_id(config.validate({"diagnostics": {"weights": True}}), 0)
    # the task switches and plot lists do not change what a training run computes
    assert sweep.run_id(base, 0) == sweep.run_id(config.validate({"plots": ["gap"], "name": "other"}), 0)


def test_recording_diagnostics_changes_no_number(cli, tiny) -> None:
    """Activations are measured in eval mode: dropout masks, BatchNorm statistics and the
    random stream of the run are untouched, so every metric is the same with and without."""
    from dlbench.training.engine import train

    tiny["model"].update(dropout=0.3, norm="batch", hidden=[16, 16])
    plain = copy.deepcopy(tiny)
    tiny["diagnostics"] = {"activations": True, "gradients": True, "weights": True, "samples": 64}
    results = [next(train(expand(c)[:1], torch.device("cpu"))) for c in (plain, tiny)]
    drop = ["seconds"]
    a, b = (pd.DataFrame(r.metrics).drop(columns=drop) for r in results)
    pd.testing.assert_frame_equal(a, b)
    assert results[0].files == {} and set(results[1].files) == {"diagnostics.csv", "histograms.csv"}
    final = results[1].summary["diagnostics"]
    assert set(final) == {"weight_near_zero", "weight_norm", "grad_norm_first", "grad_norm_last", "act_std_first",
                          "act_std_last", "act_saturated"}
    assert 0 <= final["weight_near_zero"] <= 1 and final["grad_norm_first"] > 0


def test_diagnostics_files_in_the_run_folder(cli, tiny) -> None:
    tiny["diagnostics"] = {"weights": True, "near_zero": 0.05, "bins": 10}
    result = cli("run", cli.write(tiny), "--out", cli.tmp_path / "out", "--no-plots")
    assert result.exit_code == 0, result.output
    root = cli.tmp_path / "out" / "tiny"
    (run_dir,) = (root / "runs").iterdir()
    stats = pd.read_csv(run_dir / "diagnostics.csv")
    assert set(stats.columns) == {"step", "layer", "weight_norm", "weight_near_zero", "n_weights"}
    assert sorted(set(stats["step"])) == [0, 10, 20] and set(stats["layer"]) == {1, 2}
    assert stats.query("layer == 1")["n_weights"].iloc[0] == 40 * 32
    hist = pd.read_csv(run_dir / "histograms.csv")
    assert set(hist["step"]) == {0, 20} and len(hist) == 2 * 2 * 10  # first + last evaluation, 2 layers, 10 bins
    assert (hist.groupby(["step", "layer"])["count"].sum() == [40 * 32, 32 * 10, 40 * 32, 32 * 10]).all()
    assert "near-zero weights %" in result.stdout and not list(root.glob("*.png"))
    # `dlbench report` shows the same diagnostics table after the report, as `run` did
    report = cli("report", root)
    assert report.exit_code == 0, report.output
    assert "tiny: diagnostics" in report.stdout and "near-zero weights %" in report.stdout
    assert "near-zero" not in cli("report", root, "--format", "csv").stdout  # a table format's own content only


def test_activation_stats_by_hand() -> None:
    outs = [torch.tensor([[0.01, 0.5], [0.97, 0.2]])]
    (row,), hist = activation_stats(outs, "sigmoid", bins=4)
    assert row["act_saturated"] == 0.5 and row["act_mean"] == pytest.approx(0.42)
    assert [h["count"] for h in hist] == [2, 0, 1, 1]  # bins [0, .25) [.25, .5) [.5, .75) [.75, 1]
    (relu,), _ = activation_stats([torch.tensor([[0.0, 2.0], [0.0, 5.0]])], "relu", bins=3)
    assert relu["act_zero"] == 0.5 and math.isnan(relu["act_saturated"])


def test_activations_hook_every_layer_and_leave_the_model_as_it_was() -> None:
    cfg = config.validate({"model": {"hidden": [8, 8, 8], "activation": "tanh", "norm": "batch"}})
    from dlbench.components.models import build

    model = build(cfg.model, (5,), 3).train()
    outputs = activations_of(model, torch.randn(20, 5), "tanh")
    assert [tuple(o.shape) for o in outputs] == [(20, 8)] * 3 and model.training
    assert not any(m._forward_hooks for m in model.modules())


# ---------------------------------------------------------------- functions


@pytest.mark.parametrize("name", FUNCTIONS.names())
def test_function_minimum_is_zero_with_zero_gradient(name: str) -> None:
    entry = FUNCTIONS[name]
    xy = torch.tensor(entry.info["minimum"], dtype=torch.float64, requires_grad=True)
    value = entry.builder(*xy)
    value.backward()
    assert value.item() == 0 and torch.all(xy.grad == 0)
    assert entry.builder(*torch.tensor(entry.record.setting("start").default, dtype=torch.float64)) > 1


def test_function_task_divergence_is_reported_not_raised(cli) -> None:
    cfg = {"name": "diverge", "task": "function", "function": {"name": "rosenbrock", "steps": 50},
           "optimizer": {"name": "sgd", "lr": 0.1}, "train": {"seeds": [0]}}
    result = cli("run", cli.write(cfg), "--out", cli.tmp_path / "out", "--no-plots")
    assert result.exit_code == 0, result.output
    row = pd.read_csv(cli.tmp_path / "out" / "diverge" / "summary.csv").iloc[0]
    assert bool(row["diverged"]) and row["steps"] < 50 and "never" in result.stdout


def test_a_task_table_in_80_columns_wraps_and_cuts_nothing(cli) -> None:
    import io

    from rich.console import Console

    from dlbench.results import plots, tables

    cfg = {"name": "paths", "task": "function", "function": {"name": "rosenbrock", "steps": 30},
           "grid": {"optimizer": [{"name": "momentum", "lr": 0.001, "momentum": 0.9}, {"name": "adam", "lr": 0.1}]},
           "train": {"seeds": [0]}}
    assert cli("run", cli.write(cfg), "--out", cli.tmp_path / "out", "--no-plots").exit_code == 0
    res = plots.load(cli.tmp_path / "out" / "paths")
    console = Console(file=io.StringIO(), width=80, color_system=None)
    console.print(tables.table(res))
    text = console.file.getvalue()
    assert max(map(len, text.splitlines())) <= 80 and "…" not in text
    for row in pd.read_csv(res.root / "summary.csv").itertuples():  # a cut cell ended in "…" (1.36e-…)
        assert f"{row.final_f:.3g}" in text


# ---------------------------------------------------------------- plots and their errors


def test_plot_command_redraws_from_the_folder(cli, tiny) -> None:
    tiny["grid"] = {"optimizer.lr": [0.01, 1.0e12]}  # the second diverges: drawn as such, not crashed on
    tiny["train"]["seeds"] = [0, 1]
    tiny["plots"] = ["curves", "gap", "panels", "curves_epoch"]
    tiny["grid"]["model.activation"] = ["relu", "tanh"]
    out = cli.tmp_path / "out"
    assert cli("run", cli.write(tiny), "--out", out, "--no-plots").exit_code == 0
    root = out / "tiny"
    assert not list(root.glob("*.png"))
    result = cli("plot", root)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in root.glob("*.png")) == ["curves.png", "curves_epoch.png", "gap.png",
                                                           "panels.png"]
    # no temporary files left behind: of the hidden ones, only the sweep's record of its end
    assert sorted(str(p.relative_to(root)) for p in root.glob(".*/**/*")) == [".progress/sweep.json"]
    assert [p.name for p in root.glob(".*")] == [".progress"]


def test_list_shows_functions_and_plots(cli) -> None:
    from dlbench.results.plots import PLOTS

    result = cli("list")
    assert result.exit_code == 0
    assert all(name in result.stdout for name in [*FUNCTIONS.names(), *PLOTS.names()])


def test_figures_of_a_sweep_with_a_failed_run(cli, tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    from dlbench.components import models

    build = models.build

    def build_or_fail(cfg, shape, classes):  # a failed run leaves a metrics.csv with a header only
        if cfg.hidden == [13]:
            raise RuntimeError("simulated failure")
        return build(cfg, shape, classes)

    monkeypatch.setattr(models, "build", build_or_fail)
    tiny["grid"] = {"model.hidden": [[8], [13]]}
    result = cli("run", cli.write(tiny), "--out", cli.tmp_path / "out")
    assert result.exit_code == 1 and "simulated failure" in result.stderr
    assert {p.name for p in (cli.tmp_path / "out" / "tiny").glob("*.png")} == {"curves.png", "gap.png"}


def test_plot_of_a_folder_that_is_no_results_folder(cli) -> None:
    result = cli("plot", cli.tmp_path)
    assert result.exit_code == 2 and "not a results folder" in result.stderr


@pytest.mark.parametrize("delta, words", [
    ({"plots": ["curvez"]}, ["plots", "'curvez'", "unknown plot", "curves"]),
    ({"plots": ["paths"]}, ["plots", "'paths'", "task 'function'", "task 'train'"]),
    ({"plots": ["weights"]}, ["plots", "'weights'", "diagnostics.weights: true"]),
    ({"task": "optimize"}, ["task", "'optimize'", "function"]),
    ({"function": {"name": "himmelblau"}}, ["function.name", "'himmelblau'", "rosenbrock"]),
    ({"grid": {"task": ["train"]}}, ["grid", "'task'", "unknown key"]),
    ({"diagnostics": {"samples": 1}}, ["diagnostics.samples", "1", "greater than 1"]),
])
def test_bad_task_and_plot_settings_are_one_line_errors(cli, delta: dict, words: list[str]) -> None:
    result = cli("validate", cli.write(yaml.safe_dump(delta)))
    assert result.exit_code == 2
    message = result.stderr.strip()
    assert "\n" not in message and all(w in message for w in words), message
