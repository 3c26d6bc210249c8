//! Build secrets: the values of the secrets a plan's `run` steps mount, from
//! `--secret id=NAME,src=FILE|env=VAR` or else the environment variable NAME. A value is held
//! in memory here and reaches a step only as a 0400 file on a tmpfs (see `step::run`); it never
//! enters a layer, a key or a log.

use std::collections::BTreeMap;

use crate::plan::{Plan, StepDef};

/// A `--secret` that cannot be used.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("--secret {spec}: {reason}")]
#[diagnostic(code(boxr::build::secret))]
pub struct SecretError {
    /// The option's text, as given.
    pub spec: String,
    pub reason: String,
}

fn bad(spec: &str, reason: String) -> SecretError {
    SecretError {
        spec: spec.to_owned(),
        reason,
    }
}

/// The values of the secrets the plan's steps mount: `--secret id=NAME,src=FILE|env=VAR`, else
/// the environment variable NAME. A secret with no value is only an error if its step runs.
pub fn resolve(specs: &[String], plan: &Plan) -> Result<BTreeMap<String, Vec<u8>>, SecretError> {
    let mut out = BTreeMap::new();
    for spec in specs {
        let mut id = None;
        let mut value = None;
        for part in spec.split(',') {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| bad(spec, "write id=NAME,src=FILE or id=NAME,env=VAR".into()))?;
            match k {
                "id" => id = Some(v.to_owned()),
                "src" | "source" => {
                    value = Some(
                        std::fs::read(v).map_err(|e| bad(spec, format!("cannot read {v}: {e}")))?,
                    )
                }
                "env" => {
                    value = Some(
                        std::env::var_os(v)
                            .ok_or_else(|| bad(spec, format!("{v} is not set")))?
                            .into_encoded_bytes(),
                    )
                }
                "type" if v == "file" || v == "env" => {}
                _ => return Err(bad(spec, format!("unknown key `{k}`"))),
            }
        }
        let id = id.ok_or_else(|| bad(spec, "id=NAME is missing".into()))?;
        let value = match value {
            Some(v) => v,
            None => std::env::var_os(&id)
                .ok_or_else(|| bad(spec, format!("give src=FILE or env=VAR, or set {id}")))?
                .into_encoded_bytes(),
        };
        out.insert(id, value);
    }
    for step in &plan.steps {
        let StepDef::Run(run) = &step.definition else {
            continue;
        };
        for sec in &run.secrets {
            if !out.contains_key(&sec.name)
                && let Some(v) = std::env::var_os(&sec.name)
            {
                out.insert(sec.name.clone(), v.into_encoded_bytes());
            }
        }
    }
    Ok(out)
}
