"""The shipped experiment configs, end to end in shrunk form, and the direction of each robust effect.

Each test runs one configs/*.yaml through the CLI with --set overrides that make it
take a second or two (fewer steps, samples, seeds, grid points), then checks the
files it writes (tables, per-run diagnostics, PNGs) and the effect the experiment
exists to show, where that effect survives the shrinking.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from test_datasets import write_idx

from dlbench.config import vocabulary
from dlbench.config import schema as config
from dlbench.catalog import CATALOG
from dlbench.results.plots import PLOTS

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
SHIPPED = sorted(p.stem for p in CONFIGS.glob("*.yaml"))


def run_config(cli, data_root: Path, name: str, *sets: str) -> tuple[str, Path]:
    out = cli.tmp_path / "results"
    task = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text()).get("task", "train")
    # data and device for the tasks that read them (a task that trains nothing refuses them)
    trains = CATALOG["task"].record(task).facts["reads"] is None
    args = ["--set", f"data.root={data_root}", "--set", "train.device=cpu"] if trains else []
    for s in sets:
        args += ["--set", s]
    result = cli("run", CONFIGS / f"{name}.yaml", "--out", out, *args)
    assert result.exit_code == 0, result.output
    root = out / name
    cfg = config.validate(yaml.safe_load((root / "experiment.yaml").read_text()))
    for plot in cfg.plots or CATALOG["task"].record(cfg.task).facts["plots"]:
        png = root / f"{plot}.png"
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", plot
    return result.stdout, root


def by(root: Path, key: str, csv: str = "summary.csv") -> pd.DataFrame:
    """A results table indexed by one swept key (e.g. 'case', 'loss', 'optimizer.name')."""
    return pd.read_csv(root / csv).set_index(key)


def diagnostics_of(root: Path) -> pd.DataFrame:
    """Each run's final diagnostics (summary.json) with its swept values."""
    rows = []
    for f in sorted((root / "runs").glob("*/summary.json")):
        s = json.loads(f.read_text())
        rows.append({**s["params"], "seed": s["seed"], **s.get("diagnostics", {})})
    return pd.DataFrame(rows)


def test_every_shipped_config_is_valid_and_commented() -> None:
    assert len(SHIPPED) >= 11
    for name in SHIPPED:
        text = (CONFIGS / f"{name}.yaml").read_text()
        assert text.startswith("#"), f"{name}.yaml needs a header comment saying what it shows"
        cfg, raw, _ = vocabulary.load(CONFIGS / f"{name}.yaml")
        assert cfg.name == name


def test_every_plot_is_drawn_by_some_shipped_config() -> None:
    drawn = set()
    for name in SHIPPED:
        cfg, _, _ = vocabulary.load(CONFIGS / f"{name}.yaml")
        drawn.update(cfg.plots or CATALOG["task"].record(cfg.task).facts["plots"])
    # a figure that needs a target (profile) is drawn by `dlbench plot DIR --target`, never from a config
    assert drawn == {n for n in PLOTS.names() if "target" not in PLOTS.record(n).facts["needs"]}


# ---------------------------------------------------------------- 1. optimizer paths


def test_optimizer_paths(cli, data_root) -> None:
    stdout, root = run_config(cli, data_root, "optimizer_paths")
    assert "steps to f < 0.001" in stdout
    again = cli("report", root)  # the table again, from the folder alone
    assert again.exit_code == 0 and "steps to f < 0.001" in again.stdout and "adagrad" in again.stdout
    paths = pd.read_csv(root / "paths.csv")
    table = by(root, "optimizer.name")
    assert list(table.index) == ["sgd", "momentum", "adagrad", "adam", "nesterov", "rmsprop"]
    assert (table["final_f"] < 0.2).all()  # every optimizer gets from f = 6.45 close to the minimum
    # plain SGD on x²/20 + y² is x <- (1 - lr/10) x, y <- (1 - 2 lr) y: check the real optimizer did exactly that
    sgd = paths[paths["optimizer.name"] == "sgd"].sort_values("step")
    steps = sgd["step"].to_numpy()
    assert sgd["x"].to_numpy() == pytest.approx(-7.0 * (1 - 0.095) ** steps)
    assert sgd["y"].to_numpy() == pytest.approx(2.0 * (1 - 1.9) ** steps)  # the zig-zag across the valley
    assert table.loc["adagrad", "steps_to_threshold"] < 30 and pd.isna(table.loc["sgd", "steps_to_threshold"])


