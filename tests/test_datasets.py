"""Datasets: torchvision's real readers on tiny files written here, the toy sets, splits, the missing-data error.

MNIST and Fashion-MNIST are written as real IDX files, CIFAR-10 as real
cifar-10-batches-py pickles; only CIFAR's md5 check is patched (our tiny batches
cannot match the real checksums). Every registered dataset is loaded.
"""

from __future__ import annotations

from typing import Any

import pickle
import shutil
import struct
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar
import torchvision.datasets.mnist

from dlbench.config import schema as config
from dlbench.plan import sweep
from dlbench.config.schema import section
from dlbench.errors import ConfigError
from dlbench.components.data import DATASETS, prepare
from dlbench.components.models import MODELS, build, count_parameters
from dlbench.training.engine import train

N_TRAIN, N_TEST = 60, 20  # per torchvision dataset; CIFAR's training set is 5 batches of N_TRAIN // 5
TORCHVISION = [e.name for e in DATASETS if e.info.inputs == "image"]
TOYS = [e.name for e in DATASETS if e.info.inputs == "points"]


def write_idx(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    """MNIST's IDX format: big-endian magic (2051 images / 2049 labels), sizes, then uint8 data."""
    folder.mkdir(parents=True, exist_ok=True)
    n, rows, cols = images.shape
    (folder / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">4i", 2051, n, rows, cols) + images.tobytes())
    (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">2i", 2049, n) + labels.tobytes())


