"""A users' `torch.optim.Optimizer` inside a stack: one instance per run over that run's rows.

Each run of the stack gets its own optimizer over views of its rows of the stacked parameter
tensors (row r of every stack: the run's own weights, updated in place), with that run's
hyperparameters, so the arithmetic is exactly the optimizer's own. Around its `step`,
dlbench does what it does for the built-ins:

- the lr: each run's param groups get optimizer.lr x its schedule's multiplier at every step;
- weight decay: an optimizer that takes `weight_decay` applies it itself, to weights (and to
  biases and norm parameters in runs with optimizer.decay_biases) through two param groups;
  one that does not gets dlbench's `weight_decay` field, added to the gradient (coupled L2)
  on the same tensors;
- clipping happens on the stacked gradients before (the engine's);
- state: after every step each state tensor shaped like its parameter is moved into the
  stack's own state slots (and keeps being updated there, in place), and each number into
  the stack's per-run scalars, so checkpoints, resumption and pruning carry it like the
  built-ins' state. A stack rebuilt from a checkpoint (or after pruning) builds fresh
  instances and hands them that state back; which keys an optimizer keeps is learned by
  stepping a scratch copy once.

An optimizer whose `step` needs a closure (LBFGS re-evaluates the loss) is refused.
"""

from __future__ import annotations

import inspect
from typing import Any
from collections.abc import Callable

import torch
from torch import Tensor

from dlbench.components.optimizers import Slice, is_weight

_PREFIX = "torch_optim."
_STARTED = _PREFIX + "started"  # per run: 1 once its optimizer has stepped (its state lives in the slots)


def adapt(name: str, obj: Any, fields: dict[str, Any] | None,
          signature_fields: Callable[[Callable[..., Any], int], dict[str, Any]]
          ) -> tuple[Callable[[Slice, int], None], dict[str, Any]]:
    """A registered optimizer as the stack's rule, and its fields (settings and defaults); without
    fields, `signature_fields(constructor, skip)` reads them from the constructor's defaults."""
    if isinstance(obj, type) and issubclass(obj, torch.optim.Optimizer):
        closure = inspect.signature(obj.step).parameters.get("closure")
        if closure is not None and closure.default is inspect.Parameter.empty:
            raise TypeError(f"optimizer {name!r}: {obj.__name__}.step needs a closure (it re-evaluates the loss, as "
                            "LBFGS does); dlbench steps with the batch's gradients only")
        fields = dict(fields) if fields is not None else signature_fields(obj.__init__, 2)
        if "lr" not in fields:
            raise TypeError(f"optimizer {name!r}: it needs an 'lr' field (the schedule scales it); declare it in "
                            "fields=")
        try:
            inspect.signature(obj).bind([], **fields)
        except TypeError as e:
            raise TypeError(f"optimizer {name!r}: {obj.__name__}({', '.join(['params', *fields])}) cannot be "
                            f"called: {e}") from None
        own_decay = "weight_decay" in fields
        keys = [k for k in fields if k != "weight_decay"]
        fields.setdefault("weight_decay", 0.0)  # dlbench's coupled L2 where the optimizer has no decay of its own
        return TorchRule(obj, keys, own_decay), fields
    if inspect.isfunction(obj) and len(inspect.signature(obj).parameters) == 2:
        if fields is None or not {"lr", "weight_decay"} <= set(fields):
            raise TypeError(f"optimizer {name!r}: a stacked rule (slice, step) declares its fields, lr and "
                            "weight_decay among them (apply weight decay with slice.coupled_decay)")
        return obj, dict(fields)
    raise TypeError(f"optimizer {name!r}: register.optimizer takes a torch.optim.Optimizer subclass or a stacked "
                    f"rule (slice, step), not {obj!r}")


class TorchRule:
    """The stack's update rule for one torch.optim.Optimizer class."""

    def __init__(self, cls: type[torch.optim.Optimizer], keys: list[str], own_decay: bool) -> None:
        self.cls, self.keys, self.own_decay = cls, keys, own_decay

    def check(self, cfg: Any) -> None:
        """Construct it once with a run's settings: what its constructor refuses (an lr < 0, nesterov
        without momentum) is refused before anything trains."""
        kwargs = {k: getattr(cfg, k) for k in self.keys}
        if self.own_decay:
            kwargs["weight_decay"] = cfg.weight_decay
        self.cls([torch.zeros(1, requires_grad=True)], **kwargs)

    def __call__(self, s: Slice, t: int) -> None:
        runs = s.__dict__.get("_torch_runs")
        if runs is None:  # a new slice: a new stack, or one rebuilt from a checkpoint or after pruning
            runs = s.__dict__["_torch_runs"] = _Runs(self, s)
        runs.step(s)


