# Shared by the benchmark scripts, which source it from the repository's root.

# setup TOOL...: installs the tools (Debian packages of the same name) that are missing, and
# busybox-static, gcc, libc6-dev and libseccomp-dev, then builds boxr in release mode; sets $boxr.
setup() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || apt-get install -y -qq "$tool" >/dev/null
  done
  [ -x /bin/busybox ] || apt-get install -y -qq busybox-static >/dev/null
  [ -e /usr/include/seccomp.h ] && command -v gcc >/dev/null \
    || apt-get install -y -qq gcc libc6-dev libseccomp-dev >/dev/null
  cargo build --release --locked --quiet
  boxr=$(release_dir)/boxr
}

# release_dir: where `cargo build --release` puts the executables. .cargo/config.toml names the
# host's target (the executables are static), so that is target/<host triple>/release.
release_dir() {
  echo "${CARGO_TARGET_DIR:-$PWD/target}/$(rustc -vV | sed -n 's/^host: //p')/release"
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
