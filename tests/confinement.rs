//! Confinement, checked from inside containers: a static probe (tests/probe/probe.c, built with
//! `gcc -static`) tries the known escapes and reports what each returned. A default container
//! must refuse them all; `--cap-add SYS_ADMIN` and `--privileged` must open what they open.

mod support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{boxr, busybox_rootfs, privileged};

/// A store with `probe:1`: busybox, `/probe` and a setuid-root copy `/suid-probe`.
struct Env {
    _dir: tempfile::TempDir,
    store: PathBuf,
}

impl Env {
    fn new(test: &str) -> Option<Env> {
        if !privileged(test) || !support::have_tool(test, "gcc") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let rootfs = busybox_rootfs(dir.path());
        let probe = rootfs.join("probe");
        support::build_probe("probe.c", &probe);
        fs::copy(&probe, rootfs.join("suid-probe")).unwrap();
        fs::set_permissions(
            rootfs.join("suid-probe"),
            fs::Permissions::from_mode(0o4755),
        )
        .unwrap();
        let store = dir.path().join("store");
        let (c, _, err) = boxr(&store, &["import", rootfs.to_str().unwrap(), "probe:1"]);
        assert_eq!(c, 0, "{err}");
        Some(Env { _dir: dir, store })
    }

    fn run(&self, args: &[&str]) -> String {
        let mut all = vec!["run", "--rm"];
        all.extend_from_slice(args);
        let (code, out, err) = boxr(&self.store, &all);
        assert_eq!(code, 0, "{args:?}: {err}");
        out
    }

    /// The probe's report: check name → result.
    fn probe(&self, opts: &[&str]) -> std::collections::BTreeMap<String, String> {
        let mut args = opts.to_vec();
        args.extend(["probe:1", "/probe", "all"]);
        self.run(&args)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }
}

#[test]
fn a_default_container_refuses_the_known_escapes() {
    let Some(env) = Env::new("a_default_container_refuses_the_known_escapes") else {
        return;
    };
    support::assert_known_escapes_refused(&env.probe(&[]), false);
}

