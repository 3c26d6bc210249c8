#!/usr/bin/env bash
# Start latency measured fairly: boxr and crun started the same way by hyperfine, in rounds that
# alternate which goes first (the times pooled).
#
# crun 1.8 refuses this machine's hybrid cgroup layout unless /sys/fs/cgroup/unified is
# unmounted in a private mount namespace. So this script runs itself, hyperfine included, in
# such a namespace, and hyperfine starts both tools directly (-N, no shell, no `unshare` for one
# of them). Both therefore see the same cgroup layout: v1 controllers only (boxr then also skips
# the hugetlb cgroup it would make in the cgroup2 mount).
#
# What each side does: `boxr run --rm --network none IMG /bin/true` makes an overlay of the
# image, the container's /etc files, a cgroup, a seccomp filter (Docker's default profile),
# capabilities, masked paths and boxr's init as PID 1, and removes it all at the end; crun's
# bundle (`crun spec`, /bin/true) has no overlay, no image, no seccomp filter and no init. A
# second crun bundle adds the seccomp filter boxr applies, so that one difference can be told
# apart.
#
# Compared: run (foreground, --rm) vs `crun run`; exec into a running container vs `crun exec`;
# a detached start to running vs `crun create` + `crun start` (both through the same one-line
# sh script, since crun needs two commands; the container is removed before each run, outside
# the measurement).
# usage: benches/start.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-200}
if [ -z "${BOXR_START_BENCH_INNER:-}" ]; then
  . benches/lib.sh
  setup hyperfine crun python3
  BOXR_START_BENCH_INNER=1 exec unshare -m --propagation private bash "$0" "$@"
