//! The identity a client certificate gives a session (`client_auth.identity`):
//! its first common name, first e-mail SAN or first DNS SAN.
//!
//! Pure: DER in, name out. Whether the session may use that name (`USER` must
//! match, routes) is decided in `policy`.

use x509_parser::extensions::GeneralName;

use crate::config::CertIdentity;

/// The `kind` name of the certificate `der`; `None` when the certificate does
/// not parse, has no such name, or the name holds control characters (it
/// could never equal a `USER` argument and would only reach the logs).
pub(crate) fn identity(der: &[u8], kind: CertIdentity) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let name = match kind {
        CertIdentity::Cn => cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned),
        CertIdentity::SanEmail | CertIdentity::SanDns => {
            let san = cert.subject_alternative_name().ok()??;
            san.value
                .general_names
                .iter()
                .find_map(|n| match (kind, n) {
                    (CertIdentity::SanEmail, GeneralName::RFC822Name(s))
                    | (CertIdentity::SanDns, GeneralName::DNSName(s)) => Some((*s).to_owned()),
                    _ => None,
                })
        }
    }?;
    (!name.is_empty() && !name.chars().any(char::is_control)).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    fn cert(cn: Option<&str>, sans: Vec<SanType>) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        params.subject_alt_names = sans;
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn each_kind_picks_its_first_name() {
        let der = cert(
            Some("alice"),
            vec![
                SanType::DnsName("a.example".try_into().unwrap()),
                SanType::Rfc822Name("alice@example.org".try_into().unwrap()),
                SanType::Rfc822Name("other@example.org".try_into().unwrap()),
                SanType::DnsName("b.example".try_into().unwrap()),
            ],
        );
        assert_eq!(identity(&der, CertIdentity::Cn).as_deref(), Some("alice"));
        assert_eq!(
            identity(&der, CertIdentity::SanEmail).as_deref(),
            Some("alice@example.org")
        );
        assert_eq!(
            identity(&der, CertIdentity::SanDns).as_deref(),
            Some("a.example")
        );
    }

    #[test]
    fn a_missing_name_or_garbage_gives_none() {
        let no_cn = cert(
            None,
            vec![SanType::DnsName("a.example".try_into().unwrap())],
        );
        assert_eq!(identity(&no_cn, CertIdentity::Cn), None);
        assert_eq!(identity(&no_cn, CertIdentity::SanEmail), None);
        let no_san = cert(Some("bob"), vec![]);
        assert_eq!(identity(&no_san, CertIdentity::SanDns), None);
        assert_eq!(identity(b"not a certificate", CertIdentity::Cn), None);
        let control = cert(Some("bob\r\nPASS x"), vec![]);
        assert_eq!(identity(&control, CertIdentity::Cn), None);
    }
}
