//! Layers end to end: real overlay upper dirs committed to tars, applied back, and stacked with
//! real overlay mounts; reproducibility; and malicious tars that must fail closed without
//! writing outside the layer.

mod support;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use boxr::layer::{self, WriteOptions};
use support::{Overlay, privileged, sh, tree};

fn commit(dir: &Path) -> Vec<u8> {
    let (_, bytes) = layer::write_tar(
        dir,
        WriteOptions {
            clamp_mtime: Some(0),
        },
        Vec::new(),
    )
    .unwrap();
    bytes
}

/// Makes the upper dir of a change to `lowers` with a real overlay mount: `change` runs as a
/// shell script in the merged dir.
fn overlay_change(work: &Path, name: &str, lowers: &[&Path], change: &str) -> std::path::PathBuf {
    let upper = work.join(format!("{name}-upper"));
    let wd = work.join(format!("{name}-work"));
    let merged = work.join(format!("{name}-merged"));
    for d in [&upper, &wd, &merged] {
        fs::create_dir_all(d).unwrap();
    }
    {
        let _m = Overlay::mount(lowers, Some((&upper, &wd)), &merged);
        sh(&format!("cd {} && {change}", merged.display()));
    }
    upper
}

fn apply_to(work: &Path, name: &str, tar: &[u8], lowers: &[&Path]) -> std::path::PathBuf {
    let dest = work.join(name);
    fs::create_dir_all(&dest).unwrap();
    layer::apply(tar, &dest, lowers).unwrap();
    dest
}

