//! PEM loading for certificates and keys (`rustls-pki-types`' `PemObject`):
//! full chains, and RSA (PKCS#1), PKCS#8 and SEC1 EC keys.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsError;

/// All certificates in a PEM file, leaf first as written.
pub(crate) fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let shown = path.display().to_string();
    let iter = CertificateDer::pem_file_iter(path).map_err(|e| pem_error(&shown, e))?;
    let certs = iter
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(&shown, e))?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: shown,
            message: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

/// The first private key in a PEM file.
pub(crate) fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let shown = path.display().to_string();
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error(&shown, e))
}

fn pem_error(path: &str, e: rustls_pki_types::pem::Error) -> TlsError {
    match e {
        rustls_pki_types::pem::Error::Io(source) => TlsError::Read {
            path: path.to_string(),
            source,
        },
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::Pem {
            path: path.to_string(),
            message: "no matching PEM block found".into(),
        },
        other => TlsError::Pem {
            path: path.to_string(),
            message: other.to_string(),
        },
    }
}
