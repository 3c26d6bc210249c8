#!/usr/bin/env bash
# The demo: builds boxr, checks and plans examples/demo/boxr.kdl, shows what a broken manifest
# reports, then imports a busybox root filesystem as an image, saves it, and loads it into a
# second store (the same Id: images are reproducible). Uses temporary stores; run as root.
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
set -e

# Images: a busybox rootfs (from Debian's busybox-static) imported, saved and loaded.
if ! [ -x /bin/busybox ]; then
  apt-get update -qq && apt-get install -y -qq busybox-static >/dev/null
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc"
cp /bin/busybox "$work/rootfs/bin/"
ln -s busybox "$work/rootfs/bin/sh"
echo 'root:x:0:0:root:/root:/bin/sh' > "$work/rootfs/etc/passwd"
export BOXR_ROOT="$work/store"

step boxr import rootfs busybox:demo
$boxr import "$work/rootfs" busybox:demo

step boxr images
$boxr images

step boxr save busybox:demo -o busybox.tar "&&" boxr load -i busybox.tar "# into another store"
$boxr save busybox:demo -o "$work/busybox.tar"
BOXR_ROOT="$work/other-store" $boxr load -i "$work/busybox.tar"
BOXR_ROOT="$work/other-store" $boxr images

step "boxr run --rm busybox:demo sh -c 'echo hello from \$(hostname), PID \$\$ under \$(cat /proc/1/comm)'"
$boxr run --rm busybox:demo sh -c 'echo hello from $(hostname), PID $$ under $(cat /proc/1/comm)'
