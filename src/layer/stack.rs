//! A stack of unpacked layers (topmost first) as overlay shows it, and the upper dir above it:
//! where a path is in the stack, and what a sandbox's mount points left in an upper dir that is
//! no change of the container's own (so a committed layer, or `boxr diff`, does not show it).

use std::cmp::Reverse;
use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Where `path` is in the stack of layer roots (topmost first), whiteouts and opaque
/// directories respected: the layer's copy of it, or `None` when the stack does not have it.
pub fn find_in_layers(lowers: &[PathBuf], path: &str) -> Option<PathBuf> {
    let rel = path.trim_start_matches('/');
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    for l in lowers {
        let mut p = l.clone();
        let mut opaque_above = false;
        for (i, part) in parts.iter().enumerate() {
            p.push(part);
            match fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_char_device() && m.rdev() == 0 => return None,
                Ok(_) if i + 1 == parts.len() => return Some(p),
                Ok(_) => {
                    if is_opaque(&p) {
                        opaque_above = true;
                    }
                }
                Err(_) => break,
            }
        }
        if opaque_above {
            return None;
        }
    }
    None
}

/// Whether the directory `p` is opaque (hides what the layers below have there).
pub fn is_opaque(p: &Path) -> bool {
    xattr::get(p, super::opaque_xattr())
        .ok()
        .flatten()
        .is_some_and(|v| v == b"y")
}

/// `targets` and all their parents (below `/`), without the leading `/`.
pub fn with_parents(targets: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for t in targets {
        let mut rel = t.trim_matches('/').to_owned();
        while !rel.is_empty() {
            if !out.contains(&rel) {
                out.push(rel.clone());
            }
            rel = rel
                .rsplit_once('/')
                .map_or(String::new(), |(p, _)| p.to_owned());
        }
    }
    out
}

/// What the mount points `targets` of a sandbox left in its upper dir, deepest first: the
/// mount points the layers do not have (parents included: directories left empty and empty
/// files), and the directories overlay copied up only to create them (empty, not opaque, with
/// the owner and mode they have below). Anything the sandbox's processes put there is kept.
pub fn mount_point_leftovers(upper: &Path, lowers: &[PathBuf], targets: &[String]) -> Vec<PathBuf> {
    let mut all = with_parents(targets);
    // Deepest first, so a parent is judged once its children are.
    all.sort_by_key(|p| Reverse(p.matches('/').count()));
    let mut gone: HashSet<PathBuf> = HashSet::new();
    let empty_now = |p: &Path, gone: &HashSet<PathBuf>| {
        fs::read_dir(p).is_ok_and(|rd| rd.flatten().all(|e| gone.contains(&e.path())))
    };
    for t in all {
        let p = upper.join(&t);
        let Ok(m) = fs::symlink_metadata(&p) else {
            continue;
        };
        let leftover = match find_in_layers(lowers, &t).and_then(|b| fs::symlink_metadata(b).ok()) {
            None => (m.is_dir() && empty_now(&p, &gone)) || (m.is_file() && m.len() == 0),
            Some(below) => {
                m.is_dir()
                    && below.is_dir()
                    && m.mode() == below.mode()
                    && m.uid() == below.uid()
                    && m.gid() == below.gid()
                    && !is_opaque(&p)
                    && empty_now(&p, &gone)
            }
        };
        if leftover {
            gone.insert(p);
        }
    }
    let mut out: Vec<PathBuf> = gone.into_iter().collect();
    out.sort_by_key(|p| Reverse(p.components().count()));
    out
}

/// Removes [`mount_point_leftovers`] from `upper`.
pub fn remove_mount_points(upper: &Path, lowers: &[PathBuf], targets: &[String]) {
    for p in mount_point_leftovers(upper, lowers, targets) {
        if p.is_dir() {
            let _ = fs::remove_dir(&p);
        } else {
            let _ = fs::remove_file(&p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_are_only_what_mount_points_made() {
        let dir = tempfile::tempdir().unwrap();
        let (lower, upper) = (dir.path().join("lower"), dir.path().join("upper"));
        fs::create_dir_all(lower.join("etc")).unwrap();
        fs::write(lower.join("etc/hosts"), "image's").unwrap();
        // The sandbox made /proc, /data/sub and an empty /etc/hostname; /etc was copied up for
        // it. The container wrote /data/sub/kept and /etc/motd.
        fs::create_dir_all(upper.join("proc")).unwrap();
        fs::create_dir_all(upper.join("etc")).unwrap();
        fs::write(upper.join("etc/hostname"), "").unwrap();
        fs::create_dir_all(upper.join("mnt/a/b")).unwrap();
        fs::create_dir_all(upper.join("data/sub")).unwrap();
        fs::write(upper.join("data/sub/kept"), "x").unwrap();
        let lowers = vec![lower.clone()];
        let targets: Vec<String> = [
            "/proc",
            "/etc/hostname",
            "/etc/hosts",
            "/mnt/a/b",
            "/data/sub",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mode = fs::metadata(lower.join("etc")).unwrap().mode();
        fs::set_permissions(upper.join("etc"), fs::Permissions::from_mode(mode)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let found: HashSet<PathBuf> = mount_point_leftovers(&upper, &lowers, &targets)
            .into_iter()
            .collect();
        let want: HashSet<PathBuf> = ["proc", "etc/hostname", "etc", "mnt/a/b", "mnt/a", "mnt"]
            .iter()
            .map(|p| upper.join(p))
            .collect();
        assert_eq!(found, want);
        fs::write(upper.join("etc/motd"), "hi").unwrap();
        remove_mount_points(&upper, &lowers, &targets);
        assert!(upper.join("etc/motd").exists() && upper.join("data/sub/kept").exists());
        assert!(!upper.join("etc/hostname").exists() && !upper.join("proc").exists());
        assert!(!upper.join("mnt").exists());
    }
}
