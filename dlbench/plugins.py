"""The users' own components: plugin files, importable modules and the `dlbench.plugins` entry points.

A plugin is a Python file (or module) that calls `register.optimizer / .model / .dataset /
.schedule / .init` (`from dlbench import register`). Each call declares a catalog record (its
fields typed from their defaults, its source file and that file's sha256) and registers a
builder adapted to the built-ins' form, so the schema, `dlbench list`, `dlbench schema`,
sweeps and the engine treat it like a built-in. Loading happens before a config is validated;
every problem (missing file, syntax or import error, an exception or a refused registration)
is one line naming the plugin, the file and the line (`PluginError`, exit 2).

Loading registers into the catalog and returns the `Plugin` records; an experiment's vocabulary
(`dlbench.config.vocabulary`) holds them and builds its config model from them. A worker
(process, Ray or SLURM task) gets the records with its job (each plugin's source text) and
`install`s them: no shared filesystem needed.

This module imports no torch: the optimizer adapter (`dlbench.components.torch_optim`) loads
when an optimizer registers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.metadata
import inspect
import sys
import traceback
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterable, Mapping

from dlbench.catalog import CATALOG, SECTIONS, Component, Setting
from dlbench.errors import ConfigError

ENTRY_POINTS = "dlbench.plugins"


class PluginError(ConfigError):
    """A plugin that cannot be loaded or registers something wrong; one line, exit 2."""


@dataclass(frozen=True)
class Plugin:
    """One loaded plugin: how it was named, its file, its source text and that text's hash."""

    name: str  # as given: a path or a module name
    path: str  # the file its code came from
    source: str
    sha256: str
    module: str | None = None  # an importable module's name (workers import it); None: a file
    distribution: str | None = None  # a module's: the installed distribution that provides it, and its version
    version: str | None = None
    files: tuple[tuple[str, str], ...] = ()  # a module's: (path, source) of every other file of its package it loaded


LOADED: dict[str, Plugin] = {}  # file -> the plugin loaded from it
_loading: list[Plugin] = []  # the plugin whose code runs now: its registrations record it as their source


# ---------------------------------------------------------------- loading


def load(names: Iterable[str], base: Path | None = None) -> list[Plugin]:
    """Load plugins named by path (relative to `base`, the config's folder) or module name. Loading one
    twice is a no-op."""
    return [_load_one(str(name), base or Path.cwd()) for name in names]


def load_entry_points() -> list[Plugin]:
    """Installed packages' plugins (entry-point group `dlbench.plugins`), loaded once per process."""
    global _entry_points_loaded
    if not _entry_points_loaded:
        _entry_points_loaded = True
        _entry_points.extend(_load_module(ep.value.split(":")[0], f"entry point {ep.name!r}")
                             for ep in importlib.metadata.entry_points(group=ENTRY_POINTS))
    return [p for p in _entry_points if LOADED.get(p.path) is p]  # unload() forgets them


_entry_points_loaded = False
_entry_points: list[Plugin] = []


def from_config(raw: Any, config_path: Path | None, extra: Iterable[str] = ()) -> list[Plugin]:
    """The plugins a raw (unvalidated) config names in `plugins:`, plus --plugin paths (relative to the
    working directory), and the installed entry points; loaded before the config is validated."""
    installed = load_entry_points()
    named = raw.get("plugins") if isinstance(raw, Mapping) else None
    if named is not None and (not isinstance(named, list) or not all(isinstance(n, str) for n in named)):
        raise PluginError(f"plugins: {named!r} is invalid: a list of plugin files (relative to the config) or "
                          "importable module names")
    base = config_path.parent if config_path is not None else Path.cwd()
    return list({p.path: p for p in [*installed, *load(extra), *load(named or [], base)]}.values())


def _load_one(name: str, base: Path) -> Plugin:
    path = (base / name).resolve() if not Path(name).is_absolute() else Path(name)
    if name.endswith(".py") or "/" in name or path.exists():
        if not path.is_file():
            raise PluginError(f"plugin {name!r}: no such file {path}")
        return _load_source(name, str(path), path.read_text(encoding="utf-8"))
    return _load_module(name, f"plugin {name!r}")


