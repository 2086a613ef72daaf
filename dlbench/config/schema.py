"""The config schema (the user-facing contract), YAML loading and --set overrides.

All defaults live in the models below; `dlbench validate` and `dlbench run` turn
every problem into a `ConfigError`: one line naming the field path, the bad value
and what is allowed.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Callable, Literal, Mapping, Union, get_args, get_origin

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

from dlbench.components.augment import AUGMENTATIONS
from dlbench.components.data import DATASETS, PREPROCESSING
from dlbench.components.functions import FUNCTIONS
from dlbench.components.inits import INITS
from dlbench.components.losses import LOSSES, SMOOTHABLE
from dlbench.components.models import ACTIVATIONS, MODELS, NORMS, POOLS, PRESETS, feature_shape
from dlbench.components.optimizers import OPTIMIZERS
from dlbench.components.optimizers import info as optimizer_info
from dlbench.registry import Registry
from dlbench.components.schedules import SCHEDULES

from dlbench.config.keys import merge, set_path  # noqa: F401 - re-exported: older callers
from dlbench.config.yaml_io import apply_overrides, read_config
from dlbench.errors import ConfigError


def _in(registry: Registry[Any], kind: str | None = None) -> AfterValidator:
    def check(name: str) -> str:
        if name not in registry:
            raise ValueError(f"unknown {kind or registry.kind}; allowed: {', '.join(registry.names())}")
        return name

    return AfterValidator(check)


def _finite(x: float) -> float:
    if not math.isfinite(x):
        raise ValueError("must be a finite number")
    return x


def _fraction_or_count(unit: str) -> Callable[[float], float]:
    def check(v: float) -> float:
        if v >= 1 and v != int(v):
            raise ValueError(f"must be a fraction in [0, 1) or a whole number of {unit}")
        return v

    return check


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
    val_size: Annotated[NonNegative, AfterValidator(_fraction_or_count("samples"))] = 0.1
    preprocess: Annotated[str, _in(PREPROCESSING)] = "standardize"
    seed: Seed = 0
    # which train_size samples: a random N (from data.seed) | the first N as stored (the textbook's x_train[:N])
    train_subset: Literal["random", "first"] = "random"
    # toy sets only (xor, spiral, blobs); null = the dataset's default, see `dlbench list`
    samples: Annotated[int, Field(gt=0)] | None = None  # points generated per split (train and test)
    noise: NonNegative | None = None  # std of the Gaussian noise added to each coordinate
    classes: Annotated[int, Field(ge=2)] | None = None  # spiral arms / blobs

    @field_validator("samples", "noise", "classes")
    @classmethod
    def _toy_option(cls, v: Any, info: ValidationInfo) -> Any:
        dataset = info.data.get("dataset")
        takes = DATASETS[dataset].info.options if dataset in DATASETS else {}
        if v is not None and info.field_name not in takes:
            allowed = f"it takes {', '.join(takes)}" if takes else "only the toy sets take it"
            raise ValueError(f"dataset {dataset!r} has no option {info.field_name} ({allowed})")
        return v

    @model_validator(mode="after")
    def _subset_needs_size(self) -> "DataConfig":
        if self.train_subset != "random" and self.train_size is None:
            raise ValueError(f"data.train_subset: {self.train_subset!r} is invalid without data.train_size "
                             "(it says which train_size samples to keep; set data.train_size, or drop it)")
        return self


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
    # inverted: kept units x 1/(1 - p) in training, identity at evaluation (torch) | test: kept units
    # unscaled in training, every unit x (1 - p) at evaluation (the textbook's Dropout layer)
    dropout_scaling: Literal["inverted", "test"] = "inverted"
    # norm: batch only. torch's defaults; the textbook's BatchNormalization: eps 1e-6 (10e-7), momentum 0.1
    # (its "momentum=0.9" weights the old statistics), running variance starting at 0
    bn_eps: Annotated[Finite, Field(gt=0)] = 1e-5
    bn_momentum: Annotated[Finite, Field(gt=0, le=1)] = 0.1  # weight of each batch in the running statistics
    bn_running_var: NonNegative = 1.0  # the running variance before the first batch (the running mean starts at 0)
    residual: bool = False
    conv: list[ConvLayer] = []  # cnn: conv blocks before the dense layers (model.hidden)
    preset: Annotated[str, _in(PRESETS)] | None = None  # a named architecture; keys given beside it win

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("preset"), str) and data["preset"] in PRESETS:
            return {**PRESETS[data["preset"]].builder(), **data}
        return data

    @model_validator(mode="after")
    def _conventions_have_a_layer(self) -> "ModelConfig":
        if self.dropout_scaling != "inverted" and self.dropout == 0:
            raise ValueError(f"model.dropout_scaling: {self.dropout_scaling!r} is invalid with model.dropout 0 "
                             "(it says how dropout scales; set model.dropout, or drop it)")
        for key in ("bn_eps", "bn_momentum", "bn_running_var"):
            if self.norm != "batch" and getattr(self, key) != type(self).model_fields[key].default:
                raise ValueError(f"model.{key}: {getattr(self, key)!r} is invalid with model.norm {self.norm!r} "
                                 "(it sets BatchNorm; set model.norm: batch, or drop it)")
        return self

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
    rho: Probability = 0.9  # adadelta: decay of its two running averages
    clip_norm: Annotated[Finite, Field(gt=0)] | None = None  # each run's global gradient norm clipped to this
    decay_biases: bool = False  # weight decay on biases and norm parameters too


class ScheduleConfig(Section):
    """The learning-rate multiplier at every step; settings a schedule does not read are refused."""

    name: Annotated[str, _in(SCHEDULES)] = "constant"
    # linear warmup from 0: a fraction (< 1) of all steps, or a number of steps
    warmup: Annotated[NonNegative, AfterValidator(_fraction_or_count("steps"))] = 0.0
    min_lr: Annotated[Finite, Field(ge=0, le=1)] = 0.0  # cosine / linear end value, as a fraction of optimizer.lr
    every: Annotated[int, Field(gt=0)] | None = None  # step: epochs between decays; null = 10
    gamma: Annotated[Finite, Field(gt=0, le=1)] | None = None  # step: factor per decay (null = 0.1);
    #                                                       exponential: factor per epoch (null = 0.9)
    peak: Annotated[Finite, Field(gt=0, lt=1)] | None = None  # one_cycle: lr peaks at this fraction; null = 0.3

    @field_validator("warmup", "min_lr", "every", "gamma", "peak")
    @classmethod
    def _read_by_schedule(cls, v: Any, info: ValidationInfo) -> Any:
        name = info.data.get("name")
        unset = cls.model_fields[info.field_name].default
        if name in SCHEDULES and v != unset and info.field_name not in SCHEDULES[name].info["reads"]:
            reads = SCHEDULES[name].info["reads"]
            raise ValueError(f"schedule {name!r} does not read it (it reads {', '.join(reads) or 'nothing'})")
        return v


# engine steps around every optimizer's rule (clipping before it, which tensors decay)
_EVERY_OPTIMIZER = ("clip_norm", "decay_biases")


def optimizer_reads(name: str) -> tuple[str, ...]:
    """The settings an optimizer acts on (any other setting given for it is refused)."""
    return tuple(sorted(optimizer_info(name).reads)) + _EVERY_OPTIMIZER


class RegularizationConfig(Section):
    l1: NonNegative = 0.0
    input_noise: NonNegative = 0.0
    early_stopping: Annotated[int, Field(gt=0)] | None = None
    label_smoothing: Probability = 0.0  # cross_entropy / nll targets: (1 - s) one-hot + s / classes
    augment: Annotated[str, _in(AUGMENTATIONS)] = "none"  # images only, drawn per run
    # true: the reported training batch loss adds 1/2 optimizer.weight_decay sum ||w||^2 over the tensors the
    # decay acts on, as the textbook's loss does (reported only: the decay itself acts in the update)
    penalty_in_loss: bool = False


class TrainConfig(Section):
    epochs: Annotated[int, Field(gt=0)] | None = None
    steps: Annotated[int, Field(gt=0)] | None = None
    batch_size: Annotated[int, Field(gt=0)] | Literal["full"] = 100
    eval_every: Annotated[int, Field(gt=0)] = 1
    seeds: Annotated[list[Seed], Field(min_length=1)] = [0, 1, 2]
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # batches: reshuffled every epoch | one fixed order | each drawn with replacement (the textbook's
    # np.random.choice: an "epoch" is then n / batch_size such draws)
    order: Literal["shuffle", "sequential", "replacement"] = "shuffle"
    checkpoint_seconds: NonNegative | None = 60.0  # stack checkpoints every this many seconds; null: never
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # bf16 / fp16: autocast on CUDA (fp16 with loss scaling)

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


class Prune(Section):
    """Successive halving inside a stack: at every `every` (in the unit of train.eval_every:
    epochs, or steps with train.steps) each search group keeps its best `keep` fraction of
    points by validation accuracy; the others stop there and are recorded as pruned."""

    every: Annotated[int, Field(gt=0)]
    keep: Annotated[Finite, Field(gt=0, lt=1)] = 0.5


class RandomSearch(Section):
    method: Literal["random", "sobol", "halton"] = "random"  # sobol / halton: scrambled, seeded (scipy.stats.qmc)
    trials: Annotated[int, Field(gt=0)] = 20  # per round (Sobol' points are best balanced at powers of 2)
    rounds: Annotated[int, Field(gt=0)] = 1  # > 1: each round narrows the ranges to the best `keep` of the last
    keep: Annotated[Finite, Field(gt=0, le=1)] = 0.25
    prune: Prune | None = None
    seed: int = 0
    space: Annotated[dict[str, Distribution], Field(min_length=1)]

    @field_validator("space")
    @classmethod
    def _space_keys_exist(cls, space: dict[str, Distribution]) -> dict[str, Distribution]:
        for key in space:
            field_at(key)
        return space


class Confirm(Section):
    """After the search: rerun the `top` configurations of each search group, chosen on
    validation accuracy, on fresh seeds; the report's best and its test accuracy come from these."""

    top: Annotated[int, Field(gt=0)] = 3
    seeds: Annotated[list[Seed], Field(min_length=1)] = [100, 101, 102]
    # also run every case / grid point as written, the searched keys left at its own values
    # (its usual defaults), on the same seeds: the untuned baseline beside the tuned one
    defaults: bool = False

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError("seeds must be distinct")
        return v


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
    schedule: ScheduleConfig = ScheduleConfig()
    regularization: RegularizationConfig = RegularizationConfig()
    loss: Annotated[str, _in(LOSSES)] = "cross_entropy"
    train: TrainConfig = TrainConfig()
    grid: dict[str, Annotated[list[Any], Field(min_length=1)]] = {}
    random: RandomSearch | None = None
    confirm: Confirm | None = None  # needs random: the search it confirms
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
            if PLOTS[name].info.get("target"):
                raise ValueError(f"{name!r} needs a target validation accuracy, which a config does not give; "
                                 f"draw it after the run with: dlbench plot DIR --target 0.6")
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
    def _optimizer_reads_its_settings(self) -> "Config":
        """A setting the optimizer does not read is refused, never ignored."""
        opt = self.optimizer
        reads = optimizer_reads(opt.name)
        # compared with the default, not "given": a resolved config.yaml lists every field
        changed = [k for k, f in OptimizerConfig.model_fields.items() if getattr(opt, k) != f.default]
        for key in sorted(set(changed) - {"name", *reads}):
            raise ValueError(f"optimizer.{key}: {getattr(opt, key)!r} is invalid: {opt.name} does not read "
                             f"{key}; it reads {', '.join(reads)}")
        return self

    @model_validator(mode="after")
    def _penalty_has_decay(self) -> "Config":
        if self.regularization.penalty_in_loss and not self.optimizer.weight_decay:
            raise ValueError("regularization.penalty_in_loss: True is invalid with optimizer.weight_decay 0 "
                             "(the penalty is 1/2 weight_decay ||w||^2; set optimizer.weight_decay, or drop it)")
        return self

    @model_validator(mode="after")
    def _search_fits_training(self) -> "Config":
        if self.random is not None and "keep" in self.random.model_fields_set and self.random.rounds == 1:
            raise ValueError(f"random.keep: {self.random.keep!r} is invalid: it narrows the ranges between rounds, "
                             "and random.rounds is 1 (set rounds: 2 or more, or drop keep)")
        if self.confirm is not None:
            if self.random is None:
                raise ValueError("confirm: it reruns the best configurations of a search, and there is no "
                                 "random: section (add one, or drop confirm)")
            reused = sorted(set(self.confirm.seeds) & set(self.train.seeds))
            if reused:
                raise ValueError(f"confirm.seeds: {self.confirm.seeds} is invalid: seeds {reused} are train.seeds "
                                 "of the search; the confirm stage needs fresh seeds")
            tried = self.random.trials * self.random.rounds
            if self.confirm.top > tried:
                raise ValueError(f"confirm.top: {self.confirm.top} is invalid: more than the {tried} configurations "
                                 "the search tries (random.trials x random.rounds)")
        prune = self.random.prune if self.random else None
        if prune is not None:
            unit = "epochs" if self.train.steps is None else "steps"
            length = self.train.epochs if self.train.steps is None else self.train.steps
            if prune.every % self.train.eval_every:
                raise ValueError(f"random.prune.every: {prune.every} is invalid: pruning decides at evaluations, "
                                 f"so it must be a multiple of train.eval_every ({self.train.eval_every} {unit})")
            if prune.every >= length:  # type: ignore[operator]
                raise ValueError(f"random.prune.every: {prune.every} is invalid: runs train {length} {unit}, so "
                                 "it would never prune; use fewer")
        return self

    @model_validator(mode="after")
    def _model_fits_data(self) -> "Config":
        info = DATASETS[self.data.dataset].info
        if self.model.kind == "cnn":
            if info.inputs == "points":
                raise ValueError(f"model.kind: 'cnn' is invalid on data.dataset {self.data.dataset!r}: its samples "
                                 "are 2-D points with no spatial axis to convolve; use mlp or logreg")
            feature_shape(self.model.conv, info.shape)
        return self

    @model_validator(mode="after")
    def _regularization_fits(self) -> "Config":
        reg = self.regularization
        if reg.label_smoothing and self.loss not in SMOOTHABLE:
            raise ValueError(f"regularization.label_smoothing: {reg.label_smoothing} is invalid with loss "
                             f"{self.loss!r}; only {', '.join(SMOOTHABLE)} take it")
        inputs = DATASETS[self.data.dataset].info.inputs
        if reg.augment != "none" and inputs != "image":
            raise ValueError(f"regularization.augment: {reg.augment!r} is invalid on data.dataset "
                             f"{self.data.dataset!r}: its samples are {inputs}s, augmentation is for images")
        return self


