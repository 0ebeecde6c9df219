#!/usr/bin/env bash
# Installs what xvs needs on a fresh Debian machine (idempotent; root needed for
# packages). Today: the Rust toolchain's components used by the test command.
set -euo pipefail
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust (rustup) first" >&2
  exit 1
fi
for comp in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$comp"; then
    rustup component add "$comp"
  fi
done
