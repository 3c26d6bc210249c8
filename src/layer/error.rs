use std::io;
use std::path::PathBuf;

use miette::Diagnostic;
use thiserror::Error;

/// A layer could not be written or applied.
#[derive(Debug, Error, Diagnostic)]
pub enum LayerError {
    #[error("cannot read `{}`", path.display())]
    #[diagnostic(code(boxr::layer::read))]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write the layer")]
    #[diagnostic(code(boxr::layer::write))]
    Write(#[source] io::Error),
    #[error("`{}` changed size while it was being read", path.display())]
    #[diagnostic(code(boxr::layer::changed))]
    Changed { path: PathBuf },
    /// The archive's own bytes may be in the message (a garbage header): shown printable.
    #[error("the layer archive is unreadable: {}", crate::values::printable(&.0.to_string()))]
    #[diagnostic(code(boxr::layer::archive))]
    Archive(io::Error),
    #[error("refused layer entry `{entry}`: {reason}")]
    #[diagnostic(
        code(boxr::layer::refused),
        help("the layer is malformed or malicious; nothing was written outside the layer")
    )]
    Refused { entry: String, reason: String },
    #[error("cannot create `{entry}` in the layer")]
    #[diagnostic(code(boxr::layer::create))]
    Create {
        entry: String,
        #[source]
        source: io::Error,
    },
}

pub(crate) fn refused(entry: &str, reason: impl Into<String>) -> LayerError {
    LayerError::Refused {
        entry: entry.to_owned(),
        reason: reason.into(),
    }
}
