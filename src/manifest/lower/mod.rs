//! Syntax tree → typed [`Manifest`]. Every node and value is checked here, and every problem is
//! recorded (never returned early), so one run reports all of them.
//!
//! Files: `mod.rs` the names, shapes and typed values every node shares; `interpolate` the
//! `${...}` of strings and their diagnostics; `image` the `image` nodes and their instructions;
//! `service` the `service` nodes and the top-level `network` nodes.

mod image;
mod interpolate;
pub(super) mod service;

use std::collections::{BTreeMap, HashMap};

use super::error::ManifestError;
use super::interp;
use super::model::*;
use super::syntax::{Doc, Entry, Node, Span, Value};
use crate::reference::ImageRef;
use crate::values::{self, Bad, suggest};

/// The arity and properties one node accepts.
struct Shape {
    min: usize,
    max: Option<usize>,
    props: &'static [&'static str],
    children: bool,
    usage: &'static str,
}

const IMAGE_NODES: &[&str] = &[
    "from",
    "env",
    "workdir",
    "copy",
    "run",
    "user",
    "expose",
    "entrypoint",
    "cmd",
    "label",
    "shell",
    "volume",
    "stop-signal",
];

const SERVICE_NODES: &[&str] = &[
    "image",
    "entrypoint",
    "command",
    "env",
    "publish",
    "memory",
    "cpus",
    "pids",
    "cap-add",
    "cap-drop",
    "security-opt",
    "privileged",
    "read-only",
    "tmpfs",
    "volume",
    "depends-on",
    "healthcheck",
    "restart",
    "hostname",
    "user",
    "workdir",
    "stop-signal",
    "stop-timeout",
    "replicas",
    "network",
    "env-file",
    "profiles",
];

const RUN_NODES: &[&str] = &["cache", "network", "env", "secret"];

pub(super) struct Lowerer<'s> {
    src: &'s str,
    pub errors: Vec<ManifestError>,
    overrides: &'s BTreeMap<String, String>,
    /// What `${NAME}` in a service value may also name: boxr's environment over `.env`.
    vars: &'s BTreeMap<String, String>,
    /// Lowering a service now (its values see `vars`).
    in_service: bool,
    /// Args declared so far, in order, with their effective values.
    args: Vec<(String, String)>,
    images: HashMap<String, Span>,
    services: HashMap<String, Span>,
    networks: HashMap<String, Span>,
    /// Every arg name declared anywhere in the file, for a better message on use-before-declare.
    all_args: Vec<String>,
}

impl<'s> Lowerer<'s> {
    pub fn new(
        src: &'s str,
        overrides: &'s BTreeMap<String, String>,
        vars: &'s BTreeMap<String, String>,
    ) -> Self {
        Lowerer {
            src,
            errors: Vec::new(),
            overrides,
            vars,
            in_service: false,
            args: Vec::new(),
            images: HashMap::new(),
            services: HashMap::new(),
            networks: HashMap::new(),
            all_args: Vec::new(),
        }
    }

    pub fn lower(&mut self, doc: &Doc) -> Manifest {
        self.collect_names(doc);
        let mut manifest = Manifest {
            name: String::new(),
            source: std::sync::Arc::from(""),
            args: Vec::new(),
            images: Vec::new(),
            services: Vec::new(),
            networks: Vec::new(),
        };
        for node in &doc.nodes {
            match node.name.value.as_str() {
                "arg" => {
                    if let Some(a) = self.arg(node) {
                        manifest.args.push(a);
                    }
                }
                "image" => {
                    if let Some(i) = self.image(node) {
                        manifest.images.push(i);
                    }
                }
                "service" => {
                    self.in_service = true;
                    let s = self.service(node);
                    self.in_service = false;
                    manifest.services.extend(s);
                }
                "network" => {
                    if let Some(n) = self.network_decl(node) {
                        manifest.networks.push(n);
                    }
                }
                _ => self.unknown_node(node, "this file", &["arg", "image", "service", "network"]),
            }
        }
        manifest
    }

    // ---- names -------------------------------------------------------------------------------

    /// Records every image and service name first, so references can point forward and a
    /// duplicate is reported once, at its second definition.
    fn collect_names(&mut self, doc: &Doc) {
        for node in &doc.nodes {
            if node.name.value == "arg" {
                if let Some(Value::String(n)) = node
                    .entries
                    .iter()
                    .find(|e| e.key.is_none())
                    .map(|e| &e.value)
                {
                    self.all_args.push(n.clone());
                }
                continue;
            }
            let (kind, map) = match node.name.value.as_str() {
                "image" => ("image", &mut self.images),
                "service" => ("service", &mut self.services),
                "network" => ("network", &mut self.networks),
                _ => continue,
            };
            let Some(first) = node.entries.iter().find(|e| e.key.is_none()) else {
                continue;
            };
            let Value::String(name) = &first.value else {
                continue;
            };
            if let Some(prev) = map.get(name) {
                self.errors.push(ManifestError::DuplicateName {
                    kind: kind.into(),
                    name: name.clone(),
                    span: first.value_span,
                    first: *prev,
                });
            } else {
                map.insert(name.clone(), first.value_span);
            }
        }
    }

