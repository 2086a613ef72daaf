"""Datasets -> train / val / test tensors that live on the device.

A dataset loader returns raw arrays (float inputs of the dataset's sample shape,
integer labels). `prepare` subsets, splits off validation, preprocesses
(data.preprocess: standardizes from training statistics only, by default) and
moves everything to the device once; training then
batches by permutation + indexing, never a DataLoader.

Sample shapes: (40,) signals for MNIST-1D, (C, H, W) images in [0, 1] for the
torchvision sets (read by torchvision's own dataset classes under data.root),
(2,) points for the toy sets (generated from data.seed). Each registry entry's
info record (shape, classes, size, inputs, source, options) is what `dlbench
list` shows and what the config checks models against.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable

import numpy as np
import torch

from dlbench.catalog import CATALOG, Kind



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


class DataError(ValueError):
    """The data section cannot be met (files missing, sizes too large); one line naming the field."""


class DatasetUnavailable(DataError):
    """The dataset's files are missing and cannot be fetched; the message says what to do."""


DATASETS: Kind[Callable[[Any], RawData]] = CATALOG["dataset"]


@DATASETS.register("mnist1d")
def mnist1d(cfg: Any) -> RawData:
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


def _torchvision(name: str, cls: Any, cfg: Any, folder: Path, files: list[str], how: str) -> tuple[Any, Any]:
    """Train and test set of a torchvision dataset class, or one line saying which files to put where."""
    try:
        # the first call downloads all files when allowed, so the second never needs to
        return cls(cfg.root, train=True, download=cfg.download), cls(cfg.root, train=False, download=False)
    except (RuntimeError, OSError) as e:  # torchvision: RuntimeError when missing; URLError (an OSError) offline
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        reason = lines[-1] if lines else type(e).__name__
        why = f"download failed: {reason}" if cfg.download else "data.download is false"
        raise DatasetUnavailable(
            f"data.dataset: {name!r} is not available ({why}): expected {', '.join(files)} in {folder}/; "
            f"{how}, or set data.download: true on a machine with internet access") from None


def _unit(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 in [0, 1], without a second float copy (CIFAR-10 is 600 MB as floats)."""
    out = pixels.astype(np.float32, order="C")
    out /= 255
    return out


def _idx_images(name: str, cls: Any, cfg: Any) -> RawData:
    """MNIST-format (IDX) images: uint8 28x28 -> float (1, 28, 28) in [0, 1]."""
    folder = Path(cfg.root) / cls.__name__ / "raw"
    files = [Path(f).stem for f, _ in cls.resources]  # torchvision reads the gunzipped files
    how = f"download the .gz files from {cls.mirrors[0]} and gunzip them there"
    train, test = _torchvision(name, cls, cfg, folder, files, how)
    return RawData(_unit(train.data.numpy()[:, None]), train.targets.numpy(), _unit(test.data.numpy()[:, None]),
                   test.targets.numpy(), len(cls.classes))


@DATASETS.register("mnist")
def mnist(cfg: Any) -> RawData:
    """MNIST handwritten digits, 28x28 grayscale (LeCun et al. 1998)."""
    from torchvision.datasets import MNIST

    return _idx_images("mnist", MNIST, cfg)


@DATASETS.register("fashion_mnist")
def fashion_mnist(cfg: Any) -> RawData:
    """Fashion-MNIST: 28x28 grayscale clothing images in MNIST's format (Xiao et al. 2017)."""
    from torchvision.datasets import FashionMNIST

    return _idx_images("fashion_mnist", FashionMNIST, cfg)


@DATASETS.register("cifar10")
def cifar10(cfg: Any) -> RawData:
    """CIFAR-10: 32x32 colour images of 10 object classes (Krizhevsky 2009)."""
    from torchvision.datasets import CIFAR10

    folder = Path(cfg.root) / CIFAR10.base_folder
    files = [f for f, _ in CIFAR10.train_list + CIFAR10.test_list] + [CIFAR10.meta["filename"]]
    how = f"extract {CIFAR10.url} into {cfg.root}/"
    train, test = _torchvision("cifar10", CIFAR10, cfg, folder, files, how)
    # torchvision keeps CIFAR as uint8 (N, H, W, C); models take (N, C, H, W) floats
    return RawData(_unit(train.data.transpose(0, 3, 1, 2)), np.asarray(train.targets, dtype=np.int64),
                   _unit(test.data.transpose(0, 3, 1, 2)), np.asarray(test.targets, dtype=np.int64),
                   len(train.classes))


def _toy(cfg: Any, make: Callable[[np.random.Generator, np.ndarray, int], np.ndarray],
         classes: int) -> RawData:
    """2 x samples points from data.seed (balanced labels, Gaussian noise on each coordinate): half train, half test."""
    n = cfg.samples
    rng = np.random.default_rng(cfg.seed)
    y = rng.permutation(np.arange(2 * n) % classes)
    x = make(rng, y, classes) + cfg.noise * rng.standard_normal((2 * n, 2))
    x, y = x.astype(np.float32), y.astype(np.int64)
    return RawData(x[:n], y[:n], x[n:], y[n:], classes)


def _xor(rng: np.random.Generator, y: np.ndarray, classes: int) -> np.ndarray:
    # class 0 sits at (1, 1) and (-1, -1), class 1 at (1, -1) and (-1, 1): no line separates them
    first = rng.choice([-1.0, 1.0], size=len(y))
    return np.stack([first, np.where(y == 0, first, -first)], axis=1)


def _spiral(rng: np.random.Generator, y: np.ndarray, classes: int) -> np.ndarray:
    # arm k: radius t, angle 2 pi k / classes + 4 t, t ~ U(0, 1) (the CS231n spiral)
    t = rng.uniform(0.0, 1.0, size=len(y))
    angle = 2 * np.pi * y / classes + 4 * t
    return np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1)


