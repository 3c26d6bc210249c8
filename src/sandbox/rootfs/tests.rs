//! The order of the setup, through a [`Kernel`] that records what it is asked (mounts, the
//! pivot, nodes) and leaves the directories and files of a temp dir to the real calls: no root
//! needed.

use std::cell::RefCell;
use std::fs;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use super::{Kernel, Node, Result, setup_with};
use crate::sandbox::spec::{EtcFile, MountSpec, SandboxSpec};

/// Records each call as a line (`proc /rootfs/proc`, `bind /dev/null /rootfs/proc/kcore`,
/// `ro /rootfs`, `pivot`, ...), paths shown relative to the temp dir.
struct Recorder {
    root: PathBuf,
    ops: RefCell<Vec<String>>,
}

impl Recorder {
    fn show(&self, p: &Path) -> String {
        let real = if p.starts_with("/proc/self/fd") {
            fs::read_link(p).unwrap_or_else(|_| p.to_owned())
        } else {
            p.to_owned()
        };
        match real.strip_prefix(&self.root) {
            Ok(r) => format!("/{}", r.display()),
            Err(_) => real.display().to_string(),
        }
    }

    fn push(&self, op: String) {
        self.ops.borrow_mut().push(op);
    }
}

impl Kernel for Recorder {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        _data: Option<&str>,
    ) -> nix::Result<()> {
        let t = self.show(target);
        let op = if flags.contains(MsFlags::MS_PRIVATE) {
            format!("private {t}")
        } else if flags.contains(MsFlags::MS_REMOUNT) {
            format!("ro {t}")
        } else if flags.contains(MsFlags::MS_BIND) {
            format!(
                "bind {} {t}",
                self.show(source.expect("a bind has a source"))
            )
        } else {
            let ro = if flags.contains(MsFlags::MS_RDONLY) {
                " ro"
            } else {
                ""
            };
            format!("{} {t}{ro}", fstype.unwrap_or("?"))
        };
        self.push(op);
        Ok(())
    }

    fn mount_overlay(
        &self,
        _lowers: &[&Path],
        _options: &[(&str, &str)],
        target: &Path,
    ) -> std::io::Result<()> {
        self.push(format!("overlay {}", self.show(target)));
        Ok(())
    }

    fn read_only_recursive(&self, mount: &OwnedFd) -> std::io::Result<()> {
        let p = PathBuf::from(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(mount)
        ));
        self.push(format!("ro-recursive {}", self.show(&p)));
        Ok(())
    }

    fn attach_shm_of(&self, pid: i32, target: &OwnedFd) -> Result<()> {
        let p = PathBuf::from(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(target)
        ));
        self.push(format!("shm-of {pid} {}", self.show(&p)));
        Ok(())
    }

    fn chdir(&self, dir: &Path) -> nix::Result<()> {
        self.push(format!("chdir {}", self.show(dir)));
        Ok(())
    }

    fn pivot_root_here(&self) -> nix::Result<()> {
        self.push("pivot".into());
        Ok(())
    }

    fn sethostname(&self, name: &str) -> nix::Result<()> {
        self.push(format!("hostname {name}"));
        Ok(())
    }

    fn make_node(&self, dir: &OwnedFd, name: &str, _node: &Node) -> nix::Result<()> {
        let p = PathBuf::from(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(dir)
        ));
        self.push(format!("mknod {}/{name}", self.show(&p)));
        Ok(())
    }
}

