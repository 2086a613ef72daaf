"""The users' own components (dlbench.plugins): each kind end to end, a torch.optim plugin against
the built-in rule in one stack, its state through a checkpoint, run ids that follow the source,
and every bad plugin refused in one line before anything trains."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from sweep_util import dlbench, metrics_without_time, run_dirs, summary, tiny_config

from dlbench import plugins
from dlbench.catalog import CATALOG


@pytest.fixture(autouse=True)
def fresh_plugins() -> Any:
    yield
    plugins.unload()


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


SGD_PLUGIN = """
    import torch
    from dlbench import register

    register.optimizer("torch_sgd")(torch.optim.SGD)   # fields from its constructor


    @register.optimizer("plain_sgd", fields={"lr": 0.1})
    class PlainSGD(torch.optim.Optimizer):
        '''SGD written as a torch.optim.Optimizer: w -= lr g'''

        def __init__(self, params, lr=0.1):
            super().__init__(params, {"lr": lr})

        @torch.no_grad()
        def step(self, closure=None):
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.add_(p.grad, alpha=-group["lr"])
"""


def _config(tmp_path: Path, data_root: Path, **sections: Any) -> Path:
    cfg = tiny_config(data_root, **sections)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _metrics(root: Path) -> dict[str, list[dict[str, str]]]:
    """optimizer name (+ case) -> metrics rows, every column but the time."""
    out = {}
    for d in run_dirs(root).values():
        cfg = yaml.safe_load((d / "config.yaml").read_text())
        out[cfg["optimizer"]["name"]] = metrics_without_time(d)
    return out


def _close(a: list[dict[str, str]], b: list[dict[str, str]], rel: float = 1e-4) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for k in x:
            if k in ("lr",):
                continue
            assert float(x[k]) == pytest.approx(float(y[k]), rel=rel, abs=1e-6, nan_ok=True), (k, x[k], y[k])


def test_torch_optimizer_plugins_match_the_built_in_sgd_in_one_stack(tmp_path: Path, data_root: Path) -> None:
    """A plain SGD and torch.optim.SGD itself (momentum, weight decay, cosine schedule, clipping) as plugins
    give the built-in sgd's numbers to float rounding, trained in the same stack."""
    write(tmp_path / "mine.py", SGD_PLUGIN)
    base = {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}
    cfg = _config(tmp_path, data_root, plugins=["mine.py"], schedule={"name": "cosine"},
                  grid={"optimizer": [{"name": "sgd", **base}, {"name": "torch_sgd", **base}]})
    res = dlbench("run", cfg, "--out", tmp_path / "out", "--no-plots")
    assert res.code == 0, res.output
    runs = _metrics(tmp_path / "out" / "tiny")
    _close(runs["sgd"], runs["torch_sgd"])

    cfg = _config(tmp_path, data_root, plugins=["mine.py"], name="plain", optimizer={"name": "sgd", "lr": 0.1},
                  grid={"optimizer.name": ["sgd", "plain_sgd"]})
    res = dlbench("run", cfg, "--out", tmp_path / "out", "--no-plots")
    assert res.code == 0, res.output
    runs = _metrics(tmp_path / "out" / "plain")
    _close(runs["sgd"], runs["plain_sgd"])


