//! Rootless: boxr run by an ordinary user (`boxrtest`, made by .ci/run with a subordinate id
//! range), through `runuser`, with no setuid helper of boxr's own. Checked from inside the
//! container (who it runs as, its maps, its confinement) and on the host (who owns what it
//! wrote), and against root's boxr (a build gives the same image digest).

mod support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use support::{boxr, privileged, skip};

/// The unprivileged user the tests run boxr as.
const USER: &str = "boxrtest";

/// An ordinary user's boxr, in directories of its own (home, runtime dir, store) under a temp
/// dir; its pause process (the user namespace's holder) is killed when this is dropped.
struct User {
    uid: u32,
    gid: u32,
    dir: tempfile::TempDir,
}

impl User {
    fn new(test: &str) -> Option<User> {
        if !privileged(test) {
            return None;
        }
        let Ok(Some(u)) = nix::unistd::User::from_name(USER) else {
            skip(
                test,
                &format!("needs the user {USER} with a /etc/subuid range (useradd -m {USER})"),
            );
            return None;
        };
        if Command::new("runuser").arg("--help").output().is_err() {
            skip(test, "needs runuser (util-linux)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let user = User {
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
            dir,
        };
        for d in ["home", "run", "data", "project"] {
            let p = user.path(d);
            fs::create_dir(&p).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o700)).unwrap();
            nix::unistd::chown(&p, Some(u.uid), Some(u.gid)).unwrap();
        }
        Some(user)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// boxr as the user: (exit code, stdout, stderr).
    fn boxr(&self, args: &[&str]) -> (i32, String, String) {
        self.boxr_in(&self.path("home"), args)
    }

    fn boxr_in(&self, cwd: &Path, args: &[&str]) -> (i32, String, String) {
        self.run(Command::new("runuser"), cwd, args)
    }

    /// boxr as the user, through `launcher` (`runuser`, or a wrapper that execs it with the
    /// arguments it is given).
    fn run(&self, mut launcher: Command, cwd: &Path, args: &[&str]) -> (i32, String, String) {
        let out = launcher
            .args([
                "-u",
                USER,
                "--",
                "env",
                "-u",
                "BOXR_ROOT",
                "-u",
                "XDG_DATA_HOME",
            ])
            .arg(format!("HOME={}", self.path("home").display()))
            .arg(format!("XDG_RUNTIME_DIR={}", self.path("run").display()))
            .arg(env!("CARGO_BIN_EXE_boxr"))
            .args(["--progress", "plain"])
            .args(args)
            .current_dir(cwd)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (c, out, err) = self.boxr(args);
        assert_eq!(c, 0, "boxr {args:?}: {err}");
        out
    }

    /// The pause process holding the user's namespace, if one runs.
    fn pause_pid(&self) -> Option<i32> {
        let text = fs::read_to_string(self.path("run/boxr/pause.pid")).ok()?;
        text.split_whitespace().next()?.parse().ok()
    }
}

impl Drop for User {
    fn drop(&mut self) {
        // A test that failed half-way leaves containers: removed through the user's namespace.
        if self.pause_pid().is_some() {
            let (_, ids, _) = self.boxr(&["ps", "-aq"]);
            for id in ids.split_whitespace() {
                let _ = self.boxr(&["rm", "-f", id]);
            }
            // What a test that crashed boxr on purpose left (pastas, resolvers).
            let _ = self.boxr(&["gc"]);
        }
        if let Some(pid) = self.pause_pid() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // What the user's namespace made (layers owned by subordinate ids) is root's to remove.
        let _ = Command::new("rm")
            .args(["-rf"])
            .arg(self.dir.path())
            .status();
    }
}

/// The first subordinate uid of `USER`, if /etc/subuid gives it a range.
fn subuid_start() -> Option<u32> {
    fs::read_to_string("/etc/subuid")
        .ok()?
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() == 3 && f[0] == USER).then(|| f[1].parse().ok())?
        })
}

