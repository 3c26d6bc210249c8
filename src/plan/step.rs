//! [`StepDef`]: what one build step does, typed, as the planner hands it to the build engine.
//!
//! The cache key hashes a step's **canonical definition** ([`StepDef::canonical`]): compact JSON
//! with sorted object keys, exactly the bytes key schema v1 has always hashed (see [`super::key`]),
//! so this type changed no key. The same JSON is what a build record keeps for
//! `boxr build --explain` and what `boxr plan --json` prints. A new field must leave the JSON of
//! steps that do not use it unchanged (as `secrets` does: absent when empty), or bump
//! [`super::SCHEMA`] deliberately.

use serde::{Serialize, Serializer};
use serde_json::{Value, json};

pub use crate::manifest::{RunNetwork, Sharing};

/// The kind of base a `from` step starts from (its digest is the step's parent key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseKind {
    Scratch,
    Dir,
    Tar,
    Oci,
    /// An image of the store.
    Image,
}

impl BaseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BaseKind::Scratch => "scratch",
            BaseKind::Dir => "dir",
            BaseKind::Tar => "tar",
            BaseKind::Oci => "oci",
            BaseKind::Image => "image",
        }
    }
}

/// A `run` step's command: shell form (run by the image's `shell`) or exec form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunCommand {
    Shell(String),
    Exec(Vec<String>),
}

/// A persistent cache directory of a `run` step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheDef {
    pub target: String,
    pub id: String,
    pub sharing: Sharing,
}

/// Where a secret appears in a `run` step (never its value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretDef {
    pub name: String,
    pub env: Option<String>,
    pub file: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDef {
    pub command: RunCommand,
    /// Variables for this step only, in manifest order.
    pub env: Vec<(String, String)>,
    pub network: RunNetwork,
    pub caches: Vec<CacheDef>,
    pub secrets: Vec<SecretDef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyDef {
    /// Relative to the build context, or to the root of `from`.
    pub sources: Vec<String>,
    /// Absolute and normalized; ends in `/` when it names a directory.
    pub to: String,
    /// Another image (of this file or the store) to copy from, by the name the manifest uses.
    pub from: Option<String>,
    pub chmod: Option<u32>,
    /// `USER[:GROUP]`, resolved through the destination image's files.
    pub chown: Option<String>,
}

/// One build step's definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepDef {
    From { kind: BaseKind },
    Env { set: Vec<(String, String)> },
    Label { set: Vec<(String, String)> },
    Workdir { path: String },
    User { user: String },
    Expose { ports: Vec<String> },
    Entrypoint { args: Vec<String> },
    Cmd { args: Vec<String> },
    Shell { args: Vec<String> },
    Volume { paths: Vec<String> },
    StopSignal { signal: String },
    Run(RunDef),
    Copy(CopyDef),
}