SECTIONS: dict[str, type[Section]] = {
    name: f.annotation  # type: ignore[misc]
    for name, f in Config.model_fields.items()
    if isinstance(f.annotation, type) and issubclass(f.annotation, Section)
}
SWEEPABLE = [n for n in Config.model_fields
             if n not in ("name", "description", "grid", "random", "confirm", "cases", "task", "plots")]


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
    if not loc and re.split(r"[.:]", msg, maxsplit=1)[0] in Config.model_fields:  # a cross-section check names its field
        return prefix + msg
    if loc and msg.startswith(".".join(loc) + "."):  # a section's own check names its field
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
        # an optional section (random, confirm, random.prune) is a Union with None
        options = get_args(ann) if get_origin(ann) in (Union, UnionType) else (ann,)
        sections = [a for a in options if isinstance(a, type) and issubclass(a, BaseModel)]
        if sections:
            model = sections[0]
        else:
            return Distribution if model is RandomSearch else None
    return model


def validate(data: dict[str, Any], prefix: str = "") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(explain(e, prefix)) from None


def load(source: str | Path | Mapping[str, Any], overrides: list[str] | None = None) -> tuple[Config, dict[str, Any]]:
    """Read, override and validate a config file (or a config mapping); returns the Config and the raw dict."""
    data = apply_overrides(read_config(source), overrides or [])
    return validate(data), data

