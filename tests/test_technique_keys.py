"""Config keys of the training techniques: defaults, and bad values refused in one line (tests/test_techniques.py
checks that the engine applies them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from dlbench.components.data import prepare
from dlbench.config.schema import ConfigError, DataConfig, validate


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
     "optimizer.rho: 0.5 is invalid: adam does not read rho; it reads betas, eps, lr, weight_decay"),
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
        s = prepare(DataConfig(root=str(data_root), val_size=0.2, preprocess=preprocess), "cpu")
        return s.x_train, s.x_test

    (raw, raw_test), (std, std_test), (pos, pos_test) = map(train_inputs, ("none", "standardize", "positive"))
    assert raw.mean(0).abs().max() > 1e-3 and std.mean(0).abs().max() < 1e-5
    assert pos.min() == 0 and (pos.amin(0) == 0).all()  # every feature's training minimum is exactly 0
    shift = pos - std  # the same standardized inputs, moved up per feature
    torch.testing.assert_close(shift, shift[:1].expand_as(shift))
    torch.testing.assert_close(pos_test - std_test, shift[:1].expand_as(std_test))


def test_run_ids_of_earlier_results_are_kept() -> None:
    """The new keys at their defaults (and data.preprocess standardize / none, which were data.standardize
    true / false) leave a run's id as it was, so results stored before them still count as done."""
    from dlbench.sweep import run_id

    # the ids the version before these keys gave
    assert run_id(validate({}), 0) == "5587300a1639"
    assert run_id(validate({"data": {"preprocess": "none"}, "optimizer": {"name": "sgd", "lr": 0.1}}), 3) == \
        "d4a6738d6728"
    assert run_id(validate({"data": {"preprocess": "positive"}}), 0) != "5587300a1639"
