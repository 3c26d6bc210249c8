//! Registry credentials: boxr's own file, then the files Docker and podman keep, in the order
//! those tools read them. `boxr login` writes only boxr's own file (mode 0600).
//!
//! Every file has the `auth.json` shape: `{"auths": {"HOST": {"auth": base64("user:pass")}}}`.
//! Docker's `config.json` may instead name a credential helper (`credsStore`, or
//! `credHelpers` per host): `docker-credential-NAME get` reads the host on stdin and prints
//! `{"Username": …, "Secret": …}`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::RegistryError;
use crate::reference::DOCKER_HUB;

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ***)", self.username)
    }
}

impl Credentials {
    /// The `Authorization: Basic` value.
    pub fn basic(&self) -> String {
        format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{}", self.username, self.password))
        )
    }
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// boxr's own credentials file: `$BOXR_AUTH_FILE`, else `$XDG_CONFIG_HOME/boxr/auth.json`,
/// else `~/.config/boxr/auth.json`.
pub fn auth_file() -> PathBuf {
    if let Some(p) = env_path("BOXR_AUTH_FILE") {
        return p;
    }
    let config = env_path("XDG_CONFIG_HOME")
        .or_else(|| env_path("HOME").map(|h| h.join(".config")))
        .unwrap_or_else(|| PathBuf::from("/root/.config"));
    config.join("boxr/auth.json")
}

/// The auth.json files to read, boxr's first.
fn auth_files() -> Vec<PathBuf> {
    let mut files = vec![auth_file()];
    if let Some(p) = env_path("REGISTRY_AUTH_FILE") {
        files.push(p);
    }
    if let Some(p) = env_path("XDG_RUNTIME_DIR") {
        files.push(p.join("containers/auth.json"));
    }
    files.push(PathBuf::from(format!(
        "/run/containers/{}/auth.json",
        nix::unistd::getuid()
    )));
    files
}

fn docker_config() -> PathBuf {
    env_path("DOCKER_CONFIG")
        .or_else(|| env_path("HOME").map(|h| h.join(".docker")))
        .unwrap_or_else(|| PathBuf::from("/root/.docker"))
        .join("config.json")
}

