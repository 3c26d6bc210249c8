//! The cache key schema. A [`StepKey`] names the result of one build step; two steps with the
//! same key produce the same layer and config, so a key found in the cache is reused.
//!
//! Schema v1 (documented in the book, chapter "Cache keys"): SHA-256 over the fields below,
//! each written as a little-endian u64 length followed by its bytes:
//!
//! 1. the schema tag `boxr-step-key/v1`;
//! 2. the parent: the parent step's key in hex, or for a base step the base's content digest;
//! 3. the canonical step definition: compact JSON, object keys sorted, `${NAME}` args already
//!    replaced, relative paths resolved against the working directory;
//! 4. the effective config the step runs with: env, user, workdir and shell (compact JSON);
//! 5. the digests of the inputs the step reads (for `copy`: the content digest of its sources;
//!    for `copy from=`: the key of the source image's last step), in source order.
//!
//! Nothing machine-, path- or time-specific enters a key: the same manifest and context give the
//! same keys on any machine, in any directory, at any time. Changing any of this is a schema
//! change: bump [`SCHEMA`] and say so in the book.

use sha2::{Digest, Sha256};

/// The version of the key schema.
pub const SCHEMA: u32 = 1;
const TAG: &str = "boxr-step-key/v1";

pub use crate::digest::Digest as Digest256;

/// The cache key of one build step.
pub type StepKey = Digest256;

/// Writes length-prefixed fields into a SHA-256, so that no two field sequences collide.
pub struct KeyHasher(Sha256);

impl KeyHasher {
    pub fn new() -> Self {
        let mut h = KeyHasher(Sha256::new());
        h.field(TAG.as_bytes());
        h
    }

    pub fn field(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
        self
    }

    pub fn finish(self) -> StepKey {
        Digest256(self.0.finalize().into())
    }
}

impl Default for KeyHasher {
    fn default() -> Self {
        Self::new()
    }
}

/// The key of a step: see the module docs for the fields.
pub fn step_key(
    parent: &str,
    definition: &serde_json::Value,
    config: &serde_json::Value,
    inputs: &[String],
) -> StepKey {
    let mut h = KeyHasher::new();
    h.field(parent.as_bytes());
    h.field(definition.to_string().as_bytes());
    h.field(config.to_string().as_bytes());
    h.field(&(inputs.len() as u64).to_le_bytes());
    for i in inputs {
        h.field(i.as_bytes());
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_are_length_prefixed() {
        let a = step_key("ab", &json!("c"), &json!({}), &[]);
        let b = step_key("a", &json!("bc"), &json!({}), &[]);
        assert_ne!(a, b);
        let c = step_key("p", &json!({}), &json!({}), &["x".into(), "y".into()]);
        let d = step_key("p", &json!({}), &json!({}), &["xy".into()]);
        assert_ne!(c, d);
    }

    #[test]
    fn json_objects_are_canonical() {
        // serde_json's map is sorted, so construction order does not matter.
        let a = step_key("p", &json!({"a": 1, "b": 2}), &json!({}), &[]);
        let b = step_key("p", &json!({"b": 2, "a": 1}), &json!({}), &[]);
        assert_eq!(a, b);
    }
}
