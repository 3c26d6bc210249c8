//! save and load: deterministic archives, round trips, whiteouts across layers, interop with
//! skopeo, umoci and podman in both directions, and archives that must be refused.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use boxr::oci::{self, Descriptor, ImageConfig};
use support::{
    Overlay, assert_store_consistent, boxr, busybox_rootfs, have_tool, inspect_image, privileged,
    put_layered_image, sh, tree,
};

fn ok(out: (i32, String, String)) -> String {
    assert_eq!(out.0, 0, "{}", out.2);
    out.1
}

fn import_busybox(w: &Path, store: &Path) -> String {
    let rootfs = busybox_rootfs(w);
    ok(boxr(store, &["import", rootfs.to_str().unwrap(), "bb:1"]))
        .trim()
        .to_owned()
}

/// `boxr save bb:1` as an OCI layout directory.
fn save_oci_dir(store: &Path, dir: &Path) {
    ok(boxr(
        store,
        &[
            "save",
            "bb:1",
            "-o",
            dir.to_str().unwrap(),
            "--format",
            "oci-dir",
        ],
    ));
}

#[test]
fn save_is_deterministic_in_every_format() {
    if !privileged("save_is_deterministic_in_every_format") {
        return;
    }
    let w = tempfile::tempdir().unwrap();
    let s = w.path().join("store");
    import_busybox(w.path(), &s);
    for (fmt, comp) in [
        ("oci", "gzip"),
        ("oci", "zstd"),
        ("oci", "none"),
        ("docker", "gzip"),
    ] {
        let a = w.path().join(format!("a-{fmt}-{comp}.tar"));
        let b = w.path().join(format!("b-{fmt}-{comp}.tar"));
        for p in [&a, &b] {
            ok(boxr(
                &s,
                &[
                    "save",
                    "bb:1",
                    "-o",
                    p.to_str().unwrap(),
                    "--format",
                    fmt,
                    "--compression",
                    comp,
                ],
            ));
        }
        assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap(), "{fmt}/{comp}");
    }
    // A second store that imported the same rootfs saves the same bytes (by default with
    // uncompressed layers, as docker and podman save).
    let s2 = w.path().join("store2");
    let w2 = tempfile::tempdir().unwrap();
    import_busybox(w2.path(), &s2);
    let c = w.path().join("c.tar");
    ok(boxr(&s2, &["save", "bb:1", "-o", c.to_str().unwrap()]));
    assert_eq!(
        fs::read(&c).unwrap(),
        fs::read(w.path().join("a-oci-none.tar")).unwrap()
    );
}

#[test]
fn save_and_load_round_trip_keeps_the_image() {
    if !privileged("save_and_load_round_trip_keeps_the_image") {
        return;
    }
    let w = tempfile::tempdir().unwrap();
    let s = w.path().join("store");
    let id = import_busybox(w.path(), &s);
    for fmt in ["oci", "oci-dir", "docker"] {
        let out = w.path().join(format!("out-{fmt}"));
        ok(boxr(
            &s,
            &["save", "bb:1", "-o", out.to_str().unwrap(), "--format", fmt],
        ));
        let t = w.path().join(format!("store-{fmt}"));
        let loaded = ok(boxr(&t, &["load", "-i", out.to_str().unwrap()]));
        assert_eq!(loaded, "Loaded image: bb:1\n", "{fmt}");
        let i = inspect_image(&t, "bb:1");
        assert_eq!(
            i["Id"], id,
            "{fmt}: the config, and so the Id, is unchanged"
        );
        // Saving the loaded image again gives back the same archive: its blobs are kept.
        let again = w.path().join(format!("again-{fmt}"));
        ok(boxr(
            &t,
            &[
                "save",
                "bb:1",
                "-o",
                again.to_str().unwrap(),
                "--format",
                fmt,
            ],
        ));
        if fmt != "oci-dir" {
            assert_eq!(fs::read(&out).unwrap(), fs::read(&again).unwrap(), "{fmt}");
        }
        assert_store_consistent(&t);
    }
}

fn overlay_upper(w: &Path, name: &str, lowers: &[&Path], change: &str) -> PathBuf {
    let (u, wd, m) = (
        w.join(format!("{name}-u")),
        w.join(format!("{name}-w")),
        w.join(format!("{name}-m")),
    );
    for d in [&u, &wd, &m] {
        fs::create_dir_all(d).unwrap();
    }
    {
        let _o = Overlay::mount(lowers, Some((&u, &wd)), &m);
        sh(&format!("cd {} && {change}", m.display()));
    }
    u
}

