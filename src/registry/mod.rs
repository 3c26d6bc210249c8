//! The OCI distribution client: `pull`, `push`, `login`.
//!
//! ```text
//! registry ref ─client─▶ manifest (negotiated, platform picked) ─▶ verified blobs ─store─▶ Image
//! ```
//!
//! [`Client`] owns the connections: one endpoint per registry, found by a `GET /v2/` ping that
//! also learns how the registry wants to be authenticated (none, Basic, or Bearer tokens from
//! a token service). HTTPS comes first; plain HTTP only for loopback registries and the ones
//! the user marks insecure, and only when TLS is not spoken (a certificate that does not
//! verify is an error, never a reason to drop to plain text). Every byte received is checked
//! against its digest before the store publishes it; the registry never learns about
//! containers, the store never about HTTP.

pub mod cache;
mod client;
mod credentials;
mod pull;
mod push;
mod tls;

use miette::Diagnostic;
use thiserror::Error;

pub use client::{Client, Options};
pub use credentials::{Credentials, auth_file, registry_domain, remove_login};
pub use pull::{PlatformSpec, PullOptions, Pulled, pull};
pub use push::{PushOptions, push};

use crate::digest::Digest;
use crate::store::StoreError;

/// `boxr login`: checks the credentials against the registry (its token service for Bearer
/// registries), then records them in boxr's credentials file, whose path it returns.
pub fn login(
    mut opts: Options,
    domain: &str,
    creds: Credentials,
) -> Result<std::path::PathBuf, RegistryError> {
    opts.credentials = Some(creds.clone());
    let client = Client::new(opts);
    client.endpoint(domain)?.check_login()?;
    credentials::save_login(domain, &creds)
}

/// Every tag of the repository `reference` names (`GET /v2/<name>/tags/list`, all pages).
pub fn tags(
    client: &Client,
    reference: &crate::reference::ImageRef,
) -> Result<Vec<String>, RegistryError> {
    let (domain, path) = reference.domain_and_path();
    let ep = client.endpoint(&domain)?;
    let scope = format!("repository:{path}:pull");
    let mut url = ep.url(&format!("/v2/{path}/tags/list?n=1000"));
    let mut out = Vec::new();
    loop {
        let resp = ep.send("GET", &url, &scope, &[], client::Payload::Empty)?;
        match resp.status().as_u16() {
            200 => {}
            404 => {
                return Err(RegistryError::NotFound {
                    reference: reference.repository.clone(),
                    what: "repository".into(),
                });
            }
            s => {
                return Err(RegistryError::Status {
                    host: ep.host.clone(),
                    action: format!("GET the tags of {path}"),
                    status: s,
                    detail: client::error_detail(resp, &ep.host),
                });
            }
        }
        // `Link: </v2/...?last=x&n=1000>; rel="next"` pages on.
        let next = client::header(&resp, "link")
            .and_then(|l| l.split_once('<'))
            .and_then(|(_, r)| r.split_once('>'))
            .map(|(u, _)| client::resolve_location(&url, u));
        let body = client::read_small(resp, 16 << 20, &ep.host, "a tag list")?;
        #[derive(serde::Deserialize)]
        struct TagList {
            tags: Option<Vec<String>>,
        }
        let list: TagList = serde_json::from_slice(&body).map_err(|e| RegistryError::Status {
            host: ep.host.clone(),
            action: format!("GET the tags of {path}"),
            status: 200,
            detail: Some(format!("not a tag list: {e}")),
        })?;
        out.extend(list.tags.unwrap_or_default());
        match next {
            Some(n) => url = n,
            None => break,
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// What a pull or push tells its observer (the CLI draws bars or prints lines).
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// The reference resolved to this digest (an index or a manifest).
    Resolved {
        reference: &'a str,
        digest: &'a Digest,
    },
    /// A blob transfer starts.
    Started { digest: &'a Digest, size: u64 },
    /// Bytes of a blob transferred so far.
    Progress { digest: &'a Digest, bytes: u64 },
    /// A blob is done.
    Done {
        digest: &'a Digest,
        outcome: Outcome,
    },
}

/// How a blob transfer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Downloaded,
    /// The store already had it (pull) or the registry did (push).
    Present,
    Uploaded,
    /// Mounted from another repository of the same registry.
    Mounted,
}

/// Receives [`Event`]s; must be callable from the transfer threads.
pub trait Observer: Sync {
    fn event(&self, event: Event<'_>);
}

/// An observer that ignores everything.
pub struct Quiet;

impl Observer for Quiet {
    fn event(&self, _: Event<'_>) {}
}

/// A registry operation failed. Each says what, which reference or digest, and what to do.
#[derive(Debug, Error, Diagnostic)]
pub enum RegistryError {
    #[error("cannot reach the registry {host}: {reason}")]
    #[diagnostic(
        code(boxr::registry::unreachable),
        help(
            "check the address and that the registry is up; a registry without TLS must be on loopback or marked insecure (--tls-verify=false or BOXR_INSECURE_REGISTRIES)"
        )
    )]
    Unreachable { host: String, reason: String },
    #[error("the certificate of {host} does not verify: {reason}")]
    #[diagnostic(
        code(boxr::registry::certificate),
        help(
            "put the CA that signed it in /etc/boxr/certs.d/{host}/ca.crt (or a --cert-dir); boxr never falls back to plain HTTP for a certificate that does not verify"
        )
    )]
    Certificate { host: String, reason: String },
    #[error("the registry {host} ended the TLS handshake ({alert})")]
    #[diagnostic(
        code(boxr::registry::handshake),
        help(
            "a registry that wants a client certificate takes it from certs.d: /etc/boxr/certs.d/{host}/client.cert and client.key (or a --cert-dir)"
        )
    )]
    Handshake { host: String, alert: String },
    #[error("the registry {host} refused the credentials for {what}")]
    #[diagnostic(
        code(boxr::registry::unauthorized),
        help("log in with `boxr login {host}`, or check that you may access this repository")
    )]
    Unauthorized { host: String, what: String },
    #[error("{reference}: {what} not found in the registry")]
    #[diagnostic(
        code(boxr::registry::not_found),
        help("check the name and tag (`boxr pull` takes [REGISTRY/]REPOSITORY[:TAG|@DIGEST])")
    )]
    NotFound { reference: String, what: String },
    #[error("{reference}: the image index has no {want} image (it has: {have})")]
    #[diagnostic(
        code(boxr::registry::platform),
        help("choose one with --platform OS/ARCH[/VARIANT]")
    )]
    NoPlatform {
        reference: String,
        want: String,
        have: String,
    },
    #[error("{what} {digest} from {host} does not match: {reason}")]
    #[diagnostic(
        code(boxr::registry::mismatch),
        help(
            "the registry served different content than its digest names (tampered or corrupt); nothing was stored"
        )
    )]
    Mismatch {
        host: String,
        what: &'static str,
        digest: String,
        reason: String,
    },
    #[error("{host} answered {status} to {action}{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    #[diagnostic(code(boxr::registry::status))]
    Status {
        host: String,
        action: String,
        status: u16,
        detail: Option<String>,
    },
    #[error("{reference}: {reason}")]
    #[diagnostic(code(boxr::registry::unsupported))]
    Unsupported { reference: String, reason: String },
    #[error("{message}")]
    #[diagnostic(code(boxr::registry::config))]
    Config {
        message: String,
        #[help]
        help: Option<String>,
    },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Store(#[from] StoreError),
}
