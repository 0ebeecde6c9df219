#!/usr/bin/env bash
# Runs the criterion micro-benchmarks of the decision engine (benches/) and keeps the
# raw output in target/bench-<date>.log; the figures go into benches/RESULTS.md.
# Usage: scripts/bench.sh [criterion filter]   (e.g. scripts/bench.sh process)
set -euo pipefail
cd "$(dirname "$0")/.."
log="target/bench-$(date +%Y%m%d-%H%M%S).log"
mkdir -p target
cargo bench --locked -p xvs-benches --benches -- --warm-up-time 1 --measurement-time 3 "$@" 2>&1 | tee "$log" | grep -E '^[a-z].*time:|^[a-z][^ ]*$|time:'
echo "full output: $log"
