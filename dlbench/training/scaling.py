"""fp16 loss scaling, each run of a stack its own, with torch.amp.GradScaler's semantics per run.

GradScaler scales one model's loss by S before the backward, so that small fp16 gradients do not
flush to zero, then per step:

1. unscale: every gradient times 1/S (float32), and `found_inf` if any is then inf or nan;
2. step: skipped when found_inf (the weights and the optimizer's state stay as they were);
3. update: found_inf -> S *= backoff, the count of good steps back to 0; else the count + 1, and
   at `growth_interval` good steps S *= growth (where S * growth is still finite), count back to 0.

Here each run has its own S and count (rows of a tensor): a run that overflows skips its own
update and leaves the other runs' alone. Everything is device tensors: no host read per step.
The functions below are that logic on tensors, so that it is tested as such (tests/test_gpu_path.py).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

INITIAL_SCALE = 2.0 ** 16  # as torch.amp.GradScaler's defaults
GROWTH_INTERVAL, GROWTH, BACKOFF = 2000, 2.0, 0.5


def _rows(mask: Tensor, like: Tensor) -> Tensor:
    """A per-run [R] mask shaped to broadcast over a stacked tensor [R, ...]."""
    return mask.view(-1, *[1] * (like.dim() - 1))


@torch.no_grad()
def unscale_(grads: list[Tensor], scale: Tensor) -> Tensor:
    """Each run's gradients (stacked: row r is run r's) times 1 / its scale, in place; returns [R] bool:
    the runs with a gradient that is not finite after it (GradScaler's found_inf, per run). Those runs'
    gradients are zeroed (a clipping norm or an update then reads zeros, not nan)."""
    inverse = scale.double().reciprocal().float()  # as GradScaler computes its inverse scale
    overflow = torch.zeros(scale.shape, dtype=torch.bool, device=scale.device)
    for g in grads:
        g.mul_(_rows(inverse, g))
        overflow |= ~torch.isfinite(g).flatten(1).all(1)
    for g in grads:
        g.masked_fill_(_rows(overflow, g), 0.0)
    return overflow


@torch.no_grad()
def skipping(overflow: Tensor, kept: list[Tensor], step: Callable[[], list[Tensor]]) -> None:
    """Run `step` (which updates the tensors `kept` in place, and returns the tensors it created: state
    allocated on first use, zeros before), then put back the rows of the runs that overflowed: their
    tensors as before the step, the new ones zero. A skipped step for those runs, whatever `step` did."""
    before = [t.clone() for t in kept]
    created = step()
    for t, old in zip(kept, before):
        t.copy_(torch.where(_rows(overflow, t), old, t))
    for t in created:
        t.masked_fill_(_rows(overflow, t), 0)


@torch.no_grad()
def update(scale: Tensor, good_steps: Tensor, overflow: Tensor, *, growth_interval: int = GROWTH_INTERVAL,
           growth: float = GROWTH, backoff: float = BACKOFF) -> tuple[Tensor, Tensor]:
    """Each run's next (scale, good steps) after a step with `overflow` (torch._amp_update_scale_, per run)."""
    good = torch.where(overflow, 0, good_steps + 1)
    grown = scale * growth
    grow = (good >= growth_interval) & ~overflow
    new_scale = torch.where(overflow, scale * backoff, torch.where(grow & torch.isfinite(grown), grown, scale))
    return new_scale, torch.where(grow, 0, good)
