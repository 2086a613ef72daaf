"""Label smoothing matches F.cross_entropy(label_smoothing=) for both losses that take it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dlbench.components import losses


@pytest.mark.parametrize("name", losses.SMOOTHABLE)
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5])
def test_smoothed_loss_matches_torch(name: str, smoothing: float) -> None:
    torch.manual_seed(0)
    logits, targets = torch.randn(32, 10) * 3, torch.randint(0, 10, (32,))
    ours = losses.build(name, smoothing)(logits, targets)
    assert ours.shape == (32,)  # per-sample losses
    reference = F.cross_entropy(logits, targets, label_smoothing=smoothing)
    torch.testing.assert_close(ours.mean(), reference, rtol=1e-6, atol=0)


def test_per_run_smoothing_under_vmap() -> None:
    """The engine's case: a stack's logits (runs, classes, samples), one smoothing value per run."""
    torch.manual_seed(0)
    logits, targets = torch.randn(3, 32, 10), torch.randint(0, 10, (32,))
    smoothing = torch.tensor([0.0, 0.1, 0.3])
    ours = losses.smoothed_cross_entropy(logits.transpose(1, 2), targets.expand(3, -1), smoothing.view(-1, 1)).mean(1)
    expected = torch.stack([F.cross_entropy(logits[r], targets, label_smoothing=float(smoothing[r])) for r in range(3)])
    torch.testing.assert_close(ours, expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize("name", [n for n in losses.LOSSES.names() if n not in losses.SMOOTHABLE])
def test_losses_without_log_softmax_refuse_smoothing(name: str) -> None:
    with pytest.raises(ValueError, match=f"loss {name!r} takes no label smoothing"):
        losses.build(name, 0.1)
    assert losses.build(name, 0.0) is losses.LOSSES[name].builder
