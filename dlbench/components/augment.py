"""Data augmentation for image batches of a stack, on the device, drawn per run.

`augment(x, draws)` takes the runs' batches x [R, B, C, H, W] and their random numbers,
`draws` (a `Draws`: row r of every draw from run r's own stream only), so a run draws the
same augmentation whatever stack it trains in. `Looped` draws run by run from one
torch.Generator per run; the engine off the CPU passes `training.streams.Counter`, which
draws the whole stack's numbers in one batched call.

- shift: each image moved by up to SHIFT pixels in each direction, zeros filling in
  (small translations: the classic augmentation for digits).
- crop_flip: zero padding of CROP_PADDING pixels, a random crop of the original size,
  and a horizontal flip with probability 1/2 (the standard CIFAR-10 augmentation).
"""

from __future__ import annotations

from typing import Protocol
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from dlbench.catalog import CATALOG, Kind



class Draws(Protocol):
    """A stack's per-run random numbers: [R, *shape] tensors whose row r comes from run r's stream only."""

    def below(self, high: int, shape: tuple[int, ...]) -> Tensor:
        """Integers in [0, high)."""
        ...

    def uniform(self, shape: tuple[int, ...]) -> Tensor:
        """Floats in [0, 1)."""
        ...


class Looped:
    """Draws from one torch.Generator per run, run by run (the numbers dlbench has always drawn on a CPU)."""

    def __init__(self, generators: list[torch.Generator], device: torch.device | str = "cpu") -> None:
        self.generators, self.device = generators, torch.device(device)

    def below(self, high: int, shape: tuple[int, ...]) -> Tensor:
        return torch.stack([torch.randint(0, high, shape, generator=g, device=self.device) for g in self.generators])

    def uniform(self, shape: tuple[int, ...]) -> Tensor:
        return torch.stack([torch.rand(shape, generator=g, device=self.device) for g in self.generators])


Augment = Callable[[Tensor, Draws], Tensor]
AUGMENTATIONS: Kind[Augment] = CATALOG["augmentation"]

SHIFT = 2  # pixels, for 28 x 28 digits
CROP_PADDING = 4  # pixels, for 32 x 32 CIFAR-10 images


def _crop(x: Tensor, pad: int, offsets: Tensor) -> Tensor:
    """x [R, B, C, H, W] zero-padded by `pad`, then each image cut at its (row, column) offset to H x W."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = (offsets[..., 0, None] + torch.arange(h, device=x.device))[:, :, None, :, None]  # [R, B, 1, H, 1]
    cols = (offsets[..., 1, None] + torch.arange(w, device=x.device))[:, :, None, None, :]  # [R, B, 1, 1, W]
    padded = padded.gather(-2, rows.expand(*x.shape[:3], h, padded.shape[-1]))
    return padded.gather(-1, cols.expand(*x.shape[:3], h, w))


@AUGMENTATIONS.register("none")
def none(x: Tensor, draws: Draws) -> Tensor:
    """the images as they are"""
    return x


@AUGMENTATIONS.register("shift")
def shift(x: Tensor, draws: Draws) -> Tensor:
    """random translation by up to 2 pixels each way, zeros filling in (digits)"""
    return _crop(x, SHIFT, draws.below(2 * SHIFT + 1, (x.shape[1], 2)))


@AUGMENTATIONS.register("crop_flip")
def crop_flip(x: Tensor, draws: Draws) -> Tensor:
    """random crop after 4 pixels of zero padding, and a horizontal flip half the time (CIFAR-10)"""
    offsets = draws.below(2 * CROP_PADDING + 1, (x.shape[1], 2))  # [R, B, 2] (row, column)
    flips = draws.uniform((x.shape[1],)) < 0.5
    cropped = _crop(x, CROP_PADDING, offsets)
    return torch.where(flips[:, :, None, None, None], cropped.flip(-1), cropped)
