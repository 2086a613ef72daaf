"""Model builders (logreg, mlp, cnn), activations, normalization placement and presets.

A builder takes the model config, the dataset's sample shape and class count and
returns an `nn.Module` mapping a batch of inputs to logits. Sample shapes are
(L,) for signals (MNIST-1D), (C, H, W) for images and (2,) for the toy point
sets: logreg and mlp flatten any of them; cnn convolves signals with Conv1d (one
input channel added) and images with Conv2d.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch
from torch import nn

from dlbench.registry import Registry

if TYPE_CHECKING:
    from dlbench.config.schema import ConvLayer, ModelConfig

ACTIVATIONS: Registry[Callable[[], nn.Module]] = Registry("activation")
ACTIVATIONS.register("relu", "max(0, x)")(nn.ReLU)
ACTIVATIONS.register("sigmoid", "1 / (1 + exp(-x)); saturates at both ends")(nn.Sigmoid)
ACTIVATIONS.register("tanh", "tanh(x); zero-centred, saturates at both ends")(nn.Tanh)
ACTIVATIONS.register("leaky_relu", "max(0.01x, x)")(nn.LeakyReLU)
ACTIVATIONS.register("gelu", "x * Phi(x)")(nn.GELU)
ACTIVATIONS.register("identity", "no nonlinearity (a deep linear net)")(nn.Identity)

# a norm is built from its layer's width and spatial dims: 0 after Linear, 1 after Conv1d, 2 after Conv2d
NORMS: Registry[Callable[..., nn.Module]] = Registry("norm")


@NORMS.register("none", "no normalization")
def no_norm(width: int, dims: int = 0) -> nn.Module:
    return nn.Identity()


@NORMS.register("batch", "BatchNorm over the batch, and over positions after a conv (Ioffe & Szegedy 2015)")
def batch_norm(width: int, dims: int = 0) -> nn.Module:
    return nn.BatchNorm2d(width) if dims == 2 else nn.BatchNorm1d(width)


@NORMS.register("layer", "LayerNorm over each sample's units (after a conv: all channels and positions)")
def layer_norm(width: int, dims: int = 0) -> nn.Module:
    # Ba et al. normalize over all units of a layer; for conv features that is GroupNorm with one group
    return nn.LayerNorm(width) if dims == 0 else nn.GroupNorm(1, width)


POOLS: Registry[Callable[[int, int], nn.Module]] = Registry("pooling")
POOLS.register("none", "no pooling")(lambda dims, size: nn.Identity())
POOLS.register("max", "maximum of each pool_size-wide window (stride pool_size)")(
    lambda dims, size: (nn.MaxPool1d if dims == 1 else nn.MaxPool2d)(size))
POOLS.register("avg", "mean of each pool_size-wide window (stride pool_size)")(
    lambda dims, size: (nn.AvgPool1d if dims == 1 else nn.AvgPool2d)(size))


def _activate(width: int, dims: int, cfg: "ModelConfig") -> list[nn.Module]:
    """[norm] -> activation -> [norm], the norm placed by cfg.norm_position."""
    norm = NORMS[cfg.norm].builder
    layers: list[nn.Module] = [ACTIVATIONS[cfg.activation].builder()]
    if cfg.norm != "none":
        module = norm(width, dims)
        if isinstance(module, nn.modules.batchnorm._BatchNorm):  # model.bn_*: torch's defaults or the textbook's
            module.eps, module.momentum = cfg.bn_eps, cfg.bn_momentum
            with torch.no_grad():
                module.running_var.fill_(cfg.bn_running_var)
        layers.insert(0 if cfg.norm_position == "pre" else 1, module)
    return layers


def dense_block(width_in: int, width_out: int, cfg: "ModelConfig") -> nn.Sequential:
    """Linear -> [norm] -> activation -> [norm] -> dropout, norm placed by cfg.norm_position."""
    layers: list[nn.Module] = [nn.Linear(width_in, width_out), *_activate(width_out, 0, cfg)]
    if cfg.dropout > 0:
        layers.append(nn.Dropout(cfg.dropout))
    return nn.Sequential(*layers)


def conv_block(channels_in: int, layer: "ConvLayer", dims: int, cfg: "ModelConfig") -> nn.Sequential:
    """Conv -> [norm] -> activation -> [norm] -> [pool]; model.dropout acts on the dense layers only."""
    conv = (nn.Conv1d if dims == 1 else nn.Conv2d)(channels_in, layer.channels, layer.kernel, layer.stride,
                                                    layer.padding)
    layers: list[nn.Module] = [conv, *_activate(layer.channels, dims, cfg)]
    if layer.pool != "none":
        layers.append(POOLS[layer.pool].builder(dims, layer.pool_size))
    return nn.Sequential(*layers)


def feature_shape(conv: Sequence["ConvLayer"], sample_shape: Sequence[int]) -> tuple[int, ...]:
    """(channels, *positions) after the conv stack; ValueError naming the layer where the input vanishes."""
    if len(sample_shape) not in (1, 3):
        raise ValueError(f"cnn takes signals (L,) or images (C, H, W), not samples of shape {tuple(sample_shape)}")
    channels, *positions = (1, *sample_shape) if len(sample_shape) == 1 else sample_shape
    for i, layer in enumerate(conv):
        positions = [(n + 2 * layer.padding - layer.kernel) // layer.stride + 1 for n in positions]
        if layer.pool != "none":
            positions = [n // layer.pool_size for n in positions]
        if min(positions) < 1:
            raise ValueError(f"model.conv.{i}: the {'x'.join(map(str, sample_shape))} input shrinks to nothing at "
                             "this layer; use more padding, smaller kernels, strides or pools, or fewer layers")
        channels = layer.channels
    return (channels, *positions)


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


class CNN(nn.Module):
    """Conv blocks (Conv1d on signals, Conv2d on images) -> flatten -> dense blocks -> linear head."""

    def __init__(self, sample_shape: tuple[int, ...], num_classes: int, cfg: "ModelConfig") -> None:
        super().__init__()
        channels, *positions = feature_shape(cfg.conv, sample_shape)
        self.add_channel = len(sample_shape) == 1  # a (L,) signal becomes one input channel: (1, L)
        widths = [1 if self.add_channel else sample_shape[0], *(layer.channels for layer in cfg.conv)]
        self.features = nn.Sequential(*(conv_block(c, layer, len(positions), cfg)
                                        for c, layer in zip(widths, cfg.conv)))
        self.classifier = MLP(channels * math.prod(positions), list(cfg.hidden), num_classes, cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x.unsqueeze(1) if self.add_channel else x))


MODELS: Registry[Callable[["ModelConfig", tuple[int, ...], int], nn.Module]] = Registry("model")


@MODELS.register("logreg")
def logreg(cfg: "ModelConfig", sample_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Logistic (softmax) regression: flatten -> one linear layer."""
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(sample_shape), num_classes))


