//! Content digests of what steps read: COPY sources in the build context, and `dir:`, `tar:`
//! and `oci:` bases. Entries are hashed by path, type, mode, link target and content — never by
//! mtime or inode — in bytewise path order, so the digest depends only on content.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use super::hashcache::FileHashCache;
use super::key::{Digest256, KeyHasher};
use crate::ignore::Ignore;

/// Why an input could not be hashed.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum InputError {
    #[error("`{path}` does not exist in {root}")]
    #[diagnostic(
        code(boxr::plan::input_not_found),
        help("paths are relative to the build context (by default the manifest's directory)")
    )]
    NotFound { path: String, root: String },
    #[error("`{path}` leads outside {root} through a symbolic link")]
    #[diagnostic(
        code(boxr::plan::input_outside),
        help(
            "a build reads only what is inside its context: copy the file in, or widen the context"
        )
    )]
    Outside { path: String, root: String },
    #[error("cannot read `{}`: {source}", path.display())]
    #[diagnostic(code(boxr::plan::input_io))]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid glob `{pattern}`: {reason}")]
    #[diagnostic(code(boxr::plan::input_glob))]
    Glob { pattern: String, reason: String },
    #[error("invalid OCI layout `{}`: {reason}", path.display())]
    #[diagnostic(code(boxr::plan::input_oci))]
    Oci { path: PathBuf, reason: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> InputError + '_ {
    move |source| InputError::Io {
        path: path.to_owned(),
        source,
    }
}

pub use crate::ignore::is_glob;

/// The digest of a `copy`'s sources in the build context, with `chmod` (if any) replacing the
/// modes as the copy will.
/// Entries `.boxrignore` excludes are not hashed (a copy does not see them).
pub fn copy_sources(
    context: &Path,
    sources: &[&str],
    chmod: Option<u32>,
    ignore: &Ignore,
    hashes: Option<&FileHashCache>,
) -> Result<Digest256, InputError> {
    copy_sources_listed(context, sources, chmod, ignore, hashes, None)
}

/// [`copy_sources`], also listing each entry it hashed with a short fingerprint of what the
/// digest took from it (`src/app.py` → 16 hex digits), for `--explain` to name what changed.
pub fn copy_sources_listed(
    context: &Path,
    sources: &[&str],
    chmod: Option<u32>,
    ignore: &Ignore,
    hashes: Option<&FileHashCache>,
    mut list: Option<&mut Vec<(String, String)>>,
) -> Result<Digest256, InputError> {
    let root = fs::canonicalize(context).map_err(io_err(context))?;
    let mut h = KeyHasher::new();
    for source in sources {
        h.field(source.as_bytes());
        let rel = source.trim_start_matches('/');
        let matches = if is_glob(rel) {
            glob(&root, rel)?
                .into_iter()
                .filter(|m| !ignore.is_ignored(&rel_str(&root, m)))
                .collect()
        } else {
            let m = literal(&root, rel)?;
            if ignore.is_ignored(&rel_str(&root, &m)) {
                Vec::new()
            } else {
                vec![m]
            }
        };
        if matches.is_empty() {
            return Err(InputError::NotFound {
                path: (*source).to_owned(),
                root: "the build context".into(),
            });
        }
        for m in matches {
            hash_tree(
                &root,
                &m,
                chmod,
                false,
                ignore,
                hashes,
                &mut h,
                list.as_deref_mut(),
            )?;
        }
    }
    Ok(h.finish())
}

/// The digest of a rootfs directory used as a `dir:` base (owners included: they are part of a
/// rootfs, unlike COPY sources, which the copy re-owns).
pub fn dir_base(dir: &Path, hashes: Option<&FileHashCache>) -> Result<Digest256, InputError> {
    let root = fs::canonicalize(dir).map_err(io_err(dir))?;
    let mut h = KeyHasher::new();
    hash_tree(
        &root,
        &root,
        None,
        true,
        &Ignore::default(),
        hashes,
        &mut h,
        None,
    )?;
    Ok(h.finish())
}

/// The SHA-256 of a file's bytes (a `tar:` base).
pub fn file_digest(path: &Path) -> Result<Digest256, InputError> {
    let mut f = File::open(path).map_err(io_err(path))?;
    let mut h = Sha256::new();
    copy_into(&mut f, &mut h).map_err(io_err(path))?;
    Ok(Digest256(h.finalize().into()))
}

