//! Fast KDL v2 reader (see `syntax`). Declines everything for now.
use super::syntax::Doc;

pub fn parse(_src: &str) -> Option<Doc> {
    None
}
