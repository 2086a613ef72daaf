"""The peer in JAX: a dlbench grid of MNIST-1D MLPs trained as a JAX expert would write it, as a process of its own.

    python bench/jax_peer.py CONFIG [--threads N]

CONFIG is the YAML dlbench runs (bench/whole.py's grids: an Adam `optimizer.lr` grid x
`train.seeds` of the MLP `model.hidden`, `train.epochs`, data in `data.root`); this script
reads only those keys, imports neither torch nor dlbench, and does the same work as
`dlbench run CONFIG`: every run trains with its own learning rate, initialization and batch
order (numpy generators seeded from the run's seed, drawn on the host as dlbench draws them;
torch.nn.Linear's initialization; batches of 100 from the same 3,600 / 400 / 1,000 train / val / test split sizes of
the standardized MNIST-1D), and every run is evaluated on the whole train, val and test
splits (summed cross-entropy, accuracy and the calibration error's bins) before training and after every epoch, the
numbers brought to the host each time, as dlbench's metric rows are.

How an expert writes it: all runs' parameters stacked along a leading run axis, the
per-run loss and gradient `jax.vmap`ped, Adam (torch.optim's formulas) written on the
stacked arrays with a per-run lr column, an epoch's batches a `jax.lax.scan` inside one
`jax.jit`, evaluation a second jitted function; XLA then compiles each once and fuses
the elementwise work. Threads: `--threads` (default OMP_NUM_THREADS, else 1) intra-op
threads for XLA's CPU client, the count dlbench's torch uses under the same environment.
It prints the runs' final test accuracy (mean and best) and the seconds until the first
epoch was trained (XLA compiling the two functions) beside the total, on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

BATCH = 100  # dlbench's train.batch_size default
VAL_FRACTION = 0.1  # dlbench's data.val_size default
BETAS, EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults, dlbench's adam defaults
ECE_BINS = 15  # dlbench's expected calibration error: 15 equal-width confidence bins


def threads_flags(threads: int) -> str:
    """XLA's CPU client flags for `threads` intra-op threads: one (no Eigen thread pool at all) or one per
    core (its default). XLA has no flag for a count in between (a bare `intra_op_parallelism_threads=N`
    in XLA_FLAGS is read as a file name, and the client aborts)."""
    if threads == 1:
        return "--xla_cpu_multi_thread_eigen=false"
    if threads == (os.cpu_count() or 1):
        return ""
    raise SystemExit(f"--threads {threads}: XLA's CPU client runs 1 thread or one per core ({os.cpu_count()})")


def load(config: dict[str, Any]) -> dict[str, np.ndarray]:
    """The standardized splits: 90 % of MNIST-1D's training set to train on, 10 % validation, its test set."""
    with np.load(Path(config["data"]["root"]) / "mnist1d.npz") as f:
        x, y, x_test, y_test = (f["x"].astype(np.float32), f["y"].astype(np.int32), f["x_test"].astype(np.float32),
                                f["y_test"].astype(np.int32))
    order = np.random.default_rng(0).permutation(len(x))
    n_val = round(VAL_FRACTION * len(x))
    val, train = order[:n_val], order[n_val:]
    mean, std = x[train].mean(0), x[train].std(0, ddof=1).clip(1e-8)
    return {"x_train": (x[train] - mean) / std, "y_train": y[train], "x_val": (x[val] - mean) / std,
            "y_val": y[val], "x_test": (x_test - mean) / std, "y_test": y_test}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    args = parser.parse_args()
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {threads_flags(args.threads)}".strip()
    start = time.perf_counter()

    import jax  # after XLA_FLAGS: the CPU client reads them when it starts
    import jax.numpy as jnp

    config = yaml.safe_load(args.config.read_text())
    lrs = [float(lr) for lr in config["grid"]["optimizer.lr"]]
    seeds = list(config["train"]["seeds"])
    epochs = int(config["train"]["epochs"])
    hidden = list(config["model"].get("hidden", [100, 100]))
    runs_lr = np.repeat(np.array(lrs, np.float32), len(seeds))  # the grid's runs: every lr x every seed
    runs_seed = np.tile(np.array(seeds, np.uint32), len(lrs))
    runs = len(runs_lr)
    data = {k: jnp.asarray(v) for k, v in load(config).items()}
    n, features = data["x_train"].shape
    steps = n // BATCH  # 3,600 / 100: every batch full, as dlbench's
    sizes = [features, *hidden, 10]

    def init(rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
        """One run's MLP, as torch.nn.Linear initializes it: U(+-1 / sqrt(fan_in)) weights and biases."""
        return [(rng.uniform(-1 / np.sqrt(fan_in), 1 / np.sqrt(fan_in), (fan_in, fan_out)).astype(np.float32),
                 rng.uniform(-1 / np.sqrt(fan_in), 1 / np.sqrt(fan_in), fan_out).astype(np.float32))
                for fan_in, fan_out in zip(sizes, sizes[1:])]

    def logits(params: list[tuple[jax.Array, jax.Array]], x: jax.Array) -> jax.Array:
        for w, b in params[:-1]:
            x = jax.nn.relu(x @ w + b)
        w, b = params[-1]
        return x @ w + b

    def per_sample_losses(params: Any, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        z = logits(params, x)
        return jax.nn.logsumexp(z, axis=-1) - jnp.take_along_axis(z, y[:, None], axis=-1)[:, 0], z

    def batch_loss(params: Any, x: jax.Array, y: jax.Array) -> jax.Array:
        return per_sample_losses(params, x, y)[0].mean()

    grads_of = jax.vmap(jax.value_and_grad(batch_loss))  # every run's loss and gradient on its own batch

    def adam(params: Any, grads: Any, m: Any, v: Any, t: jax.Array, lr: jax.Array) -> tuple[Any, Any, Any]:
        """torch.optim.Adam on the stacked runs; lr: one per run, broadcast over each parameter's rows."""
        b1, b2 = BETAS
        m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, m, grads)
        v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, v, grads)
        step = lr / (1 - b1 ** t)
        root = jnp.sqrt(1 - b2 ** t)

        def move(p: jax.Array, m: jax.Array, v: jax.Array) -> jax.Array:
            return p - step.reshape(-1, *[1] * (p.ndim - 1)) * m / (jnp.sqrt(v) / root + EPS)

        return jax.tree.map(move, params, m, v), m, v

    @jax.jit
    def epoch(state: tuple[Any, Any, Any, jax.Array], order: jax.Array,
              lr: jax.Array) -> tuple[tuple[Any, Any, Any, jax.Array], jax.Array]:
        """One epoch of every run, its own order of the training set (runs, n): `steps` Adam steps in a scan."""
        batches = order[:, :steps * BATCH].reshape(runs, steps, BATCH).transpose(1, 0, 2)  # (steps, runs, batch)

        def step(state: tuple[Any, Any, Any, jax.Array], idx: jax.Array) -> tuple[tuple[Any, Any, Any, jax.Array],
                                                                                    jax.Array]:
            params, m, v, t = state
            loss, grads = grads_of(params, data["x_train"][idx], data["y_train"][idx])
            t = t + 1
            params, m, v = adam(params, grads, m, v, t, lr)
            return (params, m, v, t), loss

        return jax.lax.scan(step, state, batches)

    @jax.jit
    def evaluate(params: Any) -> tuple[jax.Array, jax.Array]:
        """(splits, 2, runs): summed cross-entropy and number correct of every run on train, val and test;
        (splits, runs, 3, ECE_BINS): the calibration error's sums per confidence bin (samples, confidence,
        correct), which dlbench records at every evaluation too."""
        out, bins = [], []
        for split in ("train", "val", "test"):
            x, y = data[f"x_{split}"], data[f"y_{split}"]
            losses, z = jax.vmap(per_sample_losses, in_axes=(0, None, None))(params, x, y)
            right = (z.argmax(-1) == y).astype(jnp.float32)
            out.append(jnp.stack([losses.sum(1), right.sum(1)]))
            confidence = jnp.exp(z.max(-1) - jax.nn.logsumexp(z, axis=-1))  # the predicted class's softmax
            where = jax.nn.one_hot(jnp.clip(jnp.ceil(confidence * ECE_BINS).astype(jnp.int32), 1, ECE_BINS) - 1,
                                   ECE_BINS)  # (runs, samples, bins): (lower, upper] bins, as dlbench's
            bins.append(jnp.stack([where.sum(1), (where * confidence[..., None]).sum(1),
                                   (where * right[..., None]).sum(1)], axis=1))
        return jnp.stack(out), jnp.stack(bins)

    # each run's own generators, from its seed: one for its initialization, one for its batch order (the
    # host draws them, as a data pipeline does; drawn inside jit, threefry's compile alone took seconds)
    inits = [np.random.default_rng([int(seed), 0]) for seed in runs_seed]
    orders = [np.random.default_rng([int(seed), 1]) for seed in runs_seed]
    params = jax.tree.map(lambda *rows: jnp.asarray(np.stack(rows)), *[init(g) for g in inits])
    zeros = jax.tree.map(jnp.zeros_like, params)
    state = (params, zeros, zeros, jnp.zeros((), jnp.float32))
    lr = jnp.asarray(runs_lr)
    metrics = [jax.tree.map(np.asarray, evaluate(state[0]))]  # before training, as dlbench's first row
    compiled = 0.0
    for e in range(epochs):
        state, _ = epoch(state, jnp.asarray(np.stack([g.permutation(n) for g in orders])), lr)
        metrics.append(jax.tree.map(np.asarray, evaluate(state[0])))  # to the host, as dlbench's metric rows
        if e == 0:
            compiled = time.perf_counter() - start
    test_acc = metrics[-1][0][2, 1] / len(data["y_test"])
    confidence, right = metrics[-1][1][2, :, 1], metrics[-1][1][2, :, 2]
    test_ece = np.abs(right - confidence).sum(-1) / len(data["y_test"])
    print(f"jax {jax.__version__}, {args.threads} thread(s): {runs} runs x {epochs} epochs; final test accuracy "
          f"mean {test_acc.mean():.3f} (best run {test_acc.max():.3f}), test calibration error mean "
          f"{test_ece.mean():.3f}; {time.perf_counter() - start:.2f} s from importing jax to the end, "
          f"{compiled:.2f} s of it until the first epoch was trained (compiling)",
          file=sys.stderr)


if __name__ == "__main__":
    main()
