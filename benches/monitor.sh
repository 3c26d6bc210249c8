#!/usr/bin/env bash
# What stays resident beside a detached container: boxr's monitor (`boxr run -d`) vs podman's
# conmon (`podman run -d`, runc), each holding a `sleep` container of the same busybox image.
# For each tool, N containers are started; the table gives the median and range of the
# monitor's VmRSS, Pss (shared pages divided among their users) and private memory, read from
# /proc/PID/status and smaps_rollup once the containers run. Needs root.
# usage: benches/monitor.sh [N]
#
# Host quirks: podman runs with runc (crun 1.8 refuses this hybrid cgroup layout) and needs
# --cgroup-manager=cgroupfs --events-backend=file and explicit nofile/nproc ulimits.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10}
. benches/lib.sh
setup podman runc python3
work=$(mktemp -d /var/tmp/boxr-monitor-bench.XXXXXX)
podman_opts=(--cgroup-manager=cgroupfs --events-backend=file --runtime runc)
h=$(ulimit -Hn)
boxr_ids=()
podman_ids=()
cleanup() {
  [ ${#boxr_ids[@]} -eq 0 ] || "$boxr" rm -f "${boxr_ids[@]}" >/dev/null 2>&1 || true
  [ ${#podman_ids[@]} -eq 0 ] || podman "${podman_opts[@]}" rm -f -t 0 "${podman_ids[@]}" >/dev/null 2>&1 || true
  podman "${podman_opts[@]}" rmi -f localhost/boxr-bench-monitor:1 >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
rootfs=$work/rootfs
busybox_rootfs "$rootfs" sh sleep
export BOXR_ROOT=$work/store
"$boxr" import "$rootfs" boxr-bench-monitor:1 >/dev/null
"$boxr" save -o "$work/image.tar" boxr-bench-monitor:1
podman "${podman_opts[@]}" load -q -i "$work/image.tar" >/dev/null

boxr_pids=()
podman_pids=()
for _ in $(seq "$n"); do
  id=$("$boxr" run -d boxr-bench-monitor:1 sleep 100000)
  boxr_ids+=("$id")
  boxr_pids+=("$("$boxr" inspect "$id" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["State"]["MonitorPid"])')")
  id=$(podman "${podman_opts[@]}" run -d --network=none --ulimit "nofile=$h:$h" \
    --ulimit nproc=4096:4096 localhost/boxr-bench-monitor:1 sleep 100000)
  podman_ids+=("$id")
  podman_pids+=("$(pgrep -f "conmon .*$id" | head -1)")
done
sleep 1
python3 - "${boxr_pids[*]}" "${podman_pids[*]}" "$(conmon --version | head -1)" <<'PY'
import statistics, sys

def kb(pid, path, key):
    for line in open(f"/proc/{pid}/{path}"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0

def row(name, pids):
    pids = [int(p) for p in pids.split()]
    cols = []
    for path, key in (("status", "VmRSS"), ("smaps_rollup", "Pss"), ("status", "RssAnon")):
        v = [kb(p, path, key) / 1024 for p in pids]
        cols.append((statistics.median(v), min(v), max(v)))
    return name, cols

rows = [row("boxr-monitor", sys.argv[1]), row(f"conmon ({sys.argv[3]})", sys.argv[2])]
print("| monitor | VmRSS MiB, median (min–max) | Pss MiB | private (RssAnon) MiB | boxr's VmRSS ratio |")
print("|---|---|---|---|---|")
base = rows[0][1][0][0]
for name, cols in rows:
    cells = [f"{m:.2f} ({lo:.2f}–{hi:.2f})" for m, lo, hi in cols]
    print(f"| {name} | " + " | ".join(cells) + f" | {base / cols[0][0]:.2f}x |")
PY