#[test]
fn whiteouts_survive_a_save_load_round_trip() {
    if !privileged("whiteouts_survive_a_save_load_round_trip") {
        return;
    }
    let w = tempfile::tempdir().unwrap();
    let p = w.path();
    let base = p.join("base");
    fs::create_dir_all(base.join("d/sub")).unwrap();
    for (f, c) in [
        ("a", "a1"),
        ("b", "b1"),
        ("f", "file"),
        ("d/x", "x1"),
        ("d/sub/y", "y1"),
    ] {
        fs::write(base.join(f), c).unwrap();
    }
    let up2 = overlay_upper(
        p,
        "l2",
        &[&base],
        "rm a && rm f && mkdir f && echo inner > f/inner && rm -rf d && mkdir d && echo z2 > d/z",
    );
    // Layer 3 is made over layers 2 and 1 as they will be stacked.
    let up3 = overlay_upper(
        p,
        "l3",
        &[&up2, &base],
        "echo a3 > a && rm -rf f && echo b3 > b",
    );
    let s = p.join("store");
    put_layered_image(&s, &[&base, &up2, &up3], "layered:1");
    let archive = p.join("layered.tar");
    ok(boxr(
        &s,
        &["save", "layered:1", "-o", archive.to_str().unwrap()],
    ));
    let t = p.join("store2");
    ok(boxr(&t, &["load", "-i", archive.to_str().unwrap()]));
    let i = inspect_image(&t, "layered:1");
    let diff_ids: Vec<String> = i["RootFS"]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap()[7..].to_owned())
        .collect();
    let roots: Vec<PathBuf> = diff_ids
        .iter()
        .rev()
        .map(|d| t.join("layers").join(d).join("root"))
        .collect();
    let refs: Vec<&Path> = roots.iter().map(PathBuf::as_path).collect();
    let merged = p.join("merged");
    fs::create_dir_all(&merged).unwrap();
    let _m = Overlay::mount(&refs, None, &merged);
    assert_eq!(tree(&merged), ["f a a3", "f b b3", "d d", "f d/z z2"]);
}

