//! Bridge networks, checked from inside containers. Every test runs on a thread that first
//! moves into a network namespace of its own, so boxr's bridges, veths and nftables rules are
//! made there and vanish with it; "another host" is a second namespace wired to it by a veth
//! pair with TEST-NET-2 addresses. No traffic leaves those namespaces.

mod support;

use std::path::Path;
use std::process::{Child, Command};

use support::{FarHost, boxr, boxr_links, busybox_rootfs, have_tool, privileged, sh};

/// Runs `body` on a thread of its own in a new network namespace (with `lo` up).
fn in_own_netns(body: impl FnOnce() + Send + 'static) {
    std::thread::spawn(move || {
        support::own_netns();
        body();
    })
    .join()
    .unwrap_or_else(|p| std::panic::resume_unwind(p));
}

/// Removes every container and network of `store` when dropped, also when the test fails: a
/// container's network namespace is a mount in the store, which the temporary directory's
/// removal cannot take away (declare it after the directory, so it drops first).
struct Cleanup<'a>(&'a Path);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let (_, ids, _) = boxr(self.0, &["ps", "-aq"]);
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            let _ = boxr(self.0, &args);
        }
        let _ = boxr(self.0, &["network", "prune"]);
        let _ = boxr(self.0, &["gc"]);
    }
}

/// Imports a busybox rootfs made in `dir` into `store` as `bb:1`.
fn import_busybox(dir: &Path, store: &Path) {
    let rootfs = busybox_rootfs(dir);
    let (c, _, err) = boxr(store, &["import", rootfs.to_str().unwrap(), "bb:1"]);
    assert_eq!(c, 0, "{err}");
}

/// Asserts that `fetch` answers `want`, retried for two seconds while a server starts.
fn assert_answers(fetch: &dyn Fn() -> (i32, String, String), want: &str) {
    let mut got = fetch();
    for _ in 0..20 {
        if got.0 == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        got = fetch();
    }
    assert_eq!((got.0, got.1.as_str()), (0, want), "{}", got.2);
}

