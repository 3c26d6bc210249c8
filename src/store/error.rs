use std::io;
use std::path::PathBuf;

use miette::Diagnostic;
use thiserror::Error;

use crate::digest::Digest;
use crate::layer::LayerError;

/// A store operation failed.
#[derive(Debug, Error, Diagnostic)]
pub enum StoreError {
    #[error("cannot {action} `{}`", path.display())]
    #[diagnostic(code(boxr::store::io))]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no such image: {query}")]
    #[diagnostic(
        code(boxr::store::no_such_image),
        help("`boxr images` lists the images in the store")
    )]
    NoSuchImage { query: String },
    #[error("`{query}` matches more than one image: {}", candidates.join(", "))]
    #[diagnostic(
        code(boxr::store::ambiguous),
        help("give more digits of the id, or a name")
    )]
    Ambiguous {
        query: String,
        candidates: Vec<String>,
    },
    #[error("blob {digest} is corrupt: its content hashes to {actual}")]
    #[diagnostic(
        code(boxr::store::corrupt),
        help(
            "remove it with `boxr gc` after removing the images that use it, then load them again"
        )
    )]
    Corrupt { digest: Digest, actual: Digest },
    #[error("blob {digest} is missing from the store")]
    #[diagnostic(code(boxr::store::missing))]
    Missing { digest: Digest },
    #[error("invalid {what} {digest}: {reason}")]
    #[diagnostic(code(boxr::store::invalid))]
    Invalid {
        what: &'static str,
        digest: Digest,
        reason: String,
    },
    #[error("invalid image name `{name}`: {reason}")]
    #[diagnostic(code(boxr::store::bad_name))]
    BadName { name: String, reason: String },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Layer(#[from] LayerError),
    #[error("cannot clean up the resource journaled in `{}`: {source}", path.display())]
    #[diagnostic(code(boxr::store::journal))]
    Journal {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{message}")]
    #[diagnostic(code(boxr::store::archive))]
    Archive {
        message: String,
        #[help]
        help: Option<String>,
    },
}

pub(crate) fn io_err(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.into();
    move |source| StoreError::Io {
        action,
        path,
        source,
    }
}
