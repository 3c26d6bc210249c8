#!/usr/bin/env bash
# `boxr up -d` of 12 services whose image is built, vs starting the same 12 containers one by
# one with `boxr run -d` (on the project's network, as up puts them); `down` of them; and an
# `up -d` with nothing changed. All in one hyperfine run per figure, inside a network
# namespace made for the benchmark (hyperfine itself inside it, so every command starts the
# same way). Both sides go through hyperfine's shell: the one-by-one side is a loop. Needs root.
# usage: benches/stack.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
. benches/lib.sh
setup hyperfine nft
work=$(mktemp -d /var/tmp/boxr-stack-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bench"
busybox_rootfs "$work/bench/rootfs" sleep sh
{
  printf 'image "base" {\n    from "dir:rootfs"\n}\n'
  for i in $(seq 1 12); do
    printf 'service "s%s" {\n    image "base"\n    command "sleep" "1000"\n}\n' "$i"
  done
} > "$work/bench/boxr.kdl"
export BOXR_ROOT=$work/store
m=$work/bench/boxr.kdl
$boxr -q -f "$m" build >/dev/null
one_by_one="for i in \$(seq 1 12); do $boxr run -d --network bench_default --name bench-s\$i-1 base:latest sleep 1000 >/dev/null; done"
rm_all="$boxr rm -f \$($boxr ps -aq) >/dev/null 2>&1 || true"
echo "## machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%d)"
unshare -n sh -c "
  set -e
  ip link set lo up
  $boxr -q -f $m up -d -p bench
  $boxr -q -f $m down -p bench
  $boxr network create bench_default >/dev/null
  hyperfine --warmup 2 --runs $runs --export-json $work/start.json \
    --prepare '$rm_all' \
    -n 'up -d (12 services)' '$boxr -q -f $m up -d -p bench' \
    -n 'run -d x12, one by one' '$one_by_one' >/dev/null
  $rm_all
  hyperfine --warmup 1 --runs $runs --export-json $work/down.json \
    --prepare '$boxr -q -f $m up -d -p bench' \
    -n 'down (12 services)' '$boxr -q -f $m down -p bench' >/dev/null
  $boxr -q -f $m up -d -p bench
  hyperfine --warmup 2 --runs $runs --export-json $work/noop.json \
    -n 'up -d, nothing changed' '$boxr -q -f $m up -d -p bench' >/dev/null
  $boxr -q -f $m down -p bench
"
python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
start = json.load(open(f"{w}/start.json"))["results"]
rows = start + json.load(open(f"{w}/down.json"))["results"] + json.load(open(f"{w}/noop.json"))["results"]
base = start[1]["median"]
print("| command | median | mean | vs one by one |")
print("|---|---|---|---|")
for r in rows:
    ratio = f"{r['median']/base:.2f}x" if r in start else ""
    print(f"| {r['command']} | {r['median']*1000:.0f} ms | {r['mean']*1000:.0f} ms | {ratio} |")
PY
