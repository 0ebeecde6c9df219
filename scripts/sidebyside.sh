#!/usr/bin/env bash
# The side-by-side forwarding benchmark (issue 4/4): builds a namespace lab
# (generator → director → sink), measures the bare AF_XDP forwarder, xvs NAT,
# xvs DR, the nftables DNAT numgen load balancer and xvs on AF_PACKET at 1k and
# 64k flows, prints one table and appends it to benches/RESULTS.md.
#   usage: scripts/sidebyside.sh [--seconds S] [--size BYTES] [--flows N,N] [--rows abcde] [--repeat N] [--flow-cache N] [--no-append]
# Needs root and 2 CPUs; run it on a quiet machine (the figures are ratios from one run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked -q -p xvs -p xvs-pktgen
exec target/release/xvs-sidebyside --xvs target/release/xvs "$@"
