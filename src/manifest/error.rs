//! Manifest diagnostics: one [`ManifestError`] per problem, all of a file gathered in
//! [`ManifestErrors`] so that a single run reports every problem, each at its own token.

use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource};
use thiserror::Error;

use super::syntax::Span;

/// One problem in a manifest.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
pub enum ManifestError {
    #[error("{message}")]
    #[diagnostic(code(boxr::manifest::syntax))]
    Syntax {
        message: String,
        #[label("{label}")]
        span: Span,
        label: String,
        #[help]
        help: Option<String>,
    },

    #[error("unknown node `{name}` in {parent}")]
    #[diagnostic(code(boxr::manifest::unknown_node))]
    UnknownNode {
        name: String,
        parent: String,
        #[label("not a node of {parent}")]
        span: Span,
        #[help]
        help: Option<String>,
    },

    #[error("unknown property `{name}` on `{node}`")]
    #[diagnostic(code(boxr::manifest::unknown_property))]
    UnknownProperty {
        name: String,
        node: String,
        #[label("unknown property")]
        span: Span,
        #[help]
        help: Option<String>,
    },

    #[error("property `{name}` is set twice")]
    #[diagnostic(code(boxr::manifest::duplicate_property))]
    DuplicateProperty {
        name: String,
        #[label(primary, "set again here")]
        span: Span,
        #[label("first set here")]
        first: Span,
    },

    #[error("`{node}` is missing {what}")]
    #[diagnostic(code(boxr::manifest::missing_argument))]
    MissingArgument {
        node: String,
        what: String,
        #[label("expected {what}")]
        span: Span,
        #[help]
        usage: String,
    },

    #[error("too many arguments to `{node}`")]
    #[diagnostic(code(boxr::manifest::extra_argument))]
    ExtraArgument {
        node: String,
        #[label("unexpected argument")]
        span: Span,
        #[help]
        usage: String,
    },

    #[error("`{node}` takes no children block")]
    #[diagnostic(code(boxr::manifest::unexpected_children))]
    UnexpectedChildren {
        node: String,
        #[label("remove this block")]
        span: Span,
    },

    #[error("`{node}` needs {} `{what}` node", article(what))]
    #[diagnostic(code(boxr::manifest::missing_node))]
    MissingNode {
        node: String,
        what: String,
        #[label("no `{what}` in here")]
        span: Span,
        #[help]
        help: Option<String>,
    },

    #[error("`{name}` is given twice in {parent}")]
    #[diagnostic(code(boxr::manifest::duplicate_node))]
    DuplicateNode {
        name: String,
        parent: String,
        #[label(primary, "given again here")]
        span: Span,
        #[label("first given here")]
        first: Span,
    },

    #[error("`{name}` must be the first node of {parent}")]
    #[diagnostic(code(boxr::manifest::misplaced))]
    Misplaced {
        name: String,
        parent: String,
        #[label("move this to the top of the block")]
        span: Span,
    },

    #[error("expected {expected}, found {found}")]
    #[diagnostic(code(boxr::manifest::wrong_type))]
    WrongType {
        expected: String,
        found: String,
        #[label("expected {expected}")]
        span: Span,
        #[help]
        help: Option<String>,
    },

    #[error("{reason}")]
    #[diagnostic(code(boxr::manifest::invalid_value))]
    InvalidValue {
        kind: String,
        reason: String,
        #[label("invalid {kind}")]
        span: Span,
        #[help]
        help: Option<String>,
    },

    #[error("{kind} `{name}` is defined twice")]
    #[diagnostic(code(boxr::manifest::duplicate_name))]
    DuplicateName {
        kind: String,
        name: String,
        #[label(primary, "defined again here")]
        span: Span,
        #[label("first defined here")]
        first: Span,
    },

    #[error("no {kind} named `{name}`")]
    #[diagnostic(code(boxr::manifest::unknown_reference))]
    UnknownReference {
        kind: String,
        name: String,
        #[label("not defined in this file")]
        span: Span,
        #[help]
        help: Option<String>,
    },

    #[error("undefined arg `{name}`")]
    #[diagnostic(code(boxr::manifest::undefined_arg))]
    UndefinedArg {
        name: String,
        #[label("no `arg \"{name}\"` before this")]
        span: Span,
        #[help]
        help: String,
    },

    #[error("{reason}")]
    #[diagnostic(code(boxr::manifest::interpolation))]
    Interpolation {
        reason: String,
        #[label("here")]
        span: Span,
        #[help]
        help: Option<String>,
    },

    #[error("{kind} cycle: {path}")]
    #[diagnostic(code(boxr::manifest::cycle))]
    Cycle {
        kind: String,
        path: String,
        #[label(collection)]
        members: Vec<LabeledSpan>,
        #[help]
        help: String,
    },

    #[error("host port {port} is published twice")]
    #[diagnostic(code(boxr::manifest::port_taken))]
    PortTaken {
        port: String,
        #[label(primary, "{again}")]
        span: Span,
        again: String,
        #[label("{first_label}")]
        first: Span,
        first_label: String,
        #[help]
        help: String,
    },

    #[error("{message}")]
    #[diagnostic(code(boxr::manifest::invalid))]
    Invalid {
        message: String,
        #[label("{label}")]
        span: Span,
        label: String,
        #[help]
        help: Option<String>,
    },
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

impl ManifestError {
    /// Where the problem starts, for ordering diagnostics by position in the file.
    pub fn offset(&self) -> usize {
        use ManifestError::*;
        let span = match self {
            Syntax { span, .. }
            | UnknownNode { span, .. }
            | UnknownProperty { span, .. }
            | DuplicateProperty { span, .. }
            | MissingArgument { span, .. }
            | ExtraArgument { span, .. }
            | UnexpectedChildren { span, .. }
            | MissingNode { span, .. }
            | DuplicateNode { span, .. }
            | Misplaced { span, .. }
            | WrongType { span, .. }
            | InvalidValue { span, .. }
            | DuplicateName { span, .. }
            | UnknownReference { span, .. }
            | UndefinedArg { span, .. }
            | Interpolation { span, .. }
            | Invalid { span, .. }
            | PortTaken { span, .. } => *span,
            Cycle { members, .. } => members.first().map_or(Span::from(0), |l| *l.inner()),
        };
        span.offset()
    }
}

/// Every problem found in one manifest file, reported together.
#[derive(Debug, Error, Diagnostic)]
#[error("{summary}")]
pub struct ManifestErrors {
    summary: String,
    #[source_code]
    pub source_code: NamedSource<Arc<str>>,
    #[related]
    pub errors: Vec<ManifestError>,
}

/// How many problems of one file are rendered.
pub const MAX_SHOWN: usize = 50;

impl ManifestErrors {
    pub fn new(name: &str, source: Arc<str>, mut errors: Vec<ManifestError>) -> Self {
        errors.sort_by_key(ManifestError::offset);
        let n = errors.len();
        let mut summary = format!("{name} has {n} error{}", if n == 1 { "" } else { "s" });
        // A file that is not a manifest at all can have thousands: the first ones say enough.
        if n > MAX_SHOWN {
            errors.truncate(MAX_SHOWN);
            summary.push_str(&format!(
                " (the first {MAX_SHOWN} are shown, and {} more are not)",
                n - MAX_SHOWN
            ));
        }
        ManifestErrors {
            summary,
            source_code: NamedSource::new(name, source).with_language("kdl"),
            errors,
        }
    }
}
