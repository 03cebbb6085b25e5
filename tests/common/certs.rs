//! Test PKI made in-process with rcgen: one CA and one leaf (not a CA) signed by it.

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
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("ftpsgate test CA {prefix}"));
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");
        let issuer = Issuer::new(ca_params, &ca_key);

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
