#!/usr/bin/env bash
# The project's test command (README "Tests"; CI's .ci/run calls exactly this).
# Installs what the tests need on a fresh Debian machine, then runs formatting,
# lints and the whole test suite (unit, property, fixture and bench smoke tests).
set -euo pipefail
cd "$(dirname "$0")/.."

# Privileged tests (network namespaces, XDP) skip with a reason when not root;
# CI sets XVS_REQUIRE_PRIVILEGED=1 so that such a skip fails instead.
export XVS_REQUIRE_PRIVILEGED="${XVS_REQUIRE_PRIVILEGED:-0}"
# Benches run once in test mode; keep their table sizes small there.
export XVS_BENCH_QUICK=1

scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test (workspace, all targets; benches run once in test mode)"
cargo test --workspace --all-targets --locked
echo "== doc tests"
cargo test --workspace --doc --locked
