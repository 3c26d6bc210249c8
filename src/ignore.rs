//! `.boxrignore`: which files of the build context no `copy` sees, in `.dockerignore` syntax.
//!
//! One pattern per line; `#` starts a comment line; a leading `!` makes an exception; a leading
//! `/` is dropped (patterns are relative to the context root); `*` and `?` do not cross `/`,
//! `**` matches any number of directories. As in Docker, the last pattern that matches a path
//! decides, and a pattern also matches everything below a directory it matches.
//!
//! Also the path grammar the planner and the copy share: [`clean`] and [`is_glob`].

use std::path::Path;

use globset::{GlobBuilder, GlobMatcher};

/// Whether a COPY source is a pattern (Go's filepath.Match syntax, as Docker uses): the planner
/// hashes and the copy copies its matches.
pub fn is_glob(source: &str) -> bool {
    source.contains(['*', '?', '['])
}

/// The name of the ignore file at the root of the build context.
pub const FILE: &str = ".boxrignore";

#[derive(Debug, Clone)]
struct Pattern {
    matcher: GlobMatcher,
    /// Number of path components in the pattern.
    depth: usize,
    exception: bool,
}

/// A parsed ignore file.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
    /// The file's lines as given (for the cache key and the fs helper).
    pub lines: Vec<String>,
}

/// Why a `.boxrignore` cannot be used: the file, and the pattern or I/O error.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum IgnoreError {
    #[error("cannot read {}: {source}", path.display())]
    #[diagnostic(code(boxr::ignore::read))]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{FILE}: invalid pattern `{pattern}`: {reason}")]
    #[diagnostic(code(boxr::ignore::pattern))]
    Pattern { pattern: String, reason: String },
}

impl Ignore {
    /// Reads `<context>/.boxrignore`; no file means nothing is ignored.
    pub fn load(context: &Path) -> Result<Ignore, IgnoreError> {
        let path = context.join(FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ignore::parse(text.lines().map(str::to_owned).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ignore::default()),
            Err(source) => Err(IgnoreError::Read { path, source }),
        }
    }

    /// Parses ignore lines (see the module docs).
    pub fn parse(lines: Vec<String>) -> Result<Ignore, IgnoreError> {
        let mut patterns = Vec::new();
        let mut kept = Vec::new();
        for raw in &lines {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            kept.push(line.to_owned());
            let (exception, body) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let clean = clean(body);
            if clean.is_empty() {
                continue;
            }
            let matcher = GlobBuilder::new(&clean)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| IgnoreError::Pattern {
                    pattern: line.to_owned(),
                    reason: e.kind().to_string(),
                })?
                .compile_matcher();
            patterns.push(Pattern {
                matcher,
                depth: clean.split('/').count(),
                exception,
            });
        }
        Ok(Ignore {
            patterns,
            lines: kept,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `rel` (a path relative to the context root, `/`-separated) is ignored.
    pub fn is_ignored(&self, rel: &str) -> bool {
        let rel = rel.trim_start_matches("./").trim_matches('/');
        if rel.is_empty() || rel == "." {
            return false;
        }
        let parts: Vec<&str> = rel.split('/').collect();
        let mut ignored = false;
        for p in &self.patterns {
            let mut hit = p.matcher.is_match(rel);
            if !hit && p.depth < parts.len() {
                // A pattern that names a directory covers everything below it.
                hit = p.matcher.is_match(parts[..p.depth].join("/"));
            }
            if hit {
                ignored = !p.exception;
            }
        }
        ignored
    }

    /// Whether some exception could re-include a path below the ignored directory `rel`
    /// (then a walk must descend into it).
    pub fn may_reinclude_below(&self, rel: &str) -> bool {
        let rel = rel.trim_matches('/');
        self.patterns
            .iter()
            .any(|p| p.exception && p.depth > rel.split('/').count())
    }
}

/// Docker's filepath.Clean of a path or pattern, without the leading `/`: `.` and repeated
/// slashes go, `..` takes back a component and never climbs above the start. The planner and
/// the copy clean COPY sources and destinations with it too.
pub fn clean(pattern: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in pattern.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ig(lines: &[&str]) -> Ignore {
        Ignore::parse(lines.iter().map(|s| s.to_string()).collect()).unwrap()
    }

    #[test]
    fn docker_semantics() {
        let i = ig(&[
            "# comment",
            "*.log",
            "/build",
            "docs/**/*.md",
            "!docs/keep.md",
        ]);
        assert!(i.is_ignored("a.log"));
        assert!(!i.is_ignored("sub/a.log"), "`*` does not cross /");
        assert!(i.is_ignored("build"));
        assert!(
            i.is_ignored("build/out/x.o"),
            "a directory covers its contents"
        );
        assert!(i.is_ignored("docs/a/b/c.md"));
        assert!(i.is_ignored("docs/x.md"), "`**` matches zero directories");
        assert!(!i.is_ignored("docs/keep.md"), "the last match decides");
        assert!(!i.is_ignored("src/main.rs"));
        assert!(!i.is_ignored("."));
    }

    #[test]
    fn exceptions_below_ignored_directories() {
        let i = ig(&["vendor", "!vendor/keep"]);
        assert!(i.is_ignored("vendor/other"));
        assert!(!i.is_ignored("vendor/keep"));
        assert!(i.may_reinclude_below("vendor"));
        assert!(!ig(&["vendor"]).may_reinclude_below("vendor"));
    }

    #[test]
    fn bad_patterns_are_errors() {
        assert!(Ignore::parse(vec!["[".into()]).is_err());
    }
}