def write_cifar(folder: Path, images: np.ndarray, labels: np.ndarray, n_test: int) -> None:
    """cifar-10-batches-py: pickled dicts, 'data' rows of 1024 R, 1024 G, 1024 B values (row-major)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = images.reshape(len(images), -1)
    train_rows, train_labels = rows[:-n_test], labels[:-n_test]
    for i, idx in enumerate(np.array_split(np.arange(len(train_rows)), 5), 1):
        batch = {"batch_label": f"training batch {i} of 5", "data": train_rows[idx],
                 "labels": train_labels[idx].tolist(), "filenames": [f"{j}.png" for j in idx]}
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch, protocol=2))
    test = {"batch_label": "testing batch 1 of 1", "data": rows[-n_test:], "labels": labels[-n_test:].tolist(),
            "filenames": [f"t{j}.png" for j in range(n_test)]}
    (folder / "test_batch").write_bytes(pickle.dumps(test, protocol=2))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names, "num_vis": 3072}, protocol=2))


def fake_images(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    images = rng.integers(0, 256, size=shape, dtype=np.uint8)
    images.flat[0], images.flat[1] = 0, 255  # the full range, so [0, 1] is checked at both ends
    return images


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory,
            data_root: Path) -> tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """A data root holding tiny MNIST, Fashion-MNIST and CIFAR-10 (and MNIST-1D); returns it and the arrays written."""
    root = tmp_path_factory.mktemp("torchvision")
    shutil.copy(data_root / "mnist1d.npz", root)  # generated once per session by the real loader (conftest)
    rng = np.random.default_rng(0)
    arrays = {}
    for name, folder in (("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")):
        images = fake_images(rng, (N_TRAIN + N_TEST, 28, 28))
        labels = (np.arange(N_TRAIN + N_TEST) % 10).astype(np.uint8)
        write_idx(root / folder / "raw", "train", images[:N_TRAIN], labels[:N_TRAIN])
        write_idx(root / folder / "raw", "t10k", images[N_TRAIN:], labels[N_TRAIN:])
        arrays[name] = images[:, None], labels
    images = fake_images(rng, (N_TRAIN + N_TEST, 3, 32, 32))
    labels = rng.permutation(np.arange(N_TRAIN + N_TEST) % 10)
    write_cifar(root / "cifar-10-batches-py", images, labels, N_TEST)
    arrays["cifar10"] = images, labels
    return root, arrays


@pytest.fixture(autouse=True)
def cifar_md5_off(monkeypatch: pytest.MonkeyPatch) -> None:
    # our batch files are real-format but tiny, so their md5 sums cannot match CIFAR's published ones
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda fpath, md5=None: Path(fpath).is_file())


def data_cfg(name: str, root: Path, **kw: object) -> Any:
    return section("data", dataset=name, root=str(root), download=False, **kw)


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_dataset_loads_with_its_declared_shape_classes_and_range(name: str, written) -> None:
    root, _ = written
    s = prepare(data_cfg(name, root, preprocess="none", val_size=0.25), "cpu")
    info = DATASETS[name].info
    assert s.sample_shape == info.shape
    assert s.num_classes == info.classes
    for split in ("train", "val", "test"):
        x, y = s.split(split)
        assert x.dtype == torch.float32 and y.dtype == torch.int64 and len(x) == len(y) > 0
        assert int(y.min()) >= 0 and int(y.max()) < s.num_classes
    assert len(s.x_val) == round(0.25 * (len(s.x_train) + len(s.x_val)))
    if info.inputs == "image":
        x_all = torch.cat([s.x_train, s.x_val, s.x_test])
        assert float(x_all.min()) == 0.0 and float(x_all.max()) == 1.0
        assert len(s.x_train) + len(s.x_val) == N_TRAIN and len(s.x_test) == N_TEST


@pytest.mark.parametrize("name", DATASETS.names())
def test_standardize_uses_training_statistics_per_feature_or_channel(name: str, written) -> None:
    s = prepare(data_cfg(name, written[0]), "cpu")
    dims = [0] if s.x_train.dim() == 2 else [0, 2, 3]
    torch.testing.assert_close(s.x_train.mean(dim=dims), torch.zeros(s.x_train.shape[1]), atol=1e-4, rtol=0)
    torch.testing.assert_close(s.x_train.std(dim=dims), torch.ones(s.x_train.shape[1]), atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", TORCHVISION)
def test_images_keep_labels_pixel_layout_and_order(name: str, written) -> None:
    root, arrays = written
    images, labels = arrays[name]
    s = prepare(data_cfg(name, root, preprocess="none", val_size=0), "cpu")
    # the test split keeps file order: compare with what was written, pixel for pixel
    torch.testing.assert_close(s.x_test, torch.from_numpy(images[N_TRAIN:]).float() / 255)
    assert s.y_test.tolist() == labels[N_TRAIN:].tolist()
    # the training split is shuffled (seeded): the same images, each still with its own label
    label_of = {image.tobytes(): label for image, label in zip(images[:N_TRAIN], labels[:N_TRAIN])}
    as_bytes = [(x * 255).round().to(torch.uint8).numpy().tobytes() for x in s.x_train]
    assert sorted(as_bytes) == sorted(label_of)
    assert [label_of[b] for b in as_bytes] == s.y_train.tolist()


@pytest.mark.parametrize(("train_size", "val_size", "n_train", "n_val"),
                         [(None, 0.1, 54, 6), (30, 0.2, 24, 6), (30, 5, 25, 5), (None, 0, 60, 0), (10, 8, 2, 8)])
def test_subsetting_and_validation_split_sizes(train_size, val_size, n_train, n_val, written) -> None:
    cfg = data_cfg("mnist", written[0], train_size=train_size, val_size=val_size)
    s = prepare(cfg, "cpu")
    assert (len(s.x_train), len(s.x_val), len(s.x_test)) == (n_train, n_val, N_TEST)
    again = prepare(data_cfg("mnist", written[0], train_size=train_size, val_size=val_size, seed=0), "cpu")
    assert torch.equal(s.y_train, again.y_train)
    if train_size:
        other = prepare(data_cfg("mnist", written[0], train_size=train_size, val_size=val_size, seed=1), "cpu")
        assert not torch.equal(s.x_train, other.x_train)  # data.seed picks the subset


# what each toy set looks like without noise: the generator's geometry, checked point by point
NOISELESS = {
    "xor": lambda x, y: np.all(np.abs(x) == 1) and np.all((x[:, 0] != x[:, 1]) == (y == 1)),
    "spiral": lambda x, y: np.all(np.linalg.norm(x, axis=1) <= 1 + 1e-6),
    "blobs": lambda x, y: np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-6),
}


@pytest.mark.parametrize("name", TOYS)
def test_toy_sets_are_seeded_sized_and_shaped_by_their_options(name: str, tmp_path: Path) -> None:
    opts = DATASETS.record(name).defaults()  # samples, noise (and classes): each toy set's own defaults
    a = prepare(data_cfg(name, tmp_path, samples=50, val_size=0, preprocess="none"), "cpu")
    b = prepare(data_cfg(name, tmp_path, samples=50, val_size=0, preprocess="none", seed=0), "cpu")
    c = prepare(data_cfg(name, tmp_path, samples=50, val_size=0, preprocess="none", seed=1), "cpu")
    assert len(a.x_train) == len(a.x_test) == 50 and a.sample_shape == (2,)
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)
    clean = prepare(data_cfg(name, tmp_path, noise=0.0, val_size=0, preprocess="none"), "cpu")
    assert NOISELESS[name](clean.x_train.double().numpy(), clean.y_train.numpy())
    assert len(clean.x_train) == opts["samples"]
    if "classes" in opts:
        five = prepare(data_cfg(name, tmp_path, classes=5, val_size=0), "cpu")
        assert five.num_classes == 5 and set(five.y_train.tolist()) == set(range(5))
    resolved = data_cfg(name, tmp_path)  # the defaults are resolved into the config a run records
    assert {k: getattr(resolved, k) for k in opts} == opts


@pytest.mark.parametrize("download", [False, True])
@pytest.mark.parametrize("name", TORCHVISION)
def test_missing_dataset_is_one_line_and_exit_2_before_any_run(name: str, download: bool, tmp_path: Path,
                                                               monkeypatch, cli) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise URLError("offline (simulated)")

    # no network in tests: a download attempt fails the way it does on a machine without internet
    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", offline)
    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", offline)
    empty = tmp_path / "empty"
    cfg = cli.write({"name": "missing", "data": {"dataset": name, "root": str(empty), "download": download},
                     "train": {"steps": 1, "seeds": [0]}})
    for args in (["run", cfg, "--out", tmp_path / "results"], ["validate", cfg]):
        result = cli(*args)
        err = result.stderr
        assert result.exit_code == 2
        assert err.count("\n") == 1 and "Traceback" not in result.output
        assert err.startswith(f"error: data.dataset: '{name}' is not available")
        assert ("download failed: <urlopen error offline (simulated)>" if download else "data.download is false") in err
        for file in ("t10k-images-idx3-ubyte", "train-labels-idx1-ubyte") if name != "cifar10" else (
                "data_batch_1", "test_batch", "batches.meta"):
            assert file in err
        assert str(empty) in err
    assert not (tmp_path / "results").exists()  # detected before the sweep: no failed runs recorded


def test_impossible_train_size_is_exit_2_before_any_run(written, tmp_path: Path, cli) -> None:
    cfg = cli.write({"name": "big", "data": {"dataset": "mnist", "root": str(written[0]), "download": False,
                                             "train_size": N_TRAIN + 1}, "train": {"steps": 1, "seeds": [0]}})
    result = cli("run", cfg, "--out", tmp_path / "results")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert f"data.train_size: {N_TRAIN + 1} is invalid: mnist has only {N_TRAIN} training samples" in result.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("kind", MODELS.names())
@pytest.mark.parametrize("name", DATASETS.names())
def test_every_model_kind_trains_on_every_dataset_or_is_refused(name: str, kind: str, written) -> None:
    shape = DATASETS[name].info.shape
    conv = [{"channels": 4, "kernel": 3, "padding": 1, "pool": "max"}]
    raw = {"name": "matrix", "data": {"dataset": name, "root": str(written[0]), "download": False},
           "model": {"kind": kind} if kind == "logreg" else {"kind": kind, "hidden": [8], "norm": "batch",
                                                                   **({"conv": conv} if kind == "cnn" else {})},
           "train": {"steps": 3, "batch_size": 16, "eval_every": 3, "seeds": [0]}}
    if kind == "cnn" and DATASETS[name].info.inputs == "points":
        with pytest.raises(ConfigError, match=r"^model\.kind: 'cnn' is invalid on data\.dataset"):
            config.validate(raw)
        return
    [spec] = sweep.expand(config.validate(raw), raw)
    [result] = train([spec], torch.device("cpu"))
    assert result.status == "ok" and result.summary["steps"] == 3
    net = build(spec.config.model, shape, DATASETS[name].info.classes)
    assert result.summary["n_params"] == count_parameters(net)
    assert 0 <= result.summary["final"]["test_acc"] <= 1
