#!/usr/bin/env bash
# The cost of confinement at start: `boxr run --rm --network none IMG /bin/true` with the default
# confinement (capabilities, seccomp, devices cgroup), against the same start with
# `--security-opt seccomp=unconfined --cap-add ALL`, and with `--memory 64m --pids-limit 64
# --cpus 1` on top of the default. One hyperfine run. Needs root. usage: benches/confine.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-200}
. benches/lib.sh
setup hyperfine
work=$(mktemp -d /var/tmp/boxr-confine-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
busybox_rootfs "$rootfs" true
export BOXR_ROOT=$work/store
$boxr import "$rootfs" bench:1 >/dev/null
run="$boxr run --rm --network none"
echo "## machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%d)"
hyperfine -N --warmup 20 --runs "$runs" --export-json "$work/results.json" \
  -n "unconfined (seccomp=unconfined, cap-add ALL)" "$run --security-opt seccomp=unconfined --cap-add ALL bench:1 /bin/true" \
  -n "default confinement" "$run bench:1 /bin/true" \
  -n "default + --memory 64m --pids-limit 64 --cpus 1" "$run --memory 64m --pids-limit 64 --cpus 1 bench:1 /bin/true"
python3 - "$work/results.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
un, de, li = (x["median"] for x in r)
print("\n| start | median | vs unconfined | vs default |")
print("|---|---|---|---|")
for x in r:
    m = x["median"]
    print(f"| {x['command']} | {m * 1e3:.2f} ms | {m / un:.3f}x | {m / de:.3f}x |")
print(f"\ndefault / unconfined = {de / un:.3f} (target <= 1.2); limits add {100 * (li / de - 1):.1f}% to the default's median (target <= 20%)")
PY