/// A busybox image tarball the user can read.
fn busybox_tar(u: &User) -> PathBuf {
    let root = support::busybox_rootfs(&u.path("bb"));
    tar_of(u, &root, "bb.tar")
}

/// A tarball of the directory `root`, named `name` in the user's directory, that the user can
/// read.
fn tar_of(u: &User, root: &Path, name: &str) -> PathBuf {
    let tar = u.path(name);
    let ok = Command::new("tar")
        .arg("-C")
        .arg(root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap()
        .success();
    assert!(ok);
    fs::set_permissions(&tar, fs::Permissions::from_mode(0o644)).unwrap();
    tar
}

const MANIFEST: &str = r#"
image "app" {
    from "bb:latest"
    run "sh" "-c" "mkdir -p /srv/a /srv/b && echo hi > /srv/a/f && chown -R 33:33 /srv/a"
    run "sh" "-c" "rm -rf /srv/b && mkdir /srv/b && echo new > /srv/b/g"
    cmd "sh" "-c" "stat -c '%u:%g' /srv/a/f; cat /srv/b/g; ls /srv/b"
}
"#;

#[test]
fn an_ordinary_user_builds_runs_and_manages_containers() {
    let name = "an_ordinary_user_builds_runs_and_manages_containers";
    let Some(u) = User::new(name) else { return };
    let sub = subuid_start();

    // The user namespace: the user is root in it, its range the other ids.
    let info = u.ok(&["info"]);
    assert!(info.contains("Mode:           rootless"), "{info}");
    assert!(info.contains(&format!("0 {} 1", u.uid)), "{info}");
    assert!(
        info.contains(&format!(
            "Store:          {}",
            u.path("home/.local/share/boxr").display()
        )),
        "the store is in the user's XDG data dir: {info}"
    );
    let tar = busybox_tar(&u);
    u.ok(&["import", tar.to_str().unwrap(), "bb"]);

    // Inside: root, mapped to the user; the same confinement as root's containers.
    let data = u.path("data");
    let volume = format!("{}:/data", data.display());
    let out = u.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &volume,
        "bb",
        "sh",
        "-c",
        "id -u; head -1 /proc/self/uid_map; grep -E '^(CapEff|Seccomp):' /proc/self/status; \
         touch /data/mine; touch /data/other; chown 5:7 /data/other; \
         mount -t tmpfs none /tmp 2>/dev/null && echo MOUNTED; \
         wc -c < /proc/timer_list",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0", "{out}");
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["0", &u.uid.to_string(), "1"],
        "{out}"
    );
    assert!(
        out.contains("CapEff:\t00000000a80425fb"),
        "Docker's default capabilities: {out}"
    );
    assert!(out.contains("Seccomp:\t2"), "a seccomp filter: {out}");
    assert!(!out.contains("MOUNTED"), "no CAP_SYS_ADMIN: {out}");
    assert_eq!(
        lines.last().map(|l| l.trim()),
        Some("0"),
        "masked /proc/timer_list: {out}"
    );
    // --read-only, --tmpfs and a named volume, as for root: the volume keeps what was written.
    let out = u.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--read-only",
        "--tmpfs",
        "/scratch",
        "-v",
        "kept:/v",
        "bb",
        "sh",
        "-c",
        "touch /x 2>/dev/null && echo WROTE-ROOT; echo s > /scratch/f && cat /scratch/f; \
         echo kept > /v/k",
    ]);
    assert_eq!(out.trim(), "s", "{out}");
    let out = u.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "kept:/v",
        "bb",
        "cat",
        "/v/k",
    ]);
    assert_eq!(out.trim(), "kept");
    u.ok(&["volume", "rm", "kept"]);

    // Outside: what root wrote is the user's; another id is in the user's range.
    assert_eq!(fs::metadata(data.join("mine")).unwrap().uid(), u.uid);
    if let Some(start) = sub {
        let m = fs::metadata(data.join("other")).unwrap();
        assert_eq!(
            (m.uid(), m.gid() >= 100),
            (start + 4, true),
            "chown 5:7 → range"
        );
    }

    // Detached, exec, logs, stop, rm: later commands join the same namespace.
    let id = u.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "none",
        "bb",
        "sh",
        "-c",
        "echo started; exec sleep 1000",
    ]);
    assert_eq!(id.trim().len(), 64, "{id}");
    let out = u.ok(&["exec", "web", "sh", "-c", "echo in-exec; id -u"]);
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["in-exec", "0"]);
    let ps = u.ok(&["ps"]);
    assert!(ps.contains("web") && ps.contains("Up"), "{ps}");
    assert!(u.ok(&["logs", "web"]).contains("started"));
    u.ok(&["stop", "-t", "1", "web"]);
    u.ok(&["rm", "web"]);
    assert_eq!(u.ok(&["ps", "-aq"]).trim(), "");

    // A build whose steps change owners and replace a directory: the same image as root's.
    let project = u.path("project");
    fs::write(project.join("boxr.kdl"), MANIFEST).unwrap();
    nix::unistd::chown(
        &project.join("boxr.kdl"),
        Some(nix::unistd::Uid::from_raw(u.uid)),
        Some(nix::unistd::Gid::from_raw(u.gid)),
    )
    .unwrap();
    let (c, out, err) = u.boxr_in(&project, &["build"]);
    assert_eq!(c, 0, "{out}{err}");
    let out = u.ok(&["run", "--rm", "--network", "none", "app:latest"]);
    let want_owner = if sub.is_some() { "33:33" } else { "0:0" };
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        [want_owner, "new", "g"],
        "{out}"
    );
    if sub.is_some() {
        let root_store = tempfile::tempdir().unwrap();
        let rs = root_store.path();
        let (c, _, err) = boxr(rs, &["import", tar.to_str().unwrap(), "bb"]);
        assert_eq!(c, 0, "{err}");
        // Both builds take the default epoch: the project is in no git repository, so 0.
        let (c, out, err) = support::boxr_env(rs, &project, &[], &["build"]);
        assert_eq!(c, 0, "{out}{err}");
        let digest = |store_out: String| {
            serde_json::from_str::<serde_json::Value>(&store_out).unwrap()[0]["Id"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let (_, root_json, _) = boxr(rs, &["inspect", "app:latest"]);
        let user_json = u.ok(&["inspect", "app:latest"]);
        assert_eq!(
            digest(user_json),
            digest(root_json),
            "rootless and root builds of one manifest give one image"
        );
    }

    // What cannot be had rootless here is refused, saying why, before anything is made.
    let (c, _, err) = u.boxr(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--memory",
        "10m",
        "bb",
        "true",
    ]);
    assert_eq!(c, 125, "{err}");
    assert!(
        err.contains("rootless: limits") && err.contains("delegated"),
        "{err}"
    );
    let (c, _, err) = u.boxr(&["run", "--rm", "--ip", "172.17.0.9", "bb", "true"]);
    assert_eq!(c, 125, "{err}");
    assert!(err.contains("the default network is pasta's"), "{err}");

    // A user network on a host with no routable interface (this test's namespace): pasta
    // cannot connect the rootless network namespace, which is made without egress; boxr says
    // so, and the container is on its network.
    u.ok(&["network", "create", "inner", "--subnet", "10.77.0.0/24"]);
    let (c, out, err) = u.boxr(&[
        "run",
        "--rm",
        "--network",
        "inner",
        "bb",
        "sh",
        "-c",
        "ip -4 -o addr show eth0",
    ]);
    assert_eq!(c, 0, "{err}");
    assert!(out.contains("inet 10.77.0.2/24"), "{out}");
    assert!(err.contains("has no egress"), "{err}");
    u.ok(&["network", "rm", "inner"]);
    assert_eq!(u.ok(&["ps", "-aq"]).trim(), "");

    // Nothing is left in the user's namespace but the pause process, which the guard ends.
    let pause = u.pause_pid().expect("a pause process");
    let ns = |pid: i32| fs::read_link(format!("/proc/{pid}/ns/user")).ok();
    let ps = Command::new("ps")
        .args(["-o", "pid=", "-u", USER])
        .output()
        .unwrap();
    let pids: Vec<i32> = String::from_utf8_lossy(&ps.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|p| ns(*p).is_some() && ns(*p) == ns(pause))
        // A zombie has ended (its parent, the machine's init here, reaps it when it will).
        .filter(|p| boxr::platform::process_start_time(*p).is_some())
        .collect();
    assert_eq!(pids, [pause], "only the pause process runs");
}

