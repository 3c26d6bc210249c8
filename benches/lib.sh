# Shared by the benchmark scripts, which source it from the repository's root.

# setup TOOL...: installs the tools (Debian packages of the same name) that are missing, and
# busybox-static and libseccomp-dev, then builds boxr in release mode; sets $boxr.
setup() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || apt-get install -y -qq "$tool" >/dev/null
  done
  [ -x /bin/busybox ] || apt-get install -y -qq busybox-static >/dev/null
  [ -e /usr/include/seccomp.h ] || apt-get install -y -qq libseccomp-dev >/dev/null
  cargo build --release --locked --quiet
  boxr=$PWD/target/release/boxr
}

# busybox_rootfs DIR APPLET...: a rootfs of the static busybox with these applets and root's
# passwd line.
busybox_rootfs() {
  local dir=$1 a
  shift
  mkdir -p "$dir/bin" "$dir/etc"
  cp /bin/busybox "$dir/bin/"
  for a in "$@"; do ln -sf busybox "$dir/bin/$a"; done
  echo 'root:x:0:0:root:/root:/bin/sh' > "$dir/etc/passwd"
}
