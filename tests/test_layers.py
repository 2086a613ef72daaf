"""Layers and start-up: results/ reads folders without the front, the light commands start
without torch, and every input the CLI takes is honoured or refused in one line."""

from __future__ import annotations

import ast
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sweep_util import ONE_THREAD, REPO, dlbench, one_thread, tiny_config, write_config  # noqa: F401 - fixture

FRONT = ("torch", "optuna", "dlbench.config.schema", "dlbench.plan", "dlbench.training", "dlbench.runner",
         "dlbench.tasks")


def python(code: str, cwd: Path = REPO) -> dict[str, Any]:
    """Run code in a fresh interpreter (nothing imported yet); it prints a JSON value last."""
    env = {**os.environ, **ONE_THREAD, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def loaded_front(prelude: str, modules: tuple[str, ...] = FRONT) -> list[str]:
    """Which of `modules` (default: the front) are imported after running `prelude` in a fresh interpreter."""
    return python(prelude + f"\nimport json, sys\nprint(json.dumps([m for m in {modules!r} if m in sys.modules]))")


@pytest.mark.parametrize("module", sorted(p.stem for p in (REPO / "dlbench" / "results").glob("*.py")))
def test_results_modules_import_nothing_of_the_front(module: str) -> None:
    assert loaded_front(f"import dlbench.results.{module}") == []


def test_results_sources_name_no_front_module() -> None:
    """An import inside a function would escape the subprocess check: scan every import statement."""
    for path in (REPO / "dlbench" / "results").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert not name.startswith(FRONT), f"{path.name} imports {name}"


# the layers, front first (README "Architecture"): a module imports only modules of its own layer or below
LAYERS = [("dlbench.cli", "dlbench.__init__", "dlbench.__main__"), ("dlbench.runner", "dlbench.progress"),
          ("dlbench.monitor",), ("dlbench.tasks",), ("dlbench.execution",), ("dlbench.training",),
          ("dlbench.plan",),
          ("dlbench.config.json_schema",), ("dlbench.config.schema", "dlbench.config.vocabulary", "dlbench.plugins"),
          ("dlbench.components",),
          ("dlbench.results",),
          ("dlbench.search",),
          ("dlbench.config.keys", "dlbench.config.yaml_io", "dlbench.config.__init__"),
          ("dlbench.catalog",), ("dlbench.errors", "dlbench.__version__")]  # the version: package metadata


def _layer(module: str) -> int:
    for depth, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return depth
    if module in ("dlbench", "dlbench.config"):  # the packages themselves
        return 0 if module == "dlbench" else len(LAYERS) - 3
    raise AssertionError(f"{module} is in no layer: add it to LAYERS and the README")


def _runtime_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, module) of every dlbench import that runs (not under `if TYPE_CHECKING:`)."""
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
               and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING"
               for n in ast.walk(node)}
    out = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dlbench"):
            parent = node.module in ("dlbench", "dlbench.config", "dlbench.components", "dlbench.results",
                                     "dlbench.training", "dlbench.execution")
            out += [(node.lineno, f"{node.module}.{a.name}" if parent else node.module) for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("dlbench")]
    return out


def test_imports_point_down_the_layers() -> None:
    wrong = []
    for path in sorted((REPO / "dlbench").rglob("*.py")):
        module = ".".join(("dlbench", *path.relative_to(REPO / "dlbench").with_suffix("").parts))
        for line, imported in _runtime_imports(ast.parse(path.read_text())):
            if _layer(imported) < _layer(module):
                wrong.append(f"{path.relative_to(REPO)}:{line} imports {imported}")
    assert wrong == []


def test_errors_module_imports_nothing_of_dlbench() -> None:
    assert loaded_front("import dlbench.errors") == []
    assert python("import dlbench.errors, json, sys\n"
                  "print(json.dumps([m for m in sys.modules if m.startswith('dlbench.') and m != 'dlbench.errors']))") \
        == []


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    """A finished two-configuration sweep and a finished function-task folder under one root."""
    root = tmp_path_factory.mktemp("res")
    cfg = tiny_config(data_root, grid={"optimizer.lr": [0.05, 0.1]})
    cfg["train"]["seeds"] = [0, 1, 2]
    assert dlbench("run", write_config(root / "t.yaml", cfg), "--out", root).code == 0
    fn = {"name": "paths", "task": "function", "grid": {"optimizer.name": ["sgd", "adam"]},
          "function": {"steps": 5}}
    assert dlbench("run", write_config(root / "f.yaml", fn), "--out", root).code == 0
    acts = {"name": "acts", "task": "activations", "grid": {"model.activation": ["relu", "tanh"]},
            "model": {"hidden": [16, 16]}, "activations": {"samples": 200}}
    assert dlbench("run", write_config(root / "a.yaml", acts), "--out", root).code == 0
    return root


@pytest.mark.parametrize("command", [["--help"], ["list"], ["report", "{root}/tiny"], ["plot", "{root}/tiny"],
                                     ["report", "{root}/paths"], ["status", "{root}/tiny"], ["watch", "{root}/tiny"]])
def test_light_commands_start_without_torch(finished: Path, command: list[str]) -> None:
    args = [a.format(root=finished) for a in command]
    front = loaded_front(f"import sys\nsys.argv = ['dlbench', *{args!r}]\nfrom dlbench.cli import main\n"
                         "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code")
    assert front == []


# what the report and the figures need, and training does not: loaded after training (or never, with --no-plots)
REPORT_LIBRARIES = ("pandas", "scipy", "matplotlib")


@pytest.mark.parametrize("plots", ["--plots", "--no-plots"])
def test_training_starts_before_the_report_libraries_load(tmp_path: Path, data_root: Path, plots: str) -> None:
    """Start-up pays only for what training needs: when the first stack starts training, `dlbench run` has
    not imported pandas, scipy or matplotlib (the report and the figures import them once runs finished)."""
    path = write_config(tmp_path / "c.yaml", tiny_config(data_root, grid={"optimizer.lr": [0.05, 0.1]},
                                                         train={"steps": 4, "seeds": [0, 1], "device": "cpu"}))
    code = ("import json, sys\nfrom dlbench.training import engine\nat_start = []\ntrain = engine.Stack.run\n"
            "def spy(self, *args, **kwargs):\n"
            f"    at_start.append([m for m in {REPORT_LIBRARIES!r} if m in sys.modules])\n"
            "    return train(self, *args, **kwargs)\n"
            "engine.Stack.run = spy\n"
            f"sys.argv = ['dlbench', 'run', {str(path)!r}, '--out', {str(tmp_path)!r}, {plots!r}]\n"
            "from dlbench.cli import main\ntry:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print(json.dumps([at_start, [m for m in ('pandas', 'scipy') if m in sys.modules]]))")
    at_start, after = python(code)
    assert at_start == [[]]  # one stack, and nothing of the report loaded when it started
    assert after == ["pandas", "scipy"]  # the report was made (2 seeds: its t-intervals) after training


def test_a_worker_process_loads_no_report_library() -> None:
    """What a process-pool worker (or a Ray task) imports to train a stack: the launcher and the engine."""
    assert loaded_front("import dlbench.execution.launchers", REPORT_LIBRARIES) == []


def test_import_dlbench_is_light() -> None:
    assert loaded_front("import dlbench\nassert callable(dlbench.run) and callable(dlbench.load)") == []


def test_the_python_api_reads_results_without_the_front(finished: Path) -> None:
    """dlbench.load and everything on Results work from the folder alone, like `report` and `plot`."""
    use = (f"import dlbench\nr = dlbench.load({str(finished / 'tiny')!r})\n"
           "r.runs, r.summary, r.metrics, r.table(target=0.2), r.plot('curves'), r._repr_html_(), str(r), repr(r)\n"
           f"p = dlbench.load({str(finished / 'paths')!r})\np.table(), p.plot('paths'), p._repr_html_()")
    assert loaded_front(use) == []


def test_a_folder_holds_what_its_plots_need(finished: Path, tmp_path: Path) -> None:
    """experiment.yaml that no longer validates (code changed since) does not stop plot or report."""
    for name in ("tiny", "paths", "acts"):
        (finished / name / "experiment.yaml").write_text("model: {kind: a_model_removed_since}\n")
    for name in ("tiny", "paths", "acts"):
        assert dlbench("plot", finished / name).code == 0
        assert dlbench("report", finished / name).code == 0


def test_figures_and_tables_are_readable_by_others(finished: Path) -> None:
    files = [f for f in [*(finished / "tiny").glob("*.*"), *(finished / "paths").glob("*.*")] if f.is_file()]
    assert any(f.suffix == ".png" for f in files)
    umask = os.umask(0)
    os.umask(umask)
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~umask, f


def test_report_on_a_missing_folder_says_so_and_suggests(finished: Path) -> None:
    assert dlbench("report", finished / "tinny").error_line == \
        f"error: {finished / 'tinny'}: no such folder (did you mean 'tiny'?)"


def test_report_on_a_folder_of_experiments_lists_them(finished: Path) -> None:
    res = dlbench("report", finished)
    assert res.code == 2
    assert "holds 3 experiments: acts, paths, tiny" in res.error_line


def test_report_on_a_folder_of_one_experiment_names_it(tmp_path: Path, finished: Path) -> None:
    (tmp_path / "only").mkdir()
    shutil.copytree(finished / "tiny", tmp_path / "only" / "tiny")
    res = dlbench("report", tmp_path / "only")
    assert res.code == 2
    assert res.error_line == f"error: {tmp_path / 'only'} holds one experiment, tiny: name its folder, " \
                             f"{tmp_path / 'only' / 'tiny'}"


def test_report_refuses_an_unknown_output_suffix(finished: Path, tmp_path: Path) -> None:
    res = dlbench("report", finished / "tiny", "--output", tmp_path / "r.xlsx")
    assert res.code == 2 and "unknown suffix '.xlsx'" in res.error_line
    assert not (tmp_path / "r.xlsx").exists()


@pytest.mark.parametrize("option", [["--format", "csv"], ["--output", "r.csv"], ["--group-by", "optimizer.name"],
                                    ["--target", "0.5"], ["--losses"]])
def test_report_options_on_a_function_folder_are_refused(finished: Path, option: list[str]) -> None:
    res = dlbench("report", finished / "paths", *option)
    assert res.code == 2 and f"report {option[0]}" in res.error_line


def test_list_names_each_kind_in_plain_english() -> None:
    out = dlbench("list").out
    assert "losses" in out and "losss" not in out


def test_set_that_the_grid_overwrites_is_refused(tmp_path: Path, data_root: Path) -> None:
    cfg = tiny_config(data_root, grid={"optimizer": [{"name": "sgd", "lr": 0.1}, {"name": "adam", "lr": 0.01}]})
    path = write_config(tmp_path / "c.yaml", cfg)
    res = dlbench("run", path, "--set", "optimizer.lr=0.01", "--out", tmp_path / "r")
    assert res.code == 2 and "grid sets optimizer" in res.error_line
    assert not (tmp_path / "r").exists()
    # a key no grid entry sets is honoured
    ok = dlbench("run", path, "--set", "optimizer.weight_decay=0.001", "--dry-run", "--out", tmp_path / "r")
    assert ok.code == 0, ok.err


@pytest.mark.parametrize("optimizer", [{"name": "adam", "momentum": 0.5}, {"name": "adagrad", "betas": [0.8, 0.9]}])
def test_a_setting_the_optimizer_does_not_read_is_refused(tmp_path: Path, data_root: Path,
                                                          optimizer: dict[str, Any]) -> None:
    path = write_config(tmp_path / "c.yaml", tiny_config(data_root, optimizer=optimizer))
    key = next(k for k in optimizer if k != "name")
    line = dlbench("validate", path).error_line
    assert line.startswith(f"error: optimizer.{key}: ") and f"{optimizer['name']}' does not read it" in line


def test_dry_run_checks_and_counts_on_the_data_run_loads(tmp_path: Path, data_root: Path) -> None:
    cfg = tiny_config(data_root, train={"epochs": 2, "batch_size": 50, "seeds": [0], "device": "cpu"})
    path = write_config(tmp_path / "c.yaml", cfg)
    res = dlbench("run", path, "--dry-run", "--out", tmp_path / "r")
    assert res.code == 0
    assert "│ 12 " in res.out  # 300 samples - 10 % validation = 270 -> 6 batches of 50 per epoch, 2 epochs
    too_big = dlbench("run", path, "--dry-run", "--set", "data.train_size=10000000", "--out", tmp_path / "r")
    assert too_big.code == 2 and too_big.error_line.startswith("error: data.train_size: 10000000")


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_batch_larger_than_the_data_is_refused(tmp_path: Path, data_root: Path, command: str) -> None:
    path = write_config(tmp_path / "c.yaml", tiny_config(data_root))
    extra = ["--dry-run", "--out", tmp_path / "r"] if command == "run" else []
    line = dlbench(command, path, "--set", "train.batch_size=5000", *extra).error_line
    assert line.startswith("error: train.batch_size: 5000 is invalid: larger than the 270 training samples")


def test_validate_refuses_a_device_this_machine_lacks(tmp_path: Path, data_root: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same on a machine with a GPU
    path = write_config(tmp_path / "c.yaml", tiny_config(data_root))
    assert "CUDA is not available" in dlbench("validate", path, "--set", "train.device=cuda").error_line


def test_an_unreachable_ray_address_is_one_line(tmp_path: Path, data_root: Path) -> None:
    import socket

    with socket.socket() as s:  # a port on this machine that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = write_config(tmp_path / "c.yaml", tiny_config(data_root))
    res = dlbench("run", path, "--executor", "ray", "--address", f"127.0.0.1:{port}", "--out", tmp_path / "r")
    assert res.code == 2 and f"no Ray cluster answers at 127.0.0.1:{port}" in res.error_line
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("width", [100, 80])
def test_the_report_table_fits_the_terminal_without_cutting(finished: Path, width: int) -> None:
    import io

    from rich.console import Console

    from dlbench.results import report
    from dlbench.results.render import terminal as terminal_mod

    rep = report.report([finished / "tiny"], report.ReportOptions(target=0.2, losses=True))
    console = Console(width=width, file=io.StringIO(), color_system=None)
    console.print(terminal_mod.rich_table(rep, "tiny", width), crop=False)
    text = console.file.getvalue()
    assert max(map(len, text.splitlines())) <= width
    assert "vs best" in text and f"left out to fit {width} columns" in text and "--format csv" in text
    # the asked-for columns (losses, time to target) and the gap and test accuracy are all there
    for header in ("gap", "test", "loss", "steps", "seconds", "reached"):
        assert header in text, header
    assert "…" not in text
    assert terminal_mod.rich_table(rep, "tiny", 10**4).columns[-1].header == "seconds to 0.2"  # wide: all columns


def test_intervals_stay_within_what_is_possible(finished: Path) -> None:
    from dlbench.results import report

    summary = report.report([finished / "tiny"]).summary
    for metric in ("train_acc", "val_acc", "test_acc"):
        assert (summary[f"{metric}_ci_low"] >= 0).all() and (summary[f"{metric}_ci_high"] <= 1).all()
    near_one = report.describe([0.99, 1.0, 0.9], report.possible("train_acc"))
    assert near_one["ci_high"] == 1.0 and near_one["mean"] + 1.96 * near_one["std"] > 1.0
    steps = report.describe([0, 0, 400], report.possible("ttt_step"))
    assert steps["ci_low"] == 0.0


def test_random_search_values_print_with_four_significant_digits(tmp_path: Path, data_root: Path) -> None:
    import re

    cfg = tiny_config(data_root, random={"trials": 3, "space": {"optimizer.lr": {"log_uniform": [0.001, 0.1]}}})
    res = dlbench("run", write_config(tmp_path / "c.yaml", cfg), "--dry-run", "--out", tmp_path / "r")
    assert res.code == 0, res.err
    values = re.findall(r"│ (0\.\d+|\d\.\d+e-\d+) +│", res.out)
    assert len(values) == 3 and all(len(re.sub(r"^0\.0*|e-\d+$|\.", "", v)) <= 4 for v in values), values


def test_gap_legend_covers_no_bar_or_label(finished: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from dlbench.results.plots import PLOTS, load

    fig = PLOTS["gap"].builder(load(finished / "tiny"))
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    (ax,) = fig.axes
    assert not fig.legends[0].get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))


def test_activation_histograms_have_ticks_and_grey_edge_bins(finished: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from dlbench.results.plots import PLOTS, load

    fig = PLOTS["histograms"].builder(load(finished / "acts"))
    FigureCanvasAgg(fig)
    fig.canvas.draw()
    for ax in fig.axes:
        ticks = [t.get_text() for t in ax.get_xticklabels()]
        assert len(ticks) >= 2 and all(ticks), ticks
        left, right = ax.get_xlim()
        assert left < right
    assert "grey edge bins also hold the values beyond the range" in fig.get_suptitle()


def test_a_new_run_leaves_the_engine_checkpoints_alone(finished: Path) -> None:
    """The store cleans up hidden leftovers of killed runs in runs/, never the engine's checkpoints."""
    checkpoint = finished / "tiny" / ".checkpoints" / "stack-0.pt"
    checkpoint.parent.mkdir(exist_ok=True)
    checkpoint.write_bytes(b"state")
    (finished / "tiny" / "runs" / ".half-written").mkdir()
    assert dlbench("run", finished / "t.yaml", "--out", finished).code == 0
    # kept: the engine sets an unreadable checkpoint aside (.bad) with a warning, nothing deletes it
    kept = [p for p in (checkpoint, checkpoint.with_name(checkpoint.name + ".bad")) if p.exists()]
    assert [p.read_bytes() for p in kept] == [b"state"]
    assert not (finished / "tiny" / "runs" / ".half-written").exists()


