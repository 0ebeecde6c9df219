#!/usr/bin/env bash
# The main job (README): runs the director's decision engine over its built-in lab.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo run --release --locked -q -p xvs -- demo "$@"