@pytest.mark.parametrize("optimizer", ["torch.optim.Adam", "pytorch_optimizer.AdaBelief"])
def test_torch_optimizer_state_survives_a_checkpoint(optimizer: str, tmp_path: Path) -> None:
    """Adam (a step tensor per parameter, moment tensors) and AdaBelief (a step count in its param groups)
    continued from state_dict / load_state_dict step exactly as the uninterrupted stack, and each run
    exactly as the optimizer alone on that run's weights."""
    from dlbench.components.optimizers import StackedOptimizer
    from dlbench.config.schema import section

    module, _, cls_name = optimizer.rpartition(".")
    cls = getattr(pytest.importorskip(module), cls_name)
    write(tmp_path / "opt.py", f"""
        import {module}
        from dlbench import register

        register.optimizer("mine")({optimizer})
    """)
    plugins.load([str(tmp_path / "opt.py")])
    configs = [section("optimizer", name="mine", lr=lr, weight_decay=wd)
               for lr, wd in ((0.01, 0.0), (0.02, 0.1), (0.03, 0.0))]
    gen = torch.Generator().manual_seed(0)
    start = [torch.randn(3, 4, 5, generator=gen), torch.randn(3, 5, generator=gen)]
    grads = [[torch.randn(3, 4, 5, generator=gen), torch.randn(3, 5, generator=gen)] for _ in range(6)]

    def stepped(params: list[torch.Tensor], opt: StackedOptimizer, at: range) -> None:
        for k in at:
            for p, g in zip(params, grads[k]):
                p.grad = g[: len(p)].clone()
            opt.step()

    whole = [p.clone().requires_grad_() for p in start]
    opt = StackedOptimizer(whole, configs)
    stepped(whole, opt, range(6))

    part = [p.clone().requires_grad_() for p in start]
    first = StackedOptimizer(part, configs)
    stepped(part, first, range(3))
    saved = first.state_dict()
    again = StackedOptimizer(part, configs)
    again.load_state_dict(saved)
    stepped(part, again, range(3, 6))
    for a, b in zip(whole, part):
        torch.testing.assert_close(a, b, rtol=0, atol=0)

    # each run against torch.optim.Adam alone
    for r, cfg in enumerate(configs):
        alone = [p[r].clone().requires_grad_() for p in start]
        ref = cls([{"params": alone[:1], "weight_decay": cfg.weight_decay},
                   {"params": alone[1:], "weight_decay": 0.0}], lr=cfg.lr)
        for k in range(6):
            for p, g in zip(alone, grads[k]):
                p.grad = g[r].clone()
            ref.step()
        for a, b in zip(alone, whole):
            torch.testing.assert_close(a, b[r].detach(), rtol=0, atol=0)


PARTS_PLUGIN = """
    import torch
    from torch import nn
    from dlbench import register


    class Net(nn.Module):
        def __init__(self, inputs, width, blocks, classes):
            super().__init__()
            self.inp = nn.Linear(inputs, width)
            self.blocks = nn.ModuleList(nn.Linear(width, width) for _ in range(blocks))
            self.out = nn.Linear(width, classes)

        def forward(self, x):
            h = torch.relu(self.inp(x))
            for b in self.blocks:
                h = h + torch.relu(b(h))
            return self.out(h)


    @register.model("tiny_resnet", fields={"width": 8, "blocks": 1})
    def tiny_resnet(input_shape, num_classes, width, blocks):
        '''a small residual MLP'''
        return Net(input_shape[0], width, blocks, num_classes)


    @register.dataset("rings", fields={"n": 300})
    def rings(root, seed, n):
        '''two noisy rings'''
        g = torch.Generator().manual_seed(seed)
        def split(m):
            y = torch.randint(0, 2, (m,), generator=g)
            angle = torch.rand(m, generator=g) * 6.283
            radius = 1.0 + y.float() + 0.1 * torch.randn(m, generator=g)
            return torch.stack([radius * angle.cos(), radius * angle.sin()], 1), y
        x_train, y_train = split(n)
        x_test, y_test = split(n // 2)
        return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


    @register.schedule("halving", fields={"every": 5})
    def halving(step, total, every):
        return 0.5 ** (step // every)


    @register.init("scaled_normal", fields={"gain": 0.5})
    def scaled_normal(weight, gain):
        torch.nn.init.normal_(weight, 0.0, gain / weight.shape[1] ** 0.5)
"""