#[test]
fn whiteouts_across_three_layers_stack_with_overlay() {
    if !privileged("whiteouts_across_three_layers_stack_with_overlay") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // Layer 1: a base tree, committed and applied like any layer.
    let base = w.join("base-src");
    fs::create_dir_all(base.join("d/sub")).unwrap();
    fs::write(base.join("a"), "a1").unwrap();
    fs::write(base.join("b"), "b1").unwrap();
    fs::write(base.join("f"), "file").unwrap();
    fs::write(base.join("d/x"), "x1").unwrap();
    fs::write(base.join("d/sub/y"), "y1").unwrap();
    let l1 = apply_to(w, "l1", &commit(&base), &[]);

    // Layer 2: delete a, replace the file f with a directory, make d opaque with one new file.
    let up2 = overlay_change(
        w,
        "l2",
        &[&l1],
        "rm a && rm f && mkdir f && echo inner > f/inner && rm -rf d && mkdir d && echo z2 > d/z",
    );
    let t2 = commit(&up2);
    let l2 = apply_to(w, "l2", &t2, &[&l1]);

    // Layer 3: recreate a, delete the directory f, change b.
    let up3 = overlay_change(
        w,
        "l3",
        &[&l2, &l1],
        "echo a3 > a && rm -rf f && echo b3 > b",
    );
    let l3 = apply_to(w, "l3", &commit(&up3), &[&l2, &l1]);

    let merged = w.join("final");
    fs::create_dir_all(&merged).unwrap();
    let expected = vec!["f a a3", "f b b3", "d d", "f d/z z2"];
    {
        let _m = Overlay::mount(&[&l3, &l2, &l1], None, &merged);
        assert_eq!(tree(&merged), expected);
    }
    // The tar of layer 2 holds OCI whiteouts, and re-committing the applied layer gives the same
    // bytes: apply and commit are inverses.
    let names: Vec<String> = tar::Archive::new(&t2[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(names.contains(&".wh.a".to_owned()), "{names:?}");
    assert!(names.contains(&"d/.wh..wh..opq".to_owned()), "{names:?}");
    assert_eq!(commit(&l2), t2);
}

#[test]
fn the_same_tree_gives_the_same_tar() {
    if !privileged("the_same_tree_gives_the_same_tar") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let make = |name: &str, order: &[&str]| {
        let d = work.path().join(name);
        fs::create_dir_all(d.join("dir")).unwrap();
        for f in order {
            fs::write(d.join(f), format!("content of {f}")).unwrap();
        }
        fs::set_permissions(d.join("dir"), fs::Permissions::from_mode(0o750)).unwrap();
        symlink("a", d.join("link")).unwrap();
        fs::hard_link(d.join("a"), d.join("hard")).unwrap();
        xattr::set(d.join("a"), "user.note", b"kept").unwrap();
        xattr::set(d.join("a"), "trusted.overlay.origin", b"dropped").unwrap();
        d
    };
    // Files created in a different order (different inodes and directory order).
    let one = make("one", &["a", "b", "dir/c"]);
    let two = make("two", &["dir/c", "b", "a"]);
    let opts = WriteOptions {
        clamp_mtime: Some(1_000),
    };
    let a = layer::diff_id(&one, opts).unwrap();
    assert_eq!(a, layer::diff_id(&two, opts).unwrap());
    // Touching mtimes below the clamp changes nothing; the tar is the same bytes.
    sh(&format!(
        "touch -d @5000 {}/a {}/b",
        one.display(),
        one.display()
    ));
    assert_eq!(a, layer::diff_id(&one, opts).unwrap());
    let (stats, bytes) = layer::write_tar(&one, opts, Vec::new()).unwrap();
    assert_eq!(stats, a);
    assert_eq!(boxr::digest::Digest::of(&bytes), a.diff_id);
    // The archive: a hardlink stays a link, xattrs are kept except overlay's.
    let mut archive = tar::Archive::new(&bytes[..]);
    let mut saw_link = false;
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().display().to_string();
        assert_eq!(
            e.header().mtime().unwrap(),
            1_000.min(e.header().mtime().unwrap())
        );
        assert!(e.header().username().unwrap().unwrap_or("").is_empty());
        if e.header().entry_type() == tar::EntryType::Link {
            saw_link = true;
            assert_eq!(path, "hard");
        }
        if path == "a" {
            let exts: Vec<(String, Vec<u8>)> = e
                .pax_extensions()
                .unwrap()
                .unwrap()
                .map(|x| {
                    let x = x.unwrap();
                    (x.key().unwrap().to_owned(), x.value_bytes().to_vec())
                })
                .collect();
            assert_eq!(
                exts,
                [("SCHILY.xattr.user.note".to_owned(), b"kept".to_vec())]
            );
        }
    }
    assert!(saw_link);
    // Changing content changes the digest.
    fs::write(one.join("b"), "other").unwrap();
    assert_ne!(a, layer::diff_id(&one, opts).unwrap());
}

#[test]
fn long_names_devices_fifos_and_sparse_files_round_trip() {
    if !privileged("long_names_devices_fifos_and_sparse_files_round_trip") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let long = "d".repeat(120) + "/" + &"n".repeat(150);
    fs::create_dir_all(src.join(Path::new(&long).parent().unwrap())).unwrap();
    fs::write(src.join(&long), "long").unwrap();
    symlink("t".repeat(200), src.join("longlink")).unwrap();
    sh(&format!(
        "mknod {0}/null c 1 3 && mkfifo {0}/fifo && truncate -s 10M {0}/sparse && printf x | dd of={0}/sparse bs=1 seek=5000000 conv=notrunc 2>/dev/null",
        src.display()
    ));
    fs::set_permissions(src.join("null"), fs::Permissions::from_mode(0o666)).unwrap();
    std::os::unix::fs::chown(src.join(&long), Some(1234), Some(5678)).unwrap();
    let tar = commit(&src);
    let dest = apply_to(work.path(), "dest", &tar, &[]);
    assert_eq!(fs::read_to_string(dest.join(&long)).unwrap(), "long");
    let m = fs::metadata(dest.join(&long)).unwrap();
    assert_eq!((m.uid(), m.gid()), (1234, 5678));
    assert_eq!(
        fs::read_link(dest.join("longlink"))
            .unwrap()
            .as_os_str()
            .len(),
        200
    );
    let null = fs::symlink_metadata(dest.join("null")).unwrap();
    assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
    assert_eq!(null.mode() & 0o7777, 0o666);
    use std::os::unix::fs::FileTypeExt;
    assert!(
        fs::symlink_metadata(dest.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    let sparse = fs::read(dest.join("sparse")).unwrap();
    assert_eq!(sparse.len(), 10 << 20);
    assert_eq!(sparse[5_000_000], b'x');
    // Re-committing the applied tree gives the identical tar.
    assert_eq!(commit(&dest), tar);
}

/// Builds a tar by hand: (name, type, link target, content). Names are written raw, so
/// malicious ones (`..`, absolute) get through the builder.
fn raw_tar(entries: &[(&str, tar::EntryType, &str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, link, data) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(*kind);
        h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        let raw = h.as_old_mut();
        raw.name[..name.len()].copy_from_slice(name.as_bytes());
        raw.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data.as_bytes());
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0; 1024]);
    out
}

use tar::EntryType::{Directory as D, Link as H, Regular as F, Symlink as L};

/// A directory outside the layer with a sentinel file, to prove nothing reaches it.
struct Sentinel {
    dir: tempfile::TempDir,
}

impl Sentinel {
    fn new() -> Sentinel {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("sentinel"), "untouched").unwrap();
        Sentinel { dir }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn check(&self) {
        let names: Vec<_> = fs::read_dir(self.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            ["sentinel"],
            "nothing may appear next to the sentinel"
        );
        assert_eq!(
            fs::read_to_string(self.path().join("sentinel")).unwrap(),
            "untouched"
        );
    }
}

#[test]
fn malicious_entries_fail_closed() {
    if !privileged("malicious_entries_fail_closed") {
        return;
    }
    let s = Sentinel::new();
    // The layer lives inside the sentinel's parent, so a climb of one or two levels would land
    // next to the sentinel.
    let sdir = s.path().display().to_string();
    let outside = format!("{sdir}/evil");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("dotdot", raw_tar(&[("../evil", F, "", "x")])),
        ("dotdot-deep", raw_tar(&[("a/../../evil", F, "", "x")])),
        ("hardlink-out", raw_tar(&[("h", H, "../sentinel", "")])),
        (
            "hardlink-abs",
            raw_tar(&[("h", H, &format!("{sdir}/sentinel"), "")]),
        ),
        ("hardlink-missing", raw_tar(&[("h", H, "nothing-here", "")])),
        ("symlink-dot", raw_tar(&[(".", L, "/", "")])),
        ("whiteout-out", raw_tar(&[("../.wh.sentinel", F, "", "")])),
        ("whiteout-dotdot", raw_tar(&[("a/.wh..", F, "", "")])),
    ];
    for (label, tar) in cases {
        let parent = tempfile::tempdir_in(s.path()).unwrap();
        let dest = parent.path().join("layer");
        fs::create_dir(&dest).unwrap();
        let err = layer::apply(&tar[..], &dest, &[]).expect_err(label);
        assert!(
            matches!(err, layer::LayerError::Refused { .. }),
            "{label}: {err:?}"
        );
        assert!(!Path::new(&outside).exists(), "{label}");
        drop(parent);
        s.check();
    }
}

