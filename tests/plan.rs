//! Planning: deterministic keys (golden, order- and location-independent) and exact
//! invalidation (a change reruns exactly the steps that read it, and those after them).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use boxr::manifest;
use boxr::plan::{self, ImageResolver, Plan, PlanOptions, SCHEMA};
use boxr::reference::ImageRef;

struct Store(BTreeMap<String, String>);

impl ImageResolver for Store {
    fn resolve(&self, r: &ImageRef) -> Option<String> {
        self.0.get(&r.to_string()).cloned()
    }
}

fn no_store() -> Store {
    Store(BTreeMap::new())
}

/// Writes the golden fixture's context with fixed contents and modes.
fn write_context(dir: &Path) {
    let file = |rel: &str, body: &str, mode: u32| {
        let p = dir.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, body).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    };
    fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/plan/boxr.kdl"),
        dir.join("boxr.kdl"),
    )
    .unwrap();
    file(
        "rootfs.tar",
        "not really a tar, only hashed by the planner",
        0o644,
    );
    file("src/main.c", "int main(void) { return 0; }\n", 0o644);
    file("src/run", "#!/bin/sh\nexec ./main\n", 0o755);
    file("Makefile", "all:\n\tcc -o main src/main.c\n", 0o644);
    fs::set_permissions(dir.join("src"), fs::Permissions::from_mode(0o755)).unwrap();
    let digest = format!("sha256:{}", "ab".repeat(32));
    file(
        "layout/oci-layout",
        r#"{"imageLayoutVersion":"1.0.0"}"#,
        0o644,
    );
    file(
        "layout/index.json",
        &format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{digest}","size":1,"annotations":{{"org.opencontainers.image.ref.name":"v1"}}}}]}}"#
        ),
        0o644,
    );
}

fn plan_dir(dir: &Path, source: &str, args: &[(&str, &str)]) -> Plan {
    let overrides: BTreeMap<String, String> = args
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let m = manifest::parse("boxr.kdl", source, &overrides).expect("valid manifest");
    let opts = PlanOptions {
        context: dir,
        manifest_dir: dir,
        targets: &[],
        resolver: &no_store(),
        hashes: None,
    };
    plan::plan(&m, &opts).expect("plannable")
}

fn fixture_plan(dir: &Path) -> Plan {
    let src = fs::read_to_string(dir.join("boxr.kdl")).unwrap();
    plan_dir(dir, &src, &[])
}

/// `image step op key` for every step, in plan order.
fn key_lines(p: &Plan) -> String {
    let mut out = format!("schema {}\n", p.schema);
    for s in &p.steps {
        out.push_str(&format!("{} {} {} {}\n", s.image, s.id, s.op, s.key.hex()));
    }
    out
}

/// Image name → the keys of its steps.
fn keys_by_image(p: &Plan) -> BTreeMap<String, Vec<String>> {
    p.images
        .iter()
        .map(|i| {
            (
                i.name.clone(),
                i.steps.iter().map(|s| p.steps[*s].key.hex()).collect(),
            )
        })
        .collect()
}

#[test]
fn golden_keys_change_only_with_the_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    write_context(dir.path());
    let actual = key_lines(&fixture_plan(dir.path()));
    let golden_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/plan/golden-keys.txt");
    if std::env::var_os("BOXR_BLESS").is_some() {
        fs::write(&golden_path, &actual).unwrap();
    }
    let golden = fs::read_to_string(&golden_path).unwrap();
    let golden_schema = golden.lines().next().unwrap_or("");
    assert_eq!(
        golden_schema,
        format!("schema {SCHEMA}"),
        "the key schema was bumped: regenerate golden-keys.txt with BOXR_BLESS=1"
    );
    assert_eq!(
        actual, golden,
        "cache keys changed without a schema bump (plan::key::SCHEMA): that silently invalidates \
         or, worse, aliases every user's cache"
    );
}

#[test]
fn keys_do_not_depend_on_where_the_context_is() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let nested = b.path().join("some/deeper/place");
    fs::create_dir_all(&nested).unwrap();
    write_context(a.path());
    write_context(&nested);
    assert_eq!(
        key_lines(&fixture_plan(a.path())),
        key_lines(&fixture_plan(&nested))
    );
}

