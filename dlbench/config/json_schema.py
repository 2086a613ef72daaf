"""The JSON Schema of a config file, generated from the catalog: what an editor knows.

It is built from the same records as the pydantic models (`config/schema.py`) and refuses
what `dlbench validate` refuses wherever JSON Schema can say it: an `enum` for every named
choice, a section that chooses a component written as one `if: {name: const} then: member`
branch per component (so a client's best match names the key the chosen component does not
read, not another member's tag), every dotted key of `grid`, `cases` and `random.space` with
the type of its values, `if` / `then` for the rules between fields, `uniqueItems`, the name's
`pattern`. A rule's refusal carries an `errorMessage` saying why (the YAML language server shows
it; other clients ignore it). What JSON Schema cannot say is `ONLY_VALIDATE`: the docs page
lists it, the bad-config corpus (tests/bad_configs.yaml) checks it.

A key the catalog declares (a component, a section, a setting, a plugin's) is covered here with
no edit; the sweep machinery's own models (`random`, `confirm`) come from pydantic.
"""

from __future__ import annotations

import copy
import json
import re
import typing
from typing import Any

from pydantic import TypeAdapter

from dlbench.catalog import CATALOG, SECTIONS, TOP, Distinct, Section, Setting
from dlbench.catalog.metrics import TRAINING_BEST

# What only `dlbench validate` refuses, each with the reason JSON Schema cannot say it (the docs
# page "Editor set-up" lists these; the bad-config corpus names one of them for each case the schema passes).
ONLY_VALIDATE: dict[str, str] = {
    "files": "a dataset's files must exist or download, a plugin file must exist and load: the schema sees only "
             "the text",
    "data sizes": "train_size, val_size and batch_size larger than the dataset's samples: the sizes are known once "
                  "the data loads",
    "conv arithmetic": "a conv stack that shrinks the input to nothing, and model.residual with no layer of its "
                       "input's width: arithmetic over the layers and the dataset's shape",
    "swept rules": "the rules between fields, checked again on every run a grid, case or random point makes (a "
                   "grid value merged into the section it sweeps): the schema checks each value, not the merged run",
    "sweep counts": "plots that need two swept keys (panels) or two numeric ones (scatter): counting keys across "
                    "grid, cases and random.space",
    "search arithmetic": "random.prune.every a multiple of train.eval_every and below the runs' length, "
                         "confirm.top at most random.trials x random.rounds, a range's low bound above its high "
                         "one: arithmetic between values",
    "confirm seeds": "confirm.seeds sharing a seed with train.seeds: an intersection of two lists",
    "device": "train.device: cuda on a machine without CUDA, a precision the device cannot run",
    "plugin checks": "a plugin dataset's kind of input (points, images) and a plugin model's or optimizer's own "
                     "refusals: known once its code runs",
    "run count": "a sweep of more runs than --max-runs without --yes: a command-line option",
    "integral floats": "1.0 where an integer is asked: JSON Schema counts it as an integer, validate does not",
}


def _forbid(why: str) -> dict[str, Any]:
    """A key that must not be set: null (unset) at most. Not `not: {}`, whose message the YAML language server
    will not replace with `errorMessage`."""
    return {"type": "null", "errorMessage": why}


def _only(value: Any, why: str) -> dict[str, Any]:
    """A key that may only hold its default (validate accepts the default written out)."""
    return {"const": value, "errorMessage": why}


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=list))


def _nested(path: list[str], leaf: dict[str, Any], required: bool) -> dict[str, Any]:
    """`leaf` at a dotted path; `required`: each key on the way must be there."""
    node = leaf
    for part in reversed(path):
        node = {"properties": {part: node}, **({"required": [part]} if required else {})}
    return node


def _is(key: str, values: list[Any], default: Any) -> dict[str, Any]:
    """Condition: the value at a dotted key (its default where absent) is one of `values`."""
    return _nested(key.split("."), {"enum": values}, required=default not in values)


def _given(key: str, leaf: dict[str, Any] | None = None) -> dict[str, Any]:
    """Condition: the dotted key is written (and matches `leaf`)."""
    return _nested(key.split("."), leaf or {}, required=True)


