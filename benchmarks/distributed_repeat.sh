#!/usr/bin/env bash
# The torchrun tests (tests/test_sync_bn.py, tests/test_distributed.py) run RUNS times in a row while
# LOAD busy loops keep the cores loaded, as pytest-xdist's other workers do under `make test`.
# Prints one line per run (exit status, seconds) and the pass count; exits 1 when any run failed.
# Usage: benchmarks/distributed_repeat.sh [RUNS (10)] [LOAD busy loops (one per core)]
set -u
cd "$(dirname "$0")/.."
runs=${1:-10}
load=${2:-$(nproc)}
python=${PYTHON:-.venv/bin/python}
log_dir=$(mktemp -d)

busy=()
stop_load() {
    for pid in "${busy[@]}"; do kill "$pid" 2>/dev/null; done
}
trap stop_load EXIT
for _ in $(seq "$load"); do
    "$python" -c "while True: pass" &
    busy+=("$!")
done

passed=0
for run in $(seq "$runs"); do
    start=$(date +%s%N)
    "$python" -m pytest tests/test_sync_bn.py tests/test_distributed.py -p no:cacheprovider -q \
        >"$log_dir/run$run.log" 2>&1
    status=$?
    tenths=$((($(date +%s%N) - start) / 100000000))
    [ "$status" -eq 0 ] && passed=$((passed + 1))
    printf 'run %2d: exit %d, %4d.%d s, %s\n' "$run" "$status" $((tenths / 10)) $((tenths % 10)) \
        "$(tail -n 1 "$log_dir/run$run.log")"
done
echo "passed $passed of $runs runs with $load busy loops on $(nproc) cores (logs: $log_dir)"
[ "$passed" -eq "$runs" ]
