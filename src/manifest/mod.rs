//! `boxr.kdl` → [`Manifest`].
//!
//! Owns the manifest language: KDL syntax (the only module that uses the `kdl` crate), the typed
//! model in which every value keeps its span, `${NAME}` arg interpolation, and every diagnostic,
//! all of a file's problems reported in one run. It does not plan, touch the store or run
//! anything.

mod error;
mod fast;
mod interp;
mod lower;
mod model;
pub mod syntax;
mod validate;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use error::{ManifestError, ManifestErrors};
pub use model::*;

/// Parses and checks a manifest. `name` is how the file is shown in diagnostics; `overrides`
/// are `--arg NAME=VALUE` values, which replace the args' defaults.
pub fn parse(
    name: &str,
    source: &str,
    overrides: &BTreeMap<String, String>,
) -> Result<Manifest, ManifestErrors> {
    let text: Arc<str> = Arc::from(source);
    let fail = |errors| ManifestErrors::new(name, text.clone(), errors);
    let doc = syntax::parse(source).map_err(|errs| {
        fail(
            errs.into_iter()
                .map(|e| ManifestError::Syntax {
                    message: e.message,
                    label: e.label.unwrap_or_else(|| "here".into()),
                    help: e.help,
                    span: e.span,
                })
                .collect(),
        )
    })?;
    let mut lowerer = lower::Lowerer::new(source, overrides);
    let mut manifest = lowerer.lower(&doc);
    manifest.name = name.to_owned();
    manifest.source = text.clone();
    let mut errors = lowerer.errors;
    validate::cycles(&manifest, &mut errors);
    if errors.is_empty() {
        Ok(manifest)
    } else {
        Err(fail(errors))
    }
}

/// Why a manifest file could not be loaded.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LoadError {
    #[error("cannot read {}", path.display())]
    #[diagnostic(code(boxr::manifest::read))]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is larger than {} MiB: not a manifest", path.display(), MAX_SIZE >> 20)]
    #[diagnostic(
        code(boxr::manifest::too_large),
        help("a manifest of a thousand images is under 1 MiB; is -f pointing at the right file?")
    )]
    TooLarge { path: std::path::PathBuf },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Invalid(#[from] Box<ManifestErrors>),
}

/// The largest manifest boxr reads.
pub const MAX_SIZE: u64 = 8 << 20;

/// Reads and parses the manifest at `path`, shown in diagnostics as `path` is written.
pub fn load(
    path: &std::path::Path,
    overrides: &BTreeMap<String, String>,
) -> Result<Manifest, LoadError> {
    use std::io::Read;
    let read_err = |source| LoadError::Read {
        path: path.to_owned(),
        source,
    };
    // Read at most one byte past the limit: `-f /dev/zero` stops there.
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SIZE + 1).read_to_end(&mut bytes))
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_SIZE {
        return Err(LoadError::TooLarge {
            path: path.to_owned(),
        });
    }
    let source = String::from_utf8(bytes).map_err(|e| {
        read_err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("it is not UTF-8 text ({e})"),
        ))
    })?;
    parse(&path.display().to_string(), &source, overrides).map_err(|e| Box::new(e).into())
}
