//! TLS, the way Redis does it: on a second client port (`--tls-port`), and between peers
//! (`--tls-peers`, like Redis's `tls-cluster` and `tls-replication`). The node's certificate
//! and key come from PEM files; by default a client must show a certificate signed by
//! `--tls-ca-cert-file` (Redis's `tls-auth-clients yes`), and peers always must, on both ends.
//!
//! A client's handshake runs before its connection becomes a Session, bounded by
//! [`HANDSHAKE_TIMEOUT`]; after it, a Session reads and writes the TLS stream exactly as it
//! does a plain socket. A peer's runs before the peer handshake of [`crate::peer_transport`]
//! (hello, challenge, HMAC), which then travels inside TLS.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::crypto::{self, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

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

/// The node's TLS options.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// `--tls-port`: serve clients over TLS on this port too (0 picks a free one).
    pub port: Option<u16>,
    /// `--tls-peers`: peers connect to each other over TLS.
    pub peers: bool,
    /// `--tls-cert-file`: the node's certificate chain, PEM, leaf first. With `--tls-peers` it
    /// serves as a client certificate too.
    pub cert_file: PathBuf,
    /// `--tls-key-file`: its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// `--tls-ca-cert-file`: the CA certificates that client and peer certificates chain to.
    pub ca_cert_file: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

/// What peer connections need with `--tls-peers`: both ends show a certificate from the CA.
#[derive(Clone)]
pub struct PeerTls {
    pub acceptor: TlsAcceptor,
    pub client: Arc<ClientConfig>,
}

impl PeerTls {
    /// The client side of a peer connection; the name to check comes from [`server_name`].
    pub fn connector(&self) -> TlsConnector {
        TlsConnector::from(self.client.clone())
    }
}

/// The name a peer's certificate must carry: the host of its peer address (a DNS name or an
/// IP address, as in `--cluster`).
pub fn server_name(addr: &str) -> Result<ServerName<'static>, String> {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|e| format!("{host:?} cannot name a TLS peer: {e}"))
}

impl TlsSettings {
    /// The client port's acceptor. Reads the files; every error names the option and file at
    /// fault.
    pub fn acceptor(&self) -> Result<TlsAcceptor, String> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let builder = match self.client_auth {
            ClientAuth::No => builder.with_no_client_auth(),
            auth => {
                let roots =
                    self.roots("--tls-auth-clients yes or optional", " (or set --tls-auth-clients no)")?;
                let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider());
                let verifier =
                    if auth == ClientAuth::Optional { verifier.allow_unauthenticated() } else { verifier };
                builder.with_client_cert_verifier(verifier.build().map_err(|e| self.ca_error(e))?)
            }
        };
        let (certs, key) = self.identity()?;
        let config = builder.with_single_cert(certs, key).map_err(|e| self.pair_error(e))?;
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// What peer connections need (`--tls-peers`): each end shows the node's certificate and
    /// checks the other's against the CA.
    pub fn peer_tls(&self) -> Result<PeerTls, String> {
        let roots = self.roots("--tls-peers", "")?;
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| self.ca_error(e))?;
        let (certs, key) = self.identity()?;
        let server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(|e| self.pair_error(e))?;
        let server_verifier = WebPkiServerVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| self.ca_error(e))?;
        let client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_webpki_verifier(server_verifier)
            .with_client_auth_cert(certs, key)
            .map_err(|e| self.pair_error(e))?;
        Ok(PeerTls { acceptor: TlsAcceptor::from(Arc::new(server)), client: Arc::new(client) })
    }

    /// The node's certificate chain and key.
    fn identity(&self) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
        let certs = read_certs(&self.cert_file, "--tls-cert-file")?;
        let key = PrivateKeyDer::from_pem_file(&self.key_file).map_err(|e| {
            format!("cannot read a private key from --tls-key-file {}: {e}", self.key_file.display())
        })?;
        Ok((certs, key))
    }

    /// The CA certificates, which `what` needs (`otherwise`: how to do without, if there is a way).
    fn roots(&self, what: &str, otherwise: &str) -> Result<Arc<RootCertStore>, String> {
        let Some(ca_file) = &self.ca_cert_file else {
            return Err(format!(
                "{what} needs --tls-ca-cert-file, the CA that signs client and peer certificates{otherwise}"
            ));
        };
        let mut roots = RootCertStore::empty();
        for cert in read_certs(ca_file, "--tls-ca-cert-file")? {
            roots.add(cert).map_err(|e| {
                format!("--tls-ca-cert-file {} holds an unusable CA certificate: {e}", ca_file.display())
            })?;
        }
        Ok(Arc::new(roots))
    }

    fn ca_error(&self, e: impl std::fmt::Display) -> String {
        let file = self.ca_cert_file.as_deref().unwrap_or(Path::new(""));
        format!("--tls-ca-cert-file {}: {e}", file.display())
    }

    fn pair_error(&self, e: impl std::fmt::Display) -> String {
        format!(
            "--tls-cert-file {} and --tls-key-file {} do not make a usable pair: {e}",
            self.cert_file.display(),
            self.key_file.display()
        )
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(crypto::ring::default_provider())
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
            port: Some(0),
            peers: false,
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

        let key = rcgen::KeyPair::generate().unwrap();
        let cert =
            rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&key).unwrap();
        file(d, "node.crt", &cert.pem());
        let no_key = settings(d, ClientAuth::No, None).acceptor().err().unwrap();
        assert!(no_key.contains("--tls-key-file") && no_key.contains("node.key"), "{no_key}");
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
        let peers = settings(d, ClientAuth::No, None).peer_tls().err().unwrap();
        assert!(peers.contains("--tls-peers needs --tls-ca-cert-file"), "{peers}");
        let ca = Some(file(d, "ca.crt", &cert.pem()));
        assert!(settings(d, ClientAuth::Required, ca.clone()).acceptor().is_ok());
        assert!(settings(d, ClientAuth::Optional, ca.clone()).acceptor().is_ok());
        assert!(settings(d, ClientAuth::No, ca).peer_tls().is_ok());

        // A key that is not the certificate's.
        let other = rcgen::KeyPair::generate().unwrap();
        file(d, "node.key", &other.serialize_pem());
        let mismatch = settings(d, ClientAuth::No, None).acceptor().err().unwrap();
        assert!(mismatch.contains("do not make a usable pair"), "{mismatch}");
    }
}
