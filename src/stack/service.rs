//! One service → the `RunOptions` of each of its containers, the hash that tells a second `up`
//! whether a container still matches, and the resolved service as KDL (`stack config`).

use std::fmt::Write as _;

use sha2::{Digest as _, Sha256};

use super::{LABEL_CONFIG_HASH, LABEL_NUMBER, LABEL_PROJECT, LABEL_SERVICE, Project, StackError};
use crate::container::{Network, RunOptions, health::HealthOptions};
use crate::manifest::{
    Command, Condition, ImageSource, RestartPolicy, SecurityOpt, Service, VolumeSource,
};

/// The options of container `number` of `svc`, whose image is `image` (an id or a reference).
/// `RunOptions::labels` carries the project's labels, the config hash among them.
pub fn run_options(
    project: &Project<'_>,
    svc: &Service,
    image: &str,
    number: u32,
) -> Result<RunOptions, StackError> {
    let dir = &project.dir;
    let name = &svc.name.value;
    let mut o = RunOptions {
        image: image.to_owned(),
        init: true,
        detach: true,
        network: project
            .networks_of(svc)
            .first()
            .map(|(n, _)| Network::Named(n.clone())),
        more_networks: project
            .networks_of(svc)
            .into_iter()
            .skip(1)
            .map(|(n, _)| Network::Named(n))
            .collect(),
        network_aliases: vec![name.clone()],
        ..Default::default()
    };
    match &svc.entrypoint {
        // `entrypoint` replaces the image's (and so clears its cmd): the whole process is
        // the entrypoint and the service's command.
        Some(ep) => {
            let mut all = ep.iter().map(|s| s.value.clone());
            o.entrypoint = Some(all.next().unwrap_or_default());
            o.command = all.collect();
            o.command
                .extend(svc.command.iter().flatten().map(|s| s.value.clone()));
        }
        None => {
            o.command = svc
                .command
                .iter()
                .flatten()
                .map(|s| s.value.clone())
                .collect()
        }
    }
    // env-file values first, then `env` (later keys win): resolved here, so the hash sees them.
    for f in &svc.env_files {
        let path = dir.join(&f.value);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            StackError::invalid(
                format!(
                    "service `{name}`: cannot read env-file {}: {e}",
                    path.display()
                ),
                None,
            )
        })?;
        let vars = crate::manifest::dotenv(&text).map_err(|(line, why)| {
            StackError::invalid(
                format!("service `{name}`: {}:{line}: {why}", path.display()),
                Some("write KEY=VALUE lines".into()),
            )
        })?;
        o.env
            .extend(vars.into_iter().map(|(k, v)| format!("{k}={v}")));
    }
    o.env.extend(
        svc.env
            .iter()
            .map(|(k, v)| format!("{}={}", k.value, v.value)),
    );
    o.publish = svc
        .publish
        .iter()
        .map(|p| {
            crate::net::ports::expand(p)
                .map_err(|e| StackError::invalid(format!("service `{name}`: {e}"), None))
        })
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .collect();
    o.limits.memory = svc.memory.as_ref().map(|m| m.value.to_string());
    o.limits.cpus = svc.cpus.as_ref().map(|c| c.value);
    o.limits.pids_limit = svc.pids.as_ref().map(|p| p.value);
    o.cap_add = svc.cap_add.iter().map(|c| c.value.to_string()).collect();
    o.cap_drop = svc.cap_drop.iter().map(|c| c.value.to_string()).collect();
    o.security_opt = svc
        .security_opt
        .iter()
        .map(|s| match &s.value {
            SecurityOpt::SeccompUnconfined => "seccomp=unconfined".to_owned(),
            SecurityOpt::SeccompProfile(p) => {
                format!("seccomp={}", dir.join(p).display())
            }
            SecurityOpt::NoNewPrivileges(b) => format!("no-new-privileges={b}"),
        })
        .collect();
    o.privileged = svc.privileged;
    o.read_only = svc.read_only;
    o.tmpfs = svc
        .tmpfs
        .iter()
        .map(|t| {
            let mut opts = Vec::new();
            if let Some(s) = &t.size {
                opts.push(format!("size={}", s.value));
            }
            if let Some(m) = &t.mode {
                opts.push(format!("mode={:o}", m.value));
            }
            match opts.is_empty() {
                true => t.target.value.clone(),
                false => format!("{}:{}", t.target.value, opts.join(",")),
            }
        })
        .collect();
    o.volumes = svc
        .volumes
        .iter()
        .map(|v| {
            let src = match &v.source.value {
                VolumeSource::Bind(p) => dir.join(p).display().to_string(),
                // Named volumes belong to the project, as Compose's.
                VolumeSource::Named(n) => format!("{}_{n}", project.name),
            };
            let ro = if v.read_only { ":ro" } else { "" };
            format!("{src}:{}{ro}", v.target.value)
        })
        .collect();
    o.health = health_options(svc);
    o.restart = svc.restart.as_ref().map(|r| restart_text(&r.value));
    o.hostname = svc.hostname.as_ref().map(|h| h.value.clone());
    o.user = svc.user.as_ref().map(|u| u.value.to_string());
    o.workdir = svc.workdir.as_ref().map(|w| w.value.clone());
    o.stop_signal = svc.stop_signal.as_ref().map(|s| s.value.to_string());
    o.stop_timeout = svc
        .stop_timeout
        .as_ref()
        .map(|t| t.value.as_secs() + u64::from(t.value.subsec_nanos() > 0));
    // The hash covers everything the container is made from (its number and name aside).
    let hash = hex::encode(Sha256::digest(format!("{o:?}").as_bytes()));
    o.name = Some(project.container_name(name, number));
    o.labels = vec![
        format!("{LABEL_PROJECT}={}", project.name),
        format!("{LABEL_SERVICE}={name}"),
        format!("{LABEL_NUMBER}={number}"),
        format!("{LABEL_CONFIG_HASH}={hash}"),
    ];
    Ok(o)
}

