//! Image references: `[DOMAIN[:PORT]/]PATH[:TAG][@DIGEST]`, the grammar Docker and the OCI
//! distribution spec use. Pure parsing; the store resolves references to digests.

use std::fmt;

/// Why a text is not an image reference; each names the part that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
pub enum ReferenceError {
    #[error("the reference is empty")]
    #[diagnostic(code(boxr::reference::empty))]
    Empty,
    #[error("`{0}` is not a valid tag (letters, digits, `_`, `.`, `-`; at most 128)")]
    #[diagnostic(code(boxr::reference::tag))]
    Tag(String),
    #[error("`{0}` is not a sha256 digest (sha256: and 64 lowercase hex digits)")]
    #[diagnostic(code(boxr::reference::digest))]
    Digest(String),
    #[error("`{0}` is not a valid registry host")]
    #[diagnostic(code(boxr::reference::host))]
    Host(String),
    #[error(
        "`{0}` is not a valid repository name (lowercase letters and digits, separated by `.`, `_`, `__` or `-`)"
    )]
    #[diagnostic(code(boxr::reference::repository))]
    Repository(String),
}

/// A parsed image reference. A reference without tag or digest means `:latest`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    /// `registry.example:5000/team/app` or `app`: the repository as written.
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:<64 hex>`
    pub digest: Option<String>,
}

impl ImageRef {
    /// The tag, `latest` when none was written and no digest pins the image.
    pub fn tag_or_latest(&self) -> Option<&str> {
        match (&self.tag, &self.digest) {
            (Some(t), _) => Some(t),
            (None, None) => Some("latest"),
            (None, Some(_)) => None,
        }
    }

    pub fn parse(text: &str) -> Result<ImageRef, ReferenceError> {
        if text.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (rest, digest) = match text.split_once('@') {
            Some((r, d)) => (r, Some(parse_digest(d)?)),
            None => (text, None),
        };
        // A `:` after the last `/` starts the tag; one before it belongs to a registry port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match rest[last_slash..].find(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            let ok = tag.len() <= 128
                && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                && tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if !ok {
                return Err(ReferenceError::Tag(tag.to_owned()));
            }
        }
        let mut components: Vec<&str> = repository.split('/').collect();
        if components.len() > 1 {
            let first = components[0];
            if first.contains(['.', ':']) || first == "localhost" {
                check_domain(first)?;
                components.remove(0);
            }
        }
        for c in &components {
            check_path_component(c)?;
        }
        Ok(ImageRef {
            repository: repository.to_owned(),
            tag: tag.map(str::to_owned),
            digest,
        })
    }
}

/// Docker Hub's name in references, and the host its API answers on.
pub const DOCKER_HUB: &str = "docker.io";
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

impl ImageRef {
    /// The registry domain written in the reference, if any (`localhost:5000/app` → `localhost:5000`).
    pub fn explicit_domain(&self) -> Option<&str> {
        let (first, _) = self.repository.split_once('/')?;
        (first.contains(['.', ':']) || first == "localhost").then_some(first)
    }

    /// The registry domain and the path inside it, as Docker normalizes them: no domain means
    /// Docker Hub, where a one-component path lives under `library/`; `index.docker.io` is
    /// Docker Hub too.
    pub fn domain_and_path(&self) -> (String, String) {
        let (domain, path) = match self.explicit_domain() {
            Some(d) => (d, &self.repository[d.len() + 1..]),
            None => (DOCKER_HUB, self.repository.as_str()),
        };
        let domain = if domain == "index.docker.io" {
            DOCKER_HUB
        } else {
            domain
        };
        let path = if domain == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_owned()
        };
        (domain.to_owned(), path)
    }

    /// The fully qualified reference (`debian` → `docker.io/library/debian:latest`), the name
    /// a pulled image is stored under.
    pub fn normalized(&self) -> ImageRef {
        let (domain, path) = self.domain_and_path();
        ImageRef {
            repository: format!("{domain}/{path}"),
            tag: self.tag.clone(),
            digest: self.digest.clone(),
        }
    }

    /// The shortest name that normalizes to this one (`docker.io/library/debian` → `debian`),
    /// as Docker shows Hub images.
    pub fn familiar(&self) -> String {
        let (domain, path) = self.domain_and_path();
        if domain != DOCKER_HUB {
            return self.repository.clone();
        }
        path.strip_prefix("library/")
            .filter(|p| !p.contains('/'))
            .unwrap_or(&path)
            .to_owned()
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repository)?;
        if let Some(t) = self.tag_or_latest() {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn parse_digest(d: &str) -> Result<String, ReferenceError> {
    match d.split_once(':') {
        Some(("sha256", hex))
            if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            Ok(d.to_owned())
        }
        _ => Err(ReferenceError::Digest(d.to_owned())),
    }
}

fn check_domain(domain: &str) -> Result<(), ReferenceError> {
    let (host, port) = match domain.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (domain, None),
    };
    let host_ok = !host.is_empty()
        && host.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(ReferenceError::Host(domain.to_owned()))
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
pub fn check_path_component(c: &str) -> Result<(), ReferenceError> {
    let err = || ReferenceError::Repository(c.to_owned());
    let bytes = c.as_bytes();
    if bytes.is_empty() || !is_alnum(bytes[0]) || !is_alnum(bytes[bytes.len() - 1]) {
        return Err(err());
    }
    let mut i = 0;
    while i < bytes.len() {
        if is_alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !is_alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-');
        if !ok {
            return Err(err());
        }
    }
    Ok(())
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_common_shapes() {
        let r = ImageRef::parse("alpine").unwrap();
        assert_eq!(r.to_string(), "alpine:latest");
        let r = ImageRef::parse("localhost:5000/team/app:1.2").unwrap();
        assert_eq!(r.repository, "localhost:5000/team/app");
        assert_eq!(r.tag.as_deref(), Some("1.2"));
        let d = format!("sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&format!("app@{d}")).unwrap();
        assert_eq!(r.tag_or_latest(), None);
        assert_eq!(r.to_string(), format!("app@{d}"));
    }

    #[test]
    fn normalizes_as_docker_does() {
        let n = |s: &str| ImageRef::parse(s).unwrap().normalized().to_string();
        assert_eq!(n("debian"), "docker.io/library/debian:latest");
        assert_eq!(n("debian:12"), "docker.io/library/debian:12");
        assert_eq!(n("team/app"), "docker.io/team/app:latest");
        assert_eq!(
            n("index.docker.io/debian"),
            "docker.io/library/debian:latest"
        );
        assert_eq!(
            n("docker.io/library/debian:12"),
            "docker.io/library/debian:12"
        );
        assert_eq!(n("localhost/app"), "localhost/app:latest");
        assert_eq!(n("127.0.0.1:5000/a/b:1"), "127.0.0.1:5000/a/b:1");
        let d = format!("sha256:{}", "b".repeat(64));
        assert_eq!(
            n(&format!("busybox@{d}")),
            format!("docker.io/library/busybox@{d}")
        );
        let f = |s: &str| ImageRef::parse(s).unwrap().familiar();
        assert_eq!(f("docker.io/library/debian:12"), "debian");
        assert_eq!(f("docker.io/team/app"), "team/app");
        assert_eq!(f("quay.io/x/y"), "quay.io/x/y");
        // A name with a dot in its first component is a domain, not a Hub path.
        assert_eq!(
            ImageRef::parse("my.reg/app").unwrap().domain_and_path(),
            ("my.reg".to_owned(), "app".to_owned())
        );
    }

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "",
            "App",
            "a..b",
            "-a",
            "a:",
            "a:-x",
            "a@sha256:12",
            "a/b/",
            "a//b",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad} should be rejected");
        }
        assert!(ImageRef::parse("a__b-c.d").is_ok());
    }
}
