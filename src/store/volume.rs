//! Named volumes: directories the store manages under `volumes/<name>/`, created on first use
//! and kept until `boxr volume rm`. gc never touches them.

use std::fs;
use std::path::PathBuf;

use super::{Store, StoreError, io_err, remove_tree};

/// A valid volume name: a letter or digit, then letters, digits, `_`, `.`, `-`.
pub fn valid_volume_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && name.len() <= 128
}

fn check(name: &str) -> Result<(), StoreError> {
    if valid_volume_name(name) {
        Ok(())
    } else {
        Err(StoreError::BadName {
            name: name.to_owned(),
            reason: "volume names are letters, digits, `_`, `.` and `-`, starting with a letter or digit".into(),
        })
    }
}

impl Store {
    /// The directory of volume `name`, created if it does not exist yet.
    pub fn volume(&self, name: &str) -> Result<PathBuf, StoreError> {
        check(name)?;
        let dir = self.root.join("volumes").join(name);
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        Ok(dir)
    }

    /// Every volume, sorted by name.
    pub fn volumes(&self) -> Result<Vec<String>, StoreError> {
        let dir = self.root.join("volumes");
        let mut names: Vec<String> = match fs::read_dir(&dir) {
            Ok(d) => d
                .flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .filter(|n| valid_volume_name(n))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err("list", dir)(e)),
        };
        names.sort();
        Ok(names)
    }

    /// Removes a volume and its data.
    pub fn remove_volume(&self, name: &str) -> Result<(), StoreError> {
        check(name)?;
        let dir = self.root.join("volumes").join(name);
        if !dir.exists() {
            return Err(StoreError::Archive {
                message: format!("no such volume: {name}"),
                help: Some("`boxr volume ls` lists the volumes".into()),
            });
        }
        remove_tree(&dir)
    }
}
