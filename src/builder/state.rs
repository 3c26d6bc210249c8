//! What a build step hands to the next: the layers so far and the image config so far.

use std::collections::BTreeMap;

use crate::plan::StepDef;

use crate::digest::Digest;
use crate::oci::{self, Descriptor, Empty, History, ImageConfig, RunConfig};
use crate::store::Image;

/// The image as it stands after a step.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// Layers, bottom first: the manifest descriptor and the DiffID of each.
    pub layers: Vec<(Descriptor, Digest)>,
    pub run: RunConfig,
    pub history: Vec<History>,
    /// The shell of shell-form `run`s (not part of an OCI config).
    pub shell: Vec<String>,
    /// Whether the image being built set `cmd` itself (an `entrypoint` keeps that one).
    pub cmd_set: bool,
}

impl State {
    pub fn scratch() -> State {
        State {
            shell: vec!["/bin/sh".into(), "-c".into()],
            ..Default::default()
        }
    }

    /// An image already in the store, as a base.
    pub fn of_image(img: &Image) -> State {
        let mut s = State::scratch();
        s.layers = img
            .manifest
            .layers
            .iter()
            .cloned()
            .zip(img.config.rootfs.diff_ids.iter().copied())
            .collect();
        s.run = img.config.config.clone().unwrap_or_default();
        s.history = img.config.history.clone();
        s
    }

    /// Adds a layer made by boxr (stored uncompressed: the blob is the tar itself).
    pub fn push_layer(&mut self, diff_id: Digest, size: u64) {
        self.layers
            .push((Descriptor::new(oci::MEDIA_LAYER, diff_id, size), diff_id));
    }

    pub fn record(&mut self, created_by: String, created: &str, empty_layer: bool) {
        self.history.push(History {
            created: Some(created.to_owned()),
            created_by: Some(created_by),
            comment: Some("boxr build".into()),
            empty_layer: empty_layer.then_some(true),
        });
    }

    pub fn env(&self) -> Vec<String> {
        self.run.env.clone().unwrap_or_default()
    }

    pub fn workdir(&self) -> String {
        self.run
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into())
    }

    fn set_env(&mut self, k: &str, v: &str) {
        set_var(self.run.env.get_or_insert_with(Vec::new), k, v);
    }

    /// Applies a config-only step (or the config half of `workdir`).
    pub fn apply_config(&mut self, def: &StepDef) {
        match def {
            StepDef::Env { set } => {
                for (k, v) in set {
                    self.set_env(k, v);
                }
            }
            StepDef::Label { set } => {
                let labels = self.run.labels.get_or_insert_with(BTreeMap::new);
                for (k, v) in set {
                    labels.insert(k.clone(), v.clone());
                }
            }
            StepDef::Workdir { path } => self.run.working_dir = Some(path.clone()),
            StepDef::User { user } => self.run.user = Some(user.clone()),
            StepDef::Expose { ports } => {
                let exposed = self.run.exposed_ports.get_or_insert_with(BTreeMap::new);
                for p in ports {
                    let p = if p.contains('/') {
                        p.clone()
                    } else {
                        format!("{p}/tcp")
                    };
                    exposed.insert(p, Empty {});
                }
            }
            StepDef::Entrypoint { args } => {
                self.run.entrypoint = Some(args.clone());
                // Docker: an ENTRYPOINT resets a CMD inherited from the base image.
                if !self.cmd_set {
                    self.run.cmd = None;
                }
            }
            StepDef::Cmd { args } => {
                self.run.cmd = Some(args.clone());
                self.cmd_set = true;
            }
            StepDef::Shell { args } => self.shell = args.clone(),
            StepDef::Volume { paths } => {
                let vols = self.run.volumes.get_or_insert_with(BTreeMap::new);
                for p in paths {
                    vols.insert(p.clone(), Empty {});
                }
            }
            StepDef::StopSignal { signal } => self.run.stop_signal = Some(signal.clone()),
            // Steps that make a filesystem change only.
            StepDef::From { .. } | StepDef::Run(_) | StepDef::Copy(_) => {}
        }
    }

    /// The final image config.
    pub fn image_config(&self, created: &str) -> ImageConfig {
        let mut c = ImageConfig::linux(
            self.layers.iter().map(|(_, d)| *d).collect(),
            Some(created.to_owned()),
        );
        c.config = Some(self.run.clone());
        c.history = self.history.clone();
        c
    }
}

/// Sets `k` to `v` in a `KEY=VALUE` list: replaces its entry, or appends one (Docker's order).
pub(super) fn set_var(env: &mut Vec<String>, k: &str, v: &str) {
    let entry = format!("{k}={v}");
    match env
        .iter_mut()
        .find(|e| e.split_once('=').map_or(e.as_str(), |(n, _)| n) == k)
    {
        Some(e) => *e = entry,
        None => env.push(entry),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn config_steps_follow_docker() {
        let mut s = State::scratch();
        s.run.cmd = Some(vec!["sh".into()]);
        s.apply_config(&StepDef::Env {
            set: set(&[("A", "1"), ("B", "2")]),
        });
        s.apply_config(&StepDef::Env {
            set: set(&[("A", "3")]),
        });
        assert_eq!(s.env(), vec!["A=3", "B=2"]);
        s.apply_config(&StepDef::Entrypoint {
            args: args(&["/app"]),
        });
        assert_eq!(s.run.cmd, None, "an entrypoint resets an inherited cmd");
        s.apply_config(&StepDef::Cmd {
            args: args(&["-x"]),
        });
        s.apply_config(&StepDef::Expose {
            ports: args(&["8080", "53/udp"]),
        });
        let ports: Vec<&String> = s.run.exposed_ports.as_ref().unwrap().keys().collect();
        assert_eq!(ports, ["53/udp", "8080/tcp"]);
        s.apply_config(&StepDef::Workdir {
            path: "/src".into(),
        });
        assert_eq!(s.workdir(), "/src");
    }
}