#[test]
fn a_runtime_dir_another_user_made_is_refused() {
    let name = "a_runtime_dir_another_user_made_is_refused";
    let Some(u) = User::new(name) else { return };
    // Without XDG_RUNTIME_DIR the fallback is TMPDIR/boxr-run-UID: made first by root here.
    let tmp = u.path("tmp");
    fs::create_dir(&tmp).unwrap();
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777)).unwrap();
    fs::create_dir(tmp.join(format!("boxr-run-{}", u.uid))).unwrap();
    let out = Command::new("runuser")
        .args(["-u", USER, "--", "env", "-u", "XDG_RUNTIME_DIR"])
        .arg(format!("TMPDIR={}", tmp.display()))
        .arg(format!("HOME={}", u.path("home").display()))
        .arg(env!("CARGO_BIN_EXE_boxr"))
        .arg("images")
        .current_dir(u.path("home"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("is not private to this user"), "{err}");
    assert!(u.pause_pid().is_none());
}

/// The user's boxr, for the network test: as [`User::boxr`], and where this host's
/// /dev/net/tun is root's alone (no udev here to make it 0666, as Debian's rules do), in a
/// mount namespace with a 0666 node of the same device, which the pause process the first
/// command starts keeps for every later one.
fn boxr_with_tun(u: &User, args: &[&str]) -> (i32, String, String) {
    let open = fs::metadata("/dev/net/tun").is_ok_and(|m| m.permissions().mode() & 0o006 == 0o006);
    if open {
        return u.boxr(args);
    }
    let mut wrapper = Command::new("unshare");
    wrapper.args([
        "-m",
        "sh",
        "-c",
        "mount -t tmpfs -o mode=755 tun /dev/net && mknod -m 666 /dev/net/tun c 10 200 \
         && exec runuser \"$@\"",
        "sh",
    ]);
    u.run(wrapper, &u.path("home"), args)
}

