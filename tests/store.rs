//! The store through the CLI: import, images, inspect, rmi, gc; reproducibility across stores;
//! concurrent writers; a killed import leaves nothing visible and gc cleans up.

mod support;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{assert_store_consistent, boxr, boxr_in, busybox_rootfs, inspect_image, privileged};

fn id_of(out: &(i32, String, String)) -> String {
    assert_eq!(out.0, 0, "{}", out.2);
    out.1.trim().to_owned()
}

#[test]
fn import_is_reproducible_across_stores_and_forms() {
    if !privileged("import_is_reproducible_across_stores_and_forms") {
        return;
    }
    let w = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(w.path());
    let tarball = w.path().join("rootfs.tar.gz");
    support::sh(&format!(
        "tar -C {} -czf {} .",
        rootfs.display(),
        tarball.display()
    ));
    let s1 = w.path().join("store-one");
    let s2 = w.path().join("elsewhere/store-two");
    let a = id_of(&boxr(&s1, &["import", rootfs.to_str().unwrap(), "bb:1"]));
    // A different store, a different time, the tarball instead of the directory.
    std::thread::sleep(Duration::from_millis(1100));
    let b = id_of(&boxr(&s2, &["import", tarball.to_str().unwrap(), "bb:1"]));
    assert_eq!(a, b, "the same rootfs gives the same Id");
    let inspect = |s: &Path| -> serde_json::Value {
        let (c, out, err) = boxr(s, &["inspect", "bb:1"]);
        assert_eq!(c, 0, "{err}");
        serde_json::from_str(&out).unwrap()
    };
    let (i1, i2) = (inspect(&s1), inspect(&s2));
    assert_eq!(
        i1[0]["Digest"], i2[0]["Digest"],
        "and the same manifest digest"
    );
    assert_eq!(i1[0]["Id"], a);
    assert_eq!(i1[0]["Created"], "1970-01-01T00:00:00Z");
    assert_eq!(i1[0]["RepoTags"][0], "bb:1");
    assert_eq!(i1[0]["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    // SOURCE_DATE_EPOCH moves Created, and so the Id.
    let out = Command::new(env!("CARGO_BIN_EXE_boxr"))
        .args(["import", rootfs.to_str().unwrap(), "bb:dated"])
        .env("BOXR_ROOT", &s1)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    let dated = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_ne!(dated, a);
    let i = inspect_image(&s1, "bb:dated");
    assert_eq!(i["Created"], "2023-11-14T22:13:20Z");
    // A value that is not seconds is refused by name, and nothing is imported.
    let out = Command::new(env!("CARGO_BIN_EXE_boxr"))
        .args(["import", rootfs.to_str().unwrap(), "bb:bad"])
        .env("BOXR_ROOT", &s1)
        .env("SOURCE_DATE_EPOCH", "yesterday")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        err.contains("SOURCE_DATE_EPOCH=`yesterday` is not a number of seconds"),
        "{err}"
    );
    assert_ne!(boxr(&s1, &["inspect", "bb:bad"]).0, 0, "no image bb:bad");
    assert_store_consistent(&s1);
}

#[test]
fn images_rmi_and_gc() {
    if !privileged("images_rmi_and_gc") {
        return;
    }
    let w = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(w.path());
    let s = w.path().join("store");
    let r = rootfs.to_str().unwrap();
    let id = id_of(&boxr(&s, &["import", r, "bb"]));
    id_of(&boxr(&s, &["import", r, "bb:other"]));
    fs::write(rootfs.join("extra"), "x").unwrap();
    let id2 = id_of(&boxr(&s, &["import", r, "changed:1"]));
    assert_ne!(id, id2);
    let (_, table, _) = boxr(&s, &["images"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("REPOSITORY   TAG      IMAGE ID"),
        "{table}"
    );
    assert_eq!(lines.len(), 4, "{table}");
    assert!(
        lines[1].starts_with("bb           latest   ")
            && lines[1].contains(&id["sha256:".len()..][..12]),
        "{table}"
    );
    let (_, json, _) = boxr(&s, &["images", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 3);
    // Look-ups by id prefix and full id; an ambiguous or unknown one fails.
    assert_eq!(inspect_image(&s, &id[7..14])["Id"], id);
    assert_eq!(
        inspect_image(&s, &id)["RepoTags"].as_array().unwrap().len(),
        2
    );
    let (c, _, err) = boxr(&s, &["inspect", "nothing:here"]);
    assert_eq!(c, 1);
    assert!(err.contains("no such object: nothing:here"), "{err}");
    // rmi of a name untags; of an id, removes every tag; gc reclaims.
    let (c, out, _) = boxr(&s, &["rmi", "bb:other"]);
    assert_eq!((c, out.as_str()), (0, "Untagged: bb:other\n"));
    let (c, out, _) = boxr(&s, &["rmi", &id2[7..19]]);
    assert_eq!(c, 0);
    assert_eq!(out, format!("Untagged: changed:1\nDeleted: {id2}\n"));
    assert_eq!(
        fs::read_dir(s.join("layers")).unwrap().count(),
        1,
        "rmi collected the layer"
    );
    fs::create_dir_all(s.join("tmp/layer-left-by-a-crash/root")).unwrap();
    let (c, out, _) = boxr(&s, &["gc"]);
    assert_eq!(c, 0);
    assert!(
        out.starts_with(
            "removed 0 blobs, 0 layers, 0 cache entries, 1 temporary item, 0 cgroups, 0 network resources; freed "
        ),
        "{out}"
    );
    assert_eq!(fs::read_dir(s.join("tmp")).unwrap().count(), 0);
    assert_eq!(
        inspect_image(&s, "bb")["Id"],
        id,
        "what is referenced survives"
    );
    assert_store_consistent(&s);
}

#[test]
fn concurrent_imports_give_one_consistent_image() {
    if !privileged("concurrent_imports_give_one_consistent_image") {
        return;
    }
    let w = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(w.path());
    let s = w.path().join("store");
    let children: Vec<_> = (0..8)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_boxr"))
                .args(["import", rootfs.to_str().unwrap(), &format!("bb:{}", i % 2)])
                .env("BOXR_ROOT", &s)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let ids: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        })
        .collect();
    assert!(ids.windows(2).all(|p| p[0] == p[1]), "{ids:?}");
    assert_eq!(fs::read_dir(s.join("layers")).unwrap().count(), 1);
    assert_eq!(
        fs::read_dir(s.join("tmp")).unwrap().count(),
        0,
        "losers cleaned up"
    );
    let refs: serde_json::Value =
        serde_json::from_slice(&fs::read(s.join("refs.json")).unwrap()).unwrap();
    assert_eq!(refs.as_object().unwrap().len(), 2);
    assert_store_consistent(&s);
}

#[test]
fn a_killed_import_leaves_nothing_visible_and_gc_cleans_up() {
    if !privileged("a_killed_import_leaves_nothing_visible_and_gc_cleans_up") {
        return;
    }
    let w = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(w.path());
    // Enough data that the import is still running when it is killed.
    support::sh(&format!(
        "mkdir {0}/data && for i in $(seq 1 40); do head -c 4000000 /dev/urandom > {0}/data/f$i; done",
        rootfs.display()
    ));
    let s = w.path().join("store");
    let mut killed_mid_way = false;
    for delay_ms in [30, 80, 150, 300] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_boxr"))
            .args(["import", rootfs.to_str().unwrap(), "big:1"])
            .env("BOXR_ROOT", &s)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let status = child.wait().unwrap();
        if status.code().is_some() {
            continue; // it finished before the kill; try a shorter window next time
        }
        killed_mid_way = true;
        // Nothing half-written is visible under a digest, and no ref points anywhere.
        assert_store_consistent(&s);
        // Either the ref was not published yet (no such object), or it was, and then the
        // image is complete and readable.
        let (c, _, err) = boxr(&s, &["inspect", "big:1"]);
        assert!(c == 0 || err.contains("no such object"), "{err}");
    }
    assert!(killed_mid_way, "the import was never caught mid-way");
    let (c, out, _) = boxr(&s, &["gc"]);
    assert_eq!(c, 0, "{out}");
    assert_eq!(fs::read_dir(s.join("tmp")).unwrap().count(), 0);
    let id = id_of(&boxr(&s, &["import", rootfs.to_str().unwrap(), "big:1"]));
    assert_eq!(inspect_image(&s, "big:1")["Id"], id);
    assert_store_consistent(&s);
}