#[test]
fn symlinks_are_resolved_inside_the_root() {
    if !privileged("symlinks_are_resolved_inside_the_root") {
        return;
    }
    let s = Sentinel::new();
    let sdir = s.path().display().to_string();
    let work = tempfile::tempdir().unwrap();
    // This layer's own symlinks: absolute, relative climbing, and chained.
    let tar = raw_tar(&[
        ("abs", L, &sdir, ""),
        ("abs/sentinel", F, "", "inside"),
        ("rel", L, "../../../..", ""),
        ("rel/etc/passwd", F, "", "inside"),
        ("chain1", L, "chain2", ""),
        ("chain2", L, "/deep/er", ""),
        ("chain1/file", F, "", "chained"),
        ("loop", L, "loop", ""),
    ]);
    let dest = work.path().join("l");
    fs::create_dir(&dest).unwrap();
    layer::apply(&tar[..], &dest, &[]).unwrap();
    s.check();
    let inner = dest.join(sdir.trim_start_matches('/')).join("sentinel");
    assert_eq!(fs::read_to_string(inner).unwrap(), "inside");
    assert_eq!(
        fs::read_to_string(dest.join("etc/passwd")).unwrap(),
        "inside"
    );
    assert_eq!(
        fs::read_to_string(dest.join("deep/er/file")).unwrap(),
        "chained"
    );
    // A symlink loop used as a directory is refused, not followed forever.
    let looped = raw_tar(&[("loop", L, "loop", ""), ("loop/x", F, "", "")]);
    let d2 = work.path().join("l2");
    fs::create_dir(&d2).unwrap();
    assert!(matches!(
        layer::apply(&looped[..], &d2, &[]),
        Err(layer::LayerError::Refused { .. })
    ));
}

