//! The valid fixtures in manifests/ mean what they say: values reach the model typed, args are
//! interpolated, comments and slashdash remove what they cover.

use std::collections::BTreeMap;

use boxr::manifest::{
    self, Base, CapName, Command, Condition, ImageSource, Instruction, Manifest, RestartPolicy,
    RunNetwork, SecurityOpt, Sharing, VolumeSource,
};

fn load(name: &str) -> Manifest {
    load_with(name, &[])
}

fn load_with(name: &str, args: &[(&str, &str)]) -> Manifest {
    let path = format!("{}/manifests/{name}", env!("CARGO_MANIFEST_DIR"));
    let overrides: BTreeMap<String, String> = args
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    manifest::load(std::path::Path::new(&path), &overrides).unwrap()
}

fn instrs(m: &Manifest, image: &str) -> Vec<Instruction> {
    m.image(image)
        .unwrap()
        .instructions
        .iter()
        .map(|i| i.value.clone())
        .collect()
}

#[test]
fn args_are_interpolated_with_defaults_overrides_and_escapes() {
    let m = load("args.kdl");
    let ins = instrs(&m, "app");
    let Instruction::Workdir(w) = &ins[1] else {
        panic!()
    };
    assert_eq!(
        w.value, "/opt/app-1.2.3",
        "an arg default can use an earlier arg"
    );
    let Instruction::Run(r) = &ins[2] else {
        panic!()
    };
    let Command::Shell(s) = &r.command else {
        panic!()
    };
    assert_eq!(s.value, "echo building 1.2.3 in ${PWD} for $HOME");
    let m = load_with("args.kdl", &[("VERSION", "9"), ("PORT", "80")]);
    let ins = instrs(&m, "app");
    let Instruction::Workdir(w) = &ins[1] else {
        panic!()
    };
    assert_eq!(w.value, "/opt/app-9");
    let Instruction::Expose(p) = &ins[4] else {
        panic!()
    };
    assert_eq!(p[0].value.port, 80);
    assert_eq!(m.services[0].publish[0].value.host_ports, Some((80, 80)));
}

#[test]
fn every_service_property_is_typed() {
    let m = load("services.kdl");
    let web = m.services.iter().find(|s| s.name.value == "web").unwrap();
    assert_eq!(web.memory.as_ref().unwrap().value, 256 << 20);
    assert_eq!(web.cpus.as_ref().unwrap().value, 1.5);
    assert_eq!(web.pids.as_ref().unwrap().value, -1);
    assert_eq!(web.cap_drop[0].value, CapName::All);
    assert_eq!(
        web.cap_add
            .iter()
            .map(|c| c.value.to_string())
            .collect::<Vec<_>>(),
        ["CAP_NET_BIND_SERVICE", "CAP_CHOWN"]
    );
    assert_eq!(
        web.security_opt
            .iter()
            .map(|o| o.value.clone())
            .collect::<Vec<_>>(),
        [
            SecurityOpt::NoNewPrivileges(true),
            SecurityOpt::SeccompUnconfined
        ]
    );
    assert!(web.read_only && !web.privileged);
    assert_eq!(web.publish.len(), 4);
    assert_eq!(web.publish[1].value.host_ip, Some("::1".parse().unwrap()));
    assert_eq!(web.publish[3].value.host_ports, None);
    assert_eq!(web.tmpfs[1].size.as_ref().unwrap().value, 16 << 20);
    assert_eq!(web.tmpfs[1].mode.as_ref().unwrap().value, 0o755);
    assert_eq!(
        web.volumes[0].source.value,
        VolumeSource::Bind("./static".into())
    );
    assert!(web.volumes[0].read_only);
    assert_eq!(web.depends_on[0].condition, Condition::Healthy);
    assert_eq!(web.depends_on[1].condition, Condition::Started);
    assert_eq!(
        web.restart.as_ref().unwrap().value,
        RestartPolicy::OnFailure {
            max_retries: Some(5)
        }
    );
    assert_eq!(web.env.len(), 3);
    assert_eq!(web.env[2].1.value, "true");
    let db = m.services.iter().find(|s| s.name.value == "db").unwrap();
    let hc = db.healthcheck.as_ref().unwrap();
    assert!(matches!(&hc.command, Command::Exec(a) if a.len() == 3));
    assert_eq!(hc.retries.as_ref().unwrap().value, 20);
    assert_eq!(hc.interval.as_ref().unwrap().value.as_millis(), 500);
    assert_eq!(
        db.volumes[0].source.value,
        VolumeSource::Named("dbdata".into())
    );
    assert_eq!(db.stop_signal.as_ref().unwrap().value.0, 2);
    assert_eq!(db.stop_timeout.as_ref().unwrap().value.as_secs(), 30);
    let cache = m.services.iter().find(|s| s.name.value == "cache").unwrap();
    assert_eq!(cache.memory.as_ref().unwrap().value, 64 << 20);
}