def _then(key: str, leaf: dict[str, Any]) -> dict[str, Any]:
    return _nested(key.split("."), leaf, required=False)


def _rule(condition: dict[str, Any], then: dict[str, Any]) -> dict[str, Any]:
    return {"if": condition, "then": then}


# ---------------------------------------------------------------- settings


def _with_names(schema: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """Every string in a type's schema becomes one of `names` (a choice of a kind's components)."""
    if schema.get("type") == "string" and "enum" not in schema and "const" not in schema:
        return {**schema, "enum": names}
    out = dict(schema)
    if "anyOf" in out:
        out["anyOf"] = [_with_names(s, names) for s in out["anyOf"]]
    if "items" in out:
        out["items"] = _with_names(out["items"], names)
    return out


def _type_schema(annotation: Any) -> dict[str, Any]:
    schema = TypeAdapter(annotation).json_schema()
    if any(isinstance(m, Distinct) for m in getattr(annotation, "__metadata__", ())):
        schema["uniqueItems"] = True
    return schema


def setting(s: Setting, described: bool = True) -> dict[str, Any]:
    """One setting's schema: its type and constraints, its names (a choice), its doc and default."""
    if s.items:
        item = _object({i.name: setting(i) for i in s.items}, [i.name for i in s.items if i.required])
        schema: dict[str, Any] = {"type": "array", "items": item, **({"minItems": 1} if s.required else {})}
    else:
        schema = _type_schema(s.type)
    if s.choices:
        schema = _with_names(schema, CATALOG[s.choices].names())
    if described:
        schema["description"] = s.doc
        if not s.required:
            schema["default"] = _jsonable(s.default)
    return schema


def _object(properties: dict[str, Any], required: list[str] | None = None, **more: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, **({"required": required} if required else {}),
            "additionalProperties": False, **more}


def _any(schemas: list[dict[str, Any]]) -> dict[str, Any]:
    """One schema for a key that several components read, each in its own type."""
    distinct: list[dict[str, Any]] = []
    for s in schemas:
        if s not in distinct:
            distinct.append(s)
    return distinct[0] if len(distinct) == 1 else {"anyOf": distinct}


# ---------------------------------------------------------------- sections


def _preset(section: Section) -> Setting | None:
    """The section's setting that fills in its component by name (model.preset), if any."""
    return next((s for s in section.settings if s.choices and section.key and all(
        section.key in c.facts.get("values", {}) for c in CATALOG[s.choices]) and len(CATALOG[s.choices])), None)


def _member_name(section: Section, name: str) -> str:
    return f"{section.name}.{name}"


def _members(section: Section) -> dict[str, dict[str, Any]]:
    """$defs: each component's member of a choosing section: its tag, the section's settings and its own."""
    assert section.chooses and section.key
    preset = _preset(section)
    out = {}
    for c in CATALOG[section.chooses]:
        settings = (*section.settings, *c.settings)
        required = [s.name for s in settings if s.required]
        props = {section.key: {"const": c.name, "description": f"the {CATALOG[section.chooses].label}"},
                 **{s.name: setting(s) for s in settings}}
        member = _object(props, description=c.summary)
        if required and preset is not None:  # a preset gives what its kind requires (model.conv)
            member["if"] = _given(preset.name, {"type": "string"})
            member["else"] = {"required": required}
        elif required:
            member["required"] = required
        out[_member_name(section, c.name)] = member
    return out


def _chosen(section: Section, name: str) -> dict[str, Any]:
    """Condition: the section chooses component `name` (written, or by its preset, or by default)."""
    assert section.chooses and section.key
    written = _given(section.key, {"const": name})
    preset = _preset(section)
    unwritten: dict[str, Any] = {"not": {"required": [section.key]}}
    if preset is not None:
        kinds = {p.name: p.facts["values"][section.key] for p in CATALOG[preset.choices or ""]}
        mine = [p for p, k in kinds.items() if k == name]
        others = [p for p, k in kinds.items() if k != name]
        by_preset = {"required": [preset.name], "properties": {preset.name: {"enum": mine}}}
        if name == section.default:
            no_preset = {"not": {"required": [preset.name]}}
            unwritten["anyOf"] = [no_preset, {"properties": {preset.name: {"not": {"enum": others}}}}]
            return {"anyOf": [written, unwritten]}
        return {"anyOf": [written, {**unwritten, **by_preset}]}
    if name != section.default:
        return written
    return {"anyOf": [written, unwritten]}


def section_schema(section: Section) -> dict[str, Any]:
    """A section as written in a config: its settings; a choosing section: one branch per component."""
    title = f"the {section.name} section (a mapping of its keys)"  # what editors say is expected
    if not section.chooses:
        return _object({s.name: setting(s) for s in section.settings}, description=section.summary, title=title)
    assert section.key
    kind = CATALOG[section.chooses]
    branches = [_rule(_chosen(section, c.name), {"$ref": f"#/$defs/{_member_name(section, c.name)}"})
                for c in kind]
    preset = _preset(section)
    if preset is not None:  # a preset names its component: a different one written beside it is refused
        branches += [_rule(_given(preset.name, {"const": p.name}), _then(section.key, {
            "const": p.facts["values"][section.key],
            "errorMessage": f"{section.name}.{preset.name} {p.name} is a {p.facts['values'][section.key]}"}))
            for p in CATALOG[preset.choices or ""]]
    return {"type": "object", "title": title, "description": section.summary,
            "properties": {section.key: {"enum": kind.names(), "default": section.default,
                                         "description": f"the {kind.label}"}},
            "allOf": branches}


def _swept_section(section: Section) -> dict[str, Any]:
    """A whole section given as a sweep value: merged into the run's section, so any of its keys may be
    left out (a component's required ones too); the keys given must belong to the component named."""
    keys = _section_keys(section)
    props = {k: _any([setting(s, described=False) for s in ss]) for k, ss in keys.items()}
    schema = _object(props, title=f"a mapping of {section.name} keys")  # the title: what editors say is expected
    if section.chooses and section.key:
        props[section.key] = {"enum": CATALOG[section.chooses].names()}
        schema["allOf"] = [_rule(_given(section.key, {"const": c.name}), {"propertyNames": {"enum": [
            section.key, *[s.name for s in (*section.settings, *c.settings)]]}}) for c in CATALOG[section.chooses]]
    return schema


def _section_keys(section: Section) -> dict[str, list[Setting]]:
    """Each key of a section (any component's) -> the settings of that name."""
    keys: dict[str, list[Setting]] = {s.name: [s] for s in section.settings}
    for c in CATALOG[section.chooses] if section.chooses else ():
        for s in c.settings:
            keys.setdefault(s.name, []).append(s)
    return keys


# ---------------------------------------------------------------- swept keys (grid, cases, random.space)


def swept_keys() -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Every key a sweep may set -> the schema of one value: (exact keys, patterns of list items' keys)."""
    from dlbench.config.schema import sweepable

    exact: dict[str, dict[str, Any]] = {}
    patterns: dict[str, dict[str, Any]] = {}
    top = {s.name: s for s in TOP.settings}
    for head in sweepable():
        if head in top:
            exact[head] = setting(top[head])
            continue
        section = SECTIONS[head]
        exact[head] = _swept_section(section)
        if section.chooses and section.key:
            exact[f"{head}.{section.key}"] = {"enum": CATALOG[section.chooses].names()}
        for name, settings in _section_keys(section).items():
            exact[f"{head}.{name}"] = _any([setting(s, described=False) for s in settings])
            for s in settings:
                if s.items:
                    item = f"^{head}\\.{name}\\.[0-9]+"
                    patterns[item + "$"] = _object({i.name: setting(i, False) for i in s.items})
                    for i in s.items:
                        patterns[f"{item}\\.{i.name}$"] = setting(i, described=False)
    return exact, patterns


def _swept(wrap: typing.Callable[[str], dict[str, Any]], exact: dict[str, Any],
           patterns: dict[str, Any]) -> dict[str, Any]:
    """A mapping of swept keys: its names one of the keys (`propertyNames`), each value of its key's type."""
    names = {"anyOf": [{"enum": list(exact)}, *({"pattern": p} for p in patterns)],
             "errorMessage": "not a key a sweep can set (dlbench list shows each section's keys)"}
    return {"type": "object", "propertyNames": names,
            "properties": {k: wrap(f"#/$defs/key:{k}") for k in exact},
            "patternProperties": {p: wrap(f"#/$defs/key:{p}") for p in patterns}}


# ---------------------------------------------------------------- rules between fields


def _rules() -> list[dict[str, Any]]:
    """validate's rules across fields (config/schema.py's _rules), each where JSON Schema can say it."""
    model, data = SECTIONS["model"], SECTIONS["data"]
    rules = []
    tasks = CATALOG["task"]
    default_task = next(s.default for s in TOP.settings if s.name == "task")
    # a task's own section only in that task
    for section in SECTIONS.values():
        if section.role == "meta" and section.optional:
            readers = [t.name for t in tasks if section.name in t.facts["sections"]]
            others = [t.name for t in tasks if t.name not in readers]
            rules.append(_rule(_is("task", others, default_task), _then(section.name, _forbid(
                f"only task {' / '.join(readers)} reads it"))))
    # a task that trains nothing reads a few sections or keys of the training ones; any other is refused
    for task in tasks:
        reads = task.facts["reads"]
        if reads is None:
            continue
        why = f"task {task.name} does not read it (it reads {', '.join(reads)})"
        for section in SECTIONS.values():
            if section.role in ("meta", "sweep", "execution") or section.name in reads:
                continue
            allowed = [r.split(".", 1)[1] for r in reads if r.startswith(f"{section.name}.")]
            names = {"enum": allowed} if allowed else {"type": "null"}  # a key is a string: none passes
            rules.append(_rule(_is("task", [task.name], default_task),
                               _then(section.name, {"propertyNames": {**names, "errorMessage": why}})))
    # the plots a task draws; one that needs a target is drawn after the run (dlbench plot --target)
    plots = CATALOG["plot"]
    for task in tasks:
        drawn = [p.name for p in plots if p.facts["task"] == task.name and "target" not in p.facts["needs"]]
        rules.append(_rule(_is("task", [task.name], default_task), {"properties": {"plots": {"anyOf": [
            {"type": "null"}, {"items": {"enum": drawn, "errorMessage": f"task {task.name} draws "
                                         f"{', '.join(drawn)}; others are drawn after the run"}}]}}}))
    for p in plots:
        for need in p.facts["needs"]:
            contains = _given("plots", {"type": "array", "contains": {"const": p.name}})
            if need.startswith("diagnostics."):
                rules.append(_rule(contains, _given(need, {"const": True, "errorMessage": f"plot {p.name} needs it"})))
            elif need == "search":
                rules.append(_rule(contains, _given("random", {"type": "object", "errorMessage":
                                                              f"plot {p.name} draws a random: search"})))
    # the training length: epochs or steps
    both = {"type": "integer"}
    rules.append(_rule(_given("train", {"properties": {"epochs": both, "steps": both},
                                        "required": ["epochs", "steps"]}),
                       _then("train.steps", _forbid("set exactly one of train.epochs and train.steps"))))
    # a model setting that does nothing where another is off
    rules += _model_rules(model)
    first = _given("data.train_subset", {"const": "first"})
    rules.append(_rule(first, _given("data.train_size", {"type": "integer", "errorMessage":
                                                         "train_subset: first keeps the first train_size samples"})))
    rules.append(_rule(_given("data.val_size", {"const": 0}), _then("regularization.early_stopping", _forbid(
        "early stopping reads train.monitor, a validation metric; data.val_size is 0"))))
    rules.append(_rule(_given("data.val_size", {"const": 0}), _then("train.monitor", _only(
        TRAINING_BEST, "train.monitor is measured on the validation split; data.val_size is 0"))))
    losses = CATALOG["loss"]
    plain = [c.name for c in losses if not c.facts.get("smoothable")]
    default_loss = next(s.default for s in TOP.settings if s.name == "loss")
    rules.append(_rule(_is("loss", plain, default_loss), _then("regularization.label_smoothing", _only(
        0.0, f"only {', '.join(c.name for c in losses if c.facts.get('smoothable'))} take label smoothing"))))
    rules += _data_rules(data, model)
    rules.append(_penalty_rule())
    diagnostics = SECTIONS["diagnostics"]
    switches = [s.name for s in diagnostics.settings if s.type is bool]
    off = {"properties": {"diagnostics": {"properties": {k: {"const": False} for k in switches}}}}
    rules.append(_rule(off, _then("diagnostics", {"properties": {
        s.name: _only(s.default, "every diagnostic is off, so nothing reads it") for s in diagnostics.settings
        if s.name not in switches}})))
    rules.append(_rule(_given("random", {"type": "object", "required": ["keep"], "properties": {
        "rounds": {"const": 1}}}), _then("random.keep", _forbid("keep narrows the ranges between rounds; "
                                                                "random.rounds is 1"))))
    rules.append(_rule(_given("confirm", {"type": "object"}), _given("random", {
        "type": "object", "errorMessage": "confirm reruns the best points of a random: search"})))
    return rules + _sbatch_rules()


def _sbatch_rules() -> list[dict[str, Any]]:
    """slurm.sbatch: long option names that the slurm executor passes on (its catalog record says which),
    each value one non-empty line."""
    if "slurm" not in CATALOG["executor"] or "slurm" not in SECTIONS:
        return []
    facts = CATALOG["executor"].record("slurm").facts
    own = "|".join(re.escape(o).replace("\\-", "[-_]") for o in facts["sbatch_own"])
    names = {"pattern": f"^(?!(?:{own})$)" + facts["sbatch_option"].removeprefix("^"),
             "errorMessage": "an sbatch long option's name (e.g. constraint, exclude), none that dlbench sets itself "
                             "or a slurm: key sets (time, partition, cpus, gpus, mem, account, qos)"}
    one_line = {"type": "string", "pattern": "^(?![\\s\\S]*\\n)\\s*\\S"}  # no newline, not blank
    values = {"anyOf": [{"type": "integer"}, one_line], "errorMessage": "one non-empty line"}
    return [_then("slurm.sbatch", {"propertyNames": names, "additionalProperties": values})]


def _model_rules(model: Section) -> list[dict[str, Any]]:
    keys = _section_keys(model)
    rules = []
    default_norm = keys["norm"][0].default
    for key in ("bn_eps", "bn_momentum", "bn_running_var"):
        rules.append(_rule(_is("model.norm", [n for n in CATALOG["norm"].names() if n != "batch"], default_norm),
                           _then(f"model.{key}", _only(keys[key][0].default, "it sets BatchNorm; model.norm is "
                                                                               "not batch"))))
    rules.append(_rule(_is("model.norm", ["none"], default_norm), _then("model.norm_position", _only(
        keys["norm_position"][0].default, "model.norm is none: there is no norm to place"))))
    # dropout_scaling with no dropout (a preset's dropout counts)
    preset = _preset(model)
    dropping = [p.name for p in CATALOG[preset.choices or ""] if p.facts["values"].get("dropout")] if preset else []
    no_dropout: dict[str, Any] = {"properties": {"dropout": {"const": 0}, "dropout_scaling": {
        "not": {"const": "inverted"}}}, "required": ["dropout_scaling"]}
    if dropping:
        no_dropout["anyOf"] = [{"required": ["dropout"]}, {"properties": {"preset": {"not": {"enum": dropping}}}}]
    rules.append(_rule({"properties": {"model": no_dropout}, "required": ["model"]}, _then(
        "model.dropout_scaling", _only("inverted", "it says how dropout scales, and model.dropout is 0"))))
    return rules


def _data_rules(data: Section, model: Section) -> list[dict[str, Any]]:
    """What a dataset's samples allow (built-ins: their facts are known without loading anything)."""
    known = [c for c in CATALOG[data.chooses or ""] if isinstance(c.facts, dict) and "inputs" in c.facts]
    rules = []
    not_images = [c.name for c in known if c.facts["inputs"] != "image"]
    augment = next(s for s in SECTIONS["regularization"].settings if s.name == "augment")
    rules.append(_rule(_is("data.dataset", not_images, data.default), _then("regularization.augment", _only(
        augment.default, "augmentation is for images; this dataset's samples are not"))))
    points = [c.name for c in known if c.facts["inputs"] == "points"]
    preset = _preset(model)
    why = "this dataset's samples are 2-D points, with no spatial axis to convolve"
    # enums of what is allowed, not `not`: the YAML language server shows errorMessage only for the former
    others = [k for k in CATALOG[model.chooses or ""].names() if k != "cnn"]
    kinds: dict[str, Any] = {"kind": {"enum": others, "errorMessage": why}}
    if preset is not None:
        kinds[preset.name] = {"enum": [None, *(p.name for p in CATALOG[preset.choices or ""]
                                               if p.facts["values"].get("kind") != "cnn")], "errorMessage": why}
    rules.append(_rule(_is("data.dataset", points, data.default), _then("model", {"properties": kinds})))
    return rules


def _penalty_rule() -> dict[str, Any]:
    """penalty_in_loss reports 1/2 weight_decay ||w||^2: it needs a weight decay (written, or a component's own)."""
    optimizer = SECTIONS["optimizer"]
    decaying = [c.name for c in CATALOG["optimizer"] if dict((s.name, s.default) for s in c.settings).get(
        "weight_decay")]
    why = "the penalty is 1/2 optimizer.weight_decay ||w||^2; give the optimizer a weight decay"
    positive = {"properties": {"weight_decay": {"exclusiveMinimum": 0, "errorMessage": why}}}
    needs = {**positive, "required": ["weight_decay"]}
    then = {"if": _is("name", decaying, optimizer.default), "then": positive, "else": needs}
    default_decays = optimizer.default in decaying
    return _rule(_given("regularization.penalty_in_loss", {"const": True}),
                 {"properties": {"optimizer": then}, **({} if default_decays else {"required": ["optimizer"]})})


# ---------------------------------------------------------------- the config


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"].rsplit("/", 1)[1]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def _pydantic_part(base: dict[str, Any], name: str, defs: dict[str, Any]) -> dict[str, Any]:
    """A top-level key the catalog does not declare (the sweep machinery: random, confirm), as pydantic
    writes it, with the definitions it refers to; its tagged unions as one branch per member."""
    schema = copy.deepcopy(base["properties"][name])
    todo = sorted(_refs(schema))
    while todo:
        ref = todo.pop()
        if ref not in defs:
            defs[ref] = copy.deepcopy(base["$defs"][ref])
            _branch_unions(defs[ref], defs)
            todo += sorted(_refs(defs[ref]))
    _branch_unions(schema, defs)
    return schema


def _branch_unions(node: Any, defs: dict[str, Any]) -> None:
    """pydantic writes a tagged union (random.method) as a oneOf, whose best match may name another member's
    tag; the tag's enum and one `if: {tag: its values} then: member` branch per member name the key instead."""
    if isinstance(node, list):
        for v in node:
            _branch_unions(v, defs)
        return
    if not isinstance(node, dict):
        return
    for v in node.values():
        _branch_unions(v, defs)
    members = node.get("oneOf")
    if not members or not all(isinstance(m, dict) and set(m) == {"$ref"} for m in members):
        return
    refs = [m["$ref"] for m in members]
    schemas = [defs.get(r.rsplit("/", 1)[1], {}) for r in refs]
    for tag in schemas[0].get("properties", {}):
        values = [s.get("properties", {}).get(tag, {}) for s in schemas]
        names = [v.get("enum", [v["const"]] if "const" in v else []) for v in values]
        flat = [n for ns in names for n in ns]
        if not all(names) or len(set(map(json.dumps, flat))) != len(flat):
            continue  # not a tag: a member without it, or values shared
        default = next((v["default"] for v, s in zip(values, schemas)
                        if "default" in v and tag not in s.get("required", [])), None)
        del node["oneOf"]
        node.update({"type": "object", "properties": {tag: {"enum": flat}}, "allOf": [
            _rule({"properties": {tag: {"enum": ns}}, **({} if default in ns else {"required": [tag]})},
                  {"$ref": ref}) for ns, ref in zip(names, refs)]})
        return


def _objects(schema: dict[str, Any], defs: dict[str, Any]) -> list[dict[str, Any]]:
    """The object schemas a property's schema may hold ($ref, anyOf with null, a union's branches)."""
    out = [schema] if "properties" in schema else []
    if "$ref" in schema:
        out += _objects(defs[schema["$ref"].rsplit("/", 1)[1]], defs)
    for key in ("anyOf", "oneOf", "allOf"):
        for s in schema.get(key, []):
            out += _objects(s, defs)
    if "then" in schema:
        out += _objects(schema["then"], defs)
    return out


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a config file, for editors (`dlbench schema`)."""
    from dlbench.config import schema as models

    base = models.Config.model_json_schema()
    defs: dict[str, Any] = {}
    props: dict[str, Any] = {}
    top = {s.name: s for s in TOP.settings}
    exact, patterns = swept_keys()
    for name in models.Config.model_fields:
        section = SECTIONS.get(name)
        if name in top:
            props[name] = setting(top[name])
        elif name == "grid":
            props[name] = _swept(lambda ref: {"type": "array", "minItems": 1, "items": {"$ref": ref}}, exact,
                                 patterns)
        elif name == "cases":
            props[name] = {"type": "object", "additionalProperties": _swept(lambda ref: {"$ref": ref}, exact,
                                                                            patterns)}
        elif section is not None and section.role != "sweep":
            if section.chooses:
                defs.update(_members(section))
            props[name] = section_schema(section)
            if section.optional:
                props[name] = {"anyOf": [{"type": "null"}, props[name]], "default": None}
        else:  # the sweep machinery (random, confirm), and any key declared outside the catalog
            props[name] = _pydantic_part(base, name, defs)
        if section is not None:
            props[name]["description"] = section.summary
    defs.update({f"key:{k}": v for k, v in {**exact, **patterns}.items()})
    _space(props, defs)
    props["name"]["pattern"] = models.NAME_PATTERN
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "dlbench config",
            "type": "object", "properties": props, "additionalProperties": False, "allOf": _rules(),
            "$defs": dict(sorted(defs.items()))}  # sorted: the same file from every process


def _space(props: dict[str, Any], defs: dict[str, Any]) -> None:
    """random.space: every key a sweep may set, each a distribution (a choice: of that key's values);
    exactly one distribution per key; confirm.seeds distinct."""
    for random in _objects(props.get("random", {}), defs):
        space = random.get("properties", {}).get("space")
        if space is None:
            continue
        keys = {k: {"allOf": [space.get("additionalProperties", {}), {"properties": {"choice": {
            "items": {"$ref": f"#/$defs/key:{k}"}}}}]} for k in (d[4:] for d in defs if d.startswith("key:"))}
        exact = {k: v for k, v in keys.items() if not k.startswith("^")}
        patterns = {k: v for k, v in keys.items() if k.startswith("^")}
        space.pop("additionalProperties", None)
        space.update(_swept(lambda ref: {}, exact, patterns))
        space["properties"], space["patternProperties"] = exact, patterns
        for dist in _objects(space["properties"][next(iter(space["properties"]))]["allOf"][0], defs):
            kinds = list(dist.get("properties", {}))
            dist["oneOf"] = [{"required": [k], "properties": {k: {"not": {"type": "null"}}}} for k in kinds]
    for confirm in _objects(props.get("confirm", {}), defs):
        seeds = confirm.get("properties", {}).get("seeds")
        if seeds is not None:
            seeds["uniqueItems"] = True
