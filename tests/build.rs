//! `boxr build` end to end: real sandboxes, real overlay commits, a real store. Results are
//! checked inside the built images (with `boxr run`) and in the store.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{assert_store_consistent, boxr, boxr_in, busybox_rootfs, privileged};

/// A build context with a busybox rootfs and a manifest.
struct Ctx {
    dir: tempfile::TempDir,
}

impl Ctx {
    fn new(manifest: &str) -> Ctx {
        let dir = tempfile::tempdir().unwrap();
        busybox_rootfs(dir.path());
        fs::write(dir.path().join("boxr.kdl"), manifest).unwrap();
        Ctx { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, rel: &str, content: &str) {
        let p = self.path().join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    fn store(&self) -> PathBuf {
        self.path().join("store")
    }

    fn build(&self, args: &[&str]) -> (i32, String, String) {
        let mut all = vec!["build"];
        all.extend_from_slice(args);
        boxr_in(&self.store(), self.path(), &all)
    }

    /// Builds and returns (steps ran, steps cached), failing on error.
    fn build_ok(&self, args: &[&str]) -> (usize, usize) {
        let (code, out, err) = self.build(args);
        assert_eq!(code, 0, "build failed:\n{out}\n{err}");
        summary(&err)
    }

    fn run(&self, image: &str, script: &str) -> String {
        let (code, out, err) = boxr(&self.store(), &["run", "--rm", image, "sh", "-c", script]);
        assert_eq!(code, 0, "{script}: {err}");
        out
    }
}

/// (ran, cached) from the summary line `built N images in T s: R steps ran, C cached`.
fn summary(stderr: &str) -> (usize, usize) {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("built "))
        .unwrap_or_else(|| panic!("no summary in:\n{stderr}"));
    let counts: Vec<usize> = line
        .split(": ")
        .nth(1)
        .unwrap()
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    (counts[0], counts[1])
}

fn digest_of(store: &Path, name: &str) -> String {
    support::inspect_image(store, name)["Digest"]
        .as_str()
        .unwrap()
        .to_owned()
}

const REPRO: &str = r#"
image "base" {
    from "dir:./rootfs"
}
image "app" {
    from "base"
    workdir "/srv"
    copy "src/" to="/srv/"
    run "mkdir -p /out && for i in 1 2 3; do echo $i > /out/$i; done && ln -s /out/1 /out/link && rm /bin/vi"
    env "MODE" "release"
    cmd "cat" "/out/1"
}
"#;

#[test]
fn same_inputs_same_digest_in_any_store() {
    if !privileged("same_inputs_same_digest_in_any_store") {
        return;
    }
    let a = Ctx::new(REPRO);
    a.write("src/main.c", "int main(void) { return 0; }\n");
    a.build_ok(&[]);
    // Another directory, another store, a second later: other mtimes, other inode numbers.
    std::thread::sleep(Duration::from_millis(1100));
    let b = Ctx::new(REPRO);
    b.write("src/main.c", "int main(void) { return 0; }\n");
    b.build_ok(&[]);
    assert_eq!(digest_of(&a.store(), "app"), digest_of(&b.store(), "app"));
    let save = |c: &Ctx| {
        let out = c.path().join("app.tar");
        let (code, _, err) = boxr(&c.store(), &["save", "-o", out.to_str().unwrap(), "app"]);
        assert_eq!(code, 0, "{err}");
        fs::read(out).unwrap()
    };
    assert!(save(&a) == save(&b), "the saved archives differ");
    // The image holds what the steps made, deletions included.
    assert_eq!(
        a.run(
            "app",
            "cat /out/1; readlink /out/link; pwd; ls /srv; test -e /bin/vi || echo novi; echo $MODE"
        ),
        "1\n/out/1\n/srv\nmain.c\nnovi\nrelease\n"
    );
    assert_store_consistent(&a.store());
}

#[test]
fn branches_run_in_parallel_and_jobs_1_serialises() {
    if !privileged("branches_run_in_parallel_and_jobs_1_serialises") {
        return;
    }
    // Each branch records when it ran (the uptime clock is shared by every PID namespace).
    let branch = |n: &str| {
        format!(
            r#"image "{n}" {{
    from "base"
    run "echo {n} > /name; cut -d' ' -f1 /proc/uptime > /t0; sleep 1; cut -d' ' -f1 /proc/uptime > /t1"
}}
"#
        )
    };
    let m = format!(
        r#"image "base" {{
    from "dir:./rootfs"
}}
{}{}{}image "all" {{
    from "base"
    copy "/t0" "/t1" to="/a/" from="a"
    copy "/t0" "/t1" to="/b/" from="b"
    copy "/t0" "/t1" to="/c/" from="c"
}}
"#,
        branch("a"),
        branch("b"),
        branch("c")
    );
    let ctx = Ctx::new(&m);
    let spans = |ctx: &Ctx| -> Vec<(f64, f64)> {
        let out = ctx.run(
            "all",
            "for d in a b c; do echo $(cat /$d/t0) $(cat /$d/t1); done",
        );
        out.lines()
            .map(|l| {
                let v: Vec<f64> = l.split(' ').map(|x| x.parse().unwrap()).collect();
                (v[0], v[1])
            })
            .collect()
    };
    ctx.build_ok(&["--jobs", "3"]);
    let s = spans(&ctx);
    let latest_start = s.iter().map(|x| x.0).fold(f64::MIN, f64::max);
    let earliest_end = s.iter().map(|x| x.1).fold(f64::MAX, f64::min);
    assert!(
        latest_start < earliest_end,
        "the three branches did not overlap: {s:?}"
    );

    ctx.build_ok(&["--jobs", "1", "--no-cache"]);
    let mut s = spans(&ctx);
    s.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    for w in s.windows(2) {
        assert!(w[0].1 <= w[1].0, "--jobs 1 overlapped steps: {s:?}");
    }
}