#[test]
fn a_malicious_rootfs_tarball_is_refused_and_creates_no_image() {
    if !privileged("a_malicious_rootfs_tarball_is_refused_and_creates_no_image") {
        return;
    }
    let w = tempfile::tempdir().unwrap();
    let sentinel = w.path().join("sentinel");
    fs::write(&sentinel, "untouched").unwrap();
    // A tarball whose entry climbs out of the root towards the sentinel.
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(4);
    let name = b"../../../../sentinel";
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_cksum();
    let mut tar = h.as_bytes().to_vec();
    tar.extend_from_slice(b"evil");
    tar.resize(1024 + 1024, 0);
    let path = w.path().join("evil.tar");
    fs::write(&path, tar).unwrap();
    let s = w.path().join("store");
    let (c, _, err) = boxr_in(&s, w.path(), &["import", "evil.tar", "evil:1"]);
    assert_eq!(c, 125, "{err}");
    assert!(
        err.contains("refused layer entry `../../../../sentinel`"),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&sentinel).unwrap(), "untouched");
    let (_, out, _) = boxr(&s, &["images", "-q"]);
    assert_eq!(out, "", "no image was created");
    assert_eq!(
        fs::read_dir(s.join("tmp")).unwrap().count(),
        0,
        "the staged layer was removed"
    );
    assert_eq!(fs::read_dir(s.join("layers")).unwrap().count(), 0);
}

