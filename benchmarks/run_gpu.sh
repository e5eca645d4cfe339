#!/usr/bin/env bash
# The one script a session with a GPU runs, from the repository root:  bash benchmarks/run_gpu.sh
# Both GPU benchmarks (benchmarks/README.md), tables printed as they go, figures as JSON (plus each log) in "$OUT" if
# set, else benchmarks/results/. Time limits: ~4.5 + ~2.5 min, under 8 min in all; no network needed.
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

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv 2>&1 | tee "$out/nvidia-smi.csv"
run magvit_gpu 280 --device cuda --budget-s 230
run features_gpu 170 --device cuda --budget-s 130
echo "=== done; results in $out"
exit $failed
