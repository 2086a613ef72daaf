"""Hostile input, property-based: random and mutated configs (wrong types, unknown keys,
huge / negative / NaN numbers, deep nesting, YAML anchors and billion laughs, python
tags, binary junk) and --set strings. Each either works or gets the one-line error
with exit code 2: never a traceback (which `main` would turn into exit 1), never a
hang. Fixed, small example budgets and derandomized generation keep it fast and
repeatable."""

from __future__ import annotations

import copy
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st
from sweep_util import Outcome, dlbench, one_thread, run_dirs  # noqa: F401 - one_thread is a fixture

from dlbench.config import schema as config_mod
from dlbench.config import vocabulary
from dlbench import runner as plan
from dlbench.plan import sweep
from dlbench.errors import ConfigError
from dlbench.components.inits import INITS
from dlbench.components.losses import LOSSES
from dlbench.components.models import ACTIVATIONS, MODELS, NORMS
from dlbench.components.optimizers import OPTIMIZERS


def fuzz_settings(examples: int) -> settings:
    # the deadline catches blow-ups that do finish; pytest-timeout catches real hangs
    return settings(max_examples=examples, deadline=timedelta(seconds=20), derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large])


BASE: dict[str, Any] = {
    "name": "fuzz",
    "description": "a valid starting point for mutations",
    "data": {"dataset": "mnist1d", "train_size": 200, "val_size": 0.1},
    "model": {"kind": "mlp", "hidden": [8], "activation": "tanh", "norm": "layer", "dropout": 0.1},
    "init": {"scheme": "he_normal"},
    "optimizer": {"name": "adam", "lr": 0.01, "betas": [0.9, 0.99], "weight_decay": 0.0},
    "regularization": {"l1": 0.0, "input_noise": 0.0, "early_stopping": 3},
    "loss": "cross_entropy",
    "train": {"steps": 4, "batch_size": 50, "eval_every": 2, "seeds": [0]},
    "grid": {"optimizer.lr": [0.01, 0.1], "model": [{"norm": "none"}, {"norm": "batch"}]},
    "random": {"trials": 2, "seed": 0, "space": {"optimizer.weight_decay": {"log_uniform": [1.0e-6, 1.0e-3]}}},
}

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-2**70, max_value=2**70),
    st.sampled_from([10**400, -10**400, 2**63, 2**64]),
    st.floats(),  # NaN, +-inf, 1e308, -0.0, subnormals
    st.text(max_size=12),
    st.sampled_from(["full", "sgd", "he_normal", "mnist1d", "batch", "cuda", "", "1e-3", ".nan", "-.inf",
                     "[1, 2]", "{a: 1}", "../../etc", "a" * 300]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)


