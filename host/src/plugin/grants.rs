//! Capabilities granted to a plugin by the operator's options, checked in
//! one place. A denied request is an error the plugin sees (and a log line),
//! never a trap.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What one plugin may touch beyond its own memory.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// Files the plugin may read and watch: the values of its options of
    /// kind `file`, as absolute paths.
    pub readable_files: Vec<PathBuf>,
    /// The one outside service it may send requests to.
    pub endpoint: Option<Endpoint>,
}

/// An outside service, from the options of kinds `endpoint-host`,
/// `endpoint-port` and `tls-*`.
#[derive(Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// TLS, set up by the host from the operator's PEM files.
    pub tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// The PEM files of an endpoint's TLS options.
#[derive(Debug, Default)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    /// The client configuration: verify the server by the CA bundle, and
    /// present the client certificate when one is given. `None` without a
    /// CA (plain HTTP).
    pub fn client_config(&self) -> Result<Option<Arc<tokio_rustls::rustls::ClientConfig>>, String> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        use tokio_rustls::rustls::{ClientConfig, RootCertStore};
        let Some(ca) = &self.ca else {
            if self.cert.is_some() || self.key.is_some() {
                return Err("a client certificate needs the CA option too (TLS)".into());
            }
            return Ok(None);
        };
        let shown = |path: &Path, e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).map_err(|e| shown(ca, &e))? {
            let cert = cert.map_err(|e| shown(ca, &e))?;
            roots.add(cert).map_err(|e| shown(ca, &e))?;
        }
        if roots.is_empty() {
            return Err(shown(ca, &"no certificate in the CA bundle"));
        }
        let builder = ClientConfig::builder().with_root_certificates(roots);
        let config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| shown(cert, &e))?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| shown(key, &e))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("client certificate: {e}"))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => return Err("the client certificate and its key go together".into()),
        };
        Ok(Some(Arc::new(config)))
    }
}

impl Grants {
    /// The granted file `requested` names, or why it is refused. Paths are
    /// compared lexically after making them absolute: a plugin cannot create
    /// links, and `..` in a request never matches a granted path.
    pub fn readable_file(&self, requested: &str) -> Result<&Path, String> {
        let absolute = std::path::absolute(requested).map_err(|e| format!("{requested}: {e}"))?;
        self.readable_files
            .iter()
            .find(|granted| **granted == absolute)
            .map(PathBuf::as_path)
            .ok_or_else(|| {
                format!("{requested}: access denied (not a file granted to this plugin)")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_granted_file_is_readable() {
        let grants = Grants {
            readable_files: vec![PathBuf::from("/etc/vpcrouter/spec.json")],
            endpoint: None,
        };
        assert!(grants.readable_file("/etc/vpcrouter/spec.json").is_ok());
        for denied in [
            "/etc/passwd",
            "/etc/vpcrouter/../passwd",
            "/etc/vpcrouter/spec.json/..",
            "/etc/vpcrouter",
            "spec.json",
        ] {
            let err = grants.readable_file(denied).unwrap_err();
            assert!(err.contains("access denied"), "{denied}: {err}");
        }
    }
}
