"""Staged search end to end (issue 13): rounds planned from finished runs, confirm and
defaults stages on fresh seeds, resume mid-search."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import pytest

from dlbench.config import vocabulary
from dlbench import search
from sweep_util import dlbench, one_thread, run_dirs, summary, tiny_config, write_config  # noqa: F401

SPACE = {"optimizer.lr": {"log_uniform": [1.0e-3, 1.0]}}


def staged(data_root: Path, **extra: Any) -> dict[str, Any]:
    cfg = tiny_config(data_root, cases={"sgd": {"optimizer.name": "sgd"}, "adam": {"optimizer.name": "adam",
                                                                                   "optimizer.lr": 0.001}},
                      random={"method": "sobol", "trials": 4, "rounds": 2, "keep": 0.5, "seed": 3, "space": SPACE},
                      confirm={"top": 1, "seeds": [10, 11], "defaults": True})
    cfg["data"]["val_size"] = 0.2
    cfg.update(extra)
    return cfg


def by_run(root: Path) -> dict[str, dict[str, Any]]:
    return {rid: summary(d) for rid, d in run_dirs(root).items()}


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> tuple[Path, Path, dict[str, dict]]:
    tmp = tmp_path_factory.mktemp("staged")
    cfg = write_config(tmp / "c.yaml", staged(data_root))
    result = dlbench("run", cfg, "--out", tmp / "out")
    assert result.exit_code == 0, result.output
    return cfg, tmp / "out" / "tiny", by_run(tmp / "out" / "tiny")


def test_every_round_then_confirm_and_defaults_run(swept: tuple[Path, Path, dict[str, dict]]) -> None:
    _, _, runs = swept
    count: dict[tuple, int] = {}
    for s in runs.values():
        p = s["params"]
        key = (p["case"], p["stage"], p.get("round"))
        count[key] = count.get(key, 0) + 1
    for case in ("sgd", "adam"):
        assert count[(case, "search", 1)] == 4 and count[(case, "search", 2)] == 4
        assert count[(case, "confirm", None)] == 2 and count[(case, "defaults", None)] == 2


def test_later_rounds_narrow_to_the_best_of_the_round_before(swept: tuple[Path, Path, dict[str, dict]]) -> None:
    _, _, runs = swept
    for case in ("sgd", "adam"):
        first = [s for s in runs.values() if s["params"]["case"] == case and s["params"].get("round") == 1]
        second = [s["params"]["optimizer.lr"] for s in runs.values()
                  if s["params"]["case"] == case and s["params"].get("round") == 2]
        trained = sorted((s for s in first if s["status"] == "ok"), key=lambda s: -s["final"]["val_acc"])
        kept = [s["params"]["optimizer.lr"] for s in trained[:2]]  # keep 0.5 of 4 points
        if len(set(kept)) == 2:
            assert all(min(kept) * (1 - 1e-9) <= lr <= max(kept) * (1 + 1e-9) for lr in second)
        assert max(second) / min(second) < 1.0 / 1e-3  # narrower than the declared range


def test_confirm_reruns_the_best_search_point_on_fresh_seeds(swept: tuple[Path, Path, dict[str, dict]]) -> None:
    _, _, runs = swept
    for case in ("sgd", "adam"):
        trials = [search.Trial({"optimizer.lr": s["params"]["optimizer.lr"]},
                               s["final"]["val_acc"] if s["status"] == "ok" else math.nan)
                  for s in runs.values() if s["params"]["case"] == case and s["params"]["stage"] == "search"]
        best = search.select_top(trials, 1)[0]
        confirm = [s for s in runs.values() if s["params"]["case"] == case and s["params"]["stage"] == "confirm"]
        assert sorted(s["seed"] for s in confirm) == [10, 11]
        assert all(s["params"]["optimizer.lr"] == best["optimizer.lr"] for s in confirm)
        defaults = [s for s in runs.values() if s["params"]["case"] == case and s["params"]["stage"] == "defaults"]
        assert sorted(s["seed"] for s in defaults) == [10, 11]
        assert "optimizer.lr" not in defaults[0]["params"]


def test_resume_mid_search_plans_the_same_later_rounds(swept: tuple[Path, Path, dict[str, dict]],
                                                       tmp_path: Path) -> None:
    """As if interrupted after round 1: the rerun plans the same round 2 and confirm runs."""
    cfg, root, runs = swept
    copy = tmp_path / "out" / "tiny"
    shutil.copytree(root, copy)
    later = [rid for rid, s in runs.items() if s["params"].get("round") != 1]
    for rid in later:
        shutil.rmtree(copy / "runs" / rid)
    result = dlbench("run", cfg, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    resumed = by_run(copy)
    assert set(resumed) == set(runs), result.output
    for rid in later:
        assert resumed[rid]["params"] == runs[rid]["params"]


def test_the_reported_best_comes_from_the_confirm_runs(swept: tuple[Path, Path, dict[str, dict]]) -> None:
    from dlbench.results import report as rp
    from dlbench.results.render import columns as columns_mod

    _, root, runs = swept
    rep = rp.report([root])
    best = rep.best().iloc[0]
    assert best["stage"] == "confirm" and best["n"] == 2  # len(confirm.seeds)
    seeds = sorted(s["seed"] for s in runs.values() if s["params"]["stage"] == "confirm"
                   and s["params"]["case"] == best["case"] and s["status"] == "ok")
    assert seeds == [10, 11]
    assert "among the confirm runs" in columns_mod.caption(rep)[-1] and "fresh seeds" in columns_mod.caption(rep)[-1]
    # by default the confirm and defaults runs are compared (each on 2 seeds), with the best confirm row
    assert set(rep.summary["stage"]) == {"confirm", "defaults"} and rep.summary.iloc[0]["verdict"] == "reference"
    assert rp.TOO_FEW not in set(rep.summary["verdict"])
    assert any("search runs are left out (see them with --where stage=search" in line
               for line in columns_mod.caption(rep))
    assert "search" in set(rp.report([root], rp.ReportOptions(where=["stage=search"])).summary["stage"])


def pruned_config(data_root: Path) -> dict[str, Any]:
    """4 points pruned at steps 4 and 8 of 12 (keep half each time), then 1 confirm run."""
    cfg = tiny_config(data_root, random={"method": "halton", "trials": 4, "seed": 1, "space": SPACE,
                                         "prune": {"every": 4, "keep": 0.5}},
                      confirm={"top": 1, "seeds": [10]})
    cfg["data"]["val_size"] = 0.2
    return cfg


def test_pruned_runs_leave_the_stack_and_stop_costing_steps(data_root: Path) -> None:
    from dlbench.plan import sweep
    from dlbench.training.engine import Stack

    import torch
    cfg, raw, _ = vocabulary.load(pruned_config(data_root), [])
    specs = sweep.expand(cfg, raw)
    assert len(specs) == 4 and all(s.pruning is not None for s in specs)
    stack = Stack(specs, torch.device("cpu"))
    held: dict[int, int] = {}
    results = list(stack.run(after_step=lambda st: held.__setitem__(st.step, len(st.runs))))
    # successive halving: 4 runs train to step 4, 2 to step 8, 1 to the end
    assert [held[s] for s in (3, 4, 5, 8, 9, 11)] == [4, 2, 2, 1, 1, 1]
    stopped = sorted((r.summary["steps"], r.status) for r in results)
    assert stopped == [(4, "pruned"), (4, "pruned"), (8, "pruned"), (12, "ok")]
    for r in results:  # curves so far: the last evaluation is the prune step
        assert r.metrics[-1]["step"] == r.summary["steps"] and len(r.metrics) == r.summary["steps"] // 4 + 1


def test_pruned_runs_are_stored_counted_and_never_confirm_runs(tmp_path: Path, data_root: Path) -> None:
    from dlbench.results import report as rp
    from dlbench.results.render import columns as columns_mod

    cfg = write_config(tmp_path / "c.yaml", pruned_config(data_root))
    result = dlbench("run", cfg, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    runs = by_run(tmp_path / "out" / "tiny")
    stages = sorted((s["params"]["stage"], s["status"], s["steps"]) for s in runs.values())
    assert stages == [("confirm", "ok", 12), ("search", "ok", 12), ("search", "pruned", 4), ("search", "pruned", 4),
                      ("search", "pruned", 8)]
    rep = rp.report([tmp_path / "out" / "tiny"], rp.ReportOptions(group_by=["stage"]))
    search_row = rep.summary[rep.summary["stage"] == "search"].iloc[0]
    assert (search_row["runs"], search_row["n"], search_row["pruned"]) == (4, 1, 3)  # not averaged
    header, rows = columns_mod.display_rows(rep)
    assert [r[header.index("status")] for r in rows if r[0] == "search"] == ["3 pruned"]
    rerun = dlbench("run", cfg, "--out", tmp_path / "out")  # pruned runs are finished: nothing trains again
    assert "5 of 5 runs already finished" in rerun.output
    assert by_run(tmp_path / "out" / "tiny").keys() == runs.keys()


def test_sensitivity_and_profile_figures(swept: tuple[Path, Path, dict[str, dict]], tmp_path: Path,
                                         data_root: Path) -> None:
    from dlbench.results import plots
    from dlbench.results.tuning_figures import performance_ratios
    from dlbench.results.load import time_to_target

    _, root, _ = swept
    res = plots.load(root, target=0.15)
    assert res.view["space"] == SPACE
    assert is_png(plots.PLOTS["sensitivity"].builder(res))
    ratios = performance_ratios(time_to_target(root, res.runs[res.runs["stage"] == "search"], 0.15), "case", [],
                                [k for k in res.keys if k not in ("stage", "round")])
    assert set(ratios.columns) == {"sgd", "adam"} and (ratios.min(axis=1) == 1).all()  # the fastest has tau 1
    drawn = dlbench("plot", root, "--target", "0.15")
    assert drawn.exit_code == 0 and (root / "profile.png").is_file(), drawn.output
    cfg = write_config(tmp_path / "c.yaml", staged(data_root, plots=["profile"]))
    refused = dlbench("validate", cfg)
    assert refused.exit_code == 2 and "--target" in refused.output and "Traceback" not in refused.output


def is_png(fig: Any) -> bool:
    import io

    png = io.BytesIO()
    fig.savefig(png, format="png")
    return png.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"


def test_dry_run_says_later_stages_are_planned_from_results(tmp_path: Path, data_root: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", staged(data_root))
    result = dlbench("run", cfg, "--out", tmp_path / "out", "--dry-run")
    # 2 cases x 4 points in round 1 now; round 2 (8) and confirm + defaults (2 x 2 x 2) later
    assert result.exit_code == 0 and "8 runs: 0 finished, 8 to train" in result.output, result.output
    assert "up to 16 more runs in later rounds and the confirm stage" in result.output


def test_serial_refuses_pruning_it_could_not_apply(tmp_path: Path, data_root: Path) -> None:
    """Stacks of one run have nothing to halve: refused in one line, never silently unpruned."""
    cfg = write_config(tmp_path / "c.yaml", pruned_config(data_root))
    result = dlbench("run", cfg, "--out", tmp_path / "out", "--executor", "serial")
    assert result.exit_code == 2
    assert result.error_line.startswith("error: --executor serial: trains stacks of one run, where random.prune")
    assert not (tmp_path / "out").exists()


def test_mlflow_gets_the_stage_and_round(swept: tuple[Path, Path, dict[str, dict]], tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    _, root, runs = swept
    assert dlbench("export", root, "--to", "mlflow", "-o", tmp_path / "m").exit_code == 0
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'm' / 'mlflow.db'}")
    exported = client.search_runs([client.get_experiment_by_name("tiny").experiment_id], max_results=1000)
    assert len(exported) == len(runs)
    for run in exported:
        params = runs[run.data.tags["run_id"]]["params"]
        assert run.data.params["stage"] == run.data.tags["stage"] == params["stage"]
        assert run.data.params["case"] == params["case"]
        if "round" in params and params["round"] is not None:
            assert run.data.params["round"] == str(params["round"])


def test_the_run_ends_with_the_table_report_prints(swept: tuple[Path, Path, dict[str, dict]]) -> None:
    """A staged search's run shows its confirm and defaults stages, as `dlbench report` does (it showed
    every search point: 150 rows for configs/tuning.yaml, against the report's 6)."""
    cfg, root, _ = swept
    again = dlbench("run", cfg, "--out", root.parent)  # everything finished: only the tables
    reported = dlbench("report", root)
    assert again.exit_code == 0 and reported.exit_code == 0
    note = next(line for line in reported.stdout.splitlines() if "search runs are left out" in line)
    best = next(line for line in reported.stdout.splitlines() if line.startswith("best by"))
    assert note in again.stdout and best in again.stdout