# near-miss values for the real runs: edge numbers and names from every registry, so that
# more mutants validate and reach training (batch norm on one sample, lr 1e300, ...)
REGISTRY_NAMES = sorted({e.name for r in (MODELS, ACTIVATIONS, NORMS, INITS, OPTIMIZERS, LOSSES) for e in r})
edge_values = st.one_of(st.sampled_from([0, 1, 2, -1, 3, 2**63, 10**400, 1e-300, 1e300, 0.5, 0.999, 1.5, "full", True,
                                         None, [1], [4, 4]]),
                        st.sampled_from(REGISTRY_NAMES))


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every place in a config tree: mapping keys and list positions."""
    out = [prefix] if prefix else []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for k, v in items:
        out += paths(v, (*prefix, k))
    return out


def deep(value: Any, levels: int) -> Any:
    for _ in range(levels):
        value = [value] if levels % 2 else {"k": value}
    return value


@st.composite
def mutated_configs(draw: st.DrawFn, values: st.SearchStrategy[Any] = values) -> dict[str, Any]:
    cfg = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(paths(cfg) or [("name",)]))
        parent = cfg
        for part in where[:-1]:
            parent = parent[part]
        key = where[-1]
        op = draw(st.sampled_from(["replace", "replace", "replace", "delete", "unknown key", "nest"]))
        if op == "replace":
            parent[key] = draw(values)
        elif op == "delete" and isinstance(parent, dict):
            del parent[key]
        elif op == "unknown key" and isinstance(parent[key], dict):
            parent[key][draw(st.text(min_size=1, max_size=10))] = draw(values)
        elif op == "nest":
            parent[key] = deep(parent[key], draw(st.integers(1, 80)))
    return cfg


HOSTILE_SNIPPETS = [
    "&a ", "*a", "*undefined ", "<<: *a\n", "!!python/object/apply:os.system ['echo pwned']",
    "!!python/name:os.system", "!!binary aGk=", "!!set {a, b}", "!!float 'x'", "? [1, 2]\n: 3\n",
    "{", "[", "]", "'", '"', "\x00", "\t", "\x1b[31m", "---\n", "...\n", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n",
    "[" * 150, "&a [*a]", "\ufeff", "é", "\ud7ff", " " * 50, "#", ": : :", "- - -", "x: &x 1\ny: *x\n",
]


def billion_laughs(levels: int, width: int, at: str) -> str:
    """width ** levels nodes once expanded, a few hundred bytes as YAML."""
    lines = ["l0: &l0 [lol]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels + 1)]
    return "\n".join([*lines, f"{at}: *l{levels}"]) + "\n"


@st.composite
def hostile_texts(draw: st.DrawFn) -> str | bytes:
    kind = draw(st.sampled_from(["junk", "text", "splice", "laughs"]))
    if kind == "junk":
        return draw(st.binary(max_size=300))
    if kind == "text":
        return draw(st.text(max_size=300))
    if kind == "laughs":
        return billion_laughs(draw(st.integers(2, 10)), draw(st.integers(2, 10)),
                              draw(st.sampled_from(["description", "grid", "train", "x"])))
    text = yaml.safe_dump(BASE, sort_keys=False)
    at = draw(st.integers(0, len(text)))
    return text[:at] + draw(st.sampled_from(HOSTILE_SNIPPETS)) + text[at:]


def assert_clean(res: Outcome, allowed: tuple[int, ...] = (0, 2)) -> None:
    assert res.code in allowed, f"exit {res.code}: {res.err[-3000:]}"
    assert "Traceback" not in res.out + res.err
    if currently_in_test_context():  # --hypothesis-show-statistics: how often each outcome was reached
        event(f"exit {res.code}")
    if res.code == 2:
        res.error_line  # noqa: B018 - asserts exactly one "error: ..." line


@pytest.fixture(scope="module")
def workdir() -> Any:
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


def check_config_file(path: Path, out: Path) -> None:
    checked = dlbench("validate", path)
    dry = dlbench("run", path, "--out", out, "--dry-run")
    assert_clean(checked)
    assert_clean(dry)
    assert checked.code == dry.code


@fuzz_settings(examples=80)
@given(cfg=mutated_configs())
def test_mutated_configs_validate_or_fail_in_one_line(workdir: Path, cfg: dict[str, Any]) -> None:
    path = workdir / "mutated.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    check_config_file(path, workdir / "results")


@fuzz_settings(examples=60)
@given(text=hostile_texts())
def test_hostile_yaml_text_validates_or_fails_in_one_line(workdir: Path, text: str | bytes) -> None:
    path = workdir / "hostile.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    check_config_file(path, workdir / "results")


DOTTED_KEYS = ["name", "optimizer.lr", "optimizer.betas", "train.steps", "train.epochs", "train.seeds",
               "train.batch_size", "model.hidden", "model", "grid", "random", "random.space", "data.val_size",
               "init.scheme", "loss", "nope", "optimizer.nope", "train.steps.deeper", "grid.x", "0", "a..b", ".x"]


@st.composite
def set_strings(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["raw", "key=text", "key=value", "key=snippet", "valid"]))
    if kind == "valid":
        return draw(st.sampled_from(["optimizer.lr=0.5", "train.steps=3", "model.hidden=[4, 4]", "loss=mse",
                                     "train.batch_size=full", "random.trials=1", "grid={}", "name=other",
                                     "train.seeds=[1, 2]", "optimizer={name: sgd}", "model.norm=batch"]))
    if kind == "raw":
        return draw(st.text(max_size=60))
    key = draw(st.one_of(st.sampled_from(DOTTED_KEYS), st.text(max_size=15)))
    if kind == "key=text":
        return f"{key}={draw(st.text(max_size=40))}"
    if kind == "key=snippet":
        return f"{key}={draw(st.sampled_from(HOSTILE_SNIPPETS))}"
    dumped = yaml.safe_dump(draw(values), default_flow_style=True, width=10**6).removesuffix("\n...\n")
    return f"{key}={dumped.strip()}"


@fuzz_settings(examples=60)
@given(sets=st.lists(set_strings(), min_size=1, max_size=3))
def test_set_strings_apply_or_fail_in_one_line(workdir: Path, sets: list[str]) -> None:
    path = workdir / "base.yaml"
    path.write_text(yaml.safe_dump(BASE, sort_keys=False))
    args = [f"--set={s}" for s in sets]
    checked = dlbench("validate", path, *args)
    dry = dlbench("run", path, "--out", workdir / "results", "--dry-run", *args)
    assert_clean(checked)
    assert_clean(dry)
    assert checked.code == dry.code


@fuzz_settings(examples=40)
@given(name=st.one_of(st.text(max_size=30), st.sampled_from(["..", ".", "../x", "a/../../b", "/etc", "~", "a\\b",
                                                            "con", "a" * 101, "ok-name.v2", "x\x00y", "-x"])))
def test_accepted_names_stay_inside_the_results_folder(workdir: Path, name: str) -> None:
    path = workdir / "named.yaml"
    path.write_text(yaml.safe_dump({**BASE, "name": name}, sort_keys=False))
    checked = dlbench("validate", path)
    assert_clean(checked)
    if checked.code == 0:
        out = workdir / "results"
        assert (out / name).resolve().parent == out.resolve() and not name.startswith(".")


def small_enough(path: Path, overrides: list[str]) -> list[sweep.RunSpec]:
    """The runs, if worth training for real in a test: a few runs of a tiny model and a few steps."""
    cfg, raw, _ = vocabulary.load(path, overrides)
    if plan.planned_runs(cfg) > 8:
        return []
    specs = plan.unique(sweep.expand(cfg, raw))
    tiny = all(c.n_params is not None and c.n_params <= 20_000 and c.steps is not None and c.steps <= 50
               for c in plan.costs(specs))
    return specs if tiny else []


@fuzz_settings(examples=25)
@given(cfg=mutated_configs(edge_values))
def test_mutated_configs_that_validate_also_run(workdir: Path, data_root: Path, cfg: dict[str, Any]) -> None:
    """Real runs: train (exit 0, or 1 when a run fails and is recorded) or refuse (exit 2).
    The data lives in the test's cache and nothing is downloaded, whatever the mutation says."""
    path = workdir / "run.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    pinned = [f"data.root={data_root}", "data.download=false", "train.device=cpu"]
    try:
        specs = small_enough(path, pinned)
    except ConfigError:
        specs = []
    out = workdir / "runs"
    res = dlbench("run", path, "--out", out, "--force-new", *([] if specs else ["--dry-run"]),
                  *(f"--set={p}" for p in pinned))
    assert_clean(res, allowed=(0, 1, 2) if specs else (0, 2))
    event("trained" if specs else "dry run only")
    if specs and res.code != 2:  # every run recorded, as ok, diverged or failed
        assert run_dirs(out / specs[0].name).keys() == {s.run_id for s in specs}