def test_optimizer_paths_rosenbrock(cli, data_root) -> None:
    _, root = run_config(cli, data_root, "optimizer_paths_rosenbrock", "function.steps=700")
    table = by(root, "optimizer.name")
    # in the curved valley momentum and Adam reach the minimum; plain SGD is still crawling along the floor
    assert table.loc["momentum", "final_f"] < 1e-3 and table.loc["adam", "final_f"] < 1e-3
    assert table.loc["sgd", "final_f"] > 100 * max(table.loc["momentum", "final_f"], table.loc["adam", "final_f"])


# ---------------------------------------------------------------- 3. init x activation distributions


def test_init_activations(cli, data_root) -> None:
    stdout, root = run_config(cli, data_root, "init_activations", "activations.samples=300")
    assert "layer 5" in stdout
    layers = pd.read_csv(root / "layers.csv")
    key = layers["init.scheme"] + ":" + layers["init.std"].fillna(0).astype(str) + ":" + layers["model.activation"]
    stats = layers.assign(net=key).set_index(["net", "layer"])
    assert len(stats) == 12 * 5
    # sigmoid + std 1: most outputs sit on the flat ends (< 0.05 or > 0.95) in every layer
    assert (stats.loc["normal:1.0:sigmoid", "act_saturated"] > 0.5).all()
    # std 0.01: every layer collapses onto one value (sigmoid 0.5, tanh and ReLU 0)
    assert stats.loc[("normal:0.01:sigmoid", 5), "act_std"] < 0.02
    assert stats.loc[("normal:0.01:tanh", 5), "act_std"] < 1e-3
    assert stats.loc[("normal:0.01:relu", 5), "act_std"] < 1e-4
    # He keeps ReLU activations spread through all five layers; Xavier lets them shrink
    he, xavier = stats.loc["he_normal:0.0:relu", "act_std"], stats.loc["xavier_normal:0.0:relu", "act_std"]
    assert he.min() > 0.5 * he.max()
    assert xavier.iloc[-1] < 0.4 * xavier.iloc[0]
    assert (stats.loc["xavier_normal:0.0:tanh", "act_saturated"].iloc[1:] < 0.05).all()


# ---------------------------------------------------------------- 2, 4, 5: training dynamics


def test_optimizers(cli, data_root) -> None:
    _, root = run_config(cli, data_root, "optimizers", "train.steps=60", "train.eval_every=30", "train.seeds=[0]",
                         "data.train_size=1000")
    table = by(root, "optimizer.name")
    assert set(table.index) == {"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"}
    # plain SGD at its usual lr 0.01 is the slowest; Adam is far ahead after 60 steps
    assert table["train_loss_mean"].idxmax() == "sgd"
    assert table.loc["adam", "train_loss_mean"] < table.loc["sgd", "train_loss_mean"] - 0.2