#[test]
fn the_init_and_the_workload_have_docker_s_capabilities_and_a_filter() {
    let Some(env) = Env::new("the_init_and_the_workload_have_docker_s_capabilities_and_a_filter")
    else {
        return;
    };
    let out = env.run(&[
        "probe:1",
        "sh",
        "-c",
        "for f in /proc/1/status /proc/self/status; do grep -E '^(CapInh|CapEff|CapBnd|CapAmb|Seccomp):' $f; done",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 10, "{out}");
    for status in lines.chunks(5) {
        let field = |name: &str| {
            status
                .iter()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
                .unwrap_or("?")
                .to_owned()
        };
        assert_eq!(field("CapInh:"), "0000000000000000", "{out}");
        assert_eq!(field("CapAmb:"), "0000000000000000", "{out}");
        assert_eq!(field("CapEff:"), "00000000a80425fb", "{out}");
        assert_eq!(field("CapBnd:"), "00000000a80425fb", "{out}");
        assert_eq!(field("Seccomp:"), "2", "a seccomp filter: {out}");
    }
}

#[test]
fn added_capabilities_and_privileged_open_what_they_should() {
    let Some(env) = Env::new("added_capabilities_and_privileged_open_what_they_should") else {
        return;
    };
    // CAP_SYS_ADMIN: the profile then allows mount (as Docker's does).
    assert_eq!(
        env.run(&[
            "--cap-add",
            "SYS_ADMIN",
            "probe:1",
            "/probe",
            "mount-tmpfs",
            "/tmp"
        ]),
        "mount ok\n"
    );
    let r = env.probe(&["--privileged"]);
    assert_eq!(r["mount"], "ok", "{r:#?}");
    assert_eq!(r["unshare"], "ok", "{r:#?}");
    assert_eq!(
        env.run(&[
            "--privileged",
            "probe:1",
            "grep",
            "Seccomp:",
            "/proc/self/status"
        ]),
        "Seccomp:\t0\n",
        "--privileged runs without a filter"
    );
    // seccomp=unconfined: no filter, but still Docker's capabilities.
    let r = env.probe(&["--security-opt", "seccomp=unconfined"]);
    assert_eq!(r["clone3"], "ok", "clone3 works without a filter: {r:#?}");
    assert_eq!(
        r["mount"], "EPERM",
        "but the capabilities are still Docker's: {r:#?}"
    );
}

#[test]
fn a_profile_file_replaces_the_default() {
    let Some(env) = Env::new("a_profile_file_replaces_the_default") else {
        return;
    };
    // Docker's format: everything allowed but mkdir.
    let profile = env.store.parent().unwrap().join("profile.json");
    fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let (code, out, err) = boxr(
        &env.store,
        &[
            "run",
            "--rm",
            "--security-opt",
            &opt,
            "probe:1",
            "sh",
            "-c",
            "mkdir /tmp/x 2>&1; echo rc=$?",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Permission denied") && out.contains("rc=1"),
        "{out}"
    );
    // A profile that allows execve but not execveat still starts the command (boxr-init, which
    // runs it, is exec'd under the container's filter), with the init and without.
    fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["execveat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#,
    )
    .unwrap();
    for init in ["--init=true", "--init=false"] {
        let (code, out, err) = boxr(
            &env.store,
            &[
                "run",
                "--rm",
                init,
                "--security-opt",
                &opt,
                "probe:1",
                "echo",
                "started",
            ],
        );
        assert_eq!((code, out.as_str()), (0, "started\n"), "{init}: {err}");
    }
    // A broken profile is refused before anything starts.
    fs::write(&profile, r#"{"defaultAction": "SCMP_ACT_SOMETIMES"}"#).unwrap();
    let (code, _, err) = boxr(
        &env.store,
        &["run", "--rm", "--security-opt", &opt, "probe:1", "true"],
    );
    assert_eq!(code, 125);
    assert!(err.contains("unknown seccomp action"), "{err}");
}

#[test]
fn no_new_privileges_stops_setuid() {
    let Some(env) = Env::new("no_new_privileges_stops_setuid") else {
        return;
    };
    assert_eq!(
        env.run(&["-u", "65534", "probe:1", "/suid-probe", "euid"]),
        "euid 0\n",
        "without no-new-privileges a setuid-root binary runs as root (as in Docker)"
    );
    assert_eq!(
        env.run(&[
            "-u",
            "65534",
            "--security-opt",
            "no-new-privileges",
            "probe:1",
            "/suid-probe",
            "euid"
        ]),
        "euid 65534\n"
    );
}

#[test]
fn no_container_process_reaches_the_boxr_binary() {
    let Some(env) = Env::new("no_container_process_reaches_the_boxr_binary") else {
        return;
    };
    let bin = Path::new(env!("CARGO_BIN_EXE_boxr"));
    let digest = |p: &Path| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(fs::read(p).unwrap()))
    };
    let before = digest(bin);
    let mut child = Command::new(bin)
        .args([
            "run",
            "--rm",
            "probe:1",
            "sh",
            "-c",
            "/probe all >/dev/null; sleep 3",
        ])
        .env("BOXR_ROOT", &env.store)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // `boxr run` becomes the sandbox helper; among its children (on the bridge network, the
    // network's resolver may be one) the container's PID 1, once it has exec'd (its exe is no
    // longer boxr's helper).
    let children = format!("/proc/{0}/task/{0}/children", child.id());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exe = loop {
        let kids = fs::read_to_string(&children).unwrap_or_default();
        let init = kids.split_whitespace().find(|pid| {
            fs::read_link(format!("/proc/{pid}/exe"))
                .is_ok_and(|t| t.to_string_lossy().contains("boxr-init"))
        });
        if let Some(pid) = init {
            break format!("/proc/{pid}/exe");
        }
        assert!(Instant::now() < deadline, "no init among {kids:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let bin_ino = fs::metadata(bin).unwrap().ino();
    let ino = fs::metadata(&exe).unwrap().ino();
    assert_ne!(
        ino, bin_ino,
        "the container's PID 1 runs the host's boxr file"
    );
    assert!(child.wait().unwrap().success());
    assert_eq!(digest(bin), before, "the boxr binary changed");
}

/// CVE-2019-5736's way in: a command that is a script whose interpreter is `/proc/self/exe`
/// makes the process that execs it run its own program again, inside the container. That
/// process is boxr-init, from its sealed copy: never the runtime's file.
#[test]
fn a_command_interpreted_by_proc_self_exe_runs_only_the_sealed_init() {
    let Some(env) = Env::new("a_command_interpreted_by_proc_self_exe_runs_only_the_sealed_init")
    else {
        return;
    };
    let scripts = env.store.parent().unwrap().join("scripts");
    fs::create_dir_all(&scripts).unwrap();
    let script = scripts.join("x");
    fs::write(&script, "#!/proc/self/exe\n").unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let volume = format!("{}:/t:ro", scripts.display());
    let runtime = Path::new(env!("CARGO_BIN_EXE_boxr-sandbox"));
    let before = fs::read(runtime).unwrap();
    // The script gives boxr-init a path where its plan's descriptor belongs: it says so and
    // exits 125, which only boxr-init does.
    for init in ["--init=true", "--init=false"] {
        let (code, _, err) = boxr(
            &env.store,
            &["run", "--rm", init, "-v", &volume, "probe:1", "/t/x"],
        );
        assert_eq!(code, 125, "{init}: {err}");
        assert!(err.contains("boxr-init: no plan"), "{init}: {err}");
    }
    let (code, _, err) = boxr(
        &env.store,
        &[
            "run", "-d", "--name", "target", "-v", &volume, "probe:1", "sleep", "60",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = boxr(&env.store, &["exec", "target", "/t/x"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("boxr-init: no plan"), "{err}");
    assert_eq!(boxr(&env.store, &["rm", "-f", "target"]).0, 0);
    assert!(
        fs::read(runtime).unwrap() == before,
        "the runtime's file changed"
    );
}

#[test]
fn build_steps_are_confined_too() {
    let Some(env) = Env::new("build_steps_are_confined_too") else {
        return;
    };
    let ctx = env.store.parent().unwrap().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(
        ctx.join("boxr.kdl"),
        "image \"app\" {\n    from \"probe:1\"\n    run \"/probe all > /report; grep -E '^(CapEff|Seccomp):' /proc/self/status >> /report\"\n}\n",
    )
    .unwrap();
    let (code, _, err) = support::boxr_in(&env.store, &ctx, &["build"]);
    assert_eq!(code, 0, "{err}");
    let report = env.run(&["app", "cat", "/report"]);
    for line in [
        "mount EPERM",
        "unshare EPERM",
        "clone3 ENOSYS",
        "CapEff:\t00000000a80425fb",
        "Seccomp:\t2",
    ] {
        assert!(report.contains(line), "{line:?} missing from:\n{report}");
    }
}
