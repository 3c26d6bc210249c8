//! Registries, for real: Debian's `docker-registry` (distribution) on 127.0.0.1 in the test's
//! own network namespace, with a temporary storage directory; skopeo and podman on the other
//! side of every exchange.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{
    Registry, assert_store_consistent, boxr, boxr_env, busybox_rootfs, have_tool, privileged,
};

fn ok(out: (i32, String, String)) -> String {
    assert_eq!(out.0, 0, "{}", out.2);
    out.1
}

fn registry_ready(test: &str) -> bool {
    privileged(test) && have_tool(test, "docker-registry") && have_tool(test, "skopeo")
}

fn import_busybox(w: &Path, store: &Path, name: &str) {
    let rootfs = busybox_rootfs(w);
    ok(boxr(store, &["import", rootfs.to_str().unwrap(), name]));
}

fn image_id(store: &Path, name: &str) -> String {
    let (c, out, err) = boxr(store, &["inspect", name]);
    assert_eq!(c, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0]["Id"].as_str().unwrap().to_owned()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn skopeo_raw(reference: &str) -> Vec<u8> {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn push_pull_round_trip_and_run_pulls_absent_images() {
    let t = "push_pull_round_trip_and_run_pulls_absent_images";
    if !registry_ready(t) {
        return;
    }
    let w = tempfile::tempdir().unwrap();
    let reg = Registry::start(w.path(), "", "");
    let s1 = w.path().join("s1");
    import_busybox(w.path(), &s1, "bb:1");
    let id = image_id(&s1, "bb:1");

    // Push: stdout is the manifest digest, the one skopeo reads back.
    let dest = format!("{}/test/bb:1", reg.addr);
    let pushed = ok(boxr(&s1, &["push", "bb:1", &dest])).trim().to_owned();
    let raw = skopeo_raw(&dest);
    assert_eq!(pushed, format!("sha256:{}", sha256_hex(&raw)));
    // Pushing again sends no blob: the registry has them all.
    let (c, out, err) = boxr(&s1, &["push", "bb:1", &dest]);
    assert_eq!((c, out.trim()), (0, pushed.as_str()), "{err}");
    assert!(
        err.contains("Layer already exists") && !err.contains(": Pushed"),
        "{err}"
    );

    // In chunks (PATCH with Content-Range, then PUT ?digest=): the same manifest.
    let chunked = format!("{}/chunked/bb:1", reg.addr);
    let (c, out, err) = boxr_env(
        &s1,
        Path::new("."),
        &[("BOXR_REGISTRY_CHUNK_SIZE", "65536")],
        &["push", "bb:1", &chunked],
    );
    assert_eq!((c, out.trim()), (0, pushed.as_str()), "{err}");
    assert_eq!(skopeo_raw(&chunked), raw);

    // Pull into a fresh store: the same image Id; it runs.
    let s2 = w.path().join("s2");
    let (c, out, err) = boxr(&s2, &["pull", &dest]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(out.trim(), dest);
    assert!(err.contains("Pull complete"), "{err}");
    assert_eq!(image_id(&s2, &dest), id, "a round trip keeps the image Id");
    // Kept as received: unpacked only when first used.
    let unpacked = |s: &Path| fs::read_dir(s.join("layers")).map_or(0, |d| d.count());
    assert_eq!(unpacked(&s2), 0, "a pull unpacks nothing");
    let (c, out, err) = boxr(&s2, &["run", "--rm", &dest, "echo", "pulled-and-ran"]);
    assert_eq!((c, out.trim()), (0, "pulled-and-ran"), "{err}");
    assert_eq!(unpacked(&s2), 1, "run unpacked the image's layer");
    // A pull of what the store has downloads nothing.
    let (c, _, err) = boxr(&s2, &["pull", &dest]);
    assert_eq!(c, 0, "{err}");
    assert!(
        err.contains("Image is up to date") && !err.contains("Pull complete"),
        "{err}"
    );
    assert_store_consistent(&s2);

    // The pulled image pushed elsewhere is byte for byte the same manifest; its blobs are
    // mounted from the repository it came from.
    let other = format!("{}/other/bb:2", reg.addr);
    let (c, out, err) = boxr(&s2, &["push", &dest, &other]);
    assert_eq!((c, out.trim()), (0, pushed.as_str()), "{err}");
    assert!(err.contains("Mounted from another repository"), "{err}");
    assert_eq!(skopeo_raw(&other), raw);

    // `run` pulls an absent image first; `--pull never` does not.
    let s3 = w.path().join("s3");
    let (c, _, err) = boxr(&s3, &["run", "--rm", "--pull", "never", &other, "true"]);
    assert_ne!(c, 0);
    assert!(err.contains("no such image"), "{err}");
    let (c, out, err) = boxr(&s3, &["run", "--rm", &other, "cat", "/etc/passwd"]);
    assert_eq!(c, 0, "{err}");
    assert!(out.starts_with("root:x:0:0"), "{out}");
    assert!(err.contains("Unable to find image"), "{err}");
    // A short name the store has never goes to a registry (there is none for it).
    let (c, out, err) = boxr(&s1, &["run", "--rm", "bb:1", "echo", "local"]);
    assert_eq!((c, out.trim()), (0, "local"), "{err}");
}

#[test]
fn pulls_what_skopeo_and_podman_pushed() {
    let t = "pulls_what_skopeo_and_podman_pushed";
    if !registry_ready(t) || !have_tool(t, "podman") {
        return;
    }
    let w = tempfile::tempdir().unwrap();
    let reg = Registry::start(w.path(), "", "");
    let s = w.path().join("s");
    import_busybox(w.path(), &s, "bb:amd");
    let arm_root = w.path().join("arm");
    fs::create_dir_all(&arm_root).unwrap();
    let rootfs = busybox_rootfs(&arm_root);
    fs::write(rootfs.join("arch"), "arm64\n").unwrap();
    ok(boxr(&s, &["import", rootfs.to_str().unwrap(), "bb:arm"]));
    let amd_tar = w.path().join("amd.tar");
    let arm_tar = w.path().join("arm.tar");
    ok(boxr(
        &s,
        &["save", "bb:amd", "-o", amd_tar.to_str().unwrap()],
    ));
    ok(boxr(
        &s,
        &["save", "bb:arm", "-o", arm_tar.to_str().unwrap()],
    ));

    // skopeo, as a Docker v2 schema 2 manifest.
    let v2 = format!("{}/skopeo/bb:v2", reg.addr);
    let st = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false", "--format", "v2s2"])
        .arg(format!("oci-archive:{}", amd_tar.display()))
        .arg(format!("docker://{v2}"))
        .status()
        .unwrap();
    assert!(st.success());
    let fresh = w.path().join("fresh");
    ok(boxr(&fresh, &["pull", &v2]));
    let (c, out, err) = boxr(&fresh, &["run", "--rm", &v2, "echo", "docker-manifest"]);
    assert_eq!((c, out.trim()), (0, "docker-manifest"), "{err}");
    // Kept as received: pushing it back gives skopeo's own manifest digest.
    let back = format!("{}/skopeo/back:1", reg.addr);
    let pushed = ok(boxr(&fresh, &["push", &v2, &back])).trim().to_owned();
    assert_eq!(pushed, format!("sha256:{}", sha256_hex(&skopeo_raw(&v2))));

    // podman, a multi-platform index: the host's platform by default, another on request.
    let pr = w.path().join("podman");
    let podman = |args: &[&str]| {
        let out = Command::new("podman")
            .arg("--root")
            .arg(pr.join("root"))
            .arg("--runroot")
            .arg(pr.join("run"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    podman(&["manifest", "create", "localhost/multi"]);
    let amd = format!("oci-archive:{}", amd_tar.display());
    let arm = format!("oci-archive:{}", arm_tar.display());
    podman(&["manifest", "add", "localhost/multi", &amd]);
    podman(&[
        "manifest",
        "add",
        "--arch",
        "arm64",
        "--variant",
        "v8",
        "localhost/multi",
        &arm,
    ]);
    let multi = format!("{}/podman/multi:1", reg.addr);
    podman(&[
        "manifest",
        "push",
        "--all",
        "--tls-verify=false",
        "localhost/multi",
        &format!("docker://{multi}"),
    ]);
    let index_digest = format!("sha256:{}", sha256_hex(&skopeo_raw(&multi)));
    let (c, _, err) = boxr(&fresh, &["pull", &multi]);
    assert_eq!(c, 0, "{err}");
    assert!(
        err.contains(&index_digest),
        "the index digest is reported: {err}"
    );
    let (c, out, err) = boxr(&fresh, &["run", "--rm", &multi, "ls", "/arch"]);
    assert_ne!(c, 0, "the amd64 image has no /arch: {out} {err}");
    ok(boxr(&fresh, &["pull", "--platform", "linux/arm64", &multi]));
    let (c, out, err) = boxr(&fresh, &["run", "--rm", &multi, "cat", "/arch"]);
    assert_eq!((c, out.trim()), (0, "arm64"), "{err}");
    let (c, _, err) = boxr(&fresh, &["pull", "--platform", "linux/s390x", &multi]);
    assert_eq!(c, 1);
    assert!(
        err.contains("no linux/s390x image") && err.contains("linux/arm64/v8"),
        "{err}"
    );
    // By digest: stored under name@digest, found by it.
    let by_digest = format!("{}/podman/multi@{index_digest}", reg.addr);
    let fresh2 = w.path().join("fresh2");
    ok(boxr(&fresh2, &["pull", &by_digest]));
    let (c, out, err) = boxr(&fresh2, &["run", "--rm", &by_digest, "echo", "pinned"]);
    assert_eq!((c, out.trim()), (0, "pinned"), "{err}");

    // -a: every tag of a repository.
    let fresh3 = w.path().join("fresh3");
    let (c, out, err) = boxr(&fresh3, &["pull", "-a", &format!("{}/skopeo/bb", reg.addr)]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(out.trim(), v2);
    assert_store_consistent(&fresh);
}

#[test]
fn bad_registries_and_references_get_one_clear_error() {
    let t = "bad_registries_and_references_get_one_clear_error";
    if !registry_ready(t) {
        return;
    }
    let w = tempfile::tempdir().unwrap();
    let reg = Registry::start(w.path(), "", "");
    let s = w.path().join("s");
    import_busybox(w.path(), &s, "bb:1");
    let dest = format!("{}/t/bb:1", reg.addr);
    ok(boxr(&s, &["push", "bb:1", &dest]));
    let raw: serde_json::Value = serde_json::from_slice(&skopeo_raw(&dest)).unwrap();
    let layer = raw["layers"][0]["digest"].as_str().unwrap().to_owned();

    let fresh = w.path().join("fresh");
    let (c, _, err) = boxr(&fresh, &["pull", &format!("{}/t/bb:nope", reg.addr)]);
    assert_eq!(c, 1);
    assert!(err.contains("manifest `nope` not found"), "{err}");
    let (c, _, err) = boxr(&fresh, &["pull", &format!("{}/t/nothing", reg.addr)]);
    assert_eq!(c, 1, "{err}");
    let (c, _, err) = boxr(&fresh, &["pull", "127.0.0.1:1/t/bb:1"]);
    assert_eq!(c, 1);
    assert!(
        err.contains("cannot reach the registry 127.0.0.1:1"),
        "{err}"
    );
    // A registry that is not loopback is never tried over plain HTTP: here nothing listens,
    // and the error is about HTTPS only (no traffic leaves the test's namespace).
    let (c, _, err) = boxr(
        &fresh,
        &["pull", "10.255.255.1:5000/t/bb:1", "--tls-verify=true"],
    );
    assert_eq!(c, 1);
    assert!(!err.contains("plain HTTP"), "{err}");

    // A tampered blob (same size, other bytes) is refused, naming the digest; nothing of the
    // image is stored.
    let blob = reg.blob_file(&layer);
    let original = fs::read(&blob).unwrap();
    let mut tampered = original.clone();
    let mid = tampered.len() / 2;
    tampered[mid] ^= 0xff;
    fs::write(&blob, &tampered).unwrap();
    let (c, _, err) = boxr(&fresh, &["pull", &dest]);
    assert_eq!(c, 1);
    assert!(
        err.contains(&layer) && err.contains("does not match"),
        "{err}"
    );
    let (_, images, _) = boxr(&fresh, &["images", "-q"]);
    assert_eq!(images.trim(), "", "no image from a failed pull");
    assert!(!fresh.join("blobs/sha256").join(&layer[7..]).exists());
    assert_store_consistent(&fresh);
    // A registry that lies about the size: more bytes than the manifest says.
    let mut longer = original.clone();
    longer.extend_from_slice(b"extra");
    fs::write(&blob, &longer).unwrap();
    let (c, _, err) = boxr(&fresh, &["pull", &dest]);
    assert_eq!(c, 1);
    assert!(err.contains(&layer) && err.contains("bytes"), "{err}");
    fs::write(&blob, &original).unwrap();
    ok(boxr(&fresh, &["pull", &dest]));
    assert_store_consistent(&fresh);
}

/// A CA and a server certificate it signed for 127.0.0.1, in `dir`: (CA, cert, key).
fn make_cert(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let days = ["-days", "2"];
    openssl(
        &[
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=boxr test CA",
            ][..],
            &days,
            &["-keyout", "ca.key", "-out", "ca.pem"],
        ]
        .concat(),
    );
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "key.pem",
        "-out",
        "leaf.csr",
    ]);
    fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        &[
            &[
                "x509",
                "-req",
                "-in",
                "leaf.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
            ][..],
            &days,
            &["-extfile", "leaf.ext", "-out", "cert.pem"],
        ]
        .concat(),
    );
    (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    )
}

#[test]
fn basic_auth_over_tls_with_login() {
    let t = "basic_auth_over_tls_with_login";
    if !registry_ready(t) || !have_tool(t, "openssl") || !have_tool(t, "htpasswd") {
        return;
    }
    let w = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_cert(w.path());
    let htpasswd = w.path().join("htpasswd");
    let out = Command::new("htpasswd")
        .args(["-Bbn", "alice", "s3cret"])
        .output()
        .unwrap();
    fs::write(&htpasswd, out.stdout).unwrap();
    let reg = Registry::start(
        w.path(),
        &format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            cert.display(),
            key.display()
        ),
        &format!(
            "auth:\n  htpasswd:\n    realm: boxr-test\n    path: {}\n",
            htpasswd.display()
        ),
    );
    // The CA for this registry, as Docker and podman lay out certs.d.
    let certs_d = w.path().join("certs.d");
    fs::create_dir_all(certs_d.join(&reg.addr)).unwrap();
    fs::copy(&ca, certs_d.join(&reg.addr).join("ca.crt")).unwrap();
    let auth_file = w.path().join("auth.json");
    let env: Vec<(&str, &str)> = vec![
        ("BOXR_AUTH_FILE", auth_file.to_str().unwrap()),
        ("BOXR_CERTS_D", certs_d.to_str().unwrap()),
        ("HOME", w.path().to_str().unwrap()),
        ("REGISTRY_AUTH_FILE", ""),
        ("DOCKER_CONFIG", w.path().to_str().unwrap()),
    ];
    let s = w.path().join("s");
    import_busybox(w.path(), &s, "bb:1");
    let dest = format!("{}/secure/bb:1", reg.addr);
    let run = |args: &[&str]| boxr_env(&s, w.path(), &env, args);

    // No credentials: refused.
    let (c, _, err) = run(&["push", "bb:1", &dest]);
    assert_eq!(c, 1);
    assert!(err.contains("refused the credentials"), "{err}");
    // Without the CA, the certificate does not verify, and boxr does not drop to plain HTTP.
    let (c, _, err) = boxr_env(
        &s,
        w.path(),
        &[("BOXR_AUTH_FILE", auth_file.to_str().unwrap())],
        &["pull", &dest],
    );
    assert_eq!(c, 1);
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // `boxr login` with the password on stdin.
    let login_with = |password: &[u8]| {
        Command::new(env!("CARGO_BIN_EXE_boxr"))
            .args(["login", &reg.addr, "-u", "alice", "--password-stdin"])
            .envs(env.iter().copied())
            .env("BOXR_ROOT", &s)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut ch| {
                use std::io::Write;
                ch.stdin.take().unwrap().write_all(password)?;
                ch.wait_with_output()
            })
            .unwrap()
    };
    // A wrong password: login fails, nothing is written.
    let wrong = login_with(b"wrong\n");
    assert_eq!(wrong.status.code(), Some(1));
    assert!(!auth_file.exists());
    let login = login_with(b"s3cret\n");
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&login.stdout).trim(),
        "Login Succeeded"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&auth_file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let pushed = ok(run(&["push", "bb:1", &dest])).trim().to_owned();
    let fresh = w.path().join("fresh");
    let (c, _, err) = boxr_env(&fresh, w.path(), &env, &["pull", &dest]);
    assert_eq!(c, 0, "{err}");
    assert!(err.contains(&pushed), "{err}");
    // Credentials from podman's auth file work the same (boxr's own logged out).
    ok(run(&["logout", &reg.addr]));
    let (c, _, _) = run(&["push", "bb:1", &dest]);
    assert_eq!(c, 1, "logged out");
    let podman_auth = w.path().join("podman-auth.json");
    fs::write(
        &podman_auth,
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#,
            reg.addr,
            "YWxpY2U6czNjcmV0" // alice:s3cret
        ),
    )
    .unwrap();
    let mut env2 = env.clone();
    env2.retain(|(k, _)| *k != "REGISTRY_AUTH_FILE");
    env2.push(("REGISTRY_AUTH_FILE", podman_auth.to_str().unwrap()));
    let (c, out, err) = boxr_env(&s, w.path(), &env2, &["push", "bb:1", &dest]);
    assert_eq!((c, out.trim()), (0, pushed.as_str()), "{err}");
}

