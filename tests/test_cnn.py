"""CNN and reference architectures: parameter counts, shapes, norm / pooling placement, config errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from dlbench.config import vocabulary
from dlbench.config import schema as config
from dlbench.components import inits
from dlbench.plan import sweep
from dlbench.config.schema import MEMBERS, section
from dlbench.errors import ConfigError
from dlbench.catalog import CATALOG
from dlbench.catalog.shapes import feature_shape
from dlbench.components.models import MODELS, NORMS, POOLS, build, count_parameters

PRESETS = CATALOG["preset"]

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {"signal": (40,), "gray image": (1, 28, 28), "colour image": (3, 32, 32), "points": (2,)}
SMALL_CNN = [{"channels": 4, "kernel": 3, "padding": 1, "pool": "max"}, {"channels": 6, "kernel": 3, "stride": 2}]


def model(**fields: Any) -> Any:
    """The model section with the given keys its kind reads (logreg reads no hidden or conv, mlp no conv)."""
    reads = MEMBERS["model"][fields.get("kind", "mlp")].model_fields
    return section("model", **{k: v for k, v in fields.items() if k in reads})


def n_params(cfg: Any, shape: tuple[int, ...], classes: int = 10) -> int:
    return count_parameters(build(cfg, shape, classes))


def test_reference_parameter_counts() -> None:
    assert n_params(model(preset="keras_mnist_cnn"), (1, 28, 28)) == 241_546
    assert n_params(model(preset="mnist1d_cnn"), (40,)) == 5_210
    assert n_params(model(kind="mlp", hidden=[100, 100], residual=True), (40,)) == 15_210
    assert n_params(model(kind="logreg"), (40,)) == 410


@pytest.mark.parametrize("name", PRESETS.names())
def test_every_preset_builds_with_its_documented_parameter_count(name: str) -> None:
    info = PRESETS.record(name).info
    net = build(model(preset=name), info["shape"], 10)
    assert count_parameters(net) == info["params"]
    assert net(torch.randn(3, *info["shape"])).shape == (3, 10)


def test_mnist1d_reference_config_trains_exactly_the_three_paper_models() -> None:
    cfg, raw, _ = vocabulary.load(ROOT / "configs" / "mnist1d_reference.yaml")
    specs = sweep.expand(cfg, raw)
    assert {s.config.optimizer.name for s in specs} == {"adam"} and {s.config.optimizer.lr for s in specs} == {0.01}
    assert {(s.config.train.steps, s.config.train.batch_size) for s in specs} == {(6000, 100)}
    counts = [n_params(s.config.model, (40,)) for s in specs]
    assert sorted(set(counts)) == [410, 5_210, 15_210] and len(specs) == 3 * len(cfg.train.seeds) >= 9
    residual = next(build(s.config.model, (40,), 10) for s in specs if s.config.model.kind == "mlp")
    assert residual.skip == [False, True]  # the skip is on the 100 -> 100 layer, as in the mnist1d repo


def test_preset_keys_written_beside_it_win() -> None:
    cfg = model(preset="keras_mnist_cnn", norm="batch", dropout=0.25)
    net = build(cfg, (1, 28, 28), 10)
    assert cfg.kind == "cnn" and cfg.dropout == 0.25
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 3
    assert sum(isinstance(m, nn.BatchNorm1d) for m in net.modules()) == 1  # after the dense 128


@pytest.mark.parametrize("shape", [s for k, s in SHAPES.items() if k != "points"], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("kind", MODELS.names())
def test_every_model_kind_maps_each_sample_shape_to_logits_and_trains(kind: str, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    net = build(model(kind=kind, hidden=[16], conv=SMALL_CNN), shape, 7)
    x, y = torch.randn(5, *shape), torch.randint(0, 7, (5,))
    logits = net(x)
    assert logits.shape == (5, 7)
    nn.functional.cross_entropy(logits, y).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    if kind == "cnn":
        conv_type = nn.Conv1d if len(shape) == 1 else nn.Conv2d
        assert [type(m) for m in net.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d))] == [conv_type] * 2


@pytest.mark.parametrize("kind", MODELS.names())
def test_points_take_flat_models_and_cnn_is_a_config_error(kind: str) -> None:
    data = {"data": {"dataset": "spiral"}, "model": {"kind": kind, **({"conv": SMALL_CNN} if kind == "cnn" else {})}}
    if kind == "cnn":
        with pytest.raises(ConfigError, match=r"^model\.kind: 'cnn' is invalid on data\.dataset 'spiral': .*"):
            config.validate(data)
    else:
        net = build(config.validate(data).model, SHAPES["points"], 3)
        assert net(torch.randn(4, 2)).shape == (4, 3)


@pytest.mark.parametrize("position", ["pre", "post"])
@pytest.mark.parametrize("shape", [SHAPES["signal"], SHAPES["colour image"]], ids=["conv1d", "conv2d"])
@pytest.mark.parametrize("norm", NORMS.names())
def test_every_norm_sits_beside_the_activation_in_conv_and_dense_blocks(norm: str, shape, position: str) -> None:
    if norm == "none" and position == "post":  # no norm to place: refused (tests/test_vocabulary.py)
        return
    net = build(model(kind="cnn", norm=norm, norm_position=position, conv=SMALL_CNN[:1], hidden=[8]), shape, 3)
    conv_block, dense_block = net.features[0], net.classifier.blocks[0]
    expected_norm = {"none": nn.Identity, "batch": nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d,
                     "layer": nn.GroupNorm}[norm]
    conv_kinds = [type(m) for m in conv_block]
    activation_at = conv_kinds.index(nn.ReLU)
    if norm == "none":
        assert conv_kinds == [type(conv_block[0]), nn.ReLU, nn.MaxPool1d if len(shape) == 1 else nn.MaxPool2d]
    else:
        assert conv_kinds[activation_at + (-1 if position == "pre" else 1)] is expected_norm
        dense_kinds = [type(m) for m in dense_block]
        dense_norm = {"batch": nn.BatchNorm1d, "layer": nn.LayerNorm}[norm]
        assert dense_kinds[dense_kinds.index(nn.ReLU) + (-1 if position == "pre" else 1)] is dense_norm
    net(torch.randn(4, *shape)).sum().backward()


@pytest.mark.parametrize("pool", POOLS.names())
@pytest.mark.parametrize("layer", [{"kernel": 3}, {"kernel": 5, "stride": 2, "padding": 1},
                                   {"kernel": 4, "stride": 3, "padding": 2, "pool_size": 3}])
@pytest.mark.parametrize("shape", [(90,), (2, 86, 95)], ids=["conv1d", "conv2d"])
def test_feature_shape_matches_what_torch_computes(pool: str, layer: dict, shape) -> None:
    cfg = model(kind="cnn", conv=[{"channels": 5, "pool": pool, **layer}, {"channels": 3, "pool": pool, **layer}])
    net = build(cfg, shape, 10)
    x = torch.randn(2, *shape)
    features = net.features(x.unsqueeze(1) if len(shape) == 1 else x)
    assert tuple(features.shape[1:]) == feature_shape(cfg.conv, shape)


def test_max_and_avg_pooling_compute_window_max_and_mean() -> None:
    signal = torch.tensor([[[1.0, 3.0, -2.0, 4.0, 7.0]]])
    assert POOLS["max"].builder(1, 2)(signal).tolist() == [[[3.0, 4.0]]]
    assert POOLS["avg"].builder(1, 2)(signal).tolist() == [[[2.0, 1.0]]]
    assert torch.equal(POOLS["none"].builder(1, 2)(signal), signal)


def test_dropout_acts_on_dense_layers_only() -> None:
    net = build(model(preset="keras_mnist_cnn"), (1, 28, 28), 10)
    assert not any(isinstance(m, nn.Dropout) for m in net.features.modules())
    assert [m.p for m in net.classifier.modules() if isinstance(m, nn.Dropout)] == [0.5]


def test_init_schemes_reach_conv_layers() -> None:
    net = build(model(preset="mnist1d_cnn"), (40,), 10)
    inits.initialize(net, section("init", scheme="constant", value=0.5))
    convs = [m for m in net.modules() if isinstance(m, nn.Conv1d)]
    assert len(convs) == 3 and all(bool((c.weight == 0.5).all() and (c.bias == 0).all()) for c in convs)


@pytest.mark.parametrize(("fields", "dataset", "message"), [
    ({"kind": "cnn"}, "mnist1d", r"^model\.conv: \[\] is invalid: kind cnn needs conv layers"),
    ({"kind": "cnn", "conv": [{"channels": 8, "kernel": 9, "pool": "max", "pool_size": 4}] * 2}, "mnist1d",
     r"^model\.conv\.1: the 40 input shrinks to nothing at this layer"),
    ({"preset": "keras_mnist_cnn", "conv": [{"channels": 8, "kernel": 29}]}, "mnist",
     r"^model\.conv\.0: the 1x28x28 input shrinks to nothing"),
    ({"kind": "cnn", "conv": [{"channels": 8, "kernal": 3}]}, "mnist1d",
     r"^model\.conv\.0\.kernal: unknown key; allowed keys here: channels, kernel, stride, padding, pool, pool_size$"),
    ({"kind": "cnn", "conv": [{"channels": 8, "pool": "min"}]}, "mnist1d", r"^model\.conv\.0\.pool: 'min' is invalid"),
    ({"preset": "vgg16"}, "mnist1d", r"^model\.preset: 'vgg16' is invalid: unknown model preset; allowed: "),
])
def test_impossible_models_are_one_line_config_errors(fields: dict, dataset: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        config.validate({"data": {"dataset": dataset}, "model": fields})
    assert "\n" not in str(err.value)
