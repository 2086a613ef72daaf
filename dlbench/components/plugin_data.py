"""A plugin dataset's tensors, checked, as the built-in sets' RawData (split, preprocessed and
batched from there exactly like them)."""

from __future__ import annotations

from typing import Any

import torch

from dlbench.components.data import DataError, RawData

KEYS = ("x_train", "y_train", "x_test", "y_test")


def raw_data(name: str, out: Any) -> RawData:
    """{x_train, y_train, x_test, y_test}: float inputs, integer labels 0..classes-1; else one line."""
    where = f"dataset {name!r}"
    if not isinstance(out, dict) or set(KEYS) - set(out):
        got = sorted(out) if isinstance(out, dict) else type(out).__name__
        raise DataError(f"{where}: its factory must return a dict with {', '.join(KEYS)} (tensors); got {got}")
    for key in KEYS:
        if not isinstance(out[key], torch.Tensor):
            raise DataError(f"{where}: {key} is a {type(out[key]).__name__}, not a torch.Tensor")
    for x in ("x_train", "x_test"):
        if not out[x].is_floating_point():
            raise DataError(f"{where}: {x} has dtype {out[x].dtype}; inputs must be floating point")
    for y, x in (("y_train", "x_train"), ("y_test", "x_test")):
        if out[y].dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8) or out[y].dim() != 1:
            raise DataError(f"{where}: {y} has dtype {out[y].dtype} and shape {tuple(out[y].shape)}; labels are "
                            "integers 0..classes-1, one per sample")
        if len(out[y]) != len(out[x]):
            raise DataError(f"{where}: {y} has {len(out[y])} labels for {len(out[x])} samples in {x}")
    if out["x_train"].shape[1:] != out["x_test"].shape[1:]:
        raise DataError(f"{where}: x_train samples are {tuple(out['x_train'].shape[1:])}, x_test samples "
                        f"{tuple(out['x_test'].shape[1:])}")
    for x in ("x_train", "x_test"):  # a NaN would only show later as every run "diverged"
        bad = ~torch.isfinite(out[x].detach()).reshape(len(out[x]), -1).all(dim=1)
        if bad.any():
            raise DataError(f"{where}: {x} has {int(bad.sum())} sample(s) with NaN or infinite values (the first "
                            f"at index {int(bad.nonzero()[0])}); inputs must be finite")
    labels = torch.cat([out["y_train"], out["y_test"]]).long()
    if len(labels) and int(labels.min()) < 0:
        raise DataError(f"{where}: labels must be 0..classes-1, found {int(labels.min())}")
    classes = int(labels.max()) + 1 if len(labels) else 0
    if classes < 2:
        raise DataError(f"{where}: its labels name {classes} class(es); at least 2 are needed")
    return RawData(out["x_train"].detach().float().cpu().numpy(), out["y_train"].long().cpu().numpy(),
                   out["x_test"].detach().float().cpu().numpy(), out["y_test"].long().cpu().numpy(), classes)