/// `busybox wget` of `url` (from the namespace `netns`, if given), for at most 3 s (its own
/// `-T` crashes this busybox when combined with `-O-`).
fn wget(netns: Option<&str>, url: &str) -> (bool, String) {
    let mut c = Command::new("timeout");
    c.arg("3");
    if let Some(ns) = netns {
        c.args(["ip", "netns", "exec", ns]);
    }
    let out = c
        .args(["busybox", "wget", "-q", "-O-", url])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    )
}

/// Whether `url` (from the namespace `netns`, if given) answers `want` within five seconds (a
/// server may still be starting).
fn answers(netns: Option<&str>, url: &str, want: &str) -> bool {
    (0..50).any(|_| {
        let (ok, body) = wget(netns, url);
        ok && body == want || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            false
        }
    })
}

#[test]
fn a_rootless_container_reaches_out_and_publishes_ports_through_pasta() {
    let name = "a_rootless_container_reaches_out_and_publishes_ports_through_pasta";
    let Some(u) = User::new(name) else { return };
    if !support::have_tool(name, "pasta") {
        return;
    }
    // "Another host" at 198.51.100.2, this namespace at 198.51.100.1 routing through it.
    let far = support::FarHost::new(&format!("boxr-rlfar-{}", std::process::id()));
    let tar = busybox_tar(&u);
    let ok = |args: &[&str]| ok_with_tun(&u, args);
    ok(&["import", tar.to_str().unwrap(), "bb"]);

    // Egress on the default network: the far side sees the host's address (the user's own
    // connection, made by pasta).
    let out = ok(&[
        "run",
        "--rm",
        "bb",
        "busybox",
        "wget",
        "-qO-",
        "http://198.51.100.2:8000/cgi-bin/ip",
    ]);
    assert_eq!(out.trim(), "198.51.100.1", "{out}");

    // A published port answers from this host's loopback and from the other host; a port the
    // container listens on but did not publish does not.
    ok(&[
        "run",
        "-d",
        "--name",
        "srv",
        "-p",
        "8080:80",
        "bb",
        "sh",
        "-c",
        "mkdir -p /w && echo from-the-container > /w/i.html && busybox httpd -p 81 -h /w \
         && exec busybox httpd -f -p 80 -h /w",
    ]);
    let answered = |url: &str, ns: Option<&str>| answers(ns, url, "from-the-container");
    assert!(answered("http://127.0.0.1:8080/i.html", None));
    assert!(answered("http://198.51.100.1:8080/i.html", Some(&far.name)));
    assert!(!wget(Some(&far.name), "http://198.51.100.1:81/i.html").0);
    let ports = ok(&["port", "srv"]);
    assert!(ports.contains("80/tcp -> 0.0.0.0:8080"), "{ports}");

    // Stopped, the port is given back; started again, it answers again.
    ok(&["stop", "-t", "1", "srv"]);
    assert!(!wget(None, "http://127.0.0.1:8080/i.html").0);
    ok(&["start", "srv"]);
    assert!(answered("http://127.0.0.1:8080/i.html", None));

    // A port below net.ipv4.ip_unprivileged_port_start is root's, and the error says so.
    let (c, _, err) = boxr_with_tun(&u, &["run", "--rm", "-p", "80:80", "bb", "true"]);
    assert_ne!(c, 0);
    assert!(err.contains("ip_unprivileged_port_start"), "{err}");

    // Removed: no pasta, no namespace left.
    ok(&["rm", "-f", "srv"]);
    assert_nothing_left(&u);
}

