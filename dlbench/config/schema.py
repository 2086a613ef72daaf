"""The config schema, generated from the catalog: the user-facing contract.

Every section that chooses a component (`optimizer.name`, `init.scheme`, `model.kind`,
`schedule.name`, `data.dataset`, `function.name`) is a tagged union: one pydantic model
per component, accepting the section's own settings plus exactly the settings its
component reads, with that component's defaults. Values are checked strictly (no bool
for a number, no string for an integer) and every problem becomes a `ConfigError`: one
line naming the key, the bad value and what is allowed. `config/json_schema.py` writes the
JSON Schema that `dlbench schema` prints from the same catalog records.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import typing
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union
from collections.abc import Collection, Mapping

from annotated_types import MinLen
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from dlbench.catalog import CATALOG, SECTIONS, TOP, Section, Setting, type_text
from dlbench.catalog.metrics import TRAINING_BEST
from dlbench.catalog.shapes import feature_shape
from dlbench.config.keys import flatten, merge, set_path  # noqa: F401 - merge, set_path: re-exported
from dlbench.config.yaml_io import apply_overrides, read_config  # noqa: F401 - re-exported
from dlbench.errors import ConfigError


class Base(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False, frozen=False)

    def settings(self) -> dict[str, Any]:
        """The values as a plain mapping (what a builder reads)."""
        return dict(self)

    if TYPE_CHECKING:  # the fields are generated from the catalog: the checker reads them as Any
        def __getattr__(self, name: str) -> Any: ...


class _Diagnostics(Base):
    def enabled(self) -> bool:
        """Whether any diagnostic is recorded."""
        return bool(self.activations or self.gradients or self.weights)


_BASES: dict[str, type[Base]] = {"diagnostics": _Diagnostics}  # sections with methods of their own


def _names_of(kind: str) -> AfterValidator:
    def check(value: Any) -> Any:
        for name in value if isinstance(value, list) else [value]:
            if name is not None and name not in CATALOG[kind]:
                which = f" {name!r}" if isinstance(value, list) else ""
                raise ValueError(f"unknown {CATALOG[kind].label}{which}; allowed: {', '.join(CATALOG[kind].names())}")
        return value

    return AfterValidator(check)


def _annotation(s: Setting, where: str) -> Any:
    if s.items:
        item = _named(create_model(f"{where}_{s.name}_item", __base__=Base,
                                   **{i.name: _field(i, where) for i in s.items}))
        return Annotated[list[item], MinLen(1)] if s.required else list[item]  # type: ignore[valid-type]
    if s.choices:
        return Annotated[s.type, _names_of(s.choices)]
    return s.type


def _field(s: Setting, where: str) -> Any:
    return (_annotation(s, where), Field(... if s.required else s.default, description=s.doc))


def _section_model(section: Section, extra: tuple[Setting, ...] = (), name: str | None = None,
                   tag: str | None = None) -> type[Base]:
    fields: dict[str, Any] = {}
    if section.key is not None and tag is not None:
        fields[section.key] = (Literal[tag], Field(tag, description=f"the {CATALOG[section.chooses or ''].label}"))
    for s in (*section.settings, *extra):
        fields[s.name] = _field(s, name or section.name)
    return _named(create_model(name or f"{section.name.title()}Config", __base__=_BASES.get(section.name, Base),
                               **fields))


def _named(model: type[Base]) -> type[Base]:
    """A generated model as an attribute of this module, where pickle looks for it (process and Ray workers)."""
    globals()[model.__name__] = model
    return model


def _apply_preset(data: Any) -> Any:
    """model.preset fills in an architecture; keys written next to it win."""
    if isinstance(data, dict) and isinstance(data.get("preset"), str) and data["preset"] in CATALOG["preset"]:
        return {**CATALOG["preset"].record(data["preset"]).facts["values"], **data}
    return data


def _norm_placed(model: Any) -> Any:
    if getattr(model, "norm", "none") == "none" and getattr(model, "norm_position", "pre") != "pre":
        raise ValueError("model.norm_position: 'post' is invalid: model.norm is 'none', so there is no norm to "
                         "place (set model.norm: batch or layer, or drop norm_position)")
    return model


MEMBERS: dict[str, dict[str, type[Base]]] = {}  # section -> component name -> its model (the latest built)


_BUILT: dict[tuple[Any, ...], type[Base]] = {}  # (section, component, its settings, its source's hash) -> model


def _member(section: Section, record: Any) -> type[Base]:
    """A component's model in its section, built once per settings and source (a plugin loaded again in
    the same process reuses it), so a config model built after plugins load costs only their members."""
    key = (section.name, record.name, repr(record.settings), record.facts.get("sha256"))
    if key not in _BUILT:
        _BUILT[key] = _section_model(section, record.settings, f"{section.name}_{record.name}", record.name)
    return _BUILT[key]


def _union(section: Section, components: list[Any]) -> Any:
    """The section as a tagged union over `components` of its kind (built-ins and plugins alike)."""
    assert section.key is not None and section.default is not None
    members = {c.name: _member(section, c) for c in components}
    MEMBERS.setdefault(section.name, {}).update(members)
    key, default = section.key, section.default

    def tag(value: Any) -> str | None:
        name = value.get(key, default) if isinstance(value, dict) else getattr(value, key, None)
        return name if isinstance(name, str) else None

    # Union[...] of a tuple built at run time: the | operator has no form for a variable number of members
    union = Union[tuple(Annotated[m, Tag(n)] for n, m in members.items())]  # type: ignore[valid-type]  # noqa: UP007
    annotated: Any = Annotated[union, Discriminator(tag)]
    if section.name == "model":
        annotated = Annotated[annotated, BeforeValidator(_apply_preset), AfterValidator(_norm_placed)]
    return annotated


def section_default(name: str) -> BaseModel:
    """A section at its defaults (its default component's)."""
    section = SECTIONS[name]
    if section.chooses:
        return _member(section, CATALOG[section.chooses].record(section.default or ""))()
    return SECTION_MODELS[name]()


# ---------------------------------------------------------------- the search (sweep machinery, not vocabulary)


class Distribution(Base):
    log_uniform: tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]] | None = None
    uniform: tuple[float, float] | None = None
    int_uniform: tuple[int, int] | None = None
    choice: Annotated[list[Any], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Distribution:
        given = [k for k, v in self.__dict__.items() if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of log_uniform, uniform, int_uniform, choice")
        bounds = getattr(self, given[0])
        if given[0] != "choice" and bounds[0] > bounds[1]:
            raise ValueError("low bound must not exceed high bound")
        return self


class Prune(Base):
    """Successive halving inside a stack: at every `every` (in the unit of train.eval_every:
    epochs, or steps with train.steps) each search group keeps its best `keep` fraction of
    points by validation accuracy; the others stop there and are recorded as pruned."""

    every: Annotated[int, Field(gt=0)]
    keep: Annotated[float, Field(gt=0, lt=1)] = 0.5


class _Search(Base):
    """What every search method reads; a member per method family below (random.method is the tag)."""

    trials: Annotated[int, Field(gt=0)] = 20  # per round (Sobol' points are best balanced at powers of 2)
    rounds: Annotated[int, Field(gt=0)] = 1
    prune: Prune | None = None
    seed: int = 0
    space: Annotated[dict[str, Distribution], Field(min_length=1)]

    @field_validator("space")
    @classmethod
    def _space_keys_exist(cls, space: dict[str, Distribution]) -> dict[str, Distribution]:
        for key in space:
            field_at(key)
        return space


class SampledSearch(_Search):
    """random / sobol / halton (ours): each round after the first narrows the ranges to its best `keep`."""

    method: Literal["random", "sobol", "halton"] = "random"  # sobol / halton: scrambled, seeded (scipy.stats.qmc)
    keep: Annotated[float, Field(gt=0, le=1)] = 0.25


class LearnedSearch(_Search):
    """tpe / gp (Optuna's samplers): each round is asked at once of a sampler fitted on the rounds
    before; round 1 is its random start-up, so a learned search has at least two rounds."""

    method: Literal["tpe", "gp"]
    rounds: Annotated[int, Field(gt=0, json_schema_extra={"exclusiveMinimum": 1})] = 4  # 1: refused below; editors too

    @model_validator(mode="after")
    def _learns(self) -> LearnedSearch:
        if self.rounds == 1:
            raise ValueError(f"random.rounds: 1 is invalid: method {self.method} learns from the rounds before, and "
                             "round 1 is its random start-up (set rounds: 2 or more, or use method: random)")
        from dlbench.search import bayes, space_of  # optuna, only for a search that uses it

        try:
            bayes.distributions(space_of(self.space))
        except ValueError as e:
            raise ValueError(f"random.space.{e}") from None
        return self


def _search_method(value: Any) -> str | None:
    method = value.get("method", "random") if isinstance(value, dict) else getattr(value, "method", None)
    return method if isinstance(method, str) else repr(method)  # not a tag: refused, named


# a union on random.method (the sections that choose a component are unions on their names, too):
# a setting the chosen method does not read (keep with tpe) is refused
_SEARCH_MEMBERS: dict[str, type[_Search]] = {m: SampledSearch for m in ("random", "sobol", "halton")} | {
    m: LearnedSearch for m in ("tpe", "gp")}
RandomSearch: Any = Annotated[Union[tuple(Annotated[m, Tag(n)] for n, m in _SEARCH_MEMBERS.items())],  # noqa: UP007
                              Discriminator(_search_method)]


class Confirm(Base):
    """After the search: rerun the `top` configurations of each search group, chosen on
    validation accuracy, on fresh seeds; the report's best and its test accuracy come from these."""

    top: Annotated[int, Field(gt=0)] = 3
    seeds: Annotated[list[Annotated[int, Field(ge=0, lt=2**63)]], Field(min_length=1)] = [100, 101, 102]
    # also run every case / grid point as written, the searched keys left at its own values
    # (its usual defaults), on the same seeds: the untuned baseline beside the tuned one
    defaults: bool = False

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError("seeds must be distinct")
        return v


# ---------------------------------------------------------------- the sections and the config

SECTION_MODELS: dict[str, type[Base]] = {
    s.name: _section_model(s) for s in SECTIONS.values() if not s.chooses and s.role != "sweep"}

TrainConfig = SECTION_MODELS["train"]
RegularizationConfig = SECTION_MODELS["regularization"]
DiagnosticsConfig = SECTION_MODELS["diagnostics"]
ActivationsConfig = SECTION_MODELS["activations"]

# an experiment's folder name: never '..' (a path out of OUT/); the JSON Schema's `pattern` is this one
NAME_PATTERN = r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
_NAME = re.compile(NAME_PATTERN)


Components = tuple[tuple[str, tuple[Any, ...]], ...]  # (section, the components its union offers), each section


def _components(plugins: Collection[Any] | None) -> Components:
    """Per section that chooses a component: the built-ins and, of the plugin components, `plugins`
    (None: every one the catalog holds now)."""
    chosen = None if plugins is None else {id(c) for c in plugins}
    return tuple((s.name, tuple(c for c in CATALOG[s.chooses] if chosen is None or c.facts.get("plugin") is None
                                or id(c) in chosen))
                 for s in SECTIONS.values() if s.chooses and s.role != "sweep")


def _key(components: Components) -> str:
    """What a generated model is named after: its components and their sources' hashes (the same in every
    process that loads the same plugins, so a config pickled in a worker unpickles in the driver)."""
    text = json.dumps([[name, [[c.name, str(c.facts.get("sha256", ""))] for c in members]]
                       for name, members in components])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


_MODELS: dict[str, tuple[type[Base], dict[str, Any], list[type[Base]]]] = {}  # key -> (model, types, members)


def _built(components: Components) -> tuple[type[Base], dict[str, Any]]:
    key = _key(components)
    if key not in _MODELS:
        types = {name: _union(SECTIONS[name], list(members)) for name, members in components}
        model: type[Base] = create_model(f"Config_{key}", __base__=_Rules, **_config_fields(types))
        members = [_member(SECTIONS[name], c) for name, cs in components for c in cs]
        _MODELS[key] = (_named(model), types, members)
    model, types, members = _MODELS[key]
    for member in members:  # two versions of one plugin in a process: configs pickle as the one in use
        _named(member)
    return model, types


def config_model(plugins: Collection[Any] | None = None) -> type[Base]:
    """The config model of the built-ins plus `plugins` (plugin components' catalog records; None: every
    plugin component loaded now). Built once per set of components and their sources (an experiment's
    vocabulary, `dlbench.config.vocabulary`, owns the set); never replaced."""
    return _built(_components(plugins))[0]


def _config_fields(types: Mapping[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {s.name: _field(s, "config") for s in TOP.settings}
    for section in SECTIONS.values():
        if section.role == "sweep":
            continue
        annotation = types[section.name] if section.chooses else SECTION_MODELS[section.name]
        if section.optional:
            fields[section.name] = (annotation | None, Field(None, description=section.summary))
        else:
            fields[section.name] = (annotation, Field(default_factory=lambda n=section.name: section_default(n),
                                                      description=section.summary))
    fields["grid"] = (dict[str, Annotated[list[Any], Field(min_length=1)]],
                      Field({}, description=SECTIONS["grid"].summary))
    fields["random"] = (RandomSearch | None, Field(None, description=SECTIONS["random"].summary))
    fields["confirm"] = (Confirm | None, Field(None, description=SECTIONS["confirm"].summary))
    fields["cases"] = (dict[str, dict[str, Any]], Field({}, description=SECTIONS["cases"].summary))
    return fields


class _Rules(Base):
    """Rules across sections; each refusal names the key, the value and what is allowed."""

    @field_validator("name", check_fields=False)
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not _NAME.fullmatch(v):
            raise ValueError("must be 1-100 letters, digits, '_', '-' or '.', starting with a letter or digit")
        return v

    @field_validator("grid", "cases", check_fields=False)
    @classmethod
    def _swept_keys_exist(cls, v: dict[str, Any], info: Any) -> dict[str, Any]:
        keys = v if info.field_name == "grid" else [k for case in v.values() for k in case]
        for key in keys:
            field_at(key)
        return v

    @model_validator(mode="after")
    def _rules(self) -> Any:
        cfg: Any = self
        _task_sections(cfg)
        _model_rules(cfg)
        _training_rules(cfg)
        _search_rules(cfg)
        _plot_rules(cfg)
        return cfg


def _fail(key: str, value: Any, why: str) -> None:
    raise ValueError(f"{key}: {_show(value)} is invalid: {why}")


def _task_sections(cfg: Any) -> None:
    task = CATALOG["task"].record(cfg.task)
    for section in SECTIONS.values():
        if section.role == "meta" and section.optional:
            if section.name in task.facts["sections"]:
                if getattr(cfg, section.name) is None:
                    setattr(cfg, section.name, section_default(section.name))
            elif getattr(cfg, section.name) is not None:
                readers = [t.name for t in CATALOG["task"] if section.name in t.facts["sections"]]
                raise ValueError(f"{section.name}: is invalid with task {cfg.task!r}: only task "
                                 f"{' / '.join(readers)} reads it (remove the section, or set task: {readers[0]})")
    _unread_by_task(cfg, task.facts["reads"])


def _unread_by_task(cfg: Any, reads: tuple[str, ...] | None) -> None:
    """A task that trains nothing reads a few sections (or keys) of the training ones: a key it would
    ignore (train.epochs in a task: function config) is refused, not dropped."""
    if reads is None:
        return
    given = cfg.model_fields_set
    for section in SECTIONS.values():
        if section.role in ("meta", "sweep", "execution") or section.name in reads or section.name not in given:
            continue
        keys = sorted(getattr(cfg, section.name).model_fields_set)
        allowed = {r.split(".", 1)[1] for r in reads if r.startswith(f"{section.name}.")}
        for key in keys:
            if key not in allowed:
                _fail(f"{section.name}.{key}", getattr(getattr(cfg, section.name), key),
                      f"task {cfg.task!r} does not read it (it reads {', '.join(reads)}); remove it")


def _model_rules(cfg: Any) -> None:
    model, data = cfg.model, CATALOG["dataset"].record(cfg.data.dataset).facts
    if model.kind == "cnn":
        if data["inputs"] == "points":
            raise ValueError(f"model.kind: 'cnn' is invalid on data.dataset {cfg.data.dataset!r}: its samples are "
                             "2-D points with no spatial axis to convolve; use mlp or logreg")
        try:
            feature_shape(model.conv, data["shape"])
        except ValueError as e:
            raise ValueError(str(e)) from None
    if getattr(model, "dropout_scaling", "inverted") != "inverted" and not model.dropout:
        raise ValueError(f"model.dropout_scaling: {model.dropout_scaling!r} is invalid with model.dropout 0 (it "
                         "says how dropout scales; set model.dropout, or drop it)")
    defaults = CATALOG["model"].record(model.kind).defaults()
    for key in ("bn_eps", "bn_momentum", "bn_running_var"):
        if getattr(model, "norm", "none") != "batch" and getattr(model, key, None) != defaults.get(key):
            raise ValueError(f"model.{key}: {getattr(model, key)!r} is invalid with model.norm {model.norm!r} (it "
                             "sets BatchNorm; set model.norm: batch, or drop it)")
    if cfg.data.train_subset != "random" and cfg.data.train_size is None:
        raise ValueError(f"data.train_subset: {cfg.data.train_subset!r} is invalid without data.train_size (it "
                         "says which train_size samples to keep; set data.train_size, or drop it)")
    if getattr(model, "residual", False):
        width = (math.prod(feature_shape(model.conv, data["shape"])) if model.kind == "cnn"
                 else math.prod(data["shape"]))
        widths = [width, *model.hidden]
        if not any(a == b for a, b in zip(widths, widths[1:])):
            _fail("model.residual", True, f"no hidden layer has its input's width (widths {widths}), so no layer "
                  "gets a skip connection; give equal widths (e.g. hidden: [64, 64]) or drop residual")


def _training_rules(cfg: Any) -> None:
    train, reg, diag = cfg.train, cfg.regularization, cfg.diagnostics
    if train.epochs is not None and train.steps is not None:
        raise ValueError("train: set exactly one of epochs and steps, not both")
    if train.epochs is None and train.steps is None:
        train.epochs = 20
    if len(set(train.seeds)) != len(train.seeds):
        _fail("train.seeds", train.seeds, "seeds must be distinct")
    if reg.penalty_in_loss and not cfg.optimizer.weight_decay:
        raise ValueError("regularization.penalty_in_loss: True is invalid with optimizer.weight_decay 0 (the "
                         "penalty is 1/2 weight_decay ||w||^2; set optimizer.weight_decay, or drop it)")
    if reg.early_stopping is not None and cfg.data.val_size == 0:
        _fail("regularization.early_stopping", reg.early_stopping, f"it stops on {train.monitor} (train.monitor), "
              "and data.val_size is 0 (no validation split); set data.val_size or drop early_stopping")
    if train.monitor != TRAINING_BEST and cfg.data.val_size == 0:
        _fail("train.monitor", train.monitor, "it is measured on the validation split, and data.val_size is 0; "
              "set data.val_size or drop train.monitor")
    if reg.label_smoothing and not CATALOG["loss"].record(cfg.loss).facts.get("smoothable"):
        smoothable = [c.name for c in CATALOG["loss"] if c.facts.get("smoothable")]
        raise ValueError(f"regularization.label_smoothing: {reg.label_smoothing} is invalid with loss {cfg.loss!r}; "
                         f"only {', '.join(smoothable)} take it")
    inputs = CATALOG["dataset"].record(cfg.data.dataset).facts["inputs"]
    if reg.augment != "none" and inputs != "image":
        raise ValueError(f"regularization.augment: {reg.augment!r} is invalid on data.dataset {cfg.data.dataset!r}: "
                         f"its samples are {inputs}s, augmentation is for images")
    if not diag.enabled():
        defaults = SECTION_MODELS["diagnostics"]()
        for key in ("samples", "bins", "near_zero"):
            if getattr(diag, key) != getattr(defaults, key):
                _fail(f"diagnostics.{key}", getattr(diag, key), "every diagnostic is off, so nothing reads it; "
                      "turn on diagnostics.activations, gradients or weights, or drop it")


def _search_rules(cfg: Any) -> None:
    r = cfg.random
    if r is not None and "keep" in r.model_fields_set and r.rounds == 1:
        _fail("random.keep", r.keep, "it narrows the ranges between rounds, and random.rounds is 1 (set rounds: 2 "
              "or more, or drop keep)")
    if cfg.confirm is not None:
        if r is None:
            raise ValueError("confirm: it reruns the best configurations of a search, and there is no random: "
                             "section (add one, or drop confirm)")
        reused = sorted(set(cfg.confirm.seeds) & set(cfg.train.seeds))
        if reused:
            _fail("confirm.seeds", cfg.confirm.seeds, f"seeds {reused} are train.seeds of the search; the confirm "
                  "stage needs fresh seeds")
        tried = r.trials * r.rounds
        if cfg.confirm.top > tried:
            _fail("confirm.top", cfg.confirm.top, f"more than the {tried} configurations the search tries "
                  "(random.trials x random.rounds)")
    prune = r.prune if r else None
    if prune is not None:
        unit = "epochs" if cfg.train.steps is None else "steps"
        length = cfg.train.epochs if cfg.train.steps is None else cfg.train.steps
        if prune.every % cfg.train.eval_every:
            _fail("random.prune.every", prune.every, "pruning decides at evaluations, so it must be a multiple of "
                  f"train.eval_every ({cfg.train.eval_every} {unit})")
        if prune.every >= length:
            _fail("random.prune.every", prune.every, f"runs train {length} {unit}, so it would never prune; use fewer")


def swept(cfg: Any) -> dict[str, list[Any]]:
    """Every key the sweep varies -> the values it is given (a random space key: its distribution's)."""
    keys: dict[str, list[Any]] = {}
    if cfg.cases:
        keys["case"] = list(cfg.cases)
    for key, values in cfg.grid.items():
        for value in values:
            for k, v in (flatten(value, key) if isinstance(value, dict) else {key: value}).items():
                keys.setdefault(k, []).append(v)
    for key, dist in (cfg.random.space.items() if cfg.random else ()):
        keys.setdefault(key, []).extend(dist.choice or [x for x in (dist.log_uniform or dist.uniform or
                                                                     dist.int_uniform or ())])
    return keys


def _numeric(values: list[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _plot_rules(cfg: Any) -> None:
    """Every figure's needs are met before anything trains."""
    kind = CATALOG["plot"]
    keys = swept(cfg)
    for name in cfg.plots or []:
        facts = kind.record(name).facts
        if facts["task"] != cfg.task:
            _fail("plots", name, f"it draws task {facts['task']!r} results, this is task {cfg.task!r}")
        for need in facts["needs"]:
            if need == "target":
                _fail("plots", name, "it needs a target validation accuracy, which a config does not give; draw it "
                      "after the run with: dlbench plot DIR profile --target 0.6")
            if need.startswith("diagnostics.") and not getattr(cfg.diagnostics, need.split(".")[1]):
                _fail("plots", name, f"it needs {need}: true")
            if need == "search" and cfg.random is None:
                _fail("plots", name, "it draws a random: search, and this config has no random: section")
            if need == "swept" and len(keys) < 2:
                _fail("plots", name, f"it draws a panel per value of the first swept key and a line per value of "
                      f"the others; this sweep varies {', '.join(keys) or 'nothing'} (two keys needed)")
            if need == "numeric" and sum(_numeric(v) for v in keys.values()) < 2:
                _fail("plots", name, "it needs two swept keys with numeric values (x and y); this sweep has "
                      f"{', '.join(k for k, v in keys.items() if _numeric(v)) or 'none'}")


if TYPE_CHECKING:
    class Config(_Rules):
        """What the checker sees of a generated model: a _Rules whose sections read as Any."""
else:
    Config = config_model(())  # the built-ins' model (tests, type hints); an experiment's is its vocabulary's


def sweepable() -> list[str]:
    """The top-level keys a grid, case or random space may set (a dotted key starts with one)."""
    heads = [s.name for s in SECTIONS.values() if s.role != "sweep" and s.name not in ("function", "activations")]
    return heads + [s.name for s in TOP.settings if s.role not in ("meta", "execution", None) or s.name == "loss"]


def field_at(key: str) -> bool:
    """Check that a dotted key names a config setting (of any component of its section); True for a whole section."""
    parts = key.split(".")
    head = parts[0]
    heads = sweepable()
    if head not in heads:
        raise ValueError(f"unknown key {key!r} ({head!r} is not in top level; allowed: {', '.join(heads)})")
    if len(parts) == 1:
        return head in SECTIONS
    if head not in SECTIONS:
        raise ValueError(f"unknown key {key!r} ({head!r} has no sub-keys)")
    section = SECTIONS[head]
    settings = {s.name: s for s in section.settings}
    if section.key:
        settings[section.key] = Setting(section.key, str, section.default, "")
    for c in CATALOG[section.chooses] if section.chooses else ():
        settings.update({s.name: s for s in c.settings if s.name not in settings})
    if parts[1] not in settings:
        raise ValueError(f"unknown key {key!r} ({parts[1]!r} is not in {head}; allowed: {', '.join(settings)})")
    setting = settings[parts[1]]
    if len(parts) > 2:
        items = {i.name for i in setting.items}
        if not setting.items or not parts[2].isdigit() or (len(parts) > 3 and parts[3] not in items) or len(parts) > 4:
            raise ValueError(f"unknown key {key!r} ({parts[1]!r} has no sub-key {'.'.join(parts[2:])!r})")
    return False


# ---------------------------------------------------------------- errors


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _component_reads(section: str, name: str) -> str:
    reads = [s for s in MEMBERS[section][name].model_fields if s != SECTIONS[section].key]
    return ", ".join(reads) or "nothing"


def explain(err: ValidationError, prefix: str = "", root: str | None = None) -> str:
    """One line for the first validation error: the key, the bad value, what is allowed (root: the
    section an error of one section's validation belongs to)."""
    e = err.errors()[0]
    loc = ([root] if root else []) + [str(p) for p in e["loc"]]
    component = None
    if len(loc) > 1 and loc[0] in MEMBERS and loc[1] in MEMBERS[loc[0]]:  # the union's tag: the chosen component
        component = loc.pop(1)
    method = None
    if len(loc) > 1 and loc[0] == "random" and loc[1] in _SEARCH_MEMBERS:  # random.method's union tag
        method = loc.pop(1)
    loc = [p for p in loc if not re.fullmatch(r"function-.*|int|float|str|bool|none|list\[.*\]|tuple\[.*\]|"
                                               r"constrained-.*|literal\[.*\]|'.*'", p)]
    path = prefix + ".".join(loc) if loc else prefix.rstrip(".") or "config"
    msg: str = e["msg"].removeprefix("Value error, ")
    kind = e["type"]
    if kind == "extra_forbidden":
        if component is not None and len(loc) == 2:
            section = SECTIONS[loc[0]]
            label = CATALOG[section.chooses or ""].label
            return (f"{path}: {_show(e.get('input'))} is invalid: {label} {component!r} does not read it (unknown "
                    f"key; it reads {_component_reads(loc[0], component)})")
        if method is not None and len(loc) == 2:
            return (f"{path}: {_show(e.get('input'))} is invalid: search method {method!r} does not read it (it "
                    f"reads {', '.join(k for k in _SEARCH_MEMBERS[method].model_fields if k != 'method')})")
        parent = _allowed_at(loc[:-1], method)
        return f"{path}: unknown key; allowed keys here: {parent}"
    if kind == "union_tag_invalid" and loc == ["random"]:
        got = e["input"].get("method") if isinstance(e.get("input"), dict) else e["ctx"]["tag"]
        return f"random.method: {_show(got)} is invalid: allowed: {', '.join(_SEARCH_MEMBERS)}"
    if kind == "union_tag_invalid":
        section = SECTIONS[loc[0]]
        label = CATALOG[section.chooses or ""].label
        got = e["ctx"]["tag"]
        return (f"{path}.{section.key}: {_show(got)} is invalid: unknown {label}; allowed: "
                f"{', '.join(CATALOG[section.chooses or ''].names())}")
    if kind == "union_tag_not_found":
        section = SECTIONS[loc[0]]
        return f"{path}.{section.key}: is invalid: it must name a {CATALOG[section.chooses or ''].label}"
    if loc[:2] == ["model", "conv"] and kind in ("missing", "too_short"):
        got = _show([] if kind == "missing" else e.get("input"))
        return (f"{path}: {got} is invalid: kind cnn needs conv layers, e.g. [{{channels: 32, "
                f"kernel: 3, pool: max}}], or a model.preset ({', '.join(CATALOG['preset'].names())})")
    if kind == "missing":
        return f"{path}: missing; it has no default, give it"
    if kind == "value_error" and (not loc or re.match(r"[a-z_]+(\.[a-z_0-9]+)*: ", msg)):
        # a rule names its key itself; what a check of the whole config raised (a plugin dataset's data, loaded
        # for its shape) says what it is about: never the whole config shown before it
        return prefix + msg
    if "input" not in e or kind.startswith("model_"):
        return f"{path}: {msg}"
    setting = _setting_at(loc, component)
    if setting is not None and len(e["loc"]) + bool(root) > len(loc) + (component is not None):  # a union
        return f"{path}: {_show(e.get('input'))} is invalid: must be {type_text(setting.type)} ({setting.doc})"
    if isinstance(e.get("input"), dict):  # a section: its keys are not the news
        return f"{path}: {_plain(msg)}"
    return f"{path}: {_show(e.get('input'))} is invalid: {_plain(msg)}"


def _setting_at(loc: list[str], component: str | None) -> Setting | None:
    """The catalog's setting at a key path (section.key), if it is one."""
    if len(loc) != 2 or loc[0] not in SECTIONS:
        return TOP_SETTINGS.get(loc[0]) if len(loc) == 1 else None
    section = SECTIONS[loc[0]]
    found = section.setting(loc[1])
    if found is None and section.chooses and component is not None:
        found = next((x for x in CATALOG[section.chooses].record(component).settings if x.name == loc[1]), None)
    return found


TOP_SETTINGS = {s.name: s for s in TOP.settings}


def _plain(msg: str) -> str:
    """pydantic's wording in ours."""
    msg = msg.replace("Input should be", "must be").replace("a valid array", "a list").replace(
        "a valid dictionary", "a mapping").replace("a valid number, unable to parse string as a number",
                                                             "a number")
    return re.sub(r"Input tag .* does not match any of the expected tags: ", "allowed: ", msg)


def _allowed_at(loc: list[str], method: str | None = None) -> str:
    if not loc:
        return ", ".join(Config.model_fields)
    head = loc[0]
    if head in SECTION_MODELS and len(loc) == 1:
        return ", ".join(SECTION_MODELS[head].model_fields)
    if head == "random":
        chosen = _SEARCH_MEMBERS.get(method or "random", SampledSearch)
        models: dict[str, type[BaseModel]] = {"random": chosen, "prune": Prune}
        return ", ".join(models.get(loc[-1], Distribution).model_fields)
    if head == "confirm":
        return ", ".join(Confirm.model_fields)
    if head == "model" and "conv" in loc:
        return ", ".join(s.name for s in CATALOG["model"].record("cnn").setting("conv").items)
    return ""


# ---------------------------------------------------------------- entry points


def _jsonable(data: Any) -> str:
    try:
        return json.dumps(data, allow_nan=True)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config: a value is not a number, string, list or mapping ({e})") from None


def validate(data: Mapping[str, Any], prefix: str = "", model: type[BaseModel] | None = None) -> Any:
    """A config mapping -> a validated config of `model` (an experiment's vocabulary's; None: of every
    component loaded now) with strict types, or one line saying what is wrong."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"config: {_show(data)} is invalid: a config is a mapping of sections")
    try:
        return (model or config_model()).model_validate_json(_jsonable(dict(data)), strict=True)
    except ValidationError as e:
        raise ConfigError(explain(e, prefix)) from None


def section(name: str, /, **values: Any) -> Any:
    """One section validated on its own (every component loaded now), without the rules across sections
    (tests, builders called from Python): e.g. section("optimizer", name="sgd", lr=0.1)."""
    types = {**SECTION_MODELS, **_built(_components(None))[1]}
    adapter: TypeAdapter[Any] = TypeAdapter(types[name])
    try:
        return adapter.validate_json(_jsonable(values), strict=True)
    except ValidationError as e:
        raise ConfigError(explain(e, root=name)) from None


ConfigType = typing.Any  # the type of a validated config (pydantic builds it from the catalog at import)
