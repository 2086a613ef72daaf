"""Model builders (logreg, mlp), activations and normalization placement.

A builder takes the model config, the dataset's sample shape and class count and
returns an `nn.Module` mapping a batch of inputs to logits.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from dlbench.registry import Registry

if TYPE_CHECKING:
    from dlbench.config import ModelConfig

ACTIVATIONS: Registry[Callable[[], nn.Module]] = Registry("activation")
ACTIVATIONS.register("relu", "max(0, x)")(nn.ReLU)
ACTIVATIONS.register("sigmoid", "1 / (1 + exp(-x)); saturates at both ends")(nn.Sigmoid)
ACTIVATIONS.register("tanh", "tanh(x); zero-centred, saturates at both ends")(nn.Tanh)
ACTIVATIONS.register("leaky_relu", "max(0.01x, x)")(nn.LeakyReLU)
ACTIVATIONS.register("gelu", "x * Phi(x)")(nn.GELU)
ACTIVATIONS.register("identity", "no nonlinearity (a deep linear net)")(nn.Identity)

NORMS: Registry[Callable[[int], nn.Module]] = Registry("norm")
NORMS.register("none", "no normalization")(lambda width: nn.Identity())
NORMS.register("batch", "BatchNorm over the batch (Ioffe & Szegedy 2015)")(nn.BatchNorm1d)
NORMS.register("layer", "LayerNorm over the features of each sample")(nn.LayerNorm)


def dense_block(width_in: int, width_out: int, cfg: "ModelConfig") -> nn.Sequential:
    """Linear -> [norm] -> activation -> [norm] -> dropout, norm placed by cfg.norm_position."""
    layers: list[nn.Module] = [nn.Linear(width_in, width_out)]
    norm = NORMS[cfg.norm].builder
    if cfg.norm != "none" and cfg.norm_position == "pre":
        layers.append(norm(width_out))
    layers.append(ACTIVATIONS[cfg.activation].builder())
    if cfg.norm != "none" and cfg.norm_position == "post":
        layers.append(norm(width_out))
    if cfg.dropout > 0:
        layers.append(nn.Dropout(cfg.dropout))
    return nn.Sequential(*layers)


class MLP(nn.Module):
    def __init__(self, n_in: int, hidden: list[int], n_out: int, cfg: "ModelConfig") -> None:
        super().__init__()
        widths = [n_in, *hidden]
        self.blocks = nn.ModuleList(dense_block(a, b, cfg) for a, b in zip(widths, widths[1:]))
        self.skip = [cfg.residual and a == b for a, b in zip(widths, widths[1:])]
        self.head = nn.Linear(widths[-1], n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for block, skip in zip(self.blocks, self.skip):
            x = x + block(x) if skip else block(x)
        return self.head(x)


MODELS: Registry[Callable[["ModelConfig", tuple[int, ...], int], nn.Module]] = Registry("model")


@MODELS.register("logreg")
def logreg(cfg: "ModelConfig", sample_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Logistic (softmax) regression: flatten -> one linear layer."""
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(sample_shape), num_classes))


@MODELS.register("mlp")
def mlp(cfg: "ModelConfig", sample_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Multilayer perceptron: flatten -> dense blocks (model.hidden widths) -> linear head."""
    return MLP(math.prod(sample_shape), list(cfg.hidden), num_classes, cfg)


def build(cfg: "ModelConfig", sample_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return MODELS[cfg.kind].builder(cfg, sample_shape, num_classes)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
