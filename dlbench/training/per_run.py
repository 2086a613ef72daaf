"""A stack's per-run values, declared once each: how a run's value is built, kept and checkpointed.

A stack holds, for each of its runs, values of three kinds: read from its config (dropout,
input noise, clipping, ...), its random generators, and its progress (metrics, best row,
the batch losses summed since the last evaluation, the epoch's batch order). Each is one
field of `PerRun`, a list with one item per run or a tensor with one row per run, in the
stack's order. Declaring the field is all it takes:

- `PerRun.build` makes every field from the runs' specs (the field's `of`);
- `keep(rows)` drops the runs that finished from every field;
- `state()` / `restore()` checkpoint the fields with a `save` codec: per-run items go to
  `state["runs"][i][name]`, stacked tensors to `state[name]`. A field missing from a state
  (written before the field existed) keeps its built value; config fields are not saved
  (a resumed stack rebuilds them from the same configs).
- `column(name)`: a config field as a tensor on the device, for the step's arithmetic
  (cached until the next `keep`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Generic, Protocol, TypeVar
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from dlbench.catalog.metrics import METRICS, Metric
from dlbench.plan.sweep import RunSpec
from dlbench.training import diagnostics, streams
from dlbench.training.scaling import INITIAL_SCALE  # read at build time: tests may patch it here



class Stack(Protocol):
    """What per-run values read of the stack they belong to (engine.Stack; a Protocol, so this module
    does not import the engine that imports it)."""

    device: torch.device
    splits: Any

# a run's generators: batch order; input noise and dropout masks; augmentation (a stream of its own,
# so that runs without augmentation draw exactly what they drew before it existed)
ORDER_STREAM, NOISE_STREAM, AUGMENT_STREAM = 0, 1, 2


T = TypeVar("T")


@dataclass(frozen=True)
class Codec(Generic[T]):
    """How one run's item goes into a checkpoint and comes back (`load(current item, saved) -> item`)."""

    dump: Callable[[T], Any]
    load: Callable[[T, Any], T]


def _set_generator(g: torch.Generator, saved: Tensor) -> torch.Generator:
    return g.set_state(saved)


def _set_recorder(r: diagnostics.Recorder | None, saved: Any) -> diagnostics.Recorder | None:
    if r is not None:
        r.restore(saved)
    return r


PLAIN: Codec[Any] = Codec(lambda v: v, lambda _, saved: saved)
GENERATOR: Codec[torch.Generator] = Codec(lambda g: g.get_state(), _set_generator)
RECORDER: Codec[diagnostics.Recorder | None] = Codec(lambda r: r.state() if r else None, _set_recorder)
TENSOR: Codec[Tensor] = Codec(lambda t: t, lambda t, saved: saved.to(t.device))  # a stacked tensor, rows = runs

Of = Callable[[RunSpec, Stack], Any]


def per_run(of: Of, *, save: Codec[Any] | None = None, column: torch.dtype | None = None) -> Any:
    """A list with one item per run, `of(spec, stack)`; `column`: also offered as a device tensor of that dtype."""
    return field(metadata={"of": of, "save": save, "column": column, "stacked": False})


def stacked(of: Of, *, save: bool = True) -> Any:
    """A tensor whose row r is run r's, stacked from `of(spec, stack)` (a tensor or a number)."""
    return field(metadata={"of": of, "save": TENSOR if save else None, "column": None, "stacked": True})


def generator(seed: int, stream: int, device: torch.device) -> torch.Generator:
    """A run's own generator for one stream, seeded from its seed (streams independent of each other).
    The batch order keeps the plain seed, as dlbench always seeded it: runs without dropout or
    input noise reproduce the numbers of earlier versions."""
    if stream == ORDER_STREAM:
        return torch.Generator(device).manual_seed(seed)
    state = np.random.SeedSequence([seed, stream]).generate_state(2, np.uint32)
    return torch.Generator(device).manual_seed(int(state[0]) << 32 | int(state[1]))


