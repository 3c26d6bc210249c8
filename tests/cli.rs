//! The `boxr` binary as a user runs it: exit codes, output modes, flags.

mod support;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn boxr(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_boxr"))
        .current_dir(dir)
        .args(args)
        .env("BOXR_ROOT", dir.join(".boxr-root"))
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn manifests() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/manifests"))
}

#[test]
fn every_valid_manifest_checks_ok() {
    let mut n = 0;
    for entry in fs::read_dir(manifests()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "kdl") {
            continue;
        }
        let name = path.file_name().unwrap().to_str().unwrap();
        let out = boxr(manifests(), &["--progress", "plain", "-f", name, "check"]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out.stderr));
        assert!(
            text(&out.stdout).starts_with(&format!("ok: {name} (")),
            "{name}"
        );
        assert!(out.stderr.is_empty(), "{name}: {}", text(&out.stderr));
        n += 1;
    }
    assert!(n >= 10, "only {n} valid manifests");
}

#[test]
fn quiet_check_prints_nothing() {
    let out = boxr(manifests(), &["-q", "-f", "minimal.kdl", "check"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
}

#[test]
fn verbose_reports_what_was_read() {
    let out = boxr(
        manifests(),
        &["--verbose", "-f", "full.kdl", "plan", "--json"],
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("read full.kdl (") && err.contains("3 images, 2 services"),
        "{err}"
    );
    // full.kdl's dir: base does not exist next to it, so planning fails, after reading.
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("cannot read this base"), "{err}");
}

#[test]
fn a_missing_manifest_is_a_boxr_failure() {
    let dir = tempfile::tempdir().unwrap();
    let out = boxr(dir.path(), &["--progress", "plain", "check"]);
    assert_eq!(out.status.code(), Some(125));
    let err = text(&out.stderr);
    assert!(err.contains("cannot read boxr.kdl"), "{err}");
    assert!(err.contains("No such file"), "{err}");
}

#[test]
fn bad_flags_exit_125_and_help_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        boxr(dir.path(), &["check", "--bogus"]).status.code(),
        Some(125)
    );
    assert_eq!(boxr(dir.path(), &["frobnicate"]).status.code(), Some(125));
    let help = boxr(dir.path(), &["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let h = text(&help.stdout);
    for cmd in [
        "check",
        "plan",
        "completions",
        "--root",
        "--file",
        "--progress",
    ] {
        assert!(h.contains(cmd), "help lacks {cmd}:\n{h}");
    }
}

#[test]
fn json_diagnostics_are_machine_readable() {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/invalid"));
    let out = boxr(
        dir,
        &[
            "--progress",
            "json",
            "-f",
            "every-error-at-once.kdl",
            "check",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stderr).expect("stderr is JSON");
    let related = v["related"].as_array().expect("related diagnostics");
    assert_eq!(related.len(), 8);
    let first = &related[0];
    assert_eq!(first["code"], "boxr::manifest::unknown_node");
    assert_eq!(first["help"], "did you mean `from`?");
    let label = &first["labels"][0];
    // `fromm` starts at line 5, column 5 of the file.
    let src = fs::read_to_string(dir.join("every-error-at-once.kdl")).unwrap();
    let offset = label["span"]["offset"].as_u64().unwrap() as usize;
    assert_eq!(&src[offset..offset + 5], "fromm");
    // A valid manifest's summary is JSON on stdout.
    let ok = boxr(
        manifests(),
        &["--progress", "json", "-f", "full.kdl", "check"],
    );
    let v: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["images"], 3);
    assert_eq!(v["services"], 2);
}

fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("boxr.kdl"),
        "arg \"GREETING\" default=\"hello\"\n\
         image \"base\" {\n    from \"scratch\"\n    copy \"hello.txt\" to=\"/hello.txt\"\n}\n\
         image \"app\" {\n    from \"base\"\n    run \"echo ${GREETING}\"\n    cmd \"/bin/sh\"\n}\n\
         image \"other\" {\n    from \"scratch\"\n    copy \"/hello.txt\" to=\"/h\" from=\"base\"\n}\n",
    )
    .unwrap();
    fs::write(dir.path().join("hello.txt"), "hi\n").unwrap();
    dir
}

