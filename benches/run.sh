#!/usr/bin/env bash
# Start latency, side by side in one hyperfine run: `boxr run --rm --network none IMG /bin/true`
# vs `crun run` and `runc run` of an OCI bundle on the same rootfs vs `podman run --rm
# --network=none` of the same image; each also with memory/pids/cpu limits. Needs root.
# usage: benches/run.sh [RUNS]
#
# Host quirks (this machine's hybrid cgroup layout): crun 1.8 refuses it unless run in a private
# mount namespace with /sys/fs/cgroup/unified unmounted (so crun's figure includes that
# `unshare`); podman runs with runc for the same reason, and needs --cgroup-manager=cgroupfs
# --events-backend=file and explicit nofile/nproc ulimits.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-200}
. benches/lib.sh
setup hyperfine crun runc podman python3
work=$(mktemp -d /var/tmp/boxr-run-bench.XXXXXX)
podman_opts=(--cgroup-manager=cgroupfs --events-backend=file --runtime runc)
cleanup() {
  podman "${podman_opts[@]}" rmi -f localhost/boxr-bench:1 >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
rootfs=$work/bundle/rootfs
busybox_rootfs "$rootfs" sh true
mkdir -p "$rootfs/proc" "$rootfs/dev" "$rootfs/sys" "$rootfs/tmp"
export BOXR_ROOT=$work/store
$boxr import "$rootfs" boxr-bench:1 >/dev/null
$boxr save -o "$work/image.tar" boxr-bench:1
podman "${podman_opts[@]}" load -q -i "$work/image.tar" >/dev/null
# The OCI bundles: crun's default spec (new namespaces, no network) running /bin/true, and the
# same with the limits.
(cd "$work/bundle" && crun spec && sed -i 's/"terminal": true/"terminal": false/; s/"sh"/"\/bin\/true"/' config.json)
mkdir -p "$work/limited"
# runc refuses a symlinked rootfs: the limited bundle names the first bundle's rootfs by path.
python3 - "$work/bundle/config.json" "$work/limited/config.json" "$rootfs" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["root"]["path"] = sys.argv[3]
r = c["linux"].setdefault("resources", {})
r["memory"] = {"limit": 64 << 20}
r["pids"] = {"limit": 64}
r["cpu"] = {"quota": 100000, "period": 100000}
json.dump(c, open(sys.argv[2], "w"), indent=2)
PY
for b in bundle limited; do
  cat > "$work/crun-$b.sh" <<SH
#!/bin/sh
exec unshare -m --propagation private sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; exec crun run --bundle $work/$b bench-\$\$'
SH
  cat > "$work/runc-$b.sh" <<SH
#!/bin/sh
exec runc run --bundle $work/$b bench-\$\$
SH
  chmod +x "$work/crun-$b.sh" "$work/runc-$b.sh"
done
H=$(ulimit -Hn)
podman_run="podman ${podman_opts[*]} run --rm --network=none --ulimit nofile=$H:$H --ulimit nproc=4096:4096"
limits="--memory 64m --pids-limit 64 --cpus 1"
echo "## machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%d); $(crun --version | head -1), $(runc --version | head -1), $(podman --version)"
hyperfine -N --warmup 20 --runs "$runs" --export-json "$work/results.json" \
  -n "boxr run" "$boxr run --rm --network none boxr-bench:1 /bin/true" \
  -n "crun run (bundle)" "$work/crun-bundle.sh" \
  -n "runc run (bundle)" "$work/runc-bundle.sh" \
  -n "podman run" "$podman_run localhost/boxr-bench:1 /bin/true" \
  -n "boxr run + limits" "$boxr run --rm --network none $limits boxr-bench:1 /bin/true" \
  -n "crun run + limits" "$work/crun-limited.sh" \
  -n "runc run + limits" "$work/runc-limited.sh" \
  -n "podman run + limits" "$podman_run $limits localhost/boxr-bench:1 /bin/true"
python3 - "$work/results.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
by = {x["command"]: x for x in r}
ms = lambda v: f"{v * 1e3:.1f} ms"
print("\n| command | median | min … max | boxr / this |")
print("|---|---|---|---|")
for x in r:
    boxr = by["boxr run + limits" if "limits" in x["command"] else "boxr run"]
    print(f"| {x['command']} | {ms(x['median'])} | {ms(x['min'])} … {ms(x['max'])} | {boxr['median'] / x['median']:.2f}x |")
PY
