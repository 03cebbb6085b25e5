//! Test PKI made in-process with rcgen: one CA and one leaf (not a CA) signed by it;
//! and a client PKI for mutual TLS ([`ClientPki`]: good, expired, revoked + CRL, other CA).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// A test CA plus a server leaf certificate signed by it, written as PEM files.
pub struct Certs {
    /// The CA certificate (what clients trust).
    pub ca_pem: PathBuf,
    /// The leaf certificate (what the server presents).
    pub cert_pem: PathBuf,
    /// The leaf's private key (PKCS#8 PEM, ECDSA P-256).
    pub key_pem: PathBuf,
    /// Lower-case hex SHA-256 of the leaf certificate's DER (for `pin_sha256`).
    pub leaf_sha256_hex: String,
    /// The CA certificate DER (for building rustls root stores).
    pub ca_der: rustls_pki_types::CertificateDer<'static>,
}

impl Certs {
    /// Generates `{prefix}-ca.pem`, `{prefix}.pem` and `{prefix}.key` in `dir`.
    /// The leaf has SANs `localhost`, `127.0.0.1` and `::1`.
    pub fn generate(dir: &Path, prefix: &str) -> Certs {
        Certs::generate_for(dir, prefix, &["localhost", "127.0.0.1", "::1"])
    }

    /// Like [`Certs::generate`], with the leaf's SANs (and CN, the first) set to `names`.
    pub fn generate_for(dir: &Path, prefix: &str, names: &[&str]) -> Certs {
        Certs::generate_usage(dir, prefix, names, false)
    }

    /// Like [`Certs::generate_for`], with a leaf usable as a TLS client
    /// certificate too (extended key usage clientAuth beside serverAuth).
    pub fn generate_client(dir: &Path, prefix: &str, names: &[&str]) -> Certs {
        Certs::generate_usage(dir, prefix, names, true)
    }

    fn generate_usage(dir: &Path, prefix: &str, names: &[&str], client: bool) -> Certs {
        let (ca_cert, issuer) = test_ca(&format!("ftpsgate test CA {prefix}"));

        let leaf_key = KeyPair::generate().expect("leaf key");
        let mut leaf_params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        leaf_params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("localhost"),
        );
        leaf_params.is_ca = IsCa::ExplicitNoCa;
        leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        if client {
            leaf_params
                .extended_key_usages
                .push(rcgen::ExtendedKeyUsagePurpose::ClientAuth);
        }
        let leaf_cert = leaf_params
            .signed_by(&leaf_key, &issuer)
            .expect("sign leaf");

        let ca_pem = dir.join(format!("{prefix}-ca.pem"));
        let cert_pem = dir.join(format!("{prefix}.pem"));
        let key_pem = dir.join(format!("{prefix}.key"));
        std::fs::write(&ca_pem, ca_cert.pem()).unwrap();
        std::fs::write(&cert_pem, leaf_cert.pem()).unwrap();
        std::fs::write(&key_pem, leaf_key.serialize_pem()).unwrap();

        Certs {
            ca_pem,
            cert_pem,
            key_pem,
            leaf_sha256_hex: super::sha256_bytes(leaf_cert.der()),
            ca_der: ca_cert.der().clone(),
        }
    }

    /// A rustls root store trusting only this CA.
    pub fn root_store(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).expect("add test CA");
        roots
    }

    /// A rustls client config (ring provider, TLS 1.2 + 1.3, default resumption) trusting
    /// this CA. Share one `Arc` between control and data connections to resume sessions.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        client_config_with(self, rustls::client::Resumption::default(), None)
    }

    /// Like [`Certs::client_config`] but never resumes: every handshake is a full one.
    pub fn client_config_no_resumption(&self) -> Arc<rustls::ClientConfig> {
        client_config_with(self, rustls::client::Resumption::disabled(), None)
    }

    /// Like [`Certs::client_config`], presenting `client` as its client certificate.
    pub fn client_config_with_cert(&self, client: &ClientCertFiles) -> Arc<rustls::ClientConfig> {
        use rustls_pki_types::pem::PemObject;
        let chain = rustls_pki_types::CertificateDer::pem_file_iter(&client.cert)
            .expect("client cert file")
            .collect::<Result<Vec<_>, _>>()
            .expect("client cert PEM");
        let key = rustls_pki_types::PrivateKeyDer::from_pem_file(&client.key).expect("client key");
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(self.root_store())
        .with_client_auth_cert(chain, key)
        .expect("client certificate");
        Arc::new(config)
    }

    /// Like [`Certs::client_config`] but limited to one protocol version (`"1.2"` or `"1.3"`).
    pub fn client_config_version(&self, version: &str) -> Arc<rustls::ClientConfig> {
        client_config_with(self, rustls::client::Resumption::default(), Some(version))
    }
}

