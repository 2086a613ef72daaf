"""Losses, all with one convention: the model outputs logits, the targets are class indices.

A loss that needs one-hot targets (mse, bce) builds them itself; predictions are
always argmax of the logits. The losses in SMOOTHABLE take label smoothing
(`regularization.label_smoothing`) through `build`.
"""

from __future__ import annotations

import functools
from typing import Callable

import torch
import torch.nn.functional as F

from dlbench.registry import Registry

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LOSSES: Registry[LossFn] = Registry("loss")


def _one_hot(targets: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    return F.one_hot(targets, logits.shape[-1]).to(logits.dtype)


@LOSSES.register("cross_entropy")
def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """softmax cross-entropy on the logits (F.cross_entropy)"""
    return F.cross_entropy(logits, targets)


@LOSSES.register("nll")
def nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log-softmax then negative log-likelihood (same value as cross_entropy, two ops)"""
    return F.nll_loss(F.log_softmax(logits, dim=-1), targets)


@LOSSES.register("mse")
def mse(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """squared error of softmax outputs vs one-hot targets, summed over classes, mean over samples"""
    return (F.softmax(logits, dim=-1) - _one_hot(targets, logits)).pow(2).sum(-1).mean()


@LOSSES.register("mse_sigmoid")
def mse_sigmoid(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """squared error of per-class sigmoid outputs vs one-hot targets (learns slowly where a sigmoid saturates)"""
    return (torch.sigmoid(logits) - _one_hot(targets, logits)).pow(2).sum(-1).mean()


@LOSSES.register("bce")
def bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """binary cross-entropy of per-class sigmoid outputs vs one-hot targets"""
    return F.binary_cross_entropy_with_logits(logits, _one_hot(targets, logits))



SMOOTHABLE = ("cross_entropy", "nll")  # the losses on log-softmax, whose targets can be smoothed


def smoothed_cross_entropy(logits: torch.Tensor, targets: torch.Tensor,
                           smoothing: float | torch.Tensor) -> torch.Tensor:
    """Cross-entropy against targets (1 - s) one-hot + s / classes, as F.cross_entropy(label_smoothing=s).

    Written out rather than calling F.cross_entropy so that s may be a tensor: one value per
    run when the engine vmaps the loss over a stack whose runs smooth differently.
    """
    log_probs = F.log_softmax(logits, dim=-1)
    return (1 - smoothing) * F.nll_loss(log_probs, targets) - smoothing * log_probs.mean(-1).mean()


def build(name: str, label_smoothing: float = 0.0) -> LossFn:
    """The loss `name`, with targets smoothed by `label_smoothing` (cross_entropy and nll only)."""
    if label_smoothing == 0:
        return LOSSES[name].builder
    if name not in SMOOTHABLE:
        raise ValueError(f"loss {name!r} takes no label smoothing; only {', '.join(SMOOTHABLE)} do")
    return functools.partial(smoothed_cross_entropy, smoothing=label_smoothing)