def test_plot_draws_only_the_named_figures(finished: Path) -> None:
    folder = finished / "tiny"
    for png in folder.glob("*.png"):
        png.unlink()
    res = dlbench("plot", folder, "gap")
    assert res.code == 0 and sorted(p.name for p in folder.glob("*.png")) == ["gap.png"]
    assert "unknown figure" in dlbench("plot", folder, "nope").error_line
    assert "plot profile: it needs --target" in dlbench("plot", folder, "profile").error_line


def _module_of(name: str, modules: set[str]) -> str | None:
    """The dlbench module an import names (`dlbench.config.schema.Config` -> `dlbench.config.schema`)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def test_no_import_cycles_type_checking_imports_included() -> None:
    """Modules import in one direction only: a cycle through `if TYPE_CHECKING:` or a function-level
    import is still a cycle of meaning (the layers above are what breaks them)."""
    import networkx as nx

    files = {".".join(("dlbench", *p.relative_to(REPO / "dlbench").with_suffix("").parts)).removesuffix(".__init__"): p
             for p in (REPO / "dlbench").rglob("*.py")}
    graph = nx.DiGraph()
    for module, path in files.items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [f"{node.module}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom) and node.module \
                else []
            for name in names:
                target = _module_of(name, set(files)) if name.startswith("dlbench") else None
                if target and target != module and target not in module and module not in ("dlbench",):
                    graph.add_edge(module, target)
    cycles = sorted(" -> ".join(c) for c in nx.simple_cycles(graph))
    assert cycles == []


def test_no_test_module_shadows_a_shared_fixture() -> None:
    """A module's own `data_root` (say) would silently replace conftest's session-wide one."""
    tests = Path(__file__).parent

    def fixtures(path: Path) -> set[str]:
        tree = ast.parse(path.read_text())
        return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and any(
            "fixture" in ast.unparse(d) for d in node.decorator_list)}

    shared = fixtures(tests / "conftest.py")
    for module in sorted(tests.glob("test_*.py")):
        assert not fixtures(module) & shared, module.name


def test_one_public_class_per_name_in_results() -> None:
    """dlbench.Results is the Python API's; the figures' view of a folder has a name of its own."""
    import importlib
    import inspect
    import pkgutil

    import dlbench.results

    owners: dict[str, set[str]] = {}
    for info in pkgutil.walk_packages(dlbench.results.__path__, "dlbench.results."):
        if info.name.endswith(("export", "html")):  # optional viewers' packages; no classes of this kind
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if inspect.isclass(value) and value.__module__ == info.name and not name.startswith("_"):
                owners.setdefault(name, set()).add(info.name)
    assert {name: where for name, where in owners.items() if len(where) > 1} == {}
