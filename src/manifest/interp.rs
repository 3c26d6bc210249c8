//! `${NAME}` interpolation of args into strings. `$${` is a literal `${`; `$NAME` without braces
//! is left alone (it is the shell's).

/// A problem found while interpolating one string. `text` is the offending piece as written
/// (e.g. `${HOME}`), so the caller can point at it inside the token.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    Undefined { name: String, text: String },
    Unterminated { text: String },
    BadName { name: String, text: String },
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
                    let name = &after[..end];
                    let text = format!("${{{name}}}");
                    if !is_arg_name(name) {
                        problems.push(Problem::BadName {
                            name: name.to_owned(),
                            text,
                        });
                    } else if let Some(v) = lookup(name) {
                        out.push_str(v);
                    } else {
                        problems.push(Problem::Undefined {
                            name: name.to_owned(),
                            text,
                        });
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
