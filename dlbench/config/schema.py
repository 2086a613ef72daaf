"""The config schema (the user-facing contract), YAML loading and --set overrides.

All defaults live in the models below; `dlbench validate` and `dlbench run` turn
every problem into a `ConfigError`: one line naming the field path, the bad value
and what is allowed.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from dlbench.components.data import DATASETS
from dlbench.components.functions import FUNCTIONS
from dlbench.components.inits import INITS
from dlbench.components.losses import LOSSES
from dlbench.components.models import ACTIVATIONS, MODELS, NORMS, POOLS, PRESETS, feature_shape
from dlbench.components.optimizers import OPTIMIZERS
from dlbench.components.registry import Registry


class ConfigError(ValueError):
    """A problem with user input; its message is one line, shown without traceback."""

    def __init__(self, message: str) -> None:
        # user text (YAML keys, --set strings) can carry newlines and control characters:
        # escape them so the message really is one line
        super().__init__(re.sub(r"[\x00-\x1f\x7f]", lambda m: repr(m.group())[1:-1], message))


def _in(registry: Registry[Any]) -> AfterValidator:
    def check(name: str) -> str:
        if name not in registry:
            raise ValueError(f"unknown {registry.kind}; allowed: {', '.join(registry.names())}")
        return name

    return AfterValidator(check)


def _finite(x: float) -> float:
    if not math.isfinite(x):
        raise ValueError("must be a finite number")
    return x


Finite = Annotated[float, AfterValidator(_finite)]
NonNegative = Annotated[Finite, Field(ge=0)]
Seed = Annotated[int, Field(ge=0, lt=2**63)]  # what torch.manual_seed and torch.Generator accept
Probability = Annotated[Finite, Field(ge=0, lt=1)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class DataConfig(Section):
    dataset: Annotated[str, _in(DATASETS)] = "mnist1d"
    root: str = "data"
    download: bool = True
    train_size: Annotated[int, Field(gt=0)] | None = None
    val_size: Annotated[Finite, Field(ge=0)] = 0.1
    standardize: bool = True
    seed: Seed = 0
    # toy sets only (xor, spiral, blobs); null = the dataset's default, see `dlbench list`
    samples: Annotated[int, Field(gt=0)] | None = None  # points generated per split (train and test)
    noise: NonNegative | None = None  # std of the Gaussian noise added to each coordinate
    classes: Annotated[int, Field(ge=2)] | None = None  # spiral arms / blobs

    @field_validator("samples", "noise", "classes")
    @classmethod
    def _toy_option(cls, v: Any, info: ValidationInfo) -> Any:
        dataset = info.data.get("dataset")
        takes = DATASETS[dataset].info.get("options", {}) if dataset in DATASETS else {}
        if v is not None and info.field_name not in takes:
            allowed = f"it takes {', '.join(takes)}" if takes else "only the toy sets take it"
            raise ValueError(f"dataset {dataset!r} has no option {info.field_name} ({allowed})")
        return v

    @field_validator("val_size")
    @classmethod
    def _fraction_or_count(cls, v: float) -> float:
        if v >= 1 and v != int(v):
            raise ValueError("must be a fraction in [0, 1) or a whole count of samples")
        return v


class ConvLayer(Section):
    channels: Annotated[int, Field(gt=0)]
    kernel: Annotated[int, Field(gt=0)] = 3  # square kernels on images
    stride: Annotated[int, Field(gt=0)] = 1
    padding: Annotated[int, Field(ge=0)] = 0  # zeros added on each side
    pool: Annotated[str, _in(POOLS)] = "none"  # after the activation
    pool_size: Annotated[int, Field(gt=1)] = 2  # window and stride of the pool


class ModelConfig(Section):
    kind: Annotated[str, _in(MODELS)] = "mlp"
    hidden: list[Annotated[int, Field(gt=0)]] = [100, 100]
    activation: Annotated[str, _in(ACTIVATIONS)] = "relu"
    norm: Annotated[str, _in(NORMS)] = "none"
    norm_position: Literal["pre", "post"] = "pre"
    dropout: Probability = 0.0
    residual: bool = False
    conv: list[ConvLayer] = []  # cnn: conv blocks before the dense layers (model.hidden)
    preset: Annotated[str, _in(PRESETS)] | None = None  # a named architecture; keys given beside it win

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("preset"), str) and data["preset"] in PRESETS:
            return {**PRESETS[data["preset"]].builder(), **data}
        return data

    @field_validator("conv")
    @classmethod
    def _cnn_has_conv(cls, v: list[ConvLayer], info: ValidationInfo) -> list[ConvLayer]:
        if info.data.get("kind") == "cnn" and not v:
            raise ValueError("kind cnn needs conv layers, e.g. [{channels: 32, kernel: 3, pool: max}], "
                             f"or a model.preset ({', '.join(PRESETS.names())})")
        return v


class InitConfig(Section):
    scheme: Annotated[str, _in(INITS)] = "default"
    std: Annotated[Finite, Field(gt=0)] = 0.01
    value: Finite = 0.0


class OptimizerConfig(Section):
    name: Annotated[str, _in(OPTIMIZERS)] = "adam"
    lr: Annotated[Finite, Field(gt=0)] = 0.001
    momentum: Probability | None = None
    betas: tuple[Probability, Probability] = (0.9, 0.999)
    alpha: Probability = 0.99
    eps: Annotated[Finite, Field(gt=0)] = 1e-8
    weight_decay: NonNegative = 0.0


class RegularizationConfig(Section):
    l1: NonNegative = 0.0
    input_noise: NonNegative = 0.0
    early_stopping: Annotated[int, Field(gt=0)] | None = None


class TrainConfig(Section):
    epochs: Annotated[int, Field(gt=0)] | None = None
    steps: Annotated[int, Field(gt=0)] | None = None
    batch_size: Annotated[int, Field(gt=0)] | Literal["full"] = 100
    eval_every: Annotated[int, Field(gt=0)] = 1
    seeds: Annotated[list[Seed], Field(min_length=1)] = [0, 1, 2]
    device: Literal["auto", "cpu", "cuda"] = "auto"
    checkpoint_seconds: NonNegative | None = 60.0  # stack checkpoints every this many seconds; null: never

    @model_validator(mode="after")
    def _epochs_xor_steps(self) -> "TrainConfig":
        if self.epochs is not None and self.steps is not None:
            raise ValueError("set exactly one of epochs and steps, not both")
        if self.epochs is None and self.steps is None:
            self.epochs = 20
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds must be distinct")
        return self


class Distribution(Section):
    log_uniform: tuple[Annotated[Finite, Field(gt=0)], Annotated[Finite, Field(gt=0)]] | None = None
    uniform: tuple[Finite, Finite] | None = None
    int_uniform: tuple[int, int] | None = None
    choice: Annotated[list[Any], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "Distribution":
        given = [k for k, v in self.__dict__.items() if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of log_uniform, uniform, int_uniform, choice")
        bounds = getattr(self, given[0])
        if given[0] != "choice" and bounds[0] > bounds[1]:
            raise ValueError("low bound must not exceed high bound")
        return self


class RandomSearch(Section):
    trials: Annotated[int, Field(gt=0)] = 20
    seed: int = 0
    space: Annotated[dict[str, Distribution], Field(min_length=1)]

    @field_validator("space")
    @classmethod
    def _space_keys_exist(cls, space: dict[str, Distribution]) -> dict[str, Distribution]:
        for key in space:
            field_at(key)
        return space


class FunctionConfig(Section):
    """task: function — optimizers on a 2-D test function instead of a network."""

    name: Annotated[str, _in(FUNCTIONS)] = "elliptic"
    start: tuple[Finite, Finite] | None = None  # None: the function's usual starting point
    steps: Annotated[int, Field(gt=0)] = 30
    threshold: Annotated[Finite, Field(gt=0)] = 1e-3  # report the first step with f - f_min below this


class ActivationsConfig(Section):
    """task: activations — the untrained net (model + init) fed Gaussian noise."""

    samples: Annotated[int, Field(gt=1)] = 1000
    features: Annotated[int, Field(gt=0)] = 100  # input width; the samples are N(0, 1) in every feature


class DiagnosticsConfig(Section):
    """Per-layer statistics recorded at every evaluation of a training run (all off by default)."""

    activations: bool = False  # activation mean / std / saturated and zero fractions, histograms
    gradients: bool = False  # gradient norm of each weight tensor on the last training batch
    weights: bool = False  # weight norm, fraction of near-zero weights, histograms of log10 |w|
    samples: Annotated[int, Field(gt=1)] = 512  # training samples fed for activation statistics
    near_zero: Annotated[Finite, Field(gt=0)] = 1e-3  # |w| below this counts as a near-zero weight
    bins: Annotated[int, Field(gt=1, le=1000)] = 30  # histogram bins

    def enabled(self) -> bool:
        return self.activations or self.gradients or self.weights


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class Config(Section):
    name: str = "experiment"
    description: str = ""
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    init: InitConfig = InitConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    regularization: RegularizationConfig = RegularizationConfig()
    loss: Annotated[str, _in(LOSSES)] = "cross_entropy"
    train: TrainConfig = TrainConfig()
    grid: dict[str, Annotated[list[Any], Field(min_length=1)]] = {}
    random: RandomSearch | None = None
    # named variants that each set several keys at once (crossed with grid, random and seeds)
    cases: dict[str, dict[str, Any]] = {}
    task: Literal["train", "function", "activations"] = "train"
    function: FunctionConfig = FunctionConfig()
    activations: ActivationsConfig = ActivationsConfig()
    diagnostics: DiagnosticsConfig = DiagnosticsConfig()
    plots: list[str] | None = None  # figures `dlbench plot` draws; None: the task's usual ones

    @field_validator("cases")
    @classmethod
    def _case_keys_exist(cls, cases: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for case in cases.values():
            for key in case:
                field_at(key)
        return cases

    @field_validator("plots")
    @classmethod
    def _known_plots(cls, v: list[str] | None, info: ValidationInfo) -> list[str] | None:
        # imported here: plots reads results through the modules that import this one
        from dlbench.results.plots import PLOTS

        task, diagnostics = info.data.get("task"), info.data.get("diagnostics")
        for name in v or []:
            if name not in PLOTS:
                raise ValueError(f"unknown plot {name!r}; allowed: {', '.join(PLOTS.names())}")
            if PLOTS[name].info["task"] != task:
                raise ValueError(f"{name!r} draws task {PLOTS[name].info['task']!r} results, this is task {task!r}")
            needs = PLOTS[name].info.get("needs")
            if needs and diagnostics is not None and not getattr(diagnostics, needs):
                raise ValueError(f"{name!r} needs diagnostics.{needs}: true")
        return v

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not _NAME.match(v) or ".." in v:
            raise ValueError("must be 1-100 letters, digits, '_', '-' or '.', starting with a letter or digit")
        return v

    @field_validator("grid")
    @classmethod
    def _grid_keys_exist(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key in grid:
            field_at(key)
        return grid

    @model_validator(mode="after")
    def _model_fits_data(self) -> "Config":
        info = DATASETS[self.data.dataset].info
        if self.model.kind == "cnn":
            if info["inputs"] == "points":
                raise ValueError(f"model.kind: 'cnn' is invalid on data.dataset {self.data.dataset!r}: its samples "
                                 "are 2-D points with no spatial axis to convolve; use mlp or logreg")
            feature_shape(self.model.conv, info["shape"])
        return self


SECTIONS: dict[str, type[Section]] = {
    name: f.annotation  # type: ignore[misc]
    for name, f in Config.model_fields.items()
    if isinstance(f.annotation, type) and issubclass(f.annotation, Section)
}
SWEEPABLE = [n for n in Config.model_fields
             if n not in ("name", "description", "grid", "random", "cases", "task", "plots")]


def field_at(key: str) -> type[Section] | None:
    """Check that a dotted key names a config field; return its section class if it is one."""
    parts = key.split(".")
    model: type[BaseModel] = Config
    for i, part in enumerate(parts):
        allowed = SWEEPABLE if model is Config else list(model.model_fields)
        if part not in allowed:
            where = ".".join(parts[:i]) or "top level"
            raise ValueError(f"unknown key {key!r} ({part!r} is not in {where}; allowed: {', '.join(allowed)})")
        ann = model.model_fields[part].annotation
        if isinstance(ann, type) and issubclass(ann, Section):
            model = ann
        elif i != len(parts) - 1:
            raise ValueError(f"unknown key {key!r} ({part!r} has no sub-keys)")
    return model if model is not Config and key in SECTIONS else None


# ---------------------------------------------------------------- YAML and errors


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
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
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
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping of keys, got {type(data).__name__}")
    return data


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def explain(err: ValidationError, prefix: str = "") -> str:
    """One line for the first validation error: field path, bad value, what is allowed."""
    e = err.errors()[0]
    loc = [str(p) for p in e["loc"] if not str(p).startswith(("function-", "constrained-", "literal["))]
    # pydantic puts union branch names (int, 'full', ...) into loc; keep real field names only
    loc = [p for p in loc if not re.fullmatch(r"int|float|str|bool|list\[.*\]|tuple\[.*\]|'.*'|\d+", p) or p.isdigit()]
    path = prefix + ".".join(loc) if loc else prefix.rstrip(".") or "config"
    msg: str = e["msg"]
    if e["type"] == "extra_forbidden":
        parent = _section_for(loc[:-1])
        allowed = ", ".join(parent.model_fields) if parent else ""
        return f"{path}: unknown key; allowed keys here: {allowed}"
    msg = msg.removeprefix("Value error, ")
    if not loc and msg.split(".", 1)[0] in SECTIONS:  # a cross-section check names its own field
        return prefix + msg
    return f"{path}: {_show(e.get('input'))} is invalid: {msg}"


def _section_for(loc: list[str]) -> type[BaseModel] | None:
    model: type[BaseModel] = Config
    for part in loc:
        if part.isdigit():  # an item of a list of sections (model.conv.0)
            continue
        f = model.model_fields.get(part)
        if f is None:
            return model if part == "space" else None
        ann = f.annotation
        if get_origin(ann) is list and isinstance(get_args(ann)[0], type):
            ann = get_args(ann)[0]
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        elif part == "random":
            model = RandomSearch
        else:
            return Distribution if model is RandomSearch else None
    return model


def validate(data: dict[str, Any], prefix: str = "") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(explain(e, prefix)) from None


# ---------------------------------------------------------------- dotted keys


def parse_value(text: str) -> Any:
    """YAML-typed value of a --set override ('0.1' -> 0.1, '[1, 2]' -> list, 'sgd' -> 'sgd')."""
    return parse_yaml(text, "--set value") if text.strip() else ""


def set_path(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{key}: cannot set a sub-key of {part!r}, which is {_show(child)}")
        node = child
    node[parts[-1]] = value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*", key):
            raise ConfigError(f"--set {item!r}: expected key.path=value, e.g. --set optimizer.lr=0.01")
        set_path(data, key, parse_value(text))
    return data


def merge(base: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in delta.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load(path: str | Path, overrides: list[str] | None = None) -> tuple[Config, dict[str, Any]]:
    """Read, override and validate a config file; returns the Config and the raw dict."""
    data = apply_overrides(read_yaml_file(path), overrides or [])
    return validate(data), data