#[test]
fn builds_from_registry_images_pinned_by_the_lock() {
    let t = "builds_from_registry_images_pinned_by_the_lock";
    if !registry_ready(t) {
        return;
    }
    let w = tempfile::tempdir().unwrap();
    let reg = Registry::start(w.path(), "", "");
    let s1 = w.path().join("s1");
    import_busybox(w.path(), &s1, "bb:1");
    let base = format!("{}/base/bb:1", reg.addr);
    let first = ok(boxr(&s1, &["push", "bb:1", &base])).trim().to_owned();

    let proj = w.path().join("proj");
    fs::create_dir_all(&proj).unwrap();
    fs::write(
        proj.join("boxr.kdl"),
        format!("image \"app\" {{\n    from \"{base}\"\n    run \"echo built > /built\"\n}}\n"),
    )
    .unwrap();
    let build = |store: &Path, extra: &[&str]| {
        let mut args = vec!["build"];
        args.extend_from_slice(extra);
        support::boxr_in(store, &proj, &args)
    };
    // A fresh store pulls the base and records its digest.
    let s2 = w.path().join("s2");
    let (c, _, err) = build(&s2, &[]);
    assert_eq!(c, 0, "{err}");
    let lock: serde_json::Value =
        serde_json::from_slice(&fs::read(proj.join("boxr.lock")).unwrap()).unwrap();
    assert_eq!(lock["images"][&base]["digest"], first.as_str(), "{lock}");
    let built = image_id(&s2, "app");
    ok(boxr(&s2, &["run", "--rm", "app", "cat", "/built"]));

    // The tag moves in the registry; the lock keeps builds where they were, in any store.
    let moved_root = w.path().join("moved");
    fs::create_dir_all(&moved_root).unwrap();
    let rootfs = busybox_rootfs(&moved_root);
    fs::write(rootfs.join("marker"), "moved\n").unwrap();
    ok(boxr(&s1, &["import", rootfs.to_str().unwrap(), "bb:2"]));
    let second = ok(boxr(&s1, &["push", "bb:2", &base])).trim().to_owned();
    assert_ne!(first, second);
    let s3 = w.path().join("s3");
    let (c, _, err) = build(&s3, &[]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(
        image_id(&s3, "app"),
        built,
        "the locked base gives the same image"
    );
    let (c, _, _) = boxr(&s3, &["run", "--rm", "app", "cat", "/marker"]);
    assert_ne!(c, 0, "the old base has no /marker");
    // --update follows the tag and rewrites the lock.
    let (c, _, err) = build(&s3, &["--update"]);
    assert_eq!(c, 0, "{err}");
    let lock: serde_json::Value =
        serde_json::from_slice(&fs::read(proj.join("boxr.lock")).unwrap()).unwrap();
    assert_eq!(lock["images"][&base]["digest"], second.as_str(), "{lock}");
    let (c, out, err) = boxr(&s3, &["run", "--rm", "app", "cat", "/marker"]);
    assert_eq!((c, out.trim()), (0, "moved"), "{err}");

    // check: the lock matches; a new reference is reported until a build locks it.
    let (c, _, err) = support::boxr_in(&s3, &proj, &["check"]);
    assert_eq!(c, 0, "{err}");
    fs::write(
        proj.join("boxr.kdl"),
        format!(
            "image \"app\" {{\n    from \"{}/base/bb:2\"\n}}\n",
            reg.addr
        ),
    )
    .unwrap();
    let (c, _, err) = support::boxr_in(&s3, &proj, &["check"]);
    assert_eq!(c, 1);
    assert!(
        err.contains("not locked") && err.contains("locked but not used"),
        "{err}"
    );
    // --pull never: a base the store lacks is an error, and nothing is pulled.
    let s4 = w.path().join("s4");
    let (c, _, err) = build(&s4, &["--pull", "never"]);
    assert_eq!(c, 1);
    assert!(err.contains("--pull never"), "{err}");
}

/// A token service for a registry in token mode: signs JWTs (RS256, `x5c` naming its
/// self-signed certificate, which the registry trusts) with openssl. Anonymous requests get
/// `pull`; alice:s3cret gets what she asks. Counts the tokens it issues.
struct TokenIssuer {
    addr: String,
    issued: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TokenIssuer {
    fn start(dir: &Path) -> (TokenIssuer, PathBuf) {
        use base64::Engine;
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        let key = dir.join("token.key");
        let cert = dir.join("token.pem");
        let st = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=boxr token issuer",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
        let der = Command::new("openssl")
            .args(["x509", "-outform", "der", "-in"])
            .arg(&cert)
            .output()
            .unwrap()
            .stdout;
        let x5c = STANDARD.encode(der);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let issued = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (issued2, stop2) = (issued.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            use std::io::{BufRead, BufReader, Write};
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                let (stream, _) = match listener.accept() {
                    Ok(s) => s,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                stream.set_nonblocking(false).unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                reader.read_line(&mut request).unwrap();
                let mut user = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap() == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = line
                        .strip_prefix("Authorization: Basic ")
                        .or_else(|| line.strip_prefix("authorization: Basic "))
                    {
                        let decoded =
                            String::from_utf8(STANDARD.decode(v.trim()).unwrap()).unwrap();
                        user = Some(decoded);
                    }
                }
                let target = request.split(' ').nth(1).unwrap_or("");
                let query = target.split_once('?').map_or("", |(_, q)| q);
                let decode = |s: &str| {
                    let mut out = Vec::new();
                    let b = s.as_bytes();
                    let mut i = 0;
                    while i < b.len() {
                        if b[i] == b'%' && i + 2 < b.len() + 1 {
                            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                            i += 3;
                        } else {
                            out.push(b[i]);
                            i += 1;
                        }
                    }
                    String::from_utf8(out).unwrap()
                };
                let mut access = Vec::new();
                for (k, v) in query.split('&').filter_map(|p| p.split_once('=')) {
                    if k != "scope" {
                        continue;
                    }
                    let scope = decode(v);
                    let parts: Vec<&str> = scope.split(':').collect();
                    let (name, actions) = (parts[1], parts[2]);
                    let granted: Vec<&str> = actions
                        .split(',')
                        .filter(|a| *a == "pull" || user.as_deref() == Some("alice:s3cret"))
                        .collect();
                    access.push(
                        serde_json::json!({"type": "repository", "name": name, "actions": granted}),
                    );
                }
                let mut w = stream;
                if user.as_deref().is_some_and(|u| u != "alice:s3cret") {
                    let _ = w.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    continue;
                }
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5c": [x5c]});
                let claims = serde_json::json!({
                    "iss": "boxr-test-issuer", "sub": user.as_deref().unwrap_or(""),
                    "aud": "boxr-test-registry", "exp": now + 300, "nbf": now - 10, "iat": now,
                    "jti": format!("t{}", issued2.load(std::sync::atomic::Ordering::Relaxed)),
                    "access": access,
                });
                let signing_input = format!(
                    "{}.{}",
                    URL_SAFE_NO_PAD.encode(header.to_string()),
                    URL_SAFE_NO_PAD.encode(claims.to_string())
                );
                let mut sign = Command::new("openssl")
                    .args(["dgst", "-sha256", "-sign"])
                    .arg(&key)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap();
                sign.stdin
                    .take()
                    .unwrap()
                    .write_all(signing_input.as_bytes())
                    .unwrap();
                let sig = sign.wait_with_output().unwrap().stdout;
                let jwt = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig));
                issued2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let body = serde_json::json!({"token": jwt, "expires_in": 300}).to_string();
                let _ = write!(
                    w,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (
            TokenIssuer {
                addr,
                issued,
                stop,
                thread: Some(thread),
            },
            cert,
        )
    }
}

impl Drop for TokenIssuer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn bearer_tokens_from_a_token_service() {
    let t = "bearer_tokens_from_a_token_service";
    if !registry_ready(t) || !have_tool(t, "openssl") {
        return;
    }
    let w = tempfile::tempdir().unwrap();
    let (issuer, cert) = TokenIssuer::start(w.path());
    let reg = Registry::start(
        w.path(),
        "",
        &format!(
            "auth:\n  token:\n    realm: http://{}/token\n    service: boxr-test-registry\n    issuer: boxr-test-issuer\n    rootcertbundle: {}\n",
            issuer.addr,
            cert.display()
        ),
    );
    let auth_file = w.path().join("auth.json");
    let env: Vec<(&str, &str)> = vec![
        ("BOXR_AUTH_FILE", auth_file.to_str().unwrap()),
        ("HOME", w.path().to_str().unwrap()),
        ("DOCKER_CONFIG", w.path().to_str().unwrap()),
        ("REGISTRY_AUTH_FILE", ""),
    ];
    let s = w.path().join("s");
    import_busybox(w.path(), &s, "bb:1");
    let dest = format!("{}/tok/bb:1", reg.addr);
    // Anonymous tokens carry pull only: the push is refused.
    let (c, _, err) = boxr_env(&s, w.path(), &env, &["push", "bb:1", &dest]);
    assert_eq!(c, 1);
    assert!(err.contains("refused the credentials"), "{err}");
    // A wrong password is refused by the token service.
    let login = |pass: &str| {
        Command::new(env!("CARGO_BIN_EXE_boxr"))
            .args(["login", &reg.addr, "-u", "alice", "-p", pass])
            .envs(env.iter().copied())
            .env("BOXR_ROOT", &s)
            .output()
            .unwrap()
    };
    assert_eq!(login("nope").status.code(), Some(1));
    let ok_login = login("s3cret");
    assert!(
        ok_login.status.success(),
        "{}",
        String::from_utf8_lossy(&ok_login.stderr)
    );
    let before = issuer.issued.load(std::sync::atomic::Ordering::Relaxed);
    let pushed = ok(boxr_env(&s, w.path(), &env, &["push", "bb:1", &dest]))
        .trim()
        .to_owned();
    let push_tokens = issuer.issued.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert_eq!(
        push_tokens, 1,
        "one token for the push's one scope, kept for every request"
    );
    // Anonymous pull (no credentials at all) with a pull token.
    let fresh = w.path().join("fresh");
    let (c, _, err) = boxr_env(
        &fresh,
        w.path(),
        &[
            (
                "BOXR_AUTH_FILE",
                w.path().join("none.json").to_str().unwrap(),
            ),
            ("HOME", w.path().to_str().unwrap()),
            ("DOCKER_CONFIG", w.path().to_str().unwrap()),
        ],
        &["pull", &dest],
    );
    assert_eq!(c, 0, "{err}");
    assert!(err.contains(&pushed), "{err}");
    let (c, out, err) = boxr(&fresh, &["run", "--rm", &dest, "echo", "token-pulled"]);
    assert_eq!((c, out.trim()), (0, "token-pulled"), "{err}");
}

#[test]
fn a_build_cache_in_a_registry_spares_a_fresh_store_every_step() {
    let t = "a_build_cache_in_a_registry_spares_a_fresh_store_every_step";
    if !registry_ready(t) {
        return;
    }
    let w = tempfile::tempdir().unwrap();
    let reg = Registry::start(w.path(), "", "");
    let proj = w.path().join("proj");
    fs::create_dir_all(proj.join("src")).unwrap();
    busybox_rootfs(&proj);
    fs::write(proj.join("src/a.txt"), "from the context\n").unwrap();
    // The run steps write the time they ran: a step that runs again changes the image.
    fs::write(
        proj.join("boxr.kdl"),
        r#"image "builder" {
    from "dir:rootfs"
    copy "src/" to="/src/"
    run "cat /src/a.txt > /out.txt && date +%s%N >> /out.txt"
}
image "app" {
    from "dir:rootfs"
    copy "/out.txt" to="/out.txt" from="builder"
    run "date +%s%N > /stamp"
}
"#,
    )
    .unwrap();
    let cache = format!("{}/cache/proj:buildcache", reg.addr);
    let s1 = w.path().join("s1");
    let (c, _, err) = support::boxr_in(&s1, &proj, &["build", "--cache-to", &cache]);
    assert_eq!(c, 0, "{err}");
    assert!(err.contains("build cache of 5 steps pushed"), "{err}");
    let id = image_id(&s1, "app");
    let stamp = ok(boxr(
        &s1,
        &["run", "--rm", "app", "cat", "/out.txt", "/stamp"],
    ));

    // A fresh store (another machine): nothing runs, the image is the same.
    let s2 = w.path().join("s2");
    let (c, _, err) = support::boxr_in(&s2, &proj, &["build", "--cache-from", &cache]);
    assert_eq!(c, 0, "{err}");
    assert!(err.contains("0 steps ran, 5 cached"), "{err}");
    assert!(
        err.contains("5 steps taken from the registry's build cache"),
        "{err}"
    );
    assert_eq!(image_id(&s2, "app"), id);
    assert_eq!(
        ok(boxr(
            &s2,
            &["run", "--rm", "app", "cat", "/out.txt", "/stamp"]
        )),
        stamp
    );
    assert_store_consistent(&s2);

    // A changed source: the steps after it run, the ones before come from the cache.
    fs::write(proj.join("src/a.txt"), "changed\n").unwrap();
    let s3 = w.path().join("s3");
    let (c, _, err) = support::boxr_in(&s3, &proj, &["build", "--cache-from", &cache]);
    assert_eq!(c, 0, "{err}");
    assert!(err.contains("4 steps ran, 1 cached"), "{err}");
    // A cache that does not exist is a warning; the build runs its steps.
    let s4 = w.path().join("s4");
    let (c, _, err) = support::boxr_in(
        &s4,
        &proj,
        &[
            "build",
            "--cache-from",
            &format!("{}/cache/none:1", reg.addr),
        ],
    );
    assert_eq!(c, 0, "{err}");
    assert!(
        err.contains("is not used") && err.contains("5 steps ran"),
        "{err}"
    );
}

#[test]
fn mirrors_for_docker_hub_and_credential_helpers() {
    let t = "mirrors_for_docker_hub_and_credential_helpers";
    if !registry_ready(t) || !have_tool(t, "htpasswd") {
        return;
    }
    let w = tempfile::tempdir().unwrap();
    let htpasswd = w.path().join("htpasswd");
    let out = Command::new("htpasswd")
        .args(["-Bbn", "carol", "hunter2"])
        .output()
        .unwrap();
    fs::write(&htpasswd, out.stdout).unwrap();
    let reg = Registry::start(
        w.path(),
        "",
        &format!(
            "auth:\n  htpasswd:\n    realm: boxr-test\n    path: {}\n",
            htpasswd.display()
        ),
    );
    // Docker's config names a credential helper for this registry; the helper is a script.
    let bin = w.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-boxrtest");
    fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\n[ \"$server\" = \"{}\" ] || exit 1\necho '{{\"Username\":\"carol\",\"Secret\":\"hunter2\"}}'\n",
            reg.addr
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).unwrap();
    let docker_dir = w.path().join("docker");
    fs::create_dir_all(&docker_dir).unwrap();
    fs::write(
        docker_dir.join("config.json"),
        format!(r#"{{"credHelpers":{{"{}":"boxrtest"}}}}"#, reg.addr),
    )
    .unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let env: Vec<(&str, &str)> = vec![
        ("PATH", &path),
        ("DOCKER_CONFIG", docker_dir.to_str().unwrap()),
        ("BOXR_AUTH_FILE", "/nonexistent/boxr-auth.json"),
        ("REGISTRY_AUTH_FILE", ""),
        ("HOME", w.path().to_str().unwrap()),
        ("BOXR_REGISTRY_MIRRORS", &reg.addr),
    ];
    let s = w.path().join("s");
    import_busybox(w.path(), &s, "bb:1");
    // A Hub image on the mirror: library/NAME, as a mirror of docker.io lays it out.
    let (c, _, err) = boxr_env(
        &s,
        w.path(),
        &env,
        &["push", "bb:1", &format!("{}/library/mirrored:1", reg.addr)],
    );
    assert_eq!(c, 0, "the helper's credentials are used: {err}");
    // `mirrored:1` is docker.io/library/mirrored:1: pulled from the mirror (this namespace has
    // no route to Docker Hub, so only the mirror can answer).
    let fresh = w.path().join("fresh");
    let (c, out, err) = boxr_env(&fresh, w.path(), &env, &["pull", "mirrored:1"]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(out.trim(), "docker.io/library/mirrored:1");
    let (c, out, err) = boxr(
        &fresh,
        &["run", "--rm", "mirrored:1", "echo", "from-mirror"],
    );
    assert_eq!((c, out.trim()), (0, "from-mirror"), "{err}");
}

/// Reads an HTTP request head (up to the blank line) from `s`. A TLS handshake gets a 400
/// at once, as Go's HTTP servers answer one (boxr then tries plain HTTP on loopback).
fn read_head(s: &mut std::net::TcpStream) -> Option<String> {
    use std::io::{Read, Write};
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).ok()? == 0 {
            return None;
        }
        if head.is_empty() && byte[0] == 0x16 {
            let _ = s.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n");
            return None;
        }
        head.push(byte[0]);
    }
    String::from_utf8(head).ok()
}

/// Serves each connection on `listener` with `handle` on a thread until `stop`.
fn serve(
    listener: std::net::TcpListener,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: impl Fn(std::net::TcpStream) + Send + 'static,
) -> std::thread::JoinHandle<()> {
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            match listener.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    handle(s)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    })
}