#[test]
fn a_rootless_user_pulls_pushes_saves_and_loads() {
    let name = "a_rootless_user_pulls_pushes_saves_and_loads";
    let Some(u) = User::new(name) else { return };
    if !support::have_tool(name, "docker-registry") {
        return;
    }
    // A registry on this namespace's loopback, an image pushed there by root's boxr.
    let reg = support::Registry::start(&u.path("registry"), "", "");
    let root_store = tempfile::tempdir().unwrap();
    let tar = busybox_tar(&u);
    let (c, _, err) = boxr(root_store.path(), &["import", tar.to_str().unwrap(), "bb"]);
    assert_eq!(c, 0, "{err}");
    let remote = format!("{}/bb:1", reg.addr);
    let (c, _, err) = boxr(root_store.path(), &["push", "bb", &remote]);
    assert_eq!(c, 0, "{err}");

    // The user pulls it (layers unpacked into the user's namespace), runs it, pushes a tag.
    let echo_in = |image: &str, word: &str| {
        let out = u.ok(&["run", "--rm", "--network", "none", image, "echo", word]);
        out.trim().to_owned()
    };
    u.ok(&["pull", &remote]);
    assert_eq!(echo_in(&remote, "pulled"), "pulled");
    let again = format!("{}/bb:from-the-user", reg.addr);
    u.ok(&["tag", &remote, &again]);
    u.ok(&["push", &again]);
    let (c, _, err) = boxr(root_store.path(), &["pull", &again]);
    assert_eq!(c, 0, "{err}");
    let id = |out: String| {
        serde_json::from_str::<serde_json::Value>(&out).unwrap()[0]["Id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (_, root_json, _) = boxr(root_store.path(), &["inspect", &again]);
    assert_eq!(
        id(root_json),
        id(u.ok(&["inspect", &remote])),
        "the image made the round trip unchanged"
    );

    // save and load: the archive is the same image.
    let archive = u.path("data").join("bb.tar");
    u.ok(&["save", "-o", archive.to_str().unwrap(), &remote]);
    u.ok(&["rmi", &remote, &again]);
    u.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(echo_in(&remote, "loaded"), "loaded");
}

const STACK: &str = r#"
service "web" {
    image "bb:latest"
    command "sh" "-c" "mkdir -p /w && echo from-web > /w/i.html && exec httpd -f -p 80 -h /w"
    publish "8082:80"
}
service "client" {
    image "bb:latest"
    depends-on "web"
    command "sh" "-c" "until wget -qO- http://web/i.html > /tmp/w; do sleep 0.1; done; cat /tmp/w; wget -qO- http://198.51.100.2:8000/cgi-bin/ip; exec sleep 1000"
}
"#;

#[test]
fn a_rootless_stack_comes_up_with_names_ports_and_egress_and_goes_down_whole() {
    let name = "a_rootless_stack_comes_up_with_names_ports_and_egress_and_goes_down_whole";
    let Some(u) = User::new(name) else { return };
    if !support::have_tool(name, "pasta") {
        return;
    }
    let far = support::FarHost::new(&format!("boxr-rlstack-{}", std::process::id()));
    let tar = busybox_tar(&u);
    let project = u.path("project");
    let in_project = |args: &[&str]| ok_with_tun(&u, args);
    in_project(&["import", tar.to_str().unwrap(), "bb"]);
    let manifest = project.join("boxr.kdl");
    fs::write(&manifest, STACK).unwrap();
    fs::set_permissions(&manifest, fs::Permissions::from_mode(0o644)).unwrap();
    let file = manifest.to_str().unwrap();

    // Both services on the project's network, a bridge in the user's rootless network
    // namespace: the client finds the web service by its name and reaches the far host (which
    // sees the host's address: pasta's connection, the user's own).
    in_project(&["up", "-d", "--file", file]);
    let logs = || in_project(&["stack", "logs", "--file", file, "client"]);
    let mut seen = String::new();
    for _ in 0..100 {
        seen = logs();
        if seen.contains("198.51.100.1") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        seen.contains("from-web"),
        "the client did not reach web by name: {seen}"
    );
    assert!(seen.contains("198.51.100.1"), "no egress: {seen}");
    let looked_up = in_project(&["stack", "exec", "--file", file, "client", "nslookup", "web"]);
    assert!(looked_up.contains("Name:\tweb"), "{looked_up}");

    // The published port answers from the host's loopback and from another host.
    let answered = |url: &str, ns: Option<&str>| answers(ns, url, "from-web");
    assert!(answered("http://127.0.0.1:8082/i.html", None));
    assert!(answered("http://198.51.100.1:8082/i.html", Some(&far.name)));

    // A second network, connected to the running web container and taken off again; stopped
    // and started, web gets its address and its port back.
    in_project(&["network", "create", "extra", "--subnet", "10.78.0.0/24"]);
    in_project(&["network", "connect", "extra", "project-web-1"]);
    let addrs = in_project(&["exec", "project-web-1", "ip", "-4", "-o", "addr"]);
    assert!(addrs.contains("inet 10.78.0.2/24"), "{addrs}");
    in_project(&["network", "disconnect", "extra", "project-web-1"]);
    let addrs = in_project(&["exec", "project-web-1", "ip", "-4", "-o", "addr"]);
    assert!(!addrs.contains("10.78.0."), "{addrs}");
    in_project(&["network", "rm", "extra"]);
    in_project(&["stop", "-t", "1", "project-web-1"]);
    assert!(!wget(None, "http://127.0.0.1:8082/i.html").0);
    in_project(&["start", "project-web-1"]);
    assert!(answered("http://127.0.0.1:8082/i.html", None));
    let looked_up = in_project(&["stack", "exec", "--file", file, "client", "nslookup", "web"]);
    assert!(looked_up.contains("Name:\tweb"), "{looked_up}");

    // A limit the user has no cgroup for is refused, with the reason, and nothing is left.
    let limited = STACK.replace("publish \"8082:80\"", "memory \"64MiB\"");
    let other = u.path("data").join("limited.kdl");
    fs::write(&other, limited).unwrap();
    fs::set_permissions(&other, fs::Permissions::from_mode(0o644)).unwrap();
    let (c, _, err) = boxr_with_tun(
        &u,
        &[
            "up",
            "-d",
            "-p",
            "limited",
            "--file",
            other.to_str().unwrap(),
            "web",
        ],
    );
    assert_ne!(c, 0);
    assert!(err.contains("need a cgroup"), "{err}");
    in_project(&["down", "-p", "limited", "--file", other.to_str().unwrap()]);

    // Down: no container, resolver, pasta or namespace of the user's is left; the port is free.
    in_project(&["down", "--file", file]);
    assert!(!wget(None, "http://127.0.0.1:8082/i.html").0);
    assert_nothing_left(&u);
}

#[test]
fn a_rootless_container_gains_nothing_the_user_does_not_have() {
    let name = "a_rootless_container_gains_nothing_the_user_does_not_have";
    let Some(u) = User::new(name) else { return };
    if !support::have_tool(name, "gcc") {
        return;
    }
    // The escape probe of the confinement tests.
    let rootfs = support::busybox_rootfs(&u.path("pr"));
    support::build_probe("probe.c", &rootfs.join("probe"));
    let tar = tar_of(&u, &rootfs, "probe.tar");
    u.ok(&["import", tar.to_str().unwrap(), "probe:1"]);

    // Every known escape is refused as in root's containers.
    let report: std::collections::BTreeMap<String, String> = u
        .ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "probe:1",
            "/probe",
            "all",
        ])
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    support::assert_known_escapes_refused(&report, true);

    // Root in the container is the user: a root-owned file bound in (which the user may not
    // write, nor read) stays root's. The container sees its owner as unmapped, cannot read,
    // write, chown or chmod it, even with every capability (--privileged).
    let secret = u.path("secret");
    fs::write(&secret, "root's").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let open = u.path("open");
    fs::write(&open, "root's, readable").unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o644)).unwrap();
    let binds = [
        "-v".to_owned(),
        format!("{}:/secret", secret.display()),
        "-v".to_owned(),
        format!("{}:/open", open.display()),
    ];
    let script = "stat -c '%u:%g' /open; cat /secret 2>/dev/null && echo READ-SECRET; \
                  echo x >> /open 2>/dev/null && echo WROTE; \
                  chown 0:0 /open 2>/dev/null && echo CHOWNED; \
                  chmod 666 /open 2>/dev/null && echo CHMODDED; \
                  mknod /null2 c 1 3 2>/dev/null && echo MKNOD; echo done";
    for privileged in [false, true] {
        let mut args: Vec<&str> = vec!["run", "--rm", "--network", "none"];
        if privileged {
            args.push("--privileged");
        }
        args.extend(binds.iter().map(String::as_str));
        args.extend(["probe:1", "sh", "-c", script]);
        let out = u.ok(&args);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.first(), Some(&"65534:65534"), "{out}");
        for gained in ["READ-SECRET", "WROTE", "CHOWNED", "CHMODDED", "MKNOD"] {
            assert!(
                !out.contains(gained),
                "privileged={privileged}: {gained}\n{out}"
            );
        }
        assert_eq!(lines.last(), Some(&"done"), "{out}");
    }
    assert_eq!(fs::read_to_string(&open).unwrap(), "root's, readable");
    let m = fs::metadata(&open).unwrap();
    assert_eq!((m.uid(), m.mode() & 0o777), (0, 0o644));
}

