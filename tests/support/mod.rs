//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether privileged tests can run. Without root they skip with a printed reason, unless
/// `BOXR_REQUIRE_PRIVILEGED` is set (CI sets it), in which case skipping is a failure.
///
/// A privileged test then runs in a network namespace of its own (its thread moves into a new
/// one, with `lo` up, and what it starts inherits it): containers are on the bridge network by
/// default, and boxr's bridges, veths and nftables rules must never be made in the machine's
/// own namespace. They vanish with the namespace when the test's processes are gone.
pub fn privileged(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        own_netns();
        return true;
    }
    skip(
        test,
        "needs root (real overlay mounts, mknod, trusted xattrs)",
    )
}

/// Moves the calling thread into a new network namespace with `lo` up, once per thread.
pub fn own_netns() {
    thread_local! {
        static ENTERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if ENTERED.with(|e| e.replace(true)) {
        return;
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare -n");
    let up = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(up, "ip link set lo up (apt-get install iproute2)");
}

/// Skips `test` because of `why` (returns false, for `if !... { return; }`), by one rule for
/// every test: a failure when `BOXR_REQUIRE_PRIVILEGED` is set (CI), else a printed reason and a
/// line in the file `BOXR_SKIP_LOG` names (if set), so a summary counts it as skipped rather
/// than passed (libtest has no run-time skip).
pub fn skip(test: &str, why: &str) -> bool {
    if std::env::var_os("BOXR_REQUIRE_PRIVILEGED").is_some() {
        panic!("{test} cannot run here ({why}), and BOXR_REQUIRE_PRIVILEGED forbids skipping it");
    }
    eprintln!("skipping {test}: {why}");
    if let Some(log) = std::env::var_os("BOXR_SKIP_LOG")
        && let Ok(mut f) = std::fs::File::options().create(true).append(true).open(log)
    {
        use std::io::Write;
        let _ = writeln!(f, "{test}");
    }
    false
}

/// A read-only or read-write overlay mount, unmounted when dropped.
pub struct Overlay {
    pub target: PathBuf,
}

impl Overlay {
    /// Mounts `lowers` (topmost first) with an optional upper/work pair at `target`, with the
    /// options boxr uses (no redirect_dir, metacopy or index, so the upper dir is a full diff).
    pub fn mount(lowers: &[&Path], upper: Option<(&Path, &Path)>, target: &Path) -> Overlay {
        let lower: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
        let mut opts = format!(
            "lowerdir={},redirect_dir=off,metacopy=off,index=off",
            lower.join(":")
        );
        if let Some((u, w)) = upper {
            opts.push_str(&format!(
                ",upperdir={},workdir={}",
                u.display(),
                w.display()
            ));
        }
        let status = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(target)
            .status()
            .unwrap();
        assert!(status.success(), "mount overlay {opts}");
        Overlay {
            target: target.to_owned(),
        }
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.target).status();
    }
}

/// Runs a shell command, asserting success.
pub fn sh(cmd: &str) {
    let status = Command::new("sh").arg("-c").arg(cmd).status().unwrap();
    assert!(status.success(), "{cmd}");
}

/// `find DIR` listing with types, for comparing trees: one `TYPE PATH` line per entry.
pub fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(dir).min_depth(1).sort_by_file_name() {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
        let ft = e.file_type();
        let kind = if ft.is_dir() {
            "d"
        } else if ft.is_symlink() {
            "l"
        } else if ft.is_file() {
            "f"
        } else {
            "o"
        };
        let extra = if ft.is_file() {
            format!(
                " {}",
                std::fs::read_to_string(e.path()).unwrap_or_default().trim()
            )
        } else if ft.is_symlink() {
            format!(" -> {}", std::fs::read_link(e.path()).unwrap().display())
        } else {
            String::new()
        };
        out.push(format!("{kind} {rel}{extra}"));
    }
    out
}

