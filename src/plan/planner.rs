//! The planner: walks the manifest's images in order and turns each instruction into a step
//! with its definition, its inputs (hashed) and its cache key; every problem it finds is kept,
//! so one plan reports them all.

use std::collections::HashMap;

use super::*;

pub(super) struct Planner<'a> {
    pub(super) opts: &'a PlanOptions<'a>,
    /// The context's `.boxrignore`.
    pub(super) ignore: crate::ignore::Ignore,
    pub(super) steps: Vec<Step>,
    pub(super) images: Vec<PlannedImage>,
    /// Image name → (its last step, its config).
    pub(super) done: HashMap<String, (Option<usize>, ImageConfig)>,
    pub(super) errors: Vec<PlanError>,
}

impl Planner<'_> {
    fn push(
        &mut self,
        image: &str,
        parent: Option<usize>,
        extra_needs: &[usize],
        parts: StepParts,
        config: &ImageConfig,
    ) -> usize {
        let parent_key = match parent {
            Some(p) => self.steps[p].key.hex(),
            None => parts.base_digest.clone().unwrap_or_default(),
        };
        let effective = config.effective();
        let key = key::step_key(
            &parent_key,
            &parts.definition.canonical(),
            &effective,
            &parts.inputs,
        );
        let id = self.steps.len();
        let mut needs: Vec<usize> = parent.into_iter().collect();
        for n in extra_needs {
            if !needs.contains(n) {
                needs.push(*n);
            }
        }
        self.steps.push(Step {
            id,
            image: image.to_owned(),
            op: parts.definition.op(),
            description: parts.description,
            key,
            parent,
            needs,
            layer: parts.layer,
            definition: parts.definition,
            key_parts: KeyParts {
                parent: parent_key,
                config: effective,
                inputs: parts.inputs,
                files: parts.files,
            },
            span: parts.span,
        });
        id
    }

    /// An input error (a diagnostic of its own) pointed at the manifest's `span`.
    fn input_error(&mut self, span: Span, label: &str, err: inputs::InputError) {
        use miette::Diagnostic;
        let help = err.help().map(|h| h.to_string());
        self.errors.push(PlanError::Input {
            message: err.to_string(),
            span,
            label: label.into(),
            help,
        });
    }

    pub(super) fn image(&mut self, img: &Image) {
        let name = img.name.value.as_str();
        let mut own_steps = Vec::new();
        let (mut current, mut config) = match &img.from.value {
            // A parent that could not be planned has reported its errors already.
            Base::Image(parent) => match self.done.get(parent) {
                Some(done) => done.clone(),
                None => return,
            },
            base => {
                let Some(parts) = self.base_step(base, img.from.span) else {
                    return;
                };
                let cfg = ImageConfig::new();
                let id = self.push(name, None, &[], parts, &cfg);
                own_steps.push(id);
                (Some(id), cfg)
            }
        };
        let mut cmd_set = false;
        for ins in &img.instructions {
            let mut extra = Vec::new();
            let parts = match &ins.value {
                Instruction::Env(pairs) => {
                    let set = pair_texts(pairs);
                    for (k, v) in &set {
                        config.set_env(k, v);
                    }
                    let desc = set
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(" ");
                    StepParts::config(format!("env {desc}"), StepDef::Env { set }, ins.span)
                }
                Instruction::Label(pairs) => {
                    for (k, v) in pairs {
                        config.labels.insert(k.value.clone(), v.value.clone());
                    }
                    let set = pair_texts(pairs);
                    let desc = set
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(" ");
                    StepParts::config(format!("label {desc}"), StepDef::Label { set }, ins.span)
                }
                Instruction::Workdir(p) => {
                    config.workdir = normalize(&config.resolve(&p.value));
                    // The directory is created in the image, so workdir makes a layer.
                    StepParts {
                        layer: true,
                        ..StepParts::config(
                            format!("workdir {}", config.workdir),
                            StepDef::Workdir {
                                path: config.workdir.clone(),
                            },
                            ins.span,
                        )
                    }
                }
                Instruction::User(u) => {
                    config.user = Some(u.value.to_string());
                    StepParts::config(
                        format!("user {}", u.value),
                        StepDef::User {
                            user: u.value.to_string(),
                        },
                        ins.span,
                    )
                }
                Instruction::Expose(ports) => {
                    let ps: Vec<String> = ports.iter().map(|p| p.value.to_string()).collect();
                    config.exposed_ports.extend(ps.iter().cloned());
                    StepParts::config(
                        format!("expose {}", ps.join(" ")),
                        StepDef::Expose { ports: ps },
                        ins.span,
                    )
                }
                Instruction::Entrypoint(args) => {
                    let a = texts(args);
                    if !cmd_set {
                        config.cmd = None;
                    }
                    config.entrypoint = Some(a.clone());
                    StepParts::config(
                        format!("entrypoint {}", argv(&a)),
                        StepDef::Entrypoint { args: a },
                        ins.span,
                    )
                }
                Instruction::Cmd(args) => {
                    let a = texts(args);
                    cmd_set = true;
                    config.cmd = Some(a.clone());
                    StepParts::config(
                        format!("cmd {}", argv(&a)),
                        StepDef::Cmd { args: a },
                        ins.span,
                    )
                }
                Instruction::Shell(args) => {
                    let a = texts(args);
                    config.shell = a.clone();
                    StepParts::config(
                        format!("shell {}", argv(&a)),
                        StepDef::Shell { args: a },
                        ins.span,
                    )
                }
                Instruction::Volume(paths) => {
                    let a = texts(paths);
                    config.volumes.extend(a.iter().cloned());
                    StepParts::config(
                        format!("volume {}", a.join(" ")),
                        StepDef::Volume { paths: a },
                        ins.span,
                    )
                }
                Instruction::StopSignal(s) => {
                    config.stop_signal = Some(s.value.to_string());
                    StepParts::config(
                        format!("stop-signal {}", s.value),
                        StepDef::StopSignal {
                            signal: s.value.to_string(),
                        },
                        ins.span,
                    )
                }
                Instruction::Run(run) => {
                    let command = match &run.command {
                        Command::Shell(s) => RunCommand::Shell(s.value.clone()),
                        Command::Exec(a) => RunCommand::Exec(texts(a)),
                    };
                    let description = match &command {
                        RunCommand::Shell(s) => format!("run {s}"),
                        RunCommand::Exec(a) => format!("run {}", argv(a)),
                    };
                    let definition = StepDef::Run(RunDef {
                        command,
                        env: pair_texts(&run.env),
                        network: run.network.value,
                        caches: run
                            .caches
                            .iter()
                            .map(|c| CacheDef {
                                target: c.target.value.clone(),
                                id: c.id.value.clone(),
                                sharing: c.sharing,
                            })
                            .collect(),
                        secrets: run
                            .secrets
                            .iter()
                            .map(|s| SecretDef {
                                name: s.name.value.clone(),
                                env: s.env.as_ref().map(|e| e.value.clone()),
                                file: s.file.value.clone(),
                            })
                            .collect(),
                    });
                    StepParts {
                        description,
                        definition,
                        inputs: Vec::new(),
                        files: Vec::new(),
                        layer: true,
                        base_digest: None,
                        span: ins.span,
                    }
                }
                Instruction::Copy(copy) => {
                    let Some((parts, needs)) = self.copy(copy, &config, ins.span) else {
                        continue;
                    };
                    extra = needs;
                    parts
                }
            };
            let id = self.push(name, current, &extra, parts, &config);
            own_steps.push(id);
            current = Some(id);
        }
        let key = match current {
            Some(id) => self.steps[id].key,
            None => return,
        };
        self.images.push(PlannedImage {
            name: name.to_owned(),
            key,
            steps: own_steps,
            needs: image_deps(img).into_iter().map(str::to_owned).collect(),
            config: config.clone(),
        });
        self.done.insert(name.to_owned(), (current, config));
    }

    fn base_step(&mut self, base: &Base, span: Span) -> Option<StepParts> {
        let dir = self.opts.manifest_dir;
        // `./x` under `.` reads better in messages as `./x` than `././x`.
        let under = |p: &str| {
            if dir == Path::new(".") {
                Path::new(p).to_owned()
            } else {
                dir.join(p)
            }
        };
        let (what, digest) = match base {
            Base::Scratch => ("scratch".to_owned(), Ok("scratch".to_owned())),
            Base::Dir(p) => (
                format!("dir:{p}"),
                inputs::dir_base(&under(p), self.opts.hashes).map(|d| d.to_string()),
            ),
            Base::Tar(p) => (
                format!("tar:{p}"),
                inputs::file_digest(&under(p)).map(|d| d.to_string()),
            ),
            Base::Oci { path, tag } => (
                match tag {
                    Some(t) => format!("oci:{path}:{t}"),
                    None => format!("oci:{path}"),
                },
                inputs::oci_manifest(&under(path), tag.as_deref()),
            ),
            Base::Store(r) => match self.opts.resolver.resolve(r) {
                Some(d) => (r.to_string(), Ok(d)),
                None => {
                    self.errors.push(PlanError::ImageNotFound {
                        reference: r.to_string(),
                        span,
                    });
                    return None;
                }
            },
            Base::Image(_) => unreachable!("in-file bases have no base step"),
        };
        let digest = match digest {
            Ok(d) => d,
            Err(e) => {
                self.input_error(span, "cannot read this base", e);
                return None;
            }
        };
        let kind = match base {
            Base::Scratch => BaseKind::Scratch,
            Base::Dir(_) => BaseKind::Dir,
            Base::Tar(_) => BaseKind::Tar,
            Base::Oci { .. } => BaseKind::Oci,
            Base::Store(_) => BaseKind::Image,
            Base::Image(_) => unreachable!(),
        };
        Some(StepParts {
            description: format!("from {what}"),
            // The digest, not the path, identifies the base: moving the context keeps keys.
            definition: StepDef::From { kind },
            inputs: Vec::new(),
            files: Vec::new(),
            layer: !matches!(base, Base::Scratch),
            base_digest: Some(digest),
            span,
        })
    }

    fn copy(
        &mut self,
        copy: &Copy,
        config: &ImageConfig,
        span: Span,
    ) -> Option<(StepParts, Vec<usize>)> {
        let sources: Vec<&str> = copy.sources.iter().map(|s| s.value.as_str()).collect();
        // A destination ending in `/` (or `.`) is a directory: keep that after normalizing.
        let dir_dest =
            copy.to.value.ends_with('/') || copy.to.value.ends_with("/.") || copy.to.value == ".";
        let mut to = normalize(&config.resolve(&copy.to.value));
        if dir_dest && !to.ends_with('/') {
            to.push('/');
        }
        let chmod = copy.chmod.as_ref().map(|m| m.value);
        let mut needs = Vec::new();
        let mut files = Vec::new();
        let (from, input) = match &copy.from {
            None => match inputs::copy_sources_listed(
                self.opts.context,
                &sources,
                chmod,
                &self.ignore,
                self.opts.hashes,
                Some(&mut files),
            ) {
                Ok(d) => (None, d.to_string()),
                Err(e) => {
                    let at = match &e {
                        inputs::InputError::NotFound { path, .. }
                        | inputs::InputError::Outside { path, .. } => copy
                            .sources
                            .iter()
                            .find(|s| s.value == *path)
                            .map_or(span, |s| s.span),
                        _ => span,
                    };
                    self.input_error(at, "cannot copy this", e);
                    return None;
                }
            },
            Some(src) => match &src.value {
                ImageSource::Image(other) => {
                    let Some((Some(last), _)) = self.done.get(other) else {
                        return None; // `other` failed to plan and reported why
                    };
                    needs.push(*last);
                    (Some(other.clone()), self.steps[*last].key.hex())
                }
                ImageSource::Store(r) => match self.opts.resolver.resolve(r) {
                    Some(d) => (Some(r.to_string()), d),
                    None => {
                        self.errors.push(PlanError::ImageNotFound {
                            reference: r.to_string(),
                            span: src.span,
                        });
                        return None;
                    }
                },
            },
        };
        let chown = copy.chown.as_ref().map(|c| c.value.to_string());
        let mut description = format!("copy {} → {to}", sources.join(" "));
        if let Some(f) = &copy.from {
            let name = match &f.value {
                ImageSource::Image(n) => n.clone(),
                ImageSource::Store(r) => r.to_string(),
            };
            description.push_str(&format!(" (from {name})"));
        }
        Some((
            StepParts {
                description,
                definition: StepDef::Copy(CopyDef {
                    sources: sources.iter().map(|s| (*s).to_owned()).collect(),
                    to,
                    from,
                    chmod,
                    chown,
                }),
                inputs: vec![input],
                files,
                layer: true,
                base_digest: None,
                span,
            },
            needs,
        ))
    }
}

/// What a step contributes to the plan before its key is computed.
struct StepParts {
    description: String,
    definition: StepDef,
    inputs: Vec<String>,
    /// See [`KeyParts::files`].
    files: Vec<(String, String)>,
    layer: bool,
    base_digest: Option<String>,
    span: Span,
}

impl StepParts {
    fn config(description: String, definition: StepDef, span: Span) -> Self {
        StepParts {
            description,
            definition,
            inputs: Vec::new(),
            files: Vec::new(),
            layer: false,
            base_digest: None,
            span,
        }
    }
}

fn texts(v: &[crate::manifest::Spanned<String>]) -> Vec<String> {
    v.iter().map(|s| s.value.clone()).collect()
}

fn pair_texts(v: &[crate::manifest::Pair]) -> Vec<(String, String)> {
    v.iter()
        .map(|(k, val)| (k.value.clone(), val.value.clone()))
        .collect()
}

/// An argv shown as a JSON array, the way Dockerfile exec form reads.
fn argv(a: &[String]) -> String {
    serde_json::to_string(a).expect("strings serialize")
}

/// Collapses `.`, `..` and repeated slashes of an absolute path.
fn normalize(path: &str) -> String {
    format!("/{}", crate::ignore::clean(path))
}
