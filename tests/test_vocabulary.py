"""The catalog and the schema built from it: every component declares what it reads, every input
is honoured or refused (one line naming the key, the value and what is allowed; exit 2; before
anything trains), and every record has a builder (and the reverse)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from dlbench.catalog import CATALOG, SECTIONS
from dlbench.config.schema import MEMBERS, validate
from dlbench.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]

# each input the vocabulary issue found accepted although nothing read it, and a word the refusal must say
REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "init.std with he_normal": ({"init": {"scheme": "he_normal", "std": 0.1}}, "init.std"),
    "init.value with xavier_normal": ({"init": {"scheme": "xavier_normal", "value": 0.5}}, "init.value"),
    "model.dropout with logreg": ({"model": {"kind": "logreg", "dropout": 0.5}}, "model.dropout"),
    "model.conv with logreg": ({"model": {"kind": "logreg", "conv": [{"channels": 4}]}}, "model.conv"),
    "model.conv with mlp": ({"model": {"kind": "mlp", "conv": [{"channels": 4}]}}, "model.conv"),
    "residual with unequal widths": ({"model": {"hidden": [32, 64], "residual": True}}, "model.residual"),
    "norm_position post with no norm": ({"model": {"norm_position": "post"}}, "model.norm_position"),
    "function section in task train": ({"function": {"name": "rosenbrock"}}, "function"),
    "activations section in task train": ({"activations": {"samples": 10}}, "activations"),
    "diagnostics.samples with diagnostics off": ({"diagnostics": {"samples": 64}}, "diagnostics.samples"),
    "diagnostics.bins with diagnostics off": ({"diagnostics": {"bins": 10}}, "diagnostics.bins"),
    "diagnostics.near_zero with diagnostics off": ({"diagnostics": {"near_zero": 0.1}}, "diagnostics.near_zero"),
    "early stopping without a validation split": (
        {"regularization": {"early_stopping": 2}, "data": {"val_size": 0}}, "regularization.early_stopping"),
    "scatter without two numeric swept keys": ({"plots": ["scatter"]}, "scatter"),
    "sensitivity without a search": ({"plots": ["sensitivity"]}, "sensitivity"),
    "panels with no swept key": ({"plots": ["panels"]}, "panels"),
    "val_size 1.0": ({"data": {"val_size": 1.0}}, "data.val_size"),
    "a bool for a number": ({"optimizer": {"lr": True}}, "optimizer.lr"),
    "a string for an integer": ({"train": {"epochs": "3"}}, "train.epochs"),
    "betas for sgd": ({"optimizer": {"name": "sgd", "betas": [0.9, 0.99]}}, "optimizer.betas"),
    "gamma for cosine": ({"schedule": {"name": "cosine", "gamma": 0.5}}, "schedule.gamma"),
    "samples for mnist1d": ({"data": {"dataset": "mnist1d", "samples": 100}}, "data.samples"),
    "an unknown optimizer": ({"optimizer": {"name": "sgdd"}}, "optimizer.name"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_an_input_nothing_reads_is_refused_in_one_line(case: str) -> None:
    data, word = REFUSED[case]
    with pytest.raises(ConfigError) as e:
        validate({"name": "x", **data})
    message = str(e.value)
    assert "\n" not in message and word in message
    assert "Value error" not in message and "Input should" not in message and "instance of" not in message


@pytest.mark.parametrize("case", ["model.dropout with logreg", "early stopping without a validation split",
                                  "sensitivity without a search", "panels with no swept key"])
@pytest.mark.parametrize("command", [["validate"], ["run", "--dry-run"], ["run"]])
def test_refused_before_anything_trains_with_exit_2(case: str, command: list[str], cli, tmp_path: Path) -> None:
    data, word = REFUSED[case]
    out = cli(*command, str(cli.write({"name": "x", **data})), "--out", str(tmp_path / "out")) \
        if command[0] == "run" else cli(*command, str(cli.write({"name": "x", **data})))
    assert out.code == 2 and word in out.err and "Traceback" not in out.err
    assert not (tmp_path / "out" / "x" / "runs").exists()


def test_duplicate_keys_and_empty_files_are_refused(cli) -> None:
    dup = cli("validate", str(cli.write("name: a\noptimizer: {lr: 0.1}\noptimizer: {lr: 0.2}\n", "dup.yaml")))
    assert dup.code == 2 and "'optimizer' given twice" in dup.err
    empty = cli("validate", str(cli.write("# nothing here\n", "empty.yaml")))
    assert empty.code == 2 and "empty" in empty.err


def test_defaults_are_resolved_per_component() -> None:
    """A run's config records every value it used: the chosen component's own defaults, never null."""
    cfg = validate({"optimizer": {"name": "momentum"}, "schedule": {"name": "step"}, "data": {"dataset": "spiral"}})
    assert cfg.optimizer.momentum == 0.9 and validate({"optimizer": {"name": "sgd"}}).optimizer.momentum == 0.0
    assert (cfg.schedule.every, cfg.schedule.gamma) == (10, 0.1)
    assert validate({"schedule": {"name": "exponential"}}).schedule.gamma == 0.9
    assert (cfg.data.samples, cfg.data.noise, cfg.data.classes) == (1000, 0.05, 3)
    assert cfg.train.epochs == 20
    dumped = json.dumps(cfg.model_dump(mode="json"))
    assert validate(json.loads(dumped)).model_dump() == cfg.model_dump()  # a recorded config reads back as is


@pytest.mark.parametrize("section", [s for s in SECTIONS.values() if s.chooses], ids=lambda s: s.name)
def test_each_member_accepts_exactly_what_its_component_reads(section) -> None:
    for component in CATALOG[section.chooses]:
        fields = set(MEMBERS[section.name][component.name].model_fields)
        own = {s.name for s in section.settings} | {section.key}
        assert fields == own | set(component.reads()), component.name


def test_every_record_has_a_builder_and_every_builder_a_record() -> None:
    import dlbench.components.augment  # the builders register on import
    import dlbench.components.data
    import dlbench.components.functions
    import dlbench.components.inits
    import dlbench.components.losses
    import dlbench.components.models
    import dlbench.components.optimizers
    import dlbench.components.schedules
    import dlbench.execution.slurm
    import dlbench.results.export
    import dlbench.results.plots
    import dlbench.results.tuning_figures
    import dlbench.tasks  # noqa: F401

    data_only = {"preset"}  # records that are data: a preset's values
    for kind in CATALOG:
        if kind.kind in data_only:
            continue
        assert set(kind.built()) == set(kind.names()), kind.kind
    with pytest.raises(ValueError, match="no catalog record"):
        CATALOG["optimizer"].register("not_declared")(lambda s, t: None)


def test_schema_command_prints_the_json_schema_the_configs_name() -> None:
    out = subprocess.run([sys.executable, "-m", "dlbench", "schema"], capture_output=True, text=True, cwd=ROOT,
                         check=True)
    # the file the configs' modeline names is the schema a fresh process prints (rewrite it with `make schema`;
    # this process's own schema may hold components that other tests registered). What the schema refuses and
    # accepts: tests/test_json_schema.py
    assert json.loads((ROOT / "configs" / "schema.json").read_text()) == json.loads(out.stdout)


def test_shipped_configs_carry_the_schema_modeline_and_validate() -> None:
    for path in sorted((ROOT / "configs").rglob("*.yaml")):
        first = path.read_text().splitlines()[0]
        target = first.removeprefix("# yaml-language-server: $schema=")
        assert target != first and (path.parent / target).resolve() == ROOT / "configs" / "schema.json", path.name
        validate(yaml.safe_load(path.read_text()))


def test_list_shows_every_kind_without_importing_torch() -> None:
    code = ("import sys, runpy; sys.argv = ['dlbench', 'list']\n"
            "try: runpy.run_module('dlbench', run_name='__main__')\n"
            "except SystemExit: pass\n"
            "assert 'torch' not in sys.modules and 'pandas' not in sys.modules, 'list imported torch or pandas'\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True,
                         env={"COLUMNS": "200", "PATH": ""})
    for kind in CATALOG:
        assert kind.label + ("es" if kind.label.endswith("s") else "s") in out.stdout
    assert "momentum: float >= 0 < 1, default 0.9" in out.stdout
