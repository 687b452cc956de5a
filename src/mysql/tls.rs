//! TLS towards the source server with rustls. MySQL semantics: `preferred` and
//! `required` encrypt without checking the certificate; `verify_ca` checks the chain
//! against `ca_file` but not the host name (as MySQL's VERIFY_CA does).

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error, RootCertStore, SignatureScheme,
};

use super::error::MysqlError;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client config that encrypts but accepts any server certificate.
pub fn encrypt_only() -> Result<ClientConfig, MysqlError> {
    let p = provider();
    Ok(ClientConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(p)))
        .with_no_client_auth())
}

/// A client config that checks the chain against the CA certificates in `ca_file`.
pub fn verify_ca(ca_file: &Path) -> Result<ClientConfig, MysqlError> {
    let not_usable = |why: String| MysqlError::NotUsable {
        problem: format!("database.ca_file {}: {why}", ca_file.display()),
        fix: "point ca_file at the PEM file of the CA that signed the server certificate".into(),
    };
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca_file).map_err(|e| not_usable(e.to_string()))?;
    for cert in certs {
        let cert = cert.map_err(|e| not_usable(e.to_string()))?;
        roots.add(cert).map_err(|e| not_usable(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(not_usable("no certificates in the file".into()));
    }
    let p = provider();
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), p.clone())
        .build()
        .map_err(|e| not_usable(e.to_string()))?;
    Ok(ClientConfig::builder_with_provider(p)
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
        .with_no_client_auth())
}

/// The name sent in SNI; an IP address when `host` is one.
pub fn server_name(host: &str) -> Result<ServerName<'static>, MysqlError> {
    ServerName::try_from(host.to_owned()).map_err(|e| MysqlError::NotUsable {
        problem: format!("database.host {host:?} is not a valid TLS server name: {e}"),
        fix: "use a DNS name or an IP address".into(),
    })
}

fn tls_error(e: Error) -> MysqlError {
    MysqlError::Io {
        context: "TLS".into(),
        source: std::io::Error::other(e),
    }
}

#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Full chain verification, except that a certificate issued for another name is
/// accepted: MySQL servers rarely carry their DNS name, and VERIFY_CA does not ask it.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(Error::InvalidCertificate(CertificateError::NotValidForName))
            | Err(Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls12_signature(m, c, d)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls13_signature(m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
