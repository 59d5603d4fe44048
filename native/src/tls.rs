//! The listener's TLS: a rustls `ServerConfig` from PEM files, swapped on reload.
//!
//! - certificate chain + private key from PEM files (`tls.cert`, `tls.key`);
//! - ALPN `h2` then `http/1.1`;
//! - `tls.min_version` "1.2" (TLS 1.2 and 1.3) or "1.3" (1.3 only);
//! - with `tls.client_ca`, clients are asked for a certificate, which must
//!   verify against that bundle when presented (anonymous clients are still
//!   served: only `mtls` routes require one);
//! - [`Tls::reload`] builds a new config from the same files and swaps it in
//!   one reference (`arc_swap`): new handshakes use it, a bad pair keeps the
//!   previous one and is returned as the error.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use serde::Deserialize;

/// Where the certificate files are and how TLS is offered.
#[derive(Debug, Clone, Deserialize)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    #[serde(default = "default_min_version")]
    pub min_version: String,
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

fn default_min_version() -> String {
    "1.2".to_owned()
}

/// Why a TLS configuration could not be built (one line naming the file).
#[derive(Debug)]
pub enum TlsError {
    /// A file could not be read or holds no PEM item of the expected kind.
    File {
        setting: &'static str,
        path: PathBuf,
        problem: String,
    },
    /// `tls.min_version` is neither "1.2" nor "1.3".
    MinVersion(String),
    /// rustls refused the pair (e.g. the key does not match the certificate).
    Rejected(String),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::File {
                setting,
                path,
                problem,
            } => write!(f, "{setting} {}: {problem}", path.display()),
            TlsError::MinVersion(value) => {
                write!(
                    f,
                    "tls.min_version must be \"1.2\" or \"1.3\", not {value:?}"
                )
            }
            TlsError::Rejected(reason) => write!(f, "TLS configuration rejected: {reason}"),
        }
    }
}

impl std::error::Error for TlsError {}

fn file_error(setting: &'static str, path: &Path, error: impl fmt::Display) -> TlsError {
    TlsError::File {
        setting,
        path: path.to_owned(),
        problem: error.to_string(),
    }
}

fn read_certs(
    setting: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(setting, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(setting, path, e))?;
    if certs.is_empty() {
        return Err(file_error(setting, path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

/// Build a server configuration from the files (reads them now).
pub fn server_config(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    // ring is the project's one crypto library (DESIGN.md); rustls deprecates its
    // provider only for lacking post-quantum key exchange, which aws-lc-rs would bring.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&'static rustls::SupportedProtocolVersion] = match files.min_version.as_str() {
        "1.2" => &[&rustls::version::TLS13, &rustls::version::TLS12],
        "1.3" => &[&rustls::version::TLS13],
        other => return Err(TlsError::MinVersion(other.to_owned())),
    };
    let certs = read_certs("tls.cert", &files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| file_error("tls.key", &files.key, e))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| TlsError::Rejected(e.to_string()))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs("tls.client_ca", ca)? {
                roots
                    .add(cert)
                    .map_err(|e| file_error("tls.client_ca", ca, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| file_error("tls.client_ca", ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        TlsError::Rejected(format!(
            "tls.cert {} / tls.key {}: {e}",
            files.cert.display(),
            files.key.display()
        ))
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The listener's current TLS configuration and the files it came from.
pub struct Tls {
    files: TlsFiles,
    current: ArcSwap<ServerConfig>,
}

impl Tls {
    /// Load the files; fails with one line naming the file.
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let config = server_config(&files)?;
        Ok(Tls {
            files,
            current: ArcSwap::from_pointee(config),
        })
    }

    /// The configuration new handshakes use.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current.load_full()
    }

    /// Re-read the files and swap the configuration; on error the previous
    /// one stays in service.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.files)?;
        self.current.store(Arc::new(config));
        Ok(())
    }
}

/// The wire value of a negotiated TLS version (`0x0303` for 1.2, `0x0304` for 1.3).
pub fn version_code(version: rustls::ProtocolVersion) -> Option<u16> {
    match version {
        rustls::ProtocolVersion::TLSv1_2 => Some(0x0303),
        rustls::ProtocolVersion::TLSv1_3 => Some(0x0304),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path, cert: &str, key: &str) -> TlsFiles {
        let cert_path = dir.join("c.pem");
        let key_path = dir.join("k.pem");
        std::fs::write(&cert_path, cert).ok();
        std::fs::write(&key_path, key).ok();
        TlsFiles {
            cert: cert_path,
            key: key_path,
            min_version: "1.2".into(),
            client_ca: None,
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("bastion-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok();
        dir
    }

    #[test]
    fn a_missing_file_names_the_setting_and_path() {
        let f = TlsFiles {
            cert: PathBuf::from("/nonexistent/c.pem"),
            key: PathBuf::from("/nonexistent/k.pem"),
            min_version: "1.2".into(),
            client_ca: None,
        };
        let err = server_config(&f)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.starts_with("tls.cert /nonexistent/c.pem: "), "{err}");
    }

    #[test]
    fn a_file_without_pem_is_refused() {
        let dir = scratch("nopem");
        let f = files(&dir, "not pem", "not pem");
        let err = server_config(&f)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            err,
            format!(
                "tls.cert {}: no PEM certificate in the file",
                f.cert.display()
            )
        );
    }

    #[test]
    fn an_unknown_min_version_is_refused() {
        let dir = scratch("minver");
        let mut f = files(&dir, "", "");
        f.min_version = "1.1".into();
        let err = server_config(&f)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            err,
            "tls.min_version must be \"1.2\" or \"1.3\", not \"1.1\""
        );
    }

    #[test]
    fn version_codes() {
        assert_eq!(version_code(rustls::ProtocolVersion::TLSv1_2), Some(0x0303));
        assert_eq!(version_code(rustls::ProtocolVersion::TLSv1_3), Some(0x0304));
        assert_eq!(version_code(rustls::ProtocolVersion::TLSv1_1), None);
    }
}