YAML_BOMBS = {
    "billion laughs": (billion_laughs(9, 10, "description"), "more than 100000 nodes once aliases are expanded"),
    "recursive alias": ("grid: &a {optimizer.lr: [*a]}\n", "recursive alias: a node contains itself"),
    "deep flow nesting": ("grid: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper than 50 levels"),
    "deep block nesting": ("grid:\n  " + "- " * 3000 + "x\n", "nested deeper than 50 levels"),
    "python tag": ("name: !!python/object/apply:os.system ['echo pwned']\n", "could not determine a constructor"),
    "huge file": ("description: '" + "x" * 500_000 + "'\n", "more than a config may have"),
}


@pytest.mark.parametrize("case", YAML_BOMBS, ids=list(YAML_BOMBS))
def test_yaml_bombs_are_refused(tmp_path: Path, case: str) -> None:
    text, message = YAML_BOMBS[case]
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    (tmp_path / "ok.yaml").write_text("name: ok\n")
    for res in (dlbench("validate", path), dlbench("validate", tmp_path / "ok.yaml", f"--set=x={text}")):
        assert_clean(res, allowed=(2,))
    assert message in dlbench("validate", path).error_line


# ---------------------------------------------------------------- every input honoured or refused

OPTIMIZER_SETTINGS = {"momentum": st.sampled_from([0.0, 0.5, 0.9]), "betas": st.sampled_from([[0.8, 0.99], [0.5, 0.5]]),
                      "alpha": st.sampled_from([0.5, 0.9]), "eps": st.sampled_from([1e-6, 1e-3]),
                      "weight_decay": st.sampled_from([0.0, 1e-4])}