def _load_source(name: str, path: str, source: str) -> Plugin:
    digest = hashlib.sha256(source.encode()).hexdigest()
    known = LOADED.get(path)
    if known is not None and known.sha256 == digest:
        return known
    if known is not None:  # the file changed since it was loaded in this process: its components go
        _forget(path)
    plugin = Plugin(name, path, source, digest)
    try:
        code = compile(source, path, "exec")
    except SyntaxError as e:
        raise PluginError(f"plugin {name!r}: {path}:{e.lineno}: SyntaxError: {e.msg}") from None
    module = types.ModuleType(f"dlbench_plugin_{digest[:12]}")
    module.__file__ = path
    sys.modules[module.__name__] = module  # its classes pickle, inspect finds its source
    _run(plugin, lambda: exec(code, module.__dict__))
    return plugin


def _load_module(module_name: str, what: str) -> Plugin:
    known = next((p for p in LOADED.values() if p.module == module_name), None)
    if known is not None:
        return known
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.origin is None:
        raise PluginError(f"{what}: no such file, and no importable module {module_name!r}")
    path = spec.origin
    source = Path(path).read_text(encoding="utf-8") if path.endswith(".py") else ""
    plugin = Plugin(module_name, path, source, _module_digest(source, spec.submodule_search_locations), module_name,
                    *_distribution(module_name))
    # imported before and unloaded since (unload()): imported afresh, its submodules too, so that its
    # registrations run again (from the files as they are now)
    for name in [m for m in sys.modules if m == module_name or m.startswith(module_name + ".")]:
        del sys.modules[name]
    before = set(sys.modules)
    _run(plugin, lambda: importlib.import_module(module_name))
    files = _package_files(module_name, path, set(sys.modules) - before)
    if files:
        plugin = dataclasses.replace(plugin, files=files)
        LOADED[plugin.path] = plugin
    return plugin


def _module_digest(source: str, package_dirs: Iterable[str] | None) -> str:
    """A module plugin's sha256 (in its runs' ids): of its file, or for a package of every Python file in
    it, so that an edit anywhere in the package trains its runs again."""
    if not package_dirs:
        return hashlib.sha256(source.encode()).hexdigest()
    digest = hashlib.sha256()
    for root in map(Path, package_dirs):
        for file in sorted(root.rglob("*.py")):
            digest.update(f"{file.relative_to(root)}\0".encode() + file.read_bytes() + b"\0")
    return digest.hexdigest()


def _distribution(module_name: str) -> tuple[str | None, str | None]:
    """The installed distribution that provides a module (by its top-level package), and its version."""
    names = importlib.metadata.packages_distributions().get(module_name.partition(".")[0], [])
    if not names:
        return None, None
    try:
        return names[0], importlib.metadata.version(names[0])
    except importlib.metadata.PackageNotFoundError:
        return names[0], None


def _package_files(module_name: str, origin: str, loaded: set[str]) -> tuple[tuple[str, str], ...]:
    """(path, source) of each other Python file of the plugin's top-level package that importing it loaded."""
    top = module_name.partition(".")[0]
    files = {getattr(sys.modules.get(name), "__file__", None) for name in loaded if name.partition(".")[0] == top}
    return tuple((f, Path(f).read_text(encoding="utf-8")) for f in sorted(f for f in files if f and f.endswith(".py")
                                                                         and f != origin))


def _run(plugin: Plugin, body: Callable[[], Any]) -> None:
    """Run a plugin's code with its registrations attributed to it; any failure is one line."""
    _loading.append(plugin)
    LOADED[plugin.path] = plugin
    try:
        body()
    except Exception as e:  # noqa: BLE001 - whatever a plugin raises becomes one line naming where
        _forget(plugin.path)
        del LOADED[plugin.path]
        raise PluginError(f"plugin {plugin.name!r}: {_where(e, plugin.path)}: {type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")) from None
    finally:
        _loading.pop()


def _where(e: BaseException, path: str) -> str:
    """file:line of the plugin's own line the error came from (the deepest one), else its file."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == path]
    if isinstance(e, SyntaxError) and e.filename == path:
        return f"{path}:{e.lineno}"
    return f"{path}:{frames[-1].lineno}" if frames else path


def _forget(path: str) -> None:
    for kind in KINDS:
        for record in list(CATALOG[kind]):
            if record.facts.get("plugin") == path:
                CATALOG[kind].forget(record.name)


def unload() -> None:
    """Forget every loaded plugin's components (a notebook starting over; tests)."""
    for path in list(LOADED):
        _forget(path)
    LOADED.clear()


