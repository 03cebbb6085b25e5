//! Client certificates (mutual TLS) on a listener: the rustls verifier built
//! from `tls.client_auth` (CA bundle, CRLs, required or optional), the check
//! of each file for `ftpsgate check`, why a handshake refused a certificate
//! (the `reason` of logs and `ftpsgate_client_cert_refused_total`), and the
//! control connection's certificate that every data connection of the
//! session must present again.
//!
//! The verifier is built once per listener and config generation (with the
//! listener's `ServerTls`), never per session.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, Error as RustlsError, RootCertStore, ServerConnection};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};

use crate::config::{self, ClientAuthFile, ClientAuthMode};
use crate::metrics::{ClientCertRefusal, Metrics};

use super::{load_certs, provider, TlsError};

/// The verifier for `cfg`: chains to `cfg.ca`, not revoked by any of
/// `cfg.crl` (only the client's own certificate is looked up; a certificate
/// no CRL speaks for is refused as `unknown revocation status`), and, in
/// `optional` mode, no certificate at all is accepted too.
pub(crate) fn verifier(cfg: &config::ClientAuth) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let roots = roots(&cfg.ca)?;
    let mut crls = Vec::new();
    for path in &cfg.crl {
        crls.extend(load_crls(path)?);
    }
    build(roots, crls, cfg.mode)
        .map_err(|e| TlsError::ClientAuth(format!("client_auth (ca {}): {e}", cfg.ca.display())))
}

fn build(
    roots: RootCertStore,
    crls: Vec<CertificateRevocationListDer<'static>>,
    mode: ClientAuthMode,
) -> Result<Arc<dyn ClientCertVerifier>, rustls::server::VerifierBuilderError> {
    let has_crls = !crls.is_empty();
    let mut b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
    if has_crls {
        b = b.with_crls(crls).only_check_end_entity_revocation();
    }
    if mode == ClientAuthMode::Optional {
        b = b.allow_unauthenticated();
    }
    b.build()
}

/// The CA bundle as a root store; every certificate in it must parse.
fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| {
            TlsError::ClientAuth(format!(
                "{}: not a usable CA certificate: {e}",
                path.display()
            ))
        })?;
    }
    Ok(roots)
}

/// The CRLs of a file: PEM `X509 CRL` blocks, else the whole file as one DER CRL.
fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let pem: Result<Vec<_>, _> = CertificateRevocationListDer::pem_slice_iter(&bytes).collect();
    match pem {
        Ok(list) if !list.is_empty() => Ok(list),
        Ok(_) if bytes.first() == Some(&0x30) => Ok(vec![bytes.into()]),
        Ok(_) => Err(TlsError::ClientAuth(format!(
            "{}: no X509 CRL block found (PEM) and not a DER CRL",
            path.display()
        ))),
        Err(e) => Err(TlsError::ClientAuth(format!("{}: {e}", path.display()))),
    }
}

/// Loads one file of a `client_auth` section as the listener will (`check`).
pub fn check_file(file: &ClientAuthFile) -> Result<(), TlsError> {
    match file {
        ClientAuthFile::Ca(ca) => roots(ca).map(drop),
        ClientAuthFile::Crl { ca, crl } => {
            let crls = load_crls(crl)?;
            // With an unusable CA there is nothing to check the CRL with; the
            // CA's own entry reports it.
            let Ok(roots) = roots(ca) else { return Ok(()) };
            build(roots, crls, ClientAuthMode::Required)
                .map(drop)
                .map_err(|e| TlsError::ClientAuth(format!("{}: {e}", crl.display())))
        }
    }
}

/// Why a client's certificate was refused, when `e` (a failed server
/// handshake) is such a refusal; `None` for every other failure.
pub(crate) fn refusal(e: &std::io::Error) -> Option<ClientCertRefusal> {
    let e = e.get_ref()?.downcast_ref::<RustlsError>()?;
    refusal_of(e)
}

/// [`refusal`] for a rustls error.
pub(crate) fn refusal_of(e: &RustlsError) -> Option<ClientCertRefusal> {
    use CertificateError as C;
    Some(match e {
        RustlsError::NoCertificatesPresented => ClientCertRefusal::Missing,
        RustlsError::InvalidCertificate(c) => match c {
            C::Expired | C::ExpiredContext { .. } => ClientCertRefusal::Expired,
            C::Revoked => ClientCertRefusal::Revoked,
            C::UnknownIssuer => ClientCertRefusal::UnknownCa,
            _ => ClientCertRefusal::Other,
        },
        _ => return None,
    })
}

