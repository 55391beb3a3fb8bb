#!/bin/bash
# Issue 28's GPU check, as one script for a lent GPU machine (an H200 here): 1024 CartPole
# seeds x 500k frames in one compiled program, replayed as CUDA graphs, judged by the
# torch-native greedy evaluation of every seed (100 episodes each). Writes
# $OUT/seeds_gpu.json (experiments/bench_seeds.py's layout) and the log beside it.
#
# That machine has torch but no torchrl, tensordict or gymnasium and no network, so they
# travel as wheels in .whl/ (ignored by git; fetched here with `pip download --no-deps
# --python-version 3.12 --platform manylinux_2_28_x86_64 ...`: torchrl 0.14.1, tensordict
# 0.14.3, pyvers, hoptorch, orjson, importlib_metadata, gymnasium 1.4.0, farama-notifications).
# If the CUDA-graph run fails, the same run without --cudagraphs follows, so a figure lands.
set -o pipefail
OUT=${OUT:-/tmp/gpu_seeds}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TORCH_LOGS=recompiles
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, torchrl, tensordict; print('torch', torch.__version__, 'torchrl',
torchrl.__version__, 'tensordict', tensordict.__version__)" 2>&1 | tail -1 | tee -a "$OUT/gpu.txt"
run() {  # $1: log name; the rest: extra bench flags
    local name=$1; shift
    timeout "${LIMIT:-330}" python3 experiments/bench_seeds.py --seeds 1024 --frames 500000 \
        --in-process --device cuda --sequential-max 0 --out "$OUT/seeds_gpu.json" "$@" \
        -- --epochs 4 --seed 5000 2>&1 | grep -v Warning | tee "$OUT/$name.log" | tail -40
}
run cudagraphs --cudagraphs || LIMIT=200 run compiled
