//! Throw-away X.509 material for demos and tests.
//!
//! Everything here is generated with `rcgen` (ring backend) and ECDSA P-256 keys:
//!
//! * [`generate_self_signed`] makes a self-signed *end-entity* certificate (`CA:FALSE`, so
//!   rustls/webpki accept it as a server certificate) for `localhost`, `127.0.0.1` and `::1`.
//! * [`generate_ca_signed`] makes a tiny test CA plus a leaf signed by it, for tests that
//!   verify the peer against a CA file instead of pinning.
//! * [`cert_sha256_hex`] computes the SHA-256 fingerprint of a certificate's DER encoding,
//!   the value used for `pin_sha256`.
//!
//! Private keys are written as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) with mode `0600`
//! on Unix. None of this is meant for production use.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// Subject alternative names put on every generated end-entity certificate.
const LOCAL_SANS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// A freshly generated self-signed certificate, both in memory and on disk.
#[derive(Debug, Clone)]
pub struct GeneratedCert {
    /// The certificate, PEM encoded (`-----BEGIN CERTIFICATE-----`).
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM encoded (`-----BEGIN PRIVATE KEY-----`).
    pub key_pem: String,
    /// Where `cert_pem` was written: `<dir>/<stem>.pem`.
    pub cert_path: PathBuf,
    /// Where `key_pem` was written: `<dir>/<stem>.key`.
    pub key_path: PathBuf,
}

/// Paths written by [`generate_ca_signed`].
#[derive(Debug, Clone)]
pub struct GeneratedCa {
    /// The test CA certificate (PEM): `<dir>/<stem>-ca.pem`. Use it as a trust anchor.
    pub ca_path: PathBuf,
    /// Full chain (PEM): the leaf followed by the CA certificate: `<dir>/<stem>.pem`.
    pub cert_path: PathBuf,
    /// The leaf's private key, PKCS#8 PEM: `<dir>/<stem>.key`.
    pub key_path: PathBuf,
}

/// Self-signed END-ENTITY cert (NOT a CA: rustls rejects CA:TRUE end-entity certs) for
/// SANs "localhost", 127.0.0.1 and ::1, ECDSA P-256 key in PKCS#8 PEM; writes
/// `<dir>/<stem>.pem` and `<dir>/<stem>.key`.
///
/// `dir` is created if it does not exist; existing files are overwritten.
pub fn generate_self_signed(dir: &Path, stem: &str) -> Result<GeneratedCert> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .context("generating ECDSA P-256 key pair")?;
    let params = leaf_params("ftpsgate self-signed")?;
    let cert = params
        .self_signed(&key)
        .context("self-signing certificate")?;

    let cert_pem = cert.pem();
    let key_pem = key.serialize_pem();
    let (cert_path, key_path) = leaf_paths(dir, stem);

    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_public(&cert_path, &cert_pem)?;
    write_private(&key_path, &key_pem)?;

    Ok(GeneratedCert {
        cert_pem,
        key_pem,
        cert_path,
        key_path,
    })
}

/// Self-signed end-entity certificate for the given host names/IP addresses
/// (`ftpsgate self-signed`, the Debian package's first certificate): writes
/// `<dir>/<stem>.pem` and `<dir>/<stem>.key` (mode 0600). Refuses to replace an
/// existing file, so a certificate the admin installed is never overwritten.
pub fn generate_for_names(dir: &Path, stem: &str, names: &[String]) -> Result<GeneratedCert> {
    let (cert_path, key_path) = leaf_paths(dir, stem);
    for p in [&cert_path, &key_path] {
        if p.exists() {
            anyhow::bail!("{} exists; not replacing it", p.display());
        }
    }
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .context("generating ECDSA P-256 key pair")?;
    let mut params =
        CertificateParams::new(names.to_vec()).context("building certificate parameters")?;
    let cn = names.first().map(String::as_str).unwrap_or("ftpsgate");
    params.distinguished_name = common_name(cn);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params
        .self_signed(&key)
        .context("self-signing certificate")?;
    let cert_pem = cert.pem();
    let key_pem = key.serialize_pem();
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_private(&key_path, &key_pem)?;
    write_public(&cert_path, &cert_pem)?;
    Ok(GeneratedCert {
        cert_pem,
        key_pem,
        cert_path,
        key_path,
    })
}

/// A tiny test CA + an end-entity cert signed by it (for "verify against CA file" tests):
/// writes `<dir>/<stem>-ca.pem`, `<dir>/<stem>.pem` (leaf followed by the CA cert = full
/// chain) and `<dir>/<stem>.key`.
///
/// The leaf has the same SANs as [`generate_self_signed`]. The CA key is not kept.
pub fn generate_ca_signed(dir: &Path, stem: &str) -> Result<GeneratedCa> {
    let ca_key =
        KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("generating CA key pair")?;
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = common_name("ftpsgate test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).context("self-signing test CA")?;

    let leaf_key =
        KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("generating leaf key pair")?;
    let mut params = leaf_params("ftpsgate test leaf")?;
    params.use_authority_key_identifier_extension = true;
    let leaf = params
        .signed_by(&leaf_key, &ca)
        .context("signing leaf certificate with test CA")?;

    let ca_pem = ca.pem();
    let chain_pem = format!("{}{}", leaf.pem(), ca_pem);
    let ca_path = dir.join(format!("{stem}-ca.pem"));
    let (cert_path, key_path) = leaf_paths(dir, stem);

    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_public(&ca_path, &ca_pem)?;
    write_public(&cert_path, &chain_pem)?;
    write_private(&key_path, &leaf_key.serialize_pem())?;

    Ok(GeneratedCa {
        ca_path,
        cert_path,
        key_path,
    })
}

/// SHA-256 of the DER certificate, lowercase hex (used for `pin_sha256`).
///
/// If `cert_pem` holds several certificates (a full chain), the first one — the leaf — is
/// hashed. Errors if there is no `CERTIFICATE` block.
pub fn cert_sha256_hex(cert_pem: &str) -> Result<String> {
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("no PEM certificate found: {e}"))?;
    let digest = ring::digest::digest(&ring::digest::SHA256, der.as_ref());
    Ok(to_lower_hex(digest.as_ref()))
}

fn leaf_params(cn: &str) -> Result<CertificateParams> {
    let sans: Vec<String> = LOCAL_SANS.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(sans).context("building certificate parameters")?;
    params.distinguished_name = common_name(cn);
    // Explicit `CA:FALSE`: webpki refuses a CA certificate used as an end entity.
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    Ok(params)
}

fn common_name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn leaf_paths(dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}.key")),
    )
}

fn write_public(path: &Path, contents: &str) -> Result<()> {
    fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    // `mode` only applies when the file is created; tighten a pre-existing one too.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting permissions of {}", path.display()))?;
    }
    file.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

fn to_lower_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}
