//! The KDL syntax tree the rest of `manifest/` works on.
//!
//! Two parsers produce it: [`fast`](super::fast), a hand-written KDL v2 reader for the common,
//! valid case, and the `kdl` crate, the reference implementation, used whenever the fast reader
//! declines (a syntax error, a KDL v1 document, or a construct it does not handle). The tree keeps
//! only what the manifest needs: names, values, and the span of every token.

use miette::SourceSpan;

/// A byte range in the manifest source.
pub type Span = SourceSpan;

/// A parsed document: the top-level nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    pub nodes: Vec<Node>,
}

/// One KDL node: `(ty)name entry... { children }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: Ident,
    pub ty: Option<Ident>,
    pub entries: Vec<Entry>,
    pub children: Option<Vec<Node>>,
    /// From the first character of the type annotation or name to the end of the last entry, or
    /// to the closing brace when the node has children. Comments, whitespace and `/-` entries
    /// after that are not part of it.
    pub span: Span,
}

/// An identifier (node name, property key or type annotation) with its span.
#[derive(Debug, Clone, PartialEq)]
pub struct Ident {
    pub value: String,
    pub span: Span,
}

/// An argument (`key` is `None`) or a property (`key=value`).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: Option<Ident>,
    pub ty: Option<Ident>,
    pub value: Value,
    /// The span of the value token alone (without key or type annotation).
    pub value_span: Span,
    /// The span of the whole entry (`key=value`, `(ty)value`).
    pub span: Span,
}

/// A KDL value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    String(String),
    Integer(i128),
    Float(f64),
    Bool(bool),
    Null,
}

impl Value {
    /// How the value's type is named in diagnostics.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Bool(_) => "a boolean",
            Value::Null => "#null",
        }
    }
}

/// A syntax error reported by the reference parser.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub message: String,
    pub label: Option<String>,
    pub help: Option<String>,
    pub span: Span,
}

/// How deep nodes may nest. A manifest nests a few levels (`image` > `run` > `cache`); both
/// readers recurse per level, and thousands of levels would overflow the stack (the `kdl` crate's
/// parser included), so a deeper document is refused before either reads it.
pub const MAX_DEPTH: usize = 64;

/// Parses `src` into a [`Doc`]: the fast reader first, the `kdl` crate when it declines. A
/// document nested deeper than [`MAX_DEPTH`] is refused first, with one error at the `{` that
/// goes too deep.
pub fn parse(src: &str) -> Result<Doc, Vec<SyntaxError>> {
    if let Some(at) = too_deep(src) {
        return Err(vec![SyntaxError {
            message: format!("nodes nest deeper than {MAX_DEPTH} levels"),
            label: Some(format!("level {} starts here", MAX_DEPTH + 1)),
            help: Some(
                "a manifest nests a few levels (image > run > cache): is a `}` missing?".into(),
            ),
            span: Span::new(at.into(), 1),
        }]);
    }
    match super::fast::parse(src) {
        Some(doc) => Ok(doc),
        None => parse_with_kdl(src),
    }
}

/// The offset of the first `{` that opens a level deeper than [`MAX_DEPTH`], counting braces
/// outside strings and comments (KDL's quoted, raw and multi-line strings, `//` and nested
/// `/* */` comments), in one pass. An unbalanced document is the parsers' to report.
fn too_deep(src: &str) -> Option<usize> {
    let b = src.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut nest = 1;
                i += 2;
                while i < b.len() && nest > 0 {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        nest += 1;
                        i += 1;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        nest -= 1;
                        i += 1;
                    }
                    i += 1;
                }
                continue;
            }
            // Raw strings: `#"…"#` (v2), `r#"…"#` and `r"…"` (v1), any number of `#`.
            b'#' | b'r'
                if {
                    let start = i + usize::from(b[i] == b'r');
                    let hashes = b[start..].iter().take_while(|&&c| c == b'#').count();
                    (b[i] == b'r' || hashes > 0)
                        && b.get(start + hashes) == Some(&b'"')
                        && (i == 0 || !b[i - 1].is_ascii_alphanumeric())
                } =>
            {
                let start = i + usize::from(b[i] == b'r');
                let hashes = b[start..].iter().take_while(|&&c| c == b'#').count();
                let mut close = vec![b'"'];
                close.extend(std::iter::repeat_n(b'#', hashes));
                i = start + hashes + 1;
                while i < b.len() && !b[i..].starts_with(&close) {
                    i += 1;
                }
                i += close.len();
                continue;
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some(i);
                }
            }
            b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Parses `src` with the fast reader alone (`None` when it declines). For tests and benchmarks.
pub fn parse_fast(src: &str) -> Option<Doc> {
    super::fast::parse(src)
}

/// Parses `src` with the `kdl` crate alone (KDL v2, falling back to v1).
///
/// The v1 fallback is kdl 4, which panics on some malformed input (a reserved keyword as a type
/// annotation at the end of the input, `(true`, slices its error span past the end). A manifest
/// must get a diagnostic, never a crash: such a panic is caught, kept off stderr, and the v2
/// parser's errors are reported instead.
pub fn parse_with_kdl(src: &str) -> Result<Doc, Vec<SyntaxError>> {
    // The kdl crate recurses per node while it recovers from errors: a file that is not KDL
    // (twenty thousand lines of `=x=(]`) overflowed the main thread's 8 MiB stack. It parses
    // on a thread with a stack sized for the largest manifest boxr reads (only the pages it
    // touches are used); where such a thread cannot be made, on this one.
    let parse = || {
        let result = quiet_catch(|| kdl::KdlDocument::parse(src))
            .unwrap_or_else(|| kdl::KdlDocument::parse_v2(src));
        convert_result(src, result)
    };
    std::thread::scope(|scope| {
        match std::thread::Builder::new()
            .name("kdl".into())
            .stack_size(KDL_STACK)
            .spawn_scoped(scope, parse)
        {
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p)),
            Err(_) => parse(),
        }
    })
}