def _blobs(rng: np.random.Generator, y: np.ndarray, classes: int) -> np.ndarray:
    # blob centres evenly spaced on the unit circle
    angle = 2 * np.pi * y / classes
    return np.stack([np.cos(angle), np.sin(angle)], axis=1)




@DATASETS.register("xor")
def xor(cfg: Any) -> RawData:
    """XOR: Gaussian clouds at the four corners (+-1, +-1), opposite corners share a class."""
    return _toy(cfg, _xor, 2)


@DATASETS.register("spiral")
def spiral(cfg: Any) -> RawData:
    """Spiral: one arm per class winding out from the origin; needs a nonlinear boundary."""
    return _toy(cfg, _spiral, cfg.classes)


@DATASETS.register("blobs")
def blobs(cfg: Any) -> RawData:
    """Blobs: one Gaussian cloud per class, centres on the unit circle; (nearly) linearly separable."""
    return _toy(cfg, _blobs, cfg.classes)


def _count(size: float, n: int) -> int:
    return int(round(size * n)) if size < 1 else int(size)


Preprocess = Callable[..., list[torch.Tensor]]  # (train, *others) -> the same splits, transformed
PREPROCESSING: Kind[Preprocess] = CATALOG["preprocessing"]


def _dims(train: torch.Tensor) -> list[int]:
    # per feature for flat inputs (N, D), per channel for (N, C, ...) inputs
    return [0] if train.dim() == 2 else [0] + list(range(2, train.dim()))


@PREPROCESSING.register("standardize")
def _standardize(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """zero mean, unit std per feature / channel, from training statistics only"""
    mean = train.mean(dim=_dims(train), keepdim=True)
    std = train.std(dim=_dims(train), keepdim=True).clamp_min(1e-8)
    return [(t - mean) / std for t in (train, *others)]


@PREPROCESSING.register("none")
def _raw(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """the dataset's own values (images in [0, 1])"""
    return [train, *others]


@PREPROCESSING.register("positive")
def _positive(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """standardized, then shifted per feature / channel so its training minimum is 0: all inputs >= 0"""
    standardized = _standardize(train, *others)
    low = standardized[0].amin(dim=_dims(train), keepdim=True)
    return [t - low for t in standardized]


def _prepare(cfg: Any, device: str) -> Splits:
    raw = DATASETS[cfg.dataset].builder(cfg)
    x, y = torch.from_numpy(raw.x_train), torch.from_numpy(raw.y_train)
    g = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(x), generator=g)
    if cfg.train_size is not None:
        if cfg.train_size > len(x):
            raise DataError(f"data.train_size: {cfg.train_size} is invalid: {cfg.dataset} has only {len(x)} "
                            "training samples")
        # the first N as stored (the textbook's x_train[:N]; validation drawn from them at random), or a random N
        order = order[order < cfg.train_size] if cfg.train_subset == "first" else order[: cfg.train_size]
    n_val = _count(cfg.val_size, len(order))
    if n_val >= len(order):
        raise DataError(f"data.val_size: {cfg.val_size} is invalid: it leaves none of the {len(order)} "
                        "training samples to train on")
    val_idx, train_idx = order[:n_val], order[n_val:]
    x_tr, y_tr, x_va, y_va = x[train_idx], y[train_idx], x[val_idx], y[val_idx]
    x_te, y_te = torch.from_numpy(raw.x_test), torch.from_numpy(raw.y_test)
    x_tr, x_va, x_te = PREPROCESSING[cfg.preprocess].builder(x_tr, x_va, x_te)
    dev = torch.device(device)
    return Splits(x_tr.to(dev), y_tr.to(dev), x_va.to(dev), y_va.to(dev),
                  x_te.to(dev), y_te.to(dev), raw.num_classes)


_CACHE: dict[tuple[str, str], Splits] = {}
_CACHE_SIZE = 4  # datasets kept, most recently used last


def prepare(cfg: Any, device: torch.device | str) -> Splits:
    """Load, subset, split and standardize a dataset; cached per (config, device)."""
    key = (json.dumps(cfg.model_dump(mode="json"), sort_keys=True), str(device))
    splits = _CACHE.pop(key, None) or _prepare(cfg, str(device))
    _CACHE[key] = splits
    while len(_CACHE) > _CACHE_SIZE:
        del _CACHE[next(iter(_CACHE))]
    return splits