#[test]
fn keys_do_not_depend_on_the_order_of_independent_images() {
    let dir = tempfile::tempdir().unwrap();
    write_context(dir.path());
    let src = fs::read_to_string(dir.path().join("boxr.kdl")).unwrap();
    // Move the independent images `oci` and `empty` to the front.
    let start = src.find("image \"oci\"").unwrap();
    let end = src.find("image \"app\"").unwrap();
    let oci = &src[start..end];
    let empty = &src[src.find("image \"empty\"").unwrap()..];
    let reordered = format!(
        "{empty}\n{oci}\n{}{}",
        &src[..start],
        &src[end..src.find("image \"empty\"").unwrap()]
    );
    assert_ne!(src, reordered);
    let p1 = plan_dir(dir.path(), &src, &[]);
    let p2 = plan_dir(dir.path(), &reordered, &[]);
    assert_eq!(keys_by_image(&p1), keys_by_image(&p2));
}

#[test]
fn touching_a_file_without_changing_it_changes_no_key() {
    let dir = tempfile::tempdir().unwrap();
    write_context(dir.path());
    let before = fixture_plan(dir.path());
    let f = fs::File::options()
        .write(true)
        .open(dir.path().join("src/main.c"))
        .unwrap();
    f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
    drop(f);
    // Rewrite the same bytes too: a new inode time, same content.
    fs::write(
        dir.path().join("Makefile"),
        "all:\n\tcc -o main src/main.c\n",
    )
    .unwrap();
    assert_eq!(key_lines(&before), key_lines(&fixture_plan(dir.path())));
}

#[test]
fn changing_a_copy_source_reruns_exactly_the_steps_from_that_copy_on() {
    let dir = tempfile::tempdir().unwrap();
    write_context(dir.path());
    let before = keys_by_image(&fixture_plan(dir.path()));
    fs::write(
        dir.path().join("src/main.c"),
        "int main(void) { return 1; }\n",
    )
    .unwrap();
    let after = keys_by_image(&fixture_plan(dir.path()));
    // app: [workdir, copy src/, copy from oci, user, entrypoint, label]: the first stays.
    let (b, a) = (&before["app"], &after["app"]);
    assert_eq!(b[0], a[0], "workdir comes before the copy");
    for i in 1..b.len() {
        assert_ne!(b[i], a[i], "step {i} of app comes after the changed copy");
    }
    for other in ["base", "oci", "empty"] {
        assert_eq!(before[other], after[other], "{other} does not read src/");
    }
}

#[test]
fn changing_an_arg_reruns_from_its_first_use() {
    let dir = tempfile::tempdir().unwrap();
    write_context(dir.path());
    let src = fs::read_to_string(dir.path().join("boxr.kdl")).unwrap();
    let before = keys_by_image(&plan_dir(dir.path(), &src, &[]));
    let after = keys_by_image(&plan_dir(dir.path(), &src, &[("VERSION", "2.0")]));
    // base: [from tar, env, run "echo ${VERSION}"]: only the run changes.
    assert_eq!(before["base"][..2], after["base"][..2]);
    assert_ne!(before["base"][2], after["base"][2]);
    // app builds on base, so all of its steps change; oci and empty do not use the arg.
    assert!(before["app"].iter().zip(&after["app"]).all(|(x, y)| x != y));
    assert_eq!(before["oci"], after["oci"]);
    assert_eq!(before["empty"], after["empty"]);
    // Passing the default explicitly changes nothing.
    let same = keys_by_image(&plan_dir(dir.path(), &src, &[("VERSION", "1.0")]));
    assert_eq!(before, same);
}

#[test]
fn a_changed_base_changes_every_key_built_on_it() {
    let dir = tempfile::tempdir().unwrap();
    write_context(dir.path());
    let before = keys_by_image(&fixture_plan(dir.path()));
    fs::write(dir.path().join("rootfs.tar"), "another base").unwrap();
    let after = keys_by_image(&fixture_plan(dir.path()));
    for img in ["base", "app"] {
        assert!(
            before[img].iter().zip(&after[img]).all(|(x, y)| x != y),
            "{img}"
        );
    }
    assert_eq!(before["oci"], after["oci"]);
}

