//! TLS (`wss://`) set-up with rustls: acceptors from PEM files, and (feature
//! `self-signed`) self-signed certificates for development.

use std::io;
use std::path::Path;
use std::sync::Arc;

pub use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

/// A self-signed certificate and the acceptor that serves it.
#[cfg(feature = "self-signed")]
#[cfg_attr(docsrs, doc(cfg(feature = "self-signed")))]
#[derive(Clone)]
pub struct SelfSigned {
    /// Serves the certificate.
    pub acceptor: TlsAcceptor,
    /// The certificate in PEM form: write it to a file that browsers or clients can be
    /// told to trust.
    pub cert_pem: String,
    /// The private key in PEM form.
    pub key_pem: String,
}

#[cfg(feature = "self-signed")]
impl std::fmt::Debug for SelfSigned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfSigned").finish_non_exhaustive()
    }
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// Generates a self-signed certificate for `hosts` (names or IP addresses, e.g.
/// `["localhost", "127.0.0.1"]`) with rcgen.
#[cfg(feature = "self-signed")]
#[cfg_attr(docsrs, doc(cfg(feature = "self-signed")))]
pub fn self_signed<I, S>(hosts: I) -> io::Result<SelfSigned>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let names: Vec<String> = hosts.into_iter().map(Into::into).collect();
    let certified = rcgen::generate_simple_self_signed(names).map_err(other)?;
    let cert_pem = certified.cert.pem();
    let key_pem = certified.signing_key.serialize_pem();
    let acceptor = acceptor_from_pem(cert_pem.as_bytes(), key_pem.as_bytes())?;
    Ok(SelfSigned {
        acceptor,
        cert_pem,
        key_pem,
    })
}

/// An acceptor for a certificate chain and private key in PEM form.
pub fn acceptor_from_pem(cert_pem: &[u8], key_pem: &[u8]) -> io::Result<TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut &cert_pem[..]).collect::<Result<_, _>>()?;
    if certs.is_empty() {
        return Err(other("no certificate in the PEM data"));
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key_pem[..])?
        .ok_or_else(|| other("no private key in the PEM data"))?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(other)?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(other)?;
    // WebSocket is HTTP/1.1 only: tell ALPN clients so.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// An acceptor for PEM files (`--cert` / `--key`).
pub fn acceptor_from_pem_files(cert: &Path, key: &Path) -> io::Result<TlsAcceptor> {
    acceptor_from_pem(&std::fs::read(cert)?, &std::fs::read(key)?)
}

/// A rustls client configuration that trusts exactly the certificates in `ca_pem` (a
/// self-signed certificate, say), for clients and tests.
pub fn client_config_trusting(ca_pem: &[u8]) -> io::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &ca_pem[..]) {
        roots.add(cert?).map_err(other)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(other)?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(config)
}
