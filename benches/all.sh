#!/usr/bin/env bash
# The whole side-by-side suite in one command: start latency (boxr vs crun, runc, podman, with
# and without limits), the cost of confinement, stacks (up -d of 12 services vs 12 run -d), builds (boxr vs buildah: cold, no-op, a COPY
# source changed, a 200 MB RUN step vs the tar|sha256 floor, parallel branches), layer commit
# and apply, detached container monitor memory (boxr vs conmon), and `boxr check` of a large
# manifest. Installs what it needs; needs root; CI does
# not run it. Results: benches/results/<date>.md (and on stdout).
# usage: benches/all.sh [RUNS]   (hyperfine runs for the start benchmarks; default 200)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-200}
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq crun runc podman buildah hyperfine busybox-static libseccomp-dev openssl \
  python3 >/dev/null
mkdir -p benches/results
out=benches/results/$(date -u +%Y-%m-%d).md
{
  echo "# boxr benchmarks, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB, Linux $(uname -r), $(. /etc/os-release; echo "$PRETTY_NAME"); boxr $(git rev-parse --short HEAD)"
  echo
  echo "## Start latency (benches/run.sh)"
  benches/run.sh "$runs" 2>&1 | sed -n '/^| command/,$p'
  echo
  echo "## Start latency, measured fairly (benches/start.sh)"
  benches/start.sh "$runs" 2>&1 | sed -n '/^| boxr/,$p'
  echo
  echo "## The cost of confinement (benches/confine.sh)"
  benches/confine.sh "$runs" 2>&1 | sed -n '/^| start/,$p'
  echo
  echo "## Builds against buildah (benches/build.sh)"
  benches/build.sh 20 2>&1 | sed -n '/^| benchmark/,$p'
  echo
  echo "## Detached containers: run -d and ps (benches/lifecycle.sh)"
  benches/lifecycle.sh 100 2>&1 | sed -n '/^| command/,$p'
  echo
  echo "## Stacks: up and down of 12 services (benches/stack.sh)"
  benches/stack.sh 20 2>&1 | sed -n '/^| command/,$p'
  echo
  echo "## Registries: push and pull of a 200 MB, 20-layer image (benches/registry.sh)"
  benches/registry.sh 10 2>&1 | sed -n '/^| command/,$p'
  echo
  echo "## Detached container monitor memory (benches/monitor.sh)"
  benches/monitor.sh 10 2>&1 | sed -n '/^| monitor/,$p'
  echo
  echo "## Layer commit and apply (benches/layer.sh)"
  benches/layer.sh 2>&1 | tail -8
  echo
  echo "## boxr check of a 1,000-image manifest (benches/check.sh)"
  benches/check.sh 2>&1 | grep -E "^Benchmark|Time \(mean|^\||KB$"
} | tee "$out"
echo "results: $out"
