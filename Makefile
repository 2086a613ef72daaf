# dlbench — every target sets up what it needs first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch / torchvision are pinned to the releases this project is tested with
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: install quickstart test clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[dev,ray]"
	touch $@

quickstart: install  ## train the quickstart grid on MNIST-1D and print the table
	$(BIN)/dlbench run configs/quickstart.yaml

test: install  ## run the test suite
	$(BIN)/python -m pytest -q

.PHONY: bench
bench: install  ## time dlbench against an idiomatic PyTorch loop (quickstart + 64-run grid), print the table
	$(BIN)/python bench/bench.py

clean:
	rm -rf results/*/ .pytest_cache
