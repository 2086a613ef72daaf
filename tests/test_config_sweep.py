"""Config validation, overrides, bad-input errors and sweep expansion."""

from __future__ import annotations


import math
from pathlib import Path

import pytest

from dlbench.config import vocabulary
from dlbench.config import schema as config
from dlbench.plan import sweep
from dlbench.config.schema import Config
from dlbench.errors import ConfigError


def expand(data: dict, overrides: list[str] | None = None) -> list[sweep.RunSpec]:
    data = config.apply_overrides(data, overrides or [])
    return sweep.expand(config.validate(data), data)


def test_defaults_match_design() -> None:
    cfg = Config()
    assert cfg.data.dataset == "mnist1d" and cfg.data.val_size == 0.1 and cfg.data.preprocess == "standardize"
    assert cfg.model.kind == "mlp" and cfg.model.hidden == [100, 100] and cfg.model.norm_position == "pre"
    assert cfg.optimizer.name == "adam" and cfg.optimizer.lr == 0.001
    assert cfg.train.epochs == 20 and cfg.train.steps is None and cfg.train.seeds == [0, 1, 2]
    assert cfg.loss == "cross_entropy" and cfg.init.scheme == "default"


def test_overrides_are_yaml_typed() -> None:
    data = config.apply_overrides({}, ["optimizer.lr=1e-3", "model.hidden=[10, 10]", "train.batch_size=full",
                                       "model.residual=true", "name=abc"])
    cfg = config.validate(data)
    assert cfg.optimizer.lr == 1e-3 and cfg.model.hidden == [10, 10]
    assert cfg.train.batch_size == "full" and cfg.model.residual is True and cfg.name == "abc"


