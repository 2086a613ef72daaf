"""What a conv stack leaves of a sample: arithmetic the schema checks before a run and the model builds."""

from __future__ import annotations

import functools
from typing import Any
from collections.abc import Callable, Sequence


def feature_shape(conv: Sequence[Any], sample_shape: Sequence[int]) -> tuple[int, ...]:
    """(channels, *positions) after the conv stack; ValueError naming the layer where the input vanishes.

    `conv` holds layers with channels, kernel, stride, padding, pool and pool_size (mappings or objects).
    """
    if len(sample_shape) not in (1, 3):
        raise ValueError(f"cnn takes signals (L,) or images (C, H, W), not samples of shape {tuple(sample_shape)}")
    channels, *positions = (1, *sample_shape) if len(sample_shape) == 1 else sample_shape
    for i, layer in enumerate(conv):
        if isinstance(layer, dict):  # a layer as written: the conv layer's defaults for what it leaves out
            from dlbench.catalog.builtin import CONV_LAYER

            layer = {**{s.name: s.default for s in CONV_LAYER}, **layer}
        get: Callable[[str], Any] = layer.get if isinstance(layer, dict) else functools.partial(getattr, layer)
        positions = [(n + 2 * get("padding") - get("kernel")) // get("stride") + 1 for n in positions]
        if get("pool") != "none":
            positions = [n // get("pool_size") for n in positions]
        if min(positions) < 1:
            raise ValueError(f"model.conv.{i}: the {'x'.join(map(str, sample_shape))} input shrinks to nothing at "
                             "this layer; use more padding, smaller kernels, strides or pools, or fewer layers")
        channels = get("channels")
    return (channels, *positions)