#[test]
fn retries_honour_retry_after_and_redirects_carry_no_credentials() {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let t = "retries_honour_retry_after_and_redirects_carry_no_credentials";
    if !registry_ready(t) || !have_tool(t, "htpasswd") {
        return;
    }
    let w = tempfile::tempdir().unwrap();
    let htpasswd = w.path().join("htpasswd");
    let out = Command::new("htpasswd")
        .args(["-Bbn", "dave", "pw"])
        .output()
        .unwrap();
    fs::write(&htpasswd, out.stdout).unwrap();
    let reg = Registry::start(
        w.path(),
        "",
        &format!(
            "auth:\n  htpasswd:\n    realm: boxr-test\n    path: {}\n",
            htpasswd.display()
        ),
    );
    let auth_file = w.path().join("auth.json");
    fs::write(
        &auth_file,
        r#"{"auths":{"PLACEHOLDER":{"auth":"ZGF2ZTpwdw=="}}}"#, // dave:pw
    )
    .unwrap();
    let s = w.path().join("s");
    import_busybox(w.path(), &s, "bb:1");
    let direct_env = |f: &Path| vec![("BOXR_AUTH_FILE", f.to_str().unwrap().to_owned())];
    // Push straight to the registry.
    let reg_auth = w.path().join("reg-auth.json");
    fs::write(
        &reg_auth,
        fs::read_to_string(&auth_file)
            .unwrap()
            .replace("PLACEHOLDER", &reg.addr),
    )
    .unwrap();
    let env: Vec<(&str, String)> = direct_env(&reg_auth);
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dest = format!("{}/r/bb:1", reg.addr);
    ok(boxr_env(&s, w.path(), &env_ref, &["push", "bb:1", &dest]));

    // "Storage": serves blobs from the registry's files; records any Authorization it gets.
    let stop = Arc::new(AtomicBool::new(false));
    let storage = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let storage_addr = storage.local_addr().unwrap().to_string();
    let leaked = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let data = reg.data.clone();
    let (leaked2, served2) = (leaked.clone(), served.clone());
    let storage_thread = serve(storage, stop.clone(), move |mut c| {
        let Some(head) = read_head(&mut c) else {
            return;
        };
        if head.to_ascii_lowercase().contains("\nauthorization:") {
            leaked2.store(true, Ordering::Relaxed);
        }
        let path = head.split(' ').nth(1).unwrap_or("");
        let hex = path.rsplit(':').next().unwrap_or("");
        let file = data
            .join("docker/registry/v2/blobs/sha256")
            .join(hex.get(..2).unwrap_or("xx"))
            .join(hex)
            .join("data");
        let body = fs::read(file).unwrap_or_default();
        served2.fetch_add(1, Ordering::Relaxed);
        let _ = write!(
            c,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = c.write_all(&body);
    });
    // The front boxr talks to: the first manifest request gets 503 with Retry-After: 1; blob
    // requests are redirected to the storage host; everything else goes to the registry.
    let front = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let front_addr = front.local_addr().unwrap().to_string();
    let manifest_times: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(Vec::new()));
    let (times2, reg_addr) = (manifest_times.clone(), reg.addr.clone());
    let front_thread = serve(front, stop.clone(), move |mut c| {
        let Some(head) = read_head(&mut c) else {
            return;
        };
        let path = head.split(' ').nth(1).unwrap_or("").to_owned();
        if path.contains("/manifests/") {
            let mut times = times2.lock().unwrap();
            times.push(Instant::now());
            if times.len() == 1 {
                let _ = c.write_all(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                return;
            }
        }
        if path.contains("/blobs/sha256:") && head.starts_with("GET ") {
            let digest = path.rsplit('/').next().unwrap();
            let _ = write!(
                c,
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{storage_addr}/storage/{digest}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            return;
        }
        let mut upstream = std::net::TcpStream::connect(&reg_addr).unwrap();
        let head = head.replace("Connection: keep-alive", "Connection: close");
        let head = head.replacen("\r\n", "\r\nConnection: close\r\n", 1);
        upstream.write_all(head.as_bytes()).unwrap();
        let mut resp = Vec::new();
        let _ = upstream.read_to_end(&mut resp);
        let _ = c.write_all(&resp);
    });
    let front_auth = w.path().join("front-auth.json");
    fs::write(
        &front_auth,
        fs::read_to_string(&auth_file)
            .unwrap()
            .replace("PLACEHOLDER", &front_addr),
    )
    .unwrap();
    let env: Vec<(&str, String)> = direct_env(&front_auth);
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let fresh = w.path().join("fresh");
    let (c, _, err) = boxr_env(
        &fresh,
        w.path(),
        &env_ref,
        &["pull", &format!("{front_addr}/r/bb:1")],
    );
    stop.store(true, Ordering::Relaxed);
    front_thread.join().unwrap();
    storage_thread.join().unwrap();
    assert_eq!(c, 0, "{err}");
    let times = manifest_times.lock().unwrap().clone();
    assert!(times.len() >= 2, "the manifest request was retried");
    assert!(
        times[1] - times[0] >= Duration::from_millis(950),
        "Retry-After: 1 was honoured ({:?})",
        times[1] - times[0]
    );
    assert!(
        served.load(Ordering::Relaxed) >= 2,
        "config and layer came from the storage host"
    );
    assert!(
        !leaked.load(Ordering::Relaxed),
        "no Authorization went to the storage host"
    );
    let (c, out, err) = boxr(
        &fresh,
        &[
            "run",
            "--rm",
            &format!("{front_addr}/r/bb:1"),
            "echo",
            "redirected",
        ],
    );
    assert_eq!((c, out.trim()), (0, "redirected"), "{err}");
}

/// Takes a stack down (and its containers and networks away) when dropped.
struct StackGuard<'a> {
    store: &'a Path,
    dir: &'a Path,
}

impl Drop for StackGuard<'_> {
    fn drop(&mut self) {
        let _ = support::boxr_in(self.store, self.dir, &["down", "-t", "1"]);
        let (_, ids, _) = boxr(self.store, &["ps", "-aq"]);
        for id in ids.split_whitespace() {
            let _ = boxr(self.store, &["rm", "-f", id]);
        }
        let _ = boxr(self.store, &["network", "prune"]);
    }
}

