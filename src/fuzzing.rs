//! The bodies of boxr's fuzz targets: what hostile bytes meet first. Each takes any bytes and
//! must return without a panic, a stack overflow or time out of proportion to the input; the
//! properties below are asserted (a violation is a panic, which the fuzzer reports).
//!
//! `fuzz/` runs them under libFuzzer (`cargo fuzz run TARGET`); `tests/fuzz.rs` runs them on
//! stable over the seed corpus in `fuzz/corpus/` and deterministic mutations of it, in CI.

use std::path::Path;

/// The manifest readers and lowering: the fast reader and the `kdl` crate behind
/// `manifest::syntax::parse`, then `manifest::parse` (lowering, interpolation, validation).
/// Property: when the fast reader accepts a document, the full parse gives the same tree.
pub fn manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let tree = crate::manifest::syntax::parse(text);
    let result = crate::manifest::parse("fuzz.kdl", text, &Default::default());
    if let (Err(_), Ok(_)) = (&tree, &result) {
        panic!("the manifest parsed although its syntax was refused");
    }
}

/// Image references. Properties: a parsed reference prints as text that parses to the same
/// reference; normalizing is idempotent.
pub fn reference(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(r) = crate::reference::ImageRef::parse(text) else {
        return;
    };
    let again = crate::reference::ImageRef::parse(&r.to_string())
        .unwrap_or_else(|e| panic!("`{r}` (from `{text}`) does not parse again: {e}"));
    assert_eq!(
        again.to_string(),
        r.to_string(),
        "a reference prints stably"
    );
    let n = r.normalized();
    assert_eq!(n.normalized(), n, "normalizing twice changes `{text}`");
    let _ = r.familiar();
}

/// OCI JSON: image manifests, indexes and configs. Property: what parses serializes to JSON
/// that parses to the same value.
pub fn oci_json(data: &[u8]) {
    fn round_trip<T>(data: &[u8])
    where
        T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
    {
        if let Ok(v) = serde_json::from_slice::<T>(data) {
            let bytes = crate::oci::to_json(&v);
            let back: T = serde_json::from_slice(&bytes).expect("boxr's JSON parses");
            assert_eq!(
                back, v,
                "a round trip through boxr's JSON changed the value"
            );
        }
    }
    round_trip::<crate::oci::Manifest>(data);
    round_trip::<crate::oci::Index>(data);
    round_trip::<crate::oci::ImageConfig>(data);
}

/// Layer apply (a tar, plain or compressed, into an overlay-format directory) under `work`, an
/// empty directory. Property: nothing is created, changed or removed outside `work/root`
/// (a canary file beside it stays as it was, and nothing else appears beside it).
pub fn layer_apply(data: &[u8], work: &Path) {
    let root = work.join("root");
    std::fs::create_dir(&root).expect("a fresh work directory");
    let canary = work.join("canary");
    std::fs::write(&canary, b"canary").expect("a fresh work directory");
    let reader = match crate::layer::compress::decompressing(data) {
        Ok((_, r)) => r,
        Err(_) => return,
    };
    let _ = crate::layer::apply(reader, &root, &[]);
    assert_eq!(
        std::fs::read(&canary).ok().as_deref(),
        Some(&b"canary"[..]),
        "apply changed a file outside its root"
    );
    let mut beside: Vec<String> = std::fs::read_dir(work)
        .expect("the work directory")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    beside.sort();
    assert_eq!(beside, ["canary", "root"], "apply wrote outside its root");
}
