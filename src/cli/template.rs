//! The part of Go's text/template that scripts use with `docker inspect -f` and `docker ps
//! --format`, over the JSON a command prints: `{{.Field.Sub}}`, `{{.}}`, `{{json .Field}}`,
//! `{{index .Map "key"}}` (or a list index), and a pipe into `json`. Values print as Go prints
//! them: strings bare, `map[k:v]`, `[a b]`, and `<no value>` for a missing field.

use serde_json::Value;

/// Why a `--format` template could not be rendered.
#[derive(Debug, PartialEq, thiserror::Error, miette::Diagnostic)]
#[diagnostic(
    code(boxr::cli::format),
    help("Go template syntax: {{{{.Field}}}}, {{{{json .}}}}, {{{{index .Map \"key\"}}}}")
)]
pub enum TemplateError {
    #[error("--format {0}: use table, json or a Go template")]
    UnknownFormat(String),
    #[error("template: unclosed action in `{0}`")]
    UnclosedAction(String),
    #[error("template: unclosed string in `{0}`")]
    UnclosedString(String),
    #[error("template: empty action")]
    Empty,
    #[error("template: unknown function `{0}`")]
    UnknownFunction(String),
    #[error("template: unknown function `{0}` after `|`")]
    UnknownPipe(String),
    #[error("template: index {0} out of range")]
    OutOfRange(serde_json::Number),
    #[error("template: cannot index with {0}")]
    BadIndex(String),
    #[error("template: `{0}` is not a field, a string or a number")]
    BadArgument(String),
}

/// Renders `template` against `value`.
pub fn render(template: &str, value: &Value) -> Result<String, TemplateError> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| TemplateError::UnclosedAction(template.to_owned()))?;
        let action = after[..end].trim();
        out.push_str(&action_text(action, value)?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// One action: `PIPELINE [| json]`.
fn action_text(action: &str, value: &Value) -> Result<String, TemplateError> {
    let mut stages = action.split('|').map(str::trim);
    let first = stages.next().unwrap_or_default();
    let mut v = command(first, value)?;
    for stage in stages {
        match stage {
            "json" => v = Value::String(serde_json::to_string(&v).expect("serializes")),
            other => return Err(TemplateError::UnknownPipe(other.to_owned())),
        }
    }
    Ok(go_print(&v))
}

/// `json ARG`, `index ARG KEY...`, or an argument.
fn command(text: &str, value: &Value) -> Result<Value, TemplateError> {
    let words = split_words(text)?;
    match words.as_slice() {
        [] => Err(TemplateError::Empty),
        [f, arg] if f == "json" => {
            let v = argument(arg, value)?;
            Ok(Value::String(
                serde_json::to_string(&v).expect("serializes"),
            ))
        }
        [f, arg, keys @ ..] if f == "index" && !keys.is_empty() => {
            let mut v = argument(arg, value)?;
            for k in keys {
                v = match (&v, argument(k, value)?) {
                    (Value::Object(m), Value::String(s)) => {
                        m.get(&s).cloned().unwrap_or(Value::Null)
                    }
                    (Value::Array(a), Value::Number(n)) => n
                        .as_u64()
                        .and_then(|i| a.get(i as usize).cloned())
                        .ok_or_else(|| TemplateError::OutOfRange(n.clone()))?,
                    _ => return Err(TemplateError::BadIndex(k.clone())),
                };
            }
            Ok(v)
        }
        [arg] => argument(arg, value),
        [f, ..] => Err(TemplateError::UnknownFunction(f.clone())),
    }
}

/// `.`, `.A.B`, a quoted string or a number.
fn argument(word: &str, value: &Value) -> Result<Value, TemplateError> {
    if word == "." {
        return Ok(value.clone());
    }
    if let Some(path) = word.strip_prefix('.') {
        let mut v = value;
        for part in path.split('.') {
            match v.get(part) {
                Some(next) => v = next,
                None => return Ok(Value::Null),
            }
        }
        return Ok(v.clone());
    }
    if let Some(s) = word.strip_prefix('"').and_then(|w| w.strip_suffix('"')) {
        return Ok(Value::String(s.to_owned()));
    }
    word.parse::<u64>()
        .map(Value::from)
        .map_err(|_| TemplateError::BadArgument(word.to_owned()))
}

/// Words of an action, a quoted string being one.
fn split_words(text: &str) -> Result<Vec<String>, TemplateError> {
    let mut words = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut w = String::new();
        if c == '"' {
            w.push(chars.next().expect("peeked"));
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some(ch) => w.push(ch),
                    None => return Err(TemplateError::UnclosedString(text.to_owned())),
                }
            }
            w.push('"');
        } else {
            while let Some(&ch) = chars.peek() {
                if ch.is_whitespace() {
                    break;
                }
                w.push(ch);
                chars.next();
            }
        }
        words.push(w);
    }
    Ok(words)
}

/// A value as Go's `fmt` prints it.
fn go_print(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_print).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            format!(
                "map[{}]",
                keys.iter()
                    .map(|k| format!("{k}:{}", go_print(&m[*k])))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_what_scripts_ask_for() {
        let v = json!({
            "Id": "abc", "State": {"Running": true, "Pid": 42, "Health": null},
            "Config": {"Labels": {"b": "2", "a": "1"}, "Cmd": ["sleep", "9"]},
        });
        let r = |t: &str| render(t, &v).unwrap();
        assert_eq!(r("{{.State.Pid}} {{ .State.Running }}"), "42 true");
        assert_eq!(r("id={{.Id}}\n"), "id=abc\n");
        assert_eq!(r("{{.Config.Labels}}"), "map[a:1 b:2]");
        assert_eq!(r("{{.Config.Cmd}}"), "[sleep 9]");
        assert_eq!(r("{{json .Config.Cmd}}"), r#"["sleep","9"]"#);
        assert_eq!(r("{{.Config.Labels | json}}"), r#"{"a":"1","b":"2"}"#);
        assert_eq!(r(r#"{{index .Config.Labels "b"}}"#), "2");
        assert_eq!(r("{{index .Config.Cmd 1}}"), "9");
        assert_eq!(r("{{.Nope.Deeper}}"), "<no value>");
        assert!(render("{{.Id", &v).is_err());
        assert!(render("{{printf .Id}}", &v).is_err());
        assert!(render("{{.Id | upper}}", &v).is_err());
    }
}
