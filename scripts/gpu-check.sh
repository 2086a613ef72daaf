#!/usr/bin/env bash
# Every GPU measurement dlbench still lacks, as one command under one time budget: the CUDA tests
# (tests/test_cuda.py: what `make test-gpu` runs) and then bench/gpu.py's sections, most wanted first,
# each given what is left of the budget (capped), so a session with ~15 minutes of device time runs it
# once and keeps whatever finished. docs/gpu.md says what each part measures.
#
#   scripts/gpu-check.sh [--budget SECONDS] [--smoke]       (or: make gpu-check)
#
# Outputs go to $OUT if set (a device machine's folder that comes back), else results/gpu-check/:
#   summary.txt    one line per step: ok / FAILED (exit code) / stopped at its time limit / skipped
#   env.txt        nvidia-smi, Python, torch, CUDA, the GPU and its free memory
#   test-gpu.log   pytest's output for tests/test_cuda.py
#   bench-gpu.md   bench/gpu.py's tables, section by section;  bench-gpu.log  their stderr
#
# On a machine without network access whose python3 has torch but not all of dlbench's dependencies,
# run scripts/gpu-wheels.sh first where pip works, and carry .whl: its wheels are installed into
# /tmp/site here. --smoke: on a CPU, bench/gpu.py at toy sizes (checks this script; the CUDA tests skip).
set -u
cd "$(dirname "$0")/.."

budget=540  # seconds: a 600 s command limit, minus room for start-up and copying the outputs back
smoke=0
while [ $# -gt 0 ]; do
    case "$1" in
        --budget) budget=$2; shift 2 ;;
        --smoke) smoke=1; shift ;;
        *) echo "scripts/gpu-check.sh: unknown argument '$1' (allowed: --budget SECONDS, --smoke)" >&2; exit 2 ;;
    esac
done
case "$budget" in ''|*[!0-9]*) echo "scripts/gpu-check.sh: --budget '$budget' is invalid: a whole number of seconds" >&2; exit 2 ;; esac

out=${OUT:-results/gpu-check}
mkdir -p "$out"
start=$(date +%s)
summary="$out/summary.txt"
: > "$summary"

if [ -n "${PYTHON:-}" ]; then py=$PYTHON
elif [ -x .venv/bin/python ]; then py=.venv/bin/python
else py=python3
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# cuBLAS needs this workspace setting for deterministic results (docs/gpu.md); set before CUDA starts
export CUBLAS_WORKSPACE_CONFIG=:4096:8

missing() {
    "$py" - <<'PY'
import importlib.util
print(" ".join(m for m in ("torch", "torchvision", "pydantic", "mnist1d", "yaml", "typer", "rich", "pandas", "scipy",
                           "matplotlib", "filelock", "jinja2", "pytest") if importlib.util.find_spec(m) is None))
PY
}
missing=$(missing)
if [ -n "$missing" ] && compgen -G ".whl/*.whl" > /dev/null; then  # the wheels scripts/gpu-wheels.sh made
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "installing .whl/ into /tmp/site failed" | tee -a "$summary"; exit 3; }
    export PYTHONPATH="$PYTHONPATH:/tmp/site"  # PYTHONPATH comes before the interpreter's own packages
    missing=$(missing)
fi
if [ -n "$missing" ]; then
    echo "missing Python packages for $py: $missing (scripts/gpu-wheels.sh makes their wheels; carry .whl)" \
        | tee -a "$summary"
    exit 3
fi

{
    date -u
    command -v nvidia-smi > /dev/null && nvidia-smi
    "$py" - <<'PY'
import platform, torch
print(f"python {platform.python_version()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
if torch.cuda.is_available():
    free, total = torch.cuda.mem_get_info()
    print(f"{torch.cuda.get_device_name()}: {free / 2**30:.1f} of {total / 2**30:.1f} GiB free; "
          f"bf16 {torch.cuda.is_bf16_supported()}")
else:
    print("no CUDA GPU: the CUDA tests skip")
PY
} > "$out/env.txt" 2>&1

# step NAME CAP LOG COMMAND...: COMMAND under min(CAP, what is left of the budget) seconds, its output
# appended to LOG; a line in summary.txt either way
step() {
    local name=$1 cap=$2 log=$3
    shift 3
    local left=$(( budget - ($(date +%s) - start) ))
    local limit=$(( cap < left ? cap : left ))
    if [ "$limit" -lt 20 ]; then
        echo "$name: skipped (${left} s of the budget left)" >> "$summary"
        return
    fi
    local t0=$(date +%s)
    timeout -k 10 "$limit" "$@" >> "$log" 2>> "${log%.*}.log"
    local rc=$? took=$(( $(date +%s) - t0 ))
    case $rc in
        0) echo "$name: ok (${took} s)" >> "$summary" ;;
        124|137) echo "$name: stopped at its time limit (${limit} s)" >> "$summary" ;;
        *) echo "$name: FAILED (exit $rc, ${took} s)" >> "$summary" ;;
    esac
}

step "test-gpu (tests/test_cuda.py)" 210 "$out/test-gpu.log" \
    "$py" -m pytest -q -ra -p no:cacheprovider --timeout 150 tests/test_cuda.py

bench=("$py" bench/gpu.py)
[ "$smoke" = 1 ] && bench+=(--device cpu --smoke)
# most wanted first: the 100x target, step time against stack size, the CNN stack, compile / graphs,
# then the whole-process timing (start-up included)
step "bench: 256 runs in one stack vs the idiomatic loop" 150 "$out/bench-gpu.md" "${bench[@]}" --only in-process
step "bench: throughput against stack size" 100 "$out/bench-gpu.md" "${bench[@]}" --only sizes --max-runs 8192
step "bench: CIFAR-shaped CNN stack" 60 "$out/bench-gpu.md" "${bench[@]}" --only cnn
step "bench: torch.compile, CUDA graph" 100 "$out/bench-gpu.md" "${bench[@]}" --only variants
step "bench: whole process" 120 "$out/bench-gpu.md" "${bench[@]}" --only whole

echo "total $(( $(date +%s) - start )) s of a ${budget} s budget" >> "$summary"
cat "$summary"
! grep -q "FAILED" "$summary"
