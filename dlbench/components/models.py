"""Model builders (logreg, mlp, cnn), activations, normalization placement and presets.

A builder takes the model config, the dataset's sample shape and class count and
returns an `nn.Module` mapping a batch of inputs to logits. Sample shapes are
(L,) for signals (MNIST-1D), (C, H, W) for images and (2,) for the toy point
sets: logreg and mlp flatten any of them; cnn convolves signals with Conv1d (one
input channel added) and images with Conv2d.
"""

from __future__ import annotations

import math
from typing import Any
from collections.abc import Callable

import torch
from torch import nn

from dlbench.catalog import CATALOG, Kind
from dlbench.catalog.shapes import feature_shape


ACTIVATIONS: Kind[Callable[[], nn.Module]] = CATALOG["activation"]
ACTIVATIONS.register("relu")(nn.ReLU)
ACTIVATIONS.register("sigmoid")(nn.Sigmoid)
ACTIVATIONS.register("tanh")(nn.Tanh)
ACTIVATIONS.register("leaky_relu")(nn.LeakyReLU)
ACTIVATIONS.register("gelu")(nn.GELU)
ACTIVATIONS.register("identity")(nn.Identity)

# a norm is built from its layer's width and spatial dims: 0 after Linear, 1 after Conv1d, 2 after Conv2d
NORMS: Kind[Callable[..., nn.Module]] = CATALOG["norm"]


@NORMS.register("none")
def no_norm(width: int, dims: int = 0) -> nn.Module:
    return nn.Identity()


@NORMS.register("batch")
def batch_norm(width: int, dims: int = 0) -> nn.Module:
    return nn.BatchNorm2d(width) if dims == 2 else nn.BatchNorm1d(width)


@NORMS.register("layer")
def layer_norm(width: int, dims: int = 0) -> nn.Module:
    # Ba et al. normalize over all units of a layer; for conv features that is GroupNorm with one group
    return nn.LayerNorm(width) if dims == 0 else nn.GroupNorm(1, width)


POOLS: Kind[Callable[[int, int], nn.Module]] = CATALOG["pooling"]
POOLS.register("none")(lambda dims, size: nn.Identity())
POOLS.register("max")(
    lambda dims, size: (nn.MaxPool1d if dims == 1 else nn.MaxPool2d)(size))
POOLS.register("avg")(
    lambda dims, size: (nn.AvgPool1d if dims == 1 else nn.AvgPool2d)(size))


def _activate(width: int, dims: int, cfg: Any) -> list[nn.Module]:
    """[norm] -> activation -> [norm], the norm placed by cfg.norm_position."""
    norm = NORMS[cfg.norm].builder
    activation = ACTIVATIONS[cfg.activation].builder()
    if isinstance(activation, (nn.ReLU, nn.LeakyReLU)):
        # in place: its input, a layer's or a norm's fresh output, serves nothing else (one tensor less per layer)
        activation.inplace = True
    layers: list[nn.Module] = [activation]
    if cfg.norm != "none":
        module = norm(width, dims)
        if isinstance(module, nn.modules.batchnorm._BatchNorm):  # model.bn_*: torch's defaults or the textbook's
            module.eps, module.momentum = cfg.bn_eps, cfg.bn_momentum
            if module.running_var is not None:  # None only without running statistics
                with torch.no_grad():
                    module.running_var.fill_(cfg.bn_running_var)
        layers.insert(0 if cfg.norm_position == "pre" else 1, module)
    return layers


def dense_block(width_in: int, width_out: int, cfg: Any) -> nn.Sequential:
    """Linear -> [norm] -> activation -> [norm] -> dropout, norm placed by cfg.norm_position."""
    layers: list[nn.Module] = [nn.Linear(width_in, width_out), *_activate(width_out, 0, cfg)]
    if cfg.dropout > 0:
        layers.append(nn.Dropout(cfg.dropout))
    return nn.Sequential(*layers)


def conv_block(channels_in: int, layer: Any, dims: int, cfg: Any) -> nn.Sequential:
    """Conv -> [norm] -> activation -> [norm] -> [pool]; model.dropout acts on the dense layers only."""
    conv = (nn.Conv1d if dims == 1 else nn.Conv2d)(channels_in, layer.channels, layer.kernel, layer.stride,
                                                    layer.padding)
    layers: list[nn.Module] = [conv, *_activate(layer.channels, dims, cfg)]
    if layer.pool != "none":
        layers.append(POOLS[layer.pool].builder(dims, layer.pool_size))
    return nn.Sequential(*layers)



class MLP(nn.Module):
    def __init__(self, n_in: int, hidden: list[int], n_out: int, cfg: Any) -> None:
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


class CNN(nn.Module):
    """Conv blocks (Conv1d on signals, Conv2d on images) -> flatten -> dense blocks -> linear head."""

    def __init__(self, sample_shape: tuple[int, ...], num_classes: int, cfg: Any) -> None:
        super().__init__()
        channels, *positions = feature_shape(cfg.conv, sample_shape)
        self.add_channel = len(sample_shape) == 1  # a (L,) signal becomes one input channel: (1, L)
        widths = [1 if self.add_channel else sample_shape[0], *(layer.channels for layer in cfg.conv)]
        self.features = nn.Sequential(*(conv_block(c, layer, len(positions), cfg)
                                        for c, layer in zip(widths, cfg.conv)))
        self.classifier = MLP(channels * math.prod(positions), list(cfg.hidden), num_classes, cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x.unsqueeze(1) if self.add_channel else x))


MODELS: Kind[Callable[[Any, tuple[int, ...], int], nn.Module]] = CATALOG["model"]


@MODELS.register("logreg")
def logreg(cfg: Any, sample_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Logistic (softmax) regression: flatten -> one linear layer."""
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(sample_shape), num_classes))


@MODELS.register("mlp")
def mlp(cfg: Any, sample_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Multilayer perceptron: flatten -> dense blocks (model.hidden widths) -> linear head."""
    return MLP(math.prod(sample_shape), list(cfg.hidden), num_classes, cfg)


@MODELS.register("cnn")
def cnn(cfg: Any, sample_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Convolutional net: model.conv blocks -> flatten -> dense blocks (model.hidden widths) -> linear head."""
    return CNN(sample_shape, num_classes, cfg)


def build(cfg: Any, sample_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return MODELS[cfg.kind].builder(cfg, sample_shape, num_classes)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


