"""Data augmentation for image batches of a stack, on the device, drawn per run.

`augment(x, generators)` takes the runs' batches x [R, B, C, H, W] and one torch.Generator
per run (on x's device); run r's random offsets and flips come from generators[r] only,
so a run draws the same augmentation whatever stack it trains in.

- shift: each image moved by up to SHIFT pixels in each direction, zeros filling in
  (small translations: the classic augmentation for digits).
- crop_flip: zero padding of CROP_PADDING pixels, a random crop of the original size,
  and a horizontal flip with probability 1/2 (the standard CIFAR-10 augmentation).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from dlbench.catalog import CATALOG, Kind

Augment = Callable[[Tensor, list[torch.Generator]], Tensor]
AUGMENTATIONS: Kind[Augment] = CATALOG["augmentation"]

SHIFT = 2  # pixels, for 28 x 28 digits
CROP_PADDING = 4  # pixels, for 32 x 32 CIFAR-10 images


def _offsets(generators: list[torch.Generator], batch: int, span: int, device: torch.device) -> Tensor:
    """[R, B, 2] integer (row, column) offsets in [0, span), run r's drawn from generators[r]."""
    return torch.stack([torch.randint(0, span, (batch, 2), generator=g, device=device) for g in generators])


def _crop(x: Tensor, pad: int, offsets: Tensor) -> Tensor:
    """x [R, B, C, H, W] zero-padded by `pad`, then each image cut at its (row, column) offset to H x W."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = (offsets[..., 0, None] + torch.arange(h, device=x.device))[:, :, None, :, None]  # [R, B, 1, H, 1]
    cols = (offsets[..., 1, None] + torch.arange(w, device=x.device))[:, :, None, None, :]  # [R, B, 1, 1, W]
    padded = padded.gather(-2, rows.expand(*x.shape[:3], h, padded.shape[-1]))
    return padded.gather(-1, cols.expand(*x.shape[:3], h, w))


@AUGMENTATIONS.register("none")
def none(x: Tensor, generators: list[torch.Generator]) -> Tensor:
    """the images as they are"""
    return x


@AUGMENTATIONS.register("shift")
def shift(x: Tensor, generators: list[torch.Generator]) -> Tensor:
    """random translation by up to 2 pixels each way, zeros filling in (digits)"""
    return _crop(x, SHIFT, _offsets(generators, x.shape[1], 2 * SHIFT + 1, x.device))


@AUGMENTATIONS.register("crop_flip")
def crop_flip(x: Tensor, generators: list[torch.Generator]) -> Tensor:
    """random crop after 4 pixels of zero padding, and a horizontal flip half the time (CIFAR-10)"""
    offsets = _offsets(generators, x.shape[1], 2 * CROP_PADDING + 1, x.device)
    flips = torch.stack([torch.rand(x.shape[1], generator=g, device=x.device) < 0.5 for g in generators])
    cropped = _crop(x, CROP_PADDING, offsets)
    return torch.where(flips[:, :, None, None, None], cropped.flip(-1), cropped)
