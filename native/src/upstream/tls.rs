//! Verified TLS to https upstreams (rustls with `ring`, TLS 1.2+).
//!
//! Trust: the route's `upstream_ca` PEM bundle when set (instead of the system
//! store, as Python's `upstream_ssl_context`), else the system bundle that
//! OpenSSL — and so Python's `ssl.create_default_context()` — reads:
//! `$SSL_CERT_FILE`, else the first of the usual distribution paths. No new
//! dependency; `$SSL_CERT_DIR` (hashed directories) is not read.
//! With `upstream_client_cert` / `upstream_client_key` the chain is presented
//! to upstreams that ask for one (upstream mTLS).
//! The server name checked (and sent as SNI) is the upstream's host, DNS name
//! or IP address.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::client::WantsClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, ConfigBuilder, RootCertStore};

/// The system CA bundles OpenSSL builds look for, in order.
const SYSTEM_BUNDLES: [&str; 5] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
    "/usr/lib/ssl/cert.pem",
];

/// A client certificate chain and its key (PEM files), for upstream mTLS.
pub struct ClientCert<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
}

/// The client configuration for `ca` (a PEM bundle), or the system store,
/// presenting `client` when given.
pub fn client_config(
    ca: Option<&Path>,
    client: Option<ClientCert<'_>>,
) -> Result<Arc<ClientConfig>, String> {
    match (ca, client) {
        (None, None) => {
            static SYSTEM: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
            SYSTEM.get_or_init(|| build(system_roots(), None)).clone()
        }
        (Some(path), client) => build(roots_from(path)?, client),
        (None, client) => build(system_roots(), client),
    }
}

/// A TLS 1.3/1.2 client configuration trusting `roots`, its client certificate
/// still to choose: the upstreams' and Redis's.
pub(crate) fn client_builder(
    roots: RootCertStore,
) -> Result<ConfigBuilder<ClientConfig, WantsClientCert>, String> {
    // ring is the project's one crypto library (DESIGN.md); rustls deprecates its
    // provider only for lacking post-quantum key exchange, which aws-lc-rs would bring.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots))
}

fn build(
    roots: RootCertStore,
    client: Option<ClientCert<'_>>,
) -> Result<Arc<ClientConfig>, String> {
    let config = client_builder(roots)?;
    let config = match client {
        None => config.with_no_client_auth(),
        Some(ClientCert { cert, key }) => {
            let rejected = |why: String| {
                format!(
                    "upstream_client_cert {} / upstream_client_key {} rejected ({why})",
                    cert.display(),
                    key.display()
                )
            };
            let chain = pem_certificates(cert, "no certificate in the file").map_err(rejected)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| rejected(e.to_string()))?;
            config
                .with_client_auth_cert(chain, key)
                .map_err(|e| rejected(e.to_string()))?
        }
    };
    Ok(Arc::new(config))
}

/// The certificates of the PEM file `path`, in order. `Err` says why they are not
/// usable (`empty` when there is none) for the caller's message, which names the setting.
pub(crate) fn pem_certificates(
    path: &Path,
    empty: &str,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| e.to_string())?
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err(empty.to_owned());
    }
    Ok(certs)
}

fn roots_from(path: &Path) -> Result<RootCertStore, String> {
    let unusable = |why: String| {
        format!(
            "upstream_ca {} is not a usable PEM CA bundle ({why})",
            path.display()
        )
    };
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| unusable(e.to_string()))?;
    for cert in certs {
        let cert = cert.map_err(|e| unusable(e.to_string()))?;
        roots.add(cert).map_err(|e| unusable(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(unusable("no certificate in it".into()));
    }
    Ok(roots)
}

/// The system store; empty when no bundle is found (every handshake then
/// fails as `upstream_tls_error`, as Python's would).
pub(crate) fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let from_env = std::env::var_os("SSL_CERT_FILE").map(std::path::PathBuf::from);
    let found = from_env
        .into_iter()
        .chain(SYSTEM_BUNDLES.iter().map(std::path::PathBuf::from))
        .find(|p| p.is_file());
    if let Some(Ok(certs)) = found.map(CertificateDer::pem_file_iter) {
        // A bundle may hold a certificate webpki refuses: skip it, as OpenSSL loads the rest.
        roots.add_parsable_certificates(certs.flatten());
    }
    roots
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_that_is_not_pem_is_refused_with_its_path() {
        let dir = std::env::temp_dir().join(format!("bastion-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("ca.pem");
        std::fs::write(&path, "not a certificate\n").expect("write");
        let err = client_config(Some(&path), None).expect_err("refused");
        assert_eq!(
            err,
            format!(
                "upstream_ca {} is not a usable PEM CA bundle (no certificate in it)",
                path.display()
            )
        );
        let missing = dir.join("missing.pem");
        let err = client_config(Some(&missing), None).expect_err("refused");
        assert!(
            err.starts_with(&format!(
                "upstream_ca {} is not a usable",
                missing.display()
            )),
            "{err}"
        );
    }

    #[test]
    fn the_system_store_always_builds() {
        assert!(client_config(None, None).is_ok());
    }
}
