//! Lowering `service` nodes: each child of a service checked against its shape and type.

use super::*;

/// The most containers one service may ask for.
pub const MAX_REPLICAS: u32 = 100;

impl Lowerer<'_> {
    pub(super) fn service(&mut self, node: &Node) -> Option<Service> {
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
            replicas: None,
            networks: Vec::new(),
            env_files: Vec::new(),
            profiles: Vec::new(),
            no_healthcheck: false,
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
                    | "env-file"
                    | "profiles"
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

    pub(super) fn service_child(
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
                    &many(1, "publish [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/udp]..."),
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
                    props: &[
                        "interval",
                        "timeout",
                        "retries",
                        "start-period",
                        "start-interval",
                    ],
                    children: false,
                    usage: "healthcheck COMMAND... [interval=DURATION] [timeout=DURATION] [retries=N] [start-period=DURATION] [start-interval=DURATION], or healthcheck \"NONE\"",
                };
                if self.shape(child, &s) {
                    let args = self.strings(Self::positional(child));
                    if args.len() == 1 && args[0].value == "NONE" {
                        if let Some(k) = child.entries.iter().find_map(|e| e.key.as_ref()) {
                            self.invalid(
                                k.span,
                                "healthcheck",
                                Bad {
                                    reason: "`healthcheck \"NONE\"` takes no properties".into(),
                                    help: Some("NONE turns the image's health check off".into()),
                                },
                            );
                        }
                        svc.no_healthcheck = true;
                        return;
                    }
                    let start_interval =
                        Self::prop(child, "start-interval").and_then(|e| self.duration(e));
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
                            start_interval,
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
            "replicas" => {
                if self.shape(child, &one("replicas N")) {
                    let e = Self::positional(child).next();
                    svc.replicas = e.and_then(|e| match &e.value {
                        Value::Integer(i) if (0..=MAX_REPLICAS as i128).contains(i) => {
                            Some(Spanned::new(*i as u32, e.value_span))
                        }
                        Value::Integer(_) => {
                            self.invalid(
                                e.value_span,
                                "replicas",
                                Bad {
                                    reason: format!("replicas must be 0 to {MAX_REPLICAS}"),
                                    help: None,
                                },
                            );
                            None
                        }
                        _ => {
                            self.wrong_type(e, "an integer", Some("write e.g. replicas 3".into()));
                            None
                        }
                    });
                }
            }
            "network" => {
                if !self.shape(child, &many(1, "network NAME...")) {
                    return;
                }
                let names: Vec<Spanned<String>> = Self::positional(child)
                    .filter_map(|e| self.string(e))
                    .collect();
                for s in names {
                    if let Some(first) = svc.networks.iter().find(|n| n.value == s.value) {
                        self.errors.push(ManifestError::DuplicateNode {
                            name: s.value.clone(),
                            parent: format!("the networks of service `{}`", svc.name.value),
                            span: s.span,
                            first: first.span,
                        });
                    } else if s.value != "default" && !self.networks.contains_key(&s.value) {
                        let help = Some(
                            match suggest(&s.value, self.networks.keys().map(String::as_str)) {
                                Some(n) => format!("did you mean `{n}`?"),
                                None => format!(
                                    "declare it at the top level: `network \"{}\"` (add external=#true for one made by `boxr network create`)",
                                    s.value
                                ),
                            },
                        );
                        self.errors.push(ManifestError::UnknownReference {
                            kind: "network".into(),
                            name: s.value.clone(),
                            span: s.span,
                            help,
                        });
                    } else {
                        svc.networks.push(s);
                    }
                }
            }
            "env-file" => {
                if self.shape(child, &many(1, "env-file PATH...")) {
                    let files = self.strings(Self::positional(child));
                    svc.env_files.extend(files);
                }
            }
            "profiles" => {
                if self.shape(child, &many(1, "profiles NAME...")) {
                    for e in Self::positional(child) {
                        if let Some(p) = self.string(e)
                            && self
                                .check(p.span, "profile", check_service_name(&p.value))
                                .is_some()
                        {
                            svc.profiles.push(p);
                        }
                    }
                }
            }
            _ => self.unknown_node(child, parent, SERVICE_NODES),
        }
    }

    /// `network "NAME" [external=#true] [internal=#true] [subnet="CIDR"]` at the top level.
    pub(super) fn network_decl(&mut self, node: &Node) -> Option<NetworkDecl> {
        let shape = Shape {
            min: 1,
            max: Some(1),
            props: &["external", "internal", "subnet"],
            children: false,
            usage: "network NAME [external=#true] [internal=#true] [subnet=CIDR]",
        };
        if !self.shape(node, &shape) {
            return None;
        }
        let name = self.string(Self::positional(node).next()?)?;
        let name_ok = self.check(name.span, "network name", check_service_name(&name.value));
        let flag = |this: &mut Self, key| {
            Self::prop(node, key)
                .and_then(|e| this.bool_value(e))
                .unwrap_or(false)
        };
        let external = flag(self, "external");
        let internal = flag(self, "internal");
        let subnet = Self::prop(node, "subnet").and_then(|e| self.string(e));
        if external && let Some(e) = Self::prop(node, "subnet").or(Self::prop(node, "internal")) {
            self.invalid(
                e.span,
                "network",
                Bad {
                    reason: "an external network is made elsewhere: it takes no settings".into(),
                    help: Some("give them to `boxr network create`".into()),
                },
            );
            return None;
        }
        if name.value == "default" && external {
            self.invalid(
                name.span,
                "network",
                Bad {
                    reason: "the stack's `default` network cannot be external".into(),
                    help: Some(
                        "name the external network, and put services on it with `network \"NAME\"`"
                            .into(),
                    ),
                },
            );
            return None;
        }
        name_ok?;
        Some(NetworkDecl {
            name,
            external,
            internal,
            subnet,
        })
    }

    pub(super) fn cpus(&mut self, e: &Entry) -> Option<Spanned<f64>> {
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