def test_init_training(cli, data_root) -> None:
    stdout, root = run_config(cli, data_root, "init_training", "train.steps=100", "train.eval_every=50",
                              "train.seeds=[0]", "data.train_size=1000")
    assert "grad norm layer 1" in stdout
    table = by(root, "init.scheme")
    # all-zero weights never learn: no gradient reaches any weight, only the output bias moves
    assert table.loc["zeros", "train_acc_mean"] < 0.2
    assert table.loc["he_normal", "train_acc_mean"] > table.loc["zeros", "train_acc_mean"] + 0.1
    diag = diagnostics_of(root).set_index("init.scheme")
    assert diag.loc["zeros", "grad_norm_first"] == 0 and diag.loc["zeros", "act_std_last"] == 0
    # N(0, 0.01²): signals and gradients shrink layer by layer -> tiny gradients and last-layer activations
    assert diag.loc["normal", "grad_norm_first"] < 1e-3 * diag.loc["he_normal", "grad_norm_first"]
    assert diag.loc["normal", "act_std_last"] < 1e-3 * diag.loc["he_normal", "act_std_last"]
    run_dir = next((root / "runs").iterdir())
    per_layer = pd.read_csv(run_dir / "diagnostics.csv")
    assert sorted(set(per_layer["step"])) == [0, 50, 100] and set(per_layer["layer"]) == {1, 2, 3, 4, 5}
    assert {"act_std", "act_zero", "grad_norm"} <= set(per_layer.columns)
    assert "act_saturated" not in per_layer  # ReLU has no saturated side; the all-empty column is left out
    hist = pd.read_csv(run_dir / "histograms.csv")
    assert sorted(set(hist["step"])) == [0, 100] and set(hist["kind"]) == {"activation"}


def test_batchnorm(cli, data_root) -> None:
    # at a bad weight scale (std 1e-3: signals die out over six layers) only the BN net trains
    _, root = run_config(cli, data_root, "batchnorm", "grid={init.std: [0.001], model.norm: [none, batch]}",
                         "train.epochs=10", "train.seeds=[0]")
    table = by(root, "model.norm")
    assert table.loc["batch", "train_acc_mean"] > table.loc["none", "train_acc_mean"] + 0.15
    assert table.loc["none", "train_acc_mean"] < 0.2


# ---------------------------------------------------------------- 6, 7, 8, 9, 10


def test_overfitting(cli, data_root) -> None:
    # shrunk: 3 hidden layers and a larger step size fit the 300 samples in 40 epochs instead of 200
    stdout, root = run_config(cli, data_root, "overfitting", "model.hidden=[100, 100, 100]", "train.epochs=40",
                              "optimizer.lr=0.05", "train.eval_every=20", "train.seeds=[0]")
    assert "gap" in stdout
    table = by(root, "case")
    assert set(table.index) == {"none", "weight_decay", "dropout", "l1", "input_noise", "batchnorm",
                                "early_stopping"}
    assert table.loc["none", "train_acc_mean"] > 0.8 and table.loc["none", "gap_mean"] > 0.4  # memorizing
    assert table.loc["weight_decay", "gap_mean"] < table.loc["none", "gap_mean"] - 0.2


def test_losses(cli, data_root) -> None:
    _, root = run_config(cli, data_root, "losses", "train.epochs=3", "train.seeds=[0]")
    table = by(root, "loss")
    # cross_entropy and nll are the same loss computed two ways
    assert table.loc["cross_entropy", "train_acc_mean"] == pytest.approx(table.loc["nll", "train_acc_mean"])
    # squared error on sigmoid outputs learns slower than cross-entropy
    assert table.loc["mse_sigmoid", "train_acc_mean"] < table.loc["cross_entropy", "train_acc_mean"] - 0.1


def test_xor(cli, data_root) -> None:
    _, root = run_config(cli, data_root, "xor", "train.epochs=15", "train.seeds=[0]")
    table = by(root, "case")
    # a linear map, however many layers it is made of, cannot separate XOR: chance level
    for linear in ("linear_layer", "mlp_no_activation"):
        assert table.loc[linear, "test_acc_mean"] < 0.65
    assert table.loc["mlp_relu", "test_acc_mean"] > 0.9


def test_preprocessing(cli, data_root) -> None:
    _, root = run_config(cli, data_root, "preprocessing", "train.epochs=5", "train.seeds=[0]")
    table = by(root, "data.preprocess")
    # all-positive inputs: every weight of a unit moves the same way, plain SGD trains much slower
    assert table.loc["positive", "train_acc_mean"] < table.loc["standardize", "train_acc_mean"] - 0.1