/// The config hash `run_options` put among the labels.
pub(super) fn hash_of(o: &RunOptions) -> &str {
    o.labels
        .iter()
        .find_map(|l| l.strip_prefix(LABEL_CONFIG_HASH)?.strip_prefix('='))
        .unwrap_or("")
}

fn health_options(svc: &Service) -> HealthOptions {
    let mut h = HealthOptions {
        disable: svc.no_healthcheck,
        ..Default::default()
    };
    if let Some(hc) = &svc.healthcheck {
        match &hc.command {
            Command::Shell(s) => h.cmd = Some(s.value.clone()),
            Command::Exec(v) => h.exec = Some(v.iter().map(|s| s.value.clone()).collect()),
        }
        let ms = |d: &Option<crate::manifest::Spanned<std::time::Duration>>| {
            d.as_ref().map(|d| format!("{}ms", d.value.as_millis()))
        };
        h.interval = ms(&hc.interval);
        h.timeout = ms(&hc.timeout);
        h.start_period = ms(&hc.start_period);
        h.start_interval = ms(&hc.start_interval);
        h.retries = hc.retries.as_ref().map(|r| r.value);
    }
    h
}

fn restart_text(r: &RestartPolicy) -> String {
    match r {
        RestartPolicy::No => "no".into(),
        RestartPolicy::OnFailure { max_retries: None } => "on-failure".into(),
        RestartPolicy::OnFailure {
            max_retries: Some(n),
        } => format!("on-failure:{n}"),
        RestartPolicy::Always => "always".into(),
        RestartPolicy::UnlessStopped => "unless-stopped".into(),
    }
}

