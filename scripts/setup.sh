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

# Privileged tests build namespace labs with iproute2 (`ip`), set veth offloads with
# ethtool, drop capabilities with util-linux's `setpriv`, and run real clients and
# servers (curl, python3's http.server); xvs itself needs nft in AF_PACKET mode.
# Install them when missing (Debian names).
missing=()
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v setpriv >/dev/null 2>&1 || missing+=(util-linux)
command -v ethtool >/dev/null 2>&1 || missing+=(ethtool)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v nft >/dev/null 2>&1 || missing+=(nftables) # AF_PACKET mode's guard table
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  else
    echo "setup: missing ${missing[*]} (install as root); privileged tests will skip or fail" >&2
  fi
fi
