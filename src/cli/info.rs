//! `boxr info`: how this boxr runs: as root or rootless (its user namespace's maps), where the
//! store and runtime state are, the storage driver, the cgroup layout and what it allows, the
//! networks it can make.

use serde_json::json;

use super::{Settings, exit};

#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// Print JSON
    #[arg(long)]
    json: bool,
}

pub fn run(args: &InfoArgs, settings: &Settings) -> i32 {
    let rootless = crate::rootless::active();
    let map = |file: &str| -> Vec<String> {
        std::fs::read_to_string(format!("/proc/self/{file}"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    let layout = crate::sandbox::cgroup::Layout::detect().ok();
    let cgroups = match &layout {
        Some(l) if !l.v1.is_empty() && l.v2.is_some() => "hybrid (v1 controllers, and v2)",
        Some(l) if !l.v1.is_empty() => "v1",
        Some(l) if l.v2.is_some() => "v2",
        _ => "none",
    };
    let limits = match (
        rootless,
        rootless.then(crate::rootless::delegated_cgroup).flatten(),
    ) {
        (true, Some(base)) => format!("under the delegated cgroup /{base} (no devices program)"),
        (true, None) => "none: no cgroup is delegated to this user (limits are refused)".into(),
        (false, _) => "memory, cpu, cpuset, pids, io, devices, freezer, hugetlb".into(),
    };
    let runtime = if rootless {
        crate::rootless::runtime_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_default()
    } else {
        settings.root.join("containers").display().to_string()
    };
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let info = json!({
        "Rootless": rootless,
        "UidMap": if rootless { map("uid_map") } else { Vec::new() },
        "GidMap": if rootless { map("gid_map") } else { Vec::new() },
        "Store": settings.root,
        "RuntimeDir": runtime,
        "StorageDriver": if rootless { "overlay (userxattr)" } else { "overlay" },
        "Cgroups": cgroups,
        "Limits": limits,
        "Networks": if rootless {
            "bridge (default: the host's network through pasta, with -p), user networks (in \
             the rootless network namespace), none, host"
        } else {
            "bridge (default), user networks, none, host"
        },
        "Kernel": kernel,
        "Architecture": crate::platform::architecture(),
    });
    if args.json {
        settings.printer.data(format!("{info}\n"));
        return exit::OK;
    }
    let mut out = String::new();
    let line = |out: &mut String, k: &str, v: String| out.push_str(&format!("{k:<16}{v}\n"));
    line(
        &mut out,
        "Mode:",
        if rootless { "rootless" } else { "root" }.into(),
    );
    if rootless {
        line(&mut out, "UID map:", map("uid_map").join("; "));
        line(&mut out, "GID map:", map("gid_map").join("; "));
    }
    for (k, key) in [
        ("Store:", "Store"),
        ("Runtime dir:", "RuntimeDir"),
        ("Storage driver:", "StorageDriver"),
        ("Cgroups:", "Cgroups"),
        ("Limits:", "Limits"),
        ("Networks:", "Networks"),
        ("Kernel:", "Kernel"),
        ("Architecture:", "Architecture"),
    ] {
        line(
            &mut out,
            k,
            info[key].as_str().unwrap_or_default().to_owned(),
        );
    }
    settings.printer.data(out);
    exit::OK
}