def test_batchnorm_batch_size(cli, data_root) -> None:
    _, root = run_config(cli, data_root, "batchnorm_batch_size", "train.epochs=2", "train.seeds=[0]",
                         "data.train_size=1100", "grid={train.batch_size: [2, 32], model.norm: [none, batch]}")
    table = pd.read_csv(root / "summary.csv").set_index(["train.batch_size", "model.norm"])["train_acc_mean"]
    # batches of 2: BatchNorm's batch statistics are so noisy that it trains worse than no normalization
    assert table[(2, "batch")] < table[(2, "none")] - 0.05
    # and BatchNorm at batch 2 is far behind BatchNorm at batch 32
    assert table[(2, "batch")] < table[(32, "batch")] - 0.1


def _metrics(root: Path, key: str) -> dict[str, pd.DataFrame]:
    """Each run's metrics.csv by its value of a swept key (one seed)."""
    runs = pd.read_csv(root / "runs.csv")
    return {value: pd.read_csv(root / "runs" / run_id / "metrics.csv").set_index("step")
            for run_id, value in zip(runs["run_id"], runs[key])}


def test_schedules(cli, data_root) -> None:
    _, root = run_config(cli, data_root, "schedules", "train.epochs=6", "train.seeds=[0]",
                         "cases.step.schedule.every=2", "grid={optimizer: [{name: momentum, lr: 0.05, momentum: 0.9}]}")
    lr = {case: m["lr"] for case, m in _metrics(root, "case").items()}
    last = lr["constant"].index[-1]  # 6 epochs of 36 steps
    # the lr column (evaluated every 36 steps) is the schedule: flat; down to ~0; x0.1 after 2 epochs;
    # from 0 up over the first 10 % (22 steps), then a cosine behind the plain one
    assert (lr["constant"] == 0.05).all()
    assert lr["cosine"][0] == 0.05 and lr["cosine"][last] < 1e-4
    assert lr["step"][72] == 0.05 and lr["step"][108] == pytest.approx(0.005)
    assert lr["warmup_cosine"][0] == 0 and lr["cosine"][36] < lr["warmup_cosine"][36] < 0.05
    table = by(root, "case")
    # a decaying lr takes smaller steps: at this short budget it fits the training set less than a constant lr
    assert table.loc["cosine", "train_acc_mean"] < table.loc["constant", "train_acc_mean"]
    assert table.loc["step", "train_acc_mean"] < table.loc["constant", "train_acc_mean"]


def test_bias_decay(cli, data_root) -> None:
    _, root = run_config(cli, data_root, "bias_decay", "train.epochs=30", "train.seeds=[0]")
    table = by(root, "case")
    # strong weight decay narrows the train-test gap of this overfitting net
    assert table.loc["weights_1e-2", "gap_mean"] < table.loc["no_decay", "gap_mean"] - 0.03
    # decaying the biases too changes training (the key acts) but not by much
    loss = table["train_loss_mean"]
    assert loss["all_1e-2"] != loss["weights_1e-2"]
    assert abs(table.loc["all_1e-2", "test_acc_mean"] - table.loc["weights_1e-2", "test_acc_mean"]) < 0.03


def test_optimizers_modern(cli, data_root) -> None:
    _, root = run_config(cli, data_root, "optimizers_modern", "train.steps=60", "train.eval_every=30",
                         "train.seeds=[0]", "data.train_size=1000")
    metrics = _metrics(root, "optimizer.name")
    assert len(metrics) == 14
    for name, m in metrics.items():  # every optimizer trains: the training loss falls
        assert m["train_loss"].iloc[-1] < m["train_loss"].iloc[0], name