    // ---- generic node checks -----------------------------------------------------------------

    fn unknown_node(&mut self, node: &Node, parent: &str, known: &[&str]) {
        let help = match suggest(&node.name.value, known.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("expected one of: {}", known.join(", ")),
        };
        self.errors.push(ManifestError::UnknownNode {
            name: node.name.value.clone(),
            parent: parent.into(),
            span: node.name.span,
            help: Some(help),
        });
    }

    /// Checks a node against its shape and reports every mismatch. Returns false when the
    /// positional arguments cannot be used (too few), so the caller skips the node.
    fn shape(&mut self, node: &Node, shape: &Shape) -> bool {
        let name = node.name.value.as_str();
        if let Some(ty) = &node.ty {
            self.type_annotation(ty.span);
        }
        let mut seen: HashMap<&str, Span> = HashMap::new();
        let mut positional = 0;
        for e in &node.entries {
            if let Some(ty) = &e.ty {
                self.type_annotation(ty.span);
            }
            match &e.key {
                None => {
                    positional += 1;
                    if shape.max.is_some_and(|max| positional > max) {
                        self.errors.push(ManifestError::ExtraArgument {
                            node: name.into(),
                            span: e.span,
                            usage: format!("usage: {}", shape.usage),
                        });
                    }
                }
                Some(key) => {
                    let k = key.value.as_str();
                    if !shape.props.contains(&k) {
                        let help = match suggest(k, shape.props.iter().copied()) {
                            Some(s) => Some(format!("did you mean `{s}`?")),
                            None if shape.props.is_empty() => {
                                Some(format!("`{name}` takes no properties"))
                            }
                            None => Some(format!("`{name}` takes: {}", shape.props.join(", "))),
                        };
                        self.errors.push(ManifestError::UnknownProperty {
                            name: k.into(),
                            node: name.into(),
                            span: key.span,
                            help,
                        });
                    } else if let Some(first) = seen.get(k) {
                        self.errors.push(ManifestError::DuplicateProperty {
                            name: k.into(),
                            span: key.span,
                            first: *first,
                        });
                    } else {
                        seen.insert(k, key.span);
                    }
                }
            }
        }
        if node.children.is_some() && !shape.children {
            self.errors.push(ManifestError::UnexpectedChildren {
                node: name.into(),
                span: self.children_span(node),
            });
        }
        if positional < shape.min {
            let what = if shape.min == 1 {
                "an argument".to_owned()
            } else {
                format!("{} arguments", shape.min)
            };
            self.errors.push(ManifestError::MissingArgument {
                node: name.into(),
                what,
                span: node.name.span,
                usage: format!("usage: {}", shape.usage),
            });
            return false;
        }
        true
    }

    fn type_annotation(&mut self, span: Span) {
        self.errors.push(ManifestError::Invalid {
            message: "type annotations are not used in boxr.kdl".into(),
            span,
            label: "remove this annotation".into(),
            help: None,
        });
    }

    /// The span of a node's `{ ... }` block: from the `{` to the end of the node.
    fn children_span(&self, node: &Node) -> Span {
        let start = node.span.offset();
        let end = start + node.span.len();
        let open = self.src[start..end].find('{').map_or(start, |i| start + i);
        Span::new(open.into(), end - open)
    }

    fn positional(node: &Node) -> impl Iterator<Item = &Entry> {
        node.entries.iter().filter(|e| e.key.is_none())
    }

