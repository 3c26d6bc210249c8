//! `${NAME}` interpolation of args (and, in service values, environment variables) into
//! strings. `${NAME:-default}` gives `default` when NAME is unset or empty (`${NAME-default}`:
//! only when unset); `${NAME:?message}` is an error saying `message` when NAME is unset or empty
//! (`${NAME?message}`: only when unset). `$${` is a literal `${`; `$NAME` without braces is left
//! alone (it is the shell's).

/// A problem found while interpolating one string. `text` is the offending piece as written
/// (e.g. `${HOME}`), so the caller can point at it inside the token.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    Undefined {
        name: String,
        text: String,
    },
    /// `${NAME:?message}` with NAME unset (or empty).
    Required {
        name: String,
        message: String,
        text: String,
    },
    Unterminated {
        text: String,
    },
    BadName {
        name: String,
        text: String,
    },
}

/// A valid arg name: a letter or `_`, then letters, digits and `_`.
pub fn is_arg_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Replaces every `${NAME}` in `input` with `lookup(NAME)`.
pub fn interpolate<'a>(
    input: &str,
    lookup: impl Fn(&str) -> Option<&'a str>,
) -> Result<String, Vec<Problem>> {
    if !input.contains('$') {
        return Ok(input.to_owned());
    }
    let mut out = String::with_capacity(input.len());
    let mut problems = Vec::new();
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            match after.find('}') {
                Some(end) => {
                    let inner = &after[..end];
                    let text = format!("${{{inner}}}");
                    let (name, op) = split_operator(inner);
                    let value = lookup(name);
                    if !is_arg_name(name) {
                        problems.push(Problem::BadName {
                            name: name.to_owned(),
                            text,
                        });
                    } else {
                        match (op, value) {
                            (Some(Op::Default { word, empty }), v)
                                if v.is_none() || (empty && v == Some("")) =>
                            {
                                out.push_str(word);
                            }
                            (Some(Op::Required { message, empty }), v)
                                if v.is_none() || (empty && v == Some("")) =>
                            {
                                problems.push(Problem::Required {
                                    name: name.to_owned(),
                                    message: message.to_owned(),
                                    text,
                                });
                            }
                            (_, Some(v)) => out.push_str(v),
                            (_, None) => problems.push(Problem::Undefined {
                                name: name.to_owned(),
                                text,
                            }),
                        }
                    }
                    rest = &after[end + 1..];
                }
                None => {
                    problems.push(Problem::Unterminated {
                        text: tail.to_owned(),
                    });
                    rest = "";
                }
            }
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// What follows a name inside `${...}`.
enum Op<'a> {
    /// `:-word` (`empty`: also when set but empty) or `-word`.
    Default { word: &'a str, empty: bool },
    /// `:?message` or `?message`.
    Required { message: &'a str, empty: bool },
}

fn split_operator(inner: &str) -> (&str, Option<Op<'_>>) {
    let Some(i) = inner.find([':', '-', '?']) else {
        return (inner, None);
    };
    let (name, rest) = inner.split_at(i);
    let (empty, rest) = match rest.strip_prefix(':') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    match (rest.strip_prefix('-'), rest.strip_prefix('?')) {
        (Some(word), _) => (name, Some(Op::Default { word, empty })),
        (_, Some(message)) => (name, Some(Op::Required { message, empty })),
        // `${A:B}`: not a form boxr knows; the whole is reported as a bad name.
        _ => (inner, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(name: &str) -> Option<&'static str> {
        match name {
            "GREETING" => Some("hello"),
            "EMPTY" => Some(""),
            _ => None,
        }
    }

    #[test]
    fn replaces_escapes_and_leaves_shell_vars() {
        assert_eq!(
            interpolate("echo ${GREETING} $HOME $${HOME}${EMPTY}", args).unwrap(),
            "echo hello $HOME ${HOME}"
        );
        assert_eq!(interpolate("cost: $5", args).unwrap(), "cost: $5");
        assert_eq!(interpolate("$$", args).unwrap(), "$$");
    }

    #[test]
    fn defaults_and_required() {
        assert_eq!(
            interpolate("${NOPE:-8080} ${EMPTY:-x} ${EMPTY-x} ${GREETING:-no}", args).unwrap(),
            "8080 x  hello"
        );
        assert_eq!(interpolate("${NOPE-}|${NOPE:-a b}", args).unwrap(), "|a b");
        assert_eq!(interpolate("${GREETING:?set it}", args).unwrap(), "hello");
        assert_eq!(
            interpolate("${EMPTY:?set EMPTY} ${EMPTY?fine}", args).unwrap_err(),
            vec![Problem::Required {
                name: "EMPTY".into(),
                message: "set EMPTY".into(),
                text: "${EMPTY:?set EMPTY}".into()
            }]
        );
        assert!(matches!(
            &interpolate("${A:B}", args).unwrap_err()[0],
            Problem::BadName { name, .. } if name == "A:B"
        ));
    }

    #[test]
    fn reports_every_problem() {
        let err = interpolate("${NOPE} ${1X} ${OPEN", args).unwrap_err();
        assert_eq!(
            err,
            vec![
                Problem::Undefined {
                    name: "NOPE".into(),
                    text: "${NOPE}".into()
                },
                Problem::BadName {
                    name: "1X".into(),
                    text: "${1X}".into()
                },
                Problem::Unterminated {
                    text: "${OPEN".into()
                },
            ]
        );
    }
}
