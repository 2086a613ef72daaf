"""Expand a Config into fully resolved runs: grid x random trials x seeds.

`grid:` keys are dotted field paths (a cartesian product over their lists) or
whole sections (`optimizer: [{name: sgd, lr: 0.1}, ...]`: each mapping is merged
into the section, so settings that belong together move together). `random:`
draws `trials` points from its space with its own seed; every grid point is
crossed with every trial and every seed. `cases:` names variants that each set
several keys at once, across sections (`weight_decay: {optimizer.weight_decay: 0.1}`);
every case is crossed with every grid point, and a run records only the case's
name (`case: weight_decay`), so the table gets one readable column. A run's id is
a hash of its resolved config, seed included, so the same run always lands in the same folder.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Mapping

from dlbench.config.keys import flatten, get_path, merge, set_path
from dlbench import search
from dlbench import catalog
from dlbench.catalog import HASHED, SECTIONS, Role
from dlbench.catalog.metrics import TRAINING_BEST
from dlbench.config.schema import field_at
from dlbench.config.vocabulary import Vocabulary, current
from dlbench.errors import ConfigError
from dlbench.plan.pruning import Pruning


@dataclass(frozen=True)
class RunSpec:
    run_id: str
    seed: int
    config: Any  # resolved: no grid / random, train.seeds == [seed]
    params: dict[str, Any] = field(default_factory=dict)  # swept key -> value
    pruning: Pruning | None = None  # never for confirm / defaults runs
    # section -> the plugin component chosen there and its source (Vocabulary.provenance); recorded once
    plugins: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.config.name


def identity(config: Any, seed: int, roles: tuple[Role, ...] = HASHED,
             plugins: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The part of a resolved config that determines a run's numbers: its keys whose role
    (catalog) is in `roles` (stack and run keys by default; stack keys alone: what a stack shares),
    and the sources of the plugin components it chooses (`plugins`: Vocabulary.provenance)."""
    role_of, setting_of = catalog.roles(), catalog.settings_by_key()

    def hashed(key: str, value: Any, role: Role | None) -> bool:
        added = setting_of.get(key)
        return role in roles and not (added is not None and added.added and value == added.default)

    data: dict[str, Any] = {}
    for key, value in config.model_dump(mode="json").items():
        if key in SECTIONS and isinstance(value, dict):
            kept = {k: v for k, v in value.items()
                    if hashed(f"{key}.{k}", v, role_of.get(f"{key}.{k}", SECTIONS[key].role))}
            if kept:
                data[key] = kept
        elif hashed(key, value, role_of.get(key)):
            data[key] = value
    data["seed"] = seed
    # a plugin's source, by hash: an edited one never reuses stale runs (built-ins' ids stay as they were)
    used = {k: v["sha256"] for k, v in (plugins or {}).items() if SECTIONS[k].role in roles}
    if used:
        data["plugins"] = used
    return data