    fn prop<'n>(node: &'n Node, key: &str) -> Option<&'n Entry> {
        // With a duplicate property (already reported), the first one is used.
        node.entries
            .iter()
            .find(|e| e.key.as_ref().is_some_and(|k| k.value == key))
    }

    /// Rejects a second node of a kind that may appear once.
    fn once(&mut self, seen: &mut HashMap<String, Span>, node: &Node, parent: &str) -> bool {
        match seen.get(&node.name.value) {
            Some(first) => {
                self.errors.push(ManifestError::DuplicateNode {
                    name: node.name.value.clone(),
                    parent: parent.into(),
                    span: node.name.span,
                    first: *first,
                });
                false
            }
            None => {
                seen.insert(node.name.value.clone(), node.name.span);
                true
            }
        }
    }

    // ---- values ------------------------------------------------------------------------------

    fn wrong_type(&mut self, e: &Entry, expected: &str, help: Option<String>) {
        self.errors.push(ManifestError::WrongType {
            expected: expected.into(),
            found: e.value.type_name().into(),
            span: e.value_span,
            help,
        });
    }

    /// A string entry, with `${NAME}` args replaced.
    fn string(&mut self, e: &Entry) -> Option<Spanned<String>> {
        match &e.value {
            Value::String(s) => self.interpolate(s, e.value_span),
            Value::Integer(_) | Value::Float(_) | Value::Bool(_) => {
                let text = &self.src[e.value_span.offset()..][..e.value_span.len()];
                let help = Some(format!("quote it: \"{}\"", text.trim_start_matches('#')));
                self.wrong_type(e, "a string", help);
                None
            }
            Value::Null => {
                self.wrong_type(e, "a string", None);
                None
            }
        }
    }

    /// A scalar entry as text: strings (interpolated), numbers and booleans. For env and label
    /// values, where `env "PORT" 8080` should just work.
    fn scalar_text(&mut self, e: &Entry) -> Option<Spanned<String>> {
        match &e.value {
            Value::String(_) => self.string(e),
            Value::Integer(i) => Some(Spanned::new(i.to_string(), e.value_span)),
            Value::Float(f) => Some(Spanned::new(f.to_string(), e.value_span)),
            Value::Bool(b) => Some(Spanned::new(b.to_string(), e.value_span)),
            Value::Null => {
                self.wrong_type(e, "a string", None);
                None
            }
        }
    }

    fn strings<'n>(&mut self, entries: impl Iterator<Item = &'n Entry>) -> Vec<Spanned<String>> {
        entries.filter_map(|e| self.string(e)).collect()
    }

    /// Parses a string entry with a value parser, reporting a failure at the token.
    fn typed<T>(
        &mut self,
        e: &Entry,
        kind: &str,
        parse: impl Fn(&str) -> Result<T, Bad>,
    ) -> Option<Spanned<T>> {
        let s = self.string(e)?;
        self.check(s.span, kind, parse(&s.value))
            .map(|v| Spanned::new(v, s.span))
    }

    fn check<T>(&mut self, span: Span, kind: &str, r: Result<T, Bad>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(b) => {
                self.invalid(span, kind, b);
                None
            }
        }
    }

    fn invalid(&mut self, span: Span, kind: &str, b: Bad) {
        self.errors.push(ManifestError::InvalidValue {
            kind: kind.into(),
            reason: b.reason,
            span,
            help: b.help,
        });
    }

    /// A size: a string with a unit, or an integer number of bytes.
    fn size(&mut self, e: &Entry) -> Option<Spanned<u64>> {
        match &e.value {
            Value::Integer(i) if *i > 0 && *i <= u64::MAX as i128 => {
                Some(Spanned::new(*i as u64, e.value_span))
            }
            Value::Integer(_) => {
                self.invalid(
                    e.value_span,
                    "size",
                    Bad {
                        reason: "a size must be positive".into(),
                        help: None,
                    },
                );
                None
            }
            Value::String(_) => self.typed(e, "size", values::parse_size),
            _ => {
                self.wrong_type(e, "a size", Some("write e.g. \"256MiB\"".into()));
                None
            }
        }
    }

    fn duration(&mut self, e: &Entry) -> Option<Spanned<std::time::Duration>> {
        match &e.value {
            Value::String(_) => self.typed(e, "duration", values::parse_duration),
            _ => {
                self.wrong_type(
                    e,
                    "a duration",
                    Some("write e.g. \"10s\" or \"500ms\"".into()),
                );
                None
            }
        }
    }

    fn bool_value(&mut self, e: &Entry) -> Option<bool> {
        match &e.value {
            Value::Bool(b) => Some(*b),
            _ => {
                self.wrong_type(e, "a boolean", Some("write #true or #false".into()));
                None
            }
        }
    }

    fn container_path(&mut self, e: &Entry) -> Option<Spanned<String>> {
        self.typed(e, "path", |s| {
            values::check_container_path(s).map(|_| s.to_owned())
        })
    }

    // ---- args --------------------------------------------------------------------------------

    fn arg(&mut self, node: &Node) -> Option<Arg> {
        let shape = Shape {
            min: 1,
            max: Some(1),
            props: &["default"],
            children: false,
            usage: "arg NAME [default=VALUE]",
        };
        if !self.shape(node, &shape) {
            return None;
        }
        let name_entry = Self::positional(node).next()?;
        let name = match &name_entry.value {
            Value::String(s) => Spanned::new(s.clone(), name_entry.value_span),
            _ => {
                self.wrong_type(name_entry, "an arg name", None);
                return None;
            }
        };
        if !interp::is_arg_name(&name) {
            self.invalid(
                name.span,
                "arg name",
                Bad {
                    reason: format!("`{}` is not a valid arg name", name.value),
                    help: Some("use letters, digits and `_`, not starting with a digit".into()),
                },
            );
            return None;
        }
        let default = match Self::prop(node, "default") {
            Some(e) => Some(self.scalar_text(e)?),
            None => None,
        };
        if let Some((_, _)) = self.args.iter().find(|(n, _)| *n == name.value) {
            // Find the first definition's span for the label.
            let first = self.first_arg_span(&name.value, name.span);
            self.errors.push(ManifestError::DuplicateName {
                kind: "arg".into(),
                name: name.value.clone(),
                span: name.span,
                first,
            });
            return None;
        }
        let value = match self.overrides.get(&name.value) {
            Some(v) => v.clone(),
            None => default
                .as_ref()
                .map(|d| d.value.clone())
                .unwrap_or_default(),
        };
        self.args.push((name.value.clone(), value.clone()));
        Some(Arg {
            name,
            default,
            value,
        })
    }

    fn first_arg_span(&self, name: &str, fallback: Span) -> Span {
        // Args are few; find the first `arg "NAME"` token in the source.
        let needle = format!("\"{name}\"");
        match self.src.find(&needle) {
            Some(i) if i < fallback.offset() => Span::new(i.into(), needle.len()),
            _ => fallback,
        }
    }
}

