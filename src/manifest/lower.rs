//! Syntax tree → typed [`Manifest`]. Every node and value is checked here, and every problem is
//! recorded (never returned early), so one run reports all of them.

use std::collections::{BTreeMap, HashMap};

use super::error::ManifestError;
use super::interp::{self, Problem};
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
];

const RUN_NODES: &[&str] = &["cache", "network", "env", "secret"];

pub(super) struct Lowerer<'s> {
    src: &'s str,
    pub errors: Vec<ManifestError>,
    overrides: &'s BTreeMap<String, String>,
    /// Args declared so far, in order, with their effective values.
    args: Vec<(String, String)>,
    images: HashMap<String, Span>,
    services: HashMap<String, Span>,
    /// Every arg name declared anywhere in the file, for a better message on use-before-declare.
    all_args: Vec<String>,
}

impl<'s> Lowerer<'s> {
    pub fn new(src: &'s str, overrides: &'s BTreeMap<String, String>) -> Self {
        Lowerer {
            src,
            errors: Vec::new(),
            overrides,
            args: Vec::new(),
            images: HashMap::new(),
            services: HashMap::new(),
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
                    if let Some(s) = self.service(node) {
                        manifest.services.push(s);
                    }
                }
                _ => self.unknown_node(node, "this file", &["arg", "image", "service"]),
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

    fn interpolate(&mut self, raw: &str, span: Span) -> Option<Spanned<String>> {
        let args = &self.args;
        let lookup = |name: &str| {
            args.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
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

    // ---- images ------------------------------------------------------------------------------

    fn image(&mut self, node: &Node) -> Option<Image> {
        let shape = Shape {
            min: 1,
            max: Some(1),
            props: &[],
            children: true,
            usage: "image NAME { from SOURCE; ... }",
        };
        if !self.shape(node, &shape) {
            return None;
        }
        let name_entry = Self::positional(node).next()?;
        let name = self.string(name_entry)?;
        let name_ok = self.check(name.span, "image name", check_image_name(&name.value));
        let children = match &node.children {
            Some(c) => c,
            None => {
                self.errors.push(ManifestError::MissingNode {
                    node: format!("image \"{}\"", name.value),
                    what: "from".into(),
                    span: name.span,
                    help: Some("add a block: image \"NAME\" { from \"scratch\" }".into()),
                });
                return None;
            }
        };
        let parent = format!("image `{}`", name.value);
        let mut from: Option<Spanned<Base>> = None;
        let mut from_seen: Option<Span> = None;
        let mut instructions = Vec::new();
        for (i, child) in children.iter().enumerate() {
            let n = child.name.value.as_str();
            if n == "from" {
                if let Some(first) = from_seen {
                    self.errors.push(ManifestError::DuplicateNode {
                        name: "from".into(),
                        parent: parent.clone(),
                        span: child.name.span,
                        first,
                    });
                    continue;
                }
                from_seen = Some(child.name.span);
                if i != 0 {
                    self.errors.push(ManifestError::Misplaced {
                        name: "from".into(),
                        parent: parent.clone(),
                        span: child.name.span,
                    });
                }
                from = self.from(child);
                continue;
            }
            if let Some(ins) = self.instruction(child, &parent) {
                instructions.push(Spanned::new(ins, child.span));
            }
        }
        if from_seen.is_none() {
            self.errors.push(ManifestError::MissingNode {
                node: format!("image \"{}\"", name.value),
                what: "from".into(),
                span: name.span,
                help: Some(
                    "start the block with `from \"scratch\"`, `from \"dir:PATH\"` or another image"
                        .into(),
                ),
            });
        }
        name_ok?;
        Some(Image {
            name,
            from: from?,
            instructions,
        })
    }

    fn from(&mut self, node: &Node) -> Option<Spanned<Base>> {
        let shape = Shape {
            min: 1,
            max: Some(1),
            props: &[],
            children: false,
            usage: "from scratch | IMAGE | \"dir:PATH\" | \"tar:PATH\" | \"oci:PATH[:TAG]\" | NAME:TAG",
        };
        if !self.shape(node, &shape) {
            return None;
        }
        let e = Self::positional(node).next()?;
        let s = self.string(e)?;
        let span = s.span;
        let text = s.value.as_str();
        let base = if text == "scratch" {
            Base::Scratch
        } else if let Some(p) = text.strip_prefix("dir:") {
            Base::Dir(self.local_path(p, span, "dir:")?)
        } else if let Some(p) = text.strip_prefix("tar:") {
            Base::Tar(self.local_path(p, span, "tar:")?)
        } else if let Some(p) = text.strip_prefix("oci:") {
            let (path, tag) = split_oci(p);
            Base::Oci {
                path: self.local_path(path, span, "oci:")?,
                tag: tag.map(str::to_owned),
            }
        } else {
            match self.image_source(&s, "from")? {
                ImageSource::Image(n) => Base::Image(n),
                ImageSource::Store(r) => Base::Store(r),
            }
        };
        Some(Spanned::new(base, span))
    }

    fn local_path(&mut self, p: &str, span: Span, prefix: &str) -> Option<String> {
        if p.is_empty() {
            self.invalid(
                span,
                "source",
                Bad {
                    reason: format!("`{prefix}` needs a path"),
                    help: Some(format!("write `{prefix}./path`, relative to boxr.kdl")),
                },
            );
            return None;
        }
        Some(p.to_owned())
    }

    /// An image named by `from`, `copy from=` or a service's `image`: one of this file, or a
    /// store image given with its tag (or registry or digest) so that a typo of a local name is
    /// never silently taken for a store lookup.
    fn image_source(&mut self, s: &Spanned<String>, what: &str) -> Option<ImageSource> {
        let text = s.value.as_str();
        if self.images.contains_key(text) {
            return Some(ImageSource::Image(text.to_owned()));
        }
        if text.contains([':', '/', '@']) {
            return match ImageRef::parse(text) {
                Ok(r) => Some(ImageSource::Store(r)),
                Err(reason) => {
                    self.invalid(
                        s.span,
                        "image reference",
                        Bad {
                            reason,
                            help: Some("write NAME:TAG, e.g. \"alpine:3.20\"".into()),
                        },
                    );
                    None
                }
            };
        }
        let scratch = (what == "from").then_some("scratch");
        let candidates = self.images.keys().map(String::as_str).chain(scratch);
        let help = match suggest(text, candidates) {
            Some(n) => format!("did you mean `{n}`?"),
            None if what == "from" => format!(
                "define `image \"{text}\"` in this file, use `scratch`, or name a store image with its tag: `{text}:latest`"
            ),
            None => format!(
                "define `image \"{text}\"` in this file, or name a store image with its tag: `{text}:latest`"
            ),
        };
        self.errors.push(ManifestError::UnknownReference {
            kind: "image".into(),
            name: text.to_owned(),
            span: s.span,
            help: Some(help),
        });
        None
    }

    fn instruction(&mut self, node: &Node, parent: &str) -> Option<Instruction> {
        let name = node.name.value.as_str();
        let no_props = |min, max, usage| Shape {
            min,
            max,
            props: &[],
            children: false,
            usage,
        };
        match name {
            "env" => self.pairs(node, true).map(Instruction::Env),
            "label" => self.pairs(node, false).map(Instruction::Label),
            "workdir" => {
                if !self.shape(node, &no_props(1, Some(1), "workdir PATH")) {
                    return None;
                }
                let s = self.string(Self::positional(node).next()?)?;
                if s.value.is_empty() {
                    self.invalid(
                        s.span,
                        "path",
                        Bad {
                            reason: "the path is empty".into(),
                            help: None,
                        },
                    );
                    return None;
                }
                Some(Instruction::Workdir(s))
            }
            "copy" => self.copy(node).map(Instruction::Copy),
            "run" => self.run(node).map(Instruction::Run),
            "user" => {
                if !self.shape(node, &no_props(1, Some(1), "user USER[:GROUP]")) {
                    return None;
                }
                self.user(Self::positional(node).next()?)
                    .map(Instruction::User)
            }
            "expose" => {
                if !self.shape(node, &no_props(1, None, "expose PORT[/PROTO]...")) {
                    return None;
                }
                let ports = Self::positional(node)
                    .filter_map(|e| self.port_spec(e))
                    .collect();
                Some(Instruction::Expose(ports))
            }
            "entrypoint" => {
                if !self.shape(node, &no_props(0, None, "entrypoint ARG...")) {
                    return None;
                }
                Some(Instruction::Entrypoint(
                    self.strings(Self::positional(node)),
                ))
            }
            "cmd" => {
                if !self.shape(node, &no_props(0, None, "cmd ARG...")) {
                    return None;
                }
                Some(Instruction::Cmd(self.strings(Self::positional(node))))
            }
            "shell" => {
                if !self.shape(node, &no_props(1, None, "shell EXECUTABLE [ARG...]")) {
                    return None;
                }
                Some(Instruction::Shell(self.strings(Self::positional(node))))
            }
            "volume" => {
                if !self.shape(node, &no_props(1, None, "volume PATH...")) {
                    return None;
                }
                let paths = Self::positional(node)
                    .filter_map(|e| self.container_path(e))
                    .collect();
                Some(Instruction::Volume(paths))
            }
            "stop-signal" => {
                if !self.shape(node, &no_props(1, Some(1), "stop-signal SIGNAL")) {
                    return None;
                }
                self.signal(Self::positional(node).next()?)
                    .map(Instruction::StopSignal)
            }
            _ => {
                self.unknown_node(node, parent, IMAGE_NODES);
                None
            }
        }
    }

    fn user(&mut self, e: &Entry) -> Option<Spanned<UserSpec>> {
        match &e.value {
            Value::Integer(i) if (0..u32::MAX as i128).contains(i) => Some(Spanned::new(
                UserSpec {
                    user: Id::Num(*i as u32),
                    group: None,
                },
                e.value_span,
            )),
            Value::Integer(_) => {
                self.invalid(
                    e.value_span,
                    "user",
                    Bad {
                        reason: "the user id is out of range".into(),
                        help: None,
                    },
                );
                None
            }
            _ => self.typed(e, "user", values::parse_user),
        }
    }

    fn signal(&mut self, e: &Entry) -> Option<Spanned<Signal>> {
        match &e.value {
            Value::Integer(i) => {
                let text = i.to_string();
                let r = values::parse_signal(&text);
                self.check(e.value_span, "signal", r)
                    .map(|s| Spanned::new(s, e.value_span))
            }
            _ => self.typed(e, "signal", values::parse_signal),
        }
    }

    fn port_spec(&mut self, e: &Entry) -> Option<Spanned<PortSpec>> {
        match &e.value {
            Value::Integer(i) => {
                let r = values::parse_port_spec(&i.to_string());
                self.check(e.value_span, "port", r)
                    .map(|p| Spanned::new(p, e.value_span))
            }
            _ => self.typed(e, "port", values::parse_port_spec),
        }
    }

    /// `env "K" "V"` or `env K="V" ...` (the same for `label`).
    fn pairs(&mut self, node: &Node, env: bool) -> Option<Vec<Pair>> {
        let name = node.name.value.as_str();
        let usage = if env {
            "env NAME VALUE, or env NAME=VALUE..."
        } else {
            "label KEY VALUE, or label KEY=VALUE..."
        };
        if let Some(ty) = &node.ty {
            self.type_annotation(ty.span);
        }
        if node.children.is_some() {
            self.errors.push(ManifestError::UnexpectedChildren {
                node: name.into(),
                span: self.children_span(node),
            });
        }
        let positional: Vec<&Entry> = Self::positional(node).collect();
        let props: Vec<&Entry> = node.entries.iter().filter(|e| e.key.is_some()).collect();
        let mut out = Vec::new();
        if !positional.is_empty() && !props.is_empty() {
            self.errors.push(ManifestError::Invalid {
                message: format!("`{name}` mixes the two forms"),
                span: props[0].span,
                label: "a property after positional arguments".into(),
                help: Some(format!("usage: {usage}")),
            });
            return None;
        }
        if props.is_empty() {
            match positional.len() {
                2 => {
                    let k = self.string(positional[0]);
                    let v = self.scalar_text(positional[1]);
                    out.push((k?, v?));
                }
                0 | 1 => {
                    self.errors.push(ManifestError::MissingArgument {
                        node: name.into(),
                        what: "a name and a value".into(),
                        span: node.name.span,
                        usage: format!("usage: {usage}"),
                    });
                    return None;
                }
                _ => {
                    self.errors.push(ManifestError::ExtraArgument {
                        node: name.into(),
                        span: positional[2].span,
                        usage: format!("usage: {usage}; quote a value that has spaces"),
                    });
                    return None;
                }
            }
        } else {
            let mut seen: HashMap<&str, Span> = HashMap::new();
            for e in props {
                let key = e.key.as_ref()?;
                if let Some(first) = seen.get(key.value.as_str()) {
                    self.errors.push(ManifestError::DuplicateProperty {
                        name: key.value.clone(),
                        span: key.span,
                        first: *first,
                    });
                    continue;
                }
                seen.insert(&key.value, key.span);
                let k = Spanned::new(key.value.clone(), key.span);
                if let Some(v) = self.scalar_text(e) {
                    out.push((k, v));
                }
            }
        }
        let mut ok = true;
        for (k, _) in &out {
            let r = if env {
                values::check_env_name(&k.value)
            } else if k.value.is_empty() {
                Err(Bad {
                    reason: "the label key is empty".into(),
                    help: None,
                })
            } else {
                Ok(())
            };
            if let Err(b) = r {
                self.invalid(k.span, if env { "variable name" } else { "label" }, b);
                ok = false;
            }
        }
        ok.then_some(out)
    }

    fn copy(&mut self, node: &Node) -> Option<Copy> {
        let shape = Shape {
            min: 1,
            max: None,
            props: &["to", "from", "chmod", "chown"],
            children: false,
            usage: "copy SOURCE... to=DEST [from=IMAGE] [chmod=MODE] [chown=USER[:GROUP]]",
        };
        if !self.shape(node, &shape) {
            return None;
        }
        let from = match Self::prop(node, "from") {
            Some(e) => {
                let s = self.string(e)?;
                let src = self.image_source(&s, "copy from")?;
                Some(Spanned::new(src, s.span))
            }
            None => None,
        };
        let mut sources = Vec::new();
        let mut ok = true;
        for e in Self::positional(node) {
            let Some(s) = self.string(e) else {
                ok = false;
                continue;
            };
            let r = if from.is_some() {
                check_image_path(&s.value)
            } else {
                check_context_path(&s.value)
            };
            match r {
                Ok(()) => sources.push(s),
                Err(b) => {
                    self.invalid(s.span, "copy source", b);
                    ok = false;
                }
            }
        }
        let to = match Self::prop(node, "to") {
            Some(e) => self.string(e),
            None => {
                self.errors.push(ManifestError::MissingArgument {
                    node: "copy".into(),
                    what: "a destination `to=`".into(),
                    span: node.name.span,
                    usage: format!("usage: {}", shape.usage),
                });
                None
            }
        };
        let chmod = match Self::prop(node, "chmod") {
            Some(e) => match &e.value {
                Value::String(_) => self.typed(e, "mode", values::parse_mode),
                _ => {
                    let text = &self.src[e.value_span.offset()..][..e.value_span.len()];
                    let help = format!("write the mode in octal as a string: chmod=\"{text}\"");
                    self.wrong_type(e, "a string", Some(help));
                    None
                }
            },
            None => None,
        };
        let chown = match Self::prop(node, "chown") {
            Some(e) => self.user(e),
            None => None,
        };
        let to = to?;
        if to.value.is_empty() {
            self.invalid(
                to.span,
                "destination",
                Bad {
                    reason: "the destination is empty".into(),
                    help: None,
                },
            );
            return None;
        }
        let n_sources = Self::positional(node).count();
        if n_sources > 1 && !to.value.ends_with('/') {
            self.errors.push(ManifestError::Invalid {
                message: "copying several sources needs a directory destination".into(),
                span: to.span,
                label: "does not end with `/`".into(),
                help: Some(format!("write to=\"{}/\"", to.value)),
            });
            return None;
        }
        if !ok {
            return None;
        }
        if Self::prop(node, "chmod").is_some() && chmod.is_none()
            || Self::prop(node, "chown").is_some() && chown.is_none()
        {
            return None;
        }
        Some(Copy {
            sources,
            to,
            from,
            chmod,
            chown,
        })
    }

    fn run(&mut self, node: &Node) -> Option<Run> {
        let shape = Shape {
            min: 1,
            max: None,
            props: &[],
            children: true,
            usage: "run \"SHELL COMMAND\" | run EXECUTABLE ARG... [{ cache PATH; network none|host; env NAME VALUE }]",
        };
        if !self.shape(node, &shape) {
            return None;
        }
        let args = self.strings(Self::positional(node));
        if args.len() != Self::positional(node).count() {
            return None;
        }
        let command = command_of(args);
        let mut caches = Vec::new();
        let mut network = None;
        let mut env = Vec::new();
        let mut secrets: Vec<SecretMount> = Vec::new();
        let mut seen = HashMap::new();
        for child in node.children.iter().flatten() {
            match child.name.value.as_str() {
                "cache" => {
                    if let Some(c) = self.cache(child) {
                        caches.push(c);
                    }
                }
                "network" => {
                    if !self.once(&mut seen, child, "`run`") {
                        continue;
                    }
                    let s = Shape {
                        min: 1,
                        max: Some(1),
                        props: &[],
                        children: false,
                        usage: "network none|host",
                    };
                    if !self.shape(child, &s) {
                        continue;
                    }
                    if let Some(e) = Self::positional(child).next() {
                        network = self.typed(e, "network", |t| {
                            values::parse_keyword(
                                t,
                                "network",
                                &[("none", RunNetwork::None), ("host", RunNetwork::Host)],
                            )
                        });
                    }
                }
                "env" => {
                    if let Some(p) = self.pairs(child, true) {
                        env.extend(p);
                    }
                }
                "secret" => {
                    if let Some(sec) = self.secret(child) {
                        if let Some(prev) = secrets
                            .iter()
                            .find(|p: &&SecretMount| p.name.value == sec.name.value)
                        {
                            self.errors.push(ManifestError::DuplicateName {
                                kind: "secret".into(),
                                name: sec.name.value.clone(),
                                span: sec.name.span,
                                first: prev.name.span,
                            });
                        } else {
                            secrets.push(sec);
                        }
                    }
                }
                _ => self.unknown_node(child, "`run`", RUN_NODES),
            }
        }
        Some(Run {
            command,
            caches,
            network: network.unwrap_or(Spanned::new(RunNetwork::None, node.name.span)),
            env,
            secrets,
        })
    }

    fn secret(&mut self, node: &Node) -> Option<SecretMount> {
        let shape = Shape {
            min: 1,
            max: Some(1),
            props: &["env", "file"],
            children: false,
            usage: "secret NAME [env=VAR] [file=PATH]",
        };
        if !self.shape(node, &shape) {
            return None;
        }
        // Every value is checked, so all their errors are reported together.
        let name = self.typed(Self::positional(node).next()?, "secret name", |t| {
            values::check_secret_name(t).map(|_| t.to_owned())
        });
        let env = Self::prop(node, "env").map(|e| {
            self.typed(e, "variable name", |t| {
                values::check_env_name(t).map(|_| t.to_owned())
            })
        });
        let file = Self::prop(node, "file").map(|e| self.container_path(e));
        let name = name?;
        let env = match env {
            Some(e) => Some(e?),
            None => None,
        };
        let file = match file {
            Some(f) => f?,
            None => Spanned::new(format!("/run/secrets/{}", name.value), name.span),
        };
        Some(SecretMount { name, env, file })
    }

    fn cache(&mut self, node: &Node) -> Option<CacheMount> {
        let shape = Shape {
            min: 1,
            max: Some(1),
            props: &["id", "sharing"],
            children: false,
            usage: "cache PATH [id=ID] [sharing=shared|locked|private]",
        };
        if !self.shape(node, &shape) {
            return None;
        }
        let target = self.container_path(Self::positional(node).next()?)?;
        let id = match Self::prop(node, "id") {
            Some(e) => {
                let s = self.string(e)?;
                if s.value.is_empty() {
                    self.invalid(
                        s.span,
                        "cache id",
                        Bad {
                            reason: "the id is empty".into(),
                            help: None,
                        },
                    );
                    return None;
                }
                s
            }
            None => target.clone(),
        };
        let sharing = match Self::prop(node, "sharing") {
            Some(e) => {
                self.typed(e, "sharing mode", |t| {
                    values::parse_keyword(
                        t,
                        "sharing mode",
                        &[
                            ("shared", Sharing::Shared),
                            ("locked", Sharing::Locked),
                            ("private", Sharing::Private),
                        ],
                    )
                })?
                .value
            }
            None => Sharing::Shared,
        };
        Some(CacheMount {
            target,
            id,
            sharing,
        })
    }

    // ---- services ----------------------------------------------------------------------------

    fn service(&mut self, node: &Node) -> Option<Service> {
        let shape = Shape {
            min: 1,
            max: Some(1),
            props: &[],
            children: true,
            usage: "service NAME { image IMAGE; ... }",
        };
        if !self.shape(node, &shape) {
            return None;
        }
        let name = self.string(Self::positional(node).next()?)?;
        let name_ok = self.check(name.span, "service name", check_service_name(&name.value));
        let parent = format!("service `{}`", name.value);
        let mut seen: HashMap<String, Span> = HashMap::new();
        let mut image = None;
        let mut svc = Service {
            name: name.clone(),
            image: Spanned::new(ImageSource::Image(String::new()), name.span),
            entrypoint: None,
            command: None,
            env: Vec::new(),
            publish: Vec::new(),
            memory: None,
            cpus: None,
            pids: None,
            cap_add: Vec::new(),
            cap_drop: Vec::new(),
            security_opt: Vec::new(),
            privileged: false,
            read_only: false,
            tmpfs: Vec::new(),
            volumes: Vec::new(),
            depends_on: Vec::new(),
            healthcheck: None,
            restart: None,
            hostname: None,
            user: None,
            workdir: None,
            stop_signal: None,
            stop_timeout: None,
        };
        let mut ok = true;
        for child in node.children.iter().flatten() {
            let n = child.name.value.as_str();
            let repeatable = matches!(
                n,
                "env"
                    | "publish"
                    | "cap-add"
                    | "cap-drop"
                    | "security-opt"
                    | "tmpfs"
                    | "volume"
                    | "depends-on"
            );
            if SERVICE_NODES.contains(&n) && !repeatable && !self.once(&mut seen, child, &parent) {
                continue;
            }
            let before = self.errors.len();
            self.service_child(child, &parent, &mut svc, &mut image);
            ok &= self.errors.len() == before;
        }
        if image.is_none() && !seen.contains_key("image") {
            self.errors.push(ManifestError::MissingNode {
                node: format!("service \"{}\"", name.value),
                what: "image".into(),
                span: name.span,
                help: Some(
                    "add `image \"NAME\"`: an image of this file or NAME:TAG from the store".into(),
                ),
            });
        }
        svc.image = image?;
        name_ok?;
        ok.then_some(svc)
    }

    fn service_child(
        &mut self,
        child: &Node,
        parent: &str,
        svc: &mut Service,
        image: &mut Option<Spanned<ImageSource>>,
    ) {
        let n = child.name.value.as_str();
        let one = |usage| Shape {
            min: 1,
            max: Some(1),
            props: &[],
            children: false,
            usage,
        };
        let many = |min, usage| Shape {
            min,
            max: None,
            props: &[],
            children: false,
            usage,
        };
        let flag = |usage| Shape {
            min: 0,
            max: Some(1),
            props: &[],
            children: false,
            usage,
        };
        match n {
            "image" => {
                if self.shape(child, &one("image IMAGE"))
                    && let Some(s) = Self::positional(child).next().and_then(|e| self.string(e))
                {
                    *image = self
                        .image_source(&s, "image")
                        .map(|src| Spanned::new(src, s.span));
                }
            }
            "entrypoint" => {
                if self.shape(child, &many(0, "entrypoint ARG...")) {
                    svc.entrypoint = Some(self.strings(Self::positional(child)));
                }
            }
            "command" => {
                if self.shape(child, &many(1, "command ARG...")) {
                    svc.command = Some(self.strings(Self::positional(child)));
                }
            }
            "env" => {
                if let Some(p) = self.pairs(child, true) {
                    svc.env.extend(p);
                }
            }
            "publish" => {
                if self.shape(
                    child,
                    &many(1, "publish [HOST_IP:]HOST_PORT:CONTAINER_PORT[/udp]..."),
                ) {
                    for e in Self::positional(child) {
                        let p = match &e.value {
                            Value::Integer(i) => {
                                let r = values::parse_publish(&i.to_string());
                                self.check(e.value_span, "port mapping", r)
                                    .map(|p| Spanned::new(p, e.value_span))
                            }
                            _ => self.typed(e, "port mapping", values::parse_publish),
                        };
                        svc.publish.extend(p);
                    }
                }
            }
            "memory" => {
                if self.shape(child, &one("memory SIZE")) {
                    svc.memory = Self::positional(child).next().and_then(|e| self.size(e));
                }
            }
            "cpus" => {
                if self.shape(child, &one("cpus NUMBER")) {
                    let e = Self::positional(child).next();
                    svc.cpus = e.and_then(|e| self.cpus(e));
                }
            }
            "pids" => {
                if self.shape(child, &one("pids LIMIT")) {
                    let e = Self::positional(child).next();
                    svc.pids = e.and_then(|e| match &e.value {
                        Value::Integer(i) if *i >= 1 && *i <= i64::MAX as i128 || *i == -1 => {
                            Some(Spanned::new(*i as i64, e.value_span))
                        }
                        Value::Integer(_) => {
                            self.invalid(
                                e.value_span,
                                "pids limit",
                                Bad {
                                    reason: "the limit must be at least 1".into(),
                                    help: Some("use -1 for no limit".into()),
                                },
                            );
                            None
                        }
                        _ => {
                            self.wrong_type(e, "an integer", None);
                            None
                        }
                    });
                }
            }
            "cap-add" | "cap-drop" => {
                if self.shape(child, &many(1, "cap-add NAME... / cap-drop NAME...")) {
                    let caps: Vec<_> = Self::positional(child)
                        .filter_map(|e| self.typed(e, "capability", values::parse_capability))
                        .collect();
                    if n == "cap-add" {
                        svc.cap_add.extend(caps);
                    } else {
                        svc.cap_drop.extend(caps);
                    }
                }
            }
            "security-opt" => {
                if self.shape(child, &many(1, "security-opt OPTION...")) {
                    let opts: Vec<_> = Self::positional(child)
                        .filter_map(|e| {
                            self.typed(e, "security option", values::parse_security_opt)
                        })
                        .collect();
                    svc.security_opt.extend(opts);
                }
            }
            "privileged" | "read-only" => {
                if self.shape(child, &flag("privileged [#true|#false]")) {
                    let v = match Self::positional(child).next() {
                        Some(e) => self.bool_value(e).unwrap_or(false),
                        None => true,
                    };
                    if n == "privileged" {
                        svc.privileged = v;
                    } else {
                        svc.read_only = v;
                    }
                }
            }
            "tmpfs" => {
                let s = Shape {
                    min: 1,
                    max: Some(1),
                    props: &["size", "mode"],
                    children: false,
                    usage: "tmpfs PATH [size=SIZE] [mode=MODE]",
                };
                if self.shape(child, &s) {
                    let target = Self::positional(child)
                        .next()
                        .and_then(|e| self.container_path(e));
                    let size = Self::prop(child, "size").and_then(|e| self.size(e));
                    let mode = Self::prop(child, "mode")
                        .and_then(|e| self.typed(e, "mode", values::parse_mode));
                    if let Some(target) = target {
                        svc.tmpfs.push(Tmpfs { target, size, mode });
                    }
                }
            }
            "volume" => {
                let s = Shape {
                    min: 2,
                    max: Some(2),
                    props: &["read-only"],
                    children: false,
                    usage: "volume SOURCE TARGET [read-only=#true]",
                };
                if self.shape(child, &s) {
                    let mut pos = Self::positional(child);
                    let src = pos.next().and_then(|e| self.string(e));
                    let target = pos.next().and_then(|e| self.container_path(e));
                    let read_only = Self::prop(child, "read-only")
                        .and_then(|e| self.bool_value(e))
                        .unwrap_or(false);
                    let source = src.and_then(|s| {
                        let v = &s.value;
                        let r = if v.starts_with('/')
                            || v.starts_with("./")
                            || v.starts_with("../")
                            || v == "."
                            || v == ".."
                        {
                            Ok(VolumeSource::Bind(v.clone()))
                        } else {
                            values::check_volume_name(v).map(|_| VolumeSource::Named(v.clone()))
                        };
                        self.check(s.span, "volume source", r)
                            .map(|src| Spanned::new(src, s.span))
                    });
                    if let (Some(source), Some(target)) = (source, target) {
                        svc.volumes.push(VolumeMount {
                            source,
                            target,
                            read_only,
                        });
                    }
                }
            }
            "depends-on" => {
                let s = Shape {
                    min: 1,
                    max: None,
                    props: &["condition"],
                    children: false,
                    usage: "depends-on SERVICE... [condition=started|healthy|completed]",
                };
                if self.shape(child, &s) {
                    let condition = match Self::prop(child, "condition") {
                        Some(e) => self
                            .typed(e, "condition", |t| {
                                values::parse_keyword(
                                    t,
                                    "condition",
                                    &[
                                        ("started", Condition::Started),
                                        ("healthy", Condition::Healthy),
                                        ("completed", Condition::Completed),
                                    ],
                                )
                            })
                            .map(|c| c.value),
                        None => Some(Condition::Started),
                    };
                    for e in Self::positional(child) {
                        let Some(s) = self.string(e) else { continue };
                        if !self.services.contains_key(&s.value) {
                            let help = Some(
                                match suggest(&s.value, self.services.keys().map(String::as_str)) {
                                    Some(n) => format!("did you mean `{n}`?"),
                                    None => {
                                        format!("define `service \"{}\"` in this file", s.value)
                                    }
                                },
                            );
                            self.errors.push(ManifestError::UnknownReference {
                                kind: "service".into(),
                                name: s.value.clone(),
                                span: s.span,
                                help,
                            });
                            continue;
                        }
                        if let Some(condition) = condition {
                            svc.depends_on.push(DependsOn {
                                service: s,
                                condition,
                            });
                        }
                    }
                }
            }
            "healthcheck" => {
                let s = Shape {
                    min: 1,
                    max: None,
                    props: &["interval", "timeout", "retries", "start-period"],
                    children: false,
                    usage: "healthcheck COMMAND... [interval=DURATION] [timeout=DURATION] [retries=N] [start-period=DURATION]",
                };
                if self.shape(child, &s) {
                    let args = self.strings(Self::positional(child));
                    let interval = Self::prop(child, "interval").and_then(|e| self.duration(e));
                    let timeout = Self::prop(child, "timeout").and_then(|e| self.duration(e));
                    let start_period =
                        Self::prop(child, "start-period").and_then(|e| self.duration(e));
                    let retries = Self::prop(child, "retries").and_then(|e| match &e.value {
                        Value::Integer(i) if (1..=u32::MAX as i128).contains(i) => {
                            Some(Spanned::new(*i as u32, e.value_span))
                        }
                        Value::Integer(_) => {
                            self.invalid(
                                e.value_span,
                                "retries",
                                Bad {
                                    reason: "retries must be at least 1".into(),
                                    help: None,
                                },
                            );
                            None
                        }
                        _ => {
                            self.wrong_type(e, "an integer", None);
                            None
                        }
                    });
                    if !args.is_empty() {
                        svc.healthcheck = Some(Healthcheck {
                            command: command_of(args),
                            interval,
                            timeout,
                            start_period,
                            retries,
                        });
                    }
                }
            }
            "restart" => {
                if self.shape(
                    child,
                    &one("restart no|on-failure[:N]|always|unless-stopped"),
                ) {
                    svc.restart = Self::positional(child)
                        .next()
                        .and_then(|e| self.typed(e, "restart policy", values::parse_restart));
                }
            }
            "hostname" => {
                if self.shape(child, &one("hostname NAME")) {
                    svc.hostname = Self::positional(child)
                        .next()
                        .and_then(|e| self.typed(e, "hostname", values::parse_hostname));
                }
            }
            "user" => {
                if self.shape(child, &one("user USER[:GROUP]")) {
                    svc.user = Self::positional(child).next().and_then(|e| self.user(e));
                }
            }
            "workdir" => {
                if self.shape(child, &one("workdir PATH")) {
                    svc.workdir = Self::positional(child)
                        .next()
                        .and_then(|e| self.container_path(e));
                }
            }
            "stop-signal" => {
                if self.shape(child, &one("stop-signal SIGNAL")) {
                    svc.stop_signal = Self::positional(child).next().and_then(|e| self.signal(e));
                }
            }
            "stop-timeout" => {
                if self.shape(child, &one("stop-timeout DURATION")) {
                    svc.stop_timeout = Self::positional(child)
                        .next()
                        .and_then(|e| self.duration(e));
                }
            }
            _ => self.unknown_node(child, parent, SERVICE_NODES),
        }
    }

    fn cpus(&mut self, e: &Entry) -> Option<Spanned<f64>> {
        let v = match &e.value {
            Value::Float(f) => *f,
            Value::Integer(i) => *i as f64,
            Value::String(_) => {
                return self.typed(e, "cpus", |t| {
                    t.parse::<f64>()
                        .ok()
                        .filter(|f| f.is_finite() && *f > 0.0)
                        .ok_or(Bad {
                            reason: format!("`{t}` is not a positive number"),
                            help: Some("write e.g. cpus 0.5".into()),
                        })
                });
            }
            _ => {
                self.wrong_type(e, "a number", Some("write e.g. cpus 0.5".into()));
                return None;
            }
        };
        if !(v.is_finite() && v > 0.0) {
            self.invalid(
                e.value_span,
                "cpus",
                Bad {
                    reason: "the number of CPUs must be positive".into(),
                    help: Some("write e.g. cpus 0.5".into()),
                },
            );
            return None;
        }
        Some(Spanned::new(v, e.value_span))
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
            reason,
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
