//! TLS on the client port (`--tls-port`), the way Redis does it: the node serves RESP over TLS
//! on a second port, with its certificate and key from PEM files, and by default asks every
//! client for a certificate signed by `--tls-ca-cert-file` (Redis's `tls-auth-clients yes`).
//!
//! The handshake runs before the connection becomes a Session, bounded by
//! [`HANDSHAKE_TIMEOUT`]; after it, a Session reads and writes the TLS stream exactly as it
//! does a plain socket. Peer traffic is not encrypted: peers authenticate each other with
//! `--cluster-secret` (see [`crate::peer_transport`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{crypto, RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// A client that has not finished its TLS handshake by then is disconnected: until it has, it
/// holds one of the `--maxclients` places without being a client.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether clients must show a certificate (Redis's `tls-auth-clients`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Every client must show a certificate signed by the CA (Redis's default).
    Required,
    /// A client may show one; if it does, it must be valid.
    Optional,
    /// No client certificate is asked for.
    No,
}

impl ClientAuth {
    /// Redis's value for it (`CONFIG GET tls-auth-clients`).
    pub fn name(self) -> &'static str {
        match self {
            ClientAuth::Required => "yes",
            ClientAuth::Optional => "optional",
            ClientAuth::No => "no",
        }
    }
}

/// Where the node's TLS material is, as the options name it.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// The TLS client port (0 picks a free one).
    pub port: u16,
    /// `--tls-cert-file`: the node's certificate chain, PEM, leaf first.
    pub cert_file: PathBuf,
    /// `--tls-key-file`: its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// `--tls-ca-cert-file`: the CA certificates client certificates must chain to.
    pub ca_cert_file: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

impl TlsSettings {
    /// Reads the files and builds the acceptor; every error names the option and file at fault.
    pub fn acceptor(&self) -> Result<TlsAcceptor, String> {
        let provider = Arc::new(crypto::ring::default_provider());
        let certs = read_certs(&self.cert_file, "--tls-cert-file")?;
        let key = PrivateKeyDer::from_pem_file(&self.key_file).map_err(|e| {
            format!("cannot read a private key from --tls-key-file {}: {e}", self.key_file.display())
        })?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let builder = match (self.client_auth, &self.ca_cert_file) {
            (ClientAuth::No, _) => builder.with_no_client_auth(),
            (auth, Some(ca_file)) => {
                let mut roots = RootCertStore::empty();
                for cert in read_certs(ca_file, "--tls-ca-cert-file")? {
                    roots.add(cert).map_err(|e| {
                        format!(
                            "--tls-ca-cert-file {} holds an unusable CA certificate: {e}",
                            ca_file.display()
                        )
                    })?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier =
                    if auth == ClientAuth::Optional { verifier.allow_unauthenticated() } else { verifier };
                let verifier =
                    verifier.build().map_err(|e| format!("--tls-ca-cert-file {}: {e}", ca_file.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
            (_, None) => {
                return Err("--tls-auth-clients yes or optional needs --tls-ca-cert-file, the CA that signs \
                            client certificates (or set --tls-auth-clients no)"
                    .into())
            }
        };
        let config = builder.with_single_cert(certs, key).map_err(|e| {
            format!(
                "--tls-cert-file {} and --tls-key-file {} do not make a usable pair: {e}",
                self.cert_file.display(),
                self.key_file.display()
            )
        })?;
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// Every certificate in a PEM file; at least one.
fn read_certs(path: &Path, option: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read certificates from {option} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{option} {} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `text` to a file in `dir` and returns its path.
    fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn settings(dir: &Path, client_auth: ClientAuth, ca: Option<PathBuf>) -> TlsSettings {
        TlsSettings {
            port: 0,
            cert_file: dir.join("node.crt"),
            key_file: dir.join("node.key"),
            ca_cert_file: ca,
            client_auth,
        }
    }

    #[test]
    fn broken_settings_are_refused_with_the_option_at_fault() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let missing = settings(d, ClientAuth::No, None).acceptor().err().unwrap();
        assert!(missing.contains("--tls-cert-file") && missing.contains("node.crt"), "{missing}");

        file(d, "node.crt", "not a certificate\n");
        let empty = settings(d, ClientAuth::No, None).acceptor().err().unwrap();
        assert!(empty.contains("holds no PEM certificate"), "{empty}");

        let no_ca = settings(d, ClientAuth::Required, None).acceptor().err().unwrap();
        // The certificate is read first and still fails; with one, the CA's absence is named.
        assert!(no_ca.contains("--tls-cert-file"), "{no_ca}");
    }

    #[test]
    fn client_authentication_needs_a_ca() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert =
            rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&key).unwrap();
        file(d, "node.crt", &cert.pem());
        file(d, "node.key", &key.serialize_pem());
        assert!(settings(d, ClientAuth::No, None).acceptor().is_ok());
        for auth in [ClientAuth::Required, ClientAuth::Optional] {
            let refused = settings(d, auth, None).acceptor().err().unwrap();
            assert!(refused.contains("needs --tls-ca-cert-file"), "{refused}");
        }
        let ca = Some(file(d, "ca.crt", &cert.pem()));
        assert!(settings(d, ClientAuth::Required, ca.clone()).acceptor().is_ok());
        assert!(settings(d, ClientAuth::Optional, ca).acceptor().is_ok());

        // A key that is not the certificate's.
        let other = rcgen::KeyPair::generate().unwrap();
        file(d, "node.key", &other.serialize_pem());
        let mismatch = settings(d, ClientAuth::No, None).acceptor().err().unwrap();
        assert!(mismatch.contains("do not make a usable pair"), "{mismatch}");
    }
}
