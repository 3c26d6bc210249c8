//! Where the store keeps what other modules own: container directories and names (owned by
//! `container`), volumes, and the journal of kernel resources. Every path under
//! the store root is named here or in the module of `store` that writes it, so the layout in
//! the module doc is the whole truth.

use std::path::{Path, PathBuf};

use super::Store;

impl Store {
    /// `containers/`: one directory per container.
    pub fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }

    /// `containers/<id>/`.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.containers_dir().join(id)
    }

    /// `mnt/`: the one directory every container's rootfs is mounted on, each in the container's
    /// own private mount namespace. The host never sees those mounts, so they cannot collide;
    /// one shared directory spares every start a mkdir and every removal an rmdir (on ext4
    /// mounted `discard` about 70 µs each).
    pub fn rootfs_mount_point(&self) -> PathBuf {
        self.root.join("mnt")
    }

    /// `names/`: one file per container name, holding the container's id.
    pub fn names_dir(&self) -> PathBuf {
        self.root.join("names")
    }

    /// `names/<name>`.
    pub fn name_file(&self, name: &str) -> PathBuf {
        self.names_dir().join(name)
    }

    /// `volumes/`: one directory per named volume.
    pub fn volumes_dir(&self) -> PathBuf {
        self.root.join("volumes")
    }

    /// `volumes/<name>/`, whether or not it exists (see [`Store::volume`], which makes it).
    pub fn volume_dir(&self, name: &str) -> PathBuf {
        self.volumes_dir().join(name)
    }

    /// `networks/`: one file per network (its subnet, bridge and leases), and the lock that
    /// guards them.
    pub fn networks_dir(&self) -> PathBuf {
        self.root.join("networks")
    }

    /// `journal/`: kernel resources (cgroups, later veths and nft rules) recorded before they
    /// are created, so `gc` can remove what a killed boxr left.
    pub fn journal_dir(&self) -> PathBuf {
        self.root.join("journal")
    }

    /// `journal/<kind>-<name>.json`: the entry for one resource.
    pub fn journal_entry(&self, kind: &str, name: &str) -> PathBuf {
        journal_entry_in(&self.root, kind, name)
    }

    /// Calls `clean` with the content of every `journal/<kind>-*.json` entry; an entry whose
    /// resource `clean` says is gone (`Ok(true)`) is removed, one still in use (`Ok(false)`)
    /// stays, and a torn entry (its writer died before creating anything) is removed unread.
    /// Returns how many entries were cleaned.
    pub fn clean_journal<E: Into<Box<dyn std::error::Error + Send + Sync>>>(
        &self,
        kind: &str,
        clean: impl Fn(&[u8]) -> Result<bool, E>,
    ) -> Result<usize, super::StoreError> {
        self.clean_journal_where(kind, |_| true, clean)
    }

    /// [`Store::clean_journal`] for the entries of `kind` named for an owner (see
    /// [`super::owned_prefix`]: a build step's cgroup) that is gone: what the next command
    /// cleans after a killed one, in one listing of `journal/`, never touching what a live
    /// command is using.
    pub fn clean_orphan_journal<E: Into<Box<dyn std::error::Error + Send + Sync>>>(
        &self,
        kind: &str,
        clean: impl Fn(&[u8]) -> Result<bool, E>,
    ) -> Result<usize, super::StoreError> {
        self.clean_journal_where(
            kind,
            |name| {
                super::owner_of(name).is_some_and(|(pid, start)| {
                    crate::platform::process_start_time(pid) != Some(start)
                })
            },
            clean,
        )
    }

    fn clean_journal_where<E: Into<Box<dyn std::error::Error + Send + Sync>>>(
        &self,
        kind: &str,
        wanted: impl Fn(&str) -> bool,
        clean: impl Fn(&[u8]) -> Result<bool, E>,
    ) -> Result<usize, super::StoreError> {
        let dir = self.journal_dir();
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return Ok(0);
        };
        let prefix = format!("{kind}-");
        let mut cleaned = 0;
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !(name.starts_with(&prefix) && name.ends_with(".json") && wanted(&name)) {
                continue;
            }
            let path = e.path();
            let gone = match std::fs::read(&path) {
                Ok(bytes) => clean(&bytes).map_err(|e| super::StoreError::Journal {
                    path: path.clone(),
                    source: e.into(),
                })?,
                Err(_) => true,
            };
            if gone {
                // The cleaner may have removed it itself.
                match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(super::io_err("remove", &path)(e));
                    }
                    _ => {}
                }
                cleaned += 1;
            }
        }
        Ok(cleaned)
    }
}

/// [`Store::journal_entry`] of the store at `root`: for a process that has only a container's
/// directory (see [`root_of_container_dir`]).
pub fn journal_entry_in(root: &Path, kind: &str, name: &str) -> PathBuf {
    root.join("journal").join(format!("{kind}-{name}.json"))
}

/// The store root of a container directory (`<root>/containers/<id>`): for a process that has
/// only the directory (the monitor).
pub fn root_of_container_dir(dir: &Path) -> Option<&Path> {
    dir.parent()?.parent()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Access;

    #[test]
    fn the_orphan_journal_is_only_what_dead_owners_left() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path(), Access::Exclusive).unwrap();
        let me = super::super::owned_prefix("build-step-");
        // Above the kernel's highest pid_max (2^22): that owner is gone.
        let gone = "build-step-4194305.1-abc";
        for name in [&format!("{me}xyz"), gone, "0123abcd"] {
            std::fs::write(store.journal_entry("cgroup", name), b"x").unwrap();
        }
        let n = store
            .clean_orphan_journal("cgroup", |_| Ok::<_, std::io::Error>(true))
            .unwrap();
        assert_eq!(n, 1);
        assert!(!store.journal_entry("cgroup", gone).exists());
        assert!(store.journal_entry("cgroup", &format!("{me}xyz")).exists());
        assert!(store.journal_entry("cgroup", "0123abcd").exists());
    }

    #[test]
    fn the_journal_keeps_entries_still_in_use() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path(), Access::Exclusive).unwrap();
        std::fs::write(store.journal_entry("cgroup", "a"), b"gone").unwrap();
        std::fs::write(store.journal_entry("cgroup", "b"), b"busy").unwrap();
        std::fs::write(store.journal_entry("veth", "c"), b"gone").unwrap();
        let n = store
            .clean_journal("cgroup", |b| Ok::<_, std::io::Error>(b == b"gone"))
            .unwrap();
        assert_eq!(n, 1);
        assert!(!store.journal_entry("cgroup", "a").exists());
        assert!(store.journal_entry("cgroup", "b").exists());
        assert!(
            store.journal_entry("veth", "c").exists(),
            "another kind is not touched"
        );
        let err = store
            .clean_journal("cgroup", |_| Err(std::io::Error::other("busy")))
            .unwrap_err();
        assert!(err.to_string().contains("cgroup-b.json"), "{err}");
        assert_eq!(
            root_of_container_dir(&store.container_dir("x")),
            Some(d.path())
        );
    }
}