@MODELS.register("mlp")
def mlp(cfg: "ModelConfig", sample_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Multilayer perceptron: flatten -> dense blocks (model.hidden widths) -> linear head."""
    return MLP(math.prod(sample_shape), list(cfg.hidden), num_classes, cfg)


@MODELS.register("cnn")
def cnn(cfg: "ModelConfig", sample_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Convolutional net: model.conv blocks -> flatten -> dense blocks (model.hidden widths) -> linear head."""
    return CNN(sample_shape, num_classes, cfg)


def build(cfg: "ModelConfig", sample_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return MODELS[cfg.kind].builder(cfg, sample_shape, num_classes)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# A preset fills in an architecture by name (`model.preset`); keys written next to it win,
# so `{preset: keras_mnist_cnn, norm: batch}` is that net with BatchNorm.
PRESETS: Registry[Callable[[], dict[str, Any]]] = Registry("model preset")


@PRESETS.register("keras_mnist_cnn", params=241_546, shape=(1, 28, 28))
def keras_mnist_cnn() -> dict[str, Any]:
    """the classic Keras MNIST CNN: conv3x3 32, maxpool 2, conv 64, avgpool 2, conv 128, dense 128, dropout"""
    return {"kind": "cnn", "activation": "relu", "residual": False, "hidden": [128], "dropout": 0.5,
            "conv": [{"channels": 32, "kernel": 3, "pool": "max"},
                     {"channels": 64, "kernel": 3, "pool": "avg"},
                     {"channels": 128, "kernel": 3}]}


@PRESETS.register("mnist1d_cnn", params=5_210, shape=(40,))
def mnist1d_cnn() -> dict[str, Any]:
    """the MNIST-1D reference CNN (Greydanus 2020): 3 x Conv1d 25 channels, stride 2, then linear"""
    return {"kind": "cnn", "activation": "relu", "residual": False, "hidden": [], "dropout": 0.0,
            "conv": [{"channels": 25, "kernel": 5, "stride": 2, "padding": 1},
                     {"channels": 25, "kernel": 3, "stride": 2, "padding": 1},
                     {"channels": 25, "kernel": 3, "stride": 2, "padding": 1}]}
