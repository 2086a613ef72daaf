"""The one YAML reader: safe loading with size / depth / alias guards, config files, --set values."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from collections.abc import Mapping

import yaml

from dlbench.config.keys import set_path
from dlbench.errors import ConfigError

MAX_YAML_NODES = 100_000  # after expanding aliases; real configs have a few hundred
MAX_YAML_DEPTH = 50
MAX_YAML_CHARS = 100_000  # PyYAML is pure Python: megabytes of YAML take many seconds to parse


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads 1e-3 as a float (YAML 1.1 wants 1.0e-3) and refuses
    documents that only aliases make huge ("billion laughs"), recursive or deeply nested.

    safe_load keeps an alias as a shared reference, but the deep copies, merges and
    JSON dumps downstream expand it, so the size that matters is the expanded one.
    """

    def construct_document(self, node: yaml.Node) -> Any:
        _check_size(node, 1, {}, set())
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """A key given twice is refused: YAML would keep the last one silently."""
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                mark = key_node.start_mark
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice (line {mark.line + 1}); YAML would keep only the last one",
                    mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _check_size(node: yaml.Node, depth: int, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """Node count of `node` with every alias expanded (memoized per shared node)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        raise yaml.YAMLError("recursive alias: a node contains itself")
    if depth > MAX_YAML_DEPTH:
        raise yaml.YAMLError(f"nested deeper than {MAX_YAML_DEPTH} levels")
    open_nodes.add(key)
    children: list[yaml.Node] = []
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    size = 1
    for child in children:
        size += _check_size(child, depth + 1, sizes, open_nodes)
        if size > MAX_YAML_NODES:
            raise yaml.YAMLError(f"more than {MAX_YAML_NODES} nodes once aliases are expanded")
    open_nodes.discard(key)
    sizes[key] = size
    return size


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _bracket_depth(text: str) -> int:
    """Deepest nesting of [ and { (quotes ignored, so it can only overestimate).

    PyYAML's scanner is quadratic in flow nesting depth: check before parsing.
    """
    depth = deepest = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(depth - 1, 0)
    return deepest


def parse_yaml(text: str, source: str) -> Any:
    if len(text) > MAX_YAML_CHARS:
        raise ConfigError(f"{source}: invalid YAML: {len(text):,} characters, more than the {MAX_YAML_CHARS:,} "
                          "a config may have")
    if _bracket_depth(text) > 2 * MAX_YAML_DEPTH:
        raise ConfigError(f"{source}: invalid YAML: nested deeper than {MAX_YAML_DEPTH} levels")
    try:
        return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except RecursionError:  # PyYAML composes nested collections recursively
        raise ConfigError(f"{source}: invalid YAML: nested deeper than {MAX_YAML_DEPTH} levels") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f": line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{source}{where}: invalid YAML: {problem}") from None


def read_yaml_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} not found (expected a YAML file)")
    try:
        if p.stat().st_size > 4 * MAX_YAML_CHARS:  # do not even read a huge file (4 bytes per character at most)
            raise ConfigError(f"{p}: invalid YAML: {p.stat().st_size:,} bytes, more than a config may have")
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {str(p)!r} cannot be read: {e}") from None
    data = parse_yaml(text, str(p))
    if data is None:  # an empty file (or only comments) would run every default: say so instead
        raise ConfigError(f"{p}: the config is empty; give at least a name, e.g. `name: my_experiment`, and the "
                          "settings to compare (see configs/quickstart.yaml)")
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping of keys, got {type(data).__name__}")
    return data


def yaml_text(value: Any, what: str) -> str:
    """Python data (a config mapping, an override or filter value from the Python API) as YAML
    text, so it goes through the same reader as a file or a --set value. JSON is the subset of
    YAML that plain data maps onto (tuples become lists, numpy floats floats); anything else is refused."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what}: {type(value).__name__} {str(value)[:40]!r} is not a config value; use numbers, "
                          "strings, booleans, None, lists and dicts") from None


def read_config(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """A config file, or a config mapping given in Python, read as the same YAML data."""
    if not isinstance(source, Mapping):
        return read_yaml_file(source)
    return parse_yaml(yaml_text(dict(source), "config"), "config")


def parse_value(text: str) -> Any:
    """YAML-typed value of a --set override ('0.1' -> 0.1, '[1, 2]' -> list, 'sgd' -> 'sgd')."""
    return parse_yaml(text, "--set value") if text.strip() else ""


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*", key):
            raise ConfigError(f"--set {item!r}: expected key.path=value, e.g. --set optimizer.lr=0.01")
        set_path(data, key, parse_value(text))
    return data


_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: large sweeps load fast


def read_written(path: Path) -> Any:
    """A YAML file dlbench wrote itself (a run's config.yaml): trusted size, so the fast safe loader."""
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_FAST_LOADER)  # a SafeLoader