#[test]
fn symlinks_of_lower_layers_are_followed_inside_the_root() {
    if !privileged("symlinks_of_lower_layers_are_followed_inside_the_root") {
        return;
    }
    let s = Sentinel::new();
    let work = tempfile::tempdir().unwrap();
    // A lower layer like a merged-/usr image: lib -> usr/lib, and an escape attempt.
    let lower = work.path().join("lower");
    fs::create_dir_all(lower.join("usr/lib")).unwrap();
    fs::set_permissions(lower.join("usr/lib"), fs::Permissions::from_mode(0o711)).unwrap();
    symlink("usr/lib", lower.join("lib")).unwrap();
    symlink(s.path(), lower.join("escape")).unwrap();
    let tar = raw_tar(&[
        ("lib/libc.so", F, "", "libc"),
        ("escape/sentinel", F, "", "inside"),
    ]);
    let dest = work.path().join("upper");
    fs::create_dir(&dest).unwrap();
    layer::apply(&tar[..], &dest, &[&lower]).unwrap();
    s.check();
    assert_eq!(
        fs::read_to_string(dest.join("usr/lib/libc.so")).unwrap(),
        "libc"
    );
    // The directory created in this layer copies the lower directory's metadata (copy-up).
    assert_eq!(
        fs::metadata(dest.join("usr/lib")).unwrap().mode() & 0o7777,
        0o711
    );
    assert!(
        !dest.join("lib").exists(),
        "the symlink stays in the lower layer"
    );
    let inner = dest
        .join(s.path().strip_prefix("/").unwrap())
        .join("sentinel");
    assert_eq!(fs::read_to_string(inner).unwrap(), "inside");
    // A hardlink to a file that only a lower layer has is refused.
    fs::write(lower.join("usr/lib/only-below"), "x").unwrap();
    let d2 = work.path().join("upper2");
    fs::create_dir(&d2).unwrap();
    let bad = raw_tar(&[("h", H, "usr/lib/only-below", "")]);
    assert!(matches!(
        layer::apply(&bad[..], &d2, &[&lower]),
        Err(layer::LayerError::Refused { .. })
    ));
}

#[test]
fn layers_forge_no_overlay_metadata() {
    if !privileged("layers_forge_no_overlay_metadata") {
        return;
    }
    // A PAX record trying to set trusted.overlay.opaque (or redirect) is dropped.
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([
        ("SCHILY.xattr.trusted.overlay.redirect", &b"/etc"[..]),
        ("SCHILY.xattr.user.ok", &b"1"[..]),
    ])
    .unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(D);
    h.set_mode(0o755);
    h.set_size(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    b.append_data(&mut h, "dir/", std::io::empty()).unwrap();
    let tar = b.into_inner().unwrap();
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("l");
    fs::create_dir(&dest).unwrap();
    layer::apply(&tar[..], &dest, &[]).unwrap();
    assert_eq!(
        xattr::get(dest.join("dir"), "trusted.overlay.redirect").unwrap(),
        None
    );
    assert_eq!(
        xattr::get(dest.join("dir"), "user.ok").unwrap().as_deref(),
        Some(&b"1"[..])
    );
    let _ = std::io::sink().write(b"");
}