impl StepDef {
    /// The step's name in the manifest (`from`, `env`, `run`, `copy`, ...).
    pub fn op(&self) -> &'static str {
        match self {
            StepDef::From { .. } => "from",
            StepDef::Env { .. } => "env",
            StepDef::Label { .. } => "label",
            StepDef::Workdir { .. } => "workdir",
            StepDef::User { .. } => "user",
            StepDef::Expose { .. } => "expose",
            StepDef::Entrypoint { .. } => "entrypoint",
            StepDef::Cmd { .. } => "cmd",
            StepDef::Shell { .. } => "shell",
            StepDef::Volume { .. } => "volume",
            StepDef::StopSignal { .. } => "stop-signal",
            StepDef::Run(_) => "run",
            StepDef::Copy(_) => "copy",
        }
    }

    /// The canonical JSON that goes into the step's key (key schema v1; see the module doc).
    pub fn canonical(&self) -> Value {
        let op = self.op();
        match self {
            StepDef::From { kind } => json!({"op": op, "kind": kind.as_str()}),
            StepDef::Env { set } | StepDef::Label { set } => json!({"op": op, "set": set}),
            StepDef::Workdir { path } => json!({"op": op, "path": path}),
            StepDef::User { user } => json!({"op": op, "user": user}),
            StepDef::Expose { ports } => json!({"op": op, "ports": ports}),
            StepDef::Entrypoint { args } | StepDef::Cmd { args } | StepDef::Shell { args } => {
                json!({"op": op, "args": args})
            }
            StepDef::Volume { paths } => json!({"op": op, "paths": paths}),
            StepDef::StopSignal { signal } => json!({"op": op, "signal": signal}),
            StepDef::Run(r) => {
                let (form, cmd) = match &r.command {
                    RunCommand::Shell(s) => ("shell", vec![s.clone()]),
                    RunCommand::Exec(a) => ("exec", a.clone()),
                };
                let caches: Vec<Value> = r
                    .caches
                    .iter()
                    .map(|c| {
                        let sharing = match c.sharing {
                            Sharing::Shared => "shared",
                            Sharing::Locked => "locked",
                            Sharing::Private => "private",
                        };
                        json!({"target": c.target, "id": c.id, "sharing": sharing})
                    })
                    .collect();
                let network = match r.network {
                    RunNetwork::None => "none",
                    RunNetwork::Host => "host",
                    RunNetwork::Bridge => "bridge",
                };
                let mut v = json!({"op": op, form: cmd, "env": r.env, "network": network, "caches": caches});
                if !r.secrets.is_empty() {
                    // Added only when present, so the keys of steps without secrets stay as
                    // schema v1 has them.
                    v["secrets"] = r
                        .secrets
                        .iter()
                        .map(|s| json!({"name": s.name, "env": s.env, "file": s.file}))
                        .collect();
                }
                v
            }
            StepDef::Copy(c) => json!({
                "op": op,
                "sources": c.sources,
                "to": c.to,
                "from": c.from,
                "chmod": c.chmod.map(|m| format!("{m:04o}")),
                "chown": c.chown,
            }),
        }
    }
}

impl Serialize for StepDef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.canonical().serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// The canonical bytes are key schema v1's: each line is what the untyped planner hashed.
    #[test]
    fn canonical_json_is_schema_v1() {
        let cases = [
            (
                StepDef::From {
                    kind: BaseKind::Dir,
                },
                r#"{"kind":"dir","op":"from"}"#,
            ),
            (
                StepDef::Env {
                    set: pairs(&[("A", "1")]),
                },
                r#"{"op":"env","set":[["A","1"]]}"#,
            ),
            (
                StepDef::Workdir {
                    path: "/src".into(),
                },
                r#"{"op":"workdir","path":"/src"}"#,
            ),
            (
                StepDef::StopSignal {
                    signal: "SIGTERM".into(),
                },
                r#"{"op":"stop-signal","signal":"SIGTERM"}"#,
            ),
            (
                StepDef::Run(RunDef {
                    command: RunCommand::Shell("make".into()),
                    env: pairs(&[("CI", "1")]),
                    network: RunNetwork::None,
                    caches: vec![CacheDef {
                        target: "/c".into(),
                        id: "/c".into(),
                        sharing: Sharing::Locked,
                    }],
                    secrets: vec![],
                }),
                r#"{"caches":[{"id":"/c","sharing":"locked","target":"/c"}],"env":[["CI","1"]],"network":"none","op":"run","shell":["make"]}"#,
            ),
            (
                StepDef::Run(RunDef {
                    command: RunCommand::Exec(vec!["a".into(), "b".into()]),
                    env: vec![],
                    network: RunNetwork::Host,
                    caches: vec![],
                    secrets: vec![SecretDef {
                        name: "tok".into(),
                        env: None,
                        file: "/run/secrets/tok".into(),
                    }],
                }),
                r#"{"caches":[],"env":[],"exec":["a","b"],"network":"host","op":"run","secrets":[{"env":null,"file":"/run/secrets/tok","name":"tok"}]}"#,
            ),
            (
                StepDef::Copy(CopyDef {
                    sources: vec!["a".into()],
                    to: "/x/".into(),
                    from: None,
                    chmod: Some(0o755),
                    chown: None,
                }),
                r#"{"chmod":"0755","chown":null,"from":null,"op":"copy","sources":["a"],"to":"/x/"}"#,
            ),
        ];
        for (def, want) in cases {
            assert_eq!(def.canonical().to_string(), want);
            assert_eq!(serde_json::to_string(&def).unwrap(), want);
        }
    }
}
