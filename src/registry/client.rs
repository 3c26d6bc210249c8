//! Connections to registries: TLS (the system's roots plus `certs.d`), the plain-HTTP rule,
//! authentication (Basic, Bearer tokens with their scopes and expiry), retries that honour
//! `Retry-After`, and redirects that never carry credentials to another host.
//!
//! HTTP is ureq (blocking, rustls): boxr is a short synchronous process whose transfers
//! run on a few threads, so an async runtime would add weight and no speed.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ureq::http::{Request, Response};
use ureq::{Agent, Body};

use super::credentials::{self, Credentials};
use super::{RegistryError, tls};
use crate::reference::{DOCKER_HUB, DOCKER_HUB_API};

/// How boxr talks to registries.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--tls-verify=false`: every registry may be plain HTTP or present any certificate.
    pub tls_verify: bool,
    /// Registries that may be plain HTTP or present any certificate
    /// (`BOXR_INSECURE_REGISTRIES`, comma separated host[:port]).
    pub insecure: Vec<String>,
    /// Registries to try before Docker Hub for `docker.io` images (`BOXR_REGISTRY_MIRRORS`).
    pub mirrors: Vec<String>,
    /// Directories of per-registry certificates, `DIR/HOST[:PORT]/*.crt` (CAs) and
    /// `*.cert` + `*.key` (a client certificate), as Docker and podman lay them out.
    pub cert_dirs: Vec<PathBuf>,
    /// Blobs transferred at once.
    pub jobs: usize,
    /// Credentials to use instead of the stored ones (`boxr login`).
    pub credentials: Option<Credentials>,
    /// Upload blobs in chunks of this many bytes (`BOXR_REGISTRY_CHUNK_SIZE`); by default a
    /// blob goes in one `PUT`, and in chunks only when the registry refuses that (413).
    pub chunk_size: Option<u64>,
}

/// The chunk size when a registry refuses a whole blob in one request.
pub const FALLBACK_CHUNK: u64 = 16 << 20;

/// Blobs at once by default: what containers/image (skopeo, podman) uses; measured on the
/// local registry in benches/registry.sh.
pub const DEFAULT_JOBS: usize = 6;

fn list_env(var: &str) -> Vec<String> {
    std::env::var(var)
        .unwrap_or_default()
        .split([',', ' '])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Options {
    /// The defaults with what the environment adds.
    pub fn from_env() -> Options {
        let mut cert_dirs: Vec<PathBuf> = list_env("BOXR_CERTS_D")
            .into_iter()
            .map(PathBuf::from)
            .collect();
        cert_dirs.extend(
            [
                "/etc/boxr/certs.d",
                "/etc/containers/certs.d",
                "/etc/docker/certs.d",
            ]
            .map(PathBuf::from),
        );
        Options {
            tls_verify: true,
            insecure: list_env("BOXR_INSECURE_REGISTRIES"),
            mirrors: list_env("BOXR_REGISTRY_MIRRORS"),
            cert_dirs,
            jobs: std::env::var("BOXR_REGISTRY_JOBS")
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|n| *n > 0)
                .unwrap_or(DEFAULT_JOBS),
            credentials: None,
            chunk_size: std::env::var("BOXR_REGISTRY_CHUNK_SIZE")
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|n| *n > 0),
        }
    }

    fn insecure(&self, host: &str) -> bool {
        !self.tls_verify || self.insecure.iter().any(|h| h == host)
    }

    /// Plain HTTP is allowed for loopback registries (Docker's rule) and insecure ones.
    fn plain_http_allowed(&self, host: &str) -> bool {
        if self.insecure(host) {
            return true;
        }
        let name = match host.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        };
        let name = name.trim_start_matches('[').trim_end_matches(']');
        name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

/// How a registry wants requests authenticated (from its `WWW-Authenticate`).
#[derive(Debug, Clone, PartialEq)]
enum Challenge {
    None,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

impl Challenge {
    fn parse(header: &str) -> Challenge {
        let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Challenge::Basic;
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Challenge::None;
        }
        let params = auth_params(rest);
        match params.get("realm") {
            Some(realm) => Challenge::Bearer {
                realm: realm.clone(),
                service: params.get("service").cloned(),
            },
            None => Challenge::None,
        }
    }
}

