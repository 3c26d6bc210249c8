#!/usr/bin/env bash
# Push and pull of a 200 MB, 20-layer image to and from a local registry (Debian's
# docker-registry, in a network namespace made for the benchmark, hyperfine inside it so both
# tools start the same way) vs `skopeo copy` of the same image; and a re-pull of an image the
# store has. One hyperfine run per figure. Needs root.
#
# The image: 20 layers of 10 MiB of random bytes (incompressible, as most image content is once
# compressed). Push: `boxr push` of the pulled image (its gzip blobs as stored) vs `skopeo copy`
# from an OCI layout holding the same blobs, each run to a repository of its own (so nothing is
# skipped); both through the same small script that numbers the run. skopeo's blob-info cache
# is removed before each run: with it, skopeo mounts the blobs it pushed before instead of
# sending them (boxr mounts only from repositories it pulled the image from). The source was pulled under
# another registry name (127.0.0.2), so boxr mounts no blob across repositories. Pull: `boxr
# pull` into an empty store vs `skopeo copy` to an OCI layout directory (both download and
# verify every blob; boxr unpacks layers later, when the image is first used).
# usage: benches/registry.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
. benches/lib.sh
setup hyperfine skopeo
command -v docker-registry >/dev/null || apt-get install -y -qq docker-registry >/dev/null
work=$(mktemp -d /var/tmp/boxr-registry-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bench"
busybox_rootfs "$work/bench/rootfs" sh
{
  printf 'image "big" {\n    from "dir:rootfs"\n'
  for i in $(seq 1 20); do
    mkdir -p "$work/bench/l$i"
    head -c 10485760 /dev/urandom > "$work/bench/l$i/data"
    printf '    copy "l%s/" to="/l%s/"\n' "$i" "$i"
  done
  printf '}\n'
} > "$work/bench/boxr.kdl"
export BOXR_ROOT=$work/store
$boxr -q -f "$work/bench/boxr.kdl" build >/dev/null
cat > "$work/registry.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: :5000
EOF
echo 0 > "$work/n"
# push.sh TOOL: one push to a repository of its own.
cat > "$work/push.sh" <<'EOF'
n=$(( $(cat "$W/n") + 1 )); echo "$n" > "$W/n"
case $1 in
  boxr) BOXR_ROOT=$W/pushstore exec "$BOXR" -q push 127.0.0.2:5000/src/big:1 "127.0.0.1:5000/b$n/big:1" >/dev/null ;;
  skopeo) exec skopeo copy -q --dest-tls-verify=false "oci:$W/oci" "docker://127.0.0.1:5000/s$n/big:1" ;;
esac
EOF
export W=$work BOXR=$boxr
echo "## machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%d)"
echo "## boxr registry jobs: ${BOXR_REGISTRY_JOBS:-6}; skopeo $(skopeo --version | awk '{print $3}')"
unshare -n bash -c '
  set -e
  ip link set lo up
  docker-registry serve "$W/registry.yml" 2>"$W/registry.log" &
  reg=$!
  trap "kill $reg" EXIT
  for i in $(seq 1 100); do (echo > /dev/tcp/127.0.0.1/5000) 2>/dev/null && break; sleep 0.05; done
  "$BOXR" -q push big:latest 127.0.0.1:5000/src/big:1 >/dev/null
  BOXR_ROOT=$W/pushstore "$BOXR" -q pull 127.0.0.2:5000/src/big:1 >/dev/null
  BOXR_ROOT=$W/pushstore "$BOXR" -q save 127.0.0.2:5000/src/big:1 --format oci-dir -o "$W/oci"
  hyperfine --warmup 1 --runs '"$runs"' --export-json "$W/push.json" \
    --prepare "rm -f /var/lib/containers/cache/blob-info-cache-v1.*" \
    -n "boxr push" "sh $W/push.sh boxr" \
    -n "skopeo copy (oci dir to registry)" "sh $W/push.sh skopeo" >/dev/null
  hyperfine --warmup 1 --runs '"$runs"' --export-json "$W/pull.json" \
    --prepare "rm -rf $W/pullstore $W/ocipull" \
    -n "boxr pull" "BOXR_ROOT=$W/pullstore $BOXR -q pull 127.0.0.1:5000/src/big:1" \
    -n "skopeo copy (registry to oci dir)" "skopeo copy -q --src-tls-verify=false docker://127.0.0.1:5000/src/big:1 oci:$W/ocipull" >/dev/null
  BOXR_ROOT=$W/pullstore "$BOXR" -q pull 127.0.0.1:5000/src/big:1 >/dev/null
  hyperfine --warmup 3 --runs 30 -N --export-json "$W/repull.json" \
    -n "boxr pull (image present)" "env BOXR_ROOT=$W/pullstore $BOXR -q pull 127.0.0.1:5000/src/big:1" >/dev/null
'
python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
print("| command | median | mean | vs skopeo |")
print("|---|---|---|---|")
for name in ["push", "pull", "repull"]:
    rows = json.load(open(f"{w}/{name}.json"))["results"]
    for r in rows:
        ratio = f"{r['median']/rows[1]['median']:.2f}x" if len(rows) > 1 else ""
        print(f"| {r['command']} | {r['median']*1000:.0f} ms | {r['mean']*1000:.0f} ms | {ratio} |")
PY
