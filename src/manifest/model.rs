//! The typed manifest. Every value keeps the span of the token it came from, so that later
//! stages (plan, build, up) can point their own errors at the manifest.

use std::ops::Deref;

pub use super::syntax::Span;
use crate::reference::ImageRef;
pub use crate::values::{
    CapName, Id, PortSpec, Proto, Publish, RestartPolicy, SecurityOpt, Signal, UserSpec,
};

/// A value and the span of the token it was read from.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

impl<T> Spanned<T> {
    pub fn new(value: T, span: Span) -> Self {
        Spanned { value, span }
    }
}

impl<T> Deref for Spanned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// A `KEY VALUE` pair (env, label).
pub type Pair = (Spanned<String>, Spanned<String>);

/// A whole `boxr.kdl`, with every `${NAME}` already replaced by its arg's value.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// How the file is named in diagnostics (as given on the command line).
    pub name: String,
    /// The file's text, for diagnostics of later stages that point into it.
    pub source: std::sync::Arc<str>,
    pub args: Vec<Arg>,
    pub images: Vec<Image>,
    pub services: Vec<Service>,
    /// Top-level `network` nodes: the networks a stack's services may join.
    pub networks: Vec<NetworkDecl>,
}

/// `network "NAME" [external=#true] [internal=#true] [subnet="CIDR"]`: a network of a stack.
/// Without `external`, `boxr up` makes it as `PROJECT_NAME` and `down` removes it; an external
/// one exists already (made by `boxr network create`) and is joined by its own name.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkDecl {
    pub name: Spanned<String>,
    pub external: bool,
    pub internal: bool,
    pub subnet: Option<Spanned<String>>,
}

impl Manifest {
    pub fn image(&self, name: &str) -> Option<&Image> {
        self.images.iter().find(|i| i.name.value == name)
    }
}

/// `arg "NAME" default="VALUE"`.
#[derive(Debug, Clone, PartialEq)]
pub struct Arg {
    pub name: Spanned<String>,
    pub default: Option<Spanned<String>>,
    /// The value in effect: the override given on the command line, else the default, else "".
    pub value: String,
}

/// `image "NAME" { from ...; instructions... }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub name: Spanned<String>,
    pub from: Spanned<Base>,
    pub instructions: Vec<Spanned<Instruction>>,
}

/// Where an image starts.
#[derive(Debug, Clone, PartialEq)]
pub enum Base {
    Scratch,
    /// Another image of this file.
    Image(String),
    /// `dir:PATH`: a rootfs directory, relative to the manifest's directory.
    Dir(String),
    /// `tar:PATH`: a rootfs tarball (.tar, .tar.gz, .tar.zst), relative to the manifest's directory.
    Tar(String),
    /// `oci:PATH[:TAG]`: an OCI image layout, relative to the manifest's directory.
    Oci {
        path: String,
        tag: Option<String>,
    },
    /// An image in the store (or, later, a registry), by reference.
    Store(ImageRef),
}

/// An image that a `copy from=` reads from.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageSource {
    /// Another image of this file.
    Image(String),
    /// An image in the store.
    Store(ImageRef),
}

/// One build instruction of an image, in file order.
#[derive(Debug, Clone, PartialEq)]
pub enum Instruction {
    Env(Vec<Pair>),
    Workdir(Spanned<String>),
    Copy(Copy),
    Run(Run),
    User(Spanned<UserSpec>),
    Expose(Vec<Spanned<PortSpec>>),
    Entrypoint(Vec<Spanned<String>>),
    Cmd(Vec<Spanned<String>>),
    Label(Vec<Pair>),
    Shell(Vec<Spanned<String>>),
    Volume(Vec<Spanned<String>>),
    StopSignal(Spanned<Signal>),
}

/// `copy SRC... to=DEST [from=IMAGE] [chmod=MODE] [chown=USER[:GROUP]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Copy {
    pub sources: Vec<Spanned<String>>,
    pub to: Spanned<String>,
    pub from: Option<Spanned<ImageSource>>,
    pub chmod: Option<Spanned<u32>>,
    pub chown: Option<Spanned<UserSpec>>,
}

/// A command: one argument is shell form (run by the image's `shell`), several are exec form.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Shell(Spanned<String>),
    Exec(Vec<Spanned<String>>),
}

/// `run ... { cache ...; network ...; env ... }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub command: Command,
    pub caches: Vec<CacheMount>,
    pub network: Spanned<RunNetwork>,
    pub env: Vec<Pair>,
    pub secrets: Vec<SecretMount>,
}

