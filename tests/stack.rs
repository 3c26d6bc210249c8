//! Stacks: `boxr up`, `down` and `stack ...` on real containers. Each test runs in a network
//! namespace of its own (see `support::privileged`), so the project's bridge, veths and rules
//! are made there and vanish with it; every check looks from inside a container or from the
//! host side of a published port.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{boxr, boxr_env, boxr_in, boxr_links, busybox_rootfs, have_tool, privileged};

/// A project directory `dir/name` with a busybox rootfs and this manifest (the image `base`
/// is the rootfs).
fn project(dir: &Path, name: &str, services: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(&p).unwrap();
    if !p.join("rootfs").exists() {
        busybox_rootfs(&p);
    }
    write_manifest(&p, services);
    p
}

fn write_manifest(p: &Path, services: &str) {
    std::fs::write(
        p.join("boxr.kdl"),
        format!("image \"base\" {{\n    from \"dir:rootfs\"\n}}\n{services}"),
    )
    .unwrap();
}

/// A stack in a temporary project directory (`project`), with its own store; what a failed
/// test left (the project's containers and network) is removed when it is dropped.
struct Stack {
    store: PathBuf,
    dir: PathBuf,
    _work: tempfile::TempDir,
}

impl Stack {
    fn new(name: &str, services: &str) -> Stack {
        let work = tempfile::tempdir().unwrap();
        Stack {
            store: work.path().join("store"),
            dir: project(work.path(), name, services),
            _work: work,
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let store = &self.store;
        let _ = boxr_in(store, &self.dir, &["down", "-t", "1"]);
        let (_, ids, _) = boxr(store, &["ps", "-aq"]);
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            let _ = boxr(store, &args);
        }
        let _ = boxr(store, &["network", "prune"]);
        let _ = boxr(store, &["gc"]);
    }
}

fn inspect(store: &Path, name: &str) -> serde_json::Value {
    let (c, out, err) = boxr(store, &["inspect", name]);
    assert_eq!(c, 0, "{err}");
    serde_json::from_str::<serde_json::Value>(&out).unwrap()[0].clone()
}