#[test]
fn up_pulls_the_registry_images_of_services() {
    let t = "up_pulls_the_registry_images_of_services";
    if !registry_ready(t) {
        return;
    }
    let w = tempfile::tempdir().unwrap();
    let reg = Registry::start(w.path(), "", "");
    let s1 = w.path().join("s1");
    import_busybox(w.path(), &s1, "bb:1");
    let image = format!("{}/svc/bb:1", reg.addr);
    let digest = ok(boxr(&s1, &["push", "bb:1", &image])).trim().to_owned();
    let dir = w.path().join("regstack");
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("boxr.kdl"),
        format!("service \"app\" {{\n    image \"{image}\"\n    command \"sleep\" \"1000\"\n}}\n"),
    )
    .unwrap();
    let store = w.path().join("store");
    let _guard = StackGuard {
        store: &store,
        dir: &dir,
    };
    let (c, _, err) = support::boxr_in(&store, &dir, &["up", "-d"]);
    assert_eq!(c, 0, "{err}");
    // The service runs the pulled image; the lock pins it.
    let (c, out, err) = boxr(&store, &["exec", "regstack-app-1", "cat", "/etc/passwd"]);
    assert_eq!(c, 0, "{err}");
    assert!(out.starts_with("root:x:0:0"), "{out}");
    let lock: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("boxr.lock")).unwrap()).unwrap();
    assert_eq!(lock["images"][&image]["digest"], digest.as_str(), "{lock}");
}