/// `secret "NAME" [env="VAR"] [file="/run/secrets/NAME"]`: a secret for one step, as a file on
/// a tmpfs (and in an environment variable with `env=`). Its value comes from
/// `boxr build --secret`, never from the manifest, and enters no layer, key or log.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretMount {
    pub name: Spanned<String>,
    pub env: Option<Spanned<String>>,
    /// Defaults to `/run/secrets/NAME`.
    pub file: Spanned<String>,
}

/// The network of a `run` step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunNetwork {
    None,
    Host,
    /// The default bridge network: egress through NAT, nothing published.
    Bridge,
}

/// `cache "/path" id="ID" sharing="shared|locked|private"`: a persistent cache directory.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheMount {
    pub target: Spanned<String>,
    /// Defaults to the target path.
    pub id: Spanned<String>,
    pub sharing: Sharing,
}

/// How concurrent steps share one cache mount (BuildKit's modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    Shared,
    Locked,
    Private,
}

/// `service "NAME" { ... }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub name: Spanned<String>,
    pub image: Spanned<ImageSource>,
    pub entrypoint: Option<Vec<Spanned<String>>>,
    pub command: Option<Vec<Spanned<String>>>,
    pub env: Vec<Pair>,
    pub publish: Vec<Spanned<Publish>>,
    pub memory: Option<Spanned<u64>>,
    pub cpus: Option<Spanned<f64>>,
    pub pids: Option<Spanned<i64>>,
    pub cap_add: Vec<Spanned<CapName>>,
    pub cap_drop: Vec<Spanned<CapName>>,
    pub security_opt: Vec<Spanned<SecurityOpt>>,
    pub privileged: bool,
    pub read_only: bool,
    pub tmpfs: Vec<Tmpfs>,
    pub volumes: Vec<VolumeMount>,
    pub depends_on: Vec<DependsOn>,
    pub healthcheck: Option<Healthcheck>,
    pub restart: Option<Spanned<RestartPolicy>>,
    pub hostname: Option<Spanned<String>>,
    pub user: Option<Spanned<UserSpec>>,
    pub workdir: Option<Spanned<String>>,
    pub stop_signal: Option<Spanned<Signal>>,
    pub stop_timeout: Option<Spanned<std::time::Duration>>,
    /// `replicas N`: how many containers run it (default 1; 0 runs none).
    pub replicas: Option<Spanned<u32>>,
    /// `network "NAME"...`: the stack networks it joins, its first one first (default: the
    /// stack's `default`).
    pub networks: Vec<Spanned<String>>,
    /// `env-file "PATH"`: `KEY=VALUE` lines (relative to the manifest's directory), before `env`.
    pub env_files: Vec<Spanned<String>>,
    /// `profiles "NAME"...`: started only when one of them is active (or it is named).
    pub profiles: Vec<Spanned<String>>,
    /// `healthcheck "NONE"`: no health check, whatever the image says.
    pub no_healthcheck: bool,
}

/// `tmpfs "/path" size="64MiB" mode="1777"`.
#[derive(Debug, Clone, PartialEq)]
pub struct Tmpfs {
    pub target: Spanned<String>,
    pub size: Option<Spanned<u64>>,
    pub mode: Option<Spanned<u32>>,
}

/// `volume SRC DST [read-only=#true]`.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeMount {
    pub source: Spanned<VolumeSource>,
    pub target: Spanned<String>,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum VolumeSource {
    /// A host path, relative to the manifest's directory unless absolute.
    Bind(String),
    /// A named volume managed by the store.
    Named(String),
}

/// `depends-on "NAME" condition="started|healthy|completed"`.
#[derive(Debug, Clone, PartialEq)]
pub struct DependsOn {
    pub service: Spanned<String>,
    pub condition: Condition,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Started,
    Healthy,
    Completed,
}

/// `healthcheck CMD... interval= timeout= retries= start-period=`.
#[derive(Debug, Clone, PartialEq)]
pub struct Healthcheck {
    pub command: Command,
    pub interval: Option<Spanned<std::time::Duration>>,
    pub timeout: Option<Spanned<std::time::Duration>>,
    pub start_period: Option<Spanned<std::time::Duration>>,
    /// The interval of checks during the start period (default: `interval`).
    pub start_interval: Option<Spanned<std::time::Duration>>,
    pub retries: Option<Spanned<u32>>,
}
