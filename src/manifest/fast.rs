//! A fast reader for the common subset of KDL v2.
//!
//! The `kdl` crate is the reference parser, but it reads about 1.5 MB/s, too slow for a
//! 10,000-step manifest to check in well under 100 ms. This reader handles what manifests are
//! made of — nodes, quoted and bare strings with the usual escapes, decimal numbers, `#true`,
//! `#false`, `#null`, properties, children, `;`, comments and `/-` — in one pass over the bytes.
//! It returns `None` ("declined") for anything else: any syntax error, KDL v1, raw and multi-line
//! strings, type annotations, line continuations, non-decimal numbers and unusual whitespace.
//! The caller then uses the `kdl` crate, which gives the real diagnostics. Where this reader
//! accepts a document, it must produce exactly the tree the `kdl` crate produces; a
//! differential property test (tests/parser.rs) checks that.

use super::syntax::{Doc, Entry, Ident, Node, Span, Value};

/// Parses `src`, or declines with `None`.
pub fn parse(src: &str) -> Option<Doc> {
    if !plain_characters(src) {
        return None;
    }
    let mut p = Parser {
        s: src.as_bytes(),
        src,
        i: 0,
    };
    let nodes = p.nodes(false)?;
    (p.i == p.s.len()).then_some(Doc { nodes })
}

/// Rejects documents with characters whose KDL meaning this reader does not model: control
/// characters other than tab, LF and CR; Unicode spaces and newlines; the code points KDL
/// disallows (direction controls, BOM).
fn plain_characters(src: &str) -> bool {
    let bytes_ok = src
        .bytes()
        .all(|b| b >= 0x20 && b != 0x7f || matches!(b, b'\t' | b'\n' | b'\r'));
    if !bytes_ok {
        return false;
    }
    if src.is_ascii() {
        return true;
    }
    src.chars().all(|c| {
        !matches!(c,
            '\u{85}' | '\u{a0}' | '\u{1680}' | '\u{2000}'..='\u{200f}' | '\u{2028}'..='\u{202f}'
            | '\u{205f}' | '\u{2066}'..='\u{2069}' | '\u{3000}' | '\u{feff}'
)
    })
}

struct Parser<'a> {
    s: &'a [u8],
    src: &'a str,
    i: usize,
}

/// Characters that end a bare identifier or number.
fn is_delimiter(b: u8) -> bool {
    matches!(
        b,
        b' ' | b'\t'
            | b'\n'
            | b'\r'
            | b'\\'
            | b'/'
            | b'('
            | b')'
            | b'{'
            | b'}'
            | b';'
            | b'['
            | b']'
            | b'"'
            | b'#'
            | b'='
    )
}