/// A KDL string literal.
fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn duration_text(d: std::time::Duration) -> String {
    match d.as_millis() {
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

/// The selected services as the manifest would say them, every `${...}` resolved, paths
/// made absolute and env files read (`boxr stack config`).
pub fn config_text(project: &Project<'_>, services: &[&Service]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "// project {}", q(&project.name));
    for n in &project.manifest.networks {
        let _ = write!(out, "network {}", q(&n.name.value));
        if n.external {
            out.push_str(" external=#true");
        }
        if n.internal {
            out.push_str(" internal=#true");
        }
        if let Some(s) = &n.subnet {
            let _ = write!(out, " subnet={}", q(&s.value));
        }
        out.push('\n');
    }
    for svc in services {
        render(&mut out, project, svc);
    }
    out
}

fn render(out: &mut String, project: &Project<'_>, svc: &Service) {
    let line = |out: &mut String, text: String| {
        let _ = writeln!(out, "    {text}");
    };
    let list = |v: &[crate::manifest::Spanned<String>]| {
        v.iter().map(|s| q(&s.value)).collect::<Vec<_>>().join(" ")
    };
    let _ = writeln!(out, "service {} {{", q(&svc.name.value));
    let image = match &svc.image.value {
        ImageSource::Image(n) => n.clone(),
        ImageSource::Store(r) => r.to_string(),
    };
    line(out, format!("image {}", q(&image)));
    if let Some(r) = &svc.replicas {
        line(out, format!("replicas {}", r.value));
    }
    if let Some(e) = &svc.entrypoint {
        line(out, format!("entrypoint {}", list(e)).trim_end().to_owned());
    }
    if let Some(c) = &svc.command {
        line(out, format!("command {}", list(c)));
    }
    for f in &svc.env_files {
        line(
            out,
            format!(
                "env-file {}",
                q(&project.dir.join(&f.value).display().to_string())
            ),
        );
    }
    for (k, v) in &svc.env {
        line(out, format!("env {} {}", q(&k.value), q(&v.value)));
    }
    if !svc.profiles.is_empty() {
        line(out, format!("profiles {}", list(&svc.profiles)));
    }
    if !svc.networks.is_empty() {
        line(out, format!("network {}", list(&svc.networks)));
    }
    for p in &svc.publish {
        line(out, format!("publish {}", q(&p.to_string())));
    }
    if let Some(m) = &svc.memory {
        line(out, format!("memory {}", q(&format!("{}B", m.value))));
    }
    if let Some(c) = &svc.cpus {
        line(out, format!("cpus {}", c.value));
    }
    if let Some(p) = &svc.pids {
        line(out, format!("pids {}", p.value));
    }
    for c in &svc.cap_add {
        line(out, format!("cap-add {}", q(&c.value.to_string())));
    }
    for c in &svc.cap_drop {
        line(out, format!("cap-drop {}", q(&c.value.to_string())));
    }
    for s in &svc.security_opt {
        let text = match &s.value {
            SecurityOpt::SeccompUnconfined => "seccomp=unconfined".to_owned(),
            SecurityOpt::SeccompProfile(p) => {
                format!("seccomp={}", project.dir.join(p).display())
            }
            SecurityOpt::NoNewPrivileges(b) => format!("no-new-privileges={b}"),
        };
        line(out, format!("security-opt {}", q(&text)));
    }
    if svc.privileged {
        line(out, "privileged #true".into());
    }
    if svc.read_only {
        line(out, "read-only #true".into());
    }
    for t in &svc.tmpfs {
        let mut s = format!("tmpfs {}", q(&t.target.value));
        if let Some(z) = &t.size {
            let _ = write!(s, " size={}", q(&format!("{}B", z.value)));
        }
        if let Some(m) = &t.mode {
            let _ = write!(s, " mode={}", q(&format!("{:o}", m.value)));
        }
        line(out, s);
    }
    for v in &svc.volumes {
        let src = match &v.source.value {
            VolumeSource::Bind(p) => project.dir.join(p).display().to_string(),
            VolumeSource::Named(n) => n.clone(),
        };
        let ro = if v.read_only { " read-only=#true" } else { "" };
        line(
            out,
            format!("volume {} {}{ro}", q(&src), q(&v.target.value)),
        );
    }
    for d in &svc.depends_on {
        let c = match d.condition {
            Condition::Started => "started",
            Condition::Healthy => "healthy",
            Condition::Completed => "completed",
        };
        line(
            out,
            format!("depends-on {} condition={}", q(&d.service.value), q(c)),
        );
    }
    if svc.no_healthcheck {
        line(out, "healthcheck \"NONE\"".into());
    }
    if let Some(h) = &svc.healthcheck {
        let mut s = match &h.command {
            Command::Shell(c) => format!("healthcheck {}", q(&c.value)),
            Command::Exec(v) => format!("healthcheck {}", list(v)),
        };
        for (k, d) in [
            ("interval", &h.interval),
            ("timeout", &h.timeout),
            ("start-period", &h.start_period),
            ("start-interval", &h.start_interval),
        ] {
            if let Some(d) = d {
                let _ = write!(s, " {k}={}", q(&duration_text(d.value)));
            }
        }
        if let Some(r) = &h.retries {
            let _ = write!(s, " retries={}", r.value);
        }
        line(out, s);
    }
    if let Some(r) = &svc.restart {
        line(out, format!("restart {}", q(&restart_text(&r.value))));
    }
    if let Some(h) = &svc.hostname {
        line(out, format!("hostname {}", q(&h.value)));
    }
    if let Some(u) = &svc.user {
        line(out, format!("user {}", q(&u.value.to_string())));
    }
    if let Some(w) = &svc.workdir {
        line(out, format!("workdir {}", q(&w.value)));
    }
    if let Some(s) = &svc.stop_signal {
        line(out, format!("stop-signal {}", q(&s.value.to_string())));
    }
    if let Some(t) = &svc.stop_timeout {
        line(out, format!("stop-timeout {}", q(&duration_text(t.value))));
    }
    out.push_str("}\n");
}