def test_scientific_notation_in_yaml_is_a_float(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("optimizer:\n  lr: 1e-2\n  weight_decay: 5E-4\n")
    cfg, _, _ = vocabulary.load(path)
    assert cfg.optimizer.lr == 0.01 and cfg.optimizer.weight_decay == 5e-4


BAD = [
    # (yaml text, --set overrides, words the one-line message must contain)
    ("modle: {}\n", [], ["modle", "unknown key", "model"]),
    ("model: {actvation: relu}\n", [], ["model.actvation", "unknown key", "activation"]),
    ("optimizer: {lr: fast}\n", [], ["optimizer.lr", "'fast'", "number"]),
    ("model: {hidden: 100}\n", [], ["model.hidden", "100", "list"]),
    ("model: {activation: swish}\n", [], ["model.activation", "'swish'", "relu", "tanh"]),
    ("optimizer: {name: lbfgs}\n", [], ["optimizer.name", "'lbfgs'", "adam", "nesterov"]),
    ("init: {scheme: magic}\n", [], ["init.scheme", "'magic'", "he_normal"]),
    ("loss: hinge\n", [], ["loss", "'hinge'", "cross_entropy"]),
    ("data: {dataset: imagenet}\n", [], ["data.dataset", "'imagenet'", "mnist1d"]),
    ("train: {epochs: 3, steps: 4}\n", [], ["train", "epochs", "steps", "exactly one"]),
    ("optimizer: {lr: -0.1}\n", [], ["optimizer.lr", "-0.1", "greater than 0"]),
    ("model: {dropout: 1.0}\n", [], ["model.dropout", "1.0", "less than 1"]),
    ("train: {batch_size: 0}\n", [], ["train.batch_size", "0"]),
    ("train: {batch_size: half}\n", [], ["train.batch_size", "'half'"]),
    ("optimizer: {lr: .nan}\n", [], ["optimizer.lr", "nan", "finite"]),
    ("name: ../escape\n", [], ["name", "../escape"]),
    ("grid: {optimizer.lrr: [0.1]}\n", [], ["grid", "optimizer.lrr", "lr"]),
    ("grid: {optimizer.name: [sgd, foo]}\n", [], ["optimizer.name", "'foo'", "sgd"]),
    ("a: [1\n", [], ["invalid YAML", "line"]),
    ("- 1\n", [], ["mapping"]),
    ("!!python/object/apply:os.system ['echo pwned']\n", [], ["invalid YAML", "python/object"]),
    ("name: x\n", ["optimizer.lr=abc"], ["optimizer.lr", "'abc'"]),
    ("name: x\n", ["no-equals-sign"], ["--set", "key.path=value"]),
]


@pytest.mark.parametrize("text,overrides,words", BAD)
@pytest.mark.parametrize("command", ["validate", "run"])
def test_bad_input_is_one_line_exit_2(cli, text: str, overrides: list[str], words: list[str], command: str) -> None:
    path = cli.write(text)
    sets = [a for o in overrides for a in ("--set", o)]
    out = ["--out", cli.tmp_path / "results"] if command == "run" else []
    result = cli(command, path, *sets, *out)
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert "Traceback" not in result.output
    for w in words:
        assert w in message, (w, message)
    assert not (cli.tmp_path / "results").exists()  # nothing written for bad input


def test_missing_config_file(cli) -> None:
    result = cli("run", cli.tmp_path / "nope.yaml")
    assert result.exit_code == 2 and "not found" in result.stderr


def test_grid_dotted_keys_are_a_cartesian_product() -> None:
    specs = expand({"grid": {"optimizer.name": ["sgd", "adam"], "init.scheme": ["zeros", "he_normal", "normal"]},
                    "train": {"seeds": [0, 1]}})
    assert len(specs) == 2 * 3 * 2
    combos = {(s.config.optimizer.name, s.config.init.scheme, s.seed) for s in specs}
    assert len(combos) == 12
    assert specs[0].params == {"optimizer.name": "sgd", "init.scheme": "zeros"}
    assert all(s.config.train.seeds == [s.seed] for s in specs)


def test_grid_over_a_section_moves_settings_together() -> None:
    specs = expand({"optimizer": {"weight_decay": 0.01},
                    "grid": {"optimizer": [{"name": "sgd", "lr": 0.95}, {"name": "adam", "lr": 0.3}]},
                    "train": {"seeds": [0]}})
    got = [(s.config.optimizer.name, s.config.optimizer.lr, s.config.optimizer.weight_decay) for s in specs]
    assert got == [("sgd", 0.95, 0.01), ("adam", 0.3, 0.01)]  # merged into the section, the rest kept
    assert specs[1].params == {"optimizer.name": "adam", "optimizer.lr": 0.3}


def test_random_search_is_seeded_and_in_range() -> None:
    data = {"random": {"trials": 25, "seed": 3, "space": {
        "optimizer.lr": {"log_uniform": [1e-6, 1e-2]},
        "model.dropout": {"uniform": [0.0, 0.5]},
        "optimizer.name": {"choice": ["sgd", "adam"]},
        "train.batch_size": {"int_uniform": [16, 64]}}}, "train": {"seeds": [0]}}
    a, b = expand(data), expand(data)
    assert [s.params for s in a] == [s.params for s in b]
    assert len(a) == 25
    lrs = [s.config.optimizer.lr for s in a]
    assert all(1e-6 <= lr <= 1e-2 for lr in lrs)
    assert max(lrs) / min(lrs) > 100  # log-uniform spreads over decades
    assert all(0 <= s.config.model.dropout <= 0.5 for s in a)
    assert {s.config.optimizer.name for s in a} == {"sgd", "adam"}
    assert all(isinstance(s.config.train.batch_size, int) and 16 <= s.config.train.batch_size <= 64 for s in a)
    other = expand({**data, "random": {**data["random"], "seed": 4}})
    assert [s.params for s in other] != [s.params for s in a]


def test_random_crossed_with_grid_and_seeds() -> None:
    specs = expand({"grid": {"model.activation": ["relu", "tanh"]},
                    "random": {"trials": 3, "space": {"optimizer.lr": {"log_uniform": [1e-4, 1e-1]}}},
                    "train": {"seeds": [0, 1]}})
    assert len(specs) == 2 * 3 * 2
    # the same sampled points for every grid value, so the grid comparison is paired
    lrs = {act: sorted({s.config.optimizer.lr for s in specs if s.config.model.activation == act})
           for act in ("relu", "tanh")}
    assert lrs["relu"] == lrs["tanh"]


def test_run_ids_are_stable_hashes_of_the_resolved_config() -> None:
    base = {"grid": {"optimizer.lr": [0.1, 0.01]}, "train": {"seeds": [0, 1]}}
    ids = [s.run_id for s in expand(base)]
    assert len(set(ids)) == 4 and all(len(i) == 12 for i in ids)
    assert ids == [s.run_id for s in expand(base)]
    # the same run spelled differently (direct value instead of grid; other name / device) has the same id
    direct = expand({"name": "other", "optimizer": {"lr": 0.1}, "train": {"seeds": [1], "device": "cpu"}})
    assert direct[0].run_id == ids[1]
    changed = expand(base, ["model.dropout=0.1"])
    assert not set(ids) & {s.run_id for s in changed}


def test_epochs_default_only_without_steps() -> None:
    assert Config.model_validate({"train": {"steps": 50}}).train.epochs is None
    assert math.isclose(Config().train.epochs, 20)


def test_validate_command_counts_runs(cli) -> None:
    path = cli.write({"name": "v", "grid": {"optimizer.name": ["sgd", "adam"]}, "train": {"seeds": [0, 1, 2]}})
    result = cli("validate", path)
    assert result.exit_code == 0 and "6 runs" in result.stdout


def test_dry_run_lists_runs_and_trains_nothing(cli) -> None:
    path = cli.write({"name": "dry", "grid": {"optimizer.name": ["sgd", "adam"]}, "train": {"seeds": [0, 1]}})
    out = cli.tmp_path / "results"
    result = cli("run", path, "--dry-run", "--out", out)
    assert result.exit_code == 0, result.output
    assert "4 runs" in result.stdout and "sgd" in result.stdout and "adam" in result.stdout
    assert not out.exists()


def test_bad_section_grid_value_is_reported(cli) -> None:
    path = cli.write({"grid": {"optimizer": ["sgd"]}})
    result = cli("validate", path)
    assert result.exit_code == 2 and "grid.optimizer" in result.stderr


def test_field_at_rejects_unknown_paths() -> None:
    with pytest.raises(ValueError, match="allowed"):
        config.field_at("train.epochz")
    with pytest.raises(ValueError, match="no sub-keys"):
        config.field_at("loss.x")
    assert config.field_at("optimizer") is True
    assert config.field_at("optimizer.lr") is False


def test_set_path_refuses_to_descend_into_a_value() -> None:
    with pytest.raises(ConfigError, match="cannot set a sub-key"):
        config.set_path({"loss": "mse"}, "loss.x", 1)
