#!/usr/bin/env bash
# The prepared device check for issue 12 (item 8): calibrate the lent H200, measure
# what a decode step's kernels take on it, and re-run the one-H200 fidelity rows on
# the calibrated target. About 3-4 minutes of device time; one call.
#
# Here, once, before asking for the machine (the device image has torch, onnx,
# onnxruntime, networkx, rich, matplotlib and pyyaml, but not OR-Tools or jsonschema,
# and reaches no package registry):
#
#     bash bench/gpu_session.sh prepare      # wheels into .whl/ (git-ignored), about 33 MB
#
# Then the device tool's run, with carry [".whl"] and timeout_s 480:
#
#     bash bench/gpu_session.sh run
#
# What comes back under $OUT (at most 7 files): gpu.txt, calibrate.txt, the calibrated
# target h200.calibrated.yaml, micro.txt and micro.json (bench/gpu_micro.py), fidelity.txt,
# and failures.txt when a step failed.
# Record them in BENCHMARKS.md, and the target as a dated preset with its sources.
set -uo pipefail  # no -e: each step runs even when one before it failed (`step`)
cd "$(dirname "$0")/.."

WHEELS=(ortools immutabledict "protobuf>=6.33.1,<6.34" jsonschema jsonschema-specifications
        referencing rpds-py)

prepare() {
    mkdir -p .whl
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform any -d .whl "${WHEELS[@]}"
    du -sh .whl
}

step() {  # one step, its output kept; a failed step is noted and the next still runs
    local name=$1; shift
    "$@" 2>&1 | tee "$OUT/$name.txt"
    local code=${PIPESTATUS[0]}
    [ "$code" -eq 0 ] || echo "$name: exit $code" | tee -a "$OUT/failures.txt"
}

run() {
    OUT=${OUT:-/tmp/gpu-session}
    mkdir -p "$OUT"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
    step gpu nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    step calibrate timeout 150 python3 -m partitioner calibrate --device cuda --ranks 1 \
        -o "$OUT/h200.calibrated.yaml"
    step micro timeout 120 python3 bench/gpu_micro.py --json "$OUT/micro.json"
    if [ -f "$OUT/h200.calibrated.yaml" ]; then
        step fidelity timeout 180 python3 bench/fidelity.py --gpu-target "$OUT/h200.calibrated.yaml"
    fi
}

case "${1:-}" in
    prepare) prepare ;;
    run) run ;;
    *) echo "usage: bash bench/gpu_session.sh prepare|run" >&2; exit 2 ;;
esac
