//! Lowering `image` nodes: the base (`from`), instructions, `copy`, `run` and its `cache`,
//! `secret`, `network` and `env` children.

use super::*;

impl Lowerer<'_> {
    pub(super) fn image(&mut self, node: &Node) -> Option<Image> {
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

    pub(super) fn from(&mut self, node: &Node) -> Option<Spanned<Base>> {
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

    pub(super) fn local_path(&mut self, p: &str, span: Span, prefix: &str) -> Option<String> {
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
    pub(super) fn image_source(&mut self, s: &Spanned<String>, what: &str) -> Option<ImageSource> {
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
                            reason: reason.to_string(),
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

    pub(super) fn instruction(&mut self, node: &Node, parent: &str) -> Option<Instruction> {
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

    pub(super) fn user(&mut self, e: &Entry) -> Option<Spanned<UserSpec>> {
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

    pub(super) fn signal(&mut self, e: &Entry) -> Option<Spanned<Signal>> {
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

    pub(super) fn port_spec(&mut self, e: &Entry) -> Option<Spanned<PortSpec>> {
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
    pub(super) fn pairs(&mut self, node: &Node, env: bool) -> Option<Vec<Pair>> {
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

    pub(super) fn copy(&mut self, node: &Node) -> Option<Copy> {
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

    pub(super) fn run(&mut self, node: &Node) -> Option<Run> {
        let shape = Shape {
            min: 1,
            max: None,
            props: &[],
            children: true,
            usage: "run \"SHELL COMMAND\" | run EXECUTABLE ARG... [{ cache PATH; network none|host|bridge; env NAME VALUE }]",
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
                        usage: "network none|host|bridge",
                    };
                    if !self.shape(child, &s) {
                        continue;
                    }
                    if let Some(e) = Self::positional(child).next() {
                        network = self.typed(e, "network", |t| {
                            values::parse_keyword(
                                t,
                                "network",
                                &[
                                    ("none", RunNetwork::None),
                                    ("host", RunNetwork::Host),
                                    ("bridge", RunNetwork::Bridge),
                                ],
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

    pub(super) fn secret(&mut self, node: &Node) -> Option<SecretMount> {
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

    pub(super) fn cache(&mut self, node: &Node) -> Option<CacheMount> {
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
}
