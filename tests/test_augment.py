"""Augmentation of a stack's image batches: shapes, content kept, per-run generators, determinism."""

from __future__ import annotations

import pytest
import torch

from dlbench.components.augment import AUGMENTATIONS, CROP_PADDING, SHIFT

R, B = 3, 16


def _images(channels: int = 1, size: int = 12) -> torch.Tensor:
    """Distinct positive pixel values inside a zero border wide enough that no shift or crop cuts them."""
    torch.manual_seed(0)
    x = torch.zeros(R, B, channels, size, size)
    inner = size - 2 * CROP_PADDING
    x[..., CROP_PADDING:-CROP_PADDING, CROP_PADDING:-CROP_PADDING] = torch.rand(R, B, channels, inner, inner) + 1
    return x


def _generators(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


@pytest.mark.parametrize("name", AUGMENTATIONS.names())
def test_shape_and_content_are_kept(name: str) -> None:
    x = _images(channels=3)
    out = AUGMENTATIONS[name].builder(x, _generators(0, 1, 2))
    assert out.shape == x.shape and out.dtype == x.dtype
    # every image is a translate (and maybe mirror) of its own: the same pixel values, none lost
    assert torch.equal(out.flatten(2).sort(-1).values, x.flatten(2).sort(-1).values)


@pytest.mark.parametrize("name", AUGMENTATIONS.names())
def test_a_run_draws_from_its_own_generator_only(name: str) -> None:
    x = _images()
    fn = AUGMENTATIONS[name].builder
    together = fn(x, _generators(0, 1, 2))
    again = fn(x, _generators(0, 1, 2))
    assert torch.equal(together, again)  # deterministic given the generators
    # run 1 gets the same augmentation whatever the other runs' generators are, and alone in a stack
    assert torch.equal(fn(x, _generators(7, 1, 9))[1], together[1])
    assert torch.equal(fn(x[1:2], _generators(1))[0], together[1])


@pytest.mark.parametrize("name, most", [("shift", SHIFT), ("crop_flip", CROP_PADDING)])
def test_offsets_vary_within_their_range(name: str, most: int) -> None:
    x = _images()
    out = AUGMENTATIONS[name].builder(x, _generators(0, 1, 2))
    moved = 0
    for r in range(R):
        for b in range(B):
            src, dst = x[r, b, 0], out[r, b, 0]
            found = [(dy, dx, flip) for dy in range(-most, most + 1) for dx in range(-most, most + 1)
                     for flip in (False, True)
                     if torch.equal(torch.roll(src.flip(-1) if flip else src, (dy, dx), (0, 1)), dst)]
            assert found, (r, b)  # a translate of the input by at most `most` pixels
            assert name == "crop_flip" or not any(f for _, _, f in found)  # shift never mirrors
            moved += (0, 0, False) not in found
    assert moved > R * B // 2  # most images moved: the offsets are random, not all zero