#[test]
fn run_forms_and_children() {
    let m = load("run-forms.kdl");
    let runs: Vec<_> = instrs(&m, "tools")
        .into_iter()
        .filter_map(|i| match i {
            Instruction::Run(r) => Some(r),
            _ => None,
        })
        .collect();
    assert!(matches!(&runs[0].command, Command::Shell(_)));
    assert!(matches!(&runs[1].command, Command::Exec(a) if a.len() == 3));
    let caches = &runs[2].caches;
    assert_eq!(
        caches[0].id.value, "/root/.cache",
        "the id defaults to the path"
    );
    assert_eq!(caches[1].id.value, "apt");
    assert_eq!(caches[1].sharing, Sharing::Locked);
    assert_eq!(caches[2].sharing, Sharing::Private);
    assert_eq!(runs[3].network.value, RunNetwork::Host);
    assert_eq!(
        runs[0].network.value,
        RunNetwork::None,
        "no network by default"
    );
    assert_eq!(runs[4].env.len(), 3);
}

#[test]
fn bases_of_every_kind() {
    let m = load("bases.kdl");
    let base = |n: &str| m.image(n).unwrap().from.value.clone();
    assert_eq!(base("empty"), Base::Scratch);
    assert_eq!(base("from-dir"), Base::Dir("./rootfs".into()));
    assert_eq!(base("from-tar"), Base::Tar("./rootfs.tar.gz".into()));
    assert_eq!(
        base("from-oci"),
        Base::Oci {
            path: "./layout".into(),
            tag: Some("v1".into())
        }
    );
    let Base::Store(r) = base("from-registry") else {
        panic!()
    };
    assert_eq!(r.repository, "registry.example.com:5000/team/base");
    let Base::Store(r) = base("pinned") else {
        panic!()
    };
    assert!(r.digest.is_some() && r.tag.is_none());
    assert_eq!(base("child"), Base::Image("from-dir".into()));
}

#[test]
fn comments_and_slashdash_remove_what_they_cover() {
    let m = load("comments.kdl");
    assert_eq!(m.images.len(), 1, "the slashdashed image is gone");
    let ins = instrs(&m, "c");
    let Instruction::Env(e) = &ins[0] else {
        panic!()
    };
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].0.value, "ON");
    let Instruction::Run(r) = &ins[3] else {
        panic!()
    };
    assert!(matches!(&r.command, Command::Exec(a) if a.len() == 3));
    assert!(m.services[0].memory.is_none());
    assert_eq!(m.services[0].image.value, ImageSource::Image("c".into()));
}

#[test]
fn kdl_v1_documents_are_read() {
    let m = load("kdl-v1.kdl");
    let ins = instrs(&m, "legacy");
    let Instruction::Env(e) = &ins[0] else {
        panic!()
    };
    assert_eq!(e[0].1.value, r"C:\path\no\escapes");
    assert!(m.services[0].read_only);
    assert!(!m.services[0].privileged);
}

#[test]
fn copy_from_and_chown() {
    let m = load("multistage.kdl");
    let ins = instrs(&m, "runtime");
    let Instruction::Copy(c) = &ins[0] else {
        panic!()
    };
    assert_eq!(
        c.from.as_ref().unwrap().value,
        ImageSource::Image("builder".into())
    );
    assert_eq!(c.chmod.as_ref().unwrap().value, 0o755);
    assert_eq!(c.chown.as_ref().unwrap().value.to_string(), "65534:65534");
}