@fuzz_settings(examples=60)
@given(name=st.sampled_from(OPTIMIZERS.names()),
       settings_=st.fixed_dictionaries({}, optional=OPTIMIZER_SETTINGS))
def test_optimizer_settings_are_read_or_refused(name: str, settings_: dict[str, Any]) -> None:
    """Every optimizer setting given is one the optimizer reads, or the config is refused naming the
    first setting it does not read (any value: a key nothing reads is refused, even at a default)."""
    reads = set(config_mod.MEMBERS["optimizer"][name].model_fields)
    ignored = [k for k in settings_ if k not in reads]
    data = {**copy.deepcopy({k: v for k, v in BASE.items() if k not in ("grid", "random")}),
            "optimizer": {"name": name, **settings_}}
    if not ignored:
        assert config_mod.validate(data).optimizer.name == name
        return
    with pytest.raises(ConfigError) as err:
        config_mod.validate(data)
    assert str(err.value).startswith(f"optimizer.{ignored[0]}: ") and f"{name}' does not read" in str(err.value)


SWEPT = ["optimizer.lr", "optimizer", "model.hidden", "model", "train.batch_size"]
SET_KEYS = ["optimizer.lr", "optimizer.name", "optimizer.weight_decay", "model.hidden", "model.activation",
            "train.batch_size", "train.steps"]
SET_VALUES = {"optimizer.lr": 0.05, "optimizer.name": "sgd", "optimizer.weight_decay": 1e-4, "model.hidden": [4],
              "model.activation": "relu", "train.batch_size": 20, "train.steps": 3}
GRID_VALUES = {"optimizer.lr": [0.01, 0.1], "optimizer": [{"name": "adam"}, {"name": "sgd", "lr": 0.2}],
               "model.hidden": [[8], [16]], "model": [{"activation": "tanh"}, {"norm": "none"}],
               "train.batch_size": [10, 50]}


@fuzz_settings(examples=60)
@given(swept=st.lists(st.sampled_from(SWEPT), min_size=1, max_size=2, unique=True),
       sets=st.lists(st.sampled_from(SET_KEYS), min_size=1, max_size=3, unique=True))
def test_a_set_is_honoured_in_every_run_or_refused_naming_the_sweep(tmp_path_factory: pytest.TempPathFactory,
                                                                    swept: list[str], sets: list[str]) -> None:
    data = {k: v for k, v in copy.deepcopy(BASE).items() if k not in ("grid", "random")}
    data["optimizer"] = {"name": "adam", "lr": 0.01}
    data["grid"] = {k: GRID_VALUES[k] for k in swept}
    path = tmp_path_factory.mktemp("sets") / "c.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    overrides = [f"{k}={yaml.safe_dump(SET_VALUES[k], default_flow_style=True).strip().removesuffix('...').strip()}"
                 for k in sets]
    try:
        _, specs, _, _ = plan.load(path, overrides, 1000)
    except ConfigError as e:
        assert "grid sets" in str(e) and str(e).startswith("--set ")
        return
    for spec in specs:  # accepted: every run has every --set value
        resolved = spec.config.model_dump(mode="json")
        for key in sets:
            section, field = key.split(".")
            assert resolved[section][field] == SET_VALUES[key], (key, spec.params)