def _recorder(spec: RunSpec, stack: Stack) -> diagnostics.Recorder | None:
    diag = spec.config.diagnostics
    activation = spec.config.model.settings().get("activation", "identity")  # logreg has none
    return diagnostics.Recorder(diag, activation, stack.splits.x_train) if diag.enabled() else None


def _number(value: Any, dtype: torch.dtype, device: torch.device) -> Tensor:
    return value.to(device) if isinstance(value, Tensor) else torch.tensor(value, dtype=dtype, device=device)


def to_device(t: Tensor, device: torch.device) -> Tensor:
    """A host tensor onto the device; to a GPU without waiting for it (pinned memory, asynchronous copy:
    a plain copy would wait for every kernel queued before it)."""
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


@dataclass
class PerRun:
    """Every value a stack holds per run (see the module docstring); add a value here and nowhere else."""

    spec: list[RunSpec] = per_run(lambda s, st: s)
    # from the config: rebuilt on resume, not saved
    dropout: list[float] = per_run(lambda s, st: s.config.model.settings().get("dropout", 0.0),  # logreg: none
                                   column=torch.float32)
    input_noise: list[float] = per_run(lambda s, st: s.config.regularization.input_noise, column=torch.float32)
    l1: list[float] = per_run(lambda s, st: s.config.regularization.l1, column=torch.float32)
    # training loss only: evaluation reports the plain loss, comparable across runs
    label_smoothing: list[float] = per_run(lambda s, st: s.config.regularization.label_smoothing,
                                           column=torch.float32)
    # regularization.penalty_in_loss: the L2 term weight decay stands for, in the reported batch loss
    penalty_in_loss: list[bool] = per_run(lambda s, st: s.config.regularization.penalty_in_loss)
    penalty: list[float] = per_run(lambda s, st: s.config.optimizer.weight_decay
                                   if s.config.regularization.penalty_in_loss else 0.0, column=torch.float32)
    decay_biases: list[float] = per_run(lambda s, st: float(s.config.optimizer.decay_biases), column=torch.float32)
    augmentation: list[str] = per_run(lambda s, st: s.config.regularization.augment)
    clip_norm: list[float] = per_run(lambda s, st: math.inf if s.config.optimizer.clip_norm is None
                                     else s.config.optimizer.clip_norm, column=torch.float32)
    patience: list[int | None] = per_run(lambda s, st: s.config.regularization.early_stopping)
    # train.monitor: what the run's best evaluation, early stopping and pruning are chosen on
    monitor: list[Metric] = per_run(lambda s, st: METRICS[s.config.train.monitor])
    # the lr each run stepped with last (the metrics' lr column): set by the schedule
    lr: list[float] = per_run(lambda s, st: s.config.optimizer.lr)
    # generators, each seeded from the run's seed
    order: list[torch.Generator] = per_run(lambda s, st: generator(s.seed, ORDER_STREAM, torch.device("cpu")),
                                           save=GENERATOR)
    rng: list[torch.Generator] = per_run(lambda s, st: generator(s.seed, NOISE_STREAM, st.device), save=GENERATOR)
    augment: list[torch.Generator] = per_run(lambda s, st: generator(s.seed, AUGMENT_STREAM, st.device),
                                             save=GENERATOR)
    # the counter-based stream of dropout masks and input noise where they are drawn for the stack at once
    # (training.streams; elsewhere `rng`): the run's key, and how many numbers it has drawn
    noise_key: Tensor = stacked(lambda s, st: torch.tensor(streams.key(s.seed, NOISE_STREAM), device=st.device),
                                save=False)
    drawn: list[int] = per_run(lambda s, st: 0, save=PLAIN)
    # the same for augmentation (where it is drawn for the stack at once; elsewhere `augment`)
    augment_key: Tensor = stacked(lambda s, st: torch.tensor(streams.key(s.seed, AUGMENT_STREAM), device=st.device),
                                  save=False)
    augment_drawn: list[int] = per_run(lambda s, st: 0, save=PLAIN)
    # progress
    metrics: list[list[dict[str, float]]] = per_run(lambda s, st: [], save=PLAIN)
    best: list[dict[str, float] | None] = per_run(lambda s, st: None, save=PLAIN)
    since_best: list[int] = per_run(lambda s, st: 0, save=PLAIN)
    recorder: list[diagnostics.Recorder | None] = per_run(_recorder, save=RECORDER)
    batch_loss_sum: Tensor = stacked(lambda s, st: _number(0.0, torch.float64, st.device))
    perms: Tensor = stacked(lambda s, st: torch.empty(0, dtype=torch.long, device=st.device))  # this epoch's order
    # the step at which a run's training loss first went non-finite (0: not yet), decided on the device
    diverged_at: Tensor = stacked(lambda s, st: _number(0, torch.long, st.device))
    # fp16 loss scaling, each run its own (a run's overflow never skips another's update)
    loss_scale: Tensor = stacked(lambda s, st: _number(INITIAL_SCALE if s.config.train.precision == "fp16" else 1.0,
                                                       torch.float32, st.device))
    good_steps: Tensor = stacked(lambda s, st: _number(0, torch.long, st.device))  # since the last overflow
    _columns: dict[str, Tensor] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, specs: list[RunSpec], stack: Stack) -> PerRun:
        values: dict[str, Any] = {}
        for f in _declared():
            items = [f.metadata["of"](spec, stack) for spec in specs]
            values[f.name] = torch.stack(items) if f.metadata["stacked"] else items
        return cls(**values)

    def __len__(self) -> int:
        return len(self.spec)

    def column(self, name: str) -> Tensor:
        """A config field as a tensor on `device`, one value per run."""
        if name not in self._columns:
            f = next(f for f in _declared() if f.name == name)
            device = self.batch_loss_sum.device
            self._columns[name] = to_device(torch.tensor(getattr(self, name), dtype=f.metadata["column"]), device)
        return self._columns[name]

    def keep(self, rows: list[int]) -> None:
        """Continue with these runs only, in this order."""
        index = torch.tensor(rows, dtype=torch.long)
        for f in _declared():
            value = getattr(self, f.name)
            setattr(self, f.name, value[to_device(index, value.device)] if f.metadata["stacked"]
                    else [value[i] for i in rows])
        self._columns.clear()

    def state(self) -> dict[str, Any]:
        """The saved fields: {"runs": [{name: item} per run], name: stacked tensor, ...}."""
        out: dict[str, Any] = {"runs": [{} for _ in self.spec]}
        for f in _declared():
            codec = f.metadata["save"]
            if codec is None:
                continue
            value = getattr(self, f.name)
            if f.metadata["stacked"]:
                out[f.name] = codec.dump(value)
            else:
                for run, item in zip(out["runs"], value):
                    run[f.name] = codec.dump(item)
        return out

    def restore(self, state: dict[str, Any], rows: list[int]) -> None:
        """Load rows `rows` of a `state()` (this stack's runs, in its order) into the saved fields."""
        index = torch.tensor(rows, dtype=torch.long)
        runs = [state["runs"][i] for i in rows]
        for f in _declared():
            codec = f.metadata["save"]
            if codec is None:
                continue
            value = getattr(self, f.name)
            if f.metadata["stacked"]:
                if f.name in state and state[f.name].numel():  # an empty order: the epoch starts afresh
                    setattr(self, f.name, codec.load(value, state[f.name][index.to(state[f.name].device)]))
            elif all(f.name in run for run in runs):
                setattr(self, f.name, [codec.load(item, run[f.name]) for item, run in zip(value, runs)])
        self._columns.clear()


def _declared() -> tuple[Any, ...]:
    return tuple(f for f in fields(PerRun) if "of" in f.metadata)
