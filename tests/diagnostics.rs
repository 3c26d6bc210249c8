//! Every invalid manifest in tests/data/invalid gives exit code 1 and exactly the diagnostic in
//! the `.stderr` file beside it: the message, the snippet, where each label points, the help.
//! Run with `BOXR_BLESS=1` to rewrite the expected files after an intended change, then review
//! the diff.

use std::fs;
use std::path::Path;
use std::process::Command;

#[test]
fn invalid_manifests_render_the_expected_diagnostics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/invalid");
    let bless = std::env::var_os("BOXR_BLESS").is_some();
    let mut cases: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "kdl"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 40, "only {} invalid cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_str().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_boxr"))
            .current_dir(&dir)
            .args(["--progress", "plain", "-f", name, "check"])
            .env_remove("NO_COLOR")
            .output()
            .unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        let expected_path = case.with_extension("stderr");
        if out.status.code() != Some(1) {
            failures.push(format!(
                "{name}: exit {:?}, expected 1\n{stderr}",
                out.status.code()
            ));
            continue;
        }
        if !out.stdout.is_empty() {
            failures.push(format!("{name}: printed to stdout"));
        }
        if bless {
            fs::write(&expected_path, &stderr).unwrap();
            continue;
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        if stderr != expected {
            failures.push(format!(
                "{name}: diagnostic differs\n--- expected\n{expected}\n--- actual\n{stderr}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