#[test]
fn sync_syncs_the_filesystem_before_publishing() {
    let t = "sync_syncs_the_filesystem_before_publishing";
    if !privileged(t) || !support::have_tool(t, "strace") {
        return;
    }
    let w = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(w.path());
    let s = w.path().join("store");
    let count = |sync: bool, tag: &str| {
        let mut cmd = Command::new("strace");
        cmd.args(["-f", "-e", "trace=syncfs", "--"])
            .arg(env!("CARGO_BIN_EXE_boxr"));
        if sync {
            cmd.arg("--sync");
        }
        let out = cmd
            .args(["import", rootfs.to_str().unwrap(), tag])
            .env("BOXR_ROOT", &s)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr)
            .matches("syncfs(")
            .count()
    };
    assert_eq!(count(false, "bb:plain"), 0, "no syncfs by default");
    assert_eq!(
        count(true, "bb:synced"),
        1,
        "one syncfs before the layer is published"
    );
    assert_store_consistent(&s);
}

#[test]
fn plan_resolves_store_images_by_their_digest() {
    if !privileged("plan_resolves_store_images_by_their_digest") {
        return;
    }
    let w = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(w.path());
    let s = w.path().join("store");
    fs::write(
        w.path().join("boxr.kdl"),
        "image \"app\" {\n    from \"bb:1\"\n    run \"true\"\n}\n",
    )
    .unwrap();
    let (c, _, err) = boxr_in(&s, w.path(), &["plan"]);
    assert_eq!(c, 1, "not in the store yet");
    assert!(err.contains("image `bb:1` is not in the store"), "{err}");
    id_of(&boxr(&s, &["import", rootfs.to_str().unwrap(), "bb:1"]));
    let (c, first, err) = boxr_in(&s, w.path(), &["plan", "--json"]);
    assert_eq!(c, 0, "{err}");
    // Another image under the same name changes the keys.
    fs::write(rootfs.join("extra"), "x").unwrap();
    id_of(&boxr(&s, &["import", rootfs.to_str().unwrap(), "bb:1"]));
    let (_, second, _) = boxr_in(&s, w.path(), &["plan", "--json"]);
    let key =
        |j: &str| serde_json::from_str::<serde_json::Value>(j).unwrap()["images"][0]["key"].clone();
    assert_ne!(key(&first), key(&second));
}