fn span(start: usize, end: usize) -> Span {
    Span::new(start.into(), end - start)
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn at(&self, text: &[u8]) -> bool {
        self.s[self.i..].starts_with(text)
    }

    /// Skips spaces, tabs and `/* */` comments (KDL's `ws`), not newlines.
    fn ws(&mut self) -> Option<bool> {
        let start = self.i;
        loop {
            match self.peek() {
                Some(b' ' | b'\t') => self.i += 1,
                Some(b'/') if self.at(b"/*") => self.block_comment()?,
                _ => return Some(self.i > start),
            }
        }
    }

    fn block_comment(&mut self) -> Option<()> {
        self.i += 2;
        let mut depth = 1;
        while depth > 0 {
            if self.at(b"/*") {
                depth += 1;
                self.i += 2;
            } else if self.at(b"*/") {
                depth -= 1;
                self.i += 2;
            } else if self.i < self.s.len() {
                self.i += 1;
            } else {
                return None;
            }
        }
        Some(())
    }

    /// Skips whitespace, newlines and comments between nodes (KDL's `line-space`).
    fn line_space(&mut self) -> Option<()> {
        loop {
            self.ws()?;
            match self.peek() {
                Some(b'\n' | b'\r') => self.i += 1,
                Some(b'/') if self.at(b"//") => self.line_comment(),
                _ => return Some(()),
            }
        }
    }

    fn line_comment(&mut self) {
        while let Some(b) = self.peek() {
            if b == b'\n' || b == b'\r' {
                return;
            }
            self.i += 1;
        }
    }

    /// Nodes up to the end of input (top level) or a `}` (children).
    fn nodes(&mut self, in_block: bool) -> Option<Vec<Node>> {
        let mut nodes = Vec::new();
        loop {
            self.line_space()?;
            match self.peek() {
                None if !in_block => return Some(nodes),
                None => return None,
                Some(b'}') if in_block => return Some(nodes),
                Some(b'/') if self.at(b"/-") => {
                    self.i += 2;
                    self.line_space()?;
                    self.node()?;
                    // kdl 6 rejects a slashdashed node ended by `;`; follow the reference.
                    if self.s[self.i - 1] == b';' {
                        return None;
                    }
                }
                Some(_) => nodes.push(self.node()?),
            }
        }
    }

    fn node(&mut self) -> Option<Node> {
        let start = self.i;
        let name = match self.string_token()? {
            (Value::String(s), sp) => Ident { value: s, span: sp },
            _ => return None,
        };
        let mut end = self.i;
        let mut entries = Vec::new();
        let mut children: Option<Vec<Node>> = None;
        loop {
            let before = self.i;
            let spaced = self.ws()?;
            if children.is_some() && self.i > before && self.s[before..self.i].contains(&b'*') {
                return None; // a block comment after children: left to the reference parser
            }
            match self.peek() {
                None | Some(b'\n' | b'\r' | b';' | b'}') => break,
                Some(b'/') if self.at(b"//") => break,
                Some(b'{') if children.is_none() => {
                    children = Some(self.children()?);
                    end = self.i;
                }
                Some(b'/') if self.at(b"/-") => {
                    // After children only a terminator may follow (kept simple on purpose).
                    if !spaced || children.is_some() {
                        return None;
                    }
                    self.i += 2;
                    self.ws()?;
                    if self.peek() == Some(b'{') {
                        self.children()?;
                    } else {
                        self.entry()?;
                    }
                }
                Some(_) if spaced && children.is_none() => {
                    entries.push(self.entry()?);
                    end = self.i;
                }
                Some(_) => return None,
            }
        }
        if self.peek() == Some(b';') {
            self.i += 1;
        }
        Some(Node {
            name,
            ty: None,
            entries,
            children,
            span: span(start, end),
        })
    }

    fn children(&mut self) -> Option<Vec<Node>> {
        self.i += 1; // `{`
        let nodes = self.nodes(true)?;
        if self.peek() != Some(b'}') {
            return None;
        }
        self.i += 1;
        Some(nodes)
    }

    /// A value, or `key=value`.
    fn entry(&mut self) -> Option<Entry> {
        let start = self.i;
        let (first, first_span) = self.value()?;
        let save = self.i;
        self.ws()?;
        if self.peek() != Some(b'=') {
            self.i = save;
            return Some(Entry {
                key: None,
                ty: None,
                value: first,
                value_span: first_span,
                span: first_span,
            });
        }
        let Value::String(key) = first else {
            return None;
        };
        if !self.is_string_start(start) {
            return None;
        }
        self.i += 1; // `=`
        self.ws()?;
        let (value, value_span) = self.value()?;
        Some(Entry {
            key: Some(Ident {
                value: key,
                span: first_span,
            }),
            ty: None,
            value,
            value_span,
            span: span(start, self.i),
        })
    }

    /// Whether the token at `pos` was a string (quoted or bare), not a keyword.
    fn is_string_start(&self, pos: usize) -> bool {
        self.s[pos] != b'#'
    }

    fn value(&mut self) -> Option<(Value, Span)> {
        let start = self.i;
        match self.peek()? {
            b'#' => {
                let rest = &self.s[self.i..];
                let (v, n) = if rest.starts_with(b"#true") {
                    (Value::Bool(true), 5)
                } else if rest.starts_with(b"#false") {
                    (Value::Bool(false), 6)
                } else if rest.starts_with(b"#null") {
                    (Value::Null, 5)
                } else {
                    return None; // raw strings, #inf, #nan, errors
                };
                self.i += n;
                self.end_of_token()?;
                Some((v, span(start, self.i)))
            }
            b'0'..=b'9' => self.number(),
            b'+' | b'-' if self.s.get(self.i + 1).is_some_and(u8::is_ascii_digit) => self.number(),
            b'.' if self.s.get(self.i + 1).is_some_and(u8::is_ascii_digit) => None,
            _ => self.string_token(),
        }
    }

    /// The token must be followed by a delimiter (`1abc` and `#truex` are errors).
    fn end_of_token(&self) -> Option<()> {
        match self.peek() {
            None => Some(()),
            Some(b) if is_delimiter(b) && b != b'"' && b != b'#' && b != b'(' => Some(()),
            _ => None,
        }
    }

    fn number(&mut self) -> Option<(Value, Span)> {
        let start = self.i;
        if matches!(self.peek(), Some(b'+' | b'-')) {
            self.i += 1;
        }
        if self.at(b"0x") || self.at(b"0o") || self.at(b"0b") {
            return None;
        }
        self.digits()?;
        let mut float = false;
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.digits()?;
            float = true;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            self.digits()?;
            float = true;
        }
        self.end_of_token()?;
        let text: String = self.src[start..self.i]
            .chars()
            .filter(|&c| c != '_')
            .collect();
        let value = if float {
            let f: f64 = text.parse().ok()?;
            if !f.is_finite() {
                return None;
            }
            Value::Float(f)
        } else {
            Value::Integer(text.parse().ok()?)
        };
        Some((value, span(start, self.i)))
    }

    /// A digit, then digits and `_`.
    fn digits(&mut self) -> Option<()> {
        if !self.peek()?.is_ascii_digit() {
            return None;
        }
        while matches!(self.peek(), Some(b'0'..=b'9' | b'_')) {
            self.i += 1;
        }
        Some(())
    }

    /// A quoted string or a bare identifier.
    fn string_token(&mut self) -> Option<(Value, Span)> {
        let start = self.i;
        if self.peek()? == b'"' {
            if self.at(b"\"\"\"") {
                return None;
            }
            let s = self.quoted()?;
            return Some((Value::String(s), span(start, self.i)));
        }
        // Bare identifier: ASCII identifier characters only (anything else → the kdl crate).
        while let Some(b) = self.peek() {
            if is_delimiter(b) {
                break;
            }
            if !b.is_ascii() {
                return None;
            }
            self.i += 1;
        }
        let text = &self.src[start..self.i];
        let bytes = text.as_bytes();
        let starts_ok = match bytes.first()? {
            b'0'..=b'9' => false,
            b'+' | b'-' => !bytes
                .get(1)
                .is_some_and(|b| b.is_ascii_digit() || *b == b'.'),
            b'.' => !bytes.get(1).is_some_and(u8::is_ascii_digit),
            _ => true,
        };
        let keyword = matches!(text, "true" | "false" | "null" | "inf" | "-inf" | "nan");
        if !starts_ok || keyword {
            return None;
        }
        // A bare `+.5`-like or `-.x` shape is left to the reference parser.
        if matches!(bytes, [b'+' | b'-', b'.', ..]) {
            return None;
        }
        Some((Value::String(text.to_owned()), span(start, self.i)))
    }

    /// A single-line quoted string with the simple escapes.
    fn quoted(&mut self) -> Option<String> {
        self.i += 1; // opening quote
        let mut out = String::new();
        let mut run = self.i;
        loop {
            match self.peek()? {
                b'"' => {
                    out.push_str(&self.src[run..self.i]);
                    self.i += 1;
                    return Some(out);
                }
                b'\n' | b'\r' => return None,
                b'\\' => {
                    out.push_str(&self.src[run..self.i]);
                    self.i += 1;
                    let c = match self.peek()? {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b's' => ' ',
                        b'u' => {
                            self.i += 1;
                            if self.peek()? != b'{' {
                                return None;
                            }
                            let close = self.s[self.i..].iter().position(|&b| b == b'}')?;
                            let hex = &self.src[self.i + 1..self.i + close];
                            if hex.is_empty() || hex.len() > 6 {
                                return None;
                            }
                            let code = u32::from_str_radix(hex, 16).ok()?;
                            self.i += close;
                            char::from_u32(code)?
                        }
                        _ => return None, // whitespace escapes and invalid escapes
                    };
                    out.push(c);
                    self.i += 1;
                    run = self.i;
                }
                _ => self.i += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_common_forms() {
        let doc = parse("image \"a\" {\n  from scratch // base\n  env K=\"v\" /* c */ n=1.5\n  run \"x\" { network none; }\n}\n").unwrap();
        let img = &doc.nodes[0];
        assert_eq!(img.name.value, "image");
        let kids = img.children.as_ref().unwrap();
        assert_eq!(kids[0].entries[0].value, Value::String("scratch".into()));
        assert_eq!(kids[1].entries[1].value, Value::Float(1.5));
        assert_eq!(kids[1].entries[0].key.as_ref().unwrap().value, "K");
        assert_eq!(kids[2].children.as_ref().unwrap()[0].name.value, "network");
    }

    #[test]
    fn declines_what_it_does_not_model() {
        for src in [
            "a true",
            "a r#\"x\"#",
            "a #\"x\"#",
            "a \"\"\"\nx\n\"\"\"",
            "(t)a 1",
            "a (t)1",
            "a 0x10",
            "a \\\n 1",
            "a \"x",
            "a {",
            "a }",
            "a 1abc",
            "a\u{a0}1",
            "a #inf",
        ] {
            assert!(parse(src).is_none(), "{src:?} should be declined");
        }
    }
}
