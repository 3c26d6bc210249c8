#!/usr/bin/env bash
# Benchmark of `boxr check` on a generated manifest with 1,000 images and 10,000 steps
# (target: under 100 ms), and of the parsers it can use on the same file.
# usage: benches/check.sh            (installs hyperfine if missing; results on stdout)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v hyperfine >/dev/null || apt-get install -y hyperfine
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
python3 benches/gen-manifest.py 1000 10 > "$out/boxr.kdl"
cargo build --release --locked --quiet
. benches/lib.sh
boxr=$(release_dir)/boxr
$boxr -f "$out/boxr.kdl" check
echo
echo "## machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%d)"
hyperfine -N --warmup 5 --runs 100 \
  "$boxr -f $out/boxr.kdl check" \
  "$boxr -f $out/boxr.kdl plan"
echo
cargo bench --locked --quiet --bench parse -- "$out/boxr.kdl"