fn client_config_with(
    certs: &Certs,
    resumption: rustls::client::Resumption,
    version: Option<&str>,
) -> Arc<rustls::ClientConfig> {
    let versions: &[&'static rustls::SupportedProtocolVersion] = match version {
        None => rustls::ALL_VERSIONS,
        Some("1.2") => &[&rustls::version::TLS12],
        Some("1.3") => &[&rustls::version::TLS13],
        Some(other) => panic!("unknown TLS version {other}"),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .expect("protocol versions")
    .with_root_certificates(certs.root_store())
    .with_no_client_auth();
    config.resumption = resumption;
    Arc::new(config)
}

/// One client certificate and its key as PEM files.
#[derive(Clone, Debug)]
pub struct ClientCertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A client PKI for mutual TLS (rcgen): a CA with a CRL, and client
/// certificates (EKU clientAuth) whose common name is a login name.
pub struct ClientPki {
    /// The CA that `client_auth.ca` trusts.
    pub ca_pem: PathBuf,
    /// A CRL signed by that CA listing `revoked`.
    pub crl_pem: PathBuf,
    /// Valid, CN = the user given to [`ClientPki::generate`].
    pub good: ClientCertFiles,
    /// Valid, CN `alice` (another identity from the same CA).
    pub alice: ClientCertFiles,
    /// Same CN as `good`, expired in 2001.
    pub expired: ClientCertFiles,
    /// Same CN as `good`, listed in the CRL.
    pub revoked: ClientCertFiles,
    /// Same CN as `good`, signed by another CA.
    pub other_ca: ClientCertFiles,
    /// The CA's signer, for [`ClientPki::write_crl`].
    issuer: Issuer<'static, KeyPair>,
}

/// Serial numbers of the [`ClientPki`] certificates (for [`ClientPki::write_crl`]).
pub const GOOD_SERIAL: u64 = 11;
/// The serial of `ClientPki::revoked`, listed in the first CRL.
pub const REVOKED_SERIAL: u64 = 14;

impl ClientPki {
    /// Writes `{prefix}-*.pem/.key` into `dir`; `user` is the CN of the good,
    /// expired, revoked and other-CA certificates.
    pub fn generate(dir: &Path, prefix: &str, user: &str) -> ClientPki {
        let ca = test_ca(&format!("ftpsgate client CA {prefix}"));
        let other = test_ca(&format!("ftpsgate other CA {prefix}"));
        let write = |name: &str, cert: &rcgen::Certificate, key: &KeyPair| {
            let files = ClientCertFiles {
                cert: dir.join(format!("{prefix}-{name}.pem")),
                key: dir.join(format!("{prefix}-{name}.key")),
            };
            std::fs::write(&files.cert, cert.pem()).unwrap();
            std::fs::write(&files.key, key.serialize_pem()).unwrap();
            files
        };
        let leaf = |issuer: &Issuer<'static, KeyPair>, cn: &str, serial: u64, expired: bool| {
            let key = KeyPair::generate().expect("client key");
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name.push(DnType::CommonName, cn);
            params.is_ca = IsCa::ExplicitNoCa;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
            params.serial_number = Some(rcgen::SerialNumber::from(serial));
            if expired {
                params.not_before = rcgen::date_time_ymd(2000, 1, 1);
                params.not_after = rcgen::date_time_ymd(2001, 1, 1);
            }
            let cert = params.signed_by(&key, issuer).expect("sign client cert");
            (cert, key)
        };
        let (c, k) = leaf(&ca.1, user, GOOD_SERIAL, false);
        let good = write("good", &c, &k);
        let (c, k) = leaf(&ca.1, "alice", 12, false);
        let alice = write("alice", &c, &k);
        let (c, k) = leaf(&ca.1, user, 13, true);
        let expired = write("expired", &c, &k);
        let (c, k) = leaf(&ca.1, user, REVOKED_SERIAL, false);
        let revoked = write("revoked", &c, &k);
        let (c, k) = leaf(&other.1, user, 11, false);
        let other_ca = write("other-ca", &c, &k);

        let ca_pem = dir.join(format!("{prefix}-ca.pem"));
        let crl_pem = dir.join(format!("{prefix}-ca.crl"));
        std::fs::write(&ca_pem, ca.0.pem()).unwrap();
        let pki = ClientPki {
            ca_pem,
            crl_pem,
            good,
            alice,
            expired,
            revoked,
            other_ca,
            issuer: ca.1,
        };
        pki.write_crl(&[REVOKED_SERIAL]);
        pki
    }

    /// (Re)writes `crl_pem`: a CRL of the CA revoking `serials`.
    pub fn write_crl(&self, serials: &[u64]) {
        let crl = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2024, 1, 1),
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: rcgen::SerialNumber::from(serials.len() as u64 + 1),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from(*s),
                    revocation_time: rcgen::date_time_ymd(2024, 1, 1),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&self.issuer)
        .expect("sign CRL");
        std::fs::write(&self.crl_pem, crl.pem().expect("CRL PEM")).unwrap();
    }
}

/// A self-signed CA allowed to sign certificates and CRLs.
fn test_ca(cn: &str) -> (rcgen::Certificate, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).expect("self-sign CA");
    (cert, Issuer::new(params, key))
}