def kept_name(plugin: Plugin) -> str:
    """Where the experiment folder keeps a copy of a plugin's source (its hash is in the run ids)."""
    return kept_file(plugin.path, plugin.source)


def kept_file(path: str, source: str) -> str:
    """Where the experiment folder keeps a copy of a source file: plugins/<its sha256's start>-<its name>."""
    return f"plugins/{hashlib.sha256(source.encode()).hexdigest()[:12]}-{Path(path).name}"


def install(plugins: Iterable[Plugin]) -> None:
    """In a worker: load the driver's plugins from their source text (files) or by import (modules)."""
    for plugin in plugins:
        if plugin.module is not None:
            _load_module(plugin.module, f"plugin {plugin.name!r}")
        else:
            _load_source(plugin.name, plugin.path, plugin.source)


# ---------------------------------------------------------------- registration

KINDS = ("optimizer", "model", "dataset", "schedule", "init")  # what a plugin may register
_FIXED = {  # a factory's leading arguments (given by dlbench), before its fields
    "model": ("input_shape", "num_classes"),
    "dataset": ("root", "seed"),
    "schedule": ("step", "total"),
    "init": ("weight",),
    "optimizer": ("params",),
}
# how, not what, an optimizer computes
_EXECUTION_ONLY = {"foreach", "fused", "capturable", "differentiable", "maximize"}


def _type_of(default: Any) -> Any:
    """A field's type from its default: bool, int, float, str, a tuple or list of those."""
    if isinstance(default, bool):
        return bool
    if isinstance(default, int):
        return int
    if isinstance(default, float):
        return float
    if isinstance(default, str):
        return str
    if isinstance(default, tuple) and default:
        return tuple[tuple(_type_of(v) for v in default)]  # type: ignore[misc]
    if isinstance(default, list):
        return list[_type_of(default[0])] if default else list  # type: ignore[misc]
    raise TypeError(f"a field's default must be a bool, int, float, str, tuple or list, not {default!r}")


def _settings(kind: str, name: str, fields: Mapping[str, Any]) -> tuple[Setting, ...]:
    section = next(s for s in SECTIONS.values() if s.chooses == kind)
    own = {s.name for s in section.settings} | {section.key}
    out = []
    for key, default in fields.items():
        if key in own:
            raise ValueError(f"{CATALOG[kind].label} {name!r}: field {key!r} would shadow {section.name}.{key}, "
                             f"the section's own key; rename it")
        if not key.isidentifier():
            raise ValueError(f"{CATALOG[kind].label} {name!r}: field {key!r} is not a Python identifier")
        try:
            out.append(Setting(key, _type_of(default), default, f"{name}'s {key}"))
        except TypeError as e:
            raise ValueError(f"{CATALOG[kind].label} {name!r}: field {key!r}: {e}") from None
    return tuple(out)


def _signature_fields(kind: str, name: str, factory: Callable[..., Any], skip: int) -> dict[str, Any]:
    """Fields from a factory's (or an optimizer's constructor's) keyword defaults after its fixed arguments."""
    out: dict[str, Any] = {}
    params = list(inspect.signature(factory).parameters.values())[skip:]
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name in _EXECUTION_ONLY:
            continue
        if p.default is p.empty:
            raise ValueError(f"{CATALOG[kind].label} {name!r}: argument {p.name!r} has no default; give it one or "
                             "declare it in fields=")
        try:
            _type_of(p.default)
        except TypeError:
            continue  # None and other untyped defaults: the component keeps its own
        float_annotated = "float" in str(p.annotation)  # `momentum: float = 0`: a float, as torch.optim means it
        out[p.name] = float(p.default) if float_annotated and type(p.default) is int else p.default
    return out


def _check_call(kind: str, name: str, factory: Callable[..., Any], fields: Mapping[str, Any]) -> None:
    """The factory takes its fixed arguments and every field by name: refused at registration, not mid-sweep."""
    try:
        inspect.signature(factory).bind(*[None] * len(_FIXED[kind]), **fields)
    except TypeError as e:
        shape = ", ".join([*_FIXED[kind], *fields])
        raise TypeError(f"{CATALOG[kind].label} {name!r}: {getattr(factory, '__name__', factory)} cannot be called "
                        f"as ({shape}): {e}") from None


