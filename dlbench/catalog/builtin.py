"""Every built-in component and config section, declared once: names, summaries, the settings
each reads (type, constraints, default, doc) and facts. Builders register against these
names in `dlbench.components` (and `dlbench.results.figures` for plots).

To add a component, declare it here and register its builder; the schema, `dlbench list`,
`dlbench schema`, the docs and the registry-parametrized tests pick it up.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt, Le, Lt, MinLen

from dlbench.catalog.metrics import METRICS, TRAINING_BEST
from dlbench.catalog.records import Distinct, Section, Setting
from dlbench.catalog.registry import CATALOG

# ------------------------------------------------------------------ constrained types
Positive = Annotated[float, Gt(0)]
NonNegative = Annotated[float, Ge(0)]
Probability = Annotated[float, Ge(0), Lt(1)]  # [0, 1)
PositiveInt = Annotated[int, Gt(0)]
Seed = Annotated[int, Ge(0), Lt(2**63)]  # what torch.manual_seed and torch.Generator accept
Fraction = Annotated[float, Gt(0), Lt(1)]  # (0, 1)
Count = Annotated[int, Ge(0)]


def _add(kind: str, name: str, summary: str, *settings: Setting, **facts: Any) -> None:
    CATALOG[kind].declare(name, summary, tuple(settings), **facts)


# ------------------------------------------------------------------ datasets
_IMAGES = "torchvision.datasets.{} in data.root/{} ({})"
_add("dataset", "mnist1d", "MNIST-1D: 40-long 1-D signals of the ten digit templates, shifted, scaled and noised.",
     shape=(40,), classes=10, inputs="signal", n_train=4000, n_test=1000,
     source="generated locally by the mnist1d package (make_dataset, default arguments)")
_add("dataset", "mnist", "MNIST handwritten digits, 28x28 grayscale (LeCun et al. 1998).",
     shape=(1, 28, 28), classes=10, inputs="image", n_train=60000, n_test=10000,
     source=_IMAGES.format("MNIST", "MNIST/raw", "IDX files"))
_add("dataset", "fashion_mnist", "Fashion-MNIST: 28x28 grayscale clothing images in MNIST's format (Xiao et al. 2017).",
     shape=(1, 28, 28), classes=10, inputs="image", n_train=60000, n_test=10000,
     source=_IMAGES.format("FashionMNIST", "FashionMNIST/raw", "IDX files"))
_add("dataset", "cifar10", "CIFAR-10: 32x32 colour images of 10 object classes (Krizhevsky 2009).",
     shape=(3, 32, 32), classes=10, inputs="image", n_train=50000, n_test=10000,
     source=_IMAGES.format("CIFAR10", "cifar-10-batches-py", "md5-checked pickles"))


def _samples(default: int) -> Setting:
    return Setting("samples", PositiveInt, default, "points generated per split (train and test)")


def _noise(default: float) -> Setting:
    return Setting("noise", NonNegative, default, "std of the Gaussian noise added to each coordinate")


def _classes(default: int) -> Setting:
    return Setting("classes", Annotated[int, Ge(2)], default, "number of classes (spiral arms, blobs)")


_TOY = dict(inputs="points", shape=(2,), source="generated from data.seed")
_add("dataset", "xor", "XOR: Gaussian clouds at the four corners (+-1, +-1), opposite corners share a class.",
     _samples(1000), _noise(0.25), classes=2, **_TOY)
_add("dataset", "spiral", "Spiral: one arm per class winding out from the origin; needs a nonlinear boundary.",
     _samples(1000), _noise(0.05), _classes(3), classes=3, **_TOY)
_add("dataset", "blobs", "Blobs: one Gaussian cloud per class, centres on the unit circle; (nearly) linearly "
     "separable.", _samples(1000), _noise(0.3), _classes(3), classes=3, **_TOY)

_add("preprocessing", "standardize", "zero mean, unit std per feature / channel, from training statistics only")
_add("preprocessing", "none", "the dataset's own values (images in [0, 1])")
_add("preprocessing", "positive", "standardized, then shifted per feature / channel so its training minimum is 0: "
     "all inputs >= 0")

# ------------------------------------------------------------------ models and their parts
_add("activation", "relu", "max(0, x)")
_add("activation", "sigmoid", "1 / (1 + exp(-x)); saturates at both ends")
_add("activation", "tanh", "tanh(x); zero-centred, saturates at both ends")
_add("activation", "leaky_relu", "max(0.01x, x)")
_add("activation", "gelu", "x * Phi(x)")
_add("activation", "identity", "no nonlinearity (a deep linear net)")

_add("norm", "none", "no normalization")
_add("norm", "batch", "BatchNorm over the batch, and over positions after a conv (Ioffe & Szegedy 2015)")
_add("norm", "layer", "LayerNorm over each sample's units (after a conv: all channels and positions)")

_add("pooling", "none", "no pooling")
_add("pooling", "max", "maximum of each pool_size-wide window (stride pool_size)")
_add("pooling", "avg", "mean of each pool_size-wide window (stride pool_size)")

CONV_LAYER = (
    Setting("channels", PositiveInt, None, "output channels", required=True),
    Setting("kernel", PositiveInt, 3, "kernel width (square kernels on images)"),
    Setting("stride", PositiveInt, 1, "stride"),
    Setting("padding", Count, 0, "zeros added on each side"),
    Setting("pool", str, "none", "pooling after the activation", choices="pooling"),
    Setting("pool_size", Annotated[int, Gt(1)], 2, "window and stride of the pool"),
)
_DENSE = (
    Setting("hidden", list[PositiveInt], [100, 100], "widths of the hidden dense layers"),
    Setting("activation", str, "relu", "nonlinearity after every hidden layer", choices="activation"),
    Setting("norm", str, "none", "normalization of every hidden layer", choices="norm"),
    Setting("norm_position", Literal["pre", "post"], "pre", "the norm before (pre) or after (post) the activation"),
    Setting("dropout", Probability, 0.0, "dropout probability after every hidden dense layer", role="run"),
    Setting("residual", bool, False, "x + block(x) around every hidden layer whose width equals its input's"),
    Setting("dropout_scaling", Literal["inverted", "test"], "inverted", "inverted: kept units x 1/(1 - p) in "
            "training (torch); test: kept units unscaled, every unit x (1 - p) at evaluation (the textbook's)"),
    Setting("bn_eps", Positive, 1e-5, "norm: batch - added to the variance (torch 1e-5; the textbook 1e-6)"),
    Setting("bn_momentum", Annotated[float, Gt(0), Le(1)], 0.1,
            "norm: batch - weight of each batch in the running statistics (torch and the textbook: 0.1)"),
    Setting("bn_running_var", NonNegative, 1.0,
            "norm: batch - the running variance before the first batch (torch 1; the textbook 0)"),
)
_add("model", "logreg", "Logistic (softmax) regression: flatten -> one linear layer.")
_add("model", "mlp", "Multilayer perceptron: flatten -> dense blocks (model.hidden widths) -> linear head.", *_DENSE)
_add("model", "cnn", "Convolutional net: model.conv blocks -> flatten -> dense blocks (model.hidden widths) -> "
     "linear head.", Setting("conv", list, None, "conv blocks before the dense layers, e.g. [{channels: 32, "
                             "kernel: 3, pool: max}]", items=CONV_LAYER, required=True), *_DENSE)

# a preset fills in an architecture by name (`model.preset`); keys written next to it win
_add("preset", "keras_mnist_cnn", "the classic Keras MNIST CNN: conv3x3 32, maxpool 2, conv 64, avgpool 2, "
     "conv 128, dense 128, dropout", params=241_546, shape=(1, 28, 28),
     values={"kind": "cnn", "activation": "relu", "residual": False, "hidden": [128], "dropout": 0.5,
             "conv": [{"channels": 32, "kernel": 3, "pool": "max"}, {"channels": 64, "kernel": 3, "pool": "avg"},
                      {"channels": 128, "kernel": 3}]})
_add("preset", "mnist1d_cnn", "the MNIST-1D reference CNN (Greydanus 2020): 3 x Conv1d 25 channels, stride 2, "
     "then linear", params=5_210, shape=(40,),
     values={"kind": "cnn", "activation": "relu", "residual": False, "hidden": [], "dropout": 0.0,
             "conv": [{"channels": 25, "kernel": 5, "stride": 2, "padding": 1},
                      {"channels": 25, "kernel": 3, "stride": 2, "padding": 1},
                      {"channels": 25, "kernel": 3, "stride": 2, "padding": 1}]})

# ------------------------------------------------------------------ init schemes
_STD = Setting("std", Positive, 0.01, "standard deviation of the weights")
_add("init", "default", "PyTorch's layer defaults (biases too)")
_add("init", "zeros", "all weights 0: every unit in a layer stays identical")
_add("init", "constant", "all weights init.value", Setting("value", float, 0.0, "the value of every weight"))
_add("init", "normal", "N(0, init.std^2)", _STD)
_add("init", "uniform", "U(-a, a) with standard deviation init.std (a = sqrt(3) std)", _STD)
_add("init", "xavier_normal", "Glorot: N(0, 2 / (fan_in + fan_out)); equals lecun_normal only where a layer's "
     "fan_in equals its fan_out")
_add("init", "xavier_uniform", "Glorot: U(+-sqrt(6 / (fan_in + fan_out)))")
_add("init", "he_normal", "He/Kaiming: N(0, 2 / fan_in), for ReLU")
_add("init", "he_uniform", "He/Kaiming: U(+-sqrt(6 / fan_in)), for ReLU")
_add("init", "lecun_normal", "LeCun: N(0, 1 / fan_in); what Saito's book and our notes call 'Xavier' "
     "(std 1/sqrt(n), n the previous layer's width)")
_add("init", "orthogonal", "a (semi-)orthogonal weight matrix (Saxe et al.)")

# ------------------------------------------------------------------ losses
_add("loss", "cross_entropy", "softmax cross-entropy on the logits (F.cross_entropy)", smoothable=True)
_add("loss", "nll", "log-softmax then negative log-likelihood (same value as cross_entropy, two ops)", smoothable=True)
_add("loss", "mse", "squared error of softmax outputs vs one-hot targets, summed over classes, mean over samples")
_add("loss", "mse_sigmoid", "squared error of per-class sigmoid outputs vs one-hot targets (learns slowly where a "
     "sigmoid saturates)")
_add("loss", "bce", "binary cross-entropy of per-class sigmoid outputs vs one-hot targets")

# ------------------------------------------------------------------ optimizers
LR = Setting("lr", Positive, 0.001, "learning rate (the schedule multiplies it)")
WEIGHT_DECAY = Setting("weight_decay", NonNegative, 0.0, "L2 weight decay (coupled: added to the gradient)")
EPS = Setting("eps", Positive, 1e-8, "added to the denominator for numerical stability")
BETAS = Setting("betas", tuple[Probability, Probability], (0.9, 0.999),
                "decay rates of the first and second moment averages")


def _momentum(default: float) -> Setting:
    return Setting("momentum", Probability, default, "momentum coefficient (0: none)")


_HEAVY_BALL = (LR, _momentum(0.9), WEIGHT_DECAY)
_ADAM = (LR, BETAS, EPS, WEIGHT_DECAY)
_add("optimizer", "sgd", "(stochastic) gradient descent: w -= lr g; with optimizer.momentum set, as "
     "torch.optim.SGD(momentum=...)", LR, _momentum(0.0), WEIGHT_DECAY, usual_lr=0.1)
_add("optimizer", "momentum", "heavy-ball momentum: v = m v + g; w -= lr v", *_HEAVY_BALL, usual_lr=0.01)
_add("optimizer", "nesterov", "Nesterov momentum: v = m v + g; w -= lr (g + m v)", *_HEAVY_BALL, usual_lr=0.01)
_add("optimizer", "adagrad", "AdaGrad: G += g^2; w -= lr g / (sqrt(G) + eps)", LR, EPS, WEIGHT_DECAY, usual_lr=0.01)
_add("optimizer", "rmsprop", "RMSprop: E = a E + (1 - a) g^2; v = m v + g / (sqrt(E) + eps); w -= lr v",
     LR, Setting("alpha", Probability, 0.99, "decay of the squared-gradient average"), EPS, _momentum(0.0),
     WEIGHT_DECAY, usual_lr=0.001)
_add("optimizer", "adam", "Adam: momentum + RMSprop scaling with bias correction; weight decay is L2 in the "
     "gradient", *_ADAM, usual_lr=0.001)
_add("optimizer", "adamw", "AdamW: Adam with decoupled weight decay (w -= lr * wd * w)", LR, BETAS, EPS,
     Setting("weight_decay", NonNegative, 0.0, "decoupled weight decay: w -= lr * weight_decay * w"), usual_lr=0.001)
_add("optimizer", "nadam", "Adam with Nesterov momentum (Dozat 2016), momentum warming up with 0.96^(t * 0.004) "
     "as torch.optim.NAdam", *_ADAM, usual_lr=0.002)
_add("optimizer", "radam", "Rectified Adam (Liu et al. 2020): momentum SGD until the variance estimate is "
     "trustworthy, then Adam", *_ADAM, usual_lr=0.001)
_add("optimizer", "adamax", "Adam with the infinity norm: u = max(b2 u, |g| + eps); w -= lr / (1 - b1^t) m / u",
     *_ADAM, usual_lr=0.002)
_add("optimizer", "adadelta", "AdaDelta (Zeiler 2012): steps scaled by RMS(past steps) / RMS(gradients), both "
     "decaying with rho", Setting("lr", Positive, 0.001, "learning rate (torch's usual is 1.0)"),
     Setting("rho", Probability, 0.9, "decay of its two running averages"), EPS, WEIGHT_DECAY, usual_lr=1.0)
_add("optimizer", "lion", "Lion (Chen et al. 2023): w -= lr sign(b1 m + (1 - b1) g); m = b2 m + (1 - b2) g; "
     "decoupled weight decay", LR, BETAS,
     Setting("weight_decay", NonNegative, 0.0, "decoupled weight decay: w -= lr * weight_decay * w"), usual_lr=1e-4)
_add("optimizer", "muon", "Muon (Jordan et al. 2024): Nesterov momentum, orthogonalized per weight matrix; biases "
     "and norm parameters use Adam (betas, eps)", LR, _momentum(0.95), BETAS, EPS, WEIGHT_DECAY, usual_lr=0.001)
_add("optimizer", "adamw_schedulefree", "Schedule-free AdamW (Defazio et al. 2024): no decay schedule needed; "
     "evaluates an average of the iterates", LR, BETAS, EPS,
     Setting("weight_decay", NonNegative, 0.0, "decoupled weight decay"), usual_lr=0.0025)

# ------------------------------------------------------------------ lr schedules
WARMUP = Setting("warmup", Count | Annotated[float, Ge(0), Lt(1)], 0.0,
                 "linear warmup from 0: a fraction (< 1) of all steps, or a number of steps (an integer)")
MIN_LR = Setting("min_lr", Annotated[float, Ge(0), Le(1)], 0.0, "end value, as a fraction of optimizer.lr")
_add("schedule", "constant", "optimizer.lr throughout (after the warmup, if any)", WARMUP)
_add("schedule", "step", "multiplied by schedule.gamma every schedule.every epochs (torch StepLR)", WARMUP,
     Setting("every", PositiveInt, 10, "epochs between decays"),
     Setting("gamma", Annotated[float, Gt(0), Le(1)], 0.1, "factor per decay"))
_add("schedule", "exponential", "multiplied by schedule.gamma per epoch, smoothly at every step (torch ExponentialLR)",
     WARMUP, Setting("gamma", Annotated[float, Gt(0), Le(1)], 0.9, "factor per epoch"))
_add("schedule", "cosine", "half a cosine from 1 down to schedule.min_lr at the last step (torch CosineAnnealingLR)",
     WARMUP, MIN_LR)
_add("schedule", "linear", "straight down from 1 to schedule.min_lr at the last step (torch LinearLR)", WARMUP, MIN_LR)
_add("schedule", "one_cycle", "up from lr/25 to lr at schedule.peak (fraction of steps), then down to lr/25e4; "
     "cosine both ways (OneCycleLR)", Setting("peak", Fraction, 0.3, "the lr peaks at this fraction of all steps"))

# ------------------------------------------------------------------ augmentations (images, drawn per run)
_add("augmentation", "none", "the images as they are")
_add("augmentation", "shift", "random translation by up to 2 pixels each way, zeros filling in (digits)", pixels=2)
_add("augmentation", "crop_flip", "random crop after 4 pixels of zero padding, and a horizontal flip half the time "
     "(CIFAR-10)", padding=4)

# ------------------------------------------------------------------ test functions (task: function)
_START = "starting point (x, y)"
_add("function", "elliptic", "f = x^2 / 20 + y^2: a bowl 20x flatter along x than y (Saito, Deep Learning from "
     "Scratch, ch. 6)", Setting("start", tuple[float, float], (-7.0, 2.0), _START),
     minimum=(0.0, 0.0), view=((-10.0, 10.0), (-5.0, 5.0)))
_add("function", "rosenbrock", "f = (1 - x)^2 + 100 (y - x^2)^2: a narrow curved valley, minimum 0 at (1, 1)",
     Setting("start", tuple[float, float], (-1.5, 2.0), _START), minimum=(1.0, 1.0), view=((-2.0, 2.0), (-1.0, 3.0)))

# ------------------------------------------------------------------ tasks
# sections: the config sections only this task reads; reads: what else of a config it reads (a section, or
# one key of a section), None for everything; plots: the figures it draws by default
_add("task", "train", "train every run of the sweep and report train / validation / test accuracy",
     trains=True, sections=(), reads=None, plots=("curves", "gap"))
_add("task", "function", "optimizers on a 2-D test function instead of a network (their paths)",
     trains=False, sections=("function",), reads=("optimizer", "train.seeds"), plots=("paths",))
_add("task", "activations", "the untrained net (model + init) fed Gaussian noise: activation statistics per layer",
     trains=False, sections=("activations",), reads=("model", "init", "diagnostics.bins", "train.seeds"),
     plots=("histograms",))

# ------------------------------------------------------------------ plots
# needs: what a config must have for the figure: "search" (a random: section), "swept" (a swept key
# beside the first), "numeric" (two numeric swept keys), "target" (plot --target), a diagnostics flag
_add("plot", "curves", "train loss, train and test accuracy vs step; mean ± std band over seeds", task="train",
     needs=())
_add("plot", "curves_epoch", "the learning curves vs epoch (log axis when the spans differ a lot)", task="train",
     needs=())
_add("plot", "curves_seconds", "the learning curves vs wall-clock seconds", task="train", needs=())
_add("plot", "calibration", "expected calibration error (train, validation, test) vs step: over-confidence as it "
     "grows; mean ± std band over seeds", task="train", needs=())
_add("plot", "gap", "final train vs test accuracy per configuration, the gap written beside", task="train", needs=())
_add("plot", "panels", "one panel of train-accuracy curves per value of the first swept key", task="train",
     needs=("swept",))
_add("plot", "scatter", "validation accuracy over the first two numeric swept keys (random search)", task="train",
     needs=("numeric",))
_add("plot", "weights", "histogram of log10 |w| at the end, near-zero fraction in the legend", task="train",
     needs=("diagnostics.weights",))
_add("plot", "gradients", "per-layer gradient norm at the first and last evaluation (vanishing / exploding)",
     task="train", needs=("diagnostics.gradients",))
_add("plot", "activation_std", "per-layer activation std at the first and last evaluation", task="train",
     needs=("diagnostics.activations",))
_add("plot", "paths", "each optimizer's path over the function's contour lines", task="function", needs=())
_add("plot", "histograms", "activation histograms: one row per configuration, one column per layer",
     task="activations", needs=())
_add("plot", "sensitivity", "validation accuracy against each searched hyperparameter (search runs), one colour per "
     "case", task="train", needs=("search",))
_add("plot", "importance", "each searched key's share of the variance of validation accuracy (fANOVA on the first "
     "round), per case", task="train", needs=("search",))
_add("plot", "parallel", "parallel coordinates: one axis per searched key (log where the range is) and one for "
     "validation accuracy, a line per search trial coloured by it", task="train", needs=("search",))
_add("plot", "profile", "performance profile: the fraction of settings where each case reaches the target "
     "(plot --target) within tau x the fastest case's steps", task="train", needs=("target",))

# ------------------------------------------------------------------ export targets (dlbench export --to)
_add("export", "tensorboard", "OUT/<experiment>/<swept values seed=N>/: metrics.csv as scalars by step; swept "
     "values, status and final metrics in the HParams view", extra="tensorboard")
_add("export", "mlflow", "one MLflow run per run in a local store OUT/mlflow.db: the resolved config as params, "
     "metrics by step, status and sweep as tags", extra="mlflow")

# ------------------------------------------------------------------ executors (dlbench run --executor)
_add("executor", "local", "stacks of compatible runs (differing only in values), one stack after another in this "
     "process")
_add("executor", "serial", "stacks of one run, one after another in this process")
_add("executor", "processes", "a pool of worker processes (--workers N, default one per core), each training stacks")
_add("executor", "ray", "stacks as Ray tasks (--address HOST:PORT for a cluster, --workers N tasks at a time; "
     "with --address, --detach submits them as Ray jobs and returns)")
_add("executor", "slurm", "stacks as the tasks of a SLURM job array through submitit (resources from the slurm: "
     "section, --workers N tasks at a time, --detach to submit and return)", extra="slurm",
     # slurm.sbatch: long option names ('_' read as '-'), none that dlbench or submitit set or a slurm: key sets
     sbatch_option=r"^[a-z][a-z0-9_-]*$",
     sbatch_own=("array", "output", "error", "signal", "open-mode", "job-name", "wckey", "time", "partition",
                 "cpus-per-task", "gpus-per-node", "mem", "account", "qos", "nodes", "ntasks-per-node", "requeue"))

# ------------------------------------------------------------------ config sections
# what train.monitor may name: every metric measured on the validation split
VALIDATION_METRICS = tuple(m.name for m in METRICS.declared() if m.split == "val")

TOP = Section("config", "the top level of a config file", "meta", (
    Setting("name", str, "experiment", "results go to OUT/<name>/ (letters, digits, '_', '-', '.')"),
    Setting("description", str, "", "one line shown above the report"),
    Setting("task", str, "train", "what the experiment does", choices="task"),
    Setting("loss", str, "cross_entropy", "the training loss", role="stack", choices="loss"),
    Setting("plots", list[str] | None, None, "figures `dlbench plot` draws; null: the task's usual ones",
            choices="plot"),
    Setting("plugins", list[str], [], "the users' components: Python files (relative to this config) or "
            "importable modules, loaded before the config is read", role="execution"),
))

SECTIONS: dict[str, Section] = {s.name: s for s in (
    Section("data", "the dataset, its splits and preprocessing", "stack", (
        Setting("root", str, "data", "folder of the datasets' files", role="execution"),
        Setting("download", bool, True, "fetch a missing dataset (torchvision's)", role="execution"),
        Setting("train_size", PositiveInt | None, None, "train on this many training samples; null: all"),
        Setting("val_size", Count | Fraction, 0.1, "validation split from the training set: a fraction in (0, 1), "
                "or a number of samples (an integer; 0: none)"),
        Setting("preprocess", str, "standardize", "input preprocessing", choices="preprocessing"),
        Setting("seed", Seed, 0, "seed of the split (and of the generated sets)"),
        Setting("train_subset", Literal["random", "first"], "random", "which train_size samples: a random N "
                "(from data.seed) | the first N as stored (the textbook's x_train[:N])"),
    ), chooses="dataset", key="dataset", default="mnist1d"),
    Section("model", "the network", "stack", (
        Setting("preset", str | None, None, "a named architecture; keys given beside it win", choices="preset"),
    ), chooses="model", key="kind", default="mlp"),
    Section("init", "weight initialization of every Linear / Conv layer (biases 0)", "run",
            chooses="init", key="scheme", default="default"),
    Section("optimizer", "the update rule and its hyperparameters", "run", (
        Setting("clip_norm", Positive | None, None, "each run's global gradient norm clipped to this; null: never"),
        Setting("decay_biases", bool, False, "weight decay on biases and norm parameters too"),
    ), chooses="optimizer", key="name", default="adam"),
    Section("schedule", "the learning-rate multiplier at every step", "run",
            chooses="schedule", key="name", default="constant"),
    Section("regularization", "penalties, noise, early stopping, label smoothing, augmentation", "run", (
        Setting("l1", NonNegative, 0.0, "L1 penalty on the weights, added to the loss"),
        Setting("input_noise", NonNegative, 0.0, "std of Gaussian noise added to every training input"),
        Setting("early_stopping", PositiveInt | None, None,
                "stop a run after this many evaluations without a better train.monitor (validation accuracy by "
                "default); null: never"),
        Setting("label_smoothing", Probability, 0.0, "targets (1 - s) one-hot + s / classes (cross_entropy, nll)"),
        Setting("augment", str, "none", "image augmentation, drawn per run", choices="augmentation"),
        Setting("penalty_in_loss", bool, False, "the reported training loss adds 1/2 optimizer.weight_decay "
                "sum ||w||^2 over the decayed tensors, as the textbook's does (reported only)"),
    )),
    Section("train", "how long and in which batches", "stack", (
        Setting("epochs", PositiveInt | None, None, "passes over the training set (20 when neither epochs nor "
                "steps is given)"),
        Setting("steps", PositiveInt | None, None, "updates in all, instead of epochs"),
        Setting("batch_size", PositiveInt | Literal["full"], 100, "samples per update; full: the whole training set"),
        Setting("eval_every", PositiveInt, 1, "evaluate every this many epochs (steps with train.steps)"),
        # per run: early stopping and a run's best are its own; pruning compares only runs of one monitor
        Setting("monitor", Literal[VALIDATION_METRICS], TRAINING_BEST, "the validation metric, in its direction "
                "(val_loss, val_ece: lower is better), that chooses each run's best evaluation (summary.json's "
                "best), early stopping, successive halving (random.prune) and what a search ranks its points on",
                role="run", added=True),
        Setting("seeds", Annotated[list[Seed], MinLen(1), Distinct()], [0, 1, 2], "one run per seed", role="sweep"),
        Setting("device", Literal["auto", "cpu", "cuda"], "auto", "where runs train", role="execution"),
        Setting("precision", Literal["fp32", "bf16", "fp16"], "fp32", "bf16 / fp16: autocast on CUDA (fp16 with "
                "loss scaling); refused where the device cannot"),
        Setting("order", Literal["shuffle", "sequential", "replacement"], "shuffle",
                "batches: reshuffled every epoch | one fixed order | each drawn with replacement (the "
                "textbook's np.random.choice; an epoch is then n / batch_size such draws)"),
        Setting("checkpoint_seconds", NonNegative | None, 60.0, "stack checkpoints every this many seconds; null: "
                "never", role="execution"),
    )),
    Section("diagnostics", "per-layer statistics recorded at every evaluation (all off by default)", "run", (
        Setting("activations", bool, False, "activation mean / std / saturated and zero fractions, histograms"),
        Setting("gradients", bool, False, "gradient norm of each weight tensor on the last training batch"),
        Setting("weights", bool, False, "weight norm, fraction of near-zero weights, histograms of log10 |w|"),
        Setting("samples", Annotated[int, Gt(1)], 512, "training samples fed for activation statistics"),
        Setting("near_zero", Positive, 1e-3, "|w| below this counts as a near-zero weight"),
        Setting("bins", Annotated[int, Gt(1), Le(1000)], 30, "histogram bins"),
    )),
    Section("grid", "a cartesian product: dotted key or whole section -> list of values", "sweep"),
    Section("random", "seeded random search over a space of settings", "sweep", optional=True),
    Section("confirm", "rerun the best points of a search on fresh seeds", "sweep", optional=True),
    Section("cases", "named variants that each set several keys at once", "sweep"),
    Section("function", "task: function - optimizers on a 2-D test function", "meta", (
        Setting("steps", PositiveInt, 30, "optimizer steps"),
        Setting("threshold", Positive, 1e-3, "report the first step with f - f_min below this"),
    ), chooses="function", key="name", default="elliptic", optional=True),
    Section("slurm", "resources of each task of --executor slurm's job array (read by that executor only)",
            "execution", (
        Setting("partition", str | None, None, "the partition (sbatch --partition); null: the cluster's default"),
        Setting("time", PositiveInt | None, None, "time limit of a task in minutes; null: from the stack's measured "
                "cost (earlier runs' step times, else a short timing probe) x 2 + 5 minutes"),
        Setting("cpus", PositiveInt, 1, "CPUs per task (sbatch --cpus-per-task); torch uses as many threads"),
        Setting("gpus", Count, 0, "GPUs per task (sbatch --gpus-per-node)"),
        Setting("mem", str | None, None, "memory per task as sbatch takes it (e.g. 4G); null: the cluster's default"),
        Setting("account", str | None, None, "the account charged (sbatch --account)"),
        Setting("qos", str | None, None, "the quality of service (sbatch --qos)"),
        Setting("sbatch", dict[str, str | int], {}, "more sbatch options, name -> value (e.g. {constraint: a100, "
                "exclude: node7}); the ones the keys above and dlbench set are refused"),
        Setting("setup", list[str], [], "shell lines run before the task (e.g. module load cuda, source "
                "venv/bin/activate)"),
        Setting("python", str | None, None, "the Python command on the nodes; null: the one running dlbench"),
        Setting("signal_seconds", PositiveInt, 90, "a task is signalled this long before its time limit: it "
                "checkpoints its stack and requeues itself (sbatch --signal)"),
        Setting("retries", Count, 3, "times a task that reached its time limit is requeued before its runs fail"),
    ), optional=True),
    Section("activations", "task: activations - the untrained net fed Gaussian noise", "meta", (
        Setting("samples", Annotated[int, Gt(1)], 1000, "samples fed through the net"),
        Setting("features", PositiveInt, 100, "input width; the samples are N(0, 1) in every feature"),
    ), optional=True),
)}