#[test]
fn skopeo_and_umoci_accept_what_boxr_saves() {
    if !privileged("skopeo_and_umoci_accept_what_boxr_saves")
        || !have_tool("skopeo_and_umoci_accept_what_boxr_saves", "skopeo")
        || !have_tool("skopeo_and_umoci_accept_what_boxr_saves", "umoci")
    {
        return;
    }
    let w = tempfile::tempdir().unwrap();
    let s = w.path().join("store");
    let id = import_busybox(w.path(), &s);
    let dir = w.path().join("layout");
    save_oci_dir(&s, &dir);
    let out = Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:1", dir.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Os"], "linux");
    assert_eq!(v["Layers"].as_array().unwrap().len(), 1);
    let out = Command::new("skopeo")
        .args(["inspect", "--config", "--raw"])
        .arg(format!("oci:{}:1", dir.display()))
        .output()
        .unwrap();
    assert_eq!(
        boxr::digest::Digest::of(&out.stdout).to_string(),
        id,
        "skopeo sees boxr's config bytes"
    );
    let unpacked = w.path().join("bundle");
    let out = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:1", dir.display()))
        .arg(&unpacked)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(unpacked.join("rootfs/bin/busybox").is_file());
    assert_eq!(
        fs::read_link(unpacked.join("rootfs/bin/sh")).unwrap(),
        Path::new("busybox")
    );
    // The tar form too.
    let archive = w.path().join("bb.tar");
    ok(boxr(&s, &["save", "bb:1", "-o", archive.to_str().unwrap()]));
    let out = Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci-archive:{}", archive.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn boxr_loads_what_skopeo_and_podman_write() {
    let t = "boxr_loads_what_skopeo_and_podman_write";
    if !privileged(t) || !have_tool(t, "skopeo") || !have_tool(t, "podman") {
        return;
    }
    let w = tempfile::tempdir().unwrap();
    let p = w.path();
    let s = p.join("store");
    let id = import_busybox(p, &s);
    let dir = p.join("layout");
    save_oci_dir(&s, &dir);
    // skopeo: a docker-archive and a zstd-recompressed OCI layout.
    let run = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(Command::new("skopeo")
        .args(["copy", "-q"])
        .arg(format!("oci:{}:1", dir.display()))
        .arg(format!("docker-archive:{}/sk.tar:skopeo/bb:2", p.display())));
    run(Command::new("skopeo")
        .args(["copy", "-q", "--dest-compress-format", "zstd"])
        .arg(format!("oci:{}:1", dir.display()))
        .arg(format!("oci:{}/skz:zz", p.display())));
    let t2 = p.join("store2");
    assert_eq!(
        ok(boxr(
            &t2,
            &["load", "-i", p.join("sk.tar").to_str().unwrap()]
        )),
        "Loaded image: docker.io/skopeo/bb:2\n"
    );
    assert_eq!(
        ok(boxr(&t2, &["load", "-i", p.join("skz").to_str().unwrap()])),
        "Loaded image: skz:zz\n"
    );
    assert_eq!(inspect_image(&t2, "docker.io/skopeo/bb:2")["Id"], id);
    assert_eq!(
        inspect_image(&t2, "skz:zz")["Layers"][0]["mediaType"],
        oci::MEDIA_LAYER_ZSTD
    );
    // podman (vfs storage in a private root; no containers run).
    let rootfs_tar = p.join("rootfs.tar");
    sh(&format!(
        "tar -C {} -cf {} .",
        p.join("rootfs").display(),
        rootfs_tar.display()
    ));
    let podman = |args: &[&str]| {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(p.join("podman-root"))
            .arg("--runroot")
            .arg(p.join("podman-run"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager=cgroupfs",
                "--events-backend=file",
            ])
            .args(args)
            .stdin(Stdio::null());
        run(&mut c);
    };
    podman(&[
        "import",
        "-q",
        rootfs_tar.to_str().unwrap(),
        "localhost/pd:1",
    ]);
    let pd_docker = p.join("pd-docker.tar");
    let pd_oci = p.join("pd-oci.tar");
    podman(&[
        "save",
        "-q",
        "-o",
        pd_docker.to_str().unwrap(),
        "localhost/pd:1",
    ]);
    podman(&[
        "save",
        "-q",
        "--format",
        "oci-archive",
        "-o",
        pd_oci.to_str().unwrap(),
        "localhost/pd:1",
    ]);
    let t3 = p.join("store3");
    assert_eq!(
        ok(boxr(&t3, &["load", "-i", pd_docker.to_str().unwrap()])),
        "Loaded image: localhost/pd:1\n"
    );
    let from_docker = inspect_image(&t3, "localhost/pd:1");
    assert_eq!(
        ok(boxr(&t3, &["load", "-i", pd_oci.to_str().unwrap()])),
        "Loaded image: localhost/pd:1\n"
    );
    assert_eq!(
        inspect_image(&t3, "localhost/pd:1")["Id"],
        from_docker["Id"],
        "both forms hold the same config"
    );
    // The loaded layer is the rootfs, ready to be a lowerdir.
    let layer = from_docker["RootFS"]["Layers"][0].as_str().unwrap()[7..].to_owned();
    assert!(
        t3.join("layers")
            .join(layer)
            .join("root/bin/busybox")
            .is_file()
    );
    assert_store_consistent(&t3);
}

/// Writes a one-layer OCI layout whose layer is `layer_tar`, with correct digests.
fn oci_layout_with_layer(dir: &Path, layer_tar: &[u8]) {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let d = boxr::digest::Digest::of(bytes);
        fs::write(blobs.join(d.hex()), bytes).unwrap();
        d
    };
    let layer = put(layer_tar);
    let config = ImageConfig::linux(vec![layer], None);
    let cbytes = oci::to_json(&config);
    let c = put(&cbytes);
    let manifest = oci::Manifest {
        schema_version: 2,
        media_type: Some(oci::MEDIA_MANIFEST.into()),
        config: Descriptor::new(oci::MEDIA_CONFIG, c, cbytes.len() as u64),
        layers: vec![Descriptor::new(
            oci::MEDIA_LAYER,
            layer,
            layer_tar.len() as u64,
        )],
        annotations: Default::default(),
    };
    let mbytes = oci::to_json(&manifest);
    let m = put(&mbytes);
    let mut desc = Descriptor::new(oci::MEDIA_MANIFEST, m, mbytes.len() as u64);
    desc.annotations
        .insert(oci::REF_NAME.into(), "evil:1".into());
    let index = oci::Index {
        schema_version: 2,
        media_type: None,
        manifests: vec![desc],
        annotations: Default::default(),
    };
    fs::write(dir.join("index.json"), oci::to_json(&index)).unwrap();
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

fn tar_with(name: &[u8], kind: tar::EntryType, link: &[u8], data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(data.len() as u64);
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512 + 1024, 0);
    out
}