def run_id(config: Any, seed: int, plugins: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    blob = json.dumps(identity(config, seed, plugins=plugins), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def points(config: Any) -> list[dict[str, Any]]:
    """Every grid point crossed with round 1 of the search, as {key: value}."""
    grid = grid_points(config)
    if config.random is None:
        return grid
    r = config.random
    first = search.plan_round(search.space_of(r.space), [], method=r.method, trials=r.trials, seed=r.seed,
                              keep=getattr(r, "keep", None))
    return [{**g, **t} for g in grid for t in first]


def grid_points(config: Any) -> list[dict[str, Any]]:
    grid_keys = list(config.grid)
    return [dict(zip(grid_keys, combo)) for combo in itertools.product(*config.grid.values())]


def _apply(resolved: dict[str, Any], key: str, value: Any, where: str) -> bool:
    """Set one swept key (dotted field or whole section) in a raw config; True for a section."""
    section = field_at(key)
    if section and isinstance(value, dict):
        resolved[key] = merge(resolved.get(key) or {}, value)
    elif section:
        raise ConfigError(f"{where}.{key}: {value!r} is invalid: a section takes a mapping of its keys "
                          "(e.g. {lr: 0.1}), not a single value")
    else:
        set_path(resolved, key, value)
    return section


def staged(config: Any) -> bool:
    """Whether the sweep comes in stages (search rounds, a confirm stage): its runs record
    `stage` and `round`, and later stages are planned from the finished runs of earlier ones."""
    return config.random is not None and (config.random.rounds > 1 or config.confirm is not None)


def expand(config: Any, raw: dict[str, Any], results: Mapping[str, search.Outcome] | None = None,
           vocabulary: Vocabulary | None = None) -> list[RunSpec]:
    """Resolve every (case, point, seed) into a RunSpec validated by the experiment's `vocabulary` (None:
    every plugin loaded in this process), in sweep order.

    A staged search is planned as far as `results` (run id -> what each finished run tells
    its search: status, final validation metrics, a pruned run's curves) allows: round 1 always; round
    k + 1 of a group (one case x one grid point) once all its round-k runs are finished;
    its confirm runs once its last round is. A round is a pure function of the finished
    runs before it, so a resumed sweep plans the same points and run ids.
    """
    # plots are the sweep's, not a run's
    base = {k: v for k, v in raw.items() if k not in ("grid", "random", "confirm", "cases", "plots")}
    results = results or {}
    vocabulary = vocabulary or current()
    specs: list[RunSpec] = []
    cases = list(config.cases.items()) or [(None, {})]
    for (case, delta), point in itertools.product(cases, grid_points(config)):
        group = copy.deepcopy(base)
        params: dict[str, Any] = {} if case is None else {"case": case}
        for key, value in delta.items():
            _apply(group, key, value, f"cases.{case}")
        for key, value in point.items():
            section = _apply(group, key, value, "grid")
            params.update(flatten(value, key) if section else {key: value})
        if config.random is None:
            specs += _specs(vocabulary, group, params, {})
        else:
            specs += _search(vocabulary, config, group, params, results)
    return specs


def _search(vocabulary: Vocabulary, config: Any, group: dict[str, Any], params: dict[str, Any],
            results: Mapping[str, search.Outcome]) -> list[RunSpec]:
    """One group's search runs, round by round while the rounds before are finished, then its confirm runs."""
    r = config.random
    assert r is not None
    space = search.space_of(r.space)
    # what the search ranks its points on: its group's train.monitor (a searched one decides only each run's own)
    monitor = get_path(group, "train.monitor", TRAINING_BEST)
    stages = staged(config)
    specs: list[RunSpec] = []
    history: list[list[search.Trial]] = []
    for round_ in range(1, r.rounds + 1):
        labels = {"stage": "search", "round": round_} if stages else {}
        group_id = json.dumps({**params, "round": round_}, sort_keys=True, default=str)
        round_specs = [spec for values in search.plan_round(space, history, method=r.method, trials=r.trials,
                                                            seed=r.seed, keep=getattr(r, "keep", None))
                       for spec in _specs(vocabulary, group, {**params, **values, **labels}, values,
                                          None if r.prune is None else Pruning(
                                              r.prune.every, r.prune.keep, group_id,
                                              json.dumps(values, sort_keys=True)))]
        specs += round_specs
        if any(s.run_id not in results for s in round_specs):
            return specs  # the next round waits for this one
        # in the order the round planned its points: the sampler's history is the same on every resume
        history.append([search.Trial.of({k: s.params[k] for k in space}, results[s.run_id], monitor)
                        for s in round_specs])
    if config.confirm is not None:
        seeds = {"train": {**group.get("train", {}), "seeds": config.confirm.seeds}}
        confirmed = {**group, **seeds}
        for values in search.select_top([t for trials in history for t in trials], config.confirm.top):
            specs += _specs(vocabulary, confirmed, {**params, **values, "stage": "confirm"}, values)
        if config.confirm.defaults:
            specs += _specs(vocabulary, confirmed, {**params, "stage": "defaults"}, {})
    return specs


def _specs(vocabulary: Vocabulary, group: dict[str, Any], params: dict[str, Any], values: dict[str, Any],
           pruning: Pruning | None = None) -> list[RunSpec]:
    """One point of a group (`values`: the searched keys) on every seed of its config."""
    resolved = copy.deepcopy(group)
    for key, value in values.items():
        _apply(resolved, key, value, "random")
    shown = {k: v for k, v in params.items() if k not in ("stage", "round")}
    where = "grid/random point " + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ": "
    run_config = vocabulary.validate(resolved, prefix=where if shown else "")
    used = vocabulary.provenance(run_config)
    out = []
    for seed in run_config.train.seeds:
        one = run_config.model_copy(update={"train": run_config.train.model_copy(update={"seeds": [seed]})})
        out.append(RunSpec(run_id(one, seed, used), seed, one, dict(params), pruning, used))
    return out


def swept_keys(specs: list[RunSpec]) -> list[str]:
    keys: dict[str, None] = {}
    for s in specs:
        keys.update(dict.fromkeys(s.params))
    return list(keys)


_MISSING = object()


def _overwrites(set_key: str, swept_key: str, values: list[Any]) -> bool:
    """Whether sweeping swept_key over `values` would overwrite what --set set_key gave."""
    if set_key == swept_key or swept_key.startswith(set_key + "."):
        return True
    if not set_key.startswith(swept_key + "."):
        return False
    sub = set_key[len(swept_key) + 1:]  # a section is swept: only entries that set this key overwrite it
    return any(isinstance(v, dict) and get_path(v, sub, _MISSING) is not _MISSING for v in values)


def refuse_shadowed(raw: dict[str, Any], sets: list[str]) -> None:
    """A --set that a grid, random-space or case entry would overwrite is refused, never dropped."""
    random_space = (raw.get("random") or {}).get("space") or {}
    swept = [("grid", k, list(v)) for k, v in (raw.get("grid") or {}).items()]
    swept += [("random.space", k, [None]) for k in random_space]
    swept += [(f"cases.{c}", k, [v]) for c, delta in (raw.get("cases") or {}).items() for k, v in (delta or {}).items()]
    for item in sets:
        key = item.partition("=")[0].strip()
        if key.split(".")[0] in ("grid", "random", "cases"):
            continue
        for where, swept_key, values in swept:
            if _overwrites(key, swept_key, values):
                raise ConfigError(f"--set {key}: {where} sets {swept_key} for every run, which would overwrite it; "
                                  f"change {where}.{swept_key} instead (or remove it from the sweep)")