def test_batch_size(cli, data_root) -> None:
    _, root = run_config(cli, data_root, "batch_size", "data.train_size=500", "train.seeds=[0]",
                         "cases.full_batch.train.epochs=5", "cases.full_batch.train.eval_every=1",
                         "cases.online.train.steps=450", "cases.batch_32.train.epochs=1",
                         "cases.batch_128.train.epochs=1")
    runs = pd.read_csv(root / "runs.csv").set_index("case")
    assert runs.loc["online", "steps"] == 450 and runs.loc["full_batch", "steps"] == 5
    # after one epoch, online SGD (450 updates) is far ahead of full-batch GD (1 update)
    metrics = {}
    for run_id, case in zip(runs["run_id"], runs.index):
        m = pd.read_csv(root / "runs" / run_id / "metrics.csv")
        metrics[case] = m.set_index("epoch")
    assert metrics["online"].loc[1.0, "train_acc"] > metrics["full_batch"].loc[1.0, "train_acc"] + 0.1


def test_random_search_ranks_on_validation(cli, data_root) -> None:
    stdout, root = run_config(cli, data_root, "random_search", "random.trials=4", "train.epochs=5")
    summary = pd.read_csv(root / "summary.csv")
    assert len(summary) == 12 and sorted(summary["round"].value_counts()) == [4, 4, 4]  # 3 rounds of 4
    assert summary["val_acc_mean"].tolist() == sorted(summary["val_acc_mean"], reverse=True)
    lr = summary["optimizer.lr"]
    assert ((lr >= 1e-6) & (lr <= 1e-2)).all()
    first, last = lr[summary["round"] == 1], lr[summary["round"] == 3]
    assert last.max() / last.min() < first.max() / first.min()  # narrowed
    best_lr = summary.loc[0, "optimizer.lr"]
    # the table shows values at 4 significant digits
    assert stdout.index(f"{best_lr:.4g}") < stdout.index(f"{summary.loc[11, 'optimizer.lr']:.4g}")


def test_tuning_confirms_each_optimizer_on_fresh_seeds(cli, data_root) -> None:
    stdout, root = run_config(cli, data_root, "tuning", "random.trials=2", "random.rounds=2", "train.epochs=2",
                              "train.eval_every=1", "random.prune={every: 1, keep: 0.5}", "confirm.seeds=[100, 101]")
    runs = pd.read_csv(root / "runs.csv")
    counts = runs.groupby(["case", "stage"]).size()
    for case in ("adam", "momentum", "rmsprop"):
        assert (counts[(case, "search")], counts[(case, "confirm")], counts[(case, "defaults")]) == (4, 2, 2)
    assert set(runs.loc[runs["stage"] != "search", "seed"]) == {100, 101}
    assert "among the confirm runs" in stdout


def test_l1_gives_more_near_zero_weights_than_l2(cli, data_root) -> None:
    # 90 steps instead of 1080: a 10x stronger L1 pull gets the unneeded weights to zero in time
    stdout, root = run_config(cli, data_root, "l1_sparsity", "data.train_size=1000", "train.epochs=10",
                              "train.seeds=[0]", "cases.l1.regularization.l1=0.01")
    assert "near-zero weights %" in stdout
    near = diagnostics_of(root).set_index("case")["weight_near_zero"]
    assert near["l1"] > 2 * near["l2"] and near["l1"] > 2 * near["none"]
    diag_csv = pd.read_csv(root / "diagnostics_summary.csv").set_index("label")
    assert diag_csv.loc["l1", "weight_near_zero_mean"] == pytest.approx(near["l1"])


# ---------------------------------------------------------------- on MNIST


