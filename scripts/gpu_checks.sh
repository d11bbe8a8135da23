#!/usr/bin/env bash
# The GPU paths and benchmarks in one run, on a machine with CUDA (CI has none; a CPU-only
# machine skips the CUDA tests and has no CUDA rows). Each step has its own time limit, and its
# output lands in OUT as it goes, so a step that fails or runs out leaves the others' figures.
#
#   scripts/gpu_checks.sh OUT [DATA]
#
# OUT: folder for the log and the figures; DATA: a dataset folder from `perception collect`
# (default runs/pdata/heldout_map, the unseen map's drives of docs/perception.md, made by
#   python -m launch perception collect --scenario town_small_tour --episodes 3 --frames 40 \
#     --seed 100 --every 8 --width 320 --height 240 --out runs/pdata/heldout_map
# in a minute). PYTHON picks the interpreter (default .venv/bin/python). What it measured:
# docs/perception.md, "On a GPU", and docs/control.md, "On a GPU".
set -uo pipefail
out=${1:?usage: scripts/gpu_checks.sh OUT [DATA]}
data=${2:-runs/pdata/heldout_map}
py=${PYTHON:-.venv/bin/python}
[ -f "$data/annotations.json" ] || {
  echo "gpu_checks: no $data/annotations.json: DATA must be a dataset folder from 'perception collect' (see this script's head)" >&2
  exit 2
}
mkdir -p "$out"
log="$out/log.txt"
step() {  # step SECONDS NAME COMMAND...: run it under a limit, its output into the log
  local limit=$1 name=$2
  shift 2
  echo "== $name ($(date -u +%H:%M:%S) UTC, limit ${limit}s): $*" | tee -a "$log"
  local t0=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee -a "$log"
  echo "== $name: exit ${PIPESTATUS[0]} after $((SECONDS - t0)) s" | tee -a "$log"
}

step 30 machine bash -c "nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; \
  $py -c 'import torch; print(\"torch\", torch.__version__, \"CUDA\", torch.version.cuda, \
  \"device\", torch.cuda.get_device_name() if torch.cuda.is_available() else None)'; nproc"
# CUDA gives the CPU's answers: the batched MPC, and both detectors on rendered frames
step 150 tests "$py" -m pytest -q -rs tests/control/test_mpc_controller.py \
  tests/perception/test_shipped.py tests/launch/test_bench_mpc.py
# perception on the GPU: the same figures as on the CPU, latency at batch 1 on the GPU
for kind in cnn transformer; do
  step 90 "eval $kind" "$py" -m launch perception eval --device cuda --split all \
    --weights "perception/weights/$kind.safetensors" --data "$data" \
    --out "$out/eval_${kind}_cuda.json" --latency-frames 300
done
# the real training command on the GPU, the shipped configs to their last epoch, on 560
# training frames of drives: its progress bar gives the steps per second
tmp=${TMPDIR:-/tmp}/gpu_checks
step 90 "collect training frames" "$py" -c "from pathlib import Path
from launch.perception_commands import collect_training_data
collect_training_data(Path('$tmp/data'), 800, 0, 4)"
for kind in cnn transformer; do
  step 150 "train $kind" "$py" -m launch perception train --config "$kind" --data "$tmp/data" \
    --out "$tmp/train_$kind" --device cuda --threads 8
done
# a whole scenario with learned perception on the GPU (the stack picks CUDA when present)
step 120 "run cnn" "$py" -m launch run town_loop --perception cnn --seed 0 -q --out "$out/run_cnn"
# the batched MPC's fleets on the GPU (the CPU's are in docs/control.md; the bench builds each
# vehicle's reference in Python, which takes most of its time at 4096 vehicles)
step 300 "bench mpc" "$py" -m launch bench mpc --fleet-on cuda --batches 1,64,1024,4096 --solves 50
