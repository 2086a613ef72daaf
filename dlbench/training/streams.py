"""Per-run random numbers for a whole stack in one batched computation: counter-based streams.

Run r's draws are a hash of (its key, position in its stream): the key comes from its seed
(`key`), the position counts the numbers the run has drawn so far. Nothing depends on the
other runs of the stack, its size or the device's launch geometry, so a run draws the same
numbers in any stack, and the whole stack's dropout masks or input noise are a few
elementwise kernels, not one kernel per run. (torch's own Philox generator cannot do this:
one call on a stacked tensor hands out numbers by element position in the launch, so a run's
numbers would depend on its place in the stack.)

The hash is a 32-bit integer mixer (lowbias32, C. Wellons) applied three times, computed in
int64 with 16-bit partial products so that no intermediate overflows; 24 bits of it make a
uniform float in [0, 1) or an integer below a small bound, two uniforms a normal (Box-Muller).
Statistically fine for masks, noise, crops and flips; not a cryptographic generator.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

MASK32 = 0xFFFFFFFF


def key(seed: int, stream: int) -> list[int]:
    """A run's two 32-bit key words for one stream (as its torch.Generator would be seeded)."""
    return [int(w) for w in np.random.SeedSequence([seed, stream, 1]).generate_state(2, np.uint32)]


def _mul32(x: Tensor, c: int) -> Tensor:
    """x * c mod 2^32 for x < 2^32, without an int64 intermediate above 2^48."""
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & MASK32


def _mix(x: Tensor) -> Tensor:
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def bits(keys: Tensor, position: int, shape: tuple[int, ...]) -> Tensor:
    """[runs, *shape] int64 hashes in [0, 2^32): run r's numbers at positions position, position + 1, ..."""
    n = math.prod(shape)
    index = torch.arange(position, position + n, device=keys.device, dtype=torch.int64)
    k0, k1 = keys[:, :1], keys[:, 1:]
    h = _mix((index & MASK32)[None] ^ k0)
    h = _mix(h ^ (index >> 32)[None] ^ k1)
    h = _mix(h ^ k0)
    return h.view(len(keys), *shape)


def uniform(keys: Tensor, position: int, shape: tuple[int, ...]) -> Tensor:
    """[runs, *shape] float32 uniforms in [0, 1) (24 bits each)."""
    return (bits(keys, position, shape) >> 8).to(torch.float32) * 2.0 ** -24


def below(keys: Tensor, position: int, shape: tuple[int, ...], high: int) -> Tensor:
    """[runs, *shape] int64 integers in [0, high): 24 bits times high, top bits
    (exact integer arithmetic; high < 2^24)."""
    return ((bits(keys, position, shape) >> 8) * high) >> 24


def normal(keys: Tensor, position: int, shape: tuple[int, ...]) -> Tensor:
    """[runs, *shape] standard normals (Box-Muller; uses 2 x prod(shape) positions)."""
    n = math.prod(shape)
    u1 = uniform(keys, position, shape)
    u2 = uniform(keys, position + n, shape)
    return torch.sqrt(-2.0 * torch.log1p(-u1)) * torch.cos(2.0 * math.pi * u2)


class Counter:
    """Draws (dlbench.components.augment.Draws) of every run's stream at once, from `position` on:
    `position` counts on with each draw (the caller keeps it for the next step)."""

    def __init__(self, keys: Tensor, position: int) -> None:
        self.keys, self.position = keys, position

    def below(self, high: int, shape: tuple[int, ...]) -> Tensor:
        out = below(self.keys, self.position, shape, high)
        self.position += math.prod(shape)
        return out

    def uniform(self, shape: tuple[int, ...]) -> Tensor:
        out = uniform(self.keys, self.position, shape)
        self.position += math.prod(shape)
        return out
