//! TLS for registries: the system's roots plus each registry's own CAs and client certificate
//! from `certs.d` (`DIR/HOST[:PORT]/*.crt`, `*.cert` with its `*.key`, as Docker and podman lay
//! them out), and telling a certificate that does not verify from a server that speaks no TLS.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use ureq::tls::{Certificate, ClientCert, PemItem, RootCerts, TlsConfig};

use super::RegistryError;

/// The certificates of a PEM file (other items are skipped).
fn certificates(pem: &[u8]) -> Vec<Certificate<'static>> {
    ureq::tls::parse_pem(pem)
        .filter_map(|i| match i {
            Ok(PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect()
}

/// The TLS settings for `host`: verification unless `insecure`.
pub(super) fn config(
    cert_dirs: &[PathBuf],
    host: &str,
    insecure: bool,
) -> Result<TlsConfig, RegistryError> {
    let mut roots: Vec<Certificate<'static>> = Vec::new();
    let mut client_cert = None;
    let bad = |p: &Path, e: &dyn std::fmt::Display| RegistryError::Config {
        message: format!("cannot use the certificate {}: {e}", p.display()),
        help: Some("certs.d holds PEM files: CA.crt, CLIENT.cert with CLIENT.key".into()),
    };
    for dir in cert_dirs {
        let Ok(entries) = fs::read_dir(dir.join(host)) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            match f.extension().and_then(|e| e.to_str()).unwrap_or("") {
                "crt" => roots.extend(certificates(&fs::read(&f).map_err(|e| bad(&f, &e))?)),
                "cert" if client_cert.is_none() => {
                    let key_path = f.with_extension("key");
                    let chain = certificates(&fs::read(&f).map_err(|e| bad(&f, &e))?);
                    let key_pem = fs::read(&key_path).map_err(|e| bad(&key_path, &e))?;
                    let key = ureq::tls::PrivateKey::from_pem(&key_pem)
                        .map_err(|e| bad(&key_path, &e))?;
                    client_cert = Some(ClientCert::new_with_certs(&chain, key));
                }
                _ => {}
            }
        }
    }
    let root_certs = match system_roots() {
        Some(system) if roots.is_empty() => RootCerts::Specific(system),
        Some(system) => {
            roots.extend(system.iter().cloned());
            RootCerts::Specific(Arc::new(roots))
        }
        None if roots.is_empty() => RootCerts::WebPki,
        None => RootCerts::Specific(Arc::new(roots)),
    };
    Ok(TlsConfig::builder()
        .root_certs(root_certs)
        .client_cert(client_cert)
        .disable_verification(insecure)
        .build())
}

/// The system's CA bundle (`SSL_CERT_FILE`, else Debian's), read once.
fn system_roots() -> Option<Arc<Vec<Certificate<'static>>>> {
    static ROOTS: OnceLock<Option<Arc<Vec<Certificate<'static>>>>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let path = std::env::var_os("SSL_CERT_FILE")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/etc/ssl/certs/ca-certificates.crt"));
            let certs = certificates(&fs::read(path).ok()?);
            (!certs.is_empty()).then(|| Arc::new(certs))
        })
        .clone()
}

/// The TLS error inside a ureq error (ureq passes rustls's errors on inside I/O errors).
pub(super) fn tls_error(e: &ureq::Error) -> Option<&rustls::Error> {
    match e {
        ureq::Error::Rustls(r) => Some(r),
        ureq::Error::Io(io) => io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
        _ => None,
    }
}

/// A certificate that does not verify: an error, never a reason to try plain HTTP.
pub(super) fn is_certificate_error(e: &ureq::Error) -> bool {
    matches!(
        tls_error(e),
        Some(
            rustls::Error::InvalidCertificate(_)
                | rustls::Error::NoCertificatesPresented
                | rustls::Error::AlertReceived(_)
        )
    )
}
