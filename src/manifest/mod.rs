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
pub use lower::service::MAX_REPLICAS;
pub use model::*;

/// Parses and checks a manifest. `name` is how the file is shown in diagnostics; `overrides`
/// are `--arg NAME=VALUE` values, which replace the args' defaults.
pub fn parse(
    name: &str,
    source: &str,
    overrides: &BTreeMap<String, String>,
) -> Result<Manifest, ManifestErrors> {
    parse_with(name, source, overrides, &BTreeMap::new())
}

/// [`parse`], with `vars` (boxr's environment over the `.env` beside the manifest) as a
/// further source of `${NAME}` in service values, after the args.
pub fn parse_with(
    name: &str,
    source: &str,
    overrides: &BTreeMap<String, String>,
    vars: &BTreeMap<String, String>,
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
    let mut lowerer = lower::Lowerer::new(source, overrides, vars);
    let mut manifest = lowerer.lower(&doc);
    manifest.name = name.to_owned();
    manifest.source = text.clone();
    let mut errors = lowerer.errors;
    validate::cycles(&manifest, &mut errors);
    validate::ports(&manifest, &mut errors);
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
    #[error("{}:{line}: {why}", path.display())]
    #[diagnostic(
        code(boxr::manifest::dotenv),
        help("write KEY=VALUE lines; quote a value with ' or \"; # starts a comment")
    )]
    DotEnv {
        path: std::path::PathBuf,
        line: usize,
        why: String,
    },
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
    let vars = variables(path.parent().unwrap_or(std::path::Path::new(".")))?;
    parse_with(&path.display().to_string(), &source, overrides, &vars)
        .map_err(|e| Box::new(e).into())
}

/// What `${NAME}` in service values may name besides args: the `.env` file beside the manifest
/// (if any), under boxr's own environment (which wins, as in Compose).
fn variables(dir: &std::path::Path) -> Result<BTreeMap<String, String>, LoadError> {
    let file = dir.join(".env");
    let mut vars = match std::fs::read_to_string(&file) {
        Ok(text) => dotenv(&text).map_err(|(line, why)| LoadError::DotEnv {
            path: file.clone(),
            line,
            why,
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(source) => return Err(LoadError::Read { path: file, source }),
    };
    for (k, v) in std::env::vars_os() {
        if let (Ok(k), Ok(v)) = (k.into_string(), v.into_string()) {
            vars.insert(k, v);
        }
    }
    Ok(vars)
}

/// An env file: `KEY=VALUE` lines (an optional `export `, values optionally in single quotes,
/// taken as written, or double quotes, with `\n`, `\"` and `\\` escapes), blank lines and `#`
/// comments. An error is the 1-based line and why.
pub fn dotenv(text: &str) -> Result<BTreeMap<String, String>, (usize, String)> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((key, value)) = line.split_once('=') else {
            return Err((i + 1, format!("`{line}` is not KEY=VALUE")));
        };
        let key = key.trim_end();
        if !interp::is_arg_name(key) {
            return Err((i + 1, format!("`{key}` is not a variable name")));
        }
        let value = value.trim_start();
        let value = if let Some(q) = value.strip_prefix('\'') {
            q.strip_suffix('\'')
                .ok_or((i + 1, "unterminated '".to_owned()))?
                .to_owned()
        } else if let Some(q) = value.strip_prefix('"') {
            let body = q
                .strip_suffix('"')
                .ok_or((i + 1, "unterminated \"".to_owned()))?;
            let mut s = String::with_capacity(body.len());
            let mut chars = body.chars();
            while let Some(c) = chars.next() {
                match (c, c == '\\') {
                    (_, true) => match chars.next() {
                        Some('n') => s.push('\n'),
                        Some(o) => s.push(o),
                        None => s.push('\\'),
                    },
                    (c, false) => s.push(c),
                }
            }
            s
        } else {
            // An unquoted value ends at ` #` (a comment).
            value.split(" #").next().unwrap_or("").trim_end().to_owned()
        };
        out.insert(key.to_owned(), value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_reads_quotes_exports_and_comments() {
        let vars = dotenv(
            "# a comment\n\nexport A=1\nB = two words # note\nC='$x \\n'\nD=\"a\\\"b\\nc\"\nE=\n",
        )
        .unwrap();
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "two words");
        assert_eq!(vars["C"], "$x \\n");
        assert_eq!(vars["D"], "a\"b\nc");
        assert_eq!(vars["E"], "");
        assert_eq!(dotenv("A=1\nnot a pair\n").unwrap_err().0, 2);
        assert_eq!(dotenv("1X=1\n").unwrap_err().0, 1);
        assert_eq!(dotenv("A=\"open\n").unwrap_err().0, 1);
    }
}
