#!/usr/bin/env bash
# `boxr build` side by side with `buildah bud --layers` in one run, on the same busybox base,
# without network. Needs root. usage: benches/build.sh [RUNS]
#
#  1. a 9-step manifest and the equivalent Containerfile: no-op rebuild, cold build (--no-cache),
#     and a rebuild after one COPY source changed;
#  2. a RUN step writing 200 MB in 2,000 files: the build's time beyond the command itself,
#     against the floor `tar -c | openssl dgst -sha256` of the same data;
#  3. two independent CPU-bound branches: wall time with --jobs 2 against --jobs 1.
#
# buildah runs with runc: crun 1.8 refuses this machine's hybrid cgroup layout.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
. benches/lib.sh
setup hyperfine buildah runc openssl
work=/var/tmp/boxr-build-bench-$$  # lowercase: buildah names the pulled image after it
mkdir "$work"
cleanup() {
  buildah rmi -f localhost/bench-app localhost/bench-big localhost/bench-busybox "${img:-none}" >/dev/null 2>&1 || true
  buildah rmi --prune >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
export BOXR_ROOT=$work/store SOURCE_DATE_EPOCH=0
bud="buildah bud --runtime runc --layers --network none -q"

# The base: a busybox rootfs, imported into boxr and pulled into buildah from boxr's OCI export.
rootfs=$work/rootfs
busybox_rootfs "$rootfs" $(/bin/busybox --list | grep -vx busybox)
mkdir -p "$rootfs/tmp"
$boxr import "$rootfs" bench-busybox:latest >/dev/null
$boxr save --format oci-dir -o "$work/oci" bench-busybox:latest
img=$(buildah pull -q "oci:$work/oci")
buildah tag "$img" localhost/bench-busybox >/dev/null

ctx=$work/ctx
mkdir -p "$ctx/src" "$ctx/conf"
echo 'int main(void) { return 0; }' > "$ctx/src/main.c"
echo 'a=1' > "$ctx/conf/a.conf"
cat > "$ctx/Containerfile" <<'EOF'
FROM localhost/bench-busybox
ENV A=1
WORKDIR /app
COPY src/ /app/src/
RUN echo build > /app/built
COPY conf/ /app/conf/
RUN cat /app/conf/* > /app/all
ENV B=2
RUN ls /app > /app/listing
CMD ["cat", "/app/all"]
EOF
cat > "$ctx/boxr.kdl" <<'EOF'
image "bench-app" {
    from "bench-busybox:latest"
    env "A" "1"
    workdir "/app"
    copy "src/" to="/app/src/"
    run "echo build > /app/built"
    copy "conf/" to="/app/conf/"
    run "cat /app/conf/* > /app/all"
    env "B" "2"
    run "ls /app > /app/listing"
    cmd "cat" "/app/all"
}
EOF
cd "$ctx"
$boxr -q build >/dev/null
$bud -t bench-app . >/dev/null

echo "## machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%d); $(buildah --version), $(runc --version | head -1)"
hyperfine -N --warmup 3 --runs "$runs" --export-json "$work/noop.json" \
  -n "boxr build (no-op)" "$boxr -q build" \
  -n "buildah bud (no-op)" "$bud -t bench-app ."
hyperfine --warmup 1 --runs "$runs" --export-json "$work/cold.json" \
  -n "boxr build --no-cache" "$boxr -q build --no-cache" \
  -n "buildah bud --no-cache" "$bud --no-cache -t bench-app ."
hyperfine --warmup 1 --runs "$runs" --export-json "$work/copy.json" \
  --prepare "date +%s%N > $ctx/src/changing" \
  -n "boxr build (a COPY source changed)" "$boxr -q build" \
  -n "buildah bud (a COPY source changed)" "$bud -t bench-app ."

# 2. Two CPU-bound branches (before the disk-heavy part, whose writeback would compete).
cpu=$work/cpu
mkdir -p "$cpu"
cat > "$cpu/boxr.kdl" <<'EOF'
image "left" {
    from "bench-busybox:latest"
    run "i=0; while [ $i -lt 1500000 ]; do i=$((i+1)); done; echo left > /done"
}
image "right" {
    from "bench-busybox:latest"
    run "i=0; while [ $i -lt 1500000 ]; do i=$((i+1)); done; echo right > /done"
}
EOF
cd "$cpu"
hyperfine --runs 5 --export-json "$work/cpu.json" \
  -n "two CPU-bound branches, --jobs 1" "$boxr -q build --no-cache --jobs 1" \
  -n "two CPU-bound branches, --jobs 2" "$boxr -q build --no-cache --jobs 2"

sync
# 3. 200 MB in 2,000 files, different in every run (as a real rebuild's output is). The step
# prints how long the command itself took (the uptime clock is the same inside); the rest of
# the build is boxr's sandbox, commit and bookkeeping.
big=$work/big
mkdir -p "$big"
cat > "$big/boxr.kdl" <<'EOF'
image "bench-big" {
    from "bench-busybox:latest"
    run "a=$(cut -d' ' -f1 /proc/uptime); u=$(cat /proc/sys/kernel/random/uuid); mkdir /data; i=0; while [ $i -lt 2000 ]; do { echo $u; head -c 102400 /dev/zero; } > /data/f$i; i=$((i+1)); done; b=$(cut -d' ' -f1 /proc/uptime); echo cmd=$a,$b"
}
EOF
sed -n 's/^    run "\(.*\)"$/FROM localhost\/bench-busybox\nRUN \1/p' "$big/boxr.kdl" > "$big/Containerfile"
cd "$big"
overheads=()
for i in $(seq 5); do
  sync
  s=$(date +%s.%N)
  out=$($boxr --progress plain build --no-cache 2>&1)
  e=$(date +%s.%N)
  cmd=$(echo "$out" | sed -n 's/.*cmd=\([0-9.]*\),\([0-9.]*\).*/\1 \2/p')
  overheads+=("$(echo "$s $e $cmd" | awk '{printf "%.3f", ($2-$1)-($4-$3)}')")
done
$bud -t bench-big . >/dev/null 2>&1 || true
hyperfine --runs 3 --export-json "$work/bigbud.json" -n "buildah bud --no-cache (200 MB RUN)" "$bud --no-cache -t bench-big ."
layer=
for d in "$BOXR_ROOT"/layers/*/root; do
  if [ -d "$d/data" ]; then layer=$d; break; fi
done
hyperfine -N --warmup 1 --runs 10 --export-json "$work/floor.json" \
  -n "floor: tar -c | openssl dgst -sha256 (200 MB)" "sh -c 'tar -C $layer -c . | openssl dgst -sha256'"

python3 - "$work" "${overheads[@]}" <<'PY'
import json, statistics, sys
work, overheads = sys.argv[1], [float(x) for x in sys.argv[2:]]
load = lambda n: json.load(open(f"{work}/{n}.json"))["results"]
ms = lambda v: f"{v * 1e3:.1f} ms"
print("\n| benchmark | boxr (median) | buildah (median) | boxr / buildah | target |")
print("|---|---|---|---|---|")
for name, target in [("noop", "≤ 0.05x"), ("cold", "≤ 0.3x"), ("copy", "≤ 0.3x")]:
    b, h = load(name)
    print(f"| {name} | {ms(b['median'])} | {ms(h['median'])} | {b['median'] / h['median']:.3f}x | {target} |")
floor = load("floor")[0]["median"]
over = statistics.median(overheads)
bud = load("bigbud")[0]["median"]
print(f"\n200 MB RUN: boxr's time beyond the command {ms(over)} (runs: {', '.join(ms(o) for o in overheads)}); "
      f"floor {ms(floor)}; ratio {over / floor:.2f}x (target ≤ 1.5x); buildah's whole build {ms(bud)}")
one, two = load("cpu")
print(f"two CPU-bound branches: --jobs 1 {ms(one['median'])}, --jobs 2 {ms(two['median'])}; "
      f"ratio {two['median'] / one['median']:.2f} (target ≤ 0.6)")
PY
