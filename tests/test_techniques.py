"""The training techniques end to end: a config in, the engine's numbers out, against a plain PyTorch loop.

The reference loop trains one run as anyone would with torch: torch.optim.SGD (whose
weight decay touches every parameter, biases included), torch.optim.lr_scheduler,
torch.nn.utils.clip_grad_norm_, F.cross_entropy(label_smoothing=). Each technique's run
must reach the same training loss alone (a stack of one, no vmap) and inside one stack
with runs using the other techniques (vmap, per-run columns).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sweep_util import tiny_config
from test_datasets import write_idx
from torch.optim import lr_scheduler

from dlbench.components import data as data_mod
from dlbench.components import inits, models
from dlbench.components.augment import AUGMENTATIONS, Looped
from dlbench.config.schema import Config, validate
from dlbench.plan.sweep import RunSpec, expand
from dlbench.plan.stacks import stacks
from dlbench.training.engine import AUGMENT_STREAM, generator, train

STEPS, WARMUP, LR = 12, 3, 0.05
CPU = torch.device("cpu")

# case -> the keys it sets (each technique alone; all but train.order may differ inside one stack)
CASES: dict[str, dict[str, Any]] = {
    "plain": {},
    "warmup_cosine": {"schedule": {"name": "cosine", "warmup": WARMUP}},
    "step": {"schedule": {"name": "step", "every": 1, "gamma": 0.5}},
    "clip": {"optimizer.clip_norm": 0.5},
    "label_smoothing": {"regularization.label_smoothing": 0.2},
    "decay_biases": {"optimizer": {"weight_decay": 0.05, "decay_biases": True}},
}


def _config(root: Path, data: dict[str, Any] | None = None, **sections: Any) -> dict[str, Any]:
    # 250 training samples: 5 full batches of 50 per epoch, STEPS cross two epoch boundaries
    return tiny_config(root, data={"root": str(root), "train_size": 300, "val_size": 50, **(data or {})},
                       optimizer={"name": "momentum", "lr": LR, "momentum": 0.9},
                       train={"steps": STEPS, "batch_size": 50, "eval_every": 1, "seeds": [3], "device": "cpu"},
                       **sections)


def _torch_schedule(opt: torch.optim.Optimizer, cfg: Config) -> lr_scheduler.LRScheduler:
    s = cfg.schedule
    if s.name == "step":
        return lr_scheduler.StepLR(opt, step_size=s.every * 5, gamma=s.gamma)
    if s.name == "cosine":
        warm = int(s.warmup)
        ramp = lr_scheduler.LinearLR(opt, start_factor=1e-12, end_factor=1.0, total_iters=warm)
        return lr_scheduler.SequentialLR(opt, [ramp, lr_scheduler.CosineAnnealingLR(opt, T_max=STEPS - warm)],
                                         milestones=[warm])
    return lr_scheduler.ConstantLR(opt, factor=1.0)


def reference(spec: RunSpec) -> tuple[list[float], float]:
    """(lr of every update, final loss on the training split) of one run trained by a plain torch loop."""
    cfg = spec.config
    splits = data_mod.prepare(cfg.data, CPU)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = models.build(cfg.model, splits.sample_shape, splits.num_classes)
        inits.initialize(model, cfg.init)
    o = cfg.optimizer
    opt = torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum,
                          weight_decay=o.weight_decay if o.decay_biases else 0.0)
    scheduler = _torch_schedule(opt, cfg)
    order = torch.Generator().manual_seed(spec.seed)
    augment = generator(spec.seed, AUGMENT_STREAM, CPU)
    n, bs, lrs = len(splits.x_train), cfg.train.batch_size, []
    for step in range(STEPS):
        if step % (n // bs) == 0:
            perm = torch.arange(n) if cfg.train.order == "sequential" else torch.randperm(n, generator=order)
        idx = perm[step % (n // bs) * bs:][:bs]
        x = AUGMENTATIONS[cfg.regularization.augment].builder(splits.x_train[idx][None], Looped([augment]))[0]
        loss = F.cross_entropy(model(x), splits.y_train[idx], label_smoothing=cfg.regularization.label_smoothing)
        opt.zero_grad()
        loss.backward()
        if o.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), o.clip_norm)
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    model.eval()
    with torch.no_grad():
        return lrs, F.cross_entropy(model(splits.x_train), splits.y_train).item()


def _specs(raw: dict[str, Any]) -> list[RunSpec]:
    return expand(validate(raw), raw)


def _check(results: list[Any]) -> None:
    for result in results:
        lrs, final_loss = reference(result.spec)
        rows = result.metrics
        assert [r["step"] for r in rows] == list(range(STEPS + 1))
        # the lr column: row 0 shows the first update's lr, row s the lr update s was made with
        torch.testing.assert_close([r["lr"] for r in rows], [lrs[0], *lrs], rtol=1e-6, atol=1e-9)
        assert rows[-1]["train_loss"] == pytest.approx(final_loss, rel=1e-4), result.spec.params


@pytest.mark.parametrize("case", CASES)
def test_each_technique_alone_trains_as_the_torch_loop(data_root: Path, case: str) -> None:
    results = list(train(_specs(_config(data_root, cases={case: CASES[case]})), CPU))
    _check(results)


def test_all_techniques_in_one_stack_train_as_the_torch_loop(data_root: Path) -> None:
    specs = _specs(_config(data_root, cases=CASES))
    assert len(stacks(specs)) == 1  # schedules, clipping, smoothing, bias decay: per run
    results = list(train(specs, CPU))
    assert len(results) == len(CASES)
    _check(results)
    final = {r.spec.params["case"]: r.metrics[-1]["train_loss"] for r in results}
    assert len(set(final.values())) == len(CASES)  # every technique changed training


def test_a_grid_over_schedules_is_one_stack(data_root: Path) -> None:
    raw = _config(data_root, grid={"schedule.name": ["constant", "cosine", "linear"], "schedule.warmup": [0, 0.25]})
    specs = _specs(raw)
    assert len(specs) == 6 and len(stacks(specs)) == 1


def test_sequential_order_gives_the_same_batches_every_epoch(data_root: Path) -> None:
    (shuffled,), (sequential,) = (
        list(train(_specs(_config(data_root, cases={order: {"train.order": order}})), CPU))
        for order in ("shuffle", "sequential"))
    _check([sequential])
    assert sequential.metrics[-1]["train_loss"] != shuffled.metrics[-1]["train_loss"]
    assert stacks([shuffled.spec, sequential.spec]) == [[shuffled.spec], [sequential.spec]]  # order is shared


def _fake_mnist(root: Path) -> Path:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(400, 28, 28), dtype=np.uint8)
    labels = (np.arange(400) % 10).astype(np.uint8)
    write_idx(root / "MNIST" / "raw", "train", images[:300], labels[:300])
    write_idx(root / "MNIST" / "raw", "t10k", images[300:], labels[300:])
    return root


def test_augmentation_is_drawn_per_run_and_reproducible(tmp_path: Path) -> None:
    root = _fake_mnist(tmp_path / "mnist")
    raw = _config(root, data={"dataset": "mnist", "download": False},
                  grid={"regularization.augment": ["none", "shift", "crop_flip"]})
    raw["train"]["seeds"] = [0, 1]
    specs = _specs(raw)
    together = list(train(specs, CPU))  # one stack of six runs
    _check(together)  # each run's augmentation as its own generator draws it alone
    final = {(r.spec.params["regularization.augment"], r.spec.seed): r.metrics[-1]["train_loss"] for r in together}
    assert len(set(final.values())) == 6
    alone = [list(train([spec], CPU))[0] for spec in specs if spec.seed == 1]
    for result in alone:
        assert result.metrics[-1]["train_loss"] == pytest.approx(
            final[(result.spec.params["regularization.augment"], 1)], rel=1e-5)