/// A small busybox root filesystem built from the host's busybox-static (installed by
/// .ci/run), in `dir`: /bin/busybox, /bin/sh, /etc/passwd, /tmp.
pub fn busybox_rootfs(dir: &Path) -> PathBuf {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .expect("busybox-static is installed (apt-get install busybox-static)");
    let root = dir.join("rootfs");
    for d in ["bin", "etc", "tmp", "root"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    // Every applet as a symlink, as a busybox image has them.
    let list = Command::new(busybox).arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" && !applet.is_empty() {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
        }
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    root
}

/// Runs boxr with a store root, returning (exit code, stdout, stderr).
pub fn boxr(store: &Path, args: &[&str]) -> (i32, String, String) {
    boxr_in(store, Path::new("."), args)
}

pub fn boxr_in(store: &Path, cwd: &Path, args: &[&str]) -> (i32, String, String) {
    boxr_env(store, cwd, &[], args)
}

/// [`boxr_in`] with more environment variables (for boxr and what it starts).
pub fn boxr_env(
    store: &Path,
    cwd: &Path,
    env: &[(&str, &str)],
    args: &[&str],
) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_boxr"))
        .envs(env.iter().copied())
        .current_dir(cwd)
        .args(["--progress", "plain"])
        .args(args)
        .env("BOXR_ROOT", store)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every blob's content hashes to its name, and every layer dir is complete.
pub fn assert_store_consistent(store: &Path) {
    use sha2::Digest;
    for e in std::fs::read_dir(store.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        let bytes = std::fs::read(e.path()).unwrap();
        let hex = hex::encode(sha2::Sha256::digest(&bytes));
        assert_eq!(
            e.file_name().to_str().unwrap(),
            hex,
            "a blob under a wrong name"
        );
    }
    for e in std::fs::read_dir(store.join("layers")).unwrap() {
        let e = e.unwrap();
        assert!(
            e.path().join("layer.json").is_file(),
            "incomplete layer {:?}",
            e.path()
        );
        assert!(
            e.path().join("root").is_dir(),
            "incomplete layer {:?}",
            e.path()
        );
    }
}

/// Whether an external tool is installed. Missing tools skip the test with a printed reason,
/// unless BOXR_REQUIRE_PRIVILEGED is set (CI installs them).
pub fn have_tool(test: &str, tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    found
        || skip(
            test,
            &format!("{tool} is not installed (.ci/run installs it)"),
        )
}

/// Adds an image made of `layers` (directories in overlay format, bottom first) to the store at
/// `store`, tagged `name`, through the library (no build command exists yet).
pub fn put_layered_image(store: &Path, layers: &[&Path], name: &str) {
    use boxr::oci::{self, Descriptor, History, ImageConfig};
    use boxr::store::{Access, Store};
    let st = Store::open(store, Access::Shared).unwrap();
    let metas: Vec<_> = layers
        .iter()
        .map(|l| st.add_layer_from_dir(l, 0).unwrap())
        .collect();
    let mut config = ImageConfig::linux(
        metas.iter().map(|m| m.diff_id).collect(),
        Some(boxr::time::rfc3339(0)),
    );
    config.history = vec![History::default(); metas.len()];
    let descs = metas
        .iter()
        .map(|m| Descriptor::new(oci::MEDIA_LAYER, m.diff_id, m.size))
        .collect();
    let img = st.put_image(&config, descs).unwrap();
    st.set_ref(name, img.manifest_digest).unwrap();
}

/// `boxr inspect NAME`, which must succeed: the image's JSON object.
pub fn inspect_image(store: &Path, name: &str) -> serde_json::Value {
    let (c, out, err) = boxr(store, &["inspect", name]);
    assert_eq!(c, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0].clone()
}

