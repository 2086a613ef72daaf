"""Augmentation of a stack's image batches: shapes, content kept, per-run streams (a torch.Generator per run,
or the counter-based streams drawn for the stack at once), determinism."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from dlbench.components.augment import AUGMENTATIONS, CROP_PADDING, SHIFT, Draws, Looped
from dlbench.training import streams

R, B = 3, 16


def _images(channels: int = 1, size: int = 12) -> torch.Tensor:
    """Distinct positive pixel values inside a zero border wide enough that no shift or crop cuts them."""
    torch.manual_seed(0)
    x = torch.zeros(R, B, channels, size, size)
    inner = size - 2 * CROP_PADDING
    x[..., CROP_PADDING:-CROP_PADDING, CROP_PADDING:-CROP_PADDING] = torch.rand(R, B, channels, inner, inner) + 1
    return x


def _generators(*seeds: int) -> Draws:
    return Looped([torch.Generator().manual_seed(s) for s in seeds])


def _counters(*seeds: int) -> streams.Counter:
    """Each run's counter-based stream, from the position its earlier draws reached (here 40)."""
    return streams.Counter(torch.tensor([streams.key(s, 2) for s in seeds]), 40)


DRAWS: dict[str, Callable[..., Draws]] = {"looped": _generators, "batched": _counters}


@pytest.mark.parametrize("draws", DRAWS)
@pytest.mark.parametrize("name", AUGMENTATIONS.names())
def test_shape_and_content_are_kept(name: str, draws: str) -> None:
    x = _images(channels=3)
    out = AUGMENTATIONS[name].builder(x, DRAWS[draws](0, 1, 2))
    assert out.shape == x.shape and out.dtype == x.dtype
    # every image is a translate (and maybe mirror) of its own: the same pixel values, none lost
    assert torch.equal(out.flatten(2).sort(-1).values, x.flatten(2).sort(-1).values)


@pytest.mark.parametrize("draws", DRAWS)
@pytest.mark.parametrize("name", AUGMENTATIONS.names())
def test_a_run_draws_from_its_own_stream_only(name: str, draws: str) -> None:
    x = _images()
    fn, make = AUGMENTATIONS[name].builder, DRAWS[draws]
    together = fn(x, make(0, 1, 2))
    again = fn(x, make(0, 1, 2))
    assert torch.equal(together, again)  # deterministic given the seeds
    # run 1 gets the same augmentation whatever the other runs' seeds are, and alone in a stack
    assert torch.equal(fn(x, make(7, 1, 9))[1], together[1])
    assert torch.equal(fn(x[1:2], make(1))[0], together[1])


def test_a_counter_stream_moves_on_by_what_was_drawn() -> None:
    """The next step's draws start where this step's ended: one stream, never the same numbers twice."""
    x = _images()
    draws = _counters(0, 1, 2)
    first = AUGMENTATIONS["crop_flip"].builder(x, draws)
    assert draws.position == 40 + B * 2 + B  # offsets (row, column), then flips
    second = AUGMENTATIONS["crop_flip"].builder(x, draws)
    assert not torch.equal(first, second)
    assert torch.equal(AUGMENTATIONS["crop_flip"].builder(x, streams.Counter(draws.keys, 40 + 3 * B)), second)


@pytest.mark.parametrize("draws", DRAWS)
@pytest.mark.parametrize("name, most", [("shift", SHIFT), ("crop_flip", CROP_PADDING)])
def test_offsets_vary_within_their_range(name: str, most: int, draws: str) -> None:
    x = _images()
    out = AUGMENTATIONS[name].builder(x, DRAWS[draws](0, 1, 2))
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