def test_model_dataset_schedule_and_init_plugins_train_end_to_end(tmp_path: Path) -> None:
    write(tmp_path / "parts.py", PARTS_PLUGIN)
    cfg = {"name": "parts", "plugins": ["parts.py"],
           "data": {"dataset": "rings", "n": 400, "val_size": 0.25},
           "model": {"kind": "tiny_resnet", "width": 16},
           "init": {"scheme": "scaled_normal", "gain": 1.0},
           "optimizer": {"name": "sgd", "lr": 0.2},
           "schedule": {"name": "halving", "every": 10},
           "train": {"steps": 20, "batch_size": 50, "eval_every": 10, "seeds": [0, 1], "device": "cpu"}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = dlbench("run", path, "--out", tmp_path / "out", "--no-plots")
    assert res.code == 0, res.output
    runs = list(run_dirs(tmp_path / "out" / "parts").values())
    assert len(runs) == 2
    saved = yaml.safe_load((runs[0] / "config.yaml").read_text())
    assert saved["data"]["n"] == 400 and saved["model"]["width"] == 16 and saved["model"]["blocks"] == 1
    rows = metrics_without_time(runs[0])
    assert float(rows[-1]["lr"]) == pytest.approx(0.2 * 0.5 ** (19 // 10))  # the plugin's schedule
    assert summary(runs[0])["status"] == "ok"
    # 300 train + val of 400 samples: the section's val_size applied to the plugin's tensors
    facts = CATALOG["dataset"].record("rings").facts
    assert facts["shape"] == (2,) and facts["classes"] == 2


def test_run_ids_follow_the_plugin_source(tmp_path: Path, data_root: Path) -> None:
    """The same source reuses finished runs; an edited one trains them again; the folder keeps each source."""
    plugin = write(tmp_path / "mine.py", SGD_PLUGIN)
    cfg = _config(tmp_path, data_root, plugins=["mine.py"], optimizer={"name": "plain_sgd", "lr": 0.1})
    out = tmp_path / "out"
    assert dlbench("run", cfg, "--out", out, "--no-plots").code == 0
    first = set(run_dirs(out / "tiny"))
    res = dlbench("run", cfg, "--out", out, "--no-plots")
    assert "already finished" in res.output and set(run_dirs(out / "tiny")) == first
    plugin.write_text(plugin.read_text() + "\n# edited\n")
    plugins.unload()
    assert dlbench("run", cfg, "--out", out, "--no-plots").code == 0
    assert len(set(run_dirs(out / "tiny")) - first) == 1
    assert len(list((out / "tiny" / "plugins").glob("*-mine.py"))) == 2
    # the report keeps the two versions apart: a row each, and says so
    report = dlbench("report", out / "tiny", "--format", "csv")
    assert report.code == 0, report.err
    rows = list(csv.DictReader(io.StringIO(report.out)))
    versions = sorted(r["plugin version"] for r in rows)
    assert len(rows) == 2 and versions[0] != versions[1] and all(v.startswith("plain_sgd ") for v in versions)
    assert all(r["n"] == "1" for r in rows)
    assert "plugin plain_sgd: optimizer from mine.py in 2 versions, in rows of their own (plugin version)" in (
        _one_line(dlbench("report", out / "tiny").out))
    # and the figures: a line per version
    from dlbench.results import plots as plots_mod

    assert sorted(plots_mod.load(out / "tiny").order) == versions


def test_plugins_on_the_processes_launcher(tmp_path: Path, data_root: Path) -> None:
    write(tmp_path / "mine.py", SGD_PLUGIN)
    cfg = _config(tmp_path, data_root, grid={"optimizer.name": ["sgd", "plain_sgd"]})
    res = dlbench("run", cfg, "--plugin", tmp_path / "mine.py", "--out", tmp_path / "out", "--no-plots",
                  "--executor", "processes", "--workers", "2")
    assert res.code == 0, res.output
    runs = _metrics(tmp_path / "out" / "tiny")
    _close(runs["sgd"], runs["plain_sgd"])


def test_list_and_schema_show_plugin_components(tmp_path: Path) -> None:
    plugin = write(tmp_path / "mine.py", SGD_PLUGIN)
    res = dlbench("list", "optimizer", "--plugin", plugin)
    assert res.code == 0 and "plain_sgd" in res.out and str(plugin) in res.out and "momentum" in res.out
    res = dlbench("schema", "--plugin", plugin)
    assert res.code == 0 and "optimizer.plain_sgd" in json.loads(res.out)["$defs"]


BAD = {
    "missing": (None, "no such file"),
    "syntax": ("x = (\n", "bad.py:1: SyntaxError"),
    "import": ("import torch\nimport no_such_package_here\n", "bad.py:2: ModuleNotFoundError"),
    "raises": ("from dlbench import register\n\nraise RuntimeError('boom')\n", "bad.py:3: RuntimeError: boom"),
    "taken": ("import torch\nfrom dlbench import register\nregister.optimizer('adam')(torch.optim.Adam)\n",
              "bad.py:3: ValueError: optimizer 'adam' is already taken (built in)"),
    "shadow": ("import torch\nfrom dlbench import register\n"
               "register.optimizer('mine', fields={'lr': 0.1, 'clip_norm': 1.0})(torch.optim.SGD)\n",
               "would shadow optimizer.clip_norm"),
    "signature": ("from dlbench import register\n\n@register.model('m', fields={'width': 4})\n"
                  "def m(input_shape):\n    return None\n", "bad.py:3: TypeError: model 'm'"),
    "closure": ("import torch\nfrom dlbench import register\nregister.optimizer('lbfgs')(torch.optim.LBFGS)\n",
                "LBFGS.step needs a closure"),
    "no_lr": ("import torch\nfrom dlbench import register\n\n@register.optimizer('x', fields={'rate': 0.1})\n"
              "class X(torch.optim.SGD):\n    pass\n", "needs an 'lr' field"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_plugins_are_one_line_before_anything_trains(case: str, tmp_path: Path, data_root: Path) -> None:
    source, expected = BAD[case]
    if source is not None:
        (tmp_path / "bad.py").write_text(source)
    cfg = _config(tmp_path, data_root, plugins=["bad.py"])
    for command in ("validate", "run"):
        res = dlbench(command, cfg, "--out", tmp_path / "out") if command == "run" else dlbench(command, cfg)
        assert res.code == 2, res.output
        line = res.error_line
        assert "plugin 'bad.py'" in line and expected in line, line
    assert not (tmp_path / "out").exists()


def test_a_name_two_plugins_give_is_refused(tmp_path: Path, data_root: Path) -> None:
    write(tmp_path / "a.py", SGD_PLUGIN)
    write(tmp_path / "b.py", SGD_PLUGIN)
    cfg = _config(tmp_path, data_root, plugins=["a.py", "b.py"])
    line = dlbench("validate", cfg).error_line
    assert "plugin 'b.py'" in line and "'torch_sgd' is already taken" in line and "a.py" in line


def test_plugin_datasets_are_checked(tmp_path: Path) -> None:
    write(tmp_path / "data.py", """
        import torch
        from dlbench import register

        @register.dataset("broken")
        def broken(root, seed):
            return {"x_train": torch.zeros(10, 2, dtype=torch.long), "y_train": torch.zeros(10)}

        @register.dataset("float_labels")
        def float_labels(root, seed):
            x, y = torch.randn(20, 3), (torch.arange(20) % 2).float()
            return {"x_train": x, "y_train": y, "x_test": x, "y_test": y}
    """)
    cfg = tmp_path / "c.yaml"
    # the line says what is wrong with the data, never starting with the whole config
    for name, problem in (("broken", "its factory must return a dict with x_train, y_train, x_test, y_test"),
                          ("float_labels", "y_train has dtype torch.float32 and shape (20,); labels are integers")):
        cfg.write_text(yaml.safe_dump({"plugins": ["data.py"], "data": {"dataset": name}}))
        line = dlbench("validate", cfg).error_line
        assert line.startswith(f"error: dataset {name!r}: {problem}"), line


def test_a_plugin_dataset_with_nan_inputs_is_refused_when_it_loads(tmp_path: Path) -> None:
    write(tmp_path / "data.py", """
        import torch
        from dlbench import register

        @register.dataset("holey")
        def holey(root, seed):
            x = torch.randn(20, 3)
            x[7, 1] = float("nan")
            x[9, 0] = float("inf")
            y = torch.arange(20) % 2
            return {"x_train": x, "y_train": y, "x_test": torch.randn(6, 3), "y_test": torch.arange(6) % 2}
    """)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"plugins": ["data.py"], "data": {"dataset": "holey"}}))
    for command in ("validate", "run"):
        res = dlbench(command, cfg, "--out", tmp_path / "out") if command == "run" else dlbench(command, cfg)
        assert res.code == 2, res.output
        assert res.error_line.endswith("dataset 'holey': x_train has 2 sample(s) with NaN or infinite values (the "
                                       "first at index 7); inputs must be finite"), res.error_line
    assert not list((tmp_path / "out").rglob("summary.json"))  # nothing trained


def test_plugins_on_ray_workers_through_the_job(tmp_path: Path, data_root: Path) -> None:
    """Ray tasks get the plugin's source with the job: the worker never reads the file."""
    ray = pytest.importorskip("ray")
    write(tmp_path / "mine.py", SGD_PLUGIN)
    cfg = _config(tmp_path, data_root, plugins=["mine.py"], grid={"optimizer.name": ["sgd", "plain_sgd"]})
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        res = dlbench("run", cfg, "--out", tmp_path / "out", "--no-plots", "--executor", "ray", "--workers", "2")
    finally:
        ray.shutdown()
    assert res.code == 0, res.output
    runs = _metrics(tmp_path / "out" / "tiny")
    _close(runs["sgd"], runs["plain_sgd"])


EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "plugins"


def test_the_shipped_plugin_examples_validate_and_their_schema_is_current() -> None:
    """examples/plugins: each config validates with its plugins, and schema.json (their modeline's,
    `make schema`) is the schema with the three plugins."""
    pytest.importorskip("pytorch_optimizer")
    pytest.importorskip("sklearn")
    for config in sorted(EXAMPLES.glob("*.yaml")):
        res = dlbench("validate", config)
        assert res.code == 0, res.output
        assert config.read_text().splitlines()[0] == "# yaml-language-server: $schema=schema.json"
    res = dlbench("schema", *[a for name in ("adabelief", "digits", "tiny_resnet")
                              for a in ("--plugin", EXAMPLES / f"{name}.py")])
    assert json.loads(res.out) == json.loads((EXAMPLES / "schema.json").read_text())


def test_a_model_with_the_wrong_output_is_refused_before_training(tmp_path: Path, data_root: Path) -> None:
    write(tmp_path / "model.py", """
        import torch
        from dlbench import register

        @register.model("wide")
        def wide(input_shape, num_classes):
            return torch.nn.Linear(input_shape[0], num_classes + 1)

        @register.model("broken")
        def broken(input_shape, num_classes):
            return torch.nn.Linear(input_shape[0] + 1, num_classes)
    """)
    for kind, expected in (("wide", "its output for a batch of 2 samples is (2, 11), not (2, 10) logits"),
                           ("broken", "on samples of shape (40,): RuntimeError")):
        cfg = _config(tmp_path, data_root, plugins=["model.py"], model={"kind": kind})
        res = dlbench("run", cfg, "--out", tmp_path / "out")
        assert res.code == 2 and f"model {kind!r}" in res.error_line and expected in res.error_line, res.output
        assert not (tmp_path / "out").exists()


def test_installed_packages_offer_plugins_through_the_entry_point_group(
        tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata

    write(tmp_path / "someones_package.py", SGD_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    point = importlib.metadata.EntryPoint("mine", "someones_package", plugins.ENTRY_POINTS)
    real = importlib.metadata.entry_points  # other groups (torch's, imported lazily) as they are
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda **select: [point] if select.get("group") == plugins.ENTRY_POINTS else real(**select))
    monkeypatch.setattr(plugins, "_entry_points_loaded", False)
    cfg = _config(tmp_path, data_root, optimizer={"name": "plain_sgd"})
    res = dlbench("validate", cfg)
    assert res.code == 0, res.output
    assert CATALOG["optimizer"].record("plain_sgd").source.endswith("someones_package.py")


# processes: what a worker tells comes back with its results
@pytest.mark.parametrize("executor", ["local", "processes"])
def test_a_plugin_that_raises_while_training_fails_only_its_runs(tmp_path: Path, data_root: Path,
                                                                 executor: str) -> None:
    write(tmp_path / "flaky.py", """
        import torch
        from dlbench import register

        @register.optimizer("flaky", fields={"lr": 0.1})
        class Flaky(torch.optim.SGD):
            def step(self, closure=None):
                raise FloatingPointError("the plugin gave up")
    """)
    train = {"steps": 12, "batch_size": 50, "eval_every": 4, "seeds": [0, 1], "device": "cpu"}
    cfg = _config(tmp_path, data_root, plugins=["flaky.py"], grid={"optimizer.name": ["sgd", "flaky"]}, train=train)
    workers = ["--workers", "1"] if executor == "processes" else []
    res = dlbench("run", cfg, "--out", tmp_path / "out", "--no-plots", "--executor", executor, *workers)
    assert res.code == 1, res.output
    status = {(yaml.safe_load((d / "config.yaml").read_text())["optimizer"]["name"], summary(d)["seed"]): summary(d)
              for d in run_dirs(tmp_path / "out" / "tiny").values()}
    assert {s["status"] for (name, _), s in status.items() if name == "sgd"} == {"ok"}
    assert all(s["status"] == "failed" and "the plugin gave up" in s["error"]
               for (name, _), s in status.items() if name == "flaky")
    # the user is told once, in dlbench's words, on the progress's console: no warning, no source path
    told = ("a stack of 4 runs stopped (FloatingPointError: the plugin gave up); training its 4 unfinished runs "
            "one by one")
    assert res.err.count("stopped") == 1 and told in res.err, res.err
    assert "Warning" not in res.output and ".py:" not in res.output, res.output


def test_registering_from_python_updates_the_schema_at_once() -> None:
    """A notebook cell registers a schedule; the schema knows it without reloading anything."""
    from dlbench import register
    from dlbench.config import schema

    @register.schedule("notebook_halving", fields={"every": 3})
    def halving(step: int, total: int, every: int) -> float:
        return 0.5 ** (step // every)

    try:
        cfg = schema.section("schedule", name="notebook_halving", every=4)
        assert cfg.every == 4
        assert CATALOG["schedule"].record("notebook_halving").source.endswith("test_plugins.py")
        with pytest.raises(plugins.ConfigError, match="does not read it"):
            schema.section("schedule", name="notebook_halving", gamma=0.5)
    finally:
        CATALOG["schedule"].forget("notebook_halving")


def test_plugin_fields_are_swept_searched_and_refused_like_built_in_ones(tmp_path: Path, data_root: Path) -> None:
    write(tmp_path / "mine.py", SGD_PLUGIN)
    cfg = _config(tmp_path, data_root, plugins=["mine.py"], optimizer={"name": "torch_sgd", "lr": 0.1},
                  cases={"light": {"optimizer.momentum": 0.5}, "heavy": {"optimizer.momentum": 0.9}},
                  random={"trials": 2, "space": {"optimizer.dampening": {"uniform": [0.0, 0.5]}}},
                  confirm={"top": 1, "seeds": [5]})
    res = dlbench("validate", cfg)
    assert res.code == 0, res.output
    bad = _config(tmp_path, data_root, plugins=["mine.py"], optimizer={"name": "plain_sgd", "momentum": 0.9})
    line = dlbench("validate", bad).error_line
    assert "optimizer.momentum" in line and "optimizer 'plain_sgd' does not read it" in line, line


def test_settings_a_plugin_optimizer_refuses_are_one_line(tmp_path: Path, data_root: Path) -> None:
    write(tmp_path / "mine.py", SGD_PLUGIN)
    cfg = _config(tmp_path, data_root, plugins=["mine.py"], optimizer={"name": "torch_sgd", "nesterov": True})
    res = dlbench("run", cfg, "--out", tmp_path / "out")
    assert res.code == 2 and "optimizer 'torch_sgd' (SGD) refuses these settings: ValueError: Nesterov momentum " \
        "requires a momentum and zero dampening" in res.error_line, res.output
    assert not (tmp_path / "out").exists()


def _one_line(text: str) -> str:
    """Text as words separated by one space: a caption wraps to its table's width."""
    return " ".join(text.split())


def test_the_report_and_html_page_name_where_each_plugin_component_came_from(tmp_path: Path, data_root: Path) -> None:
    import hashlib
    import html
    import io

    from rich.console import Console

    from dlbench.results import report as report_mod
    from dlbench.results.render import terminal as terminal_mod

    plugin = write(tmp_path / "mine.py", SGD_PLUGIN)
    digest = hashlib.sha256(plugin.read_text().encode()).hexdigest()
    cfg = _config(tmp_path, data_root, plugins=["mine.py"], grid={"optimizer.name": ["sgd", "plain_sgd"]})
    folder = tmp_path / "out" / "tiny"
    ran = dlbench("run", cfg, "--out", tmp_path / "out", "--no-plots")
    assert ran.code == 0, ran.output
    plugins.unload()  # the report reads the folder alone: the plugin is not loaded, nor imported
    line = f"plugin plain_sgd: optimizer from mine.py (sha256 {digest[:8]}; kept as plugins/{digest[:12]}-mine.py)."
    assert line in _one_line(ran.out), ran.out  # the run ends with what the report prints
    assert (folder / "plugins" / f"{digest[:12]}-mine.py").read_text() == plugin.read_text()
    res = dlbench("report", folder)
    assert res.code == 0 and line in _one_line(res.out), res.out
    assert "torch_sgd" not in res.out and "plugin sgd" not in res.out  # only what the compared rows use
    assert "plain_sgd: optimizer from mine.py" in _one_line(dlbench("report", folder, "-f", "markdown").out)
    assert r"plain\_sgd: optimizer from mine.py" in _one_line(dlbench("report", folder, "-f", "latex").out)
    assert json.loads(dlbench("report", folder, "-f", "json").out)["plugins"] == [line]
    assert dlbench("report", folder, "-o", tmp_path / "page.html").code == 0
    page = (tmp_path / "page.html").read_text()
    assert line in page and html.escape(plugin.read_text()) in page  # the page carries the source kept
    rep = report_mod.report([folder])
    for width in (80, 100):
        console = Console(width=width, file=io.StringIO(), color_system=None)
        console.print(terminal_mod.rich_table(rep, "tiny", width), crop=False)
        assert max(map(len, console.file.getvalue().splitlines())) <= width
        assert line in _one_line(console.file.getvalue())
    # rows without the plugin: no line
    assert "plugin" not in _one_line(dlbench("report", folder, "--where", "optimizer.name=sgd").out)
    # a folder written before runs recorded their plugins still reads, and names the sources it keeps
    for d in run_dirs(folder).values():
        data = summary(d)
        data.pop("plugins", None)
        (d / "summary.json").write_text(json.dumps(data))
    res = dlbench("report", folder)
    assert res.code == 0 and f"tiny/plugins/ keeps the plugin sources {digest[:12]}-mine.py" in _one_line(res.out)


def _interrupted_plugin_sweep(tmp_path: Path) -> tuple[Path, list[str], Path]:
    """Optimizer, model and dataset plugins: a reference sweep, then the same sweep stopped at step 20 by
    Ctrl-C, which checkpoints its stack; the plugins are then forgotten (as in a new process).
    (config, the run ids, the checkpoint)."""
    import os
    import signal

    from dlbench import runner
    from dlbench.training import checkpoint

    write(tmp_path / "parts.py", PARTS_PLUGIN)
    write(tmp_path / "mine.py", SGD_PLUGIN)
    cfg = {"name": "parts", "plugins": ["parts.py", "mine.py"],
           "data": {"dataset": "rings", "n": 200, "val_size": 0.25},
           "model": {"kind": "tiny_resnet", "width": 8}, "optimizer": {"name": "plain_sgd", "lr": 0.2},
           "train": {"steps": 40, "batch_size": 50, "eval_every": 5, "seeds": [0, 1], "device": "cpu",
                     "checkpoint_seconds": None}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert dlbench("run", path, "--out", tmp_path / "reference", "--no-plots").code == 0
    plugins.unload()

    plan = runner.plan(path, [], out=tmp_path / "out")
    plan.store.root.mkdir(parents=True)
    launch = plan.launcher(plan.specs, torch.device("cpu"), lambda stack: lambda step, total, training: (
        step == 20 and os.kill(os.getpid(), signal.SIGINT)), plan.options)
    with pytest.raises(KeyboardInterrupt):
        list(launch)
    [saved] = list((plan.store.root / checkpoint.FOLDER).glob("*.pt"))
    plugins.unload()
    return path, sorted(s.run_id for s in plan.specs), saved


@pytest.mark.parametrize("executor", ["local", "processes", "ray"])
def test_a_plugin_sweep_resumes_from_its_checkpoint_bit_for_bit(executor: str, tmp_path: Path) -> None:
    """The interrupted plugin sweep run again on each launcher reads the checkpoint with the experiment's
    vocabulary, says which runs resume from which step, and ends with the metrics of an uninterrupted sweep."""
    if executor == "ray":
        pytest.importorskip("ray")
    path, ids, saved = _interrupted_plugin_sweep(tmp_path)
    res = dlbench("run", path, "--out", tmp_path / "out", "--no-plots", "--executor", executor,
                  *(["--workers", "1"] if executor != "local" else []))
    assert res.code == 0, res.output
    # one line per resumed stack, said once (the progress bars do not repeat it): its runs, step 20 of 40
    said = [line for line in res.output.splitlines() if re.search(r"\bresum(e|ing)\b", line)]
    assert said == [f"resuming 2 runs from step 20 of 40 (checkpoint {saved.name}): {', '.join(ids)}"], said
    assert "unreadable" not in res.output and not list(saved.parent.glob("*.bad"))
    expected, resumed = run_dirs(tmp_path / "reference" / "parts"), run_dirs(tmp_path / "out" / "parts")
    assert sorted(resumed) == sorted(expected) == ids
    for rid in ids:
        assert metrics_without_time(resumed[rid]) == metrics_without_time(expected[rid])


def test_a_checkpoint_of_an_edited_plugins_runs_is_left_alone(tmp_path: Path) -> None:
    """Edit the optimizer plugin after the interruption: its runs are new ones (new ids), trained from the
    start; the checkpoint of the earlier source's runs is neither read as theirs nor set aside, and the
    earlier source, restored, resumes from it."""
    path, ids, saved = _interrupted_plugin_sweep(tmp_path)
    mine = tmp_path / "mine.py"
    source = mine.read_text()
    mine.write_text(source + "\n# edited\n")
    res = dlbench("run", path, "--out", tmp_path / "out", "--no-plots")
    assert res.code == 0, res.output
    assert "resuming" not in res.output and "unreadable" not in res.output
    assert list(saved.parent.iterdir()) == [saved]
    assert set(run_dirs(tmp_path / "out" / "parts")).isdisjoint(ids)
    plugins.unload()
    mine.write_text(source)
    res = dlbench("run", path, "--out", tmp_path / "out", "--no-plots")
    assert f"resuming 2 runs from step 20 of 40 (checkpoint {saved.name})" in res.output
    assert set(ids) <= set(run_dirs(tmp_path / "out" / "parts"))


def test_any_process_rebuilds_the_vocabulary_from_the_folder(tmp_path: Path, data_root: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A file plugin and a module plugin (a package that imports a module of its own): the folder keeps
    vocabulary.json and every source; a fresh interpreter that never saw the config rebuilds the
    vocabulary from the folder and reads experiment.yaml and every run's config with it, to the same ids."""
    import subprocess
    import sys

    from sweep_util import ONE_THREAD, REPO

    write(tmp_path / "mine.py", SGD_PLUGIN)
    package = tmp_path / "lib" / "someones_rules"
    package.mkdir(parents=True)
    write(package / "__init__.py", "from someones_rules.halving import halving  # noqa: F401\n")
    write(package / "halving.py", """
        from dlbench import register


        @register.schedule("pkg_halving", fields={"every": 5})
        def halving(step, total, every):
            return 0.5 ** (step // every)
    """)
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    cfg = _config(tmp_path, data_root, plugins=["mine.py", "someones_rules"], optimizer={"name": "plain_sgd"},
                  schedule={"name": "pkg_halving"})
    assert dlbench("run", cfg, "--out", tmp_path / "out", "--no-plots").code == 0
    folder = tmp_path / "out" / "tiny"
    record = {p["name"]: p for p in json.loads((folder / "vocabulary.json").read_text())["plugins"]}
    assert record["mine.py"]["module"] is None and (folder / record["mine.py"]["kept"]).read_text() == (
        tmp_path / "mine.py").read_text()
    module = record["someones_rules"]
    assert module["module"] == "someones_rules" and module["distribution"] is None  # not installed: no dist
    assert [Path(f["path"]).name for f in module["files"]] == ["halving.py"]
    assert (folder / module["files"][0]["kept"]).read_text() == (package / "halving.py").read_text()

    rebuild = f"""
import json, sys
from pathlib import Path
from dlbench.plan import sweep
from dlbench.config.vocabulary import from_folder
from dlbench.config.yaml_io import read_config
folder = Path({str(folder)!r})
vocabulary = from_folder(folder)
vocabulary.validate(read_config(folder / "experiment.yaml"))
ids = []
for run in sorted((folder / "runs").iterdir()):
    config = vocabulary.validate(read_config(run / "config.yaml"))
    ids.append(sweep.run_id(config, config.train.seeds[0], vocabulary.provenance(config)) == run.name)
print(json.dumps(ids))
"""
    env = {**os.environ, **ONE_THREAD, "PYTHONPATH": f"{REPO}{os.pathsep}{tmp_path / 'lib'}"}
    out = subprocess.run([sys.executable, "-c", rebuild], capture_output=True, text=True, env=env, cwd=tmp_path.parent,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [True] * len(run_dirs(folder))

    # the package's hash covers its every file: an edit in the module its __init__ imports makes new runs
    n = len(run_dirs(folder))
    assert f"{n} runs: {n} finished, 0 to train" in dlbench("run", cfg, "--out", tmp_path / "out", "--dry-run").out
    (package / "halving.py").write_text((package / "halving.py").read_text() + "\n# edited\n")
    plugins.unload()
    assert f"{n} runs: 0 finished, {n} to train" in dlbench("run", cfg, "--out", tmp_path / "out", "--dry-run").out
