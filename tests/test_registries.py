"""Every registry entry, tested the moment it is registered (parametrized over the registries)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlbench.components import models
from dlbench.components import optim
from dlbench.config.schema import InitConfig, ModelConfig, OptimizerConfig
from dlbench.components.inits import INITS, initialize
from dlbench.components.losses import LOSSES
from dlbench.components.models import ACTIVATIONS, MODELS, NORMS

# ---------------------------------------------------------------- optimizers

# name -> the torch.optim call it must be (weight decay as applied to weights only)
REFERENCE = {
    "sgd": lambda p, wd: torch.optim.SGD(p, lr=0.05, weight_decay=wd),
    "momentum": lambda p, wd: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=wd),
    "nesterov": lambda p, wd: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=wd),
    "adagrad": lambda p, wd: torch.optim.Adagrad(p, lr=0.05, eps=1e-8, weight_decay=wd),
    "rmsprop": lambda p, wd: torch.optim.RMSprop(p, lr=0.05, alpha=0.99, eps=1e-8, weight_decay=wd),
    "adam": lambda p, wd: torch.optim.Adam(p, lr=0.05, weight_decay=wd),
    "adamw": lambda p, wd: torch.optim.AdamW(p, lr=0.05, weight_decay=wd),
}


def test_every_optimizer_has_a_reference() -> None:
    assert set(REFERENCE) == set(optim.OPTIMIZERS.names())


def _trajectory(make_opt, steps: int = 5) -> list[torch.Tensor]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    opt = make_opt(net)
    out = []
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
        out.append(torch.cat([p.detach().flatten() for p in net.parameters()]).clone())
    return out


@pytest.mark.parametrize("name", optim.OPTIMIZERS.names())
@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_optimizer_matches_torch_optim(name: str, wd: float) -> None:
    cfg = OptimizerConfig(name=name, lr=0.05, weight_decay=wd)

    def reference(net: nn.Module) -> torch.optim.Optimizer:
        weights = [p for p in net.parameters() if p.dim() > 1]
        biases = [p for p in net.parameters() if p.dim() == 1]
        groups = [{"params": weights, "weight_decay": wd}, {"params": biases, "weight_decay": 0.0}]
        return REFERENCE[name](groups, wd)

    ours, ref = _trajectory(lambda net: optim.build(net, cfg)), _trajectory(reference)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_weight_decay_skips_biases_and_adamw_decouples() -> None:
    net = nn.Linear(3, 2)
    with torch.no_grad():
        net.weight.fill_(1.0)
        net.bias.fill_(1.0)
    opt = optim.build(net, OptimizerConfig(name="adamw", lr=0.1, weight_decay=0.5))
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    # zero gradient: Adam's step is 0, only decoupled decay moves the weights: w *= 1 - lr * wd
    assert torch.allclose(net.weight, torch.full_like(net.weight, 1 - 0.1 * 0.5))
    assert torch.equal(net.bias, torch.ones_like(net.bias))


def test_momentum_default_depends_on_optimizer() -> None:
    assert optim.momentum_of(OptimizerConfig(name="momentum")) == 0.9
    assert optim.momentum_of(OptimizerConfig(name="rmsprop")) == 0.0
    assert optim.momentum_of(OptimizerConfig(name="nesterov", momentum=0.5)) == 0.5


def test_l1_penalty_counts_weights_only() -> None:
    net = nn.Linear(2, 2)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 0.0]]))
        net.bias.fill_(10.0)
    assert optim.l1_penalty(net.parameters()).item() == pytest.approx(3.5)


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
    initialize(layer, InitConfig(scheme=scheme, std=0.05, value=0.25))
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
    net = models.build(ModelConfig(hidden=[8], norm="batch"), (4,), 3)
    initialize(net, InitConfig(scheme="zeros"))
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
    block = models.dense_block(5, 7, ModelConfig(norm=norm, norm_position=position, activation="tanh"))
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
    net = models.build(ModelConfig.model_validate(fields), (40,), 10)
    assert net(torch.randn(8, 40)).shape == (8, 10)
    if kind in EXPECTED_PARAMS:
        assert models.count_parameters(net) == EXPECTED_PARAMS[kind]


def test_residual_and_dropout() -> None:
    cfg = ModelConfig(hidden=[16, 16, 8], residual=True, dropout=0.5, activation="identity")
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
    value = LOSSES[name].builder(logits.requires_grad_(), targets)
    torch.testing.assert_close(value, expected)
    value.backward()
    assert torch.isfinite(logits.grad).all()
