#!/usr/bin/env bash
# TCP throughput through boxr's networks, each path side by side with the one it is compared
# to, in one run (iperf3, 3 seconds per path, one stream; 5 runs of each path of a pair,
# alternating with the other's, and the medians):
#
#   bridge:   container -> container on one bridge network  vs  a bare veth pair between two
#             network namespaces
#   DNAT:     another host -> a published port (DNAT)       vs  another host -> this host
#   proxy:    this host -> 127.0.0.1:published port (proxy) vs  this host -> the container
#
# The iperf3 ends run on the host inside the containers' network namespaces (nsenter --net on
# the namespace boxr keeps for each), so what is measured is the network path, not the image.
# Everything runs in a network namespace made for the benchmark (`unshare -n`), with "another
# host" a second namespace on a veth pair. Needs root, nftables and iperf3.
# usage: benches/network-throughput.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
setup hyperfine nft iperf3
work=$(mktemp -d /var/tmp/boxr-tput-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
busybox_rootfs "$work/rootfs" sleep
mkdir -p "$work/rootfs/proc" "$work/rootfs/dev" "$work/rootfs/sys" "$work/rootfs/tmp"
export BOXR_ROOT=$work/store
$boxr import "$work/rootfs" boxr-bench:1 >/dev/null
echo "## machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%d)"
unshare -n bash -s "$boxr" "$work" <<'EOF'
set -euo pipefail
boxr=$1 work=$2
far=boxr-tput-far-$$ a=boxr-tput-a-$$ b=boxr-tput-b-$$
cleanup() {
  $boxr rm -f srv cli >/dev/null 2>&1 || true
  $boxr network rm tput >/dev/null 2>&1 || true
  for n in $far $a $b; do ip netns del $n 2>/dev/null || true; done
}
trap cleanup EXIT
ip link set lo up
# Another host, at 198.51.100.2, routing by this namespace (198.51.100.1).
ip netns add $far
ip link add bxt0 type veth peer name bxt1 netns $far
ip addr add 198.51.100.1/24 dev bxt0 && ip link set bxt0 up
ip -n $far addr add 198.51.100.2/24 dev bxt1 && ip -n $far link set bxt1 up && ip -n $far link set lo up
# A bare veth pair between two namespaces.
ip netns add $a && ip netns add $b
ip link add bxv0 netns $a type veth peer name bxv1 netns $b
ip -n $a addr add 10.99.0.1/24 dev bxv0 && ip -n $a link set bxv0 up
ip -n $b addr add 10.99.0.2/24 dev bxv1 && ip -n $b link set bxv1 up
$boxr network create tput >/dev/null
$boxr run -d --name srv --network tput -p 5201:5201 boxr-bench:1 sleep 3600 >/dev/null
$boxr run -d --name cli --network tput boxr-bench:1 sleep 3600 >/dev/null
srv_ns=$BOXR_ROOT/containers/$($boxr inspect -f '{{.Id}}' srv)/netns
cli_ns=$BOXR_ROOT/containers/$($boxr inspect -f '{{.Id}}' cli)/netns
srv_ip=$($boxr inspect -f '{{.NetworkSettings.IPAddress}}' srv)
# once SERVER CLIENT HOST PORT: the Gbit/s of one run of a one-shot iperf3 server (run by the
# SERVER command prefix) and a 3-second client to HOST:PORT (run by CLIENT).
once() {
  local server=$1 client=$2 host=$3 port=$4
  $server iperf3 -s -D -1 -p "$port" >/dev/null
  sleep 0.2
  $client iperf3 -c "$host" -p "$port" -t 3 -J |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9)'
}
# pair NAME A_SERVER A_CLIENT A_HOST A_PORT B_SERVER B_CLIENT B_HOST B_PORT: 5 runs of each path,
# alternating (A, B, A, B, ...) so that a slow spell of the machine hits both; the medians.
pair() {
  local name=$1 i a=() b=()
  shift
  for i in 1 2 3 4 5; do
    a+=("$(once "$1" "$2" "$3" "$4")")
    b+=("$(once "$5" "$6" "$7" "$8")")
  done
  row "$name" "$(printf '%s\n' "${a[@]}" | sort -n | sed -n 3p)" "$(printf '%s\n' "${b[@]}" | sort -n | sed -n 3p)"
}
row() {
  python3 -c "import sys; a,b=float(sys.argv[2]),float(sys.argv[3]); print(f'| {sys.argv[1]} | {a:.2f} Gbit/s | {b:.2f} Gbit/s | {a/b:.2f}x |')" "$@"
}
srv="nsenter --net=$srv_ns" cli="nsenter --net=$cli_ns" farx="ip netns exec $far"
echo "| path | boxr | compared to | ratio |"
echo "|---|---|---|---|"
pair "container -> container on a bridge, vs a bare veth pair" \
  "$srv" "$cli" "$srv_ip" 5201 "ip netns exec $b" "ip netns exec $a" 10.99.0.2 5201
pair "other host -> published port (DNAT), vs other host -> this host" \
  "$srv" "$farx" 198.51.100.1 5201 env "$farx" 198.51.100.1 5301
pair "this host -> 127.0.0.1:published port (proxy), vs this host -> the container" \
  "$srv" env 127.0.0.1 5201 "$srv" env "$srv_ip" 5201
EOF
