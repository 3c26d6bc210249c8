#!/usr/bin/env bash
# Rootless start latency: `boxr run --rm --network none IMG /bin/true` as an ordinary user vs
# the same as root, and vs rootless `podman run` of the same image, 200 runs each after warm-up.
#
# The user is `boxrtest` (made if missing, with a subordinate range, as .ci/run does). Root's
# boxr is measured by a hyperfine run as root; the user's boxr and podman by one hyperfine run as
# the user, which starts both the same way (-N: no shell). Both boxr runs have the same
# confinement (capabilities, seccomp, masked paths, init); root's also makes a cgroup, the
# rootless one cannot (none is delegated here). podman (crun, its own storage, pasta unused with
# --network none) also makes no cgroup rootless on this cgroup v1 host.
# usage: benches/rootless.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-200}
. benches/lib.sh
setup hyperfine podman runc
command -v newuidmap >/dev/null || apt-get install -y -qq uidmap >/dev/null
user=boxrtest
id "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$user"
grep -q "^$user:" /etc/subuid || usermod --add-subuids 100000-165535 "$user"
grep -q "^$user:" /etc/subgid || usermod --add-subgids 100000-165535 "$user"
work=$(mktemp -d /var/tmp/boxr-rootless-bench.XXXXXX)
chmod 755 "$work"
as_user() { runuser -u "$user" -- env HOME="$work/home" XDG_RUNTIME_DIR="$work/run" "$@"; }
cleanup() {
  [ -f "$work/run/boxr/pause.pid" ] && kill "$(cut -d' ' -f1 "$work/run/boxr/pause.pid")" 2>/dev/null
  as_user podman system migrate >/dev/null 2>&1 || true
  pkill -u "$user" -f "catatonit|podman pause" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/home" "$work/run"
chown "$user:" "$work/home" "$work/run"
chmod 700 "$work/run"
busybox_rootfs "$work/rootfs" true sh
tar -C "$work/rootfs" -cf "$work/bb.tar" .
chmod 644 "$work/bb.tar"
BOXR_ROOT=$work/root-store "$boxr" import "$work/bb.tar" bb >/dev/null
as_user "$boxr" import "$work/bb.tar" bb >/dev/null
as_user podman import --quiet "$work/bb.tar" localhost/bb >/dev/null

echo "--- root: boxr"
BOXR_ROOT=$work/root-store hyperfine -N --warmup 20 --runs "$runs" \
  --export-json "$work/root.json" \
  -n "boxr run (root)" "$boxr run --rm --network none bb /bin/true"
echo "--- rootless: boxr and podman"
as_user hyperfine -N --warmup 20 --runs "$runs" --export-json "$work/home/user.json" \
  -n "boxr run (rootless)" "$boxr run --rm --network none bb /bin/true" \
  -n "podman run (rootless)" "podman --runtime runc run --rm --network none localhost/bb /bin/true"
python3 - "$work/root.json" "$work/home/user.json" <<'PY'
import json, statistics, sys
rows = [r for f in sys.argv[1:] for r in json.load(open(f))["results"]]
ms = {r["command"]: (statistics.median(r["times"]) * 1e3, r["mean"] * 1e3) for r in rows}
root = ms["boxr run (root)"]
for name, (med, mean) in ms.items():
    print(f"{name:24} median {med:7.2f} ms  mean {mean:7.2f} ms  median vs root boxr {med / root[0]:.2f}x")
PY