/// The manifest digest an `oci:` base names: the entry of `index.json` whose
/// `org.opencontainers.image.ref.name` is `tag`, or the only entry when no tag is given.
pub fn oci_manifest(layout: &Path, tag: Option<&str>) -> Result<String, InputError> {
    let bad = |reason: String| InputError::Oci {
        path: layout.to_owned(),
        reason,
    };
    let index_path = layout.join("index.json");
    let text = fs::read(&index_path).map_err(io_err(&index_path))?;
    let index: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| bad(format!("index.json: {e}")))?;
    let manifests = index["manifests"]
        .as_array()
        .ok_or_else(|| bad("index.json has no `manifests` list".into()))?;
    let name_of = |m: &serde_json::Value| {
        m["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .map(str::to_owned)
    };
    let chosen = match tag {
        Some(t) => manifests
            .iter()
            .find(|m| name_of(m).as_deref() == Some(t))
            .ok_or_else(|| {
                let names: Vec<String> = manifests.iter().filter_map(name_of).collect();
                bad(format!(
                    "no image tagged `{t}` (tags: {})",
                    names.join(", ")
                ))
            })?,
        None => match manifests.as_slice() {
            [one] => one,
            [] => return Err(bad("index.json lists no images".into())),
            _ => return Err(bad("index.json lists several images: add `:TAG`".into())),
        },
    };
    let digest = chosen["digest"]
        .as_str()
        .ok_or_else(|| bad("a manifest entry has no digest".into()))?;
    if !digest.starts_with("sha256:") || digest.len() != 71 {
        return Err(bad(format!("unsupported digest `{digest}`")));
    }
    Ok(digest.to_owned())
}

/// Resolves a literal source inside `root`: every directory on the way must stay inside the
/// root after following symlinks; the last component itself is not followed (a symlink is
/// copied as a symlink).
fn literal(root: &Path, rel: &str) -> Result<PathBuf, InputError> {
    let mut clean = PathBuf::new();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(p) => clean.push(p),
            Component::ParentDir => {
                clean.pop();
            }
            _ => {}
        }
    }
    let full = root.join(&clean);
    let not_found = || InputError::NotFound {
        path: rel.to_owned(),
        root: "the build context".into(),
    };
    if let Some(parent) = full.parent().filter(|_| clean.parent().is_some()) {
        let real = fs::canonicalize(parent).map_err(|_| not_found())?;
        if !real.starts_with(root) {
            return Err(InputError::Outside {
                path: rel.to_owned(),
                root: "the build context".into(),
            });
        }
        let name = full.file_name().expect("a normal last component");
        let path = real.join(name);
        fs::symlink_metadata(&path).map_err(|_| not_found())?;
        return Ok(path);
    }
    fs::symlink_metadata(&full).map_err(|_| not_found())?;
    Ok(full)
}

/// Every entry of the context whose relative path matches `pattern` (`*` does not cross `/`).
fn glob(root: &Path, pattern: &str) -> Result<Vec<PathBuf>, InputError> {
    let matcher = globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| InputError::Glob {
            pattern: pattern.to_owned(),
            reason: e.kind().to_string(),
        })?
        .compile_matcher();
    let depth = pattern.split('/').filter(|c| !c.is_empty()).count();
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(root)
        .min_depth(1)
        .max_depth(depth)
        .sort_by_file_name()
    {
        let entry = entry.map_err(|e| InputError::Io {
            path: e.path().unwrap_or(root).to_owned(),
            source: e.into(),
        })?;
        let rel = entry
            .path()
            .strip_prefix(root)
            .expect("walk stays under root");
        if matcher.is_match(rel) {
            out.push(entry.into_path());
        }
    }
    Ok(out)
}

/// Hashes `start` and, if it is a directory, everything below it, in bytewise path order;
/// lists each entry with its fingerprint in `list`, if given.
#[allow(clippy::too_many_arguments)]
fn hash_tree(
    root: &Path,
    start: &Path,
    chmod: Option<u32>,
    owners: bool,
    ignore: &Ignore,
    hashes: Option<&FileHashCache>,
    h: &mut KeyHasher,
    mut list: Option<&mut Vec<(String, String)>>,
) -> Result<(), InputError> {
    let walk = walkdir::WalkDir::new(start)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            let rel = rel_str(root, e.path());
            !ignore.is_ignored(&rel) || (e.file_type().is_dir() && ignore.may_reinclude_below(&rel))
        });
    for entry in walk {
        let entry = entry.map_err(|e| InputError::Io {
            path: e.path().unwrap_or(start).to_owned(),
            source: e.into(),
        })?;
        let path = entry.path();
        if entry.file_type().is_dir() && ignore.is_ignored(&rel_str(root, path)) {
            // Walked only for what an exception re-includes below it.
            continue;
        }
        let meta = fs::symlink_metadata(path).map_err(io_err(path))?;
        let rel = path.strip_prefix(root).unwrap_or(path);
        let ft = meta.file_type();
        let kind = if ft.is_file() {
            'f'
        } else if ft.is_dir() {
            'd'
        } else if ft.is_symlink() {
            'l'
        } else if ft.is_char_device() {
            'c'
        } else if ft.is_block_device() {
            'b'
        } else if ft.is_fifo() {
            'p'
        } else {
            's'
        };
        let mode = match (chmod, kind) {
            (Some(m), 'f' | 'd') => m,
            _ => meta.mode() & 0o7777,
        };
        h.field(rel.as_os_str().as_bytes());
        let mut head = format!("{kind} {mode:o}");
        if owners {
            head.push_str(&format!(" {}:{}", meta.uid(), meta.gid()));
        }
        if matches!(kind, 'c' | 'b') {
            head.push_str(&format!(" {}", meta.rdev()));
        }
        h.field(head.as_bytes());
        let content: Vec<u8> = match kind {
            'f' => {
                let digest = match hashes {
                    Some(c) => c.digest(path, &meta, || file_digest(path))?,
                    None => file_digest(path)?,
                };
                digest.0.to_vec()
            }
            'l' => {
                let target = fs::read_link(path).map_err(io_err(path))?;
                target.as_os_str().as_bytes().to_vec()
            }
            _ => Vec::new(),
        };
        h.field(&content);
        // One past the most a build record keeps: enough to tell a listing was cut, without
        // fingerprinting every file of a large context on every plan.
        if let Some(list) = list.as_deref_mut()
            && list.len() <= super::MAX_LISTED_FILES
        {
            let mut f = Sha256::new();
            f.update(head.as_bytes());
            f.update(b"\0");
            f.update(&content);
            let fp = f.finalize();
            list.push((rel.to_string_lossy().into_owned(), hex::encode(&fp[..8])));
        }
    }
    Ok(())
}