/// A spec for a rootfs in `t`: an /etc file, a read-only bind volume, a tmpfs; and an image
/// that has the paths the masks cover.
fn spec_in(t: &Path) -> SandboxSpec {
    let rootfs = t.join("rootfs");
    for d in ["proc/acpi", "proc/sys", "etc"] {
        fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    fs::write(rootfs.join("proc/kcore"), "").unwrap();
    fs::write(t.join("hosts"), "127.0.0.1 localhost\n").unwrap();
    fs::create_dir_all(t.join("data")).unwrap();
    let json = serde_json::json!({
        "rootfs": {
            "lowers": [t.join("layer")], "upper": t.join("upper"), "work": t.join("work"),
            "target": rootfs, "read_only": true,
        },
        "hostname": "box",
        "network": "None",
        "etc_files": [],
        "mounts": [],
        "process": {
            "args": ["true"], "env": [], "cwd": "/", "user": null, "stdin": false,
            "rlimits": [],
        },
        "init": true,
        "security": {
            "capabilities": [], "added": [], "no_new_privileges": false, "privileged": false,
        },
        "keep_fd": null,
    });
    let mut spec: SandboxSpec = serde_json::from_value(json).unwrap();
    spec.etc_files = vec![EtcFile {
        source: t.join("hosts"),
        target: "/etc/hosts".into(),
    }];
    spec.mounts = vec![
        MountSpec::Bind {
            source: t.join("data"),
            target: "/data".into(),
            read_only: true,
        },
        MountSpec::Tmpfs {
            target: "/scratch".into(),
            options: "size=1m".into(),
        },
    ];
    spec
}

fn run(spec: &SandboxSpec, t: &Path) -> Vec<String> {
    let k = Recorder {
        root: t.to_owned(),
        ops: RefCell::new(Vec::new()),
    };
    setup_with(&k, spec).unwrap();
    k.ops.into_inner()
}

fn at(ops: &[String], op: &str) -> usize {
    ops.iter()
        .position(|o| o == op)
        .unwrap_or_else(|| panic!("`{op}` was not done: {ops:#?}"))
}

#[test]
fn the_setup_goes_in_its_order() {
    let t = tempfile::tempdir().unwrap();
    let spec = spec_in(t.path());
    let ops = run(&spec, t.path());
    // Nothing mounted may propagate to the host: private first.
    assert_eq!(ops[0], "private /");
    // The overlay, then what goes on it: /etc files and volumes before the kernel's
    // filesystems; a read-only volume is made so right after its bind.
    let overlay = at(&ops, "overlay /rootfs");
    assert_eq!(overlay, 1);
    let hosts = at(&ops, "bind /hosts /rootfs/etc/hosts");
    let data = at(&ops, "bind /data /rootfs/data");
    assert_eq!(at(&ops, "ro /rootfs/data"), data + 1);
    let scratch = at(&ops, "tmpfs /rootfs/scratch");
    let proc = at(&ops, "proc /rootfs/proc");
    assert!(overlay < hosts && hosts < data && data < scratch && scratch < proc);
    // /dev is a tmpfs before its nodes are made and before /dev/pts goes on it.
    let dev = at(&ops, "tmpfs /rootfs/dev");
    assert!(dev < at(&ops, "mknod /rootfs/dev/null"));
    assert!(at(&ops, "mknod /rootfs/dev/tty") < at(&ops, "devpts /rootfs/dev/pts"));
    assert!(dev < at(&ops, "tmpfs /rootfs/dev/shm"));
    assert!(dev < at(&ops, "mqueue /rootfs/dev/mqueue"));
    // sysfs read-only.
    let sys = at(&ops, "sysfs /rootfs/sys ro");
    // The masks go over the /proc just mounted: a file gets /dev/null, a directory an empty
    // read-only tmpfs, a read-only path its own bind made read-only.
    let kcore = at(&ops, "bind /dev/null /rootfs/proc/kcore");
    let acpi = at(&ops, "tmpfs /rootfs/proc/acpi ro");
    let sysctl = at(&ops, "bind /rootfs/proc/sys /rootfs/proc/sys");
    assert_eq!(at(&ops, "ro /rootfs/proc/sys"), sysctl + 1);
    assert!(proc < kcore && sys < kcore && proc < acpi && proc < sysctl);
    // The rootfs is made read-only after every mount on it, then the pivot, then the
    // hostname, last.
    let ro = at(&ops, "ro /rootfs");
    assert!(ops[..ro].iter().all(|o| o != "pivot"));
    assert!(kcore < ro && acpi < ro && sysctl < ro);
    assert_eq!(
        ops[ro + 1..],
        ["chdir /rootfs", "pivot", "chdir /", "hostname box"]
    );
}

#[test]
fn privileged_shared_and_user_namespace_setups_differ_where_they_should() {
    let t = tempfile::tempdir().unwrap();
    // --privileged: no masks; a writable rootfs: no read-only remount.
    let mut spec = spec_in(t.path());
    spec.security.privileged = true;
    spec.rootfs.read_only = false;
    let ops = run(&spec, t.path());
    assert!(
        !ops.iter()
            .any(|o| o.contains("/proc/kcore") || o == "ro /rootfs"),
        "{ops:#?}"
    );
    // A shared UTS namespace keeps its hostname; a shared IPC one shows that /dev/shm.
    let t = tempfile::tempdir().unwrap();
    let mut spec = spec_in(t.path());
    spec.uts_ns = crate::sandbox::spec::NsShare::Host;
    spec.shm_from = Some(crate::sandbox::spec::SharedShm::Sandbox { pid: 42 });
    let ops = run(&spec, t.path());
    assert!(!ops.iter().any(|o| o.starts_with("hostname")), "{ops:#?}");
    assert!(
        ops.contains(&"shm-of 42 /rootfs/dev/shm".to_owned()),
        "{ops:#?}"
    );
    assert!(!ops.contains(&"tmpfs /rootfs/dev/shm".to_owned()));
    // In a user namespace no node is made (mknod is not allowed there): the host's are bound.
    let t = tempfile::tempdir().unwrap();
    let mut spec = spec_in(t.path());
    spec.userns = Some(crate::sandbox::spec::UserNs {
        uid_map: vec![],
        gid_map: vec![],
    });
    let ops = run(&spec, t.path());
    assert!(!ops.iter().any(|o| o.starts_with("mknod")), "{ops:#?}");
    assert!(
        ops.contains(&"bind /dev/null /rootfs/dev/null".to_owned()),
        "{ops:#?}"
    );
}