fi
umount /sys/fs/cgroup/unified 2>/dev/null || true
. benches/lib.sh
boxr=$(release_dir)/boxr
work=$(mktemp -d /var/tmp/boxr-start-bench.XXXXXX)
export BOXR_ROOT=$work/store
cleanup() {
  "$boxr" rm -f bench-exec bench-d >/dev/null 2>&1 || true
  crun delete -f bench-exec >/dev/null 2>&1 || true
  crun delete -f bench-d >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
rootfs=$work/rootfs
busybox_rootfs "$rootfs" sh true sleep
mkdir -p "$rootfs/proc" "$rootfs/dev" "$rootfs/sys" "$rootfs/tmp"
"$boxr" import "$rootfs" boxr-bench:1 >/dev/null
# Three bundles on the same rootfs: /bin/true, the same with the seccomp filter boxr applies
# (Docker's default profile, turned into the OCI form for Docker's default capabilities on x86_64;
# crun compiles it on every run, as it does for any bundle with a profile), and a long sleep for
# exec and create + start.
mkdir -p "$work/true" "$work/true-seccomp" "$work/sleep"
(cd "$work/true" && crun spec)
python3 - "$work/true/config.json" "$work/sleep/config.json" "$rootfs" \
  "$work/true-seccomp/config.json" src/sandbox/seccomp-default.json <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["root"]["path"] = sys.argv[3]
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/true"]
json.dump(c, open(sys.argv[1], "w"), indent=2)
profile = json.load(open(sys.argv[5]))
# The rules boxr's filter has: those for Docker's default capabilities, which boxr gives.
caps = {"CAP_" + n for n in "CHOWN DAC_OVERRIDE FSETID FOWNER MKNOD NET_RAW SETGID SETUID SETFCAP "
        "SETPCAP NET_BIND_SERVICE SYS_CHROOT KILL AUDIT_WRITE".split()}
def applies(rule):
    inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
    if inc.get("arches") and "amd64" not in inc["arches"]:
        return False
    if not set(inc.get("caps") or []) <= caps:
        return False
    if exc.get("caps") and set(exc["caps"]) <= caps:
        return False
    return not (exc.get("arches") and "amd64" in exc["arches"])
rules = []
for r in profile["syscalls"]:
    if applies(r):
        rules.append({k: r[k] for k in ("names", "action", "errnoRet", "args") if r.get(k) is not None})
c["linux"]["seccomp"] = {
    "defaultAction": profile["defaultAction"], "defaultErrnoRet": profile["defaultErrnoRet"],
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"], "syscalls": rules}
json.dump(c, open(sys.argv[4], "w"), indent=2)
del c["linux"]["seccomp"]
c["process"]["args"] = ["/bin/sleep", "3600"]
json.dump(c, open(sys.argv[2], "w"), indent=2)
PY
cat > "$work/boxr-d.sh" <<SH
$boxr run -d --name bench-d --network none boxr-bench:1 sleep 3600 >/dev/null
SH
cat > "$work/crun-d.sh" <<SH
crun create --bundle $work/sleep bench-d && crun start bench-d
SH
cat > "$work/boxr-d-rm.sh" <<SH
$boxr rm -f bench-d >/dev/null 2>&1 || true
SH
cat > "$work/crun-d-rm.sh" <<SH
crun delete -f bench-d >/dev/null 2>&1 || true
SH
"$boxr" run -d --name bench-exec --network none boxr-bench:1 sleep 3600 >/dev/null
crun run --detach --bundle "$work/sleep" bench-exec </dev/null >/dev/null 2>&1
echo "## machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%d); $(crun --version | head -1); $(hyperfine --version)"
# hyperfine runs all the runs of one command, then all of the next: a machine that drifts (this
# one does, and a disk's state after thousands of starts does) favours one side. So the runs are
# split into rounds that alternate the order of the commands, and the times are pooled.
rounds=4
per=$(((runs + rounds - 1) / rounds))
fg=(-n "boxr run --rm" "$boxr run --rm --network none boxr-bench:1 /bin/true"
  -n "crun run" "crun run --bundle $work/true bench-run"
  -n "crun run (seccomp)" "crun run --bundle $work/true-seccomp bench-run"
  -n "boxr exec" "$boxr exec bench-exec /bin/true"
  -n "crun exec" "crun exec bench-exec /bin/true")
fg_reversed=(-n "crun exec" "crun exec bench-exec /bin/true"
  -n "boxr exec" "$boxr exec bench-exec /bin/true"
  -n "crun run (seccomp)" "crun run --bundle $work/true-seccomp bench-run"
  -n "crun run" "crun run --bundle $work/true bench-run"
  -n "boxr run --rm" "$boxr run --rm --network none boxr-bench:1 /bin/true")
bg=(--prepare "sh $work/boxr-d-rm.sh" -n "boxr run -d" "sh $work/boxr-d.sh"
  --prepare "sh $work/crun-d-rm.sh" -n "crun create + start" "sh $work/crun-d.sh")
bg_reversed=(--prepare "sh $work/crun-d-rm.sh" -n "crun create + start" "sh $work/crun-d.sh"
  --prepare "sh $work/boxr-d-rm.sh" -n "boxr run -d" "sh $work/boxr-d.sh")
for round in $(seq "$rounds"); do
  if [ $((round % 2)) = 1 ]; then set -- "${fg[@]}"; else set -- "${fg_reversed[@]}"; fi
  hyperfine -N --warmup 10 --runs "$per" --export-json "$work/run-$round.json" "$@"
  if [ $((round % 2)) = 1 ]; then set -- "${bg[@]}"; else set -- "${bg_reversed[@]}"; fi
  hyperfine -N --warmup 3 --runs "$per" --export-json "$work/detached-$round.json" "$@"
done
python3 - "$work"/run-*.json "$work"/detached-*.json <<'PY'
import json, statistics, sys
times = {}
for f in sys.argv[1:]:
    for x in json.load(open(f))["results"]:
        times.setdefault(x["command"], []).extend(x["times"])
ms = lambda v: f"{v * 1e3:.1f} ms"
pairs = [("boxr run --rm", "crun run"), ("boxr run --rm", "crun run (seccomp)"),
         ("boxr exec", "crun exec"), ("boxr run -d", "crun create + start")]
n = min(len(t) for t in times.values())
print(f"\n{n} runs of each, pooled over alternating rounds")
print("\n| boxr | median | mean | crun | median | mean | boxr/crun (median) | (mean) |")
print("|---|---|---|---|---|---|---|---|")
for b, c in pairs:
    bm, bs = statistics.median(times[b]), statistics.mean(times[b])
    cm, cs = statistics.median(times[c]), statistics.mean(times[c])
    print(f"| {b} | {ms(bm)} | {ms(bs)} | {c} | {ms(cm)} | {ms(cs)} | {bm / cm:.2f}x | {bs / cs:.2f}x |")
PY