/// `stack ps --format json` rows.
fn rows(store: &Path, dir: &Path, all: bool) -> Vec<serde_json::Value> {
    let mut args = vec!["--progress", "json", "stack", "ps"];
    if all {
        args.push("-a");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_boxr"))
        .current_dir(dir)
        .args(&args)
        .env("BOXR_ROOT", store)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Processes whose command line names the store (monitors, resolvers, containers' helpers).
fn processes_of(store: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(store.to_str().unwrap()) {
            out.push(format!("{}: {cmd}", p.file_name().to_string_lossy()));
        }
    }
    out
}

const STACK: &str = r#"
service "db" {
    image "base"
    command "sh" "-c" "echo db starting; sleep 0.5; touch /tmp/ready; echo db ready; exec sleep 1000"
    healthcheck "test -f /tmp/ready" interval="100ms" retries=50
}
service "migrate" {
    image "base"
    command "sh" "-c" "echo migrating; sleep 0.3; echo migrated"
    depends-on "db" condition="healthy"
}
service "web" {
    image "base"
    command "sh" "-c" "hostname > /tmp/index.html; exec httpd -f -p 80 -h /tmp"
    publish "80"
    replicas 2
    depends-on "migrate" condition="completed"
}
"#;

#[test]
fn up_starts_as_the_conditions_allow_names_resolve_and_down_leaves_nothing() {
    let name = "up_starts_as_the_conditions_allow_names_resolve_and_down_leaves_nothing";
    if !privileged(name) || !have_tool(name, "ip") {
        return;
    }
    let s = Stack::new("My_Shop", STACK);
    let (store, dir) = (&s.store, &s.dir);
    let (c, _, err) = boxr_in(store, dir, &["up", "-d"]);
    assert_eq!(c, 0, "{err}");
    // The project is named after the directory, made a valid name.
    for n in [
        "my_shop-db-1",
        "my_shop-migrate-1",
        "my_shop-web-1",
        "my_shop-web-2",
    ] {
        assert!(err.contains(&format!("Container {n}  Created")), "{err}");
    }
    // Each service started once its own conditions held: migrate after db was healthy, web
    // after migrate had exited 0.
    let db = inspect(store, "my_shop-db-1");
    let migrate = inspect(store, "my_shop-migrate-1");
    let web = inspect(store, "my_shop-web-1");
    let t = |v: &serde_json::Value, k: &str| v["State"][k].as_str().unwrap().to_owned();
    assert_eq!(migrate["State"]["ExitCode"], 0);
    assert!(t(&migrate, "StartedAt") > t(&db, "StartedAt"));
    // The first passing check, if the log (the last 5 checks) still shows a failing one before
    // it; later passing checks may end after migrate started. The merged logs below show the
    // order too ("db ready" before "migrating").
    let log = db["State"]["Health"]["Log"].as_array().unwrap();
    if let Some(first_pass) = log.iter().position(|e| e["ExitCode"] == 0)
        && first_pass > 0
    {
        let db_ready = log[first_pass]["End"].as_str().unwrap();
        assert!(
            t(&migrate, "StartedAt").as_str() >= db_ready,
            "migrate started before db was healthy: {} < {db_ready}",
            t(&migrate, "StartedAt")
        );
    }
    assert!(
        t(&web, "StartedAt") >= t(&migrate, "FinishedAt"),
        "web started before migrate completed"
    );
    assert_eq!(web["Config"]["Labels"]["boxr.project"], "my_shop");
    assert_eq!(web["Config"]["Labels"]["boxr.service"], "web");

    // A shell command in a one-off container of `web` on the stack's network.
    let one_off = |cmd: &str| {
        boxr_in(
            store,
            dir,
            &["stack", "run", "--rm", "--no-deps", "web", "sh", "-c", cmd],
        )
    };
    // From there: both replicas answer to `web`, and `db` resolves.
    let (c, out, err) = one_off(
        "nslookup web | grep -c '^Address: 172'; nslookup db >/dev/null && echo db-ok; \
         for i in 1 2 3 4 5 6 7 8; do wget -qO- http://web/index.html; done | sort -u | wc -l",
    );
    assert_eq!(c, 0, "{err}");
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["2", "db-ok", "2"],
        "{out}"
    );

    // A published port, read from the host side.
    let (c, port, err) = boxr(store, &["port", "my_shop-web-1", "80/tcp"]);
    assert_eq!(c, 0, "{err}");
    let hostport = port.lines().next().unwrap().trim().to_owned();
    let got = Command::new("busybox")
        .args(["wget", "-qO-", &format!("http://{hostport}/index.html")])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got.stdout).trim(),
        &web["Id"].as_str().unwrap()[..12],
        "the hostname of a container is its short id"
    );

    // `stack port` finds the same address by service (and replica).
    let (c, out, err) = boxr_in(store, dir, &["stack", "port", "web", "80"]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(out, port);
    let (c, out, err) = boxr_in(
        store,
        dir,
        &["stack", "port", "--index", "2", "web", "80/tcp"],
    );
    assert_eq!(c, 0, "{err}");
    assert_eq!(out, boxr(store, &["port", "my_shop-web-2", "80/tcp"]).1);
    assert_ne!(out, port, "each replica has a port of its own");
    let (c, _, err) = boxr_in(store, dir, &["stack", "port", "web", "81"]);
    assert_eq!(c, 1);
    assert!(
        err.contains("no public port '81/tcp' published for my_shop-web-1"),
        "{err}"
    );
    // `stack top`: each running container's processes under its name (migrate has exited).
    let (c, out, err) = boxr_in(store, dir, &["stack", "top"]);
    assert_eq!(c, 0, "{err}");
    assert!(
        out.starts_with("my_shop-db-1\nUID") && out.contains("sleep 1000"),
        "{out}"
    );
    assert!(
        out.contains("\nmy_shop-web-2\n") && out.contains("httpd -f -p 80"),
        "{out}"
    );
    assert!(!out.contains("migrate"), "{out}");

    // `stack ps` lists the running ones with health and ports; -a adds the completed one.
    let running = rows(store, dir, false);
    let names: Vec<&str> = running
        .iter()
        .map(|r| r["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["my_shop-db-1", "my_shop-web-1", "my_shop-web-2"]);
    assert_eq!(running[0]["Health"], "healthy");
    assert_eq!(
        running[1]["Ports"].as_array().unwrap().len(),
        2,
        "{running:?}"
    );
    assert_eq!(rows(store, dir, true).len(), 4);

    // Merged logs, in time order, each line with its container.
    let (c, out, err) = boxr_in(store, dir, &["stack", "logs", "db", "migrate"]);
    assert_eq!(c, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    let pos = |s: &str| {
        lines
            .iter()
            .position(|l| l.ends_with(s))
            .unwrap_or_else(|| panic!("{s}: {out}"))
    };
    assert!(pos("db ready") < pos("migrating"), "{out}");
    assert!(
        lines[pos("migrated")].starts_with("my_shop-migrate-1 | "),
        "{out}"
    );

    // The project's events, by service; `events --filter label=` finds the same.
    let (c, out, err) = boxr_in(
        store,
        dir,
        &["stack", "events", "--since", "0", "--until", "now", "db"],
    );
    assert_eq!(c, 0, "{err}");
    assert!(
        out.lines()
            .any(|l| l.contains(" container create ") && l.ends_with("(name=my_shop-db-1)")),
        "{out}"
    );
    assert!(out.contains(" container start "), "{out}");
    assert!(!out.contains("web") && !out.contains("migrate"), "{out}");
    let (_, out, _) = boxr_in(
        store,
        dir,
        &[
            "stack", "events", "--since", "0", "--until", "now", "db", "migrate",
        ],
    );
    assert!(
        out.contains("(name=my_shop-migrate-1)") && out.contains("(name=my_shop-db-1)"),
        "{out}"
    );
    assert!(!out.contains("web"), "{out}");
    let (c, out, err) = boxr(
        store,
        &[
            "events",
            "--since",
            "0",
            "--until",
            "now",
            "--filter",
            "label=boxr.service=web",
            "--filter",
            "event=create",
        ],
    );
    assert_eq!(c, 0, "{err}");
    // Both replicas, and the one-off `stack run` made of the service.
    assert_eq!(out.lines().count(), 3, "{out}");
    for n in [
        "(name=my_shop-web-1)",
        "(name=my_shop-web-2)",
        "(name=my_shop-web-run-",
    ] {
        assert!(out.contains(n), "{n}: {out}");
    }
    let (c, out, _) = boxr_in(
        store,
        dir,
        &[
            "stack", "events", "--since", "0", "--until", "now", "--json", "web",
        ],
    );
    assert_eq!(c, 0);
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(first["attributes"]["boxr.project"], "my_shop", "{first}");

    // exec in a service's container.
    let (c, out, err) = boxr_in(store, dir, &["stack", "exec", "db", "cat", "/tmp/ready"]);
    assert_eq!(c, 0, "{err}{out}");

    // --scale: a third replica joins the other two under the service's name; the next `up`
    // without it goes back to the manifest's two, removing the third and keeping the rest.
    let (c, _, err) = boxr_in(
        store,
        dir,
        &["up", "-d", "--no-deps", "--scale", "web=3", "web"],
    );
    assert_eq!(c, 0, "{err}");
    assert!(err.contains("Container my_shop-web-3  Created"), "{err}");
    assert!(err.contains("Container my_shop-web-1  Running"), "{err}");
    let (c, out, err) = one_off("nslookup web | grep -c '^Address: 172'");
    assert_eq!((c, out.trim()), (0, "3"), "{err}");
    let (c, _, err) = boxr_in(store, dir, &["up", "-d", "--no-deps", "web"]);
    assert_eq!(c, 0, "{err}");
    assert!(err.contains("Container my_shop-web-3  Removed"), "{err}");
    assert!(err.contains("Container my_shop-web-2  Running"), "{err}");
    assert!(boxr(store, &["inspect", "my_shop-web-3"]).0 != 0);

    // down: dependents first, then nothing of the stack is left.
    let (c, _, err) = boxr_in(store, dir, &["down"]);
    assert_eq!(c, 0, "{err}");
    let stop = |n: &str| {
        err.find(&format!("Container {n}  Stopped"))
            .unwrap_or_else(|| panic!("{n}: {err}"))
    };
    assert!(stop("my_shop-web-1") < stop("my_shop-db-1"), "{err}");
    assert!(err.contains("Network my_shop_default  Removed"), "{err}");
    let (_, ps, _) = boxr(store, &["ps", "-aq"]);
    assert_eq!(ps.trim(), "");
    let (_, nets, _) = boxr(store, &["network", "ls"]);
    assert!(!nets.contains("my_shop"), "{nets}");
    assert_eq!(boxr_links(), Vec::<String>::new(), "links left");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_of(store).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(processes_of(store), Vec::<String>::new(), "processes left");
    // A second down finds nothing to do, and says so without failing.
    let (c, _, err) = boxr_in(store, dir, &["down"]);
    assert_eq!(c, 0, "{err}");
}

#[test]
fn a_second_up_recreates_only_what_changed_and_orphans_are_named() {
    let name = "a_second_up_recreates_only_what_changed_and_orphans_are_named";
    if !privileged(name) {
        return;
    }
    let services = |greeting: &str, extra: &str| {
        format!(
            r#"
service "a" {{
    image "base"
    command "sleep" "1000"
    env "GREETING" "{greeting}"
}}
service "b" {{
    image "base"
    command "sleep" "1000"
    depends-on "a"
}}
{extra}"#
        )
    };
    let s = Stack::new(
        "p",
        &services(
            "hi",
            "service \"c\" {\n    image \"base\"\n    command \"sleep\" \"1000\"\n}\n",
        ),
    );
    let (store, dir) = (&s.store, &s.dir);
    let id = |n: &str| inspect(store, n)["Id"].as_str().unwrap().to_owned();
    let (c, _, err) = boxr_in(store, dir, &["up", "-d"]);
    assert_eq!(c, 0, "{err}");
    let (a, b, cc) = (id("p-a-1"), id("p-b-1"), id("p-c-1"));

    // Nothing changed: the same containers, all left running.
    let (c, _, err) = boxr_in(store, dir, &["up", "-d"]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(
        (id("p-a-1"), id("p-b-1"), id("p-c-1")),
        (a.clone(), b.clone(), cc.clone())
    );
    assert!(err.contains("Container p-a-1  Running"), "{err}");

    // A stopped container of the stack is started again, not recreated.
    let (c, _, err) = boxr(store, &["stop", "-t", "1", "p-b-1"]);
    assert_eq!(c, 0, "{err}");
    let (c, _, err) = boxr_in(store, dir, &["up", "-d"]);
    assert_eq!(c, 0, "{err}");
    assert!(err.contains("Container p-b-1  Started"), "{err}");
    assert_eq!(id("p-b-1"), b);

    // One service's config changed: only it is new, and it sees the new value.
    write_manifest(
        dir,
        &services(
            "hello",
            "service \"c\" {\n    image \"base\"\n    command \"sleep\" \"1000\"\n}\n",
        ),
    );
    let (c, _, err) = boxr_in(store, dir, &["up", "-d"]);
    assert_eq!(c, 0, "{err}");
    assert!(err.contains("Container p-a-1  Recreated"), "{err}");
    assert_ne!(id("p-a-1"), a);
    assert_eq!((id("p-b-1"), id("p-c-1")), (b.clone(), cc.clone()));
    let (c, out, _) = boxr_in(
        store,
        dir,
        &["stack", "exec", "a", "sh", "-c", "echo $GREETING"],
    );
    assert_eq!((c, out.trim()), (0, "hello"));

    // --force-recreate: all new.
    let a2 = id("p-a-1");
    let (c, _, err) = boxr_in(store, dir, &["up", "-d", "--force-recreate"]);
    assert_eq!(c, 0, "{err}");
    assert_ne!(id("p-a-1"), a2);
    assert_ne!(id("p-b-1"), b);

    // A service gone from the manifest: its container is an orphan, named, and removed only
    // when asked.
    write_manifest(dir, &services("hello", ""));
    let (c, _, err) = boxr_in(store, dir, &["up", "-d"]);
    assert_eq!(c, 0, "{err}");
    assert!(err.contains("orphan containers (p-c-1)"), "{err}");
    assert!(
        inspect(store, "p-c-1")["State"]["Running"]
            .as_bool()
            .unwrap()
    );
    let (c, _, err) = boxr_in(store, dir, &["up", "-d", "--remove-orphans"]);
    assert_eq!(c, 0, "{err}");
    assert!(err.contains("Container p-c-1  Removed"), "{err}");
    let (c, _, _) = boxr(store, &["inspect", "p-c-1"]);
    assert_ne!(c, 0);
}

#[test]
fn up_fails_naming_the_service_that_is_unhealthy_or_exits_non_zero() {
    let name = "up_fails_naming_the_service_that_is_unhealthy_or_exits_non_zero";
    if !privileged(name) {
        return;
    }
    let s = Stack::new(
        "bad",
        r#"
service "sick" {
    image "base"
    command "sleep" "1000"
    healthcheck "echo not ready; false" interval="100ms" retries=2
}
service "setup" {
    image "base"
    command "sh" "-c" "echo cannot set up; exit 3"
}
service "app" {
    image "base"
    command "sleep" "1000"
    depends-on "setup" condition="completed"
}
"#,
    );
    let (store, dir) = (&s.store, &s.dir);
    // --wait: the unhealthy one is named, with its last check's output.
    let (c, _, err) = boxr_in(store, dir, &["up", "--wait", "sick"]);
    assert_eq!(c, 1, "{err}");
    assert!(
        err.contains("service `sick`") && err.contains("unhealthy"),
        "{err}"
    );
    assert!(err.contains("not ready"), "{err}");

    // A service waited for as `completed` that exits non-zero: named with its code, and what
    // waits for it is not started.
    let (c, _, err) = boxr_in(store, dir, &["up", "-d", "app"]);
    assert_eq!(c, 1, "{err}");
    assert!(
        err.contains("`setup`") && err.contains("exited with code 3"),
        "{err}"
    );
    assert!(
        err.contains("cannot set up"),
        "its last output is shown: {err}"
    );
    let (c, _, _) = boxr(store, &["inspect", "bad-app-1"]);
    assert_ne!(c, 0, "app must not have been created");

    // A one-shot service that exits 0 counts as done for --wait.
    write_manifest(
        dir,
        "service \"once\" {\n    image \"base\"\n    command \"true\"\n}\nservice \"svc\" {\n    image \"base\"\n    command \"sleep\" \"1000\"\n}\n",
    );
    let (c, _, err) = boxr_in(store, dir, &["up", "--wait", "--remove-orphans"]);
    assert_eq!(c, 0, "{err}");

    // down still removes everything, the failed ones too.
    let (c, _, err) = boxr_in(store, dir, &["down", "-t", "1"]);
    assert_eq!(c, 0, "{err}");
    let (_, ps, _) = boxr(store, &["ps", "-aq"]);
    assert_eq!(ps.trim(), "");
}

#[test]
fn a_crashing_service_is_restarted_by_its_policy() {
    let name = "a_crashing_service_is_restarted_by_its_policy";
    if !privileged(name) {
        return;
    }
    let s = Stack::new(
        "crash",
        "service \"flaky\" {\n    image \"base\"\n    command \"sh\" \"-c\" \"echo try; sleep 0.2; exit 1\"\n    restart \"on-failure\"\n}\n",
    );
    let (store, dir) = (&s.store, &s.dir);
    let (c, _, err) = boxr_in(store, dir, &["up", "-d"]);
    assert_eq!(c, 0, "{err}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = inspect(store, "crash-flaky-1")["RestartCount"]
            .as_u64()
            .unwrap_or(0);
        if n >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "not restarted: {n}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (c, _, err) = boxr_in(store, dir, &["down", "-t", "1"]);
    assert_eq!(c, 0, "{err}");
}

#[test]
fn foreground_up_merges_output_and_stops_on_sigint() {
    let name = "foreground_up_merges_output_and_stops_on_sigint";
    if !privileged(name) {
        return;
    }
    // `stubborn` ignores SIGTERM in its shell; boxr's init forwards it to... the shell, which
    // ignores it: its stop-timeout (1s) bounds the wait. `quick` stops at once.
    let s = Stack::new(
        "fg",
        r#"
service "quick" {
    image "base"
    command "sh" "-c" "echo quick up; exec sleep 1000"
}
service "talker" {
    image "base"
    command "sh" "-c" "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.1; done"
    stop-timeout "1s"
}
"#,
    );
    let (store, dir) = (&s.store, &s.dir);
    let child = Command::new(env!("CARGO_BIN_EXE_boxr"))
        .current_dir(dir)
        .args(["--progress", "plain", "up"])
        .env("BOXR_ROOT", store)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    // Wait until both are running and talking.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = rows(store, dir, false);
        if r.len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the stack did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    let stopped_in = t.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("quick  | quick up"), "{stdout}");
    assert!(stdout.contains("talker | line 2"), "{stdout}");
    assert!(stderr.contains("Gracefully stopping"), "{stderr}");
    // No colour codes when not a terminal.
    assert!(!stdout.contains('\x1b'), "{stdout}");
    // The shell loop exits on the SIGTERM boxr's init forwards: no 10 s wait.
    assert!(stopped_in < Duration::from_secs(5), "{stopped_in:?}");
    for r in rows(store, dir, true) {
        assert_eq!(r["State"], "exited", "{r}");
    }

    // `--attach quick`: only quick's output is shown; talker runs, and stops, all the same.
    let child = Command::new(env!("CARGO_BIN_EXE_boxr"))
        .current_dir(dir)
        .args(["--progress", "plain", "up", "--attach", "quick"])
        .env("BOXR_ROOT", store)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let deadline = Instant::now() + Duration::from_secs(15);
    while rows(store, dir, false).len() != 2 {
        assert!(Instant::now() < deadline, "the stack did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("quick  | quick up"), "{stdout}");
    assert!(!stdout.contains("talker |"), "{stdout}");
    for r in rows(store, dir, true) {
        assert_eq!(r["State"], "exited", "{r}");
    }
    let (c, _, err) = boxr_in(store, dir, &["up", "--attach", "nope"]);
    assert_eq!(c, 125);
    assert!(err.contains("--attach nope: no such service"), "{err}");
}

#[test]
fn profiles_interpolation_and_config() {
    let name = "profiles_interpolation_and_config";
    if !privileged(name) {
        return;
    }
    let s = Stack::new(
        "cfg",
        r#"
service "app" {
    image "base"
    command "sleep" "1000"
    env "PORT" "${PORT:-8080}"
    env "MODE" "${MODE}"
    env-file "./app.env"
}
service "debug" {
    image "base"
    command "sleep" "1000"
    profiles "debug"
}
"#,
    );
    let (store, dir) = (&s.store, &s.dir);
    std::fs::write(dir.join(".env"), "MODE=from-dotenv\nPORT=\n").unwrap();
    std::fs::write(dir.join("app.env"), "# settings\nLEVEL=\"warn\"\n").unwrap();
    // `config`: `.env` fills ${MODE}, `:-` fills an empty PORT, env files are named absolutely;
    // the environment wins over `.env`.
    let (c, out, err) = boxr_env(store, dir, &[("MODE", "from-env")], &["stack", "config"]);
    assert_eq!(c, 0, "{err}");
    assert!(out.contains("env \"PORT\" \"8080\""), "{out}");
    assert!(out.contains("env \"MODE\" \"from-env\""), "{out}");
    assert!(
        out.contains(&format!(
            "env-file \"{}\"",
            dir.canonicalize().unwrap().join("./app.env").display()
        )),
        "{out}"
    );
    let (c, out, _) = boxr_in(store, dir, &["stack", "config", "--services"]);
    assert_eq!((c, out.as_str()), (0, "app\n"));

    // Without the profile only `app` starts; the env file reached the container.
    let (c, _, err) = boxr_in(store, dir, &["up", "-d"]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(rows(store, dir, false).len(), 1);
    let (c, out, _) = boxr_in(
        store,
        dir,
        &[
            "stack",
            "exec",
            "app",
            "sh",
            "-c",
            "echo $MODE $LEVEL $PORT",
        ],
    );
    assert_eq!((c, out.trim()), (0, "from-dotenv warn 8080"));
    // Named, a service starts even though its profile is not active; BOXR_PROFILES activates it.
    let (c, _, err) = boxr_in(store, dir, &["up", "-d", "debug"]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(rows(store, dir, false).len(), 2);
    let (c, out, err) = boxr_env(
        store,
        dir,
        &[("BOXR_PROFILES", "debug")],
        &["stack", "config", "--services"],
    );
    assert_eq!((c, out.as_str()), (0, "app\ndebug\n"), "{err}");

    // ${NAME:?message}: the message, pointing at the value.
    write_manifest(
        dir,
        "service \"x\" {\n    image \"base\"\n    env \"TOKEN\" \"${TOKEN:?set a token}\"\n}\n",
    );
    let (c, _, err) = boxr_in(store, dir, &["check"]);
    assert_eq!(c, 1);
    assert!(err.contains("`TOKEN` must be set: set a token"), "{err}");
}

#[test]
fn stack_manifest_errors_name_the_service() {
    let w = tempfile::tempdir().unwrap();
    let store = w.path().join("store");
    let dir = w.path().join("m");
    std::fs::create_dir_all(&dir).unwrap();
    write_manifest(
        &dir,
        r#"
network "front"
service "a" {
    image "base"
    publish "8080:80"
    network "frnt"
}
service "b" {
    image "base"
    publish "8080:80"
}
service "c" {
    image "base"
    publish "9000:80"
    replicas 2
}
service "d" {
    image "base"
    publish "127.0.0.1:8080:8080"
}
service "e" {
    image "base"
    publish "7000-7002:7000-7002" "[::1]:9100:53/udp"
}
service "f" {
    image "base"
    publish "127.0.0.1::80" "7001-7010:80" "7000-7001"
    replicas 2
}
"#,
    );
    let (c, _, err) = boxr_in(&store, &dir, &["check"]);
    assert_eq!(c, 1, "{err}");
    assert!(
        err.contains("no network named `frnt`") && err.contains("did you mean `front`?"),
        "{err}"
    );
    assert!(
        err.contains("host port 8080/tcp is published twice"),
        "{err}"
    );
    assert!(err.contains("`d` publishes it too"), "{err}");
    assert!(
        err.contains("each of the 2 replicas would publish it"),
        "{err}"
    );
    // `-p`'s whole grammar: ranges, any free port of an address, IPv6. A range a service takes
    // the first free port of (or any free port) is no conflict, for replicas either.
    assert!(
        !err.contains("`e`") && !err.contains("`f`") && !err.contains("port mapping"),
        "{err}"
    );
    // `up` of a bad manifest fails the same way, before anything is made.
    let (c, _, _) = boxr_in(&store, &dir, &["up", "-d"]);
    assert_eq!(c, 1);
    let (_, ps, _) = boxr(&store, &["ps", "-aq"]);
    assert_eq!(ps.trim(), "");
    // `--scale` is held to the same rule, and names only services that exist.
    write_manifest(
        &dir,
        r#"
service "a" {
    image "base"
    publish "8080:80"
}
"#,
    );
    let (c, _, err) = boxr_in(&store, &dir, &["up", "-d", "--scale", "a=2"]);
    assert_eq!(c, 1, "{err}");
    assert!(
        err.contains("--scale a=2: each of the 2 replicas would publish host port 8080/tcp")
            && err.contains("leave the host port out"),
        "{err}"
    );
    let (c, _, err) = boxr_in(&store, &dir, &["up", "-d", "--scale", "b=2"]);
    assert_eq!(c, 1, "{err}");
    assert!(err.contains("--scale b=2: no such service"), "{err}");
    let (c, _, err) = boxr_in(&store, &dir, &["up", "-d", "--scale", "a"]);
    assert_eq!(c, 125, "{err}");
    assert!(err.contains("`a` is not SERVICE=N"), "{err}");
    let (_, ps, _) = boxr(&store, &["ps", "-aq"]);
    assert_eq!(ps.trim(), "");
}

#[test]
fn down_removes_the_projects_volumes_and_images_when_asked() {
    let name = "down_removes_the_projects_volumes_and_images_when_asked";
    if !privileged(name) {
        return;
    }
    let s = Stack::new(
        "vol",
        "service \"keeper\" {\n    image \"base\"\n    command \"sh\" \"-c\" \"echo kept > /data/f; exec sleep 1000\"\n    volume \"data\" \"/data\"\n}\n",
    );
    let (store, dir) = (&s.store, &s.dir);
    let (c, _, err) = boxr_in(store, dir, &["up", "-d"]);
    assert_eq!(c, 0, "{err}");
    // The named volume is the project's, and outlives a plain down.
    let (_, vols, _) = boxr(store, &["volume", "ls", "-q"]);
    assert_eq!(vols.trim(), "vol_data");
    let (c, _, err) = boxr_in(store, dir, &["down"]);
    assert_eq!(c, 0, "{err}");
    let (_, vols, _) = boxr(store, &["volume", "ls", "-q"]);
    assert_eq!(vols.trim(), "vol_data");
    // It is still there for the next up; -v and --rmi local take it and the built image.
    let (c, _, err) = boxr_in(store, dir, &["up", "-d"]);
    assert_eq!(c, 0, "{err}");
    let (c, out, _) = boxr_in(store, dir, &["stack", "exec", "keeper", "cat", "/data/f"]);
    assert_eq!((c, out.trim()), (0, "kept"));
    let (c, _, err) = boxr_in(store, dir, &["down", "-v", "--rmi", "local", "-t", "1"]);
    assert_eq!(c, 0, "{err}");
    assert!(err.contains("Volume vol_data  Removed"), "{err}");
    assert!(err.contains("Image base:latest  Removed"), "{err}");
    let (_, vols, _) = boxr(store, &["volume", "ls", "-q"]);
    assert_eq!(vols.trim(), "");
    let (_, images, _) = boxr(store, &["images", "-q"]);
    assert_eq!(images.trim(), "");
}

#[test]
fn a_service_on_two_networks_reaches_both_and_the_others_only_their_own() {
    let name = "a_service_on_two_networks_reaches_both_and_the_others_only_their_own";
    if !privileged(name) || !have_tool(name, "ip") {
        return;
    }
    let s = Stack::new(
        "nets",
        r#"network "front"
network "back" internal=#true
service "db" {
    image "base"
    network "back"
    command "sh" "-c" "echo db > /tmp/index.html; exec httpd -f -p 80 -h /tmp"
}
service "web" {
    image "base"
    network "front"
    command "sh" "-c" "echo web > /tmp/index.html; exec httpd -f -p 80 -h /tmp"
}
service "api" {
    image "base"
    network "front" "back"
    command "sleep" "600"
}
"#,
    );
    let (store, dir) = (&s.store, &s.dir);
    let (c, _, err) = boxr_in(store, dir, &["up", "-d"]);
    assert_eq!(c, 0, "{err}");
    // api is on both: eth0 on front (its default route), eth1 on back; it reaches both services
    // by name.
    let (c, out, err) = boxr(
        store,
        &[
            "exec",
            "nets-api-1",
            "sh",
            "-c",
            "ip -o -4 addr | awk '{print $2}' | sort | tr '\\n' ' '; echo; \
             for h in db web; do timeout 5 wget -qO- http://$h/index.html; done",
        ],
    );
    assert_eq!(c, 0, "{out} {err}");
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["eth0", "eth1", "lo", "db", "web"],
        "{out}"
    );
    let api = inspect(store, "nets-api-1");
    let nets = api["NetworkSettings"]["Networks"].as_object().unwrap();
    assert_eq!(
        nets.keys().collect::<Vec<_>>(),
        ["nets_back", "nets_front"],
        "{api}"
    );
    // web is only on front: db's address is out of its reach.
    let db_ip = inspect(store, "nets-db-1")["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_owned();
    let (c, out, _) = boxr(
        store,
        &[
            "exec",
            "nets-web-1",
            "sh",
            "-c",
            &format!("timeout 3 wget -qO- http://{db_ip}/index.html"),
        ],
    );
    assert_ne!(c, 0, "{out}");
    // down takes both networks with the containers.
    let (c, _, err) = boxr_in(store, dir, &["down", "-t", "1"]);
    assert_eq!(c, 0, "{err}");
    let (_, out, _) = boxr(store, &["network", "ls", "-q"]);
    assert_eq!(out.trim(), "bridge", "{out}");
}