fn ip_of(store: &Path, network: &str, container: &str) -> String {
    let (c, out, err) = boxr(store, &["network", "inspect", network]);
    assert_eq!(c, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let (_, ep) = v[0]["Containers"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(id, _)| id.starts_with(container))
        .unwrap_or_else(|| panic!("{container} is on {network}: {out}"));
    ep["IPv4Address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned()
}

fn nft_ruleset() -> String {
    let out = Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn containers_on_a_network_reach_each_other_and_the_outside_and_no_one_else() {
    let name = "containers_on_a_network_reach_each_other_and_the_outside_and_no_one_else";
    if !privileged(name) || !have_tool(name, "nft") || !have_tool(name, "ip") {
        return;
    }
    in_own_netns(|| {
        let w = tempfile::tempdir().unwrap();
        let store = w.path().join("store");
        let _cleanup = Cleanup(&store);
        let rootfs = busybox_rootfs(w.path());
        std::fs::write(rootfs.join("tmp/index.html"), "hello from a1\n").unwrap();
        let (c, _, err) = boxr(&store, &["import", rootfs.to_str().unwrap(), "bb:1"]);
        assert_eq!(c, 0, "{err}");
        let far = FarHost::new(&format!("boxr-far-{}", std::process::id()));
        for args in [
            &["network", "create", "a"][..],
            &["network", "create", "b"],
            &[
                "network",
                "create",
                "--internal",
                "--subnet",
                "10.123.0.0/24",
                "c",
            ],
        ] {
            let (c, _, err) = boxr(&store, args);
            assert_eq!(c, 0, "{err}");
        }
        // An explicit subnet that overlaps another network is refused, naming both.
        let (c, _, err) = boxr(
            &store,
            &["network", "create", "--subnet", "10.123.0.0/16", "d"],
        );
        assert_ne!(c, 0);
        assert!(
            err.contains("overlaps network `c` (10.123.0.0/24)"),
            "{err}"
        );

        let (c, a1, err) = boxr(
            &store,
            &[
                "run",
                "-d",
                "--name",
                "a1",
                "--network",
                "a",
                "bb:1",
                "httpd",
                "-f",
                "-p",
                "80",
                "-h",
                "/tmp",
            ],
        );
        assert_eq!(c, 0, "{err}");
        let a1_ip = ip_of(&store, "a", a1.trim());
        // `inspect` shows it as Docker does.
        let (c, out, err) = boxr(
            &store,
            &[
                "inspect",
                "-f",
                "{{.NetworkSettings.Networks.a.IPAddress}} {{.NetworkSettings.Gateway}}",
                "a1",
            ],
        );
        assert_eq!(c, 0, "{err}");
        assert_eq!(out.trim(), format!("{a1_ip} 172.18.0.1"));
        let url = format!("http://{a1_ip}/index.html");
        let fetch = |network: &str, url: &str| wget_in(&store, network, url);
        // Same network: reachable (retried while httpd starts).
        assert_answers(&|| fetch("a", &url), "hello from a1\n");
        // Stopped, it gives its namespace and veth back (as Docker's do) and keeps its address;
        // started again, it has them back, with that address.
        let veth = format!("vb{}", &a1.trim()[..11]);
        assert!(boxr_links().contains(&veth), "{:?}", boxr_links());
        let (c, _, err) = boxr(&store, &["stop", "-t", "1", "a1"]);
        assert_eq!(c, 0, "{err}");
        assert!(!boxr_links().contains(&veth), "{:?}", boxr_links());
        let a1_dir = store.join("containers").join(a1.trim());
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounts.contains(a1_dir.to_str().unwrap()),
            "its namespace is unmounted"
        );
        let (c, _, err) = boxr(&store, &["start", "a1"]);
        assert_eq!(c, 0, "{err}");
        let (c, out, err) = boxr(
            &store,
            &["exec", "a1", "ip", "-4", "-o", "addr", "show", "eth0"],
        );
        assert_eq!(c, 0, "{err}");
        assert!(out.contains(&format!("inet {a1_ip}/16")), "{out}");
        assert_answers(&|| fetch("a", &url), "hello from a1\n");
        // Another network: isolated.
        let (c, out, _) = fetch("b", &url);
        assert_ne!(c, 0, "b reached a: {out}");
        // The container sees its own address, its gateway route, and its name in /etc/hosts.
        let (c, out, err) = boxr(
            &store,
            &[
                "run",
                "--rm",
                "--network",
                "b",
                "--hostname",
                "web",
                "bb:1",
                "sh",
                "-c",
                "ip -4 -o addr show eth0; ip route; grep web /etc/hosts",
            ],
        );
        assert_eq!(c, 0, "{err}");
        assert!(out.contains("inet 172.19.0.2/16"), "{out}");
        assert!(out.contains("default via 172.19.0.1"), "{out}");
        assert!(out.contains("172.19.0.2\tweb"), "{out}");
        // A container that stays gives its veth back when it ends, in the foreground (the
        // deletion finishes after `run` returns) and under a monitor.
        let (c, _, err) = boxr(
            &store,
            &["run", "--name", "fg", "--network", "b", "bb:1", "true"],
        );
        assert_eq!(c, 0, "{err}");
        let (c, _, err) = boxr(
            &store,
            &["create", "--name", "mon", "--network", "b", "bb:1", "true"],
        );
        assert_eq!(c, 0, "{err}");
        let (c, _, err) = boxr(&store, &["start", "-a", "mon"]);
        assert_eq!(c, 0, "{err}");
        for name in ["fg", "mon"] {
            let (_, id, _) = boxr(&store, &["inspect", "-f", "{{.Id}}", name]);
            let veth = format!("vb{}", &id.trim()[..11]);
            let gone = (0..100).any(|_| {
                std::thread::sleep(std::time::Duration::from_millis(20));
                !boxr_links().contains(&veth)
            });
            assert!(gone, "{name}: {:?}", boxr_links());
        }
        let (c, _, err) = boxr(&store, &["rm", "fg", "mon"]);
        assert_eq!(c, 0, "{err}");
        // --ip: a fixed address, seen from inside; a taken or foreign one is refused.
        let (c, out, err) = boxr(
            &store,
            &[
                "run",
                "--rm",
                "--network",
                "b",
                "--ip",
                "172.19.0.50",
                "bb:1",
                "ip",
                "-4",
                "-o",
                "addr",
                "show",
                "eth0",
            ],
        );
        assert_eq!(c, 0, "{err}");
        assert!(out.contains("inet 172.19.0.50/16"), "{out}");
        let (c, _, err) = boxr(
            &store,
            &[
                "run",
                "--rm",
                "--network",
                "a",
                "--ip",
                &a1_ip,
                "bb:1",
                "true",
            ],
        );
        assert_ne!(c, 0);
        assert!(err.contains("is taken on a by container"), "{err}");
        let (c, _, err) = boxr(
            &store,
            &[
                "run",
                "--rm",
                "--network",
                "a",
                "--ip",
                "10.0.0.5",
                "bb:1",
                "true",
            ],
        );
        assert_ne!(c, 0);
        assert!(err.contains("not a free host address of a"), "{err}");
        // Egress through masquerade: the other host sees the test namespace's address.
        let (c, out, err) = fetch("a", "http://198.51.100.2:8000/cgi-bin/ip");
        assert_eq!((c, out.trim()), (0, "198.51.100.1"), "{err}");
        // An internal network has no way out.
        let (c, out, _) = fetch("c", "http://198.51.100.2:8000/cgi-bin/ip");
        assert_ne!(c, 0, "an internal network reached out: {out}");
        // A network in use is not removed, and says by whom.
        let (c, _, err) = boxr(&store, &["network", "rm", "a"]);
        assert_ne!(c, 0);
        assert!(err.contains(&a1.trim()[..12]), "{err}");
        let (c, _, err) = boxr(&store, &["network", "rm", "bridge"]);
        assert_ne!(c, 0);
        assert!(err.contains("pre-defined"), "{err}");
        // Removing the container takes its veth and lease; removing the networks takes the
        // bridges and their rules.
        let (c, _, err) = boxr(&store, &["rm", "-f", "a1"]);
        assert_eq!(c, 0, "{err}");
        let (c, _, err) = boxr(&store, &["network", "rm", "a", "b"]);
        assert_eq!(c, 0, "{err}");
        // prune: every network no container is on, but the default one.
        let (c, out, err) = boxr(&store, &["network", "prune"]);
        assert_eq!((c, out.as_str()), (0, "c\n"), "{err}");
        let (c, out, _) = boxr(&store, &["network", "ls", "-q"]);
        assert_eq!((c, out.as_str()), (0, "bridge\n"));
        assert_eq!(boxr_links(), Vec::<String>::new());
        let rules = nft_ruleset();
        assert!(!rules.contains("chain"), "{rules}");
        drop(far);
    });
}

#[test]
fn a_killed_container_leaves_nothing_that_rm_and_gc_cannot_remove() {
    let name = "a_killed_container_leaves_nothing_that_rm_and_gc_cannot_remove";
    if !privileged(name) || !have_tool(name, "nft") || !have_tool(name, "ip") {
        return;
    }
    in_own_netns(|| {
        let w = tempfile::tempdir().unwrap();
        let store = w.path().join("store");
        let _cleanup = Cleanup(&store);
        import_busybox(w.path(), &store);
        // The default network `bridge` is made on first use.
        let (c, id, err) = boxr(
            &store,
            &["run", "-d", "--network", "bridge", "bb:1", "sleep", "600"],
        );
        assert_eq!(c, 0, "{err}");
        let id = id.trim().to_owned();
        assert_eq!(
            boxr_links().len(),
            2,
            "boxr0 and the veth: {:?}",
            boxr_links()
        );
        let (c, out, _) = boxr(
            &store,
            &["inspect", "-f", "{{.State.MonitorPid}} {{.State.Pid}}", &id],
        );
        assert_eq!(c, 0);
        for pid in out.split_whitespace() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid.parse().unwrap()),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // The next command that sees it ended gives its network place back (no monitor will).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let (c, ps, _) = boxr(&store, &["ps", "-a"]);
            assert_eq!(c, 0);
            if ps.contains("Exited (") {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{ps}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert_eq!(
            boxr_links(),
            ["boxr0"],
            "the veth went when the end was recorded"
        );
        let (c, _, err) = boxr(&store, &["rm", "-f", &id]);
        assert_eq!(c, 0, "{err}");
        assert_eq!(boxr_links(), ["boxr0"], "the veth went with the container");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(&id), "its namespace's mount is gone");
        // A network whose file vanished (as if `network rm` was killed half-way): gc removes
        // the bridge it journaled.
        std::fs::remove_file(store.join("networks/bridge.json")).unwrap();
        let (c, out, err) = boxr(&store, &["gc"]);
        assert_eq!(c, 0, "{err}");
        assert!(
            out.contains(", 1 network resource;"),
            "gc says what it removed: {out}"
        );
        assert_eq!(boxr_links(), Vec::<String>::new());
        assert_eq!(
            std::fs::read_dir(store.join("journal")).unwrap().count(),
            0,
            "nothing journaled is left"
        );
    });
}

#[test]
fn a_killed_foreground_run_that_publishes_ports_takes_its_container_with_it() {
    let name = "a_killed_foreground_run_that_publishes_ports_takes_its_container_with_it";
    if !privileged(name) || !have_tool(name, "nft") || !have_tool(name, "ip") {
        return;
    }
    in_own_netns(|| {
        let w = tempfile::tempdir().unwrap();
        let store = w.path().join("store");
        let _cleanup = Cleanup(&store);
        import_busybox(w.path(), &store);
        // `boxr run` holds the port and runs the helper as its child.
        let mut run = Command::new(env!("CARGO_BIN_EXE_boxr"))
            .args(["run", "--rm", "-p", "8093:80", "bb:1", "sh", "-c"])
            .arg("echo up; exec sleep 1234")
            .env("BOXR_ROOT", &store)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut out = std::io::BufReader::new(run.stdout.take().unwrap());
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        assert_eq!(line.trim(), "up");
        let sleeping = || {
            std::fs::read_dir("/proc")
                .unwrap()
                .flatten()
                .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
                .any(|c| c == b"sleep\x001234\x00")
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !sleeping() {
            assert!(
                std::time::Instant::now() < deadline,
                "the command never ran"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(run.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        run.wait().unwrap();
        // The helper dies with it, and the container with the helper.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while sleeping() {
            assert!(
                std::time::Instant::now() < deadline,
                "the container outlived its boxr run"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(port_free(8093), "the published port is free again");
    });
}

/// `wget` of `url` from a `--rm` container of `bb:1` on `network`.
fn wget_in(store: &Path, network: &str, url: &str) -> (i32, String, String) {
    boxr(
        store,
        &[
            "run",
            "--rm",
            "--network",
            network,
            "bb:1",
            "timeout",
            "5",
            "wget",
            "-q",
            "-O-",
            url,
        ],
    )
}

/// `busybox wget` of `url` in network namespace `netns` (the test's own when `None`).
fn wget_from(netns: Option<&str>, url: &str) -> (i32, String, String) {
    let mut cmd = match netns {
        Some(n) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", n]);
            c
        }
        None => Command::new("env"),
    };
    let out = cmd
        .args(["timeout", "5", "busybox", "wget", "-q", "-O-", url])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn udp_ask(udp: &Path, netns: Option<&str>, host: &str, port: &str) -> (i32, String, String) {
    udp_ask_from(udp, netns, host, port, None)
}

/// `udp ask` from a fixed source port, if given (one flow, as conntrack tracks it).
fn udp_ask_from(
    udp: &Path,
    netns: Option<&str>,
    host: &str,
    port: &str,
    source: Option<&str>,
) -> (i32, String, String) {
    let mut cmd = match netns {
        Some(n) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", n]);
            c.arg(udp);
            c
        }
        None => Command::new(udp),
    };
    let out = cmd
        .args(["ask", host, port, "hi"])
        .args(source)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Whether a TCP listener can take `port` on every address (no one holds it).
fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("0.0.0.0", port)).is_ok()
}

#[test]
fn published_ports_answer_other_hosts_loopback_and_containers_and_nothing_else_does() {
    let name = "published_ports_answer_other_hosts_loopback_and_containers_and_nothing_else_does";
    if !privileged(name)
        || !have_tool(name, "nft")
        || !have_tool(name, "ip")
        || !have_tool(name, "gcc")
    {
        return;
    }
    in_own_netns(|| {
        let w = tempfile::tempdir().unwrap();
        let store = w.path().join("store");
        let _cleanup = Cleanup(&store);
        let rootfs = busybox_rootfs(w.path());
        std::fs::write(rootfs.join("tmp/index.html"), "hello from web\n").unwrap();
        support::build_probe("udp.c", &rootfs.join("udp"));
        let udp = w.path().join("udp");
        std::fs::copy(rootfs.join("udp"), &udp).unwrap();
        let (c, _, err) = boxr(&store, &["import", rootfs.to_str().unwrap(), "bb:1"]);
        assert_eq!(c, 0, "{err}");
        // An image that exposes a TCP and a UDP port, for -P.
        std::fs::write(
            w.path().join("boxr.kdl"),
            "image \"web\" {\n    from \"bb:1\"\n    expose 80 \"5353/udp\"\n    \
             cmd \"sh\" \"-c\" \"httpd -p 80 -h /tmp && httpd -p 81 -h /tmp && exec /udp serve 5353\"\n}\n",
        )
        .unwrap();
        let (c, _, err) = support::boxr_in(&store, w.path(), &["build", "-f", "boxr.kdl"]);
        assert_eq!(c, 0, "{err}");
        let far = FarHost::new(&format!("boxr-pfar-{}", std::process::id()));

        let (c, _, err) = boxr(
            &store,
            &[
                "run",
                "-d",
                "--name",
                "web",
                "--network",
                "bridge",
                "-p",
                "8080:80",
                "-p",
                "5353:5353/udp",
                "web",
            ],
        );
        assert_eq!(c, 0, "{err}");
        let web_ip = ip_of(&store, "bridge", "");
        // (a) Another host reaches it on the host's address (DNAT); the container sees the
        // other host's own address.
        assert_answers(
            &|| wget_from(Some(&far.name), "http://198.51.100.1:8080/index.html"),
            "hello from web\n",
        );
        let (c, out, err) = udp_ask(&udp, Some(&far.name), "198.51.100.1", "5353");
        assert_eq!((c, out.as_str()), (0, "198.51.100.2 hi\n"), "{err}");
        // An unpublished port is not reachable, nor the published one directly, even for a
        // neighbour that routes the bridge's subnet through this host.
        sh(&format!(
            "ip -n {} route add 172.17.0.0/16 via 198.51.100.1",
            far.name
        ));
        let (c, out, _) = wget_from(Some(&far.name), &format!("http://{web_ip}:81/index.html"));
        assert_ne!(c, 0, "an unpublished port answered another host: {out}");
        let (c, out, _) = wget_from(Some(&far.name), &format!("http://{web_ip}:80/index.html"));
        assert_ne!(c, 0, "a direct route to the container went through: {out}");
        // (b) This host, on loopback (the proxy: no route_localnet) and on its own address.
        assert_eq!(
            std::fs::read_to_string("/proc/sys/net/ipv4/conf/all/route_localnet")
                .unwrap()
                .trim(),
            "0"
        );
        let (c, out, err) = wget_from(None, "http://127.0.0.1:8080/index.html");
        assert_eq!((c, out.as_str()), (0, "hello from web\n"), "{err}");
        let (c, out, err) = wget_from(None, "http://198.51.100.1:8080/index.html");
        assert_eq!((c, out.as_str()), (0, "hello from web\n"), "{err}");
        let (c, out, err) = udp_ask(&udp, None, "127.0.0.1", "5353");
        assert_eq!((c, out.as_str()), (0, "172.17.0.1 hi\n"), "{err}");
        let has_v6_loopback = std::fs::read_to_string("/proc/net/if_inet6").is_ok_and(|t| {
            t.lines()
                .any(|l| l.starts_with("00000000000000000000000000000001"))
        });
        if has_v6_loopback {
            let (c, out, err) = wget_from(None, "http://[::1]:8080/index.html");
            assert_eq!((c, out.as_str()), (0, "hello from web\n"), "{err}");
        }
        // (c) Containers, through the host's address (hairpin).
        let (c, out, err) = wget_in(&store, "bridge", "http://198.51.100.1:8080/index.html");
        assert_eq!((c, out.as_str()), (0, "hello from web\n"), "{err}");
        // Seen where users look.
        let (c, out, _) = boxr(&store, &["ps", "--format", "{{.Ports}}"]);
        assert_eq!(c, 0);
        assert!(out.contains("0.0.0.0:8080->80/tcp"), "{out}");
        assert!(out.contains("0.0.0.0:5353->5353/udp"), "{out}");
        let (c, out, _) = boxr(&store, &["port", "web", "80"]);
        assert_eq!((c, out.lines().next()), (0, Some("0.0.0.0:8080")));
        // A range is listed as one, as Docker lists it.
        let (c, _, err) = boxr(
            &store,
            &[
                "run",
                "-d",
                "--name",
                "rng",
                "--network",
                "bridge",
                "-p",
                "9100-9102:9100-9102",
                "bb:1",
                "sleep",
                "1000",
            ],
        );
        assert_eq!(c, 0, "{err}");
        let (_, out, _) = boxr(&store, &["ps", "-f", "name=rng", "--format", "{{.Ports}}"]);
        assert!(out.starts_with("0.0.0.0:9100-9102->9100-9102/tcp"), "{out}");
        let (c, _, err) = boxr(&store, &["rm", "-f", "rng"]);
        assert_eq!(c, 0, "{err}");

        // A taken port fails before anything is created, naming its holder: a container...
        let (_, before, _) = boxr(&store, &["ps", "-aq"]);
        let links = boxr_links();
        let (c, _, err) = boxr(
            &store,
            &[
                "run",
                "--rm",
                "--network",
                "bridge",
                "-p",
                "8080:80",
                "bb:1",
                "true",
            ],
        );
        assert_ne!(c, 0);
        assert!(err.contains("0.0.0.0:8080/tcp"), "{err}");
        assert!(err.contains("held by container web"), "{err}");
        // ... or a process.
        let mine = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let port = mine.local_addr().unwrap().port().to_string();
        let (c, _, err) = boxr(
            &store,
            &[
                "run",
                "-d",
                "--network",
                "bridge",
                "-p",
                &format!("{port}:80"),
                "bb:1",
                "true",
            ],
        );
        assert_ne!(c, 0);
        assert!(
            err.contains(&format!("held by process {}", std::process::id())),
            "{err}"
        );
        drop(mine);
        let (_, after, _) = boxr(&store, &["ps", "-aq"]);
        assert_eq!(before, after, "no container was left");
        assert_eq!(boxr_links(), links, "no veth was left");

        // -P: each exposed port on a free host port.
        let (c, _, err) = boxr(
            &store,
            &[
                "run",
                "-d",
                "--name",
                "any",
                "--network",
                "bridge",
                "-P",
                "web",
            ],
        );
        assert_eq!(c, 0, "{err}");
        let (c, out, err) = boxr(&store, &["port", "any", "80/tcp"]);
        assert_eq!(c, 0, "{err}");
        let any_port = out
            .lines()
            .next()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .to_owned();
        assert_ne!(any_port, "80");
        assert_answers(
            &|| {
                wget_from(
                    Some(&far.name),
                    &format!("http://198.51.100.1:{any_port}/index.html"),
                )
            },
            "hello from web\n",
        );
        let (c, out, _) = boxr(&store, &["port", "any", "5353/udp"]);
        assert_eq!(c, 0);
        let udp_port = out
            .lines()
            .next()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .to_owned();
        let (c, out, err) = udp_ask(&udp, Some(&far.name), "198.51.100.1", &udp_port);
        assert_eq!((c, out.as_str()), (0, "198.51.100.2 hi\n"), "{err}");

        // Stopped, a container holds nothing; started, it publishes again.
        let (c, _, err) = boxr(&store, &["stop", "-t", "1", "web"]);
        assert_eq!(c, 0, "{err}");
        assert!(port_free(8080), "a stopped container still holds its port");
        let (c, out, _) = wget_from(Some(&far.name), "http://198.51.100.1:8080/index.html");
        assert_ne!(c, 0, "a stopped container's port answered: {out}");
        let (c, _, err) = boxr(&store, &["start", "web"]);
        assert_eq!(c, 0, "{err}");
        assert_answers(
            &|| wget_from(Some(&far.name), "http://198.51.100.1:8080/index.html"),
            "hello from web\n",
        );
        let (c, out, err) = udp_ask(&udp, Some(&far.name), "198.51.100.1", "5353");
        assert_eq!((c, out.as_str()), (0, "198.51.100.2 hi\n"), "{err}");

        // In the foreground, `boxr run` holds the ports itself and returns the exit code; the
        // container reaches itself through the host's address.
        let (c, out, err) = boxr(
            &store,
            &[
                "run",
                "--rm",
                "--network",
                "bridge",
                "-p",
                "8282:80",
                "bb:1",
                "sh",
                "-c",
                "httpd -p 80 -h /tmp && timeout 5 wget -q -O- http://198.51.100.1:8282/index.html; exit 3",
            ],
        );
        assert_eq!(c, 3, "{err}");
        assert_eq!(out, "hello from web\n", "{err}");
        assert!(port_free(8282));

        // A holder killed with -9 leaves entries that `rm` removes.
        let (c, out, _) = boxr(
            &store,
            &[
                "inspect",
                "-f",
                "{{.State.MonitorPid}} {{.State.Pid}}",
                "web",
            ],
        );
        assert_eq!(c, 0);
        assert!(!out.contains('<'), "{out}");
        for pid in out.split_whitespace() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid.parse().unwrap_or_else(|_| panic!("{out}"))),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for args in [&["rm", "-f", "web"][..], &["rm", "-f", "any"]] {
            let (c, _, err) = boxr(&store, args);
            assert_eq!(c, 0, "{err}");
        }
        let rules = nft_ruleset();
        assert!(!rules.contains("ports-"), "{rules}");
        assert!(port_free(8080));

        // UDP published again by another container: a flow the kernel still tracks to the
        // first one's address is forgotten, so the same client reaches the new one.
        let udp_server = |name: &str, ip: &str| {
            let (c, _, err) = boxr(
                &store,
                &[
                    "run",
                    "-d",
                    "--name",
                    name,
                    "--network",
                    "bridge",
                    "--ip",
                    ip,
                    "-p",
                    "5353:5353/udp",
                    "bb:1",
                    "/udp",
                    "serve",
                    "5353",
                ],
            );
            assert_eq!(c, 0, "{err}");
        };
        udp_server("u1", "172.17.0.40");
        let ask = || udp_ask_from(&udp, Some(&far.name), "198.51.100.1", "5353", Some("40000"));
        let (c, out, err) = ask();
        assert_eq!((c, out.as_str()), (0, "198.51.100.2 hi\n"), "{err}");
        let (c, _, err) = boxr(&store, &["rm", "-f", "u1"]);
        assert_eq!(c, 0, "{err}");
        udp_server("u2", "172.17.0.41");
        let (c, out, err) = ask();
        assert_eq!((c, out.as_str()), (0, "198.51.100.2 hi\n"), "{err}");

        // Nothing is published from an internal network, nor without a bridge network; both
        // are refused before anything stays.
        let (c, _, err) = boxr(&store, &["network", "create", "--internal", "inner"]);
        assert_eq!(c, 0, "{err}");
        for network in ["inner", "none"] {
            let (c, _, err) = boxr(
                &store,
                &[
                    "run",
                    "--rm",
                    "--network",
                    network,
                    "-p",
                    "9999:80",
                    "bb:1",
                    "true",
                ],
            );
            assert_ne!(c, 0);
            assert!(
                err.contains("is internal") || err.contains("need a bridge network"),
                "{err}"
            );
        }
        let (c, _, err) = boxr(&store, &["network", "rm", "inner"]);
        assert_eq!(c, 0, "{err}");
        drop(far);
    });
}

/// A process of the test's, killed when dropped (also when the test fails).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The pids of `boxr __dns` resolvers of `store`.
fn resolvers(store: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains("__dns") && cmd.contains(store.to_str().unwrap()) {
            out.push(p.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

#[test]
fn containers_find_each_other_by_name_and_the_rest_through_the_hosts_resolvers() {
    let name = "containers_find_each_other_by_name_and_the_rest_through_the_hosts_resolvers";
    if !privileged(name)
        || !have_tool(name, "nft")
        || !have_tool(name, "ip")
        || !have_tool(name, "gcc")
    {
        return;
    }
    in_own_netns(|| {
        let w = tempfile::tempdir().unwrap();
        let store = w.path().join("store");
        let _cleanup = Cleanup(&store);
        let rootfs = busybox_rootfs(w.path());
        std::fs::write(rootfs.join("tmp/index.html"), "hello from srv\n").unwrap();
        let udp = w.path().join("udp");
        support::build_probe("udp.c", &udp);
        let far = FarHost::new(&format!("boxr-dfar-{}", std::process::id()));
        // The host's resolver: on the other host, knowing far.example.com (198.51.100.7).
        let upstream = KillOnDrop(
            Command::new("ip")
                .args(["netns", "exec", &far.name])
                .arg(&udp)
                .args(["dns", "53", "198.51.100.7", "far.example.com"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let resolv = w.path().join("resolv.conf");
        std::fs::write(&resolv, "search example.org\nnameserver 198.51.100.2\n").unwrap();
        let resolv = resolv.to_str().unwrap().to_owned();
        let bx = |args: &[&str]| {
            support::boxr_env(&store, w.path(), &[("BOXR_RESOLV_CONF", &resolv)], args)
        };
        let (c, _, err) = bx(&["import", rootfs.to_str().unwrap(), "bb:1"]);
        assert_eq!(c, 0, "{err}");
        for n in ["app", "other"] {
            let (c, _, err) = bx(&["network", "create", n]);
            assert_eq!(c, 0, "{err}");
        }
        let (c, _, err) = bx(&[
            "run",
            "-d",
            "--name",
            "srv",
            "--network-alias",
            "db",
            "--network",
            "app",
            "bb:1",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/tmp",
        ]);
        assert_eq!(c, 0, "{err}");
        let srv_ip = ip_of(&store, "app", "");
        assert_eq!(resolvers(&store).len(), 1, "one resolver for the network");
        let client = |network: &str, script: &str| {
            bx(&[
                "run",
                "--rm",
                "--network",
                network,
                "bb:1",
                "sh",
                "-c",
                script,
            ])
        };
        // By name, by alias, and in the network's zone; the container's resolv.conf names the
        // network's resolver and keeps the host's search domains.
        let (c, out, err) = client(
            "app",
            "cat /etc/resolv.conf; for h in srv db srv.app db.app; do \
             timeout 5 wget -q -O- http://$h/index.html || echo $h failed; done",
        );
        assert_eq!(c, 0, "{err}");
        assert!(out.contains("nameserver 172.18.0.1"), "{out}");
        assert!(out.contains("search example.org"), "{out}");
        assert_eq!(out.matches("hello from srv").count(), 4, "{out}");
        // A known name without IPv6: NODATA, not NXDOMAIN; an unknown one of the zone:
        // NXDOMAIN; the address: its name back.
        let (c, out, _) = client("app", "nslookup -type=AAAA srv.");
        assert!(!out.contains("NXDOMAIN"), "{c} {out}");
        let (_, out, _) = client("app", "nslookup nosuch.app");
        assert!(out.contains("NXDOMAIN"), "{out}");
        let (c, out, err) = client("app", &format!("nslookup {srv_ip}"));
        assert_eq!(c, 0, "{err}");
        assert!(out.contains("name = srv.app"), "{out}");
        // Everything else goes to the host's resolvers (here the other host's server).
        let (c, out, err) = client("app", "nslookup far.example.com");
        assert_eq!(c, 0, "{out} {err}");
        assert!(out.contains("Address: 198.51.100.7"), "{out}");
        // Over TCP too: a query framed by its length, as a client retries a truncated answer.
        {
            use std::io::{Read, Write};
            let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
            q.extend_from_slice(b"\x03srv\x03app\x00\x00\x01\x00\x01");
            let mut framed = (q.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&q);
            let mut conn = std::net::TcpStream::connect("172.18.0.1:53").unwrap();
            conn.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            conn.write_all(&framed).unwrap();
            let mut len = [0u8; 2];
            conn.read_exact(&mut len).unwrap();
            let mut reply = vec![0u8; u16::from_be_bytes(len) as usize];
            conn.read_exact(&mut reply).unwrap();
            assert_eq!(&reply[..2], &[0x12, 0x34], "the query's id");
            assert_eq!(reply[3] & 0x0f, 0, "NOERROR");
            let ip: std::net::Ipv4Addr = srv_ip.parse().unwrap();
            assert!(reply.ends_with(&ip.octets()), "{reply:?}");
        }
        // Another network does not know the names of this one.
        let (_, out, _) = client("other", "nslookup srv.app; nslookup srv");
        assert!(!out.contains(&srv_ip), "{out}");
        // A container's own name on the network is its alone; an alias may be shared (the
        // resolver then answers with every address).
        let (c, _, err) = bx(&[
            "run",
            "--rm",
            "--network",
            "app",
            "--network-alias",
            "SRV",
            "bb:1",
            "true",
        ]);
        assert_ne!(c, 0);
        assert!(
            err.contains("the name SRV is taken on network app"),
            "{err}"
        );
        let (c, out, err) = bx(&[
            "run",
            "--rm",
            "--network",
            "app",
            "--network-alias",
            "DB",
            "bb:1",
            "sh",
            "-c",
            "nslookup db.app | grep -c '^Address: 172'",
        ]);
        assert_eq!((c, out.trim()), (0, "2"), "{err}");
        // The default network only forwards; an alias there is refused.
        let (c, out, err) = client("bridge", "nslookup far.example.com");
        assert_eq!(c, 0, "{out} {err}");
        assert!(out.contains("Address: 198.51.100.7"), "{out}");
        let (c, _, err) = bx(&[
            "run",
            "--rm",
            "--network",
            "bridge",
            "--network-alias",
            "x",
            "bb:1",
            "true",
        ]);
        assert_ne!(c, 0);
        assert!(
            err.contains("--network-alias needs a user network"),
            "{err}"
        );
        // A killed resolver comes back with the network's next container.
        for pid in resolvers(&store) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid.parse().unwrap()),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let (c, out, err) = client("app", "timeout 5 wget -q -O- http://db/index.html");
        assert_eq!((c, out.as_str()), (0, "hello from srv\n"), "{err}");
        assert_eq!(resolvers(&store).len(), 1);
        // The last container of a network takes its resolver with it.
        let (c, _, err) = bx(&["rm", "-f", "srv"]);
        assert_eq!(c, 0, "{err}");
        assert_eq!(resolvers(&store), Vec::<String>::new());
        drop(upstream);
        drop(far);
    });
}

#[test]
fn egress_works_where_iptables_drops_forwarded_traffic() {
    let name = "egress_works_where_iptables_drops_forwarded_traffic";
    if !privileged(name)
        || !have_tool(name, "nft")
        || !have_tool(name, "ip")
        || !have_tool(name, "iptables")
    {
        return;
    }
    in_own_netns(|| {
        let w = tempfile::tempdir().unwrap();
        let store = w.path().join("store");
        let _cleanup = Cleanup(&store);
        import_busybox(w.path(), &store);
        let far = FarHost::new(&format!("boxr-ifar-{}", std::process::id()));
        // As Docker leaves a host: forwarded traffic dropped unless a rule accepts it.
        sh("iptables -w -P FORWARD DROP");
        let (c, _, err) = boxr(&store, &["network", "create", "n"]);
        assert_eq!(c, 0, "{err}");
        let (c, out, err) = wget_in(&store, "n", "http://198.51.100.2:8000/cgi-bin/ip");
        assert_eq!((c, out.trim()), (0, "198.51.100.1"), "{err}");
        let rules = |()| {
            let out = Command::new("iptables")
                .args(["-w", "-S", "FORWARD"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        assert_eq!(rules(()).matches("boxr").count(), 2, "{}", rules(()));
        let (c, _, err) = boxr(&store, &["network", "rm", "n"]);
        assert_eq!(c, 0, "{err}");
        assert!(!rules(()).contains("boxr"), "{}", rules(()));
        assert!(
            rules(()).contains("-P FORWARD DROP"),
            "the policy stays the host's"
        );
        drop(far);
    });
}

#[test]
fn a_build_step_on_the_bridge_reaches_out_and_leaves_nothing() {
    let name = "a_build_step_on_the_bridge_reaches_out_and_leaves_nothing";
    if !privileged(name) || !have_tool(name, "nft") || !have_tool(name, "ip") {
        return;
    }
    in_own_netns(|| {
        let w = tempfile::tempdir().unwrap();
        let store = w.path().join("store");
        let _cleanup = Cleanup(&store);
        import_busybox(w.path(), &store);
        let far = FarHost::new(&format!("boxr-bfar-{}", std::process::id()));
        std::fs::write(
            w.path().join("boxr.kdl"),
            "image \"fetched\" {\n    from \"bb:1\"\n    \
             run \"timeout 5 wget -q -O /fetched http://198.51.100.2:8000/cgi-bin/ip\" {\n        \
             network \"bridge\"\n    }\n}\n\
             image \"offline\" {\n    from \"bb:1\"\n    \
             run \"timeout 5 wget -q -O /fetched http://198.51.100.2:8000/cgi-bin/ip\"\n}\n",
        )
        .unwrap();
        // On the bridge: egress through NAT, as the other host sees it.
        let (c, _, err) = support::boxr_in(
            &store,
            w.path(),
            &["build", "-f", "boxr.kdl", "--target", "fetched"],
        );
        assert_eq!(c, 0, "{err}");
        let (c, out, err) = boxr(&store, &["run", "--rm", "fetched", "cat", "/fetched"]);
        assert_eq!((c, out.trim()), (0, "198.51.100.1"), "{err}");
        // The default stays none: no way out.
        let (c, _, _) = support::boxr_in(
            &store,
            w.path(),
            &["build", "-f", "boxr.kdl", "--target", "offline"],
        );
        assert_ne!(c, 0, "a step without a network reached out");
        // The step's veth, lease and the network's resolver went with it.
        assert_eq!(boxr_links(), ["boxr0"], "only the bridge stays");
        let v: serde_json::Value =
            serde_json::from_str(&boxr(&store, &["network", "inspect", "bridge"]).1).unwrap();
        assert_eq!(v[0]["Containers"], serde_json::json!({}));
        assert_eq!(resolvers(&store), Vec::<String>::new());
        drop(far);
    });
}

#[test]
fn rules_a_firewall_reload_removed_come_back() {
    let name = "rules_a_firewall_reload_removed_come_back";
    if !privileged(name) || !have_tool(name, "nft") || !have_tool(name, "ip") {
        return;
    }
    in_own_netns(|| {
        let w = tempfile::tempdir().unwrap();
        let store = w.path().join("store");
        let _cleanup = Cleanup(&store);
        let rootfs = busybox_rootfs(w.path());
        // The address the container sees a request come from.
        std::fs::create_dir_all(rootfs.join("tmp/cgi-bin")).unwrap();
        std::fs::write(
            rootfs.join("tmp/cgi-bin/ip"),
            "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"$REMOTE_ADDR\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            rootfs.join("tmp/cgi-bin/ip"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let (c, _, err) = boxr(&store, &["import", rootfs.to_str().unwrap(), "bb:1"]);
        assert_eq!(c, 0, "{err}");
        let far = FarHost::new(&format!("boxr-rfar-{}", std::process::id()));
        let (c, _, err) = boxr(
            &store,
            &[
                "run",
                "-d",
                "--network",
                "bridge",
                "-p",
                "8080:80",
                "bb:1",
                "httpd",
                "-f",
                "-p",
                "80",
                "-h",
                "/tmp",
            ],
        );
        assert_eq!(c, 0, "{err}");
        let fetch = || wget_from(Some(&far.name), "http://198.51.100.1:8080/cgi-bin/ip");
        // DNAT: the container sees the other host's address.
        let dnat = || {
            let mut got = fetch();
            for _ in 0..20 {
                if got.0 == 0 {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
                got = fetch();
            }
            assert_eq!(got.0, 0, "{}", got.2);
            assert!(got.1.contains("198.51.100.2"), "not DNATed: {}", got.1);
        };
        dnat();
        // A firewall reload flushes every table: no DNAT (the socket that holds the port still
        // answers, as docker-proxy's would, from the gateway's address)...
        sh("nft flush ruleset");
        let (c, out, err) = fetch();
        assert_eq!(c, 0, "{err}");
        assert!(out.contains("172.17.0.1"), "{out}");
        // ... and the next network command puts boxr's rules and the port's entry back.
        let (c, _, err) = boxr(&store, &["network", "ls"]);
        assert_eq!(c, 0, "{err}");
        dnat();
        sh("nft delete table inet boxr");
        let (c, out, err) = boxr(&store, &["network", "reload"]);
        assert_eq!(c, 0, "{err}");
        assert!(
            err.contains("restored the rules of 1 network and the ports of 1 container")
                || out.contains("restored the rules of 1 network and the ports of 1 container"),
            "{out} {err}"
        );
        dnat();
        drop(far);
    });
}

/// The addresses of `interface` and the default route, as a process in the container sees them.
const SHOW_NET: &str = "for i in eth0 eth1 eth2; do ip -o -4 addr show dev $i 2>/dev/null | \
    awk '{print $2, $4}'; done; ip route | grep ^default; grep nameserver /etc/resolv.conf";

#[test]
fn a_container_on_several_networks_reaches_each_and_connect_and_disconnect_change_that() {
    let name =
        "a_container_on_several_networks_reaches_each_and_connect_and_disconnect_change_that";
    if !privileged(name) || !have_tool(name, "nft") || !have_tool(name, "ip") {
        return;
    }
    in_own_netns(|| {
        let w = tempfile::tempdir().unwrap();
        let store = w.path().join("store");
        let _cleanup = Cleanup(&store);
        let rootfs = busybox_rootfs(w.path());
        std::fs::write(rootfs.join("tmp/index.html"), "hello from db\n").unwrap();
        let bx = |args: &[&str]| boxr(&store, args);
        let (c, _, err) = bx(&["import", rootfs.to_str().unwrap(), "bb:1"]);
        assert_eq!(c, 0, "{err}");
        for (n, subnet) in [("front", "10.71.0.0/24"), ("back", "10.72.0.0/24")] {
            let (c, _, err) = bx(&["network", "create", "--subnet", subnet, n]);
            assert_eq!(c, 0, "{err}");
        }
        let (c, _, err) = bx(&[
            "run",
            "-d",
            "--name",
            "db",
            "--network",
            "back",
            "bb:1",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/tmp",
        ]);
        assert_eq!(c, 0, "{err}");
        let db_ip = ip_of(&store, "back", "");
        let (c, _, err) = bx(&[
            "run",
            "-d",
            "--name",
            "web",
            "--network",
            "front",
            "bb:1",
            "sleep",
            "600",
        ]);
        assert_eq!(c, 0, "{err}");
        let exec = |script: &str| bx(&["exec", "web", "sh", "-c", script]);
        // On another network: db is out of reach.
        let (c, out, _) = exec(&format!("timeout 3 wget -q -O- http://{db_ip}/index.html"));
        assert_ne!(c, 0, "{out}");

        // Connected to back: eth1 appears at once, db answers by its address and by its name
        // (front's resolver answers for the names of every network web is on), the default
        // route stays front's.
        let (c, _, err) = bx(&["network", "connect", "--alias", "www", "back", "web"]);
        assert_eq!(c, 0, "{err}");
        let (c, out, err) = exec(&format!(
            "{SHOW_NET}; timeout 5 wget -q -O- http://{db_ip}/index.html; \
             timeout 5 wget -q -O- http://db/index.html; timeout 5 wget -q -O- http://db.back/index.html"
        ));
        assert_eq!(c, 0, "{out} {err}");
        assert!(out.contains("eth0 10.71.0."), "{out}");
        assert!(out.contains("eth1 10.72.0."), "{out}");
        assert!(out.contains("default via 10.71.0.1 dev eth0"), "{out}");
        assert!(out.contains("nameserver 10.71.0.1"), "{out}");
        assert_eq!(out.matches("hello from db").count(), 3, "{out}");
        // db finds web under its alias on back; inspect lists both networks.
        let (c, out, err) = bx(&["exec", "db", "nslookup", "www"]);
        assert_eq!(c, 0, "{out} {err}");
        assert!(out.contains("Address: 10.72.0."), "{out}");
        let (_, out, _) = bx(&["inspect", "-f", "{{json .NetworkSettings.Networks}}", "web"]);
        let nets: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert!(
            nets["front"]["IPAddress"]
                .as_str()
                .unwrap()
                .starts_with("10.71.0."),
            "{out}"
        );
        assert!(
            nets["back"]["IPAddress"]
                .as_str()
                .unwrap()
                .starts_with("10.72.0."),
            "{out}"
        );
        // Twice on one network, or off one it is not on: refused.
        let (c, _, err) = bx(&["network", "connect", "back", "web"]);
        assert_ne!(c, 0);
        assert!(err.contains("already on network back"), "{err}");

        // A stop and a start give it both networks back, with the same addresses.
        let (_, before, _) = exec(SHOW_NET);
        let (c, _, err) = bx(&["stop", "-t", "1", "web"]);
        assert_eq!(c, 0, "{err}");
        let (c, _, err) = bx(&["start", "web"]);
        assert_eq!(c, 0, "{err}");
        let (_, after, _) = exec(SHOW_NET);
        assert_eq!(before, after);

        // Off its first network: the next one takes its place (default route, resolver).
        let (c, _, err) = bx(&["network", "disconnect", "front", "web"]);
        assert_eq!(c, 0, "{err}");
        let (c, out, err) = exec(&format!(
            "{SHOW_NET}; timeout 5 wget -q -O- http://db/index.html"
        ));
        assert_eq!(c, 0, "{out} {err}");
        assert!(!out.contains("10.71.0."), "{out}");
        assert!(out.contains("eth1 10.72.0."), "{out}");
        assert!(out.contains("default via 10.72.0.1 dev eth1"), "{out}");
        assert!(out.contains("nameserver 10.72.0.1"), "{out}");
        assert!(out.contains("hello from db"), "{out}");
        let (c, _, err) = bx(&["network", "disconnect", "back", "web"]);
        assert_ne!(c, 0);
        assert!(err.contains("the only network of container"), "{err}");
        let (c, _, err) = bx(&["network", "disconnect", "front", "web"]);
        assert_ne!(c, 0);
        assert!(err.contains("is not on network front"), "{err}");

        // Several --network at once: eth0 on the first (default route), eth1 on the next.
        let (c, out, err) = bx(&[
            "run",
            "--rm",
            "--network",
            "front",
            "--network",
            "back",
            "bb:1",
            "sh",
            "-c",
            &format!("{SHOW_NET}; timeout 5 wget -q -O- http://db/index.html"),
        ]);
        assert_eq!(c, 0, "{out} {err}");
        assert!(out.contains("eth0 10.71.0."), "{out}");
        assert!(out.contains("eth1 10.72.0."), "{out}");
        assert!(out.contains("default via 10.71.0.1 dev eth0"), "{out}");
        assert!(out.contains("hello from db"), "{out}");
        let (c, _, err) = bx(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--network",
            "back",
            "bb:1",
            "true",
        ]);
        assert_ne!(c, 0);
        assert!(
            err.contains("only bridge networks can be given more than once"),
            "{err}"
        );

        // Removed, the containers leave no lease, veth or resolver: both networks can go.
        let (c, _, err) = bx(&["rm", "-f", "web", "db"]);
        assert_eq!(c, 0, "{err}");
        let (c, _, err) = bx(&["network", "rm", "front", "back"]);
        assert_eq!(c, 0, "{err}");
        let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
        let links = String::from_utf8_lossy(&links.stdout);
        assert!(!links.contains(": vb"), "{links}");
        assert_eq!(resolvers(&store), Vec::<String>::new());
        let left: Vec<String> = std::fs::read_dir(store.join("journal"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("netns-") || n.starts_with("dns-"))
            .collect();
        assert!(left.is_empty(), "journal entries left: {left:?}");
    });
}
