"""Config keys of the training techniques: defaults, and bad values refused in one line (tests/test_techniques.py
checks that the engine applies them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from dlbench.components.data import prepare
from dlbench.config.schema import ConfigError, section, validate


def test_defaults_are_accepted() -> None:
    cfg = validate({})
    assert (cfg.optimizer.clip_norm, cfg.optimizer.decay_biases, cfg.schedule.name, cfg.schedule.warmup,
            cfg.regularization.label_smoothing, cfg.regularization.augment, cfg.train.order,
            cfg.data.preprocess) == (None, False, "constant", 0.0, 0.0, "none", "shuffle", "standardize")


@pytest.mark.parametrize("data, message", [
    ({"loss": "mse", "regularization": {"label_smoothing": 0.1}},
     "regularization.label_smoothing: 0.1 is invalid with loss 'mse'; only cross_entropy, nll take it"),
    ({"regularization": {"augment": "shift"}},
     "regularization.augment: 'shift' is invalid on data.dataset 'mnist1d': its samples are signals"),
    ({"data": {"dataset": "xor"}, "regularization": {"augment": "crop_flip"}},
     "regularization.augment: 'crop_flip' is invalid on data.dataset 'xor': its samples are points"),
    ({"regularization": {"augment": "rotate"}}, "regularization.augment: 'rotate' is invalid: unknown augmentation"),
    ({"regularization": {"label_smoothing": 1.0}}, "regularization.label_smoothing: 1.0 is invalid"),
    ({"optimizer": {"clip_norm": 0}}, "optimizer.clip_norm: 0 is invalid"),
    ({"optimizer": {"rho": 1.5}}, "optimizer.rho: 1.5 is invalid"),
    ({"optimizer": {"name": "adam", "rho": 0.5}},
     "optimizer.rho: 0.5 is invalid: optimizer 'adam' does not read it "
     "(unknown key; it reads clip_norm, decay_biases, lr, betas, eps, weight_decay)"),
    ({"optimizer": {"name": "sgdw"}}, "optimizer.name: 'sgdw' is invalid: unknown optimizer; allowed: sgd,"),
    ({"train": {"order": "random"}}, "train.order: 'random' is invalid"),
    ({"data": {"preprocess": "whiten"}}, "data.preprocess: 'whiten' is invalid: unknown preprocessing"),
])
def test_invalid_values_are_refused_in_one_line(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        validate(data)
    assert str(e.value).startswith(message)


def test_preprocess_standardize_none_positive(data_root: Path) -> None:
    def train_inputs(preprocess: str) -> tuple[torch.Tensor, torch.Tensor]:
        s = prepare(section("data", root=str(data_root), val_size=0.2, preprocess=preprocess), "cpu")
        return s.x_train, s.x_test

    (raw, raw_test), (std, std_test), (pos, pos_test) = map(train_inputs, ("none", "standardize", "positive"))
    assert raw.mean(0).abs().max() > 1e-3 and std.mean(0).abs().max() < 1e-5
    assert pos.min() == 0 and (pos.amin(0) == 0).all()  # every feature's training minimum is exactly 0
    shift = pos - std  # the same standardized inputs, moved up per feature
    torch.testing.assert_close(shift, shift[:1].expand_as(shift))
    torch.testing.assert_close(pos_test - std_test, shift[:1].expand_as(std_test))


def test_run_ids_are_pinned_and_only_hashed_roles_change_them() -> None:
    """Run ids (version 2: computed from the catalog's key roles, every resolved setting included) are
    pinned, so a change that would orphan stored results fails here first; keys whose role is meta,
    sweep or execution never change an id."""
    from dlbench.plan.sweep import run_id

    assert run_id(validate({}), 0) == "b791fe270a04"
    assert run_id(validate({"data": {"preprocess": "none"}, "optimizer": {"name": "sgd", "lr": 0.1}}), 3) == \
        "efda89c045fd"
    same = validate({"name": "other", "description": "x", "train": {"device": "cpu", "seeds": [5],
                                                                    "checkpoint_seconds": None},
                     "data": {"root": "elsewhere", "download": False}, "plots": ["gap"]})
    assert run_id(same, 0) == "b791fe270a04"
    assert run_id(validate({"data": {"preprocess": "positive"}}), 0) != "b791fe270a04"


def test_a_setting_marked_added_keeps_the_ids_of_runs_stored_before_it(monkeypatch) -> None:
    """A setting declared with added=True is left out of a run's id at its default: runs stored before
    it existed stay done; any other value is part of the id."""
    import dataclasses

    from dlbench import catalog
    from dlbench.plan.sweep import run_id

    before = run_id(validate({}), 0)
    known = catalog.settings_by_key()
    monkeypatch.setattr(catalog, "settings_by_key", lambda: {
        **known, "train.order": dataclasses.replace(known["train.order"], added=True)})
    without = run_id(validate({}), 0)
    assert without != before  # the id no longer holds train.order at its default ...
    assert run_id(validate({"train": {"order": "sequential"}}), 0) not in (before, without)  # ... other values it does


def test_a_folder_of_earlier_run_ids_is_read_but_not_extended(cli, tiny, tmp_path) -> None:
    """Runs stored before the catalog (ids version 1) stay readable; `run` says why they are not reused."""
    import json

    config = cli.write(tiny)
    assert cli("run", str(config), "--out", str(tmp_path)).code == 0
    record = tmp_path / tiny["name"] / "experiment.json"
    old = json.loads(record.read_text())
    del old["ids"]  # what a folder written before the catalog holds
    record.write_text(json.dumps(old))
    again = cli("run", str(config), "--out", str(tmp_path))
    assert again.code == 2 and "earlier dlbench" in again.err and "--force-new" in again.err
    assert cli("report", str(tmp_path / tiny["name"])).code == 0