const CACHED: &str = r#"
arg "FLAVOR" default="plain"
image "base" {
    from "dir:./rootfs"
}
image "app" {
    from "base"
    run "echo one > /one"
    copy "conf/" to="/conf/"
    run "cat /conf/* > /all"
    copy "src/" to="/src/"
    run "ls /src > /listing"
    run "echo ${FLAVOR} > /flavor"
    run "echo done > /done"
}
"#;

#[test]
fn the_cache_reruns_exactly_what_changed() {
    if !privileged("the_cache_reruns_exactly_what_changed") {
        return;
    }
    let ctx = Ctx::new(CACHED);
    ctx.write("conf/a.conf", "a=1\n");
    ctx.write("src/main.c", "int x;\n");
    ctx.write("src/notes.log", "ignored\n");
    ctx.write(".boxrignore", "# logs are noise\nsrc/*.log\n");
    // 8 working steps: the base and 7 in app.
    assert_eq!(ctx.build_ok(&[]), (8, 0));
    assert_eq!(
        ctx.run("app", "cat /listing"),
        "main.c\n",
        ".boxrignore is honoured"
    );
    // Every file of the store with its size and mtime.
    let snapshot = |ctx: &Ctx| -> Vec<(PathBuf, u64, std::time::SystemTime)> {
        let mut v: Vec<_> = walkdir::WalkDir::new(ctx.store())
            .into_iter()
            .flatten()
            .map(|e| {
                let m = e.metadata().unwrap();
                (e.path().to_owned(), m.len(), m.modified().unwrap())
            })
            .collect();
        v.sort();
        v
    };
    // Nothing changed: nothing runs. The first such build may still teach the stat cache the
    // context files (once they are too old to change unnoticed); after that nothing in the
    // store is written at all.
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(ctx.build_ok(&[]), (0, 8));
    let before = snapshot(&ctx);
    assert_eq!(ctx.build_ok(&[]), (0, 8));
    let after = snapshot(&ctx);
    let changed: Vec<_> = after.iter().filter(|e| !before.contains(e)).collect();
    assert!(
        changed.is_empty(),
        "a no-op build wrote to the store: {changed:?}"
    );
    // Touched but not changed: nothing runs.
    let f = fs::File::options()
        .write(true)
        .open(ctx.path().join("conf/a.conf"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now()).unwrap();
    drop(f);
    assert_eq!(ctx.build_ok(&[]), (0, 8));
    // An ignored file changed: nothing runs.
    ctx.write("src/notes.log", "still ignored\n");
    assert_eq!(ctx.build_ok(&[]), (0, 8));
    // One COPY source changed: that copy and everything after it (5 steps).
    ctx.write("src/main.c", "int y;\n");
    assert_eq!(ctx.build_ok(&[]), (4, 4));
    // An arg changed: from its first use on (2 steps).
    assert_eq!(ctx.build_ok(&["--arg", "FLAVOR=spicy"]), (2, 6));
    assert_eq!(ctx.run("app", "cat /flavor"), "spicy\n");
    // The earlier conf copy changed: everything from it.
    ctx.write("conf/b.conf", "b=2\n");
    assert_eq!(ctx.build_ok(&["--arg", "FLAVOR=spicy"]), (6, 2));
    assert_eq!(ctx.run("app", "cat /all"), "a=1\nb=2\n");
}

#[test]
fn a_failing_step_says_why_and_keeps_the_previous_image() {
    if !privileged("a_failing_step_says_why_and_keeps_the_previous_image") {
        return;
    }
    let good = r#"
image "app" {
    from "dir:./rootfs"
    run "echo first > /first"
    run "echo second > /second"
}
"#;
    let ctx = Ctx::new(good);
    ctx.build_ok(&[]);
    let previous = digest_of(&ctx.store(), "app");
    fs::write(
        ctx.path().join("boxr.kdl"),
        good.replace(
            "run \"echo second > /second\"",
            "run \"echo about to fail; echo on stderr >&2; exit 3\"",
        ),
    )
    .unwrap();
    let (code, _, err) = ctx.build(&[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("failed with exit code 3"), "{err}");
    assert!(
        err.contains("about to fail") && err.contains("on stderr"),
        "{err}"
    );
    assert!(
        err.contains("boxr.kdl:5:5"),
        "the error points at the step:\n{err}"
    );
    assert!(err.contains("run \"echo about to fail"), "{err}");
    assert_eq!(digest_of(&ctx.store(), "app"), previous, "the tag moved");
    assert!(
        !err.contains("has no network"),
        "no network hint without a sign: {err}"
    );
    // A step that could not resolve a name is told why: steps have no network by default.
    fs::write(
        ctx.path().join("boxr.kdl"),
        good.replace(
            "run \"echo second > /second\"",
            "run \"wget -q -O- http://deb.debian.example/ || exit 4\"",
        ),
    )
    .unwrap();
    let (code, _, err) = ctx.build(&[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("failed with exit code 4"), "{err}");
    assert!(
        err.contains("a `run` step has no network unless it says so"),
        "{err}"
    );
    // Fixed: the steps before the failure come from the cache.
    fs::write(
        ctx.path().join("boxr.kdl"),
        good.replace("echo second", "echo fixed"),
    )
    .unwrap();
    assert_eq!(ctx.build_ok(&[]), (1, 2));
    assert_eq!(ctx.run("app", "cat /first /second"), "first\nfixed\n");
    assert_store_consistent(&ctx.store());
}

#[test]
fn cache_mounts_persist_but_stay_out_of_the_image() {
    if !privileged("cache_mounts_persist_but_stay_out_of_the_image") {
        return;
    }
    let ctx = Ctx::new(
        r#"
arg "N" default="1"
image "app" {
    from "dir:./rootfs"
    run "echo ${N} >> /var/cache/pkg/log; wc -l < /var/cache/pkg/log > /count" {
        cache "/var/cache/pkg" id="pkg" sharing="locked"
    }
}
"#,
    );
    ctx.build_ok(&[]);
    assert_eq!(ctx.run("app", "cat /count").trim(), "1");
    ctx.build_ok(&["--arg", "N=2"]);
    assert_eq!(
        ctx.run("app", "cat /count").trim(),
        "2",
        "the cache kept its contents"
    );
    assert_eq!(
        ctx.run("app", "test -e /var/cache/pkg && echo present || echo absent; test -e /var && echo var || true"),
        "absent\n",
        "neither the mount point nor its parents are in the image"
    );
}

#[test]
fn copy_follows_docker_semantics() {
    if !privileged("copy_follows_docker_semantics") {
        return;
    }
    let ctx = Ctx::new(
        r#"
image "app" {
    from "dir:./rootfs"
    copy "files/a.txt" to="/renamed.txt"
    copy "files/a.txt" "files/b.txt" to="/many/"
    copy "files/*.sh" to="/scripts/" chmod="0755"
    copy "files/tree" to="/tree/" chown="nobody:nogroup"
    copy "files/a.txt" to="/tmp"
}
"#,
    );
    ctx.write("files/a.txt", "A\n");
    ctx.write("files/b.txt", "B\n");
    ctx.write("files/run.sh", "echo hi\n");
    ctx.write("files/tree/sub/deep.txt", "deep\n");
    std::os::unix::fs::symlink("sub/deep.txt", ctx.path().join("files/tree/link")).unwrap();
    ctx.build_ok(&[]);
    let out = ctx.run(
        "app",
        "cat /renamed.txt /many/a.txt /many/b.txt; stat -c '%a' /scripts/run.sh; \
         stat -c '%U:%G' /tree/sub/deep.txt; readlink /tree/link; cat /tree/link; cat /tmp/a.txt; \
         test -e /tree/tree || echo contents-only",
    );
    assert_eq!(
        out,
        "A\nA\nB\n755\nnobody:nogroup\nsub/deep.txt\ndeep\nA\ncontents-only\n"
    );
}

#[test]
fn a_killed_build_leaves_a_consistent_store() {
    if !privileged("a_killed_build_leaves_a_consistent_store") {
        return;
    }
    let ctx = Ctx::new(
        r#"
image "app" {
    from "dir:./rootfs"
    run "echo started; sleep 2; echo slept > /slept"
}
"#,
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_boxr"))
        .current_dir(ctx.path())
        .args(["--progress", "plain", "build"])
        .env("BOXR_ROOT", ctx.store())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the step is running, then kill boxr outright.
    let mut err = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    // The step's own output line (its description, printed before it runs, says "started" too).
    while !String::from_utf8_lossy(&seen).contains("#2 started") {
        let n = std::io::Read::read(&mut err, &mut buf).unwrap();
        assert!(
            n > 0,
            "boxr ended early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    assert_store_consistent(&ctx.store());
    let store = ctx.store().to_string_lossy().into_owned();
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&store), "a mount is left under the store");
    // The killed build left its step's directories in tmp/, named for it.
    let left: Vec<String> = fs::read_dir(ctx.store().join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let pid = child.id().to_string();
    assert!(
        left.iter().any(|n| n.contains(&format!("-{pid}."))),
        "the killed build left nothing named for it in tmp/: {left:?}"
    );
    // ... and its step's cgroup, journaled under the same name.
    let journaled = |pid: &str| -> Vec<String> {
        fs::read_dir(ctx.store().join("journal"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("cgroup-build-") && n.contains(&format!("-{pid}.")))
            .collect()
    };
    let entries = journaled(&pid);
    assert_eq!(entries.len(), 1, "the step's cgroup is journaled");
    let cgroup_name = entries[0]
        .strip_prefix("cgroup-")
        .and_then(|n| n.strip_suffix(".json"))
        .unwrap()
        .to_owned();
    let cgroup_dirs = || -> Vec<std::path::PathBuf> {
        fs::read_dir("/sys/fs/cgroup")
            .unwrap()
            .map(|e| e.unwrap().path().join("boxr").join(&cgroup_name))
            .filter(|d| d.exists())
            .collect()
    };
    assert!(
        !cgroup_dirs().is_empty(),
        "the killed step's cgroup is there"
    );
    // The next command removes them (its owner is gone); the build succeeds; gc finds no more.
    assert_eq!(ctx.build_ok(&[]), (1, 1));
    assert_eq!(
        journaled(&pid),
        Vec::<String>::new(),
        "the next build cleaned the journal"
    );
    assert_eq!(
        cgroup_dirs(),
        Vec::<std::path::PathBuf>::new(),
        "and the cgroup"
    );
    assert!(
        fs::read_dir(ctx.store().join("tmp")).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains(&format!("-{pid}."))),
        "the next build cleaned up after the killed one"
    );
    assert_eq!(ctx.run("app", "cat /slept"), "slept\n");
    let (code, out, e) = boxr(&ctx.store(), &["gc"]);
    assert_eq!(code, 0, "{e}");
    assert!(
        out.contains(" 0 temporary") && out.contains(" 0 cgroups"),
        "gc found leftovers the next command should have removed:\n{out}"
    );
    assert!(
        fs::read_dir(ctx.store().join("tmp"))
            .unwrap()
            .next()
            .is_none()
    );
    assert_store_consistent(&ctx.store());
}

#[test]
fn secrets_reach_the_step_and_nothing_else() {
    if !privileged("secrets_reach_the_step_and_nothing_else") {
        return;
    }
    let ctx = Ctx::new(
        r#"
image "app" {
    from "dir:./rootfs"
    run "echo token-is $(cat /run/secrets/token); printf %s \"$TOKEN\" | wc -c > /len; cat /run/secrets/token | wc -c > /filelen" {
        secret "token" env="TOKEN"
    }
}
"#,
    );
    let value = "s3cr3t-VALUE-4242";
    let file = ctx.path().join("token.txt");
    fs::write(&file, value).unwrap();
    // Without a value the step cannot run, and says how to give one.
    let (code, _, err) = ctx.build(&[]);
    assert_eq!(code, 1);
    assert!(err.contains("the secret `token` is not given"), "{err}");
    let secret = format!("id=token,src={}", file.display());
    let (code, out, err) = ctx.build(&["--secret", &secret]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("token-is ****"),
        "the value is masked in the log:\n{err}"
    );
    assert!(!out.contains(value) && !err.contains(value));
    assert_eq!(ctx.run("app", "cat /len /filelen"), "17\n17\n");
    assert_eq!(
        ctx.run("app", "test -e /run && echo run || echo no-run"),
        "no-run\n",
        "the mount point is not in the image"
    );
    // Not in any layer, blob, cache entry or key.
    let (_, plan, _) = boxr_in(&ctx.store(), ctx.path(), &["plan", "--json"]);
    assert!(!plan.contains(value));
    let archive = ctx.path().join("app.tar");
    let (code, _, err) = boxr(
        &ctx.store(),
        &["save", "-o", archive.to_str().unwrap(), "app"],
    );
    assert_eq!(code, 0, "{err}");
    let needle = value.as_bytes();
    let contains = |bytes: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(
        !contains(&fs::read(&archive).unwrap()),
        "the value is in the saved image"
    );
    for e in walkdir::WalkDir::new(ctx.store()).into_iter().flatten() {
        if e.file_type().is_file() {
            assert!(
                !contains(&fs::read(e.path()).unwrap()),
                "the value is in {}",
                e.path().display()
            );
        }
    }
}

#[test]
fn source_date_epoch_comes_from_git() {
    if !privileged("source_date_epoch_comes_from_git")
        || !support::have_tool("source_date_epoch_comes_from_git", "git")
    {
        return;
    }
    let ctx = Ctx::new("image \"app\" {\n    from \"dir:./rootfs\"\n    run \"touch /new\"\n}\n");
    let git = |args: &[&str]| {
        let st = Command::new("git")
            .current_dir(ctx.path())
            .args(args)
            .env("GIT_AUTHOR_DATE", "2024-03-01T12:00:00Z")
            .env("GIT_COMMITTER_DATE", "2024-03-01T12:00:00Z")
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "git {args:?}");
    };
    git(&["init", "-q"]);
    git(&["add", "boxr.kdl"]);
    git(&["commit", "-q", "-m", "x"]);
    ctx.build_ok(&[]);
    let img = support::inspect_image(&ctx.store(), "app");
    assert_eq!(img["Created"], "2024-03-01T12:00:00Z");
    // The file the step made is clamped to the commit time in the layer tar.
    let (code, _, err) = boxr(
        &ctx.store(),
        &[
            "save",
            "--format",
            "oci-dir",
            "--compression",
            "none",
            "-o",
            ctx.path().join("oci").to_str().unwrap(),
            "app",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let blob = |d: &str| {
        ctx.path()
            .join("oci/blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(ctx.path().join("oci/index.json")).unwrap()).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let top = manifest["layers"].as_array().unwrap().last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut tar = tar::Archive::new(fs::File::open(blob(&top)).unwrap());
    let mtimes: Vec<(String, u64)> = tar
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.path().unwrap().display().to_string(),
                e.header().mtime().unwrap(),
            )
        })
        .collect();
    assert!(mtimes.iter().any(|(p, _)| p.ends_with("new")), "{mtimes:?}");
    assert!(mtimes.iter().all(|(_, m)| *m == 1709294400), "{mtimes:?}");
    // The environment wins over git.
    let out = Command::new(env!("CARGO_BIN_EXE_boxr"))
        .current_dir(ctx.path())
        .args(["--progress", "plain", "build"])
        .env("BOXR_ROOT", ctx.store())
        .env("SOURCE_DATE_EPOCH", "86400")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let img = support::inspect_image(&ctx.store(), "app");
    assert_eq!(img["Created"], "1970-01-02T00:00:00Z");
}

#[test]
fn explain_says_why_each_step_ran() {
    if !privileged("explain_says_why_each_step_ran") {
        return;
    }
    let ctx = Ctx::new(CACHED);
    ctx.write("conf/a.conf", "a=1\n");
    ctx.write("src/main.c", "int x;\n");
    let (code, _, err) = ctx.build(&["--explain"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("ran because no earlier build of `app` had this step"),
        "{err}"
    );
    ctx.write("src/main.c", "int y;\n");
    let (code, _, err) = ctx.build(&["--explain", "--arg", "FLAVOR=x"]);
    assert_eq!(code, 0, "{err}");
    let because: Vec<&str> = err
        .lines()
        .filter(|l| l.contains(" ran because "))
        .collect();
    assert_eq!(because.len(), 4, "{err}");
    // The file that changed is named.
    assert!(
        because[0]
            .ends_with("ran because the content of its sources changed: `src/main.c` changed"),
        "{because:?}"
    );
    assert!(
        because[1].ends_with("ran because the step before it (#5) changed"),
        "{because:?}"
    );
    assert!(
        because[2].ends_with("ran because the step changed (was `run echo plain > /flavor`)"),
        "{because:?}"
    );
    assert!(
        because[3].ends_with("ran because the step before it (#7) changed"),
        "{because:?}"
    );
    // Added and removed files too.
    ctx.write("src/util.c", "int u;\n");
    fs::remove_file(ctx.path().join("src/main.c")).unwrap();
    let (code, _, err) = ctx.build(&["--explain", "--arg", "FLAVOR=x"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("ran because the content of its sources changed: `src/util.c` added, `src/main.c` removed"),
        "{err}"
    );
}

#[test]
fn an_unchanged_context_is_not_read_again() {
    if !privileged("an_unchanged_context_is_not_read_again")
        || !support::have_tool("an_unchanged_context_is_not_read_again", "strace")
    {
        return;
    }
    let ctx = Ctx::new(CACHED);
    ctx.write("conf/a.conf", "a=1\n");
    ctx.write("src/main.c", "int x;\n");
    ctx.build_ok(&[]);
    // Files changed in the last two seconds are always read (they could still change within
    // the clock tick their stamp has); after that the stat cache vouches for them.
    std::thread::sleep(Duration::from_millis(2100));
    ctx.build_ok(&[]);
    let traced = |ctx: &Ctx| {
        let out = Command::new("strace")
            .current_dir(ctx.path())
            .args(["-f", "-e", "trace=openat,open", "--"])
            .arg(env!("CARGO_BIN_EXE_boxr"))
            .args(["--progress", "plain", "build"])
            .env("BOXR_ROOT", ctx.store())
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let trace = traced(&ctx);
    assert!(trace.contains("0 steps ran"), "{trace}");
    assert!(
        !trace
            .lines()
            .any(|l| l.contains("main.c") || l.contains("a.conf")),
        "a no-op rebuild opened a context file:\n{trace}"
    );
    // A changed file is read (and its step reruns).
    ctx.write("src/main.c", "int y;\n");
    let trace = traced(&ctx);
    assert!(trace.lines().any(|l| l.contains("main.c")), "{trace}");
    assert!(trace.contains("4 steps ran"), "{trace}");
}

#[test]
fn every_kind_of_base_builds() {
    if !privileged("every_kind_of_base_builds") {
        return;
    }
    let ctx = Ctx::new(
        r#"
image "from-dir" {
    from "dir:./rootfs"
    run "echo dir > /kind"
}
image "from-tar" {
    from "tar:./rootfs.tar"
    run "echo tar > /kind"
}
image "from-oci" {
    from "oci:./layout:1"
    run "echo oci > /kind"
}
image "from-store" {
    from "bb:1"
    run "echo store > /kind"
}
image "from-scratch" {
    from "scratch"
    copy "/bin/busybox" to="/bin/" from="from-dir"
    run "/bin/busybox" "sh" "-c" "/bin/busybox echo scratch > /kind"
}
"#,
    );
    let rootfs = ctx.path().join("rootfs");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["-cf"])
        .arg(ctx.path().join("rootfs.tar"))
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    // A store image, and the same saved as an OCI layout.
    let (c, _, err) = boxr(&ctx.store(), &["import", rootfs.to_str().unwrap(), "bb:1"]);
    assert_eq!(c, 0, "{err}");
    let layout = ctx.path().join("layout");
    let (c, _, err) = boxr(
        &ctx.store(),
        &[
            "save",
            "--format",
            "oci-dir",
            "-o",
            layout.to_str().unwrap(),
            "bb:1",
        ],
    );
    assert_eq!(c, 0, "{err}");
    ctx.build_ok(&[]);
    for kind in ["dir", "tar", "oci", "store"] {
        assert_eq!(
            ctx.run(&format!("from-{kind}"), "cat /kind"),
            format!("{kind}\n")
        );
    }
    let (code, out, err) = boxr(
        &ctx.store(),
        &[
            "run",
            "--rm",
            "from-scratch",
            "/bin/busybox",
            "cat",
            "/kind",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "scratch\n");
}
