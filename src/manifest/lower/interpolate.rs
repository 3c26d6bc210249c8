//! `${NAME}` in strings: args, and in service values the environment (see `interp`), with a
//! diagnostic pointing at the piece of the token that is wrong.

use super::Lowerer;
use crate::manifest::error::ManifestError;
use crate::manifest::interp::{self, Problem};
use crate::manifest::model::Spanned;
use crate::manifest::syntax::Span;
use crate::values::suggest;

impl Lowerer<'_> {
    pub(super) fn interpolate(&mut self, raw: &str, span: Span) -> Option<Spanned<String>> {
        let args = &self.args;
        let vars = self.in_service.then_some(self.vars);
        let lookup = |name: &str| {
            args.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .or_else(|| vars.and_then(|v| v.get(name)).map(String::as_str))
        };
        match interp::interpolate(raw, lookup) {
            Ok(s) => Some(Spanned::new(s, span)),
            Err(problems) => {
                for p in problems {
                    let err = self.interp_error(p, span);
                    self.errors.push(err);
                }
                None
            }
        }
    }

    fn interp_error(&self, p: Problem, span: Span) -> ManifestError {
        // Point at the piece inside the token when it can be found as written.
        let token = &self.src[span.offset()..][..span.len()];
        let at = |text: &str| match token.find(text) {
            Some(i) => Span::new((span.offset() + i).into(), text.len()),
            None => span,
        };
        match p {
            Problem::Undefined { name, text } => {
                let known: Vec<&str> = self.args.iter().map(|(n, _)| n.as_str()).collect();
                let help = match suggest(&name, known) {
                    _ if self.all_args.contains(&name) => format!(
                        "`arg \"{name}\"` is declared further down; declare args before they are used"
                    ),
                    Some(s) => format!("did you mean `${{{s}}}`?"),
                    None if self.in_service => format!(
                        "set `{name}` in the environment or in `.env` beside the manifest, give a default with `${{{name}:-VALUE}}`, or write `$${{{name}}}` to pass `${{{name}}}` through"
                    ),
                    None => format!(
                        "declare it with `arg \"{name}\"`, or write `$${{{name}}}` to pass `${{{name}}}` through to the shell"
                    ),
                };
                ManifestError::UndefinedArg {
                    name,
                    span: at(&text),
                    help,
                }
            }
            Problem::Required {
                name,
                message,
                text,
            } => ManifestError::Interpolation {
                reason: if message.is_empty() {
                    format!("`{name}` must be set")
                } else {
                    format!("`{name}` must be set: {message}")
                },
                span: at(&text),
                help: Some(format!(
                    "set `{name}` in the environment or in `.env` beside the manifest"
                )),
            },
            Problem::BadName { name, text } => ManifestError::Interpolation {
                reason: format!("`{name}` is not a valid arg name"),
                span: at(&text),
                help: Some(format!(
                    "arg names are letters, digits and `_`; write `$${{{name}}}` for a literal `${{`"
                )),
            },
            Problem::Unterminated { text } => ManifestError::Interpolation {
                reason: "unterminated `${`".into(),
                span: at(&text[..2]),
                help: Some("close it with `}`, or write `$${` for a literal `${`".into()),
            },
        }
    }
}