#[test]
fn malicious_and_corrupt_archives_are_refused() {
    if !privileged("malicious_and_corrupt_archives_are_refused") {
        return;
    }
    let w = tempfile::tempdir().unwrap();
    let p = w.path();
    let sentinel = p.join("sentinel");
    fs::write(&sentinel, "untouched").unwrap();
    let s = p.join("store");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "climb",
            tar_with(
                b"../../../../../../sentinel",
                tar::EntryType::Regular,
                b"",
                b"evil",
            ),
            "refused layer entry",
        ),
        (
            "hardlink",
            tar_with(b"h", tar::EntryType::Link, b"../../../sentinel", b""),
            "refused layer entry",
        ),
        (
            "symlink-dot",
            tar_with(b".", tar::EntryType::Symlink, b"/", b""),
            "refused layer entry",
        ),
        (
            "whiteout-out",
            tar_with(b"../.wh.sentinel", tar::EntryType::Regular, b"", b""),
            "refused layer entry",
        ),
    ];
    for (label, layer, expect) in cases {
        let dir = p.join(label);
        oci_layout_with_layer(&dir, &layer);
        let (c, _, err) = boxr(&s, &["load", "-i", dir.to_str().unwrap()]);
        assert_eq!(c, 125, "{label}: {err}");
        assert!(err.contains(expect), "{label}: {err}");
        assert_eq!(
            fs::read_to_string(&sentinel).unwrap(),
            "untouched",
            "{label}"
        );
        assert_eq!(ok(boxr(&s, &["images", "-q"])), "", "{label}: no image");
        assert_eq!(
            fs::read_dir(s.join("layers")).unwrap().count(),
            0,
            "{label}: no layer"
        );
        assert_eq!(
            fs::read_dir(s.join("tmp")).unwrap().count(),
            0,
            "{label}: staging removed"
        );
    }
    // A blob whose bytes do not match its digest.
    let dir = p.join("corrupt");
    oci_layout_with_layer(
        &dir,
        &tar_with(b"ok", tar::EntryType::Regular, b"", b"fine"),
    );
    let layer_blob = fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| fs::metadata(p).unwrap().len() > 1000)
        .unwrap();
    let mut bytes = fs::read(&layer_blob).unwrap();
    bytes[600] ^= 1;
    fs::write(&layer_blob, bytes).unwrap();
    let (c, _, err) = boxr(&s, &["load", "-i", dir.to_str().unwrap()]);
    assert_eq!(c, 125);
    assert!(err.contains("is corrupt"), "{err}");
    assert_eq!(ok(boxr(&s, &["images", "-q"])), "");
    assert_store_consistent(&s);
}

#[test]
fn concurrent_and_killed_loads_leave_a_consistent_store() {
    if !privileged("concurrent_and_killed_loads_leave_a_consistent_store") {
        return;
    }
    let w = tempfile::tempdir().unwrap();
    let p = w.path();
    let src = p.join("src-store");
    let rootfs = busybox_rootfs(p);
    sh(&format!(
        "mkdir {0}/data && for i in $(seq 1 30); do head -c 3000000 /dev/urandom > {0}/data/f$i; done",
        rootfs.display()
    ));
    let id = ok(boxr(&src, &["import", rootfs.to_str().unwrap(), "big:1"]))
        .trim()
        .to_owned();
    let archive = p.join("big.tar");
    ok(boxr(
        &src,
        &[
            "save",
            "big:1",
            "-o",
            archive.to_str().unwrap(),
            "--compression",
            "none",
        ],
    ));
    let s = p.join("store");
    let children: Vec<_> = (0..8)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_boxr"))
                .args(["load", "-i", archive.to_str().unwrap()])
                .env("BOXR_ROOT", &s)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(inspect_image(&s, "big:1")["Id"], id);
    assert_eq!(fs::read_dir(s.join("layers")).unwrap().count(), 1);
    assert_eq!(fs::read_dir(s.join("tmp")).unwrap().count(), 0);
    assert_store_consistent(&s);
    // Killed part-way: nothing half-written is visible; gc cleans up; a retry works.
    let k = p.join("killed-store");
    let mut caught = false;
    for delay in [20u64, 60, 120, 250] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_boxr"))
            .args(["load", "-i", archive.to_str().unwrap()])
            .env("BOXR_ROOT", &k)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        if child.wait().unwrap().code().is_some() {
            continue;
        }
        caught = true;
        assert_store_consistent(&k);
        let (c, _, err) = boxr(&k, &["inspect", "big:1"]);
        assert!(c == 0 || err.contains("no such object"), "{err}");
    }
    assert!(caught, "the load was never caught mid-way");
    ok(boxr(&k, &["gc"]));
    assert_eq!(fs::read_dir(k.join("tmp")).unwrap().count(), 0);
    ok(boxr(&k, &["load", "-i", archive.to_str().unwrap()]));
    assert_eq!(inspect_image(&k, "big:1")["Id"], id);
    assert_store_consistent(&k);
}
