//! The backend certificate verifier that is not plain web PKI: a SHA-256 pin
//! for self-signed legacy servers, or "no verification" for labs.
//!
//! Either way the handshake signatures are checked against the presented
//! certificate, so a pinned connection proves possession of the pinned key.
//!
//! [`LeafExpiry`] wraps any of the backend verifiers (pin, CA, none) and reports
//! the not-after of each certificate it accepted (the expiry metric of pinned
//! backends, whose certificate exists nowhere on the gateway's disk).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// Accepts exactly the end-entity certificates whose DER SHA-256 is pinned.
/// A pin is the right tool for `openssl req -x509` certificates, which are
/// marked CA and which web-PKI verification rejects as end entities.
///
/// Without pins (`verify: false`, lab only — the gateway warns at startup)
/// it accepts any certificate.
#[derive(Debug)]
pub struct PinnedVerifier {
    /// `None`: no verification of the certificate itself.
    pins: Option<Vec<[u8; 32]>>,
    provider: Arc<CryptoProvider>,
}

impl PinnedVerifier {
    pub fn new(pins: Vec<[u8; 32]>, provider: Arc<CryptoProvider>) -> Self {
        PinnedVerifier {
            pins: Some(pins),
            provider,
        }
    }

    /// `verify: false`.
    pub fn dangerous_any(provider: Arc<CryptoProvider>) -> Self {
        PinnedVerifier {
            pins: None,
            provider,
        }
    }
}

/// SHA-256 of a DER certificate.
pub fn cert_sha256(cert: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(pins) = &self.pins else {
            return Ok(ServerCertVerified::assertion());
        };
        let got = cert_sha256(end_entity);
        if pins.iter().any(|p| p == &got) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "backend certificate sha256 {} matches no pin_sha256",
                hex::encode(got)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Called with the not-after (Unix seconds) of every accepted backend leaf.
pub type OnLeaf = Arc<dyn Fn(f64) + Send + Sync>;

/// A verifier that reports the accepted leaf's not-after, then defers to `inner`.
pub struct LeafExpiry {
    pub inner: Arc<dyn ServerCertVerifier>,
    pub on_leaf: OnLeaf,
}

impl std::fmt::Debug for LeafExpiry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeafExpiry")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for LeafExpiry {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ok = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        if let Some(t) = super::material::not_after(end_entity) {
            (self.on_leaf)(t);
        }
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }
}
