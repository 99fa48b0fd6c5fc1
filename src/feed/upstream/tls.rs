//! TLS for `wss://` upstream feeds: rustls with the ring provider, trusting the Mozilla root
//! certificates compiled in from `webpki-roots` plus any PEM certificates in `ca_file` (a
//! private venue, or a test's own certificate authority). Nothing is read from the system
//! certificate store, so the binary behaves the same on every host.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A TLS client configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    #[error("cannot read PEM certificates from {path}: {source}")]
    Pem {
        path: String,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: String },
    #[error("certificate #{index} in {path} is not a usable root: {source}")]
    BadRoot {
        path: String,
        index: usize,
        source: rustls::Error,
    },
    #[error("TLS setup: {0}")]
    Setup(#[from] rustls::Error),
}

/// The client configuration for upstream connections; `ca_file` (empty = none) adds roots.
pub(crate) fn client_config(ca_file: &str) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if !ca_file.is_empty() {
        for (index, cert) in read_pem(ca_file)?.into_iter().enumerate() {
            roots.add(cert).map_err(|source| TlsError::BadRoot {
                path: ca_file.to_owned(),
                index,
                source,
            })?;
        }
    }
    // The provider is named rather than taken from the process default, so the configuration
    // does not depend on which rustls crypto features other crates happen to enable.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Every certificate in a PEM file (other PEM sections, such as keys, are skipped).
fn read_pem(path: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |source| TlsError::Pem {
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str, text: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("tickcast-tls-{}-{name}", std::process::id()));
        std::fs::write(&path, text).expect("write temp file");
        path
    }

    #[test]
    fn builds_with_the_built_in_roots_alone() {
        assert!(client_config("").is_ok());
    }

    #[test]
    fn bad_ca_files_are_refused_with_the_path() {
        let empty = temp("empty.pem", "no certificate here\n");
        let garbage = temp(
            "garbage.pem",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        );
        let broken = temp("broken.pem", "-----BEGIN CERTIFICATE-----\n%%%%\n");
        for (path, needle) in [
            (std::path::PathBuf::from("/no/such/ca.pem"), "cannot read"),
            (empty.clone(), "no PEM certificate"),
            (garbage.clone(), "not a usable root"),
            (broken.clone(), "cannot read"),
        ] {
            let shown = path.display().to_string();
            let err = client_config(&shown).expect_err("refused").to_string();
            assert!(err.contains(needle) && err.contains(&shown), "{err}");
        }
        for p in [empty, garbage, broken] {
            let _ = std::fs::remove_file(p);
        }
    }
}