/// After a failed client handshake (control or data, `leg`): when it refused
/// the client's certificate, log why and count it.
pub(crate) fn note_failed_handshake(e: &std::io::Error, leg: &'static str, metrics: &Metrics) {
    if let Some(reason) = refusal(e) {
        tracing::warn!(leg, reason = reason.as_str(), error = %e, "client certificate refused");
        metrics.client_cert_refused(reason);
    }
}

/// One session's client-certificate state: which name is its identity and
/// the certificate its control connection presented (data connections must
/// present the same one).
#[derive(Debug)]
pub(crate) struct SessionPeer {
    identity: config::CertIdentity,
    /// The control connection's end-entity certificate (`None`: none given,
    /// optional mode, or no TLS handshake yet) and the identity it gave.
    control: Mutex<(Option<CertificateDer<'static>>, Option<String>)>,
}

impl SessionPeer {
    pub(crate) fn new(identity: config::CertIdentity) -> Arc<SessionPeer> {
        Arc::new(SessionPeer {
            identity,
            control: Mutex::new((None, None)),
        })
    }

    /// After the control handshake: remember its certificate and return the
    /// identity it gives (`None` without a certificate or such a name).
    pub(crate) fn bind_control(&self, conn: &ServerConnection) -> Option<String> {
        let leaf = leaf(conn.peer_certificates());
        let identity = leaf
            .as_ref()
            .and_then(|c| super::identity::identity(c.as_ref(), self.identity));
        if let Ok(mut slot) = self.control.lock() {
            *slot = (leaf, identity.clone());
        }
        identity
    }

    /// The identity [`Self::bind_control`] returned last.
    pub(crate) fn identity(&self) -> Option<String> {
        self.control.lock().ok().and_then(|c| c.1.clone())
    }

    /// A data connection must carry the control connection's certificate
    /// (a resumed session carries it too), or none when that had none.
    pub(crate) fn check_data(
        &self,
        peer: Option<&[CertificateDer<'_>]>,
    ) -> Result<(), ClientCertRefusal> {
        let control = self.control.lock().map(|c| c.0.clone()).unwrap_or(None);
        same_certificate(control.as_ref(), leaf(peer).as_ref())
    }
}

/// Pure part of [`SessionPeer::check_data`].
fn same_certificate(
    control: Option<&CertificateDer<'_>>,
    data: Option<&CertificateDer<'_>>,
) -> Result<(), ClientCertRefusal> {
    match (control, data) {
        (None, None) => Ok(()),
        (Some(c), Some(d)) if c.as_ref() == d.as_ref() => Ok(()),
        (Some(_), None) => Err(ClientCertRefusal::Missing),
        _ => Err(ClientCertRefusal::Mismatch),
    }
}

fn leaf(peer: Option<&[CertificateDer<'_>]>) -> Option<CertificateDer<'static>> {
    peer.and_then(|c| c.first()).map(|c| c.clone().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_certificate_must_equal_the_control_one() {
        let a = CertificateDer::from(vec![1u8, 2, 3]);
        let b = CertificateDer::from(vec![4u8, 5, 6]);
        assert_eq!(same_certificate(None, None), Ok(()));
        assert_eq!(same_certificate(Some(&a), Some(&a.clone())), Ok(()));
        assert_eq!(
            same_certificate(Some(&a), Some(&b)),
            Err(ClientCertRefusal::Mismatch)
        );
        assert_eq!(
            same_certificate(Some(&a), None),
            Err(ClientCertRefusal::Missing)
        );
        assert_eq!(
            same_certificate(None, Some(&b)),
            Err(ClientCertRefusal::Mismatch)
        );
    }

    #[test]
    fn rustls_errors_map_to_reasons() {
        use CertificateError as C;
        let cases = [
            (
                RustlsError::NoCertificatesPresented,
                Some(ClientCertRefusal::Missing),
            ),
            (
                RustlsError::InvalidCertificate(C::Expired),
                Some(ClientCertRefusal::Expired),
            ),
            (
                RustlsError::InvalidCertificate(C::Revoked),
                Some(ClientCertRefusal::Revoked),
            ),
            (
                RustlsError::InvalidCertificate(C::UnknownIssuer),
                Some(ClientCertRefusal::UnknownCa),
            ),
            (
                RustlsError::InvalidCertificate(C::BadSignature),
                Some(ClientCertRefusal::Other),
            ),
            (RustlsError::HandshakeNotComplete, None),
        ];
        for (e, want) in cases {
            assert_eq!(refusal_of(&e), want, "{e:?}");
            let io = std::io::Error::new(std::io::ErrorKind::InvalidData, e);
            assert_eq!(refusal(&io), want);
        }
    }
}
