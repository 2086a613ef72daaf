#!/usr/bin/env bash
# The wheels scripts/gpu-check.sh needs on a GPU machine that cannot reach a package index: dlbench's
# dependencies missing from that machine's Python (3.12, x86-64; it has torch, numpy, pandas, pyyaml,
# typer, rich, scipy, matplotlib, pytest, ... but not pydantic or mnist1d). Run it where pip reaches
# PyPI, in the repo's root; it fills .whl/ (ignored by git), which the device call carries:
#
#   scripts/gpu-wheels.sh                     # here
#   run(command="scripts/gpu-check.sh", carry=[".whl"], timeout_s=600)   # there
#
# The versions are the ones this project is tested with (pip show in its .venv); --no-deps: each
# dependency is named here.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP=${PIP:-python3 -m pip}
PY_VERSION=${PY_VERSION:-3.12}
WHEELS=(pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
        typing-extensions mnist1d==0.0.2.post1)
mkdir -p .whl
$PIP download --quiet --no-deps --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d .whl "${WHEELS[@]}"
ls -l .whl
