//! TLS material on disk as the operator sees it: which files a config's TLS
//! reads (so a reload watch notices a renewed certificate), and when the
//! certificates in them expire (the expiry metric).
//!
//! Runs where certificates are loaded anyway (start, reload); never
//! mid-session. A file that cannot be read or parsed here is simply left out:
//! loading the same file for real reports the error with its key path.

use std::path::{Path, PathBuf};

use rustls_pki_types::CertificateDer;

use crate::config::{BackendVerify, Config, TlsMode};
use crate::metrics::CertExpiry;

use super::load_certs;

/// Every certificate, key, CA, CRL and SNI file the config's TLS reads, in config
/// order (duplicates kept out).
pub(crate) fn files(config: &Config) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let mut add = |p: &Path| {
        if !out.iter().any(|q| q == p) {
            out.push(p.to_path_buf());
        }
    };
    for l in &config.listeners {
        if l.tls.mode == TlsMode::None {
            continue;
        }
        for p in [&l.tls.cert, &l.tls.key].into_iter().flatten() {
            add(p);
        }
        for sni in &l.tls.sni {
            add(&sni.cert);
            add(&sni.key);
        }
        if let Some(ca) = &l.tls.client_auth {
            add(&ca.ca);
            for crl in &ca.crl {
                add(crl);
            }
        }
    }
    for b in &config.backends {
        if let BackendVerify::Ca(p) = &b.tls.verify {
            add(p);
        }
        if let Some(c) = &b.tls.client_cert {
            add(&c.cert);
            add(&c.key);
        }
    }
    out
}

/// The not-after of every served leaf certificate (`listener`, its name,
/// `default` or `sni:<first name>`) and of every backend CA file (`backend`,
/// its name, `ca`: the earliest in the file).
pub(crate) fn expiry(config: &Config) -> Vec<CertExpiry> {
    let mut out = Vec::new();
    for l in &config.listeners {
        if l.tls.mode == TlsMode::None {
            continue;
        }
        if let Some(t) = l.tls.cert.as_deref().and_then(leaf_not_after) {
            out.push(CertExpiry {
                scope: "listener",
                name: l.name.clone(),
                cert: "default".into(),
                not_after: t,
            });
        }
        for sni in &l.tls.sni {
            if let Some(t) = leaf_not_after(&sni.cert) {
                let first = sni.names.first().map(String::as_str).unwrap_or("?");
                out.push(CertExpiry {
                    scope: "listener",
                    name: l.name.clone(),
                    cert: format!("sni:{first}"),
                    not_after: t,
                });
            }
        }
    }
    for b in &config.backends {
        if let BackendVerify::Ca(p) = &b.tls.verify {
            let earliest = load_certs(p).ok().and_then(|certs| {
                certs
                    .iter()
                    .filter_map(not_after)
                    .min_by(|a, b| a.total_cmp(b))
            });
            if let Some(t) = earliest {
                out.push(CertExpiry {
                    scope: "backend",
                    name: b.name.clone(),
                    cert: "ca".into(),
                    not_after: t,
                });
            }
        }
    }
    out
}

/// The first certificate of a chain file: the one the gateway presents.
fn leaf_not_after(path: &Path) -> Option<f64> {
    load_certs(path).ok()?.first().and_then(not_after)
}

/// A DER certificate's not-after, Unix seconds.
pub(crate) fn not_after(der: &CertificateDer<'_>) -> Option<f64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    Some(cert.validity().not_after.timestamp() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_after_of_a_generated_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 5, 17);
        let cert = params.self_signed(&key).unwrap();
        // 2031-05-17T00:00:00Z
        assert_eq!(not_after(cert.der()), Some(1_936_742_400.0));
        assert_eq!(not_after(&CertificateDer::from(vec![1u8, 2, 3])), None);
    }
}
