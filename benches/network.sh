#!/usr/bin/env bash
# What a bridge network costs a start: `boxr run --rm IMG /bin/true` on a bridge network vs
# `--network none`, side by side in one hyperfine run. Both run in a network namespace made for
# the benchmark (`unshare -n`, hyperfine itself inside it, so both commands start the same way),
# where boxr's bridge, veths and rules live and vanish. Needs root and nftables.
# usage: benches/network.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-100}
. benches/lib.sh
setup hyperfine nft
work=$(mktemp -d /var/tmp/boxr-net-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
busybox_rootfs "$work/rootfs" true
mkdir -p "$work/rootfs/proc" "$work/rootfs/dev" "$work/rootfs/sys" "$work/rootfs/tmp"
export BOXR_ROOT=$work/store
$boxr import "$work/rootfs" boxr-bench:1 >/dev/null
echo "## machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%d)"
unshare -n sh -c "
  ip link set lo up
  $boxr network create bench >/dev/null
  $boxr run --rm --network bench boxr-bench:1 /bin/true
  hyperfine -N --warmup 10 --runs $runs --export-json $work/results.json \
    '$boxr run --rm --network none boxr-bench:1 /bin/true' \
    '$boxr run --rm --network bench boxr-bench:1 /bin/true' >/dev/null
  $boxr network rm bench >/dev/null
"
python3 - "$work/results.json" <<'PY'
import json, sys
rs = json.load(open(sys.argv[1]))["results"]
none = rs[0]["median"]
print("| start | median | mean | vs none |")
print("|---|---|---|---|")
for r in rs:
    name = "bridge" if "bench " in r["command"] or "bench boxr" in r["command"] else "none"
    print(f"| {name} | {r['median']*1000:.1f} ms | {r['mean']*1000:.1f} ms | {r['median']/none:.2f}x |")
PY
