"""Shared fixtures: a generated MNIST-1D cache (one per test run), the one in-process CLI
runner (sweep_util.dlbench, as the console script runs) and the one tiny-config factory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sweep_util import Outcome, dlbench, tiny_config


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MNIST-1D generated once per test session by the real loader (mnist1d.make_dataset)."""
    from dlbench.config.schema import section
    from dlbench.components.data import DATASETS

    root = tmp_path_factory.mktemp("data")
    DATASETS["mnist1d"].builder(section("data", root=str(root)))
    return root


@pytest.fixture(autouse=True, scope="module")
def no_plugins_outlive_their_module() -> Iterator[None]:
    """The in-process CLI loads a config's plugins into this process's registries; none outlives the
    test module that loaded it, so the next module's registries (iterated by the registry tests) hold
    the built-ins alone, in any order of the tests."""
    yield
    from dlbench import plugins

    plugins.unload()


@pytest.fixture
def tiny(data_root: Path) -> dict[str, Any]:
    """A config that trains in a fraction of a second: 500 samples, one hidden layer, 20 steps."""
    return tiny_config(data_root, data={"root": str(data_root), "train_size": 500, "val_size": 100},
                       model={"kind": "mlp", "hidden": [32]}, optimizer={"name": "adam", "lr": 0.01},
                       train={"steps": 20, "eval_every": 10, "batch_size": 50, "seeds": [0], "device": "cpu"})


class Cli:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path

    def write(self, config: dict[str, Any] | str, name: str = "config.yaml") -> Path:
        path = self.tmp_path / name
        path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
        return path

    def __call__(self, *args: Any) -> Outcome:
        return dlbench(*args)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)