/// The keys a registry may be filed under (`docker.io` has several historic ones).
fn keys_for(domain: &str) -> Vec<String> {
    if domain == DOCKER_HUB {
        ["docker.io", "index.docker.io", "registry-1.docker.io"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        vec![domain.to_owned()]
    }
}

/// A key of an `auths` map as a bare host: `https://index.docker.io/v1/` → `index.docker.io`.
fn bare_host(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

/// The registry a user names (`boxr login https://index.docker.io/v1/`, `localhost:5000`) as
/// references write it.
pub fn registry_domain(text: &str) -> String {
    match bare_host(text.trim()) {
        "" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_owned(),
        h => h.to_owned(),
    }
}

fn read_json(path: &Path) -> Option<Value> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn from_auths(doc: &Value, domain: &str) -> Option<Credentials> {
    let auths = doc.get("auths")?.as_object()?;
    let keys = keys_for(domain);
    let entry = auths
        .iter()
        .find(|(k, _)| keys.iter().any(|want| bare_host(k) == want))?
        .1;
    if let Some(auth) = entry.get("auth").and_then(Value::as_str)
        && !auth.is_empty()
    {
        let decoded = STANDARD.decode(auth.trim()).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (u, p) = text.split_once(':')?;
        return Some(Credentials {
            username: u.to_owned(),
            password: p.to_owned(),
        });
    }
    let u = entry.get("username").and_then(Value::as_str)?;
    let p = entry.get("password").and_then(Value::as_str)?;
    Some(Credentials {
        username: u.to_owned(),
        password: p.to_owned(),
    })
}

/// Runs `docker-credential-HELPER get` for `server`.
fn from_helper(helper: &str, server: &str) -> Option<Credentials> {
    let mut child = Command::new(format!("docker-credential-{helper}"))
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(server.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(Credentials {
        username: v.get("Username")?.as_str()?.to_owned(),
        password: v.get("Secret")?.as_str()?.to_owned(),
    })
}

/// The credentials for a registry domain (as written in references: `docker.io`,
/// `registry.example:5000`), from the first file that has them.
pub fn lookup(domain: &str) -> Option<Credentials> {
    for f in auth_files() {
        if let Some(c) = read_json(&f).and_then(|d| from_auths(&d, domain)) {
            return Some(c);
        }
    }
    let doc = read_json(&docker_config())?;
    let keys = keys_for(domain);
    let helper = doc
        .get("credHelpers")
        .and_then(Value::as_object)
        .and_then(|h| {
            h.iter()
                .find(|(k, _)| keys.iter().any(|w| bare_host(k) == w))
                .and_then(|(_, v)| v.as_str())
        })
        .or_else(|| doc.get("credsStore").and_then(Value::as_str));
    if let Some(helper) = helper {
        let server = if domain == DOCKER_HUB {
            "https://index.docker.io/v1/"
        } else {
            domain
        };
        if let Some(c) = from_helper(helper, server) {
            return Some(c);
        }
    }
    from_auths(&doc, domain)
}

fn load_own(path: &Path) -> Result<serde_json::Map<String, Value>, RegistryError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let doc: Value = serde_json::from_slice(&bytes).map_err(|e| RegistryError::Config {
                message: format!("{} is not valid JSON: {e}", path.display()),
                help: Some("fix or remove the file".into()),
            })?;
            Ok(doc.as_object().cloned().unwrap_or_default())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
        Err(e) => Err(RegistryError::Config {
            message: format!("cannot read {}: {e}", path.display()),
            help: None,
        }),
    }
}

/// Writes boxr's file atomically, mode 0600 (it holds passwords).
fn write_own(path: &Path, doc: serde_json::Map<String, Value>) -> Result<(), RegistryError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |e: std::io::Error| RegistryError::Config {
        message: format!("cannot write {}: {e}", path.display()),
        help: None,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let mut t = tempfile::Builder::new()
        .prefix(".auth-")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(err)?;
    let mut bytes = serde_json::to_vec_pretty(&Value::Object(doc)).expect("serializes");
    bytes.push(b'\n');
    t.write_all(&bytes).map_err(err)?;
    t.as_file().sync_all().map_err(err)?;
    t.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

/// Records a login in boxr's file.
pub fn save_login(domain: &str, creds: &Credentials) -> Result<PathBuf, RegistryError> {
    let path = auth_file();
    let mut doc = load_own(&path)?;
    let auths = doc
        .entry("auths")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| RegistryError::Config {
            message: format!("{}: `auths` is not an object", path.display()),
            help: Some("fix or remove the file".into()),
        })?;
    auths.insert(
        domain.to_owned(),
        json!({"auth": STANDARD.encode(format!("{}:{}", creds.username, creds.password))}),
    );
    write_own(&path, doc)?;
    Ok(path)
}

/// Forgets a login (`None`: every login) in boxr's file; returns the registries forgotten.
pub fn remove_login(domain: Option<&str>) -> Result<Vec<String>, RegistryError> {
    let path = auth_file();
    let mut doc = load_own(&path)?;
    let Some(auths) = doc.get_mut("auths").and_then(Value::as_object_mut) else {
        return Ok(Vec::new());
    };
    let removed: Vec<String> = match domain {
        Some(d) => {
            let keys = keys_for(d);
            auths
                .keys()
                .filter(|k| keys.iter().any(|w| bare_host(k) == w))
                .cloned()
                .collect()
        }
        None => auths.keys().cloned().collect(),
    };
    for k in &removed {
        auths.remove(k);
    }
    if !removed.is_empty() {
        write_own(&path, doc)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_auth_and_username_password_entries() {
        let doc = json!({"auths": {
            "https://index.docker.io/v1/": {"auth": STANDARD.encode("hub:secret:x")},
            "reg.example:5000": {"username": "u", "password": "p"},
        }});
        let hub = from_auths(&doc, "docker.io").unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("hub", "secret:x")
        );
        let r = from_auths(&doc, "reg.example:5000").unwrap();
        assert_eq!(r.basic(), format!("Basic {}", STANDARD.encode("u:p")));
        assert!(from_auths(&doc, "reg.example").is_none());
    }
}
