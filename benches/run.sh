#!/usr/bin/env bash
# Start latency: `boxr run --rm --network none IMG /bin/true` side by side with `crun run` and
# `runc run` of a bundle on the same busybox rootfs (and podman when installed), in one
# hyperfine run. Needs root. usage: benches/run.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-200}
for tool in hyperfine crun runc; do
  command -v $tool >/dev/null || apt-get install -y -qq $tool >/dev/null
done
[ -x /bin/busybox ] || apt-get install -y -qq busybox-static >/dev/null
[ -e /usr/include/seccomp.h ] || apt-get install -y -qq libseccomp-dev >/dev/null
cargo build --release --locked --quiet
boxr=$PWD/target/release/boxr
work=$(mktemp -d /var/tmp/boxr-run-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
rootfs=$work/bundle/rootfs
mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/proc" "$rootfs/dev" "$rootfs/sys" "$rootfs/tmp"
cp /bin/busybox "$rootfs/bin/"
for a in sh true; do ln -s busybox "$rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$rootfs/etc/passwd"
export BOXR_ROOT=$work/store
$boxr import "$rootfs" bench:1 >/dev/null
# The OCI bundle: crun's default spec (new namespaces, no network), running /bin/true.
(cd "$work/bundle" && crun spec && sed -i 's/"terminal": true/"terminal": false/; s/"sh"/"\/bin\/true"/' config.json)
# On this hybrid cgroup host crun 1.8 only runs in a private mount namespace without the
# cgroup2 mount (see the issue); runc runs as is.
cat > "$work/crun.sh" <<SH
#!/bin/sh
exec unshare -m --propagation private sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; exec crun run --bundle $work/bundle bench-\$\$'
SH
cat > "$work/runc.sh" <<SH
#!/bin/sh
exec runc run --bundle $work/bundle bench-\$\$
SH
chmod +x "$work/crun.sh" "$work/runc.sh"
echo "## machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%d); $(crun --version | head -1), $(runc --version | head -1)"
hyperfine -N --warmup 20 --runs "$runs" --export-json "$work/results.json" \
  -n "boxr run" "$boxr run --rm --network none bench:1 /bin/true" \
  -n "boxr run --init=false" "$boxr run --rm --network none --init=false bench:1 /bin/true" \
  -n "crun run (bundle)" "$work/crun.sh" \
  -n "runc run (bundle)" "$work/runc.sh"
python3 - "$work/results.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
base = next(x for x in r if x["command"] == "boxr run")
print("\n| command | median | mean ± σ | min … max | boxr run / this |")
print("|---|---|---|---|---|")
for x in r:
    ms = lambda v: f"{v * 1e3:.1f} ms"
    print(f"| {x['command']} | {ms(x['median'])} | {ms(x['mean'])} ± {x['stddev'] * 1e3:.1f} | {ms(x['min'])} … {ms(x['max'])} | {base['median'] / x['median']:.2f}x |")
PY