#[test]
fn steps_come_after_what_they_need() {
    let dir = tempfile::tempdir().unwrap();
    write_context(dir.path());
    let p = fixture_plan(dir.path());
    for s in &p.steps {
        for n in &s.needs {
            assert!(*n < s.id, "step {} needs later step {n}", s.id);
        }
    }
    let app = p.images.iter().find(|i| i.name == "app").unwrap();
    assert_eq!(app.needs, ["base", "oci"]);
    let copy_from = &p.steps[app.steps[2]];
    let oci_last = p.images.iter().find(|i| i.name == "oci").unwrap().steps[1];
    assert!(copy_from.needs.contains(&oci_last));
    // Config-only steps make no layer; workdir, copy and run do.
    let layers: Vec<(&str, bool)> = app
        .steps
        .iter()
        .map(|s| (p.steps[*s].op, p.steps[*s].layer))
        .collect();
    assert_eq!(
        layers,
        [
            ("workdir", true),
            ("copy", true),
            ("copy", true),
            ("user", false),
            ("entrypoint", false),
            ("label", false)
        ]
    );
    assert_eq!(app.config.workdir, "/app");
    assert_eq!(app.config.env, [("A".to_owned(), "1".to_owned())]);
    assert_eq!(
        app.config.entrypoint.as_deref(),
        Some(&["/app/run".to_owned()][..])
    );
}

#[test]
fn targets_plan_only_what_they_need() {
    let dir = tempfile::tempdir().unwrap();
    write_context(dir.path());
    let src = fs::read_to_string(dir.path().join("boxr.kdl")).unwrap();
    let m = manifest::parse("boxr.kdl", &src, &BTreeMap::new()).unwrap();
    let targets = vec!["app".to_owned()];
    let opts = PlanOptions {
        context: dir.path(),
        manifest_dir: dir.path(),
        targets: &targets,
        resolver: &no_store(),
        hashes: None,
    };
    let p = plan::plan(&m, &opts).unwrap();
    let names: Vec<&str> = p.images.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["base", "oci", "app"]);
    let bad = vec!["ap".to_owned()];
    let opts = PlanOptions {
        targets: &bad,
        ..opts
    };
    let errs = plan::plan(&m, &opts).unwrap_err();
    assert!(
        matches!(&errs[0], plan::PlanError::UnknownTarget { name, help: Some(h) } if name == "ap" && h.contains("`app`"))
    );
}

#[test]
fn store_bases_are_keyed_by_their_digest() {
    let dir = tempfile::tempdir().unwrap();
    let src = "image \"a\" {\n    from \"alpine:3.20\"\n    run \"true\"\n}\n";
    let m = manifest::parse("boxr.kdl", src, &BTreeMap::new()).unwrap();
    let plan_with = |digest: &str| {
        let store = Store(BTreeMap::from([(
            "alpine:3.20".to_owned(),
            digest.to_owned(),
        )]));
        let opts = PlanOptions {
            context: dir.path(),
            manifest_dir: dir.path(),
            targets: &[],
            resolver: &store,
            hashes: None,
        };
        plan::plan(&m, &opts).map(|p| key_lines(&p))
    };
    let one = plan_with(&format!("sha256:{}", "1".repeat(64))).unwrap();
    let two = plan_with(&format!("sha256:{}", "2".repeat(64))).unwrap();
    assert_ne!(one, two);
    let opts = PlanOptions {
        context: dir.path(),
        manifest_dir: dir.path(),
        targets: &[],
        resolver: &no_store(),
        hashes: None,
    };
    let errs = plan::plan(&m, &opts).unwrap_err();
    assert!(
        matches!(&errs[0], plan::PlanError::ImageNotFound { reference, .. } if reference == "alpine:3.20")
    );
}

#[test]
fn dir_bases_are_keyed_by_content_mode_and_owner() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("rootfs/bin")).unwrap();
    fs::write(dir.path().join("rootfs/bin/sh"), "#!").unwrap();
    let src = "image \"a\" {\n    from \"dir:./rootfs\"\n}\n";
    let key = || key_lines(&plan_dir(dir.path(), src, &[]));
    let first = key();
    assert_eq!(first, key());
    let sh = dir.path().join("rootfs/bin/sh");
    fs::set_permissions(&sh, fs::Permissions::from_mode(0o755)).unwrap();
    let moded = key();
    assert_ne!(first, moded);
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::lchown(&sh, Some(1000), Some(1000)).unwrap();
        assert_ne!(
            moded,
            key(),
            "the owner of a rootfs file is part of the base"
        );
    }
}