# per training config: the overrides that make one run of it take a few steps
TINY = {
    "optimizers": ["train.steps=2", "train.seeds=[0]", "grid={optimizer: [{name: adam, lr: 0.001}]}"],
    "init_training": ["train.steps=2", "train.seeds=[0]", "grid={init: [{scheme: he_normal}]}"],
    "batchnorm": ["train.epochs=1", "train.seeds=[0]", "grid={init.std: [0.01], model.norm: [batch]}"],
    "overfitting": ["train.epochs=1", "train.seeds=[0]", "cases={dropout: {model.dropout: 0.2}}"],
    "losses": ["train.epochs=1", "train.seeds=[0]", "grid={loss: [mse_sigmoid]}", "data.train_size=200"],
    "batch_size": ["train.seeds=[0]", "cases={full: {train: {batch_size: full, epochs: 2}}}"],
    "random_search": ["train.epochs=1", "random.trials=1"],
    "tuning": ["train.epochs=2", "train.eval_every=1", "random.trials=1", "random.rounds=2",
               "random.prune={every: 1, keep: 0.5}", "confirm.seeds=[100]", "data.train_size=200"],
    "l1_sparsity": ["train.epochs=1", "train.seeds=[0]", "cases={l1: {regularization.l1: 0.001}}",
                    "data.train_size=200"],
    "batchnorm_batch_size": ["train.epochs=1", "train.seeds=[0]", "grid={train.batch_size: [32], model.norm: [batch]}",
                             "data.train_size=200"],
    "preprocessing": ["train.epochs=1", "train.seeds=[0]", "grid={data.preprocess: [positive]}"],
    "optimizers_modern": ["train.steps=2", "train.seeds=[0]", "grid={optimizer: [{name: adamw_schedulefree}]}"],
    "schedules": ["train.epochs=1", "train.seeds=[0]", "grid={optimizer: [{name: adam}]}", "data.train_size=200",
                  "cases={warmup_cosine: {schedule: {name: cosine, warmup: 1}}}"],
    "bias_decay": ["train.epochs=1", "train.seeds=[0]",
                   "cases={all: {optimizer: {weight_decay: 0.01, decay_biases: true}}}"],
}


def test_function_and_activation_configs_refuse_data_they_would_not_read(cli, tmp_path: Path) -> None:
    for name, reads in (("optimizer_paths", "optimizer, train.seeds"),
                        ("init_activations", "model, init, diagnostics.bins, train.seeds")):
        assert cli("validate", CONFIGS / f"{name}.yaml").exit_code == 0  # they load no data
        result = cli("validate", CONFIGS / f"{name}.yaml", "--set", "data.dataset=mnist")
        task = "function" if name == "optimizer_paths" else "activations"
        assert result.exit_code == 2
        assert result.output.strip().splitlines()[-1] == f"error: data.dataset: 'mnist' is invalid: task {task!r} " \
            f"does not read it (it reads {reads}); remove it"


def test_every_training_config_covered_on_mnist() -> None:
    training = {n for n in SHIPPED if vocabulary.load(CONFIGS / f"{n}.yaml")[0].task == "train"}
    # xor is an experiment on its toy set: on MNIST it would just be three small models
    assert training - {"quickstart", "mnist1d_reference", "xor"} == set(TINY)


def test_training_configs_run_on_mnist_with_one_set(cli, tmp_path: Path) -> None:
    """`--set data.dataset=mnist` is all it takes (here on a small fake MNIST: 28x28 images)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(1400, 28, 28), dtype=np.uint8)
    labels = (np.arange(1400) % 10).astype(np.uint8)
    write_idx(tmp_path / "mnist" / "MNIST" / "raw", "train", images[:1200], labels[:1200])
    write_idx(tmp_path / "mnist" / "MNIST" / "raw", "t10k", images[1200:], labels[1200:])
    for name, sets in TINY.items():
        args = ["data.dataset=mnist", f"data.root={tmp_path / 'mnist'}", "data.download=false", "train.device=cpu",
                *sets]
        result = cli("run", CONFIGS / f"{name}.yaml", "--out", tmp_path / "results", "--no-plots",
                     *(x for s in args for x in ("--set", s)))
        assert result.exit_code == 0, f"{name}: {result.output}"
        # one run each; a staged search (random_search, tuning) has a run per round and stage
        summaries = [json.loads(f.read_text()) for f in (tmp_path / "results" / name / "runs").glob("*/summary.json")]
        assert summaries and len(summaries) <= 12, name
        for summary in summaries:
            assert summary["status"] in ("ok", "pruned") and summary["n_params"] > 28 * 28 * 100, name  # 784 inputs
