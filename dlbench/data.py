"""Datasets -> train / val / test tensors that live on the device.

A dataset loader returns raw arrays (float inputs of the dataset's sample shape,
integer labels). `prepare` subsets, splits off validation, standardizes from
training statistics only and moves everything to the device once; training then
batches by permutation + indexing, never a DataLoader.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from dlbench.registry import Registry

if TYPE_CHECKING:
    from dlbench.config import DataConfig


@dataclass(frozen=True)
class RawData:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int


@dataclass(frozen=True)
class Splits:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")


class DatasetUnavailable(RuntimeError):
    """The dataset's files are missing and cannot be fetched; the message says what to do."""


DATASETS: Registry[Callable[["DataConfig"], RawData]] = Registry("dataset")


@DATASETS.register("mnist1d", shape=(40,), classes=10, size="4000 train / 1000 test",
                   source="generated locally by the mnist1d package (make_dataset, default arguments)")
def mnist1d(cfg: "DataConfig") -> RawData:
    """MNIST-1D: 40-long 1-D signals of the ten digit templates, shifted, scaled and noised."""
    cache = Path(cfg.root) / "mnist1d.npz"
    if not cache.is_file():
        from mnist1d.data import get_dataset_args, make_dataset

        d = make_dataset(get_dataset_args())
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, x=d["x"], y=d["y"], x_test=d["x_test"], y_test=d["y_test"])
        tmp.replace(cache)
    with np.load(cache) as f:
        return RawData(f["x"].astype(np.float32), f["y"].astype(np.int64),
                       f["x_test"].astype(np.float32), f["y_test"].astype(np.int64), 10)


def _count(size: float, n: int) -> int:
    return int(round(size * n)) if size < 1 else int(size)


def _standardize(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    # per feature for flat inputs (N, D), per channel for (N, C, ...) inputs
    dims = [0] if train.dim() == 2 else [0] + list(range(2, train.dim()))
    mean = train.mean(dim=dims, keepdim=True)
    std = train.std(dim=dims, keepdim=True).clamp_min(1e-8)
    return [(t - mean) / std for t in (train, *others)]


@functools.lru_cache(maxsize=4)
def _prepare_cached(cfg_json: str, device: str) -> Splits:
    from dlbench.config import DataConfig

    cfg = DataConfig.model_validate_json(cfg_json)
    raw = DATASETS[cfg.dataset].builder(cfg)
    x, y = torch.from_numpy(raw.x_train), torch.from_numpy(raw.y_train)
    g = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(x), generator=g)
    if cfg.train_size is not None:
        if cfg.train_size > len(x):
            raise ValueError(f"data.train_size={cfg.train_size} exceeds the {len(x)} training samples of {cfg.dataset}")
        order = order[: cfg.train_size]
    n_val = _count(cfg.val_size, len(order))
    if n_val >= len(order):
        raise ValueError(f"data.val_size={cfg.val_size} leaves no training samples of {len(order)}")
    val_idx, train_idx = order[:n_val], order[n_val:]
    x_tr, y_tr, x_va, y_va = x[train_idx], y[train_idx], x[val_idx], y[val_idx]
    x_te, y_te = torch.from_numpy(raw.x_test), torch.from_numpy(raw.y_test)
    if cfg.standardize:
        x_tr, x_va, x_te = _standardize(x_tr, x_va, x_te)
    dev = torch.device(device)
    return Splits(x_tr.to(dev), y_tr.to(dev), x_va.to(dev), y_va.to(dev),
                  x_te.to(dev), y_te.to(dev), raw.num_classes)


def prepare(cfg: "DataConfig", device: torch.device | str) -> Splits:
    """Load, subset, split and standardize a dataset; cached per (config, device)."""
    key = json.dumps(cfg.model_dump(mode="json"), sort_keys=True)
    return _prepare_cached(key, str(device))