/// boxr as the user, as [`boxr_with_tun`]; its output, once it succeeded.
fn ok_with_tun(u: &User, args: &[&str]) -> String {
    let (c, out, err) = boxr_with_tun(u, args);
    assert_eq!(c, 0, "boxr {args:?}: {err}");
    out
}

/// Asserts that nothing runs in the user's namespace but its pause process (no container,
/// pasta or resolver), and that no network namespace mount of the user's store is left.
fn assert_nothing_left(u: &User) {
    let pause = u.pause_pid().expect("a pause process");
    let left = left_in_namespace(pause);
    assert!(left.is_empty(), "left in the user's namespace: {left:?}");
    let mounts = fs::read_to_string(format!("/proc/{pause}/mountinfo")).unwrap();
    assert!(
        !mounts
            .lines()
            .any(|l| l.contains(&*u.path("home").to_string_lossy()) && l.contains("netns")),
        "a namespace mount is left: {mounts}"
    );
}

/// The processes in the user's namespace other than the pause process `pause` (their command
/// lines).
fn left_in_namespace(pause: i32) -> Vec<String> {
    let ns = |pid: i32| fs::read_link(format!("/proc/{pid}/ns/user")).ok();
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| *p != pause && ns(*p).is_some() && ns(*p) == ns(pause))
        .filter(|p| boxr::platform::process_start_time(*p).is_some())
        .filter_map(|p| fs::read_to_string(format!("/proc/{p}/cmdline")).ok())
        .filter(|c| !c.is_empty())
        .collect()
}