#[test]
fn client_certificates_from_certs_d() {
    let t = "client_certificates_from_certs_d";
    if !registry_ready(t) || !have_tool(t, "openssl") {
        return;
    }
    let w = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_cert(w.path());
    // A client certificate signed by the same CA.
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(w.path())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=boxr client",
        "-keyout",
        "client.key",
        "-out",
        "client.csr",
    ]);
    fs::write(w.path().join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "client.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "client.ext",
        "-out",
        "client.cert",
    ]);
    let reg = Registry::start(
        w.path(),
        &format!(
            "  tls:\n    certificate: {}\n    key: {}\n    clientcas:\n      - {}\n",
            cert.display(),
            key.display(),
            ca.display()
        ),
        "",
    );
    let certs_d = w.path().join("certs.d");
    let host_dir = certs_d.join(&reg.addr);
    fs::create_dir_all(&host_dir).unwrap();
    fs::copy(&ca, host_dir.join("ca.crt")).unwrap();
    let s = w.path().join("s");
    import_busybox(w.path(), &s, "bb:1");
    let dest = format!("{}/mtls/bb:1", reg.addr);
    let cert_dir = certs_d.to_str().unwrap();
    // The CA alone: the registry wants a client certificate, and the handshake fails.
    let (c, _, err) = boxr(&s, &["push", "--cert-dir", cert_dir, "bb:1", &dest]);
    assert_eq!(c, 1, "{err}");
    assert!(err.contains("client certificate"), "{err}");
    // With client.cert and client.key beside the CA: accepted.
    fs::copy(w.path().join("client.cert"), host_dir.join("client.cert")).unwrap();
    fs::copy(w.path().join("client.key"), host_dir.join("client.key")).unwrap();
    let (c, out, err) = boxr(&s, &["push", "--cert-dir", cert_dir, "bb:1", &dest]);
    assert_eq!(c, 0, "{err}");
    assert!(out.trim().starts_with("sha256:"), "{out}");
    let fresh = w.path().join("fresh");
    ok(boxr(&fresh, &["pull", "--cert-dir", cert_dir, &dest]));
}
