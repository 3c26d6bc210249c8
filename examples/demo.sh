#!/usr/bin/env bash
# The demo: builds boxr, checks and plans examples/demo/boxr.kdl, shows what a broken manifest
# reports, and shows that changing one input changes exactly the keys that depend on it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --quiet
boxr=./target/release/boxr
demo=examples/demo

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

step boxr -f $demo/boxr.kdl check
$boxr -f $demo/boxr.kdl check

step boxr -f $demo/boxr.kdl plan
$boxr -f $demo/boxr.kdl plan

step boxr -f $demo/boxr.kdl plan --arg VERSION=0.2.0   "# only steps that use VERSION change"
$boxr -f $demo/boxr.kdl plan --arg VERSION=0.2.0

step boxr -f $demo/broken.kdl check   "# every problem at once, exit code 1"
set +e
$boxr -f $demo/broken.kdl check
echo "exit code: $?"
