#!/usr/bin/env bash
# Commit and apply of a 200 MB layer in 2,000 files of random data, side by side with
# `tar -c | openssl dgst -sha256` and `tar -x` (see benches/layer.rs). Needs root (apply sets
# owners). usage: benches/layer.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v openssl >/dev/null || apt-get install -y openssl
work=$(mktemp -d /var/tmp/boxr-layer-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/data"
for d in $(seq 0 19); do
  mkdir -p "$work/data/d$d"
  for f in $(seq 0 99); do
    head -c 100000 /dev/urandom > "$work/data/d$d/f$f"
  done
done
echo "## machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%d); openssl $(openssl version | cut -d' ' -f2), $(tar --version | head -1)"
cargo bench --locked --quiet --bench layer -- "$work" "${1:-10}"
