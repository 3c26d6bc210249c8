#!/usr/bin/env bash
# The demo: builds boxr; imports a busybox root filesystem as an image; checks, plans and builds
# examples/demo/boxr.kdl (a two-stage build), rebuilds it from the cache, runs the result; shows
# what a broken manifest reports; saves an image and loads it into a second store (the same
# Id: images are reproducible); pushes it to a local registry (Debian's docker-registry on
# loopback) and runs it from there in a third store; and brings a small stack up and down
# (examples/stack). Uses temporary stores; run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${BOXR_DEMO_NETNS:-}" ]; then
  # boxr links glibc and libseccomp statically (gcc, libc6-dev, libseccomp-dev); the demo
  # images are made from busybox-static; containers are on the bridge network by default, whose
  # rules boxr writes with nft (and the demo's network namespace is set up with ip).
  # The registry part uses Debian's docker-registry (distribution), started on loopback.
  if ! [ -e /usr/include/seccomp.h ] || ! command -v gcc >/dev/null || ! [ -x /bin/busybox ] \
    || ! command -v nft >/dev/null || ! command -v ip >/dev/null \
    || ! command -v docker-registry >/dev/null; then
    apt-get update -qq && apt-get install -y -qq gcc libc6-dev libseccomp-dev busybox-static \
      nftables iproute2 docker-registry >/dev/null
  fi
  cargo build --release --locked --quiet
  # The rest runs in a network namespace of its own: the containers' bridge, veths and rules
  # vanish with it, and the machine's network stays as it was.
  exec env BOXR_DEMO_NETNS=1 unshare -n bash "$PWD/examples/demo.sh" "$@"
fi
ip link set lo up
# release_dir: target/<host triple>/release (.cargo/config.toml names the host's target).
. benches/lib.sh
boxr=$(release_dir)/boxr
repo=$PWD
demo=examples/demo

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

work=$(mktemp -d)
registry_pid=
trap '[ -z "$registry_pid" ] || kill "$registry_pid"; rm -rf "$work"' EXIT
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/root" "$work/rootfs/tmp"
cp /bin/busybox "$work/rootfs/bin/"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$work/rootfs/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$work/rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$work/rootfs/etc/group"
export BOXR_ROOT="$work/store"

step boxr import rootfs busybox:demo
$boxr import "$work/rootfs" busybox:demo

cd $demo
step boxr check
$boxr check

step boxr plan
$boxr plan

step boxr plan --arg VERSION=0.2.0   "# only steps that use VERSION change"
$boxr plan --arg VERSION=0.2.0

step boxr build
$boxr build --progress plain

step boxr build   "# again: every step comes from the cache"
$boxr build --progress plain

step boxr build --arg VERSION=0.2.0 --explain   "# reruns exactly what VERSION changes"
$boxr build --progress plain --arg VERSION=0.2.0 --explain

step boxr run --rm app
$boxr run --rm app

step boxr run -d --name ticker busybox:demo sh -c "'while true; do date; sleep 1; done'" "# detached, under its monitor"
$boxr run -d --name ticker busybox:demo sh -c 'while true; do date; sleep 1; done'
sleep 2
step boxr ps "&&" boxr logs --tail 2 ticker "&&" boxr stop -t 1 ticker "&&" boxr rm ticker
$boxr ps
$boxr logs --tail 2 ticker
$boxr stop -t 1 ticker
$boxr rm ticker

step boxr run --rm --userns auto busybox:demo sh -c "'id -u; cat /proc/self/uid_map'" "# root inside, an unprivileged uid outside"
$boxr run --rm --userns auto busybox:demo sh -c 'id -u; cat /proc/self/uid_map'

step boxr images
$boxr images

step boxr -f broken.kdl check   "# every problem at once, exit code 1"
set +e
$boxr -f broken.kdl check
echo "exit code: $?"
set -e

step "boxr run --rm busybox:demo sh -c 'echo hello from \$(hostname), PID \$\$ under \$(cat /proc/1/comm)'"
$boxr run --rm busybox:demo sh -c 'echo hello from $(hostname), PID $$ under $(cat /proc/1/comm)'

step boxr save app -o app.tar "&&" boxr load -i app.tar "# into another store: the same Id"
$boxr save app -o "$work/app.tar"
BOXR_ROOT="$work/other-store" $boxr load -i "$work/app.tar"
BOXR_ROOT="$work/other-store" $boxr images

# A registry: Debian's docker-registry on 127.0.0.1 (inside the demo's network namespace),
# with its storage in the demo's temporary directory.
printf 'version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:5000\n' \
  "$work/registry" > "$work/registry.yml"
docker-registry serve "$work/registry.yml" 2>"$work/registry.log" &
registry_pid=$!
for _ in $(seq 1 100); do (echo > /dev/tcp/127.0.0.1/5000) 2>/dev/null && break; sleep 0.05; done
step boxr push app 127.0.0.1:5000/demo/app:1   "# prints the pushed manifest's digest"
$boxr push --progress plain app 127.0.0.1:5000/demo/app:1
step boxr run --rm 127.0.0.1:5000/demo/app:1   "# a third, empty store: pulled first, then run"
BOXR_ROOT="$work/third-store" $boxr run --rm --progress plain 127.0.0.1:5000/demo/app:1
step boxr images   "# in the third store: the same Id as the image built above"
BOXR_ROOT="$work/third-store" $boxr images

# A stack: examples/stack/boxr.kdl (a database stand-in with a health check, a web service that
# waits for it, a worker that calls the web service by name).
cd "$repo/examples/stack"
step boxr up -d --wait   "# builds the web image, makes the network, starts each service when its conditions hold"
$boxr up -d --wait --progress plain
step boxr stack ps
$boxr stack ps
step wget -qO- http://127.0.0.1:8080/cgi-bin/status   "# the published port, from the host"
busybox wget -qO- http://127.0.0.1:8080/cgi-bin/status
sleep 2
step boxr stack logs worker   "# the worker reached web by its service name"
$boxr stack logs worker
step boxr up -d   "# again: nothing changed, nothing recreated"
$boxr up -d --progress plain
step boxr down   "# dependents first; nothing of the stack is left"
$boxr down
