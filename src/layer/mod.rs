//! Layers: an unpacked layer is a directory in overlay format (a whiteout is a character device
//! 0/0, an opaque directory has `trusted.overlay.opaque=y`), so layers stack directly as overlay
//! lowerdirs. This module turns such a directory into a reproducible OCI layer tar ([`write`]:
//! commit and export) and an OCI layer tar back into one ([`apply`]), converting whiteouts both
//! ways, and never writing outside the destination. It spawns no processes.

pub mod apply;
pub mod compress;
mod error;
pub mod stack;
pub mod write;

pub use apply::{ApplyStats, apply};
pub use error::LayerError;
pub use write::{LayerStats, WriteOptions, diff_id, write_tar};

/// The xattr that marks an opaque directory in overlay format (a store of root's).
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// The same in a rootless store: a user namespace cannot set `trusted.*` xattrs, and overlay
/// mounted with `userxattr` reads `user.overlay.*` instead.
pub const USER_OPAQUE_XATTR: &str = "user.overlay.opaque";

/// The opaque xattr of this process's store: [`USER_OPAQUE_XATTR`] when boxr runs rootless.
pub fn opaque_xattr() -> &'static str {
    if crate::rootless::active() {
        USER_OPAQUE_XATTR
    } else {
        OPAQUE_XATTR
    }
}

/// Whether `name` is overlay's own metadata (`trusted.overlay.*`, or `user.overlay.*` of a
/// rootless overlay): never taken from a layer (it could forge whiteouts and redirects) nor
/// written into one.
pub fn is_overlay_xattr(name: &str) -> bool {
    name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.")
}
/// The name prefix of a whiteout in OCI layer tars.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The OCI name of an opaque-directory marker.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
