"""Every registry entry, tested the moment it is registered (parametrized over the registries)."""

from __future__ import annotations


import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlbench.components import models
from sweep_util import reading

from dlbench.errors import ConfigError
from dlbench.config.schema import section
from dlbench.components.inits import INITS, initialize
from dlbench.components.losses import LOSSES
from dlbench.components.models import ACTIVATIONS, MODELS, NORMS

# ---------------------------------------------------------------- init schemes

FAN_IN, FAN_OUT = 400, 300
EXPECTED_STD = {
    "zeros": 0.0,
    "constant": 0.0,
    "normal": 0.05,
    "uniform": 0.05,
    "xavier_normal": math.sqrt(2 / (FAN_IN + FAN_OUT)),
    "xavier_uniform": math.sqrt(2 / (FAN_IN + FAN_OUT)),
    "he_normal": math.sqrt(2 / FAN_IN),
    "he_uniform": math.sqrt(2 / FAN_IN),
    "lecun_normal": math.sqrt(1 / FAN_IN),
    "orthogonal": math.sqrt(1 / FAN_IN),  # rows orthonormal: each row has unit norm over FAN_IN entries
    "default": math.sqrt(1 / (3 * FAN_IN)),  # kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in))
}


def test_every_init_has_an_expectation() -> None:
    assert set(EXPECTED_STD) == set(INITS.names())


@pytest.mark.parametrize("scheme", INITS.names())
def test_init_scheme_statistics(scheme: str) -> None:
    torch.manual_seed(0)
    layer = nn.Linear(FAN_IN, FAN_OUT)
    initialize(layer, reading("init", scheme=scheme, std=0.05, value=0.25))
    w = layer.weight.detach()
    if scheme == "constant":
        assert torch.all(w == 0.25)
    else:
        assert w.std().item() == pytest.approx(EXPECTED_STD[scheme], rel=0.05, abs=1e-12)
        assert abs(w.mean().item()) < 0.01
    if scheme == "default":
        assert layer.bias.abs().sum() > 0  # PyTorch's own uniform biases are kept
    else:
        assert torch.all(layer.bias == 0)
    if scheme == "orthogonal":
        torch.testing.assert_close(w @ w.T, torch.eye(FAN_OUT), atol=1e-4, rtol=0)


def test_init_leaves_norm_layers_alone() -> None:
    net = models.build(section("model", hidden=[8], norm="batch"), (4,), 3)
    initialize(net, section("init", scheme="zeros"))
    bn = [m for m in net.modules() if isinstance(m, nn.BatchNorm1d)][0]
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)


# ---------------------------------------------------------------- activations, norms, models

REFERENCE_ACT = {
    "relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
    "leaky_relu": lambda x: F.leaky_relu(x, 0.01), "gelu": F.gelu, "identity": lambda x: x,
}


@pytest.mark.parametrize("name", ACTIVATIONS.names())
def test_activation_values(name: str) -> None:
    x = torch.linspace(-4, 4, 33)
    torch.testing.assert_close(ACTIVATIONS[name].builder()(x), REFERENCE_ACT[name](x))


@pytest.mark.parametrize("norm", NORMS.names())
@pytest.mark.parametrize("position", ["pre", "post"])
def test_norm_placement(norm: str, position: str) -> None:
    if norm == "none" and position == "post":  # no norm to place: refused, not ignored
        with pytest.raises(ConfigError, match="model.norm_position: 'post' is invalid"):
            section("model", norm=norm, norm_position=position)
        return
    block = models.dense_block(5, 7, section("model", norm=norm, norm_position=position, activation="tanh"))
    kinds = [type(m).__name__ for m in block]
    expected_norm = {"none": None, "batch": "BatchNorm1d", "layer": "LayerNorm"}[norm]
    if expected_norm is None:
        assert kinds == ["Linear", "Tanh"]
    elif position == "pre":
        assert kinds == ["Linear", expected_norm, "Tanh"]
    else:
        assert kinds == ["Linear", "Tanh", expected_norm]
    assert block(torch.randn(6, 5)).shape == (6, 7)


EXPECTED_PARAMS = {
    "logreg": 40 * 10 + 10,  # the MNIST-1D paper's logistic regression: 410
    "mlp": (40 * 100 + 100) + (100 * 100 + 100) + (100 * 10 + 10),
    "cnn": 5_210,  # the MNIST-1D reference CNN (model.preset: mnist1d_cnn)
}
MODEL_FIELDS = {"cnn": {"preset": "mnist1d_cnn"}}  # a cnn needs a conv stack


@pytest.mark.parametrize("kind", MODELS.names())
def test_model_shapes_and_parameter_counts(kind: str) -> None:
    fields = MODEL_FIELDS.get(kind, {"kind": kind, "hidden": [100, 100]})
    net = models.build(reading("model", **fields), (40,), 10)
    assert net(torch.randn(8, 40)).shape == (8, 10)
    if kind in EXPECTED_PARAMS:
        assert models.count_parameters(net) == EXPECTED_PARAMS[kind]


def test_residual_and_dropout() -> None:
    cfg = section("model", hidden=[16, 16, 8], residual=True, dropout=0.5, activation="identity")
    net = models.build(cfg, (4,), 3)
    assert net.skip == [False, True, False]  # skips only between equal widths
    assert sum(isinstance(m, nn.Dropout) for m in net.modules()) == 3
    net.eval()
    x = torch.randn(5, 4)
    torch.testing.assert_close(net(x), net(x))  # no dropout at eval time
    net.train()
    assert not torch.equal(net(x), net(x))


# ---------------------------------------------------------------- losses


def test_every_loss_has_a_reference() -> None:
    assert set(LOSSES.names()) == {"cross_entropy", "nll", "mse", "mse_sigmoid", "bce"}


@pytest.mark.parametrize("name", LOSSES.names())
def test_loss_values(name: str) -> None:
    torch.manual_seed(0)
    logits, targets = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    one_hot = F.one_hot(targets, 4).float()
    expected = {
        "cross_entropy": -torch.log_softmax(logits, -1)[torch.arange(6), targets].mean(),
        "nll": -torch.log_softmax(logits, -1)[torch.arange(6), targets].mean(),
        "mse": ((torch.softmax(logits, -1) - one_hot) ** 2).sum(-1).mean(),
        "mse_sigmoid": ((torch.sigmoid(logits) - one_hot) ** 2).sum(-1).mean(),
        "bce": -(one_hot * torch.log(torch.sigmoid(logits))
                 + (1 - one_hot) * torch.log(1 - torch.sigmoid(logits))).mean(),
    }[name]
    per_sample = LOSSES[name].builder(logits.requires_grad_(), targets)
    assert per_sample.shape == (6,)
    torch.testing.assert_close(per_sample.mean(), expected)
    # a stack's layout: (runs, classes, samples) -> (runs, samples), each run as on its own
    stacked = LOSSES[name].builder(torch.stack([logits, 2 * logits]).transpose(1, 2), targets.expand(2, -1))
    torch.testing.assert_close(stacked, torch.stack([per_sample, LOSSES[name].builder(2 * logits, targets)]))
    per_sample.mean().backward()
    assert torch.isfinite(logits.grad).all()
