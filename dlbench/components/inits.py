"""Weight-initialization schemes, applied in one place (`initialize`).

Every scheme but `default` sets the weights of each Linear / Conv layer and zeros
their biases; normalization layers keep weight 1, bias 0. `default` keeps
PyTorch's own initialization (Kaiming-uniform with a = sqrt(5), uniform biases).
"""

from __future__ import annotations

import math
from typing import Any
from collections.abc import Callable

import torch
from torch import nn

from dlbench.catalog import CATALOG, Kind


InitFn = Callable[[torch.Tensor, Any], object]
INITS: Kind[InitFn] = CATALOG["init"]

INITS.register("default")(lambda w, cfg: None)
INITS.register("zeros")(lambda w, cfg: nn.init.zeros_(w))
INITS.register("constant")(lambda w, cfg: nn.init.constant_(w, cfg.value))
INITS.register("normal")(lambda w, cfg: nn.init.normal_(w, 0.0, cfg.std))
INITS.register("uniform")(
    lambda w, cfg: nn.init.uniform_(w, -math.sqrt(3) * cfg.std, math.sqrt(3) * cfg.std))
INITS.register("xavier_normal")(lambda w, cfg: nn.init.xavier_normal_(w))
INITS.register("xavier_uniform")(lambda w, cfg: nn.init.xavier_uniform_(w))
INITS.register("he_normal")(
    lambda w, cfg: nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu"))
INITS.register("he_uniform")(
    lambda w, cfg: nn.init.kaiming_uniform_(w, mode="fan_in", nonlinearity="relu"))
INITS.register("lecun_normal")(
    lambda w, cfg: nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="linear"))
INITS.register("orthogonal")(lambda w, cfg: nn.init.orthogonal_(w))

WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d)


@torch.no_grad()
def initialize(model: nn.Module, cfg: Any) -> nn.Module:
    if cfg.scheme == "default":
        return model
    scheme = INITS[cfg.scheme].builder
    for module in model.modules():
        if isinstance(module, WEIGHTED):
            scheme(module.weight, cfg)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model
