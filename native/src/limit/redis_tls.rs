//! TLS to Redis (`rediss://`) for the native limiter's connection, as
//! redis-py's `SSLConnection` sets it up with its defaults: the server's
//! chain verified (`ssl_cert_reqs=required`) against the system store plus
//! the URL's `ssl_ca_certs` (Python's `create_default_context()` then
//! `load_verify_locations`), its name checked against the URL's host
//! (`ssl_check_hostname`, redis-py's default), and the URL's
//! `ssl_certfile` / `ssl_keyfile` presented when the server asks for a client
//! certificate. Python passes these only when the URL asks for nothing else
//! (`bastion.storage.shared.resp.native_config`); any other TLS option keeps
//! the limiter with Python.
//!
//! rustls with `ring`, TLS 1.2+ (redis-py's default context refuses older
//! versions too). A failure here is a connection failure: the request is
//! deferred to Python, whose limiter applies the route's fail mode.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::ClientConfig;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// The URL's TLS files (`ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RedisTls {
    #[serde(default)]
    pub ca_certs: Option<PathBuf>,
    #[serde(default)]
    pub certfile: Option<PathBuf>,
    #[serde(default)]
    pub keyfile: Option<PathBuf>,
}

fn certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    crate::upstream::tls::pem_certificates(path, "no certificate in it")
        .map_err(|why| format!("{what} {} is not usable ({why})", path.display()))
}

/// The client configuration for `tls` (see the module docs).
pub fn client_config(tls: &RedisTls) -> Result<Arc<ClientConfig>, String> {
    let mut roots = crate::upstream::tls::system_roots();
    if let Some(path) = &tls.ca_certs {
        for cert in certificates(path, "ssl_ca_certs")? {
            roots
                .add(cert)
                .map_err(|e| format!("ssl_ca_certs {}: {e}", path.display()))?;
        }
    }
    let config = crate::upstream::tls::client_builder(roots)?;
    let config = match (&tls.certfile, &tls.keyfile) {
        (None, None) => config.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain = certificates(cert, "ssl_certfile")?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("ssl_keyfile {} is not usable ({e})", key.display()))?;
            config
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("ssl_certfile / ssl_keyfile rejected ({e})"))?
        }
        _ => return Err("ssl_certfile and ssl_keyfile go together".into()),
    };
    Ok(Arc::new(config))
}

/// The TLS handshake over `stream` with the Redis server `host` (its name checked).
pub async fn connect(
    stream: TcpStream,
    host: &str,
    config: Arc<ClientConfig>,
) -> Result<TlsStream<TcpStream>, String> {
    let name = ServerName::try_from(host.to_owned())
        .map_err(|_| format!("{host:?} is not a name TLS can check"))?;
    TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS handshake with {host}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_tls_builds_with_the_system_store_and_refuses_bad_files() {
        assert!(client_config(&RedisTls::default()).is_ok());
        let dir = std::env::temp_dir().join(format!("bastion-redis-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("ca.pem");
        std::fs::write(&path, "not a certificate\n").expect("write");
        let tls = RedisTls {
            ca_certs: Some(path.clone()),
            ..RedisTls::default()
        };
        let err = client_config(&tls).expect_err("refused");
        assert_eq!(
            err,
            format!(
                "ssl_ca_certs {} is not usable (no certificate in it)",
                path.display()
            )
        );
        let half = RedisTls {
            certfile: Some(path),
            ..RedisTls::default()
        };
        assert!(client_config(&half).is_err());
    }
}
