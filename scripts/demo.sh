#!/usr/bin/env bash
# The main job (README): a network-namespace lab on this machine —
#
#   client ns ── c0 ═ ext ── director ns (xvs) ── int ═ s0 ── bridge ns ══ rs1 ns, rs2 ns
#   198.18.0.10        198.18.0.1     198.19.0.1                 198.19.0.10 / .11 :8080
#
# runs the real `xvs run -c configs/nat-web.yaml` in the director's namespace,
# sends real HTTP requests (curl) to the VIP 198.18.1.1:80, shows which real
# server (python3's http.server) answered each, stops xvs (SIGTERM: it prints its
# ipvsadm-style listing) and tears the lab down — also on error or Ctrl-C.
#
# Only lab addresses (198.18.0.0/15); nothing is routed from the root namespace.
# Needs root; without it, the offline decision-engine demo runs instead.
#   usage: scripts/demo.sh [REQUESTS]    (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
requests="${1:-20}"
scripts/setup.sh
cargo build --release --locked -q -p xvs
xvs="$PWD/target/release/xvs"

if [ "$(id -u)" -ne 0 ]; then
  echo "demo: not root, so no namespace lab (needs CAP_NET_ADMIN, CAP_BPF); running the offline engine demo" >&2
  exec "$xvs" demo
fi

lab="xvsdemo$$"
work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  for ns in cl dir sw rs1 rs2; do ip netns del "$lab-$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
on() { local ns="$lab-$1"; shift; ip netns exec "$ns" "$@"; }

for ns in cl dir sw rs1 rs2; do ip netns add "$lab-$ns"; on "$ns" ip link set lo up; done
veth() { # veth NS_A IF_A NS_B IF_B
  ip link add "$2" netns "$lab-$1" type veth peer name "$4" netns "$lab-$3"
  on "$1" ip link set "$2" up; on "$3" ip link set "$4" up
}
veth cl c0 dir ext
veth dir int sw s0
on sw ip link add br0 type bridge; on sw ip link set br0 up; on sw ip link set s0 master br0
on cl ip addr add 198.18.0.10/24 dev c0
on cl ip route add default via 198.18.0.1
on dir ip addr add 198.18.0.1/24 dev ext
on dir ip addr add 198.19.0.1/24 dev int
for i in 1 2; do
  veth "rs$i" r0 sw "s$i"; on sw ip link set "s$i" master br0
  on "rs$i" ip addr add "198.19.0.1$((i - 1))/24" dev r0
  on "rs$i" ip route add default via 198.19.0.1
  mkdir -p "$work/rs$i"; echo "rs$i" > "$work/rs$i/who"
  # `ip netns exec` execs its command, so $! is the server's own PID.
  ip netns exec "$lab-rs$i" python3 -m http.server --bind 0.0.0.0 --directory "$work/rs$i" 8080 \
    >"$work/rs$i.log" 2>&1 &
  pids+=($!)
done

echo "demo: starting xvs run -c configs/nat-web.yaml in $lab-dir"
ip netns exec "$lab-dir" "$xvs" run -c configs/nat-web.yaml >"$work/xvs.out" 2>"$work/xvs.err" &
xvs_pid=$!
pids+=("$xvs_pid")
for _ in $(seq 100); do
  grep -q "next hops resolved" "$work/xvs.err" 2>/dev/null && break
  kill -0 "$xvs_pid" 2>/dev/null || { cat "$work/xvs.out" "$work/xvs.err" >&2; exit 1; }
  sleep 0.1
done
for i in 1 2; do # the servers are up once they answer locally
  for _ in $(seq 50); do on "rs$i" curl -s -o /dev/null "http://127.0.0.1:8080/who" && break; sleep 0.1; done
done
on cl curl -s --max-time 1 -o /dev/null http://198.18.0.1:9/ || true # client ARPs for its gateway

echo "demo: $requests requests from 198.18.0.10 to http://198.18.1.1/who (VIP, rr over rs1 and rs2):"
declare -A tally=()
for n in $(seq "$requests"); do
  who="$(on cl curl -s --max-time 3 http://198.18.1.1/who || echo failed)"
  tally[$who]=$(( ${tally[$who]:-0} + 1 ))
  printf '  request %2d -> %s\n' "$n" "$who"
done
for who in "${!tally[@]}"; do echo "demo: $who answered ${tally[$who]}"; done

kill -TERM "$xvs_pid"
wait "$xvs_pid" || true
echo
cat "$work/xvs.out"
[ -z "${tally[failed]:-}" ] || { echo "demo: some requests failed" >&2; exit 1; }
