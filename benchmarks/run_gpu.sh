#!/usr/bin/env bash
# The GPU checks, from the repository root, one part per device call:  bash benchmarks/run_gpu.sh PART
#   rehearsal  issue 18: the real config end to end (benchmarks/gpu_workflow.py), fine-tuning shortened to 200 steps
#              so that it fits a short lease; limit 540 s.
#   kernels    issue 18: preprocessing on the device against the CPU processors (features_gpu.py --preprocess-only)
#              and MagVit compiled with and without CUDA graphs (magvit_gpu.py --compile-modes); limit ~7 min.
#   issue8     the issue-8 benchmarks (magvit_gpu.py, features_gpu.py in full); limit ~7.5 min.
# Tables printed as they go, figures as JSON (plus each log) in "$OUT" if set, else benchmarks/results/; no network.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
out="${OUT:-benchmarks/results}"
mkdir -p "$out"
failed=0

run() {  # name, time limit (s), arguments
    local name=$1 limit=$2
    shift 2
    echo "=== $name ($(date -u +%FT%TZ), limit ${limit} s)"
    # --kill-after: a compilation or a hung kernel that ignores SIGTERM is still stopped.
    timeout --kill-after=10 "$limit" python "benchmarks/$name.py" --json "$out/$name.json" "$@" 2>&1 | tee "$out/$name.log"
    local status=${PIPESTATUS[0]}
    if [ "$status" -ne 0 ]; then
        echo "=== $name FAILED (exit $status; 124 = time limit); what it measured is in $out/$name.json"
        failed=1
    fi
}

part="${1:-}"
case "$part" in
    rehearsal | kernels | issue8) ;;
    *)
        echo "usage: bash benchmarks/run_gpu.sh rehearsal|kernels|issue8" >&2
        exit 2 ;;
esac
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv 2>&1 | tee "$out/nvidia-smi.csv"
case "$part" in
    rehearsal)
        run gpu_workflow 540 --workdir /tmp/rehearsal --override '{finetune: {steps: 200}}' ;;
    kernels)
        run features_gpu 90 --device cuda --preprocess-only --budget-s 60
        run magvit_gpu 330 --device cuda --compile-modes default reduce-overhead --max-batch 8 --budget-s 280 ;;
    issue8)
        run magvit_gpu 280 --device cuda --budget-s 230
        run features_gpu 170 --device cuda --budget-s 130 ;;
esac
echo "=== done; results in $out"
exit $failed