def _source(obj: Any) -> tuple[str, str]:
    """(file, sha256) of the plugin whose code runs now, or of the file that defines obj (a notebook's cell)."""
    if _loading:
        return _loading[-1].path, _loading[-1].sha256
    try:
        path = inspect.getsourcefile(obj) or "<unknown>"
        text = inspect.getsource(obj)  # the component's own code (a notebook cell's class)
    except (TypeError, OSError):
        path, text = getattr(obj, "__module__", "<unknown>"), repr(obj)
    return path, hashlib.sha256(text.encode()).hexdigest()


class _LazyFacts(Mapping[str, Any]):
    """Facts of which some are computed on first use (a plugin dataset's shape: from its tensors)."""

    def __init__(self, known: dict[str, Any], compute: Callable[[], dict[str, Any]]) -> None:
        self._known, self._compute, self._done = known, compute, False

    def _all(self) -> dict[str, Any]:
        if not self._done:
            self._known = {**self._compute(), **self._known}
            self._done = True
        return self._known

    def __getitem__(self, key: str) -> Any:
        return self._known[key] if key in self._known else self._all()[key]

    def __iter__(self) -> Any:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


def _declare(kind: str, name: str, summary: str, fields: Mapping[str, Any], builder: Callable[..., Any], obj: Any,
             lazy: Callable[[], dict[str, Any]] | None = None, **more: Any) -> Component:
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"{CATALOG[kind].label} name {name!r} is invalid: letters, digits and '_'")
    settings = _settings(kind, name, fields)
    path, digest = _source(obj)
    facts = {"plugin": path, "sha256": digest, **more}
    record = CATALOG[kind].declare(name, summary, settings, source=path,
                                   facts=facts if lazy is None else _LazyFacts(facts, lazy))
    CATALOG[kind].register(name)(builder)
    return record


def _summary(obj: Any, kind: str) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.splitlines()[0] if doc else f"a plugin {CATALOG[kind].label} ({getattr(obj, '__qualname__', obj)})"


class _Register:
    """`register.<kind>(name, fields=...)`: decorators that put users' components beside the built-ins."""

    def optimizer(self, name: str, fields: Mapping[str, Any] | None = None,
                  summary: str | None = None) -> Callable[[Any], Any]:
        """A torch.optim.Optimizer subclass (fields default to its constructor's), or a stacked rule
        (slice, step) in the built-ins' form (fields required, lr and weight_decay among them)."""

        def add(obj: Any) -> Any:
            from dlbench.components import torch_optim

            declared = dict(fields) if fields is not None else None
            _settings("optimizer", name, declared or {})  # a shadowing field: refused before anything else
            builder, settings = torch_optim.adapt(name, obj, declared, lambda f, skip: _signature_fields(
                "optimizer", name, f, skip))
            _declare("optimizer", name, summary or _summary(obj, "optimizer"), settings, builder, obj,
                     usual_lr=settings["lr"])
            return obj

        return add

    def model(self, name: str, fields: Mapping[str, Any] | None = None,
              summary: str | None = None) -> Callable[[Any], Any]:
        """factory(input_shape, num_classes, **fields) -> nn.Module."""
        return self._factory("model", name, fields, summary, lambda f, keys: (
            lambda cfg, shape, classes: _module(name, f(tuple(shape), classes, **_values(cfg, keys)))))

    def dataset(self, name: str, fields: Mapping[str, Any] | None = None,
                summary: str | None = None) -> Callable[[Any], Any]:
        """factory(root, seed, **fields) -> {x_train, y_train, x_test, y_test} tensors."""
        def adapt(f: Callable[..., Any], keys: list[str]) -> Callable[[Any], Any]:
            from dlbench.components.plugin_data import raw_data

            return lambda cfg: raw_data(name, f(cfg.root, cfg.seed, **_values(cfg, keys)))

        return self._factory("dataset", name, fields, summary, adapt, lazy_facts=True)

    def schedule(self, name: str, fields: Mapping[str, Any] | None = None,
                 summary: str | None = None) -> Callable[[Any], Any]:
        """factory(step, total, **fields) -> the lr multiplier at `step` (0-based) of `total` steps."""
        return self._factory("schedule", name, fields, summary, lambda f, keys: (
            lambda cfg, at: float(f(at.step, at.steps, **_values(cfg, keys)))))

    def init(self, name: str, fields: Mapping[str, Any] | None = None,
             summary: str | None = None) -> Callable[[Any], Any]:
        """factory(weight, **fields) -> None, setting each Linear / Conv weight in place (biases 0)."""
        return self._factory("init", name, fields, summary, lambda f, keys: (
            lambda w, cfg: f(w, **_values(cfg, keys))))

    def _factory(self, kind: str, name: str, fields: Mapping[str, Any] | None, summary: str | None,
                 adapt: Callable[[Callable[..., Any], list[str]], Callable[..., Any]],
                 lazy_facts: bool = False) -> Callable[[Any], Any]:
        def add(factory: Any) -> Any:
            if not callable(factory):
                raise TypeError(f"{kind} {name!r}: register.{kind} decorates a function, not {factory!r}")
            declared = (dict(fields) if fields is not None
                        else _signature_fields(kind, name, factory, len(_FIXED[kind])))
            _check_call(kind, name, factory, declared)
            _declare(kind, name, summary or _summary(factory, kind), declared, adapt(factory, list(declared)),
                     factory, lazy=(lambda: _dataset_facts(name)) if lazy_facts else None)
            return factory

        return add