/// `key="value", key=value` pairs of an auth header (commas may sit inside quotes).
fn auth_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            (q[..end].to_owned(), q.get(end + 1..).unwrap_or(""))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        out.insert(key, value);
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

struct Token {
    value: String,
    expires: Instant,
}

struct AuthState {
    challenge: Challenge,
    /// Bearer tokens by scope.
    tokens: HashMap<String, Token>,
}

/// One registry, as reached: its base URL, its agent and its authentication state.
pub(crate) struct Endpoint {
    /// The host (and port) requests go to.
    pub host: String,
    base: String,
    agent: Agent,
    creds: Option<Credentials>,
    auth: Mutex<AuthState>,
}

/// What a request sends.
#[derive(Clone, Copy)]
pub(crate) enum Payload<'a> {
    Empty,
    Bytes(&'a [u8]),
    File(&'a Path, u64),
    /// `len` bytes of a file from `offset` (a chunk of an upload).
    FileRange(&'a Path, u64, u64),
}

const ATTEMPTS: u32 = 5;

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250 << attempt.min(6))
}

/// `Retry-After` in seconds (an HTTP date falls back to the backoff), at most a minute.
fn retry_after(resp: &Response<Body>) -> Option<Duration> {
    let v = resp.headers().get("retry-after")?.to_str().ok()?;
    let secs: u64 = v.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(60)))
}

pub(crate) fn header<'r>(resp: &'r Response<Body>, name: &str) -> Option<&'r str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Reads a small response body (a manifest, a token, an error) up to `cap` bytes.
pub(crate) fn read_small(
    resp: Response<Body>,
    cap: u64,
    host: &str,
    what: &str,
) -> Result<Vec<u8>, RegistryError> {
    let mut out = Vec::new();
    resp.into_body()
        .into_with_config()
        .limit(cap)
        .reader()
        .read_to_end(&mut out)
        .map_err(|e| RegistryError::Unreachable {
            host: host.to_owned(),
            reason: format!("reading {what}: {e}"),
        })?;
    Ok(out)
}

