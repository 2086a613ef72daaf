"""The JSON Schema an editor reads (`dlbench schema`, configs/schema.json) refuses what `dlbench validate`
refuses wherever JSON Schema can say it, checked with a real client (jsonschema, whose best match
check-jsonschema reports) on the bad-config corpus (tests/bad_configs.yaml); what it cannot say is
listed, and that list is the docs page's. Every shipped config passes both."""

from __future__ import annotations

import copy
import functools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from jsonschema.exceptions import best_match
from sweep_util import dlbench

from dlbench import plugins, runner
from dlbench.catalog import CATALOG, SECTIONS, Section
from dlbench.config.json_schema import ONLY_VALIDATE, json_schema
from dlbench.config.schema import sweepable
from dlbench.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CORPUS: dict[str, dict[str, Any]] = yaml.safe_load((ROOT / "tests" / "bad_configs.yaml").read_text())
SHIPPED = [*sorted((ROOT / "configs").rglob("*.yaml")), *sorted((ROOT / "examples").rglob("*.yaml"))]


@functools.cache
def _validator(schema_file: Path) -> jsonschema.Draft202012Validator:
    schema = json.loads(schema_file.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.fixture(scope="module")
def editor() -> jsonschema.Draft202012Validator:
    """configs/schema.json: what the shipped configs' modeline names (a fresh process writes the same)."""
    return _validator(ROOT / "configs" / "schema.json")


def test_the_corpus_has_one_entry_per_kind_of_refusal() -> None:
    assert len(CORPUS) >= 40
    for name, entry in CORPUS.items():
        assert ("schema" in entry) != ("only_validate" in entry), name
        assert entry.get("only_validate", next(iter(ONLY_VALIDATE))) in ONLY_VALIDATE, name


@pytest.mark.parametrize("case", list(CORPUS))
def test_a_bad_config_is_refused_by_validate_and_where_it_can_be_by_the_schema(
        case: str, editor: jsonschema.Draft202012Validator, tmp_path: Path) -> None:
    entry = CORPUS[case]
    config = {"name": "bad", **entry["config"]}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    out = dlbench("validate", path)
    assert out.code == 2, (case, out.output)
    out.error_line  # noqa: B018 - asserts exactly one line
    error = best_match(editor.iter_errors(config))
    if "only_validate" in entry:
        assert error is None, (case, error and error.message)
        return
    assert error is not None, f"{case}: the schema accepts it"
    assert error.json_path == entry["schema"], (case, error.json_path, error.message)
    assert entry.get("says", "") in error.message, (case, error.message)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_config_passes_the_schema_its_modeline_names(path: Path) -> None:
    first = path.read_text().splitlines()[0]
    target = first.removeprefix("# yaml-language-server: $schema=")
    assert target != first, f"{path} has no schema modeline"
    errors = list(_validator((path.parent / target).resolve()).iter_errors(yaml.safe_load(path.read_text())))
    assert not errors, (path.name, best_match(errors).message)


def test_validate_refuses_in_one_line_with_exit_2_as_a_command(tmp_path: Path) -> None:
    """The console script itself (the corpus runs in this process, through the same main())."""
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": "bad", **CORPUS["a key the chosen optimizer does not read"]["config"]}))
    out = subprocess.run([sys.executable, "-m", "dlbench", "validate", str(path)], capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.startswith("error: optimizer.betas: "), out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_the_editor_page_lists_what_only_validate_catches() -> None:
    text = (ROOT / "docs" / "guide" / "editor.md").read_text()
    listed = [line for line in text.split("## What only `dlbench validate` catches")[1].splitlines()
              if line.startswith("- **")]
    assert listed == [f"- **{kind}**: {reason}" for kind, reason in ONLY_VALIDATE.items()]
    page = " ".join(text.split())
    refused = sum("schema" in entry for entry in CORPUS.values())  # the page's count of scripts/editor_check.py
    assert f"the {refused} bad configs the schema refuses" in page and f"none of the {len(CORPUS) - refused} " \
        "left to `validate`" in page


def test_schema_with_a_config_knows_its_plugins(tmp_path: Path) -> None:
    """`dlbench schema --config FILE` loads the config's plugins: their components and fields are in it."""
    out = tmp_path / "schema.json"
    try:
        done = dlbench("schema", "--config", ROOT / "examples" / "plugins" / "models.yaml", "-o", out)
    finally:
        plugins.unload()  # the other tests' catalog is the built-in one
    assert done.code == 0, done.err
    validator = _validator(out)
    good = {"name": "p", "data": {"dataset": "digits", "test_fraction": 0.3}, "model": {"kind": "tiny_resnet"}}
    assert not list(validator.iter_errors(good))
    error = best_match(validator.iter_errors({**good, "data": {"dataset": "digits", "samples": 3}}))
    assert error is not None and error.json_path == "$.data" and "'samples' was unexpected" in error.message


def _enums(node: Any) -> list[list[Any]]:
    if isinstance(node, dict):
        return ([node["enum"]] if "enum" in node else []) + [e for v in node.values() for e in _enums(v)]
    return [e for v in node for e in _enums(v)] if isinstance(node, list) else []


@pytest.mark.parametrize("section", [s for s in SECTIONS.values() if s.role != "sweep"], ids=lambda s: s.name)
def test_every_section_key_and_name_of_the_catalog_is_in_the_schema(section: Section) -> None:
    """The generator reads the catalog: a section, a component or a setting declared there (by anyone, a plugin
    included) is in the schema with no edit, each named choice as an enum of every name."""
    schema = json_schema()
    node = schema["properties"][section.name]
    node = next((s for s in node.get("anyOf", [node]) if s.get("type") == "object"), node)
    settings = list(section.settings)
    if section.chooses:
        assert node["properties"][section.key]["enum"] == CATALOG[section.chooses].names()
        for c in CATALOG[section.chooses]:
            member = schema["$defs"][f"{section.name}.{c.name}"]["properties"]
            assert set(member) == {section.key, *(s.name for s in (*section.settings, *c.settings))}, c.name
            settings += c.settings
    else:
        assert set(node["properties"]) == {s.name for s in section.settings}
    for s in settings:
        if s.choices:
            assert CATALOG[s.choices].names() in _enums(schema), (section.name, s.name)
        assert f"key:{section.name}.{s.name}" in schema["$defs"] or section.name not in sweepable()


# near-misses of the shipped configs: a leaf replaced by an edge value or a name of the catalog, a key
# dropped, a rule's trigger set; what validate accepts, the schema must accept (an editor never underlines
# a config that runs)
_EDGES = st.one_of(st.sampled_from([0, 1, 2, -1, 0.0, 0.5, 1.0, 1.5, 1e-5, True, False, None, "full", "post",
                                    "test", "first", [], [0], [0, 0], [4, 4], {}]),
                   st.sampled_from(sorted({c.name for kind in CATALOG for c in kind})))
_TRIGGERS = [("model", "norm"), ("model", "dropout"), ("train", "steps"), ("data", "val_size"),
             ("diagnostics", "weights"), ("regularization", "penalty_in_loss"), ("optimizer", "weight_decay"),
             ("model", "preset"), ("task",), ("loss",), ("plots",)]


@st.composite
def _near_misses(draw: st.DrawFn) -> dict[str, Any]:
    config = copy.deepcopy(yaml.safe_load(draw(st.sampled_from(SHIPPED[:-2])).read_text()))  # no plugin examples
    for _ in range(draw(st.integers(1, 2))):
        where = draw(st.sampled_from([*_TRIGGERS, *_leaves(config)]))
        parent = config
        for part in where[:-1]:
            parent = parent.setdefault(part, {}) if isinstance(parent, dict) else parent[part]
            if not isinstance(parent, (dict, list)):
                return config
        if isinstance(parent, dict) and draw(st.booleans()) and where[-1] in parent:
            del parent[where[-1]]
        elif isinstance(parent, dict) or (isinstance(where[-1], int) and where[-1] < len(parent)):
            parent[where[-1]] = copy.deepcopy(draw(_EDGES))  # never one list or mapping in two places
    return config


def _leaves(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    return [prefix] * bool(prefix) + [p for k, v in items for p in _leaves(v, (*prefix, k))]


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(_near_misses())
def test_what_validate_accepts_the_schema_accepts(editor: jsonschema.Draft202012Validator,
                                                  config: dict[str, Any]) -> None:
    error = best_match(editor.iter_errors(config))
    try:
        runner.load(config, [], max_runs=10**9, yes=True)
    except ConfigError:
        event(f"refused by validate{', and by the schema' if error else ''}")
        return
    event("accepted")
    assert error is None, (error.json_path, error.message, config)