#[test]
fn gc_ends_the_pastas_and_namespaces_a_crashed_rootless_boxr_left() {
    let name = "gc_ends_the_pastas_and_namespaces_a_crashed_rootless_boxr_left";
    let Some(u) = User::new(name) else { return };
    if !support::have_tool(name, "pasta") {
        return;
    }
    let _far = support::FarHost::new(&format!("boxr-rlgc-{}", std::process::id()));
    let tar = busybox_tar(&u);
    let ok = |args: &[&str]| ok_with_tun(&u, args);
    ok(&["import", tar.to_str().unwrap(), "bb"]);
    ok(&["network", "create", "crashnet"]);
    // One container on pasta's network (a pasta of its own), one on a user network (the
    // rootless network namespace, its pasta, a resolver).
    let mut ids = Vec::new();
    for net in ["bridge", "crashnet"] {
        let id = ok(&["run", "-d", "--network", net, "bb", "sleep", "600"]);
        ids.push(id.trim().to_owned());
    }
    let pause = u.pause_pid().expect("a pause process");
    let running = left_in_namespace(pause);
    assert_eq!(
        running.iter().filter(|c| c.starts_with("pasta")).count(),
        2,
        "{running:?}"
    );
    // The crash: everything of the containers killed, and their directories gone (as if a
    // `boxr rm` had been killed right after removing them), nothing released.
    for id in &ids {
        let pids = ok(&["inspect", "-f", "{{.State.MonitorPid}} {{.State.Pid}}", id]);
        for pid in pids.split_whitespace() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid.parse().unwrap()),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let dir = u.path("home/.local/share/boxr/containers").join(id);
        let removed = Command::new("rm").arg("-rf").arg(&dir).status().unwrap();
        assert!(removed.success());
    }
    // gc ends both pastas and the resolver, and drops the namespaces' mounts.
    ok(&["gc"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let left = left_in_namespace(pause);
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "left after gc: {left:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_nothing_left(&u);
    ok(&["network", "rm", "crashnet"]);
}
