//! The layouts and limits on fake hierarchies in temp dirs.

use super::*;

const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

#[test]
fn layouts_are_detected() {
    let h = Layout::from_mountinfo(HYBRID);
    assert_eq!(h.kind(), "hybrid");
    assert_eq!(h.v1["memory"], PathBuf::from("/sys/fs/cgroup/memory"));
    assert!(!h.v1.contains_key("name=systemd"));
    assert_eq!(h.v2, Some(PathBuf::from("/sys/fs/cgroup/unified")));
    let v2 =
        Layout::from_mountinfo("25 1 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n");
    assert_eq!(v2.kind(), "v2");
    let v1 = Layout::from_mountinfo(
        "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n",
    );
    assert_eq!(v1.kind(), "v1");
    assert_eq!(v1.v1["cpu"], PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
    // A hierarchy mounted from a sub-cgroup (a container's view) is not a root: skipped.
    let inner = Layout::from_mountinfo(
        "32 31 0:29 /docker/x /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n",
    );
    assert_eq!(inner.kind(), "none");
}

/// A fake v2 hierarchy in a temp dir, with the files the kernel would have.
fn fake_v2() -> (tempfile::TempDir, Layout) {
    let d = tempfile::tempdir().unwrap();
    fs::write(
        d.path().join("cgroup.controllers"),
        "cpuset cpu io memory hugetlb pids\n",
    )
    .unwrap();
    fs::write(d.path().join("cgroup.subtree_control"), "").unwrap();
    let layout = Layout {
        v1: BTreeMap::new(),
        v2: Some(d.path().to_owned()),
    };
    (d, layout)
}

#[test]
fn v2_limits_are_written_as_the_kernel_wants_them() {
    let (d, layout) = fake_v2();
    // The kernel creates a cgroup's files; the fake makes them before the limits land.
    let dir = d.path().join("boxr/c1");
    fs::create_dir_all(&dir).unwrap();
    for f in ["memory.swap.max", "hugetlb.2MB.max"] {
        fs::write(dir.join(f), "").unwrap();
    }
    let limits = Limits {
        memory: Some(64 << 20),
        memory_reservation: Some(32 << 20),
        cpus: Some(0.5),
        cpu_shares: Some(512),
        cpuset_cpus: Some("0".into()),
        pids: Some(64),
        blkio_weight: Some(500),
        device_read_bps: vec![(8, 0, 1_048_576)],
        hugetlb: [("2MB".to_string(), 4 << 20)].into(),
        ..Default::default()
    };
    let cg = Cgroup::create(&layout, "boxr/c1", &limits).unwrap();
    assert_eq!(cg.v2.as_deref(), Some(dir.as_path()));
    let r = |f: &str| fs::read_to_string(dir.join(f)).unwrap();
    assert_eq!(r("memory.max"), "67108864");
    assert_eq!(
        r("memory.swap.max"),
        "67108864",
        "as much swap again, as Docker"
    );
    assert_eq!(r("memory.low"), "33554432");
    assert_eq!(r("cpu.max"), "50000 100000");
    assert_eq!(r("cpu.weight"), "20");
    assert_eq!(r("cpuset.cpus"), "0");
    assert_eq!(r("pids.max"), "64");
    assert_eq!(r("io.weight"), "default 4950");
    assert_eq!(r("io.max"), "8:0 rbps=1048576");
    assert_eq!(r("hugetlb.2MB.max"), "4194304");
    // Controllers were enabled down the path.
    assert!(
        fs::read_to_string(d.path().join("cgroup.subtree_control"))
            .unwrap()
            .starts_with('+')
    );
}

#[test]
fn v1_limits_and_devices() {
    let d = tempfile::tempdir().unwrap();
    let mut layout = Layout::default();
    for c in ["memory", "cpu", "cpuset", "pids", "devices"] {
        let root = d.path().join(c);
        fs::create_dir_all(&root).unwrap();
        layout.v1.insert(c.into(), root);
    }
    fs::write(d.path().join("cpuset/cpuset.cpus"), "0-1\n").unwrap();
    fs::write(d.path().join("cpuset/cpuset.mems"), "0\n").unwrap();
    fs::create_dir_all(d.path().join("memory/boxr/c1")).unwrap();
    fs::write(
        d.path().join("memory/boxr/c1/memory.memsw.limit_in_bytes"),
        "",
    )
    .unwrap();
    let limits = Limits {
        memory: Some(32 << 20),
        cpus: Some(1.5),
        pids: Some(-1),
        devices: Some(default_devices()),
        ..Default::default()
    };
    let cg = Cgroup::create(&layout, "boxr/c1", &limits).unwrap();
    let r = |f: &str| fs::read_to_string(d.path().join(f)).unwrap();
    assert_eq!(r("memory/boxr/c1/memory.limit_in_bytes"), "33554432");
    assert_eq!(r("memory/boxr/c1/memory.memsw.limit_in_bytes"), "67108864");
    assert_eq!(r("cpu/boxr/c1/cpu.cfs_quota_us"), "150000");
    assert_eq!(r("pids/boxr/c1/pids.max"), "max");
    // The fake file keeps only the last write: the last allow rule.
    assert_eq!(r("devices/boxr/c1/devices.allow"), "c 136:* rwm");
    // No limit uses cpuset: its hierarchy is not touched.
    assert_eq!(cg.v1.len(), 4);
    assert!(!d.path().join("cpuset/boxr").exists());
    // Until a limit does (`update`): the directory is made then, and a new v1 cpuset inherits
    // its parent's sets, or no task could join it.
    let mut cg = cg;
    let more = Limits {
        cpuset_mems: Some("0".into()),
        ..limits.clone()
    };
    cg.extend(&layout, "boxr/c1", &more).unwrap();
    assert_eq!(cg.v1.len(), 5);
    assert_eq!(r("cpuset/boxr/c1/cpuset.cpus"), "0-1");
    assert_eq!(r("cpuset/boxr/c1/cpuset.mems"), "0");
}

#[test]
fn a_missing_controller_is_a_clear_error() {
    let (_d, layout) = fake_v2();
    let limits = Limits {
        blkio_weight: Some(100),
        ..Default::default()
    };
    let mut no_io = layout.clone();
    fs::write(
        no_io.v2.as_mut().unwrap().join("cgroup.controllers"),
        "memory pids\n",
    )
    .unwrap();
    let e = Cgroup::create(&no_io, "boxr/c2", &limits)
        .unwrap_err()
        .to_string();
    assert!(e.contains("io cgroup controller is not available"), "{e}");
}

/// A pure v2 hierarchy in a temp dir laid out as systemd delegates it: root's down to the
/// user's slice, the user's from `user@UID.service` down (what this hybrid host cannot show).
#[test]
fn a_delegated_v2_subtree_takes_a_rootless_containers_limits() {
    if !nix::unistd::geteuid().is_root() {
        return; // chown needs root; CI runs the unit tests as root
    }
    let (d, layout) = fake_v2();
    let uid = 4242;
    let service = d
        .path()
        .join("user.slice/user-4242.slice/user@4242.service");
    let own = "user.slice/user-4242.slice/user@4242.service/app.slice/term.scope";
    fs::create_dir_all(d.path().join(own)).unwrap();
    for dir in [
        d.path().join("user.slice"),
        d.path().join("user.slice/user-4242.slice"),
    ] {
        fs::write(dir.join("cgroup.subtree_control"), "").unwrap();
    }
    fs::write(service.join("cgroup.subtree_control"), "").unwrap();
    for p in [
        service.clone(),
        service.join("cgroup.subtree_control"),
        service.join("app.slice"),
        service.join("app.slice/term.scope"),
    ] {
        nix::unistd::chown(&p, Some(nix::unistd::Uid::from_raw(uid)), None).unwrap();
    }
    let base = delegated_base(&layout, own, uid).expect("the user's service is delegated");
    assert_eq!(base, "user.slice/user-4242.slice/user@4242.service");
    assert_eq!(
        delegated_base(&layout, own, 4243),
        None,
        "another user's is not"
    );
    let hybrid = Layout {
        v1: [("memory".to_string(), d.path().to_owned())].into(),
        v2: layout.v2.clone(),
    };
    assert_eq!(
        delegated_base(&hybrid, own, uid),
        None,
        "v1 is never delegated"
    );

    // The container's cgroup under it gets its limits; controllers are enabled from the root
    // down (best effort: a real host refuses the levels that are root's).
    let rel = format!("{base}/boxr/c1");
    let dir = d.path().join(&rel);
    fs::create_dir_all(&dir).unwrap();
    let limits = Limits {
        memory: Some(32 << 20),
        pids: Some(20),
        ..Default::default()
    };
    let cg = Cgroup::create(&layout, &rel, &limits).unwrap();
    assert_eq!(cg.v2.as_deref(), Some(dir.as_path()));
    assert_eq!(
        fs::read_to_string(dir.join("memory.max")).unwrap(),
        "33554432"
    );
    assert_eq!(fs::read_to_string(dir.join("pids.max")).unwrap(), "20");
    assert!(
        fs::read_to_string(service.join("cgroup.subtree_control"))
            .unwrap()
            .starts_with('+'),
        "the delegated service enables the controllers for boxr's cgroups"
    );
}