class _Runs:
    """The optimizer instances of one slice's runs, their parameter views and their state's slots."""

    def __init__(self, rule: TorchRule, s: Slice) -> None:
        self.rule = rule
        self.weights = [is_weight(p) for p in s.params]
        with torch.no_grad():
            self.views = [[p[s.start + r] for p in s.params] for r in range(s.stop - s.start)]
        self.kwargs: list[dict[str, Any]] = []
        # per run: (coupled L2 coefficient of weights, of the others), dlbench's own decay
        self.decay: list[tuple[float, float]] = []
        self.opts = [self._build(cfg, views) for cfg, views in zip(s.configs, self.views)]
        self.slots: dict[tuple[int, int, str], Tensor] = {}  # (run, param, key) -> its row of the stack's slot
        self.scalars: dict[str, Tensor] = {}
        self.started = s.scalar(_STARTED, 0.0)
        if bool((self.started > 0).any()):
            self._restore(s)

    def _build(self, cfg: Any, views: list[Tensor]) -> torch.optim.Optimizer:
        kwargs = {k: getattr(cfg, k) for k in self.rule.keys}
        self.kwargs.append(kwargs)
        wd = float(cfg.weight_decay)
        other = wd if cfg.decay_biases else 0.0
        self.decay.append((0.0, 0.0) if self.rule.own_decay else (wd, other))
        groups: list[dict[str, Any]] = [{"params": [v for v, w in zip(views, self.weights) if w]},
                  {"params": [v for v, w in zip(views, self.weights) if not w]}]
        if self.rule.own_decay:
            groups[0]["weight_decay"], groups[1]["weight_decay"] = wd, other
        return self.rule.cls([g for g in groups if g["params"]], **kwargs)

    @torch.no_grad()
    def step(self, s: Slice) -> None:
        lrs = s.hyper["lr"].tolist()
        for r, opt in enumerate(self.opts):
            for group in opt.param_groups:
                group["lr"] = lrs[r]
            wd_weights, wd_others = self.decay[r]
            for i, view in enumerate(self.views[r]):
                grad = s.params[i].grad
                if grad is None:
                    view.grad = None
                    continue
                g = grad[s.start + r]
                wd = wd_weights if self.weights[i] else wd_others
                view.grad = g.add(view, alpha=wd) if wd else g
            opt.step()
            self._keep_state(s, r, opt)
        self.started.fill_(1.0)

    def _slot(self, s: Slice, r: int, i: int, key: str) -> Tensor:
        if (r, i, key) not in self.slots:
            self.slots[(r, i, key)] = s.state(_PREFIX + key, i)[r]
        return self.slots[(r, i, key)]

    def _scalar(self, s: Slice, name: str) -> Tensor:
        if name not in self.scalars:
            self.scalars[name] = s.scalar(_PREFIX + name, 0.0)
        return self.scalars[name]

    def _keep_state(self, s: Slice, r: int, opt: torch.optim.Optimizer) -> None:
        """The run's state into the stack's slots (tensors, updated in place from now on) and scalars (numbers)."""
        for i, view in enumerate(self.views[r]):
            state = opt.state.get(view)
            if not state:
                continue
            for key, value in state.items():
                if isinstance(value, Tensor) and value.shape == view.shape and value.dtype == view.dtype:
                    slot = self._slot(s, r, i, key)
                    if value is not slot:
                        slot.copy_(value)
                        state[key] = slot
                elif isinstance(value, (Tensor, int, float, bool)) and _numeric(value):
                    self._scalar(s, f"{key}.{i}")[r] = float(value)
        for g, group in enumerate(opt.param_groups):
            for key in set(group) - set(opt.defaults) - {"params"}:  # what a step adds to a group (a step count)
                if _numeric(group[key]):
                    self._scalar(s, f"group{g}.{key}")[r] = float(group[key])

    def _restore(self, s: Slice) -> None:
        """Fresh instances continue the state a checkpoint (or the stack before pruning) kept in the slots."""
        for r, opt in enumerate(self.opts):
            if not self.started[r] > 0:
                continue
            layout, groups = _layout(opt, self.kwargs[r])
            for i, view in enumerate(self.views[r]):
                if view not in layout:
                    continue
                state = {}
                for key, like in layout[view].items():
                    if isinstance(like, Tensor) and like.shape == view.shape and like.dtype == view.dtype:
                        state[key] = self._slot(s, r, i, key)
                    elif not _numeric(like):  # factored statistics (Adafactor's rows and columns), lists, ...
                        raise RuntimeError(f"{self.rule.cls.__name__}'s state {key!r} is neither shaped like its "
                                           "parameter nor a number: dlbench cannot carry it through a checkpoint "
                                           "or pruning (train without them: train.checkpoint_seconds: null)")
                    else:
                        state[key] = _like(like, float(self._scalar(s, f"{key}.{i}")[r]))
                opt.state[view] = state
            for g, extra in enumerate(groups):
                for key, like in extra.items():
                    opt.param_groups[g][key] = _like(like, float(self._scalar(s, f"group{g}.{key}")[r]))


def _numeric(value: Any) -> bool:
    if isinstance(value, Tensor):
        return value.dim() == 0 and not value.is_complex()
    return isinstance(value, (int, float, bool))


def _like(example: Any, value: float) -> Any:
    if isinstance(example, Tensor):
        return torch.tensor(value, dtype=example.dtype, device=example.device)
    return type(example)(value)


def _layout(opt: torch.optim.Optimizer,
            kwargs: dict[str, Any]) -> tuple[dict[Tensor, dict[str, Any]], list[dict[str, Any]]]:
    """The state keys (with an example value each) a step gives every parameter, and its groups' new keys:
    from one step of a scratch copy (zeros, zero gradients)."""
    scratch: dict[Tensor, Tensor] = {}
    groups = []
    for group in opt.param_groups:
        params = []
        for p in group["params"]:
            copy = torch.zeros_like(p)
            copy.grad = torch.zeros_like(p)
            scratch[copy] = p
            params.append(copy)
        groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": params})
    probe = type(opt)(groups, **kwargs)
    probe.step()
    layout = {scratch[copy]: dict(state) for copy, state in probe.state.items()}
    extra = [{k: v for k, v in g.items() if k not in opt.defaults and k != "params" and _numeric(v)}
             for g in probe.param_groups]
    return layout, extra
