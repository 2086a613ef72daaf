"""Dotted keys ("optimizer.lr") over nested config dicts: the one place they are read,
written and flattened. Plain dicts only, so `results/` may use it too."""

from __future__ import annotations

from typing import Any

from dlbench.errors import ConfigError

_UNSET = object()


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists stay values, empty mappings vanish."""
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, Any] = {}
    for k, v in value.items():
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def get_path(data: dict[str, Any], key: str, default: Any = None) -> Any:
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def set_path(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            text = repr(child)
            raise ConfigError(f"{key}: cannot set a sub-key of {part!r}, which is "
                              f"{text if len(text) <= 60 else text[:57] + '...'}")
        node = child
    node[parts[-1]] = value


def pop_path(data: dict[str, Any], key: str) -> None:
    """Remove a dotted key if present (missing parents are fine)."""
    *parents, last = key.split(".")
    node = get_path(data, ".".join(parents), None) if parents else data
    if isinstance(node, dict):
        node.pop(last, None)


def merge(base: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
    """Deep merge: delta's values win, mappings are merged key by key."""
    out = dict(base)
    for k, v in delta.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