/// `path` relative to `root`, `/`-separated.
fn rel_str(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

fn copy_into(r: &mut impl Read, h: &mut Sha256) -> io::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    #[test]
    fn a_copy_lists_its_entries_up_to_one_past_the_cap() {
        let d = ctx();
        let mut list = Vec::new();
        copy_sources_listed(
            d.path(),
            &["src"],
            None,
            &Ignore::default(),
            None,
            Some(&mut list),
        )
        .unwrap();
        let paths: Vec<&str> = list.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["src", "src/a.c", "src/sub", "src/sub/b.c"]);
        let many = tempfile::tempdir().unwrap();
        for i in 0..super::super::MAX_LISTED_FILES + 10 {
            fs::write(many.path().join(format!("f{i}")), "x").unwrap();
        }
        let mut list = Vec::new();
        copy_sources_listed(
            many.path(),
            &["."],
            None,
            &Ignore::default(),
            None,
            Some(&mut list),
        )
        .unwrap();
        assert_eq!(list.len(), super::super::MAX_LISTED_FILES + 1);
    }

    fn ctx() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("src/sub")).unwrap();
        fs::write(d.path().join("src/a.c"), "int a;").unwrap();
        fs::write(d.path().join("src/sub/b.c"), "int b;").unwrap();
        fs::write(d.path().join("Makefile"), "all:").unwrap();
        d
    }

    #[test]
    fn content_not_mtime() {
        let d = ctx();
        let a = copy_sources(d.path(), &["src"], None, &Ignore::default(), None).unwrap();
        let f = fs::File::options()
            .write(true)
            .open(d.path().join("src/a.c"))
            .unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(
            a,
            copy_sources(d.path(), &["src"], None, &Ignore::default(), None).unwrap()
        );
        fs::write(d.path().join("src/a.c"), "int A;").unwrap();
        assert_ne!(
            a,
            copy_sources(d.path(), &["src"], None, &Ignore::default(), None).unwrap()
        );
    }

    #[test]
    fn mode_matters_unless_chmod_overrides_it() {
        let d = ctx();
        let p = d.path().join("Makefile");
        let before = copy_sources(d.path(), &["Makefile"], None, &Ignore::default(), None).unwrap();
        let before_chmod = copy_sources(
            d.path(),
            &["Makefile"],
            Some(0o755),
            &Ignore::default(),
            None,
        )
        .unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        assert_ne!(
            before,
            copy_sources(d.path(), &["Makefile"], None, &Ignore::default(), None).unwrap()
        );
        assert_eq!(
            before_chmod,
            copy_sources(
                d.path(),
                &["Makefile"],
                Some(0o755),
                &Ignore::default(),
                None
            )
            .unwrap()
        );
    }

    #[test]
    fn globs_do_not_cross_slashes() {
        let d = ctx();
        let one = copy_sources(d.path(), &["src/*.c"], None, &Ignore::default(), None).unwrap();
        fs::write(d.path().join("src/sub/c.c"), "int c;").unwrap();
        assert_eq!(
            one,
            copy_sources(d.path(), &["src/*.c"], None, &Ignore::default(), None).unwrap()
        );
        assert!(matches!(
            copy_sources(d.path(), &["*.rs"], None, &Ignore::default(), None),
            Err(InputError::NotFound { .. })
        ));
    }

    #[test]
    fn symlinks_cannot_lead_outside() {
        let d = ctx();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), "x").unwrap();
        symlink(outside.path(), d.path().join("link")).unwrap();
        assert!(matches!(
            copy_sources(d.path(), &["link/secret"], None, &Ignore::default(), None),
            Err(InputError::Outside { .. })
        ));
        // The link itself is hashed as a link, not followed.
        assert!(copy_sources(d.path(), &["link"], None, &Ignore::default(), None).is_ok());
    }
}