/// The stack of the thread the `kdl` crate parses on: about 48 bytes per byte of input for the
/// worst recovery seen, for the largest manifest read (8 MiB).
const KDL_STACK: usize = 512 << 20;

thread_local! {
    static QUIET_PANICS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, turning a panic inside it into `None` without printing the panic message: the
/// process-wide panic hook is wrapped once so that it stays silent on this thread while `f` runs
/// and behaves as before everywhere else.
fn quiet_catch<T>(f: impl FnOnce() -> T) -> Option<T> {
    static WRAP_HOOK: std::sync::Once = std::sync::Once::new();
    WRAP_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET_PANICS.with(|q| q.get()) {
                previous(info);
            }
        }));
    });
    let was = QUIET_PANICS.with(|q| q.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET_PANICS.with(|q| q.set(was));
    result.ok()
}

/// Parses `src` as KDL v2 only, with the `kdl` crate (the reference for the fast reader).
pub fn parse_kdl_v2(src: &str) -> Result<Doc, Vec<SyntaxError>> {
    convert_result(src, kdl::KdlDocument::parse_v2(src))
}

fn convert_result(
    src: &str,
    result: Result<kdl::KdlDocument, kdl::KdlError>,
) -> Result<Doc, Vec<SyntaxError>> {
    match result {
        Ok(doc) => Ok(Doc {
            nodes: doc.nodes().iter().map(|n| convert_node(src, n)).collect(),
        }),
        Err(err) => Err(err
            .diagnostics
            .into_iter()
            .map(|d| SyntaxError {
                message: d.message.unwrap_or_else(|| "invalid KDL".to_owned()),
                label: d.label,
                help: d.help,
                span: clamp(d.span, src.len()),
            })
            .collect()),
    }
}

/// kdl occasionally reports a span that runs past the end of the input; miette then cannot
/// render the snippet, so keep every span inside the source.
fn clamp(span: Span, len: usize) -> Span {
    let start = span.offset().min(len);
    let end = (span.offset() + span.len()).min(len);
    Span::new(start.into(), end - start)
}

fn convert_ident(id: &kdl::KdlIdentifier) -> Ident {
    Ident {
        value: id.value().to_owned(),
        span: id.span(),
    }
}

fn convert_node(src: &str, node: &kdl::KdlNode) -> Node {
    let name = convert_ident(node.name());
    let ty = node.ty().map(convert_ident);
    let entries: Vec<Entry> = node.entries().iter().map(convert_entry).collect();
    let children = node
        .children()
        .map(|doc| doc.nodes().iter().map(|n| convert_node(src, n)).collect());
    // kdl's node span runs on over trailing whitespace; cut it to the canonical extent.
    let start = node.span().offset();
    let mut end = entries
        .iter()
        .map(|e| e.span.offset() + e.span.len())
        .chain([name.span.offset() + name.span.len()])
        .max()
        .unwrap_or(start);
    if children.is_some() {
        let kdl_end = (node.span().offset() + node.span().len()).min(src.len());
        if let Some(close) = src.get(end..kdl_end).and_then(|t| t.rfind('}')) {
            end += close + 1;
        }
    }
    Node {
        name,
        ty,
        entries,
        children,
        span: Span::new(start.into(), end.saturating_sub(start)),
    }
}

fn convert_entry(entry: &kdl::KdlEntry) -> Entry {
    let span = entry.span();
    let end = span.offset() + span.len();
    // The value is the last token of an entry; its text length is the value's repr.
    let value_len = entry
        .format()
        .map(|f| f.value_repr.len())
        .filter(|&n| n > 0 && n <= span.len())
        .unwrap_or(span.len());
    let value = match entry.value() {
        kdl::KdlValue::String(s) => Value::String(s.clone()),
        kdl::KdlValue::Integer(i) => Value::Integer(*i),
        kdl::KdlValue::Float(f) => Value::Float(*f),
        kdl::KdlValue::Bool(b) => Value::Bool(*b),
        kdl::KdlValue::Null => Value::Null,
    };
    Entry {
        key: entry.name().map(convert_ident),
        ty: entry.ty().map(convert_ident),
        value,
        value_span: Span::new((end - value_len).into(), value_len),
        span,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_braces_outside_strings_and_comments() {
        let deep = |n: usize| format!("{}{}", "a {".repeat(n), "}".repeat(n));
        assert_eq!(too_deep(&deep(MAX_DEPTH)), None);
        assert_eq!(too_deep(&deep(MAX_DEPTH + 1)), Some(3 * MAX_DEPTH + 2));
        let hidden = "{".repeat(100);
        for text in [
            format!("a \"{hidden}\""),
            format!("a \"\\\"{hidden}\""),
            format!("a #\"{hidden}\"#"),
            format!("a ##\"\"#{hidden}\"##"),
            format!("a r\"{hidden}\""),
            format!("// {hidden}\na"),
            format!("/* /* {hidden} */ {hidden} */ a"),
        ] {
            assert_eq!(too_deep(&text), None, "{text}");
        }
    }
}
