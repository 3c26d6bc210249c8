//! cgroup limits, checked from inside the container and on the host: pids (a fork bomb is
//! contained), memory (an OOM kill is reported), CPU time and CPU placement, the devices
//! allowlist, and cleanup (no cgroup left, even after boxr is killed).

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{boxr, busybox_rootfs, privileged};

/// A loop device over a 1 MiB file in `dir`, detached when dropped (also when a test fails).
struct Loop(String);

impl Loop {
    fn new(dir: &Path) -> Loop {
        let backing = dir.join("disk.img");
        fs::write(&backing, vec![0u8; 1 << 20]).unwrap();
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&backing)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Loop(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// CPU-heavy tests take turns, so one does not starve another's measurement.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

struct Env {
    _dir: tempfile::TempDir,
    store: PathBuf,
}

impl Env {
    fn new(test: &str) -> Option<Env> {
        if !privileged(test) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let rootfs = busybox_rootfs(dir.path());
        if support::have_tool(test, "gcc") {
            let out = Command::new("gcc")
                .args(["-static", "-O2", "-o"])
                .arg(rootfs.join("probe"))
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/probe/probe.c"))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let store = dir.path().join("store");
        let (c, _, err) = boxr(&store, &["import", rootfs.to_str().unwrap(), "bb:1"]);
        assert_eq!(c, 0, "{err}");
        Some(Env { _dir: dir, store })
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let mut all = vec!["run", "--rm"];
        all.extend_from_slice(args);
        boxr(&self.store, &all)
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "{args:?}: {err}");
        out
    }
}

/// The container's cgroup paths (from its /proc/self/cgroup), as host paths.
fn host_cgroup_dirs(proc_self_cgroup: &str) -> Vec<PathBuf> {
    let layout = boxr::sandbox::cgroup::Layout::detect().unwrap();
    let mut out = Vec::new();
    for line in proc_self_cgroup.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctls, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        if !path.contains("/boxr/") {
            continue;
        }
        let root = if ctls.is_empty() {
            layout.v2.clone()
        } else {
            ctls.split(',').find_map(|c| layout.v1.get(c).cloned())
        };
        if let Some(r) = root {
            out.push(r.join(path.trim_start_matches('/')));
        }
    }
    out
}

#[test]
fn a_fork_bomb_is_contained_and_the_cgroup_goes_away() {
    let Some(env) = Env::new("a_fork_bomb_is_contained_and_the_cgroup_goes_away") else {
        return;
    };
    let _turn = heavy();
    // The bomb runs for two seconds, then the container's main shell leaves, which ends it.
    // Meanwhile the host watches the container's pids cgroup.
    let mut child = Command::new(env!("CARGO_BIN_EXE_boxr"))
        .args([
            "run",
            "--rm",
            "--pids-limit",
            "64",
            "bb:1",
            "sh",
            "-c",
            "cat /proc/self/cgroup; echo started; b() { b & b & exec sleep 30; }; b & sleep 2; exit 0",
        ])
        .env("BOXR_ROOT", &env.store)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut out = String::new();
    let mut buf = [0u8; 4096];
    while !out.contains("started") {
        let n = std::io::Read::read(&mut stdout, &mut buf).unwrap();
        assert!(n > 0, "the container ended early: {out}");
        out.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let dirs = host_cgroup_dirs(&out);
    let pids_dir = dirs
        .iter()
        .find(|d| d.join("pids.max").exists())
        .expect("a pids cgroup")
        .clone();
    let mut peak = 0u64;
    let mut refused = 0u64;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        if let Ok(c) = fs::read_to_string(pids_dir.join("pids.current")) {
            peak = peak.max(c.trim().parse().unwrap_or(0));
        }
        if let Ok(e) = fs::read_to_string(pids_dir.join("pids.events")) {
            refused = e
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
        }
        // The host stays usable while the bomb goes off.
        assert!(Command::new("true").status().unwrap().success());
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{err}");
    assert!(peak <= 64, "{peak} processes under --pids-limit 64");
    assert!(peak >= 32, "the bomb did not grow? peak {peak}");
    assert!(refused > 0, "the limit never refused a fork");
    assert!(err.contains("can't fork"), "inside, forks failed: {err}");
    for d in dirs {
        assert!(!d.exists(), "{} is left", d.display());
    }
}

#[test]
fn a_memory_hog_is_oom_killed_and_reported() {
    let Some(env) = Env::new("a_memory_hog_is_oom_killed_and_reported") else {
        return;
    };
    let _turn = heavy();
    let hog =
        "x=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; while true; do x=$x$x; done";
    let (code, _, err) = env.run(&["--memory", "32m", "bb:1", "sh", "-c", hog]);
    assert_eq!(code, 137, "{err}");
    assert!(err.contains("ran out of memory"), "{err}");
    // Without --rm the container's state records it.
    let (code, _, _) = boxr(&env.store, &["run", "-m", "32m", "bb:1", "sh", "-c", hog]);
    assert_eq!(code, 137);
    let states: Vec<serde_json::Value> = fs::read_dir(env.store.join("containers"))
        .unwrap()
        .flatten()
        .filter_map(|e| fs::read(e.path().join("state.json")).ok())
        .map(|b| serde_json::from_slice(&b).unwrap())
        .collect();
    assert_eq!(states.len(), 1);
    assert_eq!(states[0]["OOMKilled"], true);
    assert_eq!(states[0]["ExitCode"], 137);
    // Inside the limit nothing is reported.
    let (code, _, err) = env.run(&["--memory", "32m", "bb:1", "true"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("memory"), "{err}");
}

#[test]
fn cpu_time_and_placement_are_limited() {
    let Some(env) = Env::new("cpu_time_and_placement_are_limited") else {
        return;
    };
    let _turn = heavy();
    // A busy loop for about 2 s of wall time: the CPU time it got, in clock ticks (100/s).
    let script = "while :; do :; done & pid=$!; read a _ < /proc/uptime; sleep 2; read b _ < /proc/uptime; \
                  read -r stat < /proc/$pid/stat; kill $pid; set -- $stat; echo ticks=$((${14} + ${15})) wall=$a,$b";
    let measure = |extra: &[&str]| -> f64 {
        let mut args = extra.to_vec();
        args.extend(["bb:1", "sh", "-c", script]);
        let out = env.ok(&args);
        let ticks: f64 = out
            .split_whitespace()
            .find_map(|w| w.strip_prefix("ticks="))
            .unwrap()
            .parse()
            .unwrap();
        let wall = out
            .split_whitespace()
            .find_map(|w| w.strip_prefix("wall="))
            .unwrap();
        let (a, b) = wall.split_once(',').unwrap();
        let secs = b.parse::<f64>().unwrap() - a.parse::<f64>().unwrap();
        ticks / 100.0 / secs
    };
    let half = measure(&["--cpus", "0.5"]);
    assert!(
        (0.3..=0.7).contains(&half),
        "--cpus 0.5 gave the busy loop {half:.2} CPUs"
    );
    let full = measure(&[]);
    assert!(full > 0.75, "without a limit the loop got {full:.2} CPUs");
    assert_eq!(
        env.ok(&[
            "--cpuset-cpus",
            "0",
            "bb:1",
            "grep",
            "Cpus_allowed_list",
            "/proc/self/status"
        ]),
        "Cpus_allowed_list:\t0\n"
    );
}

#[test]
fn block_devices_cannot_be_opened_even_when_created() {
    let Some(env) = Env::new("block_devices_cannot_be_opened_even_when_created") else {
        return;
    };
    if !support::have_tool(
        "block_devices_cannot_be_opened_even_when_created",
        "losetup",
    ) {
        return;
    }
    // A loop device the host can read.
    let lo = Loop::new(env.store.parent().unwrap());
    let dev = lo.0.clone();
    use std::os::unix::fs::MetadataExt;
    let rdev = fs::metadata(&dev).unwrap().rdev();
    let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
    assert!(
        fs::File::open(&dev).is_ok(),
        "the host itself can read {dev}"
    );
    let (code, out, err) = env.run(&[
        "bb:1",
        "/probe",
        "mknod-open",
        "/tmp/disk",
        &major.to_string(),
        &minor.to_string(),
    ]);
    // And with --privileged the allowlist is off.
    let (pcode, pout, _) = env.run(&[
        "--privileged",
        "bb:1",
        "/probe",
        "mknod-open",
        "/tmp/disk",
        &major.to_string(),
        &minor.to_string(),
    ]);
    drop(lo);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out, "mknod ok\nopen_block EPERM\n",
        "CAP_MKNOD creates it, the devices cgroup refuses it"
    );
    assert_eq!(pcode, 0);
    assert_eq!(pout, "mknod ok\nopen_block ok\n");
}

#[test]
fn gc_removes_the_cgroup_of_a_killed_boxr() {
    let Some(env) = Env::new("gc_removes_the_cgroup_of_a_killed_boxr") else {
        return;
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_boxr"))
        .args([
            "run",
            "--rm",
            "--pids-limit",
            "32",
            "bb:1",
            "sh",
            "-c",
            "cat /proc/self/cgroup; sleep 30",
        ])
        .env("BOXR_ROOT", &env.store)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = String::new();
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = [0u8; 4096];
    while !out.contains("0::") {
        let n = std::io::Read::read(&mut stdout, &mut buf).unwrap();
        assert!(n > 0, "the container ended early: {out}");
        out.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let dirs = host_cgroup_dirs(&out);
    assert!(dirs.iter().all(|d| d.exists()));
    // boxr (the helper) dies outright; its container dies with it, the cgroup stays.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, out, err) = boxr(&env.store, &["gc"]);
        assert_eq!(code, 0, "{err}");
        if out.contains(" 1 cgroup,") {
            break;
        }
        // The container's processes may take a moment to go after their helper.
        assert!(
            Instant::now() < deadline,
            "gc never removed the cgroup: {out}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for d in dirs {
        assert!(!d.exists(), "{} is left", d.display());
    }
    // The container the killed boxr left (stopped, never removed) goes with `rm -f`, its
    // network namespace with it.
    let (_, ids, _) = boxr(&env.store, &["ps", "-aq"]);
    for id in ids.split_whitespace() {
        let (c, _, err) = boxr(&env.store, &["rm", "-f", id]);
        assert_eq!(c, 0, "{err}");
    }
}

#[test]
fn bad_limits_are_refused_before_anything_starts() {
    let Some(env) = Env::new("bad_limits_are_refused_before_anything_starts") else {
        return;
    };
    for (args, msg) in [
        (vec!["--memory", "lots"], "--memory lots"),
        (vec!["--memory", "1m"], "minimum is 6 MiB"),
        (vec!["--memory-swap", "64m"], "needs --memory"),
        (
            vec!["--memory", "64m", "--memory-swap", "32m"],
            "less than --memory",
        ),
        (vec!["--cpus", "0"], "--cpus 0"),
        // A leading `-` is a value, and gets boxr's own message (not clap's "use '-- -1'").
        (vec!["--cpus", "-1"], "--cpus -1: give a number above 0"),
        (
            vec!["--memory", "-5"],
            "--memory -5: `-5` does not start with a number",
        ),
        (
            vec!["--memory-reservation", "-1"],
            "--memory-reservation -1",
        ),
        (vec!["--cpu-shares", "1"], "2 to 262144"),
        (vec!["--cpuset-cpus", "zero"], "--cpuset-cpus zero"),
        (vec!["--cpuset-cpus", "-1"], "--cpuset-cpus -1"),
        (vec!["--cpuset-cpus", "3-1"], "is not a range"),
        // Which CPUs exist, instead of the kernel's "Numerical result out of range".
        (
            vec!["--cpuset-cpus", "4095"],
            "there is no CPU 4095 here (this machine has CPUs 0-",
        ),
        (
            vec!["--cpuset-mems", "4095"],
            "there is no memory node 4095 here",
        ),
        (
            vec!["--hostname", "a b/c"],
            "`a b/c` is not a valid hostname",
        ),
        (vec!["--blkio-weight", "5"], "10 to 1000"),
        (
            vec!["--device-read-bps", "/dev/null:1mb"],
            "not a block device",
        ),
        (vec!["--hugetlb", "2MB"], "PAGESIZE=LIMIT"),
    ] {
        let mut all = args.clone();
        all.extend(["bb:1", "true"]);
        let (code, _, err) = env.run(&all);
        assert_eq!(code, 125, "{args:?}");
        assert!(err.contains(msg), "{args:?}: {err}");
    }
    assert!(
        fs::read_dir(env.store.join("containers"))
            .map(|mut d| d.next().is_none())
            .unwrap_or(true),
        "a refused run left a container directory"
    );
}

/// The devices allowlist as cgroup v2 enforces it: an eBPF program on the cgroup. This machine
/// is hybrid (its v1 devices controller is what containers use here), so the test builds a
/// v2-only layout from the cgroup2 mount and checks the program on its own.
#[test]
fn the_v2_device_program_refuses_what_is_not_allowed() {
    use boxr::sandbox::cgroup::{Cgroup, Layout, Limits, default_devices};
    if !privileged("the_v2_device_program_refuses_what_is_not_allowed")
        || !support::have_tool(
            "the_v2_device_program_refuses_what_is_not_allowed",
            "losetup",
        )
    {
        return;
    }
    let Some(v2) = Layout::detect().unwrap().v2 else {
        panic!("no cgroup2 mount on this machine");
    };
    let layout = Layout {
        v1: Default::default(),
        v2: Some(v2),
    };
    let dir = tempfile::tempdir().unwrap();
    let lo = Loop::new(dir.path());
    let dev = lo.0.clone();
    let limits = Limits {
        devices: Some(default_devices()),
        ..Default::default()
    };
    let name = format!("boxr/devices-test-{}", std::process::id());
    let cg = Cgroup::create(&layout, &name, &limits).unwrap();
    let procs = cg.v2.as_ref().unwrap().join("cgroup.procs");
    // A shell moves itself into the cgroup, then tries the allowed and the refused devices.
    let script = format!(
        "echo $$ > {}; head -c1 /dev/zero >/dev/null && echo zero-ok; head -c1 {dev} >/dev/null 2>&1 && echo block-ok || echo block-refused",
        procs.display()
    );
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    drop(lo);
    cg.destroy().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "zero-ok\nblock-refused\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn on_a_hybrid_host_only_a_v2_only_limit_makes_a_v2_cgroup() {
    let hybrid = Path::new("/sys/fs/cgroup/memory/cgroup.procs").exists()
        && Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists()
        && fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers")
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "hugetlb"));
    if !hybrid
        && !support::skip(
            "on_a_hybrid_host_only_a_v2_only_limit_makes_a_v2_cgroup",
            "not a hybrid host with hugetlb on cgroup2",
        )
    {
        return;
    }
    let Some(env) = Env::new("on_a_hybrid_host_only_a_v2_only_limit_makes_a_v2_cgroup") else {
        return;
    };
    let line = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend([
            "bb:1",
            "sh",
            "-c",
            "grep -E '^(0::|[0-9]+:memory:)' /proc/self/cgroup",
        ]);
        let (c, out, err) = env.run(&all);
        assert_eq!(c, 0, "{err}");
        out
    };
    // The v1 hierarchies always (the process moved itself in through `tasks`); the v2 one,
    // whose move waits for an RCU grace period, only for what only v2 has here: hugetlb.
    let plain = line(&[]);
    assert!(plain.contains(":memory:/boxr/"), "{plain}");
    assert!(!plain.contains("0::/boxr/"), "{plain}");
    let huge = line(&["--hugetlb", "2MB=4MiB"]);
    assert!(
        huge.contains(":memory:/boxr/") && huge.contains("0::/boxr/"),
        "{huge}"
    );
}

#[test]
fn update_adds_a_controller_no_limit_used_before() {
    let Some(env) = Env::new("update_adds_a_controller_no_limit_used_before") else {
        return;
    };
    let _turn = heavy();
    let b = |args: &[&str]| boxr(&env.store, args);
    let (c, id, err) = b(&["run", "-d", "bb:1", "sleep", "1000"]);
    assert_eq!(c, 0, "{err}");
    let id = id.trim().to_owned();
    let cgroup_line = |ctl: &str| -> String {
        let (_, out, _) = b(&["exec", &id, "cat", "/proc/1/cgroup"]);
        out.lines()
            .find(|l| {
                l.split(':')
                    .nth(1)
                    .is_some_and(|c| c.split(',').any(|x| x == ctl))
            })
            .unwrap_or_default()
            .to_owned()
    };
    let layout = boxr::sandbox::cgroup::Layout::detect().unwrap();
    if !layout.v1.contains_key("cpu") {
        return; // a v2 host: one hierarchy, always made
    }
    // No limit asks for cpu: the container's cgroup is not made in that hierarchy...
    assert!(!cgroup_line("cpu").contains(&id), "{}", cgroup_line("cpu"));
    assert!(
        cgroup_line("memory").contains(&id),
        "{}",
        cgroup_line("memory")
    );
    // ... until `update` does: made then, with the running processes moved into it.
    let (c, _, err) = b(&["update", "--cpus", "0.5", &id]);
    assert_eq!(c, 0, "{err}");
    assert!(cgroup_line("cpu").contains(&id), "{}", cgroup_line("cpu"));
    let quota = layout.v1["cpu"]
        .join("boxr")
        .join(&id)
        .join("cpu.cfs_quota_us");
    assert_eq!(fs::read_to_string(quota).unwrap().trim(), "50000");
    // Not paused by it.
    let (_, out, _) = b(&["inspect", "-f", "{{.State.Status}}", &id]);
    assert_eq!(out.trim(), "running");
    let (c, _, err) = b(&["rm", "-f", &id]);
    assert_eq!(c, 0, "{err}");
    assert!(!layout.v1["cpu"].join("boxr").join(&id).exists());
}

#[test]
fn update_changes_the_limits_of_a_running_container_and_they_stay() {
    let Some(env) = Env::new("update_changes_the_limits_of_a_running_container_and_they_stay")
    else {
        return;
    };
    let _turn = heavy();
    let b = |args: &[&str]| boxr(&env.store, args);
    let (c, _, err) = b(&[
        "run",
        "-d",
        "--name",
        "u1",
        "--shm-size",
        "512m",
        "--memory",
        "64m",
        "--memory-swap",
        "64m",
        "--pids-limit",
        "20",
        "bb:1",
        "sleep",
        "1000",
    ]);
    assert_eq!(c, 0, "{err}");
    // 30 more processes do not fit in 20. 100 MiB of /dev/shm does not fit in 64 MiB: the
    // writer (first in the OOM killer's line) is killed, and what it wrote stays charged.
    let fork = "for i in $(seq 30); do sleep 2 & done; wait; echo forked";
    let (_, _, err) = b(&["exec", "u1", "sh", "-c", fork]);
    assert!(err.contains("can't fork"), "{err}");
    let fill = "dd if=/dev/zero of=/dev/shm/x bs=1M count=100 2>/dev/null";
    let (c, _, _) = b(&[
        "exec",
        "u1",
        "sh",
        "-c",
        &format!("echo 1000 > /proc/self/oom_score_adj; {fill}"),
    ]);
    assert_eq!(c, 137);
    // Raised while it runs: both fit now.
    let (c, out, err) = b(&[
        "update",
        "--memory",
        "256m",
        "--memory-swap",
        "256m",
        "--pids-limit",
        "100",
        "u1",
    ]);
    assert_eq!((c, out.as_str()), (0, "u1\n"), "{err}");
    let check = format!("rm -f /dev/shm/x; {fill} && echo fits; rm /dev/shm/x; {fork}");
    let (c, out, err) = b(&["exec", "u1", "sh", "-c", &check]);
    assert_eq!((c, out.as_str()), (0, "fits\nforked\n"), "{err}");
    // Kept for the next start.
    let (c, _, err) = b(&["restart", "-t", "0", "u1"]);
    assert_eq!(c, 0, "{err}");
    let (c, out, err) = b(&["exec", "u1", "sh", "-c", &check]);
    assert_eq!((c, out.as_str()), (0, "fits\nforked\n"), "{err}");
    // Refused: memory above memory plus swap, and nothing to change.
    let (c, _, err) = b(&["update", "--memory", "512m", "u1"]);
    assert_eq!(c, 125);
    assert!(err.contains("--memory-swap"), "{err}");
    let (c, _, err) = b(&["update", "u1"]);
    assert_eq!(c, 125);
    assert!(err.contains("nothing to update"), "{err}");
    let (c, _, err) = b(&["rm", "-f", "u1"]);
    assert_eq!(c, 0, "{err}");
    // A restart by the policy runs with the updated limits too (the monitor reads them again).
    let (c, _, err) = b(&[
        "run",
        "-d",
        "--name",
        "u2",
        "--restart",
        "always",
        "--pids-limit",
        "20",
        "bb:1",
        "sleep",
        "1000",
    ]);
    assert_eq!(c, 0, "{err}");
    let (c, _, err) = b(&["update", "--pids-limit", "100", "u2"]);
    assert_eq!(c, 0, "{err}");
    let pid = || boxr(&env.store, &["inspect", "-f", "{{.State.Pid}}", "u2"]).1;
    let before = pid();
    let (c, _, err) = b(&["kill", "u2"]);
    assert_eq!(c, 0, "{err}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while pid() == before || pid().trim() == "0" {
        assert!(Instant::now() < deadline, "u2 did not come back");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (c, out, err) = b(&["exec", "u2", "sh", "-c", fork]);
    assert_eq!((c, out.as_str()), (0, "forked\n"), "{err}");
    let (c, _, err) = b(&["rm", "-f", "u2"]);
    assert_eq!(c, 0, "{err}");
}

#[test]
fn a_host_device_comes_with_the_access_asked_for() {
    let test = "a_host_device_comes_with_the_access_asked_for";
    let Some(env) = Env::new(test) else {
        return;
    };
    if !support::have_tool(test, "losetup") {
        return;
    }
    let lo = Loop::new(env.store.parent().unwrap());
    let dev = lo.0.clone();
    use std::os::unix::fs::MetadataExt;
    let rdev = fs::metadata(&dev).unwrap().rdev();
    let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
    // Read-only: the node is there (the host's numbers), it reads, and the cgroup refuses a
    // write.
    let ro = format!("{dev}:/dev/xvda:r");
    let out = env.ok(&[
        "--device",
        &ro,
        "bb:1",
        "sh",
        "-c",
        "stat -c '%t %T %F' /dev/xvda; dd if=/dev/xvda bs=512 count=1 2>/dev/null | wc -c; \
         echo x | dd of=/dev/xvda conv=notrunc 2>/dev/null || echo no-write",
    ]);
    assert_eq!(
        out,
        format!("{major:x} {minor:x} block special file\n512\nno-write\n")
    );
    // rwm (the default): a write goes through, and another container reads it back.
    let out = env.ok(&[
        "--device",
        &dev,
        "bb:1",
        "sh",
        "-c",
        &format!("printf boxr | dd of={dev} conv=notrunc,fsync 2>/dev/null && echo wrote"),
    ]);
    assert_eq!(out, "wrote\n");
    let out = env.ok(&[
        "--device",
        &ro,
        "bb:1",
        "sh",
        "-c",
        "dd if=/dev/xvda bs=4 count=1 2>/dev/null",
    ]);
    assert_eq!(out, "boxr");
    // Without --device there is no such node.
    let (code, _, _) = env.run(&["bb:1", "test", "-e", "/dev/xvda"]);
    assert_eq!(code, 1);
    for (arg, says) in [
        ("/etc/passwd", "not a device node"),
        ("/dev/null:/dev/x:rwx", "HOST[:CONTAINER][:PERMS]"),
        ("/dev/nosuch", "No such file"),
    ] {
        let (code, _, err) = env.run(&["--device", arg, "bb:1", "true"]);
        assert_eq!(code, 125, "{arg}");
        assert!(err.contains(says), "{arg}: {err}");
    }
}
