#!/usr/bin/env bash
# Detached containers (issue 7): how long `boxr run -d IMG true` takes to return, beside a
# foreground `boxr run --rm IMG true` in the same hyperfine run (target: at most 1.5x), and
# `boxr ps` with 100 running containers (target: under 20 ms). Needs root.
# usage: benches/lifecycle.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-100}
. benches/lib.sh
setup hyperfine python3
work=$(mktemp -d /var/tmp/boxr-lifecycle-bench.XXXXXX)
export BOXR_ROOT=$work/store
cleanup() {
  ids=$("$boxr" ps -aq 2>/dev/null || true)
  [ -z "$ids" ] || "$boxr" rm -f $ids >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
rootfs=$work/rootfs
busybox_rootfs "$rootfs" sh true sleep
"$boxr" import "$rootfs" bench:1 >/dev/null
remove_all='ids=$('"$boxr"' ps -aq); [ -z "$ids" ] || '"$boxr"' rm -f $ids >/dev/null'
hyperfine -N --warmup 5 --runs "$runs" --export-json "$work/start.json" \
  -n 'boxr run --rm IMG true (foreground)' "$boxr run --rm bench:1 true" \
  -n 'boxr run -d IMG true (returns)' --cleanup "sh -c '$remove_all'" "$boxr run -d bench:1 true" \
  >/dev/null
for _ in $(seq 100); do "$boxr" run -d bench:1 sleep 100000 >/dev/null; done
hyperfine -N --warmup 5 --runs "$runs" --export-json "$work/ps.json" \
  -n 'boxr ps (100 running containers)' "$boxr ps" >/dev/null
python3 - "$work/start.json" "$work/ps.json" <<'PY'
import json, statistics, sys
rows = []
for path in sys.argv[1:]:
    rows += json.load(open(path))["results"]
fg = statistics.median(rows[0]["times"])
print("| command | median | min–max | ratio to the foreground run |")
print("|---|---|---|---|")
for r in rows:
    m = statistics.median(r["times"])
    ratio = f"{m / fg:.2f}x" if r["command"].startswith("boxr run") else ""
    print(f"| {r['command']} | {m*1e3:.1f} ms | {min(r['times'])*1e3:.1f}–{max(r['times'])*1e3:.1f} ms | {ratio} |")
PY