fn command_of(mut args: Vec<Spanned<String>>) -> Command {
    if args.len() == 1 {
        Command::Shell(args.pop().expect("one element"))
    } else {
        Command::Exec(args)
    }
}

/// `oci:PATH[:TAG]`: the part after the last `:` is a tag when it has no `/`.
fn split_oci(p: &str) -> (&str, Option<&str>) {
    match p.rsplit_once(':') {
        Some((path, tag)) if !tag.contains('/') && !tag.is_empty() && !path.is_empty() => {
            (path, Some(tag))
        }
        _ => (p, None),
    }
}

/// An image name becomes a repository name (`NAME:latest`), so it follows that grammar.
fn check_image_name(name: &str) -> Result<(), Bad> {
    if name.contains([':', '@']) {
        return Err(Bad {
            reason: format!("`{name}` has a tag or digest"),
            help: Some("name the image without a tag; `boxr build --tag` adds tags".into()),
        });
    }
    match ImageRef::parse(name) {
        Ok(_) => Ok(()),
        Err(reason) => Err(Bad {
            reason: reason.to_string(),
            help: (name != name.to_ascii_lowercase())
                .then(|| format!("write `{}`", name.to_ascii_lowercase())),
        }),
    }
}

/// Service names are used as host names between services.
fn check_service_name(name: &str) -> Result<(), Bad> {
    let mut chars = name.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.len() <= 63;
    if ok {
        Ok(())
    } else {
        Err(Bad {
            reason: format!("`{name}` is not a valid service name"),
            help: Some(
                "use letters, digits, `-`, `_` and `.`, starting with a letter or digit (at most 63)".into(),
            ),
        })
    }
}

/// A COPY source in the build context: relative (a leading `/` means the context root, as in
/// Docker) and never climbing out of the context with `..`.
fn check_context_path(p: &str) -> Result<(), Bad> {
    if p.is_empty() {
        return Err(Bad {
            reason: "the source is empty".into(),
            help: Some("use `.` for the whole build context".into()),
        });
    }
    let mut depth: i32 = 0;
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return Err(Bad {
                        reason: format!("`{p}` is outside the build context"),
                        help: Some(
                            "copy sources are read from the build context; move the file into it or pass a wider context".into(),
                        ),
                    });
                }
            }
            _ => depth += 1,
        }
    }
    Ok(())
}

/// A path inside another image, for `copy from=`.
fn check_image_path(p: &str) -> Result<(), Bad> {
    if p.is_empty() {
        return Err(Bad {
            reason: "the source is empty".into(),
            help: None,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_paths_stay_inside() {
        assert!(check_context_path("src/../Makefile").is_ok());
        assert!(check_context_path("/etc/hosts").is_ok());
        assert!(check_context_path("../x").is_err());
        assert!(check_context_path("a/../../x").is_err());
    }

    #[test]
    fn oci_tags() {
        assert_eq!(split_oci("./layout:v1"), ("./layout", Some("v1")));
        assert_eq!(split_oci("./layout"), ("./layout", None));
        assert_eq!(split_oci("C:/x"), ("C:/x", None));
    }
}
