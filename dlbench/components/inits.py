"""Weight-initialization schemes, applied in one place (`initialize`).

Every scheme but `default` sets the weights of each Linear / Conv layer and zeros
their biases; normalization layers keep weight 1, bias 0. `default` keeps
PyTorch's own initialization (Kaiming-uniform with a = sqrt(5), uniform biases).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from dlbench.registry import Registry

if TYPE_CHECKING:
    from dlbench.config.schema import InitConfig

InitFn = Callable[[torch.Tensor, "InitConfig"], object]
INITS: Registry[InitFn] = Registry("init scheme")

INITS.register("default", "PyTorch's layer defaults (biases too)")(lambda w, cfg: None)
INITS.register("zeros", "all weights 0: every unit in a layer stays identical")(lambda w, cfg: nn.init.zeros_(w))
INITS.register("constant", "all weights init.value")(lambda w, cfg: nn.init.constant_(w, cfg.value))
INITS.register("normal", "N(0, init.std^2)")(lambda w, cfg: nn.init.normal_(w, 0.0, cfg.std))
INITS.register("uniform", "U(-a, a) with standard deviation init.std (a = sqrt(3) std)")(
    lambda w, cfg: nn.init.uniform_(w, -math.sqrt(3) * cfg.std, math.sqrt(3) * cfg.std))
INITS.register("xavier_normal", "Glorot: N(0, 2 / (fan_in + fan_out)); the same as lecun_normal only where "
               "fan_in = fan_out (the textbook's 'Xavier' is lecun_normal)")(lambda w, cfg: nn.init.xavier_normal_(w))
INITS.register("xavier_uniform", "Glorot: U(+-sqrt(6 / (fan_in + fan_out)))")(lambda w, cfg: nn.init.xavier_uniform_(w))
INITS.register("he_normal", "He/Kaiming: N(0, 2 / fan_in), for ReLU")(
    lambda w, cfg: nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu"))
INITS.register("he_uniform", "He/Kaiming: U(+-sqrt(6 / fan_in)), for ReLU")(
    lambda w, cfg: nn.init.kaiming_uniform_(w, mode="fan_in", nonlinearity="relu"))
INITS.register("lecun_normal", "LeCun: N(0, 1 / fan_in); what the notes and Saito's textbook call 'Xavier' "
               "(std 1 / sqrt(n), n the previous layer's width)")(
    lambda w, cfg: nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="linear"))
INITS.register("orthogonal", "a (semi-)orthogonal weight matrix (Saxe et al.)")(lambda w, cfg: nn.init.orthogonal_(w))

WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d)


@torch.no_grad()
def initialize(model: nn.Module, cfg: "InitConfig") -> nn.Module:
    if cfg.scheme == "default":
        return model
    scheme = INITS[cfg.scheme].builder
    for module in model.modules():
        if isinstance(module, WEIGHTED):
            scheme(module.weight, cfg)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model