def _values(cfg: Any, keys: list[str]) -> dict[str, Any]:
    return {k: getattr(cfg, k) for k in keys}


def check_optimizer(cfg: Any) -> None:
    """A plugin torch.optim.Optimizer constructed with a run's settings; what it refuses is one line."""
    from dlbench.components.optimizers import OPTIMIZERS
    from dlbench.components.torch_optim import TorchRule

    rule = OPTIMIZERS[cfg.name].builder
    if isinstance(rule, TorchRule):
        try:
            rule.check(cfg)
        except Exception as e:  # noqa: BLE001 - the user's constructor: its message, in one line
            raise PluginError(f"optimizer {cfg.name!r} ({rule.cls.__name__}) refuses these settings: "
                              f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None


def check_model(cfg: Any, sample_shape: tuple[int, ...], num_classes: int) -> None:
    """A plugin model takes a batch of 2 samples of the data's shape and gives (2, classes) logits; else
    one line naming its file and line."""
    import torch

    from dlbench.components import models

    record = CATALOG["model"].record(cfg.kind)
    path = record.facts.get("plugin")
    if path is None:
        return
    try:
        with torch.device("meta"):
            size = models.count_parameters(models.build(cfg, sample_shape, num_classes))
        # a small model is fed on the CPU (a meta forward loads torch's meta kernels: seconds), a large one on meta
        with torch.device("cpu" if size < 10_000_000 else "meta"):
            out = models.build(cfg, sample_shape, num_classes)(torch.zeros(2, *sample_shape))
    except Exception as e:  # noqa: BLE001 - what the user's factory or forward raises, in one line
        raise PluginError(f"model {cfg.kind!r} ({_where(e, path)}) on samples of shape {tuple(sample_shape)}: "
                          f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, num_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise PluginError(f"model {cfg.kind!r} ({path}): its output for a batch of 2 samples is {got}, not "
                          f"(2, {num_classes}) logits (batch, classes)")


def _module(name: str, model: Any) -> Any:
    import torch

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model {name!r}: its factory returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _dataset_facts(name: str) -> dict[str, Any]:
    """A plugin dataset's shape, classes and kind of input, from its tensors at its default fields."""
    from dlbench.components.data import DATASETS

    record = CATALOG["dataset"].record(name)
    section = SECTIONS["data"]
    cfg = types.SimpleNamespace(**{s.name: s.default for s in section.settings}, **record.defaults())
    raw = DATASETS[name].builder(cfg)
    shape = tuple(raw.x_train.shape[1:])
    inputs = {1: "signal", 2: "signal", 3: "image"}.get(len(shape), "tensor")
    if len(shape) == 1 and shape[0] <= 3:
        inputs = "points"
    return {"shape": shape, "classes": raw.num_classes, "inputs": inputs, "n_train": len(raw.x_train),
            "n_test": len(raw.x_test)}


register = _Register()

__all__ = ["ENTRY_POINTS", "KINDS", "LOADED", "Plugin", "PluginError", "from_config", "install", "kept_name", "load",
           "register", "unload"]