#[test]
fn plan_shows_steps_keys_and_dependencies() {
    let dir = project();
    let out = boxr(dir.path(), &["plan"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    let lines: Vec<&str> = s.lines().collect();
    assert!(lines[0].starts_with("image base  "), "{s}");
    assert!(lines[1].contains("from scratch"), "{s}");
    assert!(lines[2].contains("+ copy hello.txt → /hello.txt"), "{s}");
    assert!(
        lines[3].starts_with("image app  ") && lines[3].ends_with("(needs base)"),
        "{s}"
    );
    assert!(
        lines[4].contains("+ run echo hello") && lines[4].ends_with("← #2"),
        "{s}"
    );
    assert!(lines[5].contains("  cmd [\"/bin/sh\"]"), "{s}");
    assert!(
        lines[6].starts_with("image other  ") && lines[6].ends_with("(needs base)"),
        "{s}"
    );
    assert!(
        lines[8].contains("(from base)") && lines[8].ends_with("← #2"),
        "{s}"
    );
    assert_eq!(
        lines.last().unwrap(),
        &"3 images, 6 steps (3 with a layer), key schema v1"
    );
    // `check` counts the steps as `plan` does (`app`'s `from "base"` is no step of its own).
    let out = boxr(dir.path(), &["check"]);
    assert_eq!(
        text(&out.stdout),
        "ok: boxr.kdl (3 images, 6 steps, 0 services)\n"
    );
}

#[test]
fn plan_json_matches_the_text_and_follows_args() {
    let dir = project();
    let json = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["plan", "--json"];
        all.extend_from_slice(args);
        let out = boxr(dir.path(), &all);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let p = json(&[]);
    assert_eq!(p["schema"], 1);
    let steps = p["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 6);
    assert_eq!(steps[2]["op"], "run");
    assert_eq!(steps[2]["definition"]["shell"][0], "echo hello");
    let text_plan = text(&boxr(dir.path(), &["plan"]).stdout);
    let key = steps[2]["key"].as_str().unwrap();
    assert!(text_plan.contains(&key["sha256:".len()..]["".len()..12]));
    // An arg override changes the step that uses it and what follows, nothing else.
    let q = json(&["--arg", "GREETING=bonjour"]);
    let qs = q["steps"].as_array().unwrap();
    assert_eq!(qs[2]["definition"]["shell"][0], "echo bonjour");
    assert_eq!(steps[1]["key"], qs[1]["key"]);
    assert_ne!(steps[2]["key"], qs[2]["key"]);
    assert_ne!(steps[3]["key"], qs[3]["key"]);
    assert_eq!(steps[5]["key"], qs[5]["key"]);
    // --arg NAME takes the value from the environment, as docker build does.
    let out = Command::new(env!("CARGO_BIN_EXE_boxr"))
        .current_dir(dir.path())
        .args(["plan", "--json", "--arg", "GREETING"])
        .env("GREETING", "bonjour")
        .output()
        .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["steps"][2]["key"], qs[2]["key"]);
}

#[test]
fn an_unknown_arg_override_is_refused() {
    let dir = project();
    let out = boxr(
        dir.path(),
        &["--progress", "plain", "check", "--arg", "GRETING=x"],
    );
    assert_eq!(out.status.code(), Some(125));
    let err = text(&out.stderr);
    assert!(err.contains("declares no `arg \"GRETING\"`"), "{err}");
    assert!(err.contains("did you mean `GREETING`?"), "{err}");
}

#[test]
fn plan_targets_and_unknown_targets() {
    let dir = project();
    let out = boxr(dir.path(), &["plan", "app"]);
    let s = text(&out.stdout);
    assert!(
        s.contains("image base") && s.contains("image app") && !s.contains("image other"),
        "{s}"
    );
    let out = boxr(dir.path(), &["--progress", "plain", "plan", "ap"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out.stderr).contains("did you mean `app`?"));
}

#[test]
fn plan_points_at_a_missing_copy_source() {
    let dir = project();
    fs::remove_file(dir.path().join("hello.txt")).unwrap();
    let out = boxr(dir.path(), &["--progress", "plain", "plan"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("`hello.txt` does not exist in the build context"),
        "{err}"
    );
    assert!(
        err.contains("boxr.kdl:4:10"),
        "label at the source token: {err}"
    );
}

#[test]
fn plan_context_flag_reads_sources_elsewhere() {
    let dir = project();
    let ctx = tempfile::tempdir().unwrap();
    fs::write(ctx.path().join("hello.txt"), "other\n").unwrap();
    let here = text(&boxr(dir.path(), &["plan"]).stdout);
    let ctx_arg = ctx.path().to_str().unwrap();
    let there = text(&boxr(dir.path(), &["plan", "--context", ctx_arg]).stdout);
    assert_ne!(here, there);
    fs::write(ctx.path().join("hello.txt"), "hi\n").unwrap();
    let same = text(&boxr(dir.path(), &["plan", "--context", ctx_arg]).stdout);
    assert_eq!(here, same);
}

#[test]
fn completions_for_every_shell() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = boxr(dir.path(), &["completions", shell]);
        assert_eq!(out.status.code(), Some(0));
        let script = dir.path().join(format!("boxr.{shell}"));
        std::fs::write(&script, &out.stdout).unwrap();
        if !support::have_tool("completions_for_every_shell", shell) {
            return;
        }
        // Each shell loads its script and completes `boxr pl` to `plan` and `boxr network `
        // to its subcommands.
        let probe = match shell {
            "bash" => format!(
                "source {0}; for line in 'boxr pl' 'boxr network '; do \
                 COMP_WORDS=($line); [ \"${{line% }}\" != \"$line\" ] && COMP_WORDS+=(''); \
                 COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); COMP_LINE=$line; COMP_POINT=${{#line}}; \
                 _boxr boxr \"${{COMP_WORDS[-1]}}\" \"${{COMP_WORDS[-2]}}\"; echo \"${{COMPREPLY[*]}}\"; done",
                script.display()
            ),
            "zsh" => format!(
                "autoload -U compinit && compinit -u && source {} && echo $_comps[boxr]",
                script.display()
            ),
            _ => format!(
                "source {0}; complete -C 'boxr pl'; complete -C 'boxr network '",
                script.display()
            ),
        };
        let out = std::process::Command::new(shell)
            .args(["-c", &probe])
            .output()
            .unwrap();
        let got = text(&out.stdout);
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        if shell == "zsh" {
            // Registered for boxr (zsh completes only at an interactive prompt).
            assert_eq!(got.trim(), "_boxr", "zsh: {}", text(&out.stderr));
        } else {
            assert!(got.contains("plan"), "{shell} completes `boxr pl`: {got}");
            assert!(
                got.contains("create") && got.contains("inspect"),
                "{shell}: {got}"
            );
        }
    }
}

/// Hostile manifests get a diagnostic, never a crash or a hang: nesting past the limit (which
/// overflowed both readers' stacks), a file that is not KDL at all (thousands of errors, capped),
/// and an endless file.
#[test]
fn hostile_manifests_get_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let braces = format!("a {}{}", "{ ".repeat(2000), "}".repeat(2000));
    let nodes = format!("{}{}", "a {\n".repeat(10_000), "}\n".repeat(10_000));
    for (name, body) in [("braces.kdl", braces), ("nodes.kdl", nodes)] {
        std::fs::write(dir.path().join(name), body).unwrap();
        let out = boxr(dir.path(), &["check", "-f", name]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", text_of(&out));
        assert!(
            text(&out.stderr).contains("nodes nest deeper than 64 levels"),
            "{name}: {}",
            text(&out.stderr)
        );
    }
    // 64 levels are fine as far as nesting goes (the lowering then says what is wrong).
    let ok = format!("{}{}", "a {\n".repeat(64), "}\n".repeat(64));
    std::fs::write(dir.path().join("ok.kdl"), ok).unwrap();
    let out = boxr(dir.path(), &["check", "-f", "ok.kdl"]);
    assert!(
        !text(&out.stderr).contains("nest deeper"),
        "{}",
        text_of(&out)
    );
    // Not KDL: every error counted, the first 50 shown.
    let garbage: String = (0..20_000u32)
        .map(|i| format!("={:x}=(]", i.wrapping_mul(2_654_435_761)))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.path().join("garbage.kdl"), garbage).unwrap();
    let out = boxr(dir.path(), &["check", "-f", "garbage.kdl"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("(the first 50 are shown, and"), "{err}");
    // An endless file stops at the limit.
    let out = boxr(dir.path(), &["check", "-f", "/dev/zero"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("/dev/zero is larger than 8 MiB"),
        "{}",
        text(&out.stderr)
    );
}

fn text_of(out: &Output) -> String {
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

#[test]
fn a_missing_image_container_or_network_exits_1_and_run_exits_125() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["rm", "nosuch"][..],
        &["stop", "nosuch"],
        &["logs", "nosuch"],
        &["exec", "nosuch", "true"],
        &["inspect", "nosuch"],
        &["rmi", "nosuch"],
        &["tag", "nosuch", "other:1"],
        &["history", "nosuch"],
        &["network", "rm", "nosuch"],
    ] {
        let out = boxr(dir.path(), args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(text(&out.stderr).contains("nosuch"), "{args:?}");
    }
    // `inspect` looks for a container, then an image: neither is Docker's "no such object".
    let out = boxr(dir.path(), &["inspect", "nosuch"]);
    assert!(
        text(&out.stderr).contains("no such object: nosuch"),
        "{}",
        text(&out.stderr)
    );
    // `run` exits 125 for every failure of its own, as `docker run` does.
    let out = boxr(
        dir.path(),
        &[
            "run",
            "--pull",
            "never",
            "--network",
            "none",
            "nosuch:1",
            "true",
        ],
    );
    assert_eq!(out.status.code(), Some(125), "{}", text(&out.stderr));
}

#[test]
fn a_garbage_archive_is_refused_without_its_bytes_on_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    // A tar header whose numeric fields are binary garbage: the tar reader quotes them.
    let mut header = vec![0u8; 512];
    header[..5].copy_from_slice(b"abcde");
    for (i, b) in header[100..156].iter_mut().enumerate() {
        *b = 0x80 | (i as u8).wrapping_mul(37);
    }
    header.extend_from_slice(&[0x1b, b'[', b'2', b'J', 0xff, 0xfe]);
    header.resize(4096, 0xff);
    let garbage = dir.path().join("garbage.tar");
    fs::write(&garbage, &header).unwrap();
    for args in [
        &["import", garbage.to_str().unwrap(), "x:1"][..],
        &["load", "-i", garbage.to_str().unwrap()],
    ] {
        let out = boxr(dir.path(), args);
        assert_ne!(out.status.code(), Some(0), "{args:?}");
        let err = String::from_utf8(out.stderr.clone())
            .unwrap_or_else(|_| panic!("{args:?}: not text: {:?}", out.stderr));
        assert!(
            !err.contains('\u{1b}') && !err.contains('\u{FFFD}'),
            "{args:?}: raw bytes in {err:?}"
        );
        assert!(err.contains("archive"), "{args:?}: {err}");
    }
}