/// Runs boxr on a fresh pty (33 rows, 91 columns); once its output contains `ready_marker`
/// (so the container is up and the terminal is in raw mode), or with an empty marker once the
/// terminal is in raw mode, writes `input`. Returns (exit
/// code, everything it printed).
pub fn on_pty(
    store: &Path,
    args: &[&str],
    ready_marker: &str,
    input: &[u8],
) -> (Option<i32>, String) {
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};
    let ws = nix::pty::Winsize {
        ws_row: 33,
        ws_col: 91,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&ws), None).unwrap();
    // Not inherited by what other tests spawn meanwhile (a detached container's monitor would
    // keep the terminal open, and its reader would never see the end).
    for fd in [&pty.master, &pty.slave] {
        nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .unwrap();
    }
    let slave = std::fs::File::from(pty.slave);
    let mut child = Command::new(env!("CARGO_BIN_EXE_boxr"))
        .args(args)
        .env("BOXR_ROOT", store)
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave)
        .spawn()
        .unwrap();
    let mut master = std::fs::File::from(pty.master);
    let mut reader = master.try_clone().unwrap();
    let out = Arc::new(Mutex::new(Vec::new()));
    let sink = out.clone();
    let collector = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        // EIO once every slave descriptor is closed, i.e. boxr has exited.
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    // No marker: ready once boxr has put the terminal in raw mode.
    let raw = || {
        nix::sys::termios::tcgetattr(&master).is_ok_and(|t| {
            !t.local_flags
                .contains(nix::sys::termios::LocalFlags::ICANON)
        })
    };
    while !(if ready_marker.is_empty() {
        raw()
    } else {
        String::from_utf8_lossy(&out.lock().unwrap()).contains(ready_marker)
    }) {
        assert!(
            Instant::now() < deadline,
            "the container never printed {ready_marker:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    master.write_all(input).unwrap();
    let status = child.wait().unwrap();
    drop(master);
    collector.join().unwrap();
    let text = String::from_utf8_lossy(&out.lock().unwrap()).replace('\r', "");
    (status.code(), text)
}

/// Builds `tests/probe/NAME` (C, one file) with `gcc -static` into `dest`: a program that runs
/// in a busybox image, which has no C library.
pub fn build_probe(name: &str, dest: &Path) {
    let out = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(dest)
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/probe")
                .join(name),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gcc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Links of the current namespace whose names boxr gives (bridges and veth ends).
pub fn boxr_links() -> Vec<String> {
    let out = Command::new("ip").args(["-o", "link"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .filter(|n| n.starts_with("br-") || n.starts_with("vb") || n == "boxr0")
        .collect()
}

/// "Another host": a namespace `name` at 198.51.100.2, wired to the test's namespace
/// (198.51.100.1, its default route through the far end), serving `busybox httpd` on port 8000
/// whose `cgi-bin/ip` answers with the address it was reached from.
pub struct FarHost {
    pub name: String,
    httpd: std::process::Child,
    _www: tempfile::TempDir,
}

impl FarHost {
    pub fn new(name: &str) -> FarHost {
        // A namesake left by a killed run of this test.
        let _ = Command::new("ip")
            .args(["netns", "del", name])
            .stderr(std::process::Stdio::null())
            .status();
        sh(&format!(
            "ip netns add {name} && ip link add bxfar0 type veth peer name bxfar1 netns {name} \
             && ip addr add 198.51.100.1/24 dev bxfar0 && ip link set bxfar0 up \
             && ip route add default via 198.51.100.2 \
             && ip -n {name} addr add 198.51.100.2/24 dev bxfar1 && ip -n {name} link set bxfar1 up \
             && ip -n {name} link set lo up"
        ));
        let www = tempfile::tempdir().unwrap();
        let cgi = www.path().join("cgi-bin");
        std::fs::create_dir(&cgi).unwrap();
        std::fs::write(
            cgi.join("ip"),
            "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"$REMOTE_ADDR\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(cgi.join("ip"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let httpd = Command::new("ip")
            .args([
                "netns",
                "exec",
                name,
                "busybox",
                "httpd",
                "-f",
                "-p",
                "198.51.100.2:8000",
                "-h",
            ])
            .arg(www.path())
            .spawn()
            .unwrap();
        // Until it listens.
        for _ in 0..100 {
            let ok = Command::new("busybox")
                .args([
                    "wget",
                    "-q",
                    "-T",
                    "1",
                    "-O",
                    "/dev/null",
                    "http://198.51.100.2:8000/cgi-bin/ip",
                ])
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        FarHost {
            name: name.to_owned(),
            httpd,
            _www: www,
        }
    }
}

impl Drop for FarHost {
    fn drop(&mut self) {
        let _ = self.httpd.kill();
        let _ = self.httpd.wait();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A registry process on a free loopback port, stopped (by its pid) when dropped.
pub struct Registry {
    child: std::process::Child,
    /// `127.0.0.1:PORT`
    pub addr: String,
    pub data: PathBuf,
}

impl Registry {
    /// Starts `docker-registry serve` with `extra` YAML under `http:` (TLS) and at top level
    /// (auth) as given.
    pub fn start(dir: &Path, http_extra: &str, top_extra: &str) -> Registry {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let data = dir.join("registry-data");
        std::fs::create_dir_all(&data).unwrap();
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{http_extra}{top_extra}",
                data.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .args(["serve", config.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("docker-registry (apt-get install docker-registry)");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the registry did not start: {}",
                std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Registry { child, addr, data }
    }

    /// Where the registry keeps a blob's bytes.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.data
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The report of `tests/probe/probe.c`'s `all` (check name → result) of a container with the
/// default confinement: every known escape refused, by seccomp or by the kernel's own checks.
/// `rootless`: the container is in an ordinary user's namespace, where files of the host's root
/// are unmapped, so a permission check can refuse before the read-only mount does.
pub fn assert_known_escapes_refused(
    r: &std::collections::BTreeMap<String, String>,
    rootless: bool,
) {
    let expect = |k: &str, want: &[&str]| {
        let got = r.get(k).map(String::as_str).unwrap_or("(missing)");
        assert!(
            want.contains(&got),
            "{k}: got {got}, want one of {want:?}\n{r:#?}"
        );
    };
    for k in [
        "mount",
        "fsopen",
        "open_tree",
        "unshare",
        "unshare_user",
        "setns",
        "clone_newns",
        "keyctl",
        "add_key",
        "io_uring_setup",
        "userfaultfd",
        "bpf",
        "perf_event_open",
        "kexec_load",
        "init_module",
        "reboot",
        "open_by_handle_at",
        "socket_alg",
        "socket_vsock",
    ] {
        // EPERM is seccomp's answer (Docker's default errno); the kernel's own checks would
        // give other errors for the bogus arguments some of these pass.
        expect(k, &["EPERM"]);
    }
    expect("clone3", &["ENOSYS"]);
    expect("newer_syscall", &["ENOSYS"]);
    expect("clone_plain", &["ok"]);
    expect("socket_unix", &["ok"]);
    // Kernel interfaces: read-only or masked. (This host's kernel has no /proc/sysrq-trigger
    // and no /proc/kcore; the probe says "absent" then.)
    expect("write_sysrq", &["EROFS", "absent"]);
    expect(
        "write_proc_sys",
        if rootless {
            &["EROFS", "EACCES"]
        } else {
            &["EROFS"]
        },
    );
    expect("write_sys", &["EROFS"]);
    expect("read_kcore", &["bytes=0", "absent"]);
    expect("read_keys", &["bytes=0"]);
    expect("cgroup_mounts_rw", &["0"]);
    expect("release_agent", &["ENOENT", "EACCES"]);
    expect("leaked_fds", &["0"]);
    // The init runs from a sealed memfd: its exe is not boxr's file, and neither it nor the
    // probe's own binary can be opened for writing.
    expect("init_exe_write", &["EACCES", "ETXTBSY", "EPERM"]);
    expect("self_exe_write", &["ETXTBSY"]);
}
