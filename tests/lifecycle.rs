//! Detached containers under their monitor: `run -d`, `ps`, `logs`, `stop`, `kill`, `wait`,
//! `rm`, names, and state that stays true when the monitor is killed.

mod support;

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::{boxr, busybox_rootfs, privileged};

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
        let store = dir.path().join("store");
        let (c, _, err) = boxr(&store, &["import", rootfs.to_str().unwrap(), "bb:1"]);
        assert_eq!(c, 0, "{err}");
        Some(Env { _dir: dir, store })
    }

    /// `boxr run -d ARGS`, which must succeed: the container's id.
    fn run_d(&self, args: &[&str]) -> String {
        let mut all = vec!["run", "-d"];
        all.extend_from_slice(args);
        self.ok(&all).trim().to_owned()
    }

    /// `boxr inspect CONTAINER`, which must succeed: its JSON object.
    fn inspect(&self, container: &str) -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(&self.ok(&["inspect", container])).unwrap();
        v[0].clone()
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = boxr(&self.store, args);
        assert_eq!(code, 0, "{args:?}: {err}");
        out
    }

    /// Every container directory is gone, and no monitor of this store runs.
    fn assert_clean(&self) {
        let left: Vec<_> = fs::read_dir(self.store.join("containers"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "containers left: {left:?}");
        let store = self.store.to_string_lossy().into_owned();
        for e in fs::read_dir("/proc").unwrap().flatten() {
            let environ = fs::read(e.path().join("environ")).unwrap_or_default();
            let cmdline = fs::read_to_string(e.path().join("cmdline")).unwrap_or_default();
            if cmdline.contains("boxr-monitor")
                && String::from_utf8_lossy(&environ).contains(&store)
            {
                panic!("a monitor is left: {:?}", e.path());
            }
        }
    }
}

impl Drop for Env {
    /// A failed test must not leave detached containers running: remove them all.
    fn drop(&mut self) {
        let (_, ids, _) = boxr(&self.store, &["ps", "-aq"]);
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            let _ = boxr(&self.store, &args);
        }
    }
}

fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_detached_container_runs_logs_stops_and_goes() {
    let Some(env) = Env::new("a_detached_container_runs_logs_stops_and_goes") else {
        return;
    };
    let id = env.run_d(&[
        "--name",
        "ticker",
        "bb:1",
        "sh",
        "-c",
        "echo started; echo to-stderr >&2; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done",
    ]);
    assert_eq!(id.len(), 64, "{id}");
    let ps = env.ok(&["ps"]);
    assert!(
        ps.contains(&id[..12]) && ps.contains("ticker") && ps.contains("Up "),
        "{ps}"
    );
    let v = env.inspect("ticker");
    let pid = v["State"]["Pid"].as_i64().unwrap();
    assert!(v["State"]["Running"].as_bool().unwrap());
    // State.Pid is the container's init as the host sees it.
    let exe = fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(exe.to_string_lossy().contains("boxr-init"), "{exe:?}");
    // The output is in the log, stdout and stderr apart, and grows.
    until("ticks in the log", || {
        env.ok(&["logs", "ticker"]).contains("tick 3")
    });
    let (_, out, err) = boxr(&env.store, &["logs", "--tail", "1", &id[..8]]);
    assert!(
        out.starts_with("tick ") && out.lines().count() == 1,
        "{out}"
    );
    assert!(err.is_empty(), "--tail counts lines of both streams: {err}");
    let (_, out, err) = boxr(&env.store, &["logs", "ticker"]);
    assert!(out.starts_with("started\ntick 0\n"), "{out}");
    assert_eq!(err, "to-stderr\n");
    let (_, ts, _) = boxr(&env.store, &["logs", "-t", "ticker"]);
    assert!(
        ts.lines().next().unwrap().contains("T") && ts.contains("Z started"),
        "{ts}"
    );
    // Names are unique.
    let (code, _, err) = boxr(
        &env.store,
        &["run", "-d", "--name", "ticker", "bb:1", "true"],
    );
    assert_eq!(code, 125);
    assert!(err.contains("already in use"), "{err}");
    // A running container is not removed without -f.
    let (code, _, err) = boxr(&env.store, &["rm", "ticker"]);
    assert_eq!(code, 125);
    assert!(err.contains("is running"), "{err}");
    // stop: SIGTERM reaches the command through the init; sh dies of it (143).
    env.ok(&["stop", "-t", "5", "ticker"]);
    assert_eq!(env.ok(&["wait", "ticker"]), "143\n");
    let ps = env.ok(&["ps", "-a"]);
    assert!(ps.contains("Exited (143)"), "{ps}");
    assert!(!env.ok(&["ps"]).contains(&id[..12]));
    let state: serde_json::Value = serde_json::from_slice(
        &fs::read(env.store.join("containers").join(&id).join("state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["Status"], "exited");
    assert_eq!(state["ExitCode"], 143);
    assert!(state["StartedAt"].is_string() && state["FinishedAt"].is_string());
    let v = env.inspect("ticker");
    assert_eq!(v["Id"], id.as_str());
    assert_eq!(v["Name"], "/ticker");
    assert_eq!(v["State"]["Status"], "exited");
    assert_eq!(v["State"]["ExitCode"], 143);
    assert_eq!(v["State"]["Running"], false);
    env.ok(&["rm", "ticker"]);
    env.assert_clean();
    // The name is free again.
    let id2 = env.run_d(&["--name", "ticker", "bb:1", "sh", "-c", "exit 7"]);
    assert_eq!(env.ok(&["wait", &id2]), "7\n");
    env.ok(&["rm", "ticker"]);
    env.assert_clean();
}

#[test]
fn kill_rm_force_and_a_killed_monitor() {
    let Some(env) = Env::new("kill_rm_force_and_a_killed_monitor") else {
        return;
    };
    let a = env.run_d(&["bb:1", "sleep", "1000"]);
    env.ok(&["kill", "-s", "TERM", &a[..12]]);
    // sleep does not handle TERM: it dies of it.
    assert_eq!(env.ok(&["wait", &a]), "143\n");
    let b = env.run_d(&["bb:1", "sleep", "1000"]);
    // The monitor dies outright: the container goes on, and ps still tells the truth.
    let state_path = env.store.join("containers").join(&b).join("state.json");
    until("the running state", || fs::read(&state_path).is_ok());
    let state: serde_json::Value = serde_json::from_slice(&fs::read(&state_path).unwrap()).unwrap();
    let monitor = state["MonitorPid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    // ps, inspect and logs say that its monitor is gone; logs -f does not wait for output that
    // nothing records any more.
    let ps = env.ok(&["ps"]);
    assert!(
        ps.lines()
            .any(|l| l.contains(&b[..12]) && l.contains("(monitor lost)")),
        "still running without its monitor, and ps says so: {ps}"
    );
    let v = env.inspect(&b);
    assert_eq!(v["State"]["Running"], true);
    assert_eq!(v["State"]["MonitorLost"], true);
    let (c, _, err) = boxr(&env.store, &["logs", "-f", &b]);
    assert_eq!(c, 0, "{err}");
    assert!(err.contains("was not recorded"), "{err}");
    // `wait` waits for it all the same; stop works on it at once (the init is signalled
    // directly), and the exit code is the command's, which its init wrote as it ended: sleep
    // dies of the TERM, 143 (not 255, an end nobody saw).
    let waiter = std::process::Command::new(env!("CARGO_BIN_EXE_boxr"))
        .args(["wait", &b])
        .env("BOXR_ROOT", &env.store)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    env.ok(&["stop", "-t", "1", &b]);
    assert!(!env.ok(&["ps", "-q"]).contains(&b[..12]));
    let waited = waiter.wait_with_output().unwrap();
    assert!(waited.status.success());
    assert_eq!(String::from_utf8_lossy(&waited.stdout), "143\n");
    let v = env.inspect(&b);
    assert_eq!(v["State"]["ExitCode"], 143, "{v}");
    assert!(env.ok(&["ps", "-a"]).contains("Exited (143)"));
    // The next command removed its cgroup, which no monitor finished, and the journal entry.
    let left: Vec<_> = fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .map(|e| e.unwrap().path().join("boxr").join(&b))
        .filter(|d| d.exists())
        .collect();
    assert!(left.is_empty(), "the cgroup is left: {left:?}");
    assert!(
        !env.store
            .join("journal")
            .join(format!("cgroup-{b}.json"))
            .exists()
    );
    // rm -f kills it; ps then shows nothing; the cgroup goes with the helper.
    env.ok(&["rm", "-f", &b]);
    env.ok(&["rm", &a]);
    assert_eq!(env.ok(&["ps", "-a", "-q"]), "");
    env.assert_clean();
}

#[test]
fn many_detached_containers_come_and_go_cleanly() {
    let Some(env) = Env::new("many_detached_containers_come_and_go_cleanly") else {
        return;
    };
    let ids: Vec<String> = (0..50)
        .map(|_| env.run_d(&["bb:1", "sleep", "1000"]))
        .collect();
    assert_eq!(env.ok(&["ps", "-q"]).lines().count(), 50);
    // gc keeps what running containers use, even untagged.
    env.ok(&["rmi", "bb:1"]);
    env.ok(&["gc"]);
    let layers = fs::read_dir(env.store.join("layers")).unwrap().count();
    assert_eq!(layers, 1, "the containers' layer was collected");
    let mut args = vec!["stop", "-t", "1"];
    args.extend(ids.iter().map(String::as_str));
    env.ok(&args);
    let mut args = vec!["rm"];
    args.extend(ids.iter().map(String::as_str));
    env.ok(&args);
    env.assert_clean();
    // With no container left, gc may take the layer.
    env.ok(&["gc"]);
    assert_eq!(fs::read_dir(env.store.join("layers")).unwrap().count(), 0);
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(env.store.to_str().unwrap()));
}

#[test]
fn exec_joins_the_container_with_its_confinement() {
    let Some(env) = Env::new("exec_joins_the_container_with_its_confinement") else {
        return;
    };
    let id = env.run_d(&[
        "--name",
        "box",
        "--hostname",
        "inside",
        "bb:1",
        "sh",
        "-c",
        "echo made-inside > /tmp/made; sleep 1000",
    ]);
    until("the container's file", || {
        boxr(&env.store, &["exec", "box", "cat", "/tmp/made"]).1 == "made-inside\n"
    });
    // Its namespaces: hostname, mounts (the file above), PID namespace (its init is PID 1).
    let out = env.ok(&[
        "exec", "box", "sh", "-c",
        "hostname; cat /proc/1/comm; grep -E '^(CapInh|CapEff|CapBnd|CapAmb|Seccomp):' /proc/self/status",
    ]);
    assert_eq!(
        out,
        "inside\nmemfd:boxr-init\nCapInh:\t0000000000000000\nCapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\nCapAmb:\t0000000000000000\nSeccomp:\t2\n"
    );
    // It cannot gain what the container lacks.
    let (code, out, _) = boxr(
        &env.store,
        &[
            "exec",
            "box",
            "sh",
            "-c",
            "mount -t tmpfs none /mnt 2>&1; echo rc=$?",
        ],
    );
    assert_eq!(code, 0);
    assert!(out.contains("rc=") && !out.contains("rc=0"), "{out}");
    // Exit codes, users, environment, stdin.
    assert_eq!(
        boxr(&env.store, &["exec", "box", "sh", "-c", "exit 3"]).0,
        3
    );
    assert_eq!(
        env.ok(&["exec", "-u", "nobody", "box", "id", "-u"]),
        "65534\n"
    );
    assert_eq!(
        env.ok(&[
            "exec",
            "-e",
            "GREETING=hi",
            "box",
            "sh",
            "-c",
            "echo $GREETING"
        ]),
        "hi\n"
    );
    assert_eq!(boxr(&env.store, &["exec", "box", "nosuchcommand"]).0, 127);
    // While an exec runs, the `boxr exec` process is the exec helper, in the host's PID
    // namespace; what it forked into the container's is the command, exec'd by boxr-init: no
    // process of the container runs a file of boxr's.
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_boxr"));
    let runtime = std::path::Path::new(env!("CARGO_BIN_EXE_boxr-sandbox"));
    let mut child = std::process::Command::new(bin)
        .args(["exec", "box", "sleep", "2"])
        .env("BOXR_ROOT", &env.store)
        .spawn()
        .unwrap();
    let helper = child.id();
    let mut command = None;
    until("the exec'd command", || {
        let kids = fs::read_to_string(format!("/proc/{helper}/task/{helper}/children"))
            .unwrap_or_default();
        command = kids
            .split_whitespace()
            .next()
            .map(str::to_owned)
            .filter(|pid| {
                fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c == "sleep\n")
            });
        command.is_some()
    });
    let command = command.unwrap();
    use std::os::unix::fs::MetadataExt;
    let ino = |p: &str| fs::metadata(p).unwrap().ino();
    // The helper is `boxr exec` itself (it has one thread): a host file, out of the container.
    assert_eq!(
        ino(&format!("/proc/{helper}/exe")),
        ino(bin.to_str().unwrap())
    );
    let exe = ino(&format!("/proc/{command}/exe"));
    assert_ne!(exe, ino(bin.to_str().unwrap()));
    assert_ne!(exe, ino(runtime.to_str().unwrap()));
    assert_ne!(
        fs::read_link(format!("/proc/{helper}/ns/pid")).unwrap(),
        fs::read_link(format!("/proc/{command}/ns/pid")).unwrap(),
        "the helper stays out of the container's PID namespace"
    );
    assert!(child.wait().unwrap().success());
    env.ok(&["rm", "-f", &id]);
    let (code, _, err) = boxr(&env.store, &["exec", &id, "true"]);
    assert_eq!(code, 1, "a missing container exits 1, as with docker");
    assert!(err.contains("no such container"), "{err}");
    env.assert_clean();
}

#[test]
fn pause_stops_a_counter_and_unpause_resumes_it() {
    let Some(env) = Env::new("pause_stops_a_counter_and_unpause_resumes_it") else {
        return;
    };
    let id = env.run_d(&[
        "bb:1",
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done",
    ]);
    // Read from the host, in the container's upper dir (an exec would join the frozen cgroup).
    let file = env
        .store
        .join("containers")
        .join(&id)
        .join("upper/tmp/count");
    let count = || -> u64 {
        fs::read_to_string(&file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    until("the counter", || count() > 2);
    env.ok(&["pause", &id]);
    assert!(env.ok(&["ps"]).contains("(Paused)"));
    let v = env.inspect(&id);
    assert_eq!(v["State"]["Paused"], true);
    let frozen = count();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(count(), frozen, "the counter moved while paused");
    let (code, _, err) = boxr(&env.store, &["pause", &id]);
    assert_eq!(code, 125);
    assert!(err.contains("already paused"), "{err}");
    let (code, _, err) = boxr(&env.store, &["exec", &id, "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("is paused"), "{err}");
    env.ok(&["unpause", &id]);
    until("the counter to move again", || count() > frozen);
    // A paused container can still be stopped (it is thawed for the signal).
    env.ok(&["pause", &id]);
    env.ok(&["stop", "-t", "2", &id]);
    env.ok(&["rm", &id]);
    env.assert_clean();
}

#[test]
fn restart_policies_apply_with_backoff_and_stop_wins() {
    let Some(env) = Env::new("restart_policies_apply_with_backoff_and_stop_wins") else {
        return;
    };
    // on-failure:3: the first run and three restarts (100, 200, 400 ms apart), then it stays.
    let a = env.run_d(&[
        "--restart",
        "on-failure:3",
        "bb:1",
        "sh",
        "-c",
        "echo run; exit 1",
    ]);
    assert_eq!(env.ok(&["wait", &a]), "1\n");
    assert_eq!(env.ok(&["logs", &a]), "run\nrun\nrun\nrun\n");
    let v = env.inspect(&a);
    assert_eq!(v["RestartCount"], 3);
    // on-failure does not restart a success.
    let b = env.run_d(&["--restart", "on-failure", "bb:1", "true"]);
    assert_eq!(env.ok(&["wait", &b]), "0\n");
    // always: a killed container comes back (another init), a stopped one stays down.
    let c = env.run_d(&["--restart", "always", "bb:1", "sleep", "1000"]);
    let pid = |env: &Env| -> i64 {
        let v = env.inspect(&c);
        v["State"]["Pid"].as_i64().unwrap_or(0)
    };
    until("the first start", || pid(&env) > 0);
    let first = pid(&env);
    env.ok(&["kill", &c]);
    until("a restart", || {
        let p = pid(&env);
        p > 0 && p != first
    });
    env.ok(&["stop", "-t", "1", &c]);
    assert_eq!(env.ok(&["wait", &c]), "143\n");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pid(&env), 0, "a stopped container was restarted");
    // --restart needs -d, and does not go with --rm.
    let (code, _, err) = boxr(&env.store, &["run", "--restart", "always", "bb:1", "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("needs -d"), "{err}");
    let (code, _, err) = boxr(
        &env.store,
        &["run", "-d", "--rm", "--restart", "always", "bb:1", "true"],
    );
    assert_eq!(code, 125);
    assert!(err.contains("do not go together"), "{err}");
    // update --restart: the running monitor applies the new policy from the next end on.
    let d = env.run_d(&["bb:1", "sleep", "1000"]);
    let d_pid = |env: &Env| env.inspect(&d)["State"]["Pid"].as_i64().unwrap_or(0);
    until("d's start", || d_pid(&env) > 0);
    env.ok(&["update", "--restart", "always", &d]);
    let first = d_pid(&env);
    env.ok(&["kill", &d]);
    until("d's restart", || {
        let p = d_pid(&env);
        p > 0 && p != first
    });
    env.ok(&["update", "--restart", "no", &d]);
    env.ok(&["kill", &d]);
    assert_eq!(env.ok(&["wait", &d]), "137\n");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(d_pid(&env), 0, "restarted after --restart no");
    // A foreground container has no monitor to apply a policy.
    let (code, _, _) = boxr(&env.store, &["run", "--name", "fg", "bb:1", "true"]);
    assert_eq!(code, 0);
    let (code, _, err) = boxr(&env.store, &["update", "--restart", "always", "fg"]);
    assert_eq!(code, 125);
    assert!(err.contains("detached"), "{err}");
    env.ok(&["rm", &a, &b, &c, &d, "fg"]);
    env.assert_clean();
}

#[test]
fn top_and_stats_read_the_container_s_cgroup() {
    let Some(env) = Env::new("top_and_stats_read_the_container_s_cgroup") else {
        return;
    };
    let id = env.run_d(&[
        "--name",
        "busy",
        "-m",
        "64m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "20",
        "bb:1",
        "sh",
        "-c",
        "while :; do :; done",
    ]);
    // The init starts the command a moment after `run -d` returns.
    until("the command in top", || {
        env.ok(&["top", "busy"])
            .contains("sh -c while :; do :; done")
    });
    let top = env.ok(&["top", "busy"]);
    assert!(
        top.contains("boxr-init"),
        "the init is in the container's cgroup too:\n{top}"
    );
    let stats = env.ok(&["stats", "--no-stream", "busy"]);
    let row = stats.lines().find(|l| l.starts_with(&id[..12])).unwrap();
    assert!(row.contains("/ 64.0MiB"), "{stats}");
    let cpu: f64 = row
        .split_whitespace()
        .find_map(|w| w.strip_suffix('%'))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (15.0..=85.0).contains(&cpu),
        "--cpus 0.5 and stats says {cpu}%"
    );
    // JSON lines and Go templates, with docker's keys.
    let json: serde_json::Value = serde_json::from_str(
        env.ok(&["stats", "--no-stream", "--format", "json", "busy"])
            .trim(),
    )
    .unwrap();
    assert_eq!(json["Name"], "busy");
    assert!(
        json["MemUsage"].as_str().unwrap().ends_with("/ 64.0MiB"),
        "{json}"
    );
    let line = env.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.PIDs}}",
        "busy",
    ]);
    assert!(
        line.starts_with("busy ")
            && line
                .trim_end()
                .split(' ')
                .nth(1)
                .unwrap()
                .parse::<u32>()
                .unwrap()
                >= 2,
        "{line}"
    );
    env.ok(&["rm", "-f", "busy"]);
    env.assert_clean();
}

#[test]
fn logs_rotate_by_size() {
    let Some(env) = Env::new("logs_rotate_by_size") else {
        return;
    };
    let id = env.run_d(&[
        "--log-opt",
        "max-size=4k",
        "--log-opt",
        "max-file=3",
        "bb:1",
        "sh",
        "-c",
        "i=0; while [ $i -lt 400 ]; do echo line-$i; i=$((i+1)); done",
    ]);
    assert_eq!(env.ok(&["wait", &id]), "0\n");
    let dir = env.store.join("containers").join(&id);
    for f in ["container.log", "container.log.1", "container.log.2"] {
        let len = fs::metadata(dir.join(f)).unwrap().len();
        assert!(len <= 4096, "{f} is {len} bytes");
    }
    assert!(
        !dir.join("container.log.3").exists(),
        "max-file=3 keeps 3 files"
    );
    // What is kept reads back in order and ends with the last line; the oldest lines are gone.
    let out = env.ok(&["logs", &id]);
    let nums: Vec<u32> = out
        .lines()
        .map(|l| l.strip_prefix("line-").unwrap().parse().unwrap())
        .collect();
    assert_eq!(*nums.last().unwrap(), 399);
    assert!(nums[0] > 0, "nothing was rotated away");
    assert!(
        nums.windows(2).all(|w| w[1] == w[0] + 1),
        "out of order: {nums:?}"
    );
    let (code, _, err) = boxr(
        &env.store,
        &["run", "-d", "--log-opt", "max-size=1", "bb:1", "true"],
    );
    assert_eq!(code, 125);
    assert!(err.contains("max-size"), "{err}");
    env.ok(&["rm", &id]);
    env.assert_clean();
}

#[test]
fn events_record_what_happened_and_follow() {
    let Some(env) = Env::new("events_record_what_happened_and_follow") else {
        return;
    };
    // A follower started first sees the events as they come.
    struct Follower(std::process::Child);
    impl Drop for Follower {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut follower = Follower(
        std::process::Command::new(env!("CARGO_BIN_EXE_boxr"))
            .args(["events", "--filter", "event=die", "--format", "json"])
            .env("BOXR_ROOT", &env.store)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let id = env.run_d(&["--name", "ev", "bb:1", "sleep", "100"]);
    env.ok(&["pause", "ev"]);
    env.ok(&["unpause", "ev"]);
    env.ok(&["exec", "ev", "true"]);
    env.ok(&["rm", "-f", "ev"]);
    assert_eq!(
        boxr(&env.store, &["run", "--rm", "bb:1", "sh", "-c", "exit 4"]).0,
        4
    );
    let all = env.ok(&["events", "--until", "now", "--format", "json"]);
    let actions: Vec<(String, String)> = all
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["id"].as_str().unwrap().to_owned(),
                v["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let of = |id: &str| -> Vec<&str> {
        actions
            .iter()
            .filter(|(i, _)| i == id)
            .map(|(_, a)| a.as_str())
            .collect()
    };
    assert_eq!(
        of(&id),
        [
            "create",
            "start",
            "pause",
            "unpause",
            "exec_start",
            "die",
            "destroy"
        ]
    );
    let other = actions.iter().find(|(i, _)| *i != id).unwrap().0.clone();
    assert_eq!(
        of(&other),
        ["create", "start", "die"],
        "a foreground --rm container"
    );
    let filtered = env.ok(&["events", "--until", "now", "--filter", "container=ev"]);
    assert_eq!(filtered.lines().count(), 7, "{filtered}");
    // The follower saw both deaths, with their exit codes.
    let mut seen = String::new();
    let mut out = follower.0.stdout.take().unwrap();
    let mut buf = [0u8; 4096];
    while seen.lines().count() < 2 {
        let n = std::io::Read::read(&mut out, &mut buf).unwrap();
        assert!(n > 0);
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    drop(follower);
    assert!(
        seen.contains("\"exitCode\":137") && seen.contains("\"exitCode\":4"),
        "{seen}"
    );
    env.assert_clean();
}

/// The cgroup directories of container `id` that exist, in every hierarchy.
fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    fs::read_dir("/sys/fs/cgroup")
        .map(|d| {
            d.flatten()
                .map(|e| e.path().join("boxr").join(id))
                .chain([PathBuf::from("/sys/fs/cgroup/boxr").join(id)])
                .filter(|p| p.exists())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn attach_relays_input_output_and_the_exit_code() {
    let Some(env) = Env::new("attach_relays_input_output_and_the_exit_code") else {
        return;
    };
    // A start that fails is reported by `run -d` itself, with Docker's exit codes.
    let (code, _, err) = boxr(&env.store, &["run", "-d", "bb:1", "no-such-command"]);
    assert_eq!(code, 127, "{err}");
    assert!(err.contains("no-such-command"), "{err}");
    let (code, _, err) = boxr(&env.store, &["run", "-d", "bb:1", "/etc/passwd"]);
    assert_eq!(code, 126, "{err}");
    let id = env.run_d(&[
        "-i",
        "bb:1",
        "sh",
        "-c",
        "while read l; do echo got:$l; echo err:$l >&2; done; echo bye; exit 5",
    ]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_boxr"))
        .args(["attach", &id])
        .env("BOXR_ROOT", &env.store)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"one\ntwo\n").unwrap();
        // Dropped: the container's stdin ends, and so does its loop.
    }
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(5), "{stdout}{stderr}");
    assert_eq!(stdout, "got:one\ngot:two\nbye\n");
    assert_eq!(stderr, "err:one\nerr:two\n");
    // The log has it all too, and the state agrees.
    assert_eq!(env.ok(&["logs", &id]), "got:one\ngot:two\nbye\n");
    assert_eq!(env.ok(&["wait", &id]), "5\n");
    let (code, _, err) = boxr(&env.store, &["attach", &id]);
    assert_eq!(code, 125, "a stopped container cannot be attached: {err}");
    // As Docker's, the containers that failed to start stay, until removed.
    let all = env.ok(&["ps", "-a", "-q"]);
    assert_eq!(all.lines().count(), 3, "{all}");
    let mut args = vec!["rm"];
    args.extend(all.lines());
    env.ok(&args);
    env.assert_clean();
}

#[test]
fn attach_to_a_tty_passes_the_window_size_and_detaches_on_ctrl_p_ctrl_q() {
    let Some(env) =
        Env::new("attach_to_a_tty_passes_the_window_size_and_detaches_on_ctrl_p_ctrl_q")
    else {
        return;
    };
    let id = env.run_d(&[
        "-i",
        "-t",
        "bb:1",
        "sh",
        "-c",
        "while read l; do echo got:$l; tty; stty size; [ $l = bye ] && exit 3; done",
    ]);
    // Ctrl-P Ctrl-Q leaves the container running.
    let (code, _) = support::on_pty(&env.store, &["attach", &id], "", b"\x10\x11");
    assert_eq!(code, Some(0));
    assert!(env.ok(&["ps", "-q"]).contains(&id[..12]));
    let (code, out) = support::on_pty(&env.store, &["attach", &id], "", b"bye\n");
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("got:bye\n"), "{out}");
    assert!(
        out.contains("/dev/pts/0\n"),
        "the container's own pty: {out}"
    );
    assert!(
        out.contains("33 91\n"),
        "the attached terminal's size: {out}"
    );
    env.ok(&["rm", &id]);
    env.assert_clean();
}

#[test]
fn start_and_restart_keep_the_container_s_files() {
    let Some(env) = Env::new("start_and_restart_keep_the_container_s_files") else {
        return;
    };
    let id = env.run_d(&[
        "bb:1",
        "sh",
        "-c",
        "echo x >> /runs; wc -l < /runs; exec sleep 1000",
    ]);
    let pid = |env: &Env| -> i64 {
        let v = env.inspect(&id);
        v["State"]["Pid"].as_i64().unwrap_or(0)
    };
    let first = pid(&env);
    assert!(first > 0);
    env.ok(&["restart", "-t", "1", &id]);
    let second = pid(&env);
    assert!(
        second > 0 && second != first,
        "a new init: {first} {second}"
    );
    env.ok(&["stop", "-t", "1", &id]);
    assert!(!env.ok(&["ps"]).contains(&id[..12]));
    env.ok(&["start", &id]);
    assert!(env.ok(&["ps"]).contains(&id[..12]));
    // Three runs over the same upper dir.
    until("the third run's output", || {
        env.ok(&["logs", &id]) == "1\n2\n3\n"
    });
    // A container first run in the foreground can be started again, detached.
    let (code, _, err) = boxr(
        &env.store,
        &[
            "run",
            "--name",
            "fg",
            "bb:1",
            "sh",
            "-c",
            "echo x >> /f; wc -l < /f",
        ],
    );
    assert_eq!(code, 0, "{err}");
    env.ok(&["start", "fg"]);
    assert_eq!(env.ok(&["wait", "fg"]), "0\n");
    assert_eq!(env.ok(&["logs", "fg"]), "2\n");
    env.ok(&["rm", "-f", &id, "fg"]);
    assert!(cgroup_dirs(&id).is_empty());
    env.assert_clean();
}

#[test]
fn a_container_whose_processes_all_vanished_is_recovered() {
    let Some(env) = Env::new("a_container_whose_processes_all_vanished_is_recovered") else {
        return;
    };
    let id = env.run_d(&["bb:1", "sleep", "1000"]);
    let v = env.inspect(&id);
    let (monitor, init) = (
        v["State"]["MonitorPid"].as_i64().unwrap() as i32,
        v["State"]["Pid"].as_i64().unwrap() as i32,
    );
    // As after a crash or a reboot: the monitor and the container die with no word.
    for pid in [monitor, init] {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }
    until("the processes to go", || {
        !PathBuf::from(format!("/proc/{init}")).exists()
            && !PathBuf::from(format!("/proc/{monitor}")).exists()
    });
    // The next command tells the truth, and records it.
    let ps = env.ok(&["ps", "-a"]);
    assert!(ps.contains("Exited (255)"), "{ps}");
    let state: serde_json::Value = serde_json::from_slice(
        &fs::read(env.store.join("containers").join(&id).join("state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["Status"], "exited");
    // ... and removes the cgroup that no monitor finished (ARCHITECTURE decision 12).
    assert!(
        cgroup_dirs(&id).is_empty(),
        "the cgroup outlived its processes and the next command: {:?}",
        cgroup_dirs(&id)
    );
    // It can be started again, and removing it removes its cgroup.
    env.ok(&["start", &id]);
    assert!(env.ok(&["ps"]).contains(&id[..12]));
    env.ok(&["rm", "-f", &id]);
    assert!(cgroup_dirs(&id).is_empty(), "{:?}", cgroup_dirs(&id));
    env.assert_clean();
}

#[test]
fn exec_t_gives_the_command_a_terminal_of_the_container() {
    let Some(env) = Env::new("exec_t_gives_the_command_a_terminal_of_the_container") else {
        return;
    };
    let id = env.run_d(&["bb:1", "sleep", "1000"]);
    let (code, out) = support::on_pty(
        &env.store,
        &[
            "exec",
            "-it",
            &id,
            "sh",
            "-c",
            "tty; stty size; echo ready; read l; echo got:$l; exit 4",
        ],
        "ready",
        b"hi\n",
    );
    assert_eq!(code, Some(4), "{out}");
    // The container's own devpts (its init has no terminal: this is the first pty there).
    assert!(out.contains("/dev/pts/0\n"), "{out}");
    assert!(
        out.contains("33 91\n"),
        "the window size is passed on: {out}"
    );
    assert!(out.contains("got:hi\n"), "{out}");
    // Without -t the command has no terminal.
    let (code, out, _) = boxr(&env.store, &["exec", &id, "tty"]);
    assert_eq!((code, out.as_str()), (1, "not a tty\n"));
    env.ok(&["rm", "-f", &id]);
    env.assert_clean();
}

#[test]
fn a_container_shares_the_network_of_a_running_one() {
    let Some(e) = Env::new("a_container_shares_the_network_of_a_running_one") else {
        return;
    };
    // A server on the loopback interface of `web`'s network namespace.
    let web = e.run_d(&[
        "--name",
        "web",
        "--hostname",
        "webhost",
        "bb:1",
        "sh",
        "-c",
        "mkdir -p /www && echo pong > /www/index.html && exec httpd -f -p 127.0.0.1:7000 -h /www",
    ]);
    // Another container reaches it on 127.0.0.1, and has its hostname.
    let client = "hostname; for i in $(seq 100); do wget -qO- http://127.0.0.1:7000/ && exit; sleep 0.1; done; exit 1";
    let (c, out, err) = boxr(
        &e.store,
        &[
            "run",
            "--rm",
            "--network",
            "container:web",
            "bb:1",
            "sh",
            "-c",
            client,
        ],
    );
    assert_eq!((c, out.as_str()), (0, "webhost\npong\n"), "{err}");
    // One that does not share it cannot.
    let (c, _, _) = boxr(
        &e.store,
        &[
            "run",
            "--rm",
            "bb:1",
            "wget",
            "-qO-",
            "http://127.0.0.1:7000/",
        ],
    );
    assert_ne!(c, 0);
    // The namespace is looked up again at every start: after `web` restarts (another init, the
    // same name), a stopped sharer started again joins the new one.
    let netns = |id: &str| e.ok(&["exec", id, "readlink", "/proc/self/ns/net"]);
    let sidecar = e.run_d(&["--network", "container:web", "bb:1", "sleep", "1000"]);
    assert_eq!(netns(&sidecar), netns(&web));
    let web_id = e.inspect("web")["Id"].as_str().unwrap().to_owned();
    assert_eq!(
        e.inspect(&sidecar)["HostConfig"]["NetworkMode"],
        format!("container:{web_id}")
    );
    e.ok(&["stop", "-t", "0", &sidecar]);
    let before = e.inspect("web")["State"]["Pid"].clone();
    e.ok(&["restart", "-t", "0", "web"]);
    assert_ne!(
        e.inspect("web")["State"]["Pid"],
        before,
        "web runs a new init"
    );
    e.ok(&["start", &sidecar]);
    assert_eq!(netns(&sidecar), netns(&web));
    let fetch =
        "for i in $(seq 100); do wget -qO- http://127.0.0.1:7000/ && exit; sleep 0.1; done; exit 1";
    assert_eq!(e.ok(&["exec", &sidecar, "sh", "-c", fetch]), "pong\n");
    // Refused: a hostname of its own, and a container that does not run.
    let (c, _, err) = boxr(
        &e.store,
        &[
            "run",
            "--rm",
            "--hostname",
            "x",
            "--network",
            "container:web",
            "bb:1",
            "true",
        ],
    );
    assert_eq!(c, 125);
    assert!(err.contains("conflicting options"), "{err}");
    e.ok(&["stop", "-t", "0", "web"]);
    let (c, _, err) = boxr(
        &e.store,
        &["run", "--rm", "--network", "container:web", "bb:1", "true"],
    );
    assert_eq!(c, 125);
    assert!(err.contains("it is not running"), "{err}");
    // Started by hand after `web` stopped, the sharer cannot start either.
    e.ok(&["stop", "-t", "0", &sidecar]);
    let (c, _, err) = boxr(&e.store, &["start", &sidecar]);
    assert_ne!(c, 0);
    assert!(err.contains("not running"), "{err}");
    e.ok(&["rm", "-f", &sidecar, "web"]);
    e.assert_clean();
}

#[test]
fn stop_sends_the_stop_signal_and_waits_the_stop_timeout() {
    let Some(e) = Env::new("stop_sends_the_stop_signal_and_waits_the_stop_timeout") else {
        return;
    };
    // The command hears the container's stop signal (through boxr's init) and exits with 3.
    let id = e.run_d(&[
        "--stop-signal",
        "SIGUSR1",
        "bb:1",
        "sh",
        "-c",
        "trap 'echo got-usr1; exit 3' USR1; echo ready; while true; do sleep 0.1; done",
    ]);
    until("the trap", || e.ok(&["logs", &id]).contains("ready"));
    e.ok(&["stop", &id]);
    assert_eq!(e.inspect(&id)["State"]["ExitCode"], 3);
    assert!(e.ok(&["logs", &id]).contains("got-usr1"));
    // One that ignores it is killed after its --stop-timeout, not the default 10 s.
    let id2 = e.run_d(&[
        "--stop-timeout",
        "1",
        "bb:1",
        "sh",
        "-c",
        "trap '' TERM; echo ready; while true; do sleep 0.1; done",
    ]);
    until("the trap", || e.ok(&["logs", &id2]).contains("ready"));
    let started = Instant::now();
    e.ok(&["stop", &id2]);
    let took = started.elapsed();
    assert_eq!(e.inspect(&id2)["State"]["ExitCode"], 137);
    assert!(took < Duration::from_secs(8), "stop took {took:?}");
    // A real-time stop signal (systemd's is SIGRTMIN+3) reaches the command through the init,
    // and `kill` sends real-time signals too.
    let rt = e.run_d(&[
        "--stop-signal",
        "SIGRTMIN+3",
        "bb:1",
        "sh",
        "-c",
        "trap 'exit 7' 37; echo ready; while true; do sleep 0.1; done",
    ]);
    until("the trap", || e.ok(&["logs", &rt]).contains("ready"));
    e.ok(&["stop", &rt]);
    assert_eq!(e.inspect(&rt)["State"]["ExitCode"], 7);
    let plain = e.run_d(&["bb:1", "sleep", "1000"]);
    e.ok(&["kill", "-s", "RTMIN+1", &plain]);
    e.ok(&["wait", &plain]);
    assert_eq!(e.inspect(&plain)["State"]["ExitCode"], 128 + 35);
    e.ok(&["rm", &rt, &plain]);
    // The image's StopSignal (here set by a commit) is the default.
    let base = e.run_d(&["bb:1", "true"]);
    e.ok(&["wait", &base]);
    e.ok(&["commit", "-c", "STOPSIGNAL SIGUSR1", &base, "usr1:1"]);
    let id3 = e.run_d(&[
        "usr1:1",
        "sh",
        "-c",
        "trap 'exit 5' USR1; echo ready; while true; do sleep 0.1; done",
    ]);
    until("the trap", || e.ok(&["logs", &id3]).contains("ready"));
    e.ok(&["stop", &id3]);
    assert_eq!(e.inspect(&id3)["State"]["ExitCode"], 5);
    e.ok(&["rm", &base, &id3]);
    let (c, _, err) = boxr(
        &e.store,
        &["run", "-d", "--stop-signal", "NOPE", "bb:1", "true"],
    );
    assert_eq!(c, 125);
    assert!(err.contains("--stop-signal NOPE"), "{err}");
    e.ok(&["rm", &id, &id2]);
    e.assert_clean();
}

#[test]
fn diff_and_commit_take_the_container_s_own_changes() {
    let Some(e) = Env::new("diff_and_commit_take_the_container_s_own_changes") else {
        return;
    };
    let host = e._dir.path().join("host");
    fs::create_dir(&host).unwrap();
    let vol = format!("{}:/mnt/host", host.display());
    let id = e.run_d(&[
        "-v",
        &vol,
        "--tmpfs",
        "/run/x",
        "bb:1",
        "sh",
        "-c",
        "echo hi > /root/new; echo more >> /etc/passwd; rm /bin/vi; mkdir -p /data/d; \
         touch /data/d/f /mnt/host/not-in-the-layer; echo ready; exec sleep 1000",
    ]);
    until("the changes", || e.ok(&["logs", &id]).contains("ready"));
    // The mount points the sandbox made (/etc/hostname, /mnt/host, /run/x, ...) are no change.
    assert_eq!(
        e.ok(&["diff", &id]),
        "C /bin\nD /bin/vi\nA /data\nA /data/d\nA /data/d/f\nC /etc\nC /etc/passwd\nC /root\nA /root/new\n"
    );
    let image_id = e.ok(&[
        "commit",
        "-m",
        "my change",
        "-a",
        "me",
        "-c",
        r#"CMD ["cat", "/root/new"]"#,
        "-c",
        "ENV MADE_BY=commit",
        &id,
        "snap:1",
    ]);
    assert!(image_id.starts_with("sha256:"), "{image_id}");
    // Frozen while read, running again after.
    e.ok(&["exec", &id, "true"]);
    assert_eq!(e.inspect(&id)["State"]["Paused"], false);
    // A container of the new image has the changes, and the new config.
    let (c, out, err) = boxr(&e.store, &["run", "--rm", "snap:1"]);
    assert_eq!((c, out.as_str()), (0, "hi\n"), "{err}");
    let (c, out, err) = boxr(
        &e.store,
        &[
            "run",
            "--rm",
            "snap:1",
            "sh",
            "-c",
            "test -e /bin/vi || echo no-vi; tail -n 1 /etc/passwd; ls /data/d; echo $MADE_BY",
        ],
    );
    assert_eq!((c, out.as_str()), (0, "no-vi\nmore\nf\ncommit\n"), "{err}");
    // The layer holds the changes alone: no mount point, nothing of the bind mount.
    let img: serde_json::Value = serde_json::from_str(&e.ok(&["inspect", "snap:1"])).unwrap();
    let img = &img[0];
    assert_eq!(img["Author"], "me");
    let history = img["History"].as_array().unwrap();
    assert_eq!(history.last().unwrap()["comment"], "my change");
    let layers = img["RootFS"]["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    let hex = layers[1].as_str().unwrap().trim_start_matches("sha256:");
    let root = e.store.join("layers").join(hex).join("root");
    let mut found: Vec<String> = walk(&root);
    found.sort();
    assert_eq!(
        found,
        [
            "bin",
            "bin/vi",
            "data",
            "data/d",
            "data/d/f",
            "etc",
            "etc/passwd",
            "root",
            "root/new"
        ]
    );
    // history: newest first, each step with its layer's size; the commit's comment.
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&e.ok(&["history", "--format", "json", "snap:1"])).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["comment"], "my change");
    assert!(
        rows[0]["created_by"]
            .as_str()
            .unwrap()
            .starts_with("sh -c echo hi")
    );
    assert!(rows[0]["size"].as_u64().unwrap() > 0);
    assert_eq!(rows[1]["created_by"], "boxr import");
    let table = e.ok(&["history", "snap:1"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("IMAGE") && lines[0].contains("CREATED BY"),
        "{table}"
    );
    assert!(
        lines[1].starts_with(&image_id.trim()["sha256:".len()..][..12]),
        "{table}"
    );
    assert!(
        lines[1].contains("my change") && lines[1].contains('…'),
        "{table}"
    );
    assert!(lines[2].starts_with("<missing>"), "{table}");
    // A container that changed nothing gives an image with no new layer.
    let idle = e.run_d(&["bb:1", "sleep", "1000"]);
    assert_eq!(e.ok(&["diff", &idle]), "");
    e.ok(&["commit", &idle, "idle:1"]);
    let img: serde_json::Value = serde_json::from_str(&e.ok(&["inspect", "idle:1"])).unwrap();
    assert_eq!(img[0]["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    assert_eq!(
        img[0]["History"].as_array().unwrap().last().unwrap()["empty_layer"],
        true
    );
    // A bad change is refused, and no image is named.
    let (c, _, err) = boxr(&e.store, &["commit", "-c", "RUN make", &idle, "bad:1"]);
    assert_eq!(c, 125);
    assert!(err.contains("cannot be changed"), "{err}");
    let (c, _, _) = boxr(&e.store, &["inspect", "bad:1"]);
    assert_ne!(c, 0);
    // In a user namespace the files belong to host ids; the layer has the container's.
    let mapped = e.run_d(&[
        "--uidmap",
        "0:200000:65536",
        "bb:1",
        "sh",
        "-c",
        "touch /root/roots /root/users && chown 1000:1000 /root/users && echo ready && exec sleep 1000",
    ]);
    until("the files", || e.ok(&["logs", &mapped]).contains("ready"));
    e.ok(&["commit", &mapped, "mapped:1"]);
    let (c, out, err) = boxr(
        &e.store,
        &[
            "run",
            "--rm",
            "mapped:1",
            "stat",
            "-c",
            "%n %u %g",
            "/root/roots",
            "/root/users",
        ],
    );
    assert_eq!(
        (c, out.as_str()),
        (0, "/root/roots 0 0\n/root/users 1000 1000\n"),
        "{err}"
    );
    e.ok(&["rm", "-f", &id, &idle, &mapped]);
    e.assert_clean();
}

/// Every path below `root`, relative to it.
fn walk(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(d) = dirs.pop() {
        for entry in fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            if entry.file_type().unwrap().is_dir() {
                dirs.push(p);
            }
        }
    }
    out
}

#[test]
fn cp_copies_both_ways_and_stays_inside_the_container() {
    let Some(e) = Env::new("cp_copies_both_ways_and_stays_inside_the_container") else {
        return;
    };
    let dir = e._dir.path();
    let host_in = dir.join("in");
    fs::create_dir_all(host_in.join("sub")).unwrap();
    fs::write(host_in.join("a"), "a\n").unwrap();
    fs::write(host_in.join("sub/b"), "b\n").unwrap();
    // /evil leads to / inside: a copy through it must stay in the container.
    e.run_d(&[
        "--name",
        "c1",
        "bb:1",
        "sh",
        "-c",
        "[ -e /data ] || { mkdir /data && echo x > /data/x && ln -s /etc /data/link \
         && ln -s / /evil && echo inside > /etc/motd && cp /bin/busybox /data/suid \
         && chmod 4755 /data/suid && mknod /data/null c 1 3; }; echo ready; exec sleep 1000",
    ]);
    until("the files", || e.ok(&["logs", "c1"]).contains("ready"));
    // Out: a directory as itself, links as links, owned by the user running boxr: no set-id
    // bits then, and no device node the container made ever reaches the host.
    let out = dir.join("out");
    let (c, _, err) = boxr(&e.store, &["cp", "c1:/data", out.to_str().unwrap()]);
    assert_eq!(c, 0, "{err}");
    assert!(err.contains("null: a device node, not copied"), "{err}");
    assert_eq!(fs::read_to_string(out.join("x")).unwrap(), "x\n");
    assert_eq!(
        fs::read_link(out.join("link")).unwrap(),
        PathBuf::from("/etc")
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&out.join("suid")), 0o755);
    assert!(fs::symlink_metadata(out.join("null")).is_err());
    // -a keeps owners, and set-id bits with them.
    let kept = dir.join("kept");
    e.ok(&["cp", "-a", "c1:/data/suid", kept.to_str().unwrap()]);
    assert_eq!(mode(&kept), 0o4755);
    // Into an existing directory: the directory itself goes in; a file into a new name.
    e.ok(&["cp", host_in.to_str().unwrap(), "c1:/data"]);
    e.ok(&["cp", host_in.join("a").to_str().unwrap(), "c1:/newfile"]);
    let listing = e.ok(&[
        "exec",
        "c1",
        "sh",
        "-c",
        "find /data/in /newfile | sort; stat -c '%u %g' /data/in/sub/b",
    ]);
    assert_eq!(
        listing,
        "/data/in\n/data/in/a\n/data/in/sub\n/data/in/sub/b\n/newfile\n0 0\n"
    );
    // A symlink in the container resolves inside it, in both directions.
    let sentinel = PathBuf::from("/etc/boxr-cp-escape-test");
    let _ = fs::remove_file(&sentinel);
    e.ok(&[
        "cp",
        host_in.join("a").to_str().unwrap(),
        "c1:/evil/etc/boxr-cp-escape-test",
    ]);
    assert!(!sentinel.exists(), "cp wrote to the host's /etc");
    assert_eq!(
        e.ok(&["exec", "c1", "cat", "/etc/boxr-cp-escape-test"]),
        "a\n"
    );
    let motd = dir.join("motd");
    e.ok(&["cp", "c1:/data/link/motd", motd.to_str().unwrap()]);
    assert_eq!(fs::read_to_string(&motd).unwrap(), "inside\n");
    // Errors: a missing source, two host paths, a directory onto a file.
    let (c, _, err) = boxr(
        &e.store,
        &["cp", "c1:/nope", dir.join("x").to_str().unwrap()],
    );
    assert_eq!(c, 125);
    assert!(err.contains("No such file"), "{err}");
    let (c, _, err) = boxr(&e.store, &["cp", "/etc/hostname", "/tmp/x"]);
    assert_eq!(c, 125);
    assert!(err.contains("CONTAINER:PATH"), "{err}");
    let (c, _, err) = boxr(&e.store, &["cp", host_in.to_str().unwrap(), "c1:/newfile"]);
    assert_eq!(c, 125);
    assert!(err.contains("to the file"), "{err}");
    // A stopped container: its own filesystem, through its overlay.
    e.ok(&["stop", "-t", "0", "c1"]);
    e.ok(&[
        "cp",
        host_in.join("sub/b").to_str().unwrap(),
        "c1:/stopped-b",
    ]);
    let back = dir.join("back");
    e.ok(&["cp", "c1:/data/x", back.to_str().unwrap()]);
    assert_eq!(fs::read_to_string(&back).unwrap(), "x\n");
    e.ok(&["start", "c1"]);
    assert_eq!(e.ok(&["exec", "c1", "cat", "/stopped-b"]), "b\n");
    e.ok(&["rm", "-f", "c1"]);
    e.assert_clean();
}

#[test]
fn create_then_start_attached_misses_nothing() {
    let Some(e) = Env::new("create_then_start_attached_misses_nothing") else {
        return;
    };
    e.ok(&[
        "create",
        "--name",
        "made",
        "bb:1",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert!(e.ok(&["ps", "-a"]).contains("Created"));
    assert_eq!(e.inspect("made")["State"]["Status"], "created");
    // `start -a` is attached before the command runs: a short command's output is all there,
    // every time, and its exit code comes back.
    for _ in 0..3 {
        let (c, out, err) = boxr(&e.store, &["start", "-a", "made"]);
        assert_eq!((c, out.as_str()), (3, "out\n"), "{err}");
        assert!(err.contains("err"), "{err}");
    }
    // With --rm it is gone after, and its code still comes back.
    let id = e.ok(&["create", "--rm", "bb:1", "sh", "-c", "echo hi; exit 4"]);
    let (c, out, err) = boxr(&e.store, &["start", "-a", id.trim()]);
    assert_eq!((c, out.as_str()), (4, "hi\n"), "{err}");
    until("the removal", || {
        !e.ok(&["ps", "-aq"]).contains(&id.trim()[..12])
    });
    // A plain start runs it detached.
    let id = e.ok(&["create", "bb:1", "sleep", "1000"]);
    e.ok(&["start", id.trim()]);
    assert_eq!(e.inspect(id.trim())["State"]["Running"], true);
    // Bad input creates nothing.
    let (c, _, _) = boxr(&e.store, &["create", "nosuchimage:1"]);
    assert_eq!(c, 125);
    e.ok(&["rm", "-f", "made", id.trim()]);
    e.assert_clean();
}

#[test]
fn health_checks_make_a_container_healthy_then_unhealthy() {
    let Some(e) = Env::new("health_checks_make_a_container_healthy_then_unhealthy") else {
        return;
    };
    let health = |id: &str| e.inspect(id)["State"]["Health"].clone();
    let status = |id: &str| health(id)["Status"].as_str().unwrap_or("").to_owned();
    let h = e.run_d(&[
        "--health-cmd",
        "test -e /tmp/ok && echo fine",
        "--health-interval",
        "100ms",
        "--health-retries",
        "2",
        "bb:1",
        "sh",
        "-c",
        "touch /tmp/ok; exec sleep 1000",
    ]);
    until("healthy", || status(&h) == "healthy");
    let last = health(&h)["Log"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (last["ExitCode"].as_i64(), last["Output"].as_str()),
        (Some(0), Some("fine\n"))
    );
    assert!(e.ok(&["ps"]).contains("(healthy)"));
    // The check runs in the container: what happens there decides.
    e.ok(&["exec", &h, "rm", "/tmp/ok"]);
    until("unhealthy", || status(&h) == "unhealthy");
    assert!(health(&h)["FailingStreak"].as_u64().unwrap() >= 2);
    assert!(health(&h)["Log"].as_array().unwrap().len() <= 5);
    assert!(e.ok(&["ps"]).contains("(unhealthy)"));
    let events = e.ok(&[
        "events",
        "--until",
        "now",
        "--filter",
        &format!("container={h}"),
    ]);
    assert!(events.contains("health_status: healthy"), "{events}");
    assert!(events.contains("health_status: unhealthy"), "{events}");
    // A check past its timeout is killed and fails.
    let slow = e.run_d(&[
        "--health-cmd",
        "sleep 10",
        "--health-timeout",
        "100ms",
        "--health-interval",
        "100ms",
        "--health-retries",
        "1",
        "bb:1",
        "sleep",
        "1000",
    ]);
    until("unhealthy", || status(&slow) == "unhealthy");
    let last = health(&slow)["Log"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["ExitCode"], -1);
    assert!(
        last["Output"]
            .as_str()
            .unwrap()
            .contains("exceeded timeout"),
        "{last}"
    );
    // Failures in the start period do not count.
    let early = e.run_d(&[
        "--health-cmd",
        "false",
        "--health-start-period",
        "1m",
        "--health-interval",
        "100ms",
        "--health-retries",
        "1",
        "bb:1",
        "sleep",
        "1000",
    ]);
    until("a failed check", || {
        health(&early)["Log"]
            .as_array()
            .is_some_and(|l| l.len() >= 2)
    });
    assert_eq!(status(&early), "starting");
    assert_eq!(health(&early)["FailingStreak"], 0);
    // Without a health check there is no Health; --no-healthcheck takes no --health-*.
    let plain = e.run_d(&["bb:1", "sleep", "1000"]);
    assert!(e.inspect(&plain)["State"]["Health"].is_null());
    let (c, _, err) = boxr(
        &e.store,
        &[
            "run",
            "-d",
            "--no-healthcheck",
            "--health-cmd",
            "true",
            "bb:1",
            "true",
        ],
    );
    assert_eq!(c, 125);
    assert!(err.contains("conflicts"), "{err}");
    e.ok(&["rm", "-f", &h, &slow, &early, &plain]);
    e.assert_clean();
}

#[test]
fn pid_ipc_and_uts_namespaces_can_be_the_host_s_or_another_container_s() {
    let Some(e) = Env::new("pid_ipc_and_uts_namespaces_can_be_the_host_s_or_another_container_s")
    else {
        return;
    };
    let ns = |kind: &str| {
        fs::read_link(format!("/proc/self/ns/{kind}"))
            .unwrap()
            .display()
            .to_string()
    };
    let hostname = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let marker = format!("/dev/shm/boxr-test-{}", std::process::id());
    fs::write(&marker, "host\n").unwrap();
    // The host's: its PID namespace (the init is not PID 1), IPC namespace and /dev/shm, and
    // hostname.
    let (c, out, err) = boxr(
        &e.store,
        &[
            "run",
            "--rm",
            "--pid",
            "host",
            "--ipc",
            "host",
            "--uts",
            "host",
            "bb:1",
            "sh",
            "-c",
            &format!(
                "for k in pid ipc uts; do readlink /proc/self/ns/$k; done; hostname; \
                 cat /etc/hostname {marker}; test $$ != 1 && echo not-pid-1"
            ),
        ],
    );
    let _ = fs::remove_file(&marker);
    assert_eq!(c, 0, "{err}");
    assert_eq!(
        out,
        format!(
            "{}\n{}\n{}\n{hostname}{hostname}host\nnot-pid-1\n",
            ns("pid"),
            ns("ipc"),
            ns("uts")
        )
    );
    // What the command leaves behind in the host's PID namespace still ends with it.
    let (c, _, err) = boxr(
        &e.store,
        &[
            "run",
            "--rm",
            "--pid",
            "host",
            "bb:1",
            "sh",
            "-c",
            "sleep 12399 & exit 0",
        ],
    );
    assert_eq!(c, 0, "{err}");
    let left = fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .any(|p| fs::read(p.path().join("cmdline")).is_ok_and(|c| c == b"sleep\x0012399\x00"));
    assert!(!left, "a process of the container outlived it");
    // Another container's: its processes, its IPC namespace and its /dev/shm, both ways.
    let x1 = e.run_d(&[
        "--name",
        "x1",
        "bb:1",
        "sh",
        "-c",
        "echo m > /dev/shm/marker; echo ready; exec sleep 1000",
    ]);
    until("x1", || e.ok(&["logs", &x1]).contains("ready"));
    let (c, out, err) = boxr(
        &e.store,
        &[
            "run",
            "--rm",
            "--pid",
            "container:x1",
            "--ipc",
            "container:x1",
            "bb:1",
            "sh",
            "-c",
            "ps -o comm | grep -c '^sleep$'; cat /dev/shm/marker; echo j > /dev/shm/j; \
             readlink /proc/self/ns/ipc",
        ],
    );
    assert_eq!(c, 0, "{err}");
    let x1_ipc = e.ok(&["exec", "x1", "readlink", "/proc/self/ns/ipc"]);
    assert_eq!(out, format!("1\nm\n{x1_ipc}"));
    assert_eq!(e.ok(&["exec", "x1", "cat", "/dev/shm/j"]), "j\n");
    // Refused.
    for (args, says) in [
        (&["--uts", "host", "--hostname", "x"][..], "conflicting"),
        (&["--pid", "foo"], "--pid foo"),
        (&["--uts", "container:x1"], "--uts container:x1"),
        (&["--ipc", "container:nosuch"], "no such container"),
        (
            &["--uidmap", "0:200000:65536", "--pid", "host"],
            "user namespace",
        ),
    ] {
        let (c, _, err) = boxr(
            &e.store,
            &[&["run", "--rm"][..], args, &["bb:1", "true"]].concat(),
        );
        assert_eq!(c, 125, "{args:?}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    e.ok(&["stop", "-t", "0", "x1"]);
    let (c, _, err) = boxr(
        &e.store,
        &["run", "--rm", "--pid", "container:x1", "bb:1", "true"],
    );
    assert_eq!(c, 125);
    assert!(err.contains("not running"), "{err}");
    e.ok(&["rm", "x1"]);
    e.assert_clean();
}

#[test]
fn ps_filters_and_rename() {
    let Some(e) = Env::new("ps_filters_and_rename") else {
        return;
    };
    let ok = e.run_d(&["--name", "good", "bb:1", "true"]);
    let bad = e.run_d(&["--name", "bad", "bb:1", "sh", "-c", "exit 3"]);
    let labels = e._dir.path().join("labels");
    fs::write(&labels, "# a comment\ntier=db\nteam=core\n").unwrap();
    let up = e.run_d(&[
        "--name",
        "up",
        "--label-file",
        labels.to_str().unwrap(),
        "-l",
        "tier=web",
        "-l",
        "solo",
        "bb:1",
        "sleep",
        "1000",
    ]);
    e.ok(&["wait", &ok, &bad]);
    let names = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["ps", "--format", "json"];
        all.extend_from_slice(args);
        e.ok(&all)
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["Names"].as_str().unwrap().to_owned()
            })
            .collect()
    };
    assert_eq!(names(&[]), ["up"]);
    // A status filter looks at every container, as in Docker; keys add up, values of one
    // key are alternatives.
    assert_eq!(names(&["-f", "status=exited"]), ["bad", "good"]);
    assert_eq!(names(&["-f", "exited=3"]), ["bad"]);
    assert_eq!(names(&["-a", "-f", "name=o"]), ["good"]);
    assert_eq!(
        names(&["-a", "-f", "status=exited", "-f", "status=running"]),
        ["up", "bad", "good"]
    );
    assert_eq!(
        names(&["-a", "-f", "ancestor=bb:1", "-f", "status=running"]),
        ["up"]
    );
    assert_eq!(names(&["-a", "-f", &format!("id={}", &bad[..8])]), ["bad"]);
    assert_eq!(names(&["-a", "-f", "health=none", "-f", "name=up"]), ["up"]);
    assert_eq!(names(&["-a", "-f", "label=tier=web"]), ["up"]);
    assert_eq!(names(&["-a", "-f", "label=tier=db"]), Vec::<String>::new());
    // Every label filter must match, as in Docker.
    assert_eq!(
        names(&["-a", "-f", "label=solo", "-f", "label=team=core"]),
        ["up"]
    );
    assert_eq!(
        names(&["-a", "-f", "label=solo", "-f", "label=tier=db"]),
        Vec::<String>::new()
    );
    assert_eq!(
        e.inspect("up")["Config"]["Labels"],
        serde_json::json!({"solo": "", "team": "core", "tier": "web"})
    );
    // Go templates, as scripts use them with docker.
    assert_eq!(
        e.ok(&[
            "inspect",
            "-f",
            "{{.State.Running}} {{.Name}} {{index .Config.Labels \"tier\"}}",
            "up",
            "bad"
        ]),
        "true /up web\nfalse /bad <no value>\n"
    );
    assert_eq!(
        e.ok(&["ps", "--format", "{{.Names}}:{{.State}}"]),
        "up:running\n"
    );
    let (c, _, err) = boxr(&e.store, &["inspect", "-f", "{{.State.Pid", "up"]);
    assert_eq!(c, 125);
    assert!(err.contains("unclosed"), "{err}");
    assert_eq!(names(&["-l"]), ["up"]);
    assert_eq!(names(&["-n", "2"]), ["up", "bad"]);
    let (c, _, err) = boxr(&e.store, &["ps", "-f", "color=red"]);
    assert_eq!(c, 125);
    assert!(err.contains("unknown key"), "{err}");
    // rename: the new name finds it, the old one is free for another container.
    e.ok(&["rename", "up", "renamed"]);
    assert_eq!(names(&[]), ["renamed"]);
    assert_eq!(e.inspect("renamed")["Name"], "/renamed");
    let (c, _, _) = boxr(&e.store, &["inspect", "up"]);
    assert_ne!(c, 0);
    let again = e.run_d(&["--name", "up", "bb:1", "true"]);
    let (c, _, err) = boxr(&e.store, &["rename", "renamed", "good"]);
    assert_eq!(c, 125);
    assert!(err.contains("already in use"), "{err}");
    e.ok(&["rm", "-f", &ok, &bad, &up, &again]);
    e.assert_clean();
}

#[test]
fn exec_d_starts_the_command_and_returns() {
    let Some(e) = Env::new("exec_d_starts_the_command_and_returns") else {
        return;
    };
    let c = e.run_d(&["bb:1", "sleep", "1000"]);
    // The command waits for /tmp/go (10 s at most): `exec -d` has returned long before.
    e.ok(&[
        "exec",
        "-d",
        &c,
        "sh",
        "-c",
        "for i in $(seq 200); do [ -e /tmp/go ] && break; sleep 0.05; done; echo done > /tmp/bg",
    ]);
    let (code, _, _) = boxr(&e.store, &["exec", &c, "test", "-e", "/tmp/bg"]);
    assert_ne!(code, 0, "exec -d waited for the command");
    e.ok(&["exec", &c, "touch", "/tmp/go"]);
    until("the background command", || {
        boxr(&e.store, &["exec", &c, "cat", "/tmp/bg"]).1 == "done\n"
    });
    let (code, _, err) = boxr(&e.store, &["exec", "-d", "-t", &c, "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("exec -d"), "{err}");
    e.ok(&["rm", "-f", &c]);
    e.assert_clean();
}

#[test]
fn logs_since_and_until_select_by_time() {
    let Some(e) = Env::new("logs_since_and_until_select_by_time") else {
        return;
    };
    let c = e.run_d(&[
        "bb:1",
        "sh",
        "-c",
        "echo one; sleep 1.2; echo two; exec sleep 1000",
    ]);
    until("two", || e.ok(&["logs", &c]).contains("two"));
    let stamped = e.ok(&["logs", "-t", &c]);
    let times: Vec<&str> = stamped
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(times.len(), 2, "{stamped}");
    assert_eq!(e.ok(&["logs", "--since", times[1], &c]), "two\n");
    assert_eq!(e.ok(&["logs", "--until", times[1], &c]), "one\n");
    assert_eq!(e.ok(&["logs", "--since", "0", &c]), "one\ntwo\n");
    assert_eq!(e.ok(&["logs", "--since", "1h", &c]), "one\ntwo\n");
    assert_eq!(e.ok(&["logs", "--since", "2999-01-01T00:00:00Z", &c]), "");
    assert_eq!(e.ok(&["logs", "--since", "0", "--tail", "1", &c]), "two\n");
    // --follow with --until stops there.
    let until_now = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 1
    );
    assert_eq!(
        e.ok(&["logs", "-f", "--until", &until_now, &c]),
        "one\ntwo\n"
    );
    let (code, _, err) = boxr(&e.store, &["logs", "--since", "yesterday", &c]);
    assert_eq!(code, 125);
    assert!(err.contains("not a time"), "{err}");
    e.ok(&["rm", "-f", &c]);
    e.assert_clean();
}

#[test]
fn start_boot_brings_back_what_a_restart_policy_keeps_running() {
    let Some(e) = Env::new("start_boot_brings_back_what_a_restart_policy_keeps_running") else {
        return;
    };
    let run = |name: &str, policy: &str| {
        e.run_d(&["--name", name, "--restart", policy, "bb:1", "sleep", "1000"])
    };
    let always = run("always", "always");
    let unless = run("unless", "unless-stopped");
    let stopped = run("stopped", "unless-stopped");
    let plain = run("plain", "no");
    e.ok(&["stop", "-t", "0", "stopped"]);
    // As a reboot leaves them: every monitor and container gone with no word.
    for id in [&always, &unless, &plain] {
        let v = e.inspect(id);
        for key in ["MonitorPid", "Pid"] {
            let pid = v["State"][key].as_i64().unwrap() as i32;
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    until("the reboot", || {
        ["always", "unless", "plain"]
            .iter()
            .all(|n| e.inspect(n)["State"]["Running"] == false)
    });
    let (c, out, err) = boxr(&e.store, &["start", "--boot"]);
    assert_eq!(c, 0, "{err}");
    let mut started: Vec<&str> = out.lines().collect();
    started.sort();
    assert_eq!(started, ["always", "unless"]);
    for (name, running) in [
        ("always", true),
        ("unless", true),
        ("stopped", false),
        ("plain", false),
    ] {
        assert_eq!(e.inspect(name)["State"]["Running"], running, "{name}");
    }
    // Nothing more to start the second time.
    assert_eq!(e.ok(&["start", "--boot"]), "");
    let (c, _, _) = boxr(&e.store, &["start", "--boot", "always"]);
    assert_ne!(c, 0);
    e.ok(&["rm", "-f", &always, &unless, &stopped, &plain]);
    e.assert_clean();
}

#[test]
fn export_writes_the_container_s_filesystem_as_one_tar() {
    let Some(e) = Env::new("export_writes_the_container_s_filesystem_as_one_tar") else {
        return;
    };
    let host = e._dir.path().join("vol");
    fs::create_dir(&host).unwrap();
    let vol = format!("{}:/mnt/vol", host.display());
    let c = e.run_d(&[
        "-v",
        &vol,
        "bb:1",
        "sh",
        "-c",
        "echo hi > /root/new; rm /bin/vi; echo no > /mnt/vol/in-the-volume; echo ready; \
         exec sleep 1000",
    ]);
    until("the changes", || e.ok(&["logs", &c]).contains("ready"));
    let tar = e._dir.path().join("flat.tar");
    e.ok(&["export", "-o", tar.to_str().unwrap(), &c]);
    // The merged view: the image's files, the changes (the deleted one gone), nothing of the
    // volume; imported again, it is a one-layer image that runs.
    e.ok(&["import", tar.to_str().unwrap(), "flat:1"]);
    let (c2, out, err) = boxr(
        &e.store,
        &[
            "run",
            "--rm",
            "flat:1",
            "sh",
            "-c",
            "cat /root/new; test -e /bin/vi || echo no-vi; test -e /mnt/vol/in-the-volume || echo no-volume",
        ],
    );
    assert_eq!((c2, out.as_str()), (0, "hi\nno-vi\nno-volume\n"), "{err}");
    let img: serde_json::Value = serde_json::from_str(&e.ok(&["inspect", "flat:1"])).unwrap();
    assert_eq!(img[0]["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    // ps -s: the container's own bytes ("hi\n"; a whiteout and mount points weigh nothing),
    // and with its image's.
    let size = e.ok(&[
        "ps",
        "-s",
        "--format",
        "{{.Size}}",
        "-f",
        &format!("id={c}"),
    ]);
    assert!(size.starts_with("3B (virtual "), "{size}");
    assert!(
        e.ok(&["ps", "-s"])
            .lines()
            .next()
            .unwrap()
            .ends_with("SIZE")
    );
    // Running again after, and never a tar on a terminal or a half one on failure.
    e.ok(&["exec", &c, "true"]);
    let (code, _, _) = boxr(&e.store, &["export", "-o", tar.to_str().unwrap(), "nosuch"]);
    assert_eq!(code, 1, "a missing container exits 1");
    e.ok(&["rm", "-f", &c]);
    e.assert_clean();
}