/// The registry's error message from an error body (`{"errors":[{"code","message"}]}`).
pub(crate) fn error_detail(resp: Response<Body>, host: &str) -> Option<String> {
    let body = read_small(resp, 64 << 10, host, "an error").ok()?;
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    let e = v.get("errors")?.get(0)?;
    let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
    let msg = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
    Some(format!("{code} {msg}").trim().to_owned())
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `scheme://host` of a URL.
fn origin(url: &str) -> &str {
    let after = url.find("://").map_or(0, |i| i + 3);
    let end = url[after..].find('/').map_or(url.len(), |i| after + i);
    &url[..end]
}

/// A `Location` header resolved against the URL it answered.
pub(crate) fn resolve_location(base_url: &str, location: &str) -> String {
    if location.contains("://") {
        location.to_owned()
    } else if location.starts_with('/') {
        format!("{}{location}", origin(base_url))
    } else {
        let dir = base_url.rsplit_once('/').map_or(base_url, |(d, _)| d);
        format!("{dir}/{location}")
    }
}

fn unreachable(host: &str, e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Unreachable {
        host: host.to_owned(),
        reason: e.to_string(),
    }
}

/// A transport error: a certificate problem, or the registry out of reach.
fn transport(host: &str, e: &ureq::Error) -> RegistryError {
    match tls::tls_error(e) {
        Some(rustls::Error::AlertReceived(alert)) => RegistryError::Handshake {
            host: host.to_owned(),
            alert: format!("{alert:?}"),
        },
        Some(tls) if tls::is_certificate_error(e) => RegistryError::Certificate {
            host: host.to_owned(),
            reason: tls.to_string(),
        },
        _ => unreachable(host, e),
    }
}

/// Connections to every registry a command uses.
pub struct Client {
    opts: Options,
    endpoints: Mutex<HashMap<String, Arc<Endpoint>>>,
}

impl Client {
    pub fn new(opts: Options) -> Client {
        Client {
            opts,
            endpoints: Mutex::new(HashMap::new()),
        }
    }

    pub fn jobs(&self) -> usize {
        self.opts.jobs
    }

    pub(crate) fn chunk_size(&self) -> Option<u64> {
        self.opts.chunk_size
    }

    /// The agent for `host`: its certificates from `certs.d`, verification unless insecure.
    fn agent(&self, host: &str) -> Result<Agent, RegistryError> {
        let tls = tls::config(&self.opts.cert_dirs, host, self.opts.insecure(host))?;
        Ok(Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("boxr/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .tls_config(tls)
            .build()
            .new_agent())
    }

    /// The endpoint for a registry domain as references write it (`docker.io` goes to its
    /// mirrors first, then to Docker Hub's API host). Pinged once per command.
    pub(crate) fn endpoint(&self, domain: &str) -> Result<Arc<Endpoint>, RegistryError> {
        if let Some(ep) = self.endpoints.lock().expect("not poisoned").get(domain) {
            return Ok(ep.clone());
        }
        let mut hosts: Vec<String> = Vec::new();
        if domain == DOCKER_HUB {
            hosts.extend(self.opts.mirrors.iter().cloned());
            hosts.push(DOCKER_HUB_API.to_owned());
        } else {
            hosts.push(domain.to_owned());
        }
        let mut last = None;
        for host in hosts {
            // A mirror has credentials of its own; Docker Hub's are filed under docker.io.
            let filed_as = if host == DOCKER_HUB_API {
                domain
            } else {
                &host
            };
            let creds = self
                .opts
                .credentials
                .clone()
                .or_else(|| credentials::lookup(filed_as));
            match self.ping(&host, creds) {
                Ok(ep) => {
                    let ep = Arc::new(ep);
                    self.endpoints
                        .lock()
                        .expect("not poisoned")
                        .insert(domain.to_owned(), ep.clone());
                    return Ok(ep);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one host"))
    }

    /// `GET /v2/`: HTTPS first, plain HTTP where allowed and TLS is not spoken.
    fn ping(&self, host: &str, creds: Option<Credentials>) -> Result<Endpoint, RegistryError> {
        let agent = self.agent(host)?;
        let https = format!("https://{host}");
        let (base, resp) = match agent.get(format!("{https}/v2/")).call() {
            Ok(r) => (https, r),
            Err(e) if self.opts.plain_http_allowed(host) && !tls::is_certificate_error(&e) => {
                let http = format!("http://{host}");
                match agent.get(format!("{http}/v2/")).call() {
                    Ok(r) => (http, r),
                    Err(e2) => {
                        return Err(unreachable(host, format!("HTTPS: {e}; plain HTTP: {e2}")));
                    }
                }
            }
            Err(e) => return Err(transport(host, &e)),
        };
        let challenge = match resp.status().as_u16() {
            200..=299 => Challenge::None,
            401 => header(&resp, "www-authenticate").map_or(Challenge::None, Challenge::parse),
            s => {
                return Err(RegistryError::Status {
                    host: host.to_owned(),
                    action: "GET /v2/ (is this a registry?)".into(),
                    status: s,
                    detail: None,
                });
            }
        };
        Ok(Endpoint {
            host: host.to_owned(),
            base,
            agent,
            creds,
            auth: Mutex::new(AuthState {
                challenge,
                tokens: HashMap::new(),
            }),
        })
    }
}

impl Endpoint {
    /// The URL of an API path (`/v2/...`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Checks that the credentials work: `GET /v2/` with them (Basic), or a token for no
    /// particular scope (Bearer).
    pub fn check_login(&self) -> Result<(), RegistryError> {
        let resp = self.send("GET", &self.url("/v2/"), "", &[], Payload::Empty)?;
        match resp.status().as_u16() {
            200..=299 => Ok(()),
            s => Err(RegistryError::Status {
                host: self.host.clone(),
                action: "GET /v2/".into(),
                status: s,
                detail: error_detail(resp, &self.host),
            }),
        }
    }

    /// The `Authorization` value for requests with `scope` (space-separated scopes).
    fn authorization(&self, scope: &str, refresh: bool) -> Result<Option<String>, RegistryError> {
        let mut auth = self.auth.lock().expect("not poisoned");
        match auth.challenge.clone() {
            Challenge::None => Ok(None),
            Challenge::Basic => Ok(self.creds.as_ref().map(Credentials::basic)),
            Challenge::Bearer { realm, service } => {
                if !refresh
                    && let Some(t) = auth.tokens.get(scope)
                    && t.expires > Instant::now() + Duration::from_secs(5)
                {
                    return Ok(Some(format!("Bearer {}", t.value)));
                }
                let token = self.fetch_token(&realm, service.as_deref(), scope)?;
                let value = format!("Bearer {}", token.value);
                auth.tokens.insert(scope.to_owned(), token);
                Ok(Some(value))
            }
        }
    }

    /// A token from the registry's token service (anonymous without credentials).
    fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<Token, RegistryError> {
        let mut url = realm.to_owned();
        let mut sep = if url.contains('?') { '&' } else { '?' };
        if let Some(s) = service {
            url.push_str(&format!("{sep}service={}", percent_encode(s)));
            sep = '&';
        }
        for s in scope.split(' ').filter(|s| !s.is_empty()) {
            url.push_str(&format!("{sep}scope={}", percent_encode(s)));
            sep = '&';
        }
        let mut req = self.agent.get(&url);
        if let Some(c) = &self.creds {
            req = req.header("Authorization", c.basic());
        }
        let started = Instant::now();
        let resp = req.call().map_err(|e| unreachable(origin(realm), e))?;
        match resp.status().as_u16() {
            200..=299 => {}
            401 | 403 => {
                return Err(RegistryError::Unauthorized {
                    host: self.host.clone(),
                    what: if scope.is_empty() {
                        "login".into()
                    } else {
                        scope.to_owned()
                    },
                });
            }
            s => {
                return Err(RegistryError::Status {
                    host: origin(realm).to_owned(),
                    action: "a token request".into(),
                    status: s,
                    detail: error_detail(resp, &self.host),
                });
            }
        }
        let body = read_small(resp, 1 << 20, &self.host, "a token")?;
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let t: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| RegistryError::Status {
                host: origin(realm).to_owned(),
                action: "a token request".into(),
                status: 200,
                detail: Some(format!("the answer is not a token: {e}")),
            })?;
        let value = t.token.or(t.access_token).unwrap_or_default();
        // The spec's default lifetime is 60 s; expiry counts from when the request left.
        let life = Duration::from_secs(t.expires_in.unwrap_or(60).max(10));
        Ok(Token {
            value,
            expires: started + life,
        })
    }

    /// Sends a request: authenticated for `scope`, retried with backoff on 429, 5xx and
    /// transport errors (honouring `Retry-After`), redirects followed for GET and HEAD
    /// (credentials only to this registry's own origin). A 401 after a fresh token is
    /// [`RegistryError::Unauthorized`]; every other status is the caller's to judge.
    pub fn send(
        &self,
        method: &str,
        url: &str,
        scope: &str,
        headers: &[(&str, &str)],
        payload: Payload<'_>,
    ) -> Result<Response<Body>, RegistryError> {
        let mut url = url.to_owned();
        let mut attempt = 0;
        let mut refreshed = false;
        let mut redirects = 0;
        loop {
            let own = origin(&url) == self.base;
            let authz = if own {
                self.authorization(scope, false)?
            } else {
                None
            };
            let mut b = Request::builder().method(method).uri(&url);
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            if let Some(a) = &authz {
                b = b.header("Authorization", a);
            }
            let result = match payload {
                Payload::Empty => b.body(()).map(|r| self.agent.run(r)),
                Payload::Bytes(bytes) => b
                    .header("Content-Length", bytes.len().to_string())
                    .body(bytes)
                    .map(|r| self.agent.run(r)),
                Payload::File(path, len) => {
                    let f = fs::File::open(path).map_err(|e| RegistryError::Config {
                        message: format!("cannot open {}: {e}", path.display()),
                        help: None,
                    })?;
                    b.header("Content-Length", len.to_string())
                        .body(f)
                        .map(|r| self.agent.run(r))
                }
                Payload::FileRange(path, offset, len) => {
                    use std::io::{Seek, SeekFrom};
                    let mut f = fs::File::open(path).map_err(|e| RegistryError::Config {
                        message: format!("cannot open {}: {e}", path.display()),
                        help: None,
                    })?;
                    f.seek(SeekFrom::Start(offset))
                        .map_err(|e| RegistryError::Config {
                            message: format!("cannot read {}: {e}", path.display()),
                            help: None,
                        })?;
                    let body = ureq::SendBody::from_owned_reader(f.take(len));
                    b.header("Content-Length", len.to_string())
                        .body(body)
                        .map(|r| self.agent.run(r))
                }
            }
            .map_err(|e| unreachable(&self.host, e))?;
            let resp = match result {
                Ok(r) => r,
                Err(e) if attempt + 1 < ATTEMPTS && !tls::is_certificate_error(&e) => {
                    std::thread::sleep(backoff(attempt));
                    attempt += 1;
                    continue;
                }
                Err(e) => return Err(transport(&self.host, &e)),
            };
            let status = resp.status().as_u16();
            match status {
                401 if own && !refreshed => {
                    if let Some(h) = header(&resp, "www-authenticate") {
                        let ch = Challenge::parse(h);
                        let mut auth = self.auth.lock().expect("not poisoned");
                        if ch != Challenge::None {
                            auth.challenge = ch;
                        }
                        auth.tokens.remove(scope);
                    }
                    refreshed = true;
                    continue;
                }
                401 => {
                    return Err(RegistryError::Unauthorized {
                        host: self.host.clone(),
                        what: format!("{method} {}", url.trim_start_matches(&self.base)),
                    });
                }
                429 | 500 | 502 | 503 | 504 if attempt + 1 < ATTEMPTS => {
                    let wait = retry_after(&resp).unwrap_or_else(|| backoff(attempt));
                    std::thread::sleep(wait);
                    attempt += 1;
                    continue;
                }
                301 | 302 | 303 | 307 | 308
                    if matches!(method, "GET" | "HEAD") && redirects < 10 =>
                {
                    let Some(loc) = header(&resp, "location") else {
                        return Ok(resp);
                    };
                    url = resolve_location(&url, loc);
                    redirects += 1;
                    continue;
                }
                _ => return Ok(resp),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges() {
        let h = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/debian:pull,push""#;
        assert_eq!(
            Challenge::parse(h),
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
            }
        );
        assert_eq!(Challenge::parse(r#"Basic realm="x""#), Challenge::Basic);
        assert_eq!(Challenge::parse("Negotiate"), Challenge::None);
        let p = auth_params(r#"realm=http://a/t, service="s""#);
        assert_eq!(p["realm"], "http://a/t");
        assert_eq!(p["service"], "s");
    }

    #[test]
    fn resolves_locations_and_origins() {
        let base = "http://127.0.0.1:5000/v2/a/blobs/uploads/";
        assert_eq!(origin(base), "http://127.0.0.1:5000");
        assert_eq!(
            resolve_location(base, "/v2/a/blobs/uploads/u1?_state=x"),
            "http://127.0.0.1:5000/v2/a/blobs/uploads/u1?_state=x"
        );
        assert_eq!(
            resolve_location(base, "https://s3.example/b?sig=1"),
            "https://s3.example/b?sig=1"
        );
        assert_eq!(
            percent_encode("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }

    #[test]
    fn plain_http_only_for_loopback_and_insecure() {
        let mut o = Options::from_env();
        o.insecure = vec!["reg.lan:5000".into()];
        for ok in [
            "localhost:5000",
            "127.0.0.1:5000",
            "127.8.0.1",
            "[::1]:5000",
            "reg.lan:5000",
        ] {
            assert!(o.plain_http_allowed(ok), "{ok}");
        }
        for no in ["reg.lan", "10.0.0.1:5000", "docker.io", "localhost.example"] {
            assert!(!o.plain_http_allowed(no), "{no}");
        }
    }
}
