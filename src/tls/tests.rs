//! Version choice toward backends (see `BackendTls`): TLS 1.2 preferred for
//! resumption where allowed, TLS 1.3 after a backend refused 1.2.

use super::*;
use crate::config::{BackendTls as BackendTlsConfig, DataProtection, TlsMode};

fn backend(min: TlsVersion, max: TlsVersion, data: DataProtection) -> BackendTls {
    BackendTls::from_config(&BackendTlsConfig {
        mode: TlsMode::Explicit,
        verify: BackendVerify::Dangerous,
        server_name: "localhost".into(),
        min_version: min,
        max_version: max,
        data_protection: data,
    })
    .unwrap()
}

#[test]
fn protected_data_with_both_versions_offers_tls12_only() {
    let b = backend(
        TlsVersion::Tls12,
        TlsVersion::Tls13,
        DataProtection::Private,
    );
    assert!(b.session_connector().tls12_only);
}

#[test]
fn one_version_or_clear_data_offers_the_configured_range() {
    for (min, max, data) in [
        (
            TlsVersion::Tls13,
            TlsVersion::Tls13,
            DataProtection::Private,
        ),
        (
            TlsVersion::Tls12,
            TlsVersion::Tls12,
            DataProtection::Private,
        ),
        (TlsVersion::Tls12, TlsVersion::Tls13, DataProtection::Clear),
    ] {
        let b = backend(min, max, data);
        assert!(
            !b.session_connector().tls12_only,
            "{min:?}-{max:?} {data:?}"
        );
        assert!(b.fallback_connector(&b.session_connector()).is_none());
    }
}

#[test]
fn a_backend_that_refused_tls12_gets_every_version_from_then_on() {
    let b = backend(
        TlsVersion::Tls12,
        TlsVersion::Tls13,
        DataProtection::Private,
    );
    let first = b.session_connector();
    let retry = b.fallback_connector(&first).expect("a retry with TLS 1.3");
    assert!(!retry.tls12_only);
    assert!(
        !b.session_connector().tls12_only,
        "remembered for new sessions"
    );
    // A connector that already offered every version is not retried.
    assert!(b.fallback_connector(&retry).is_none());
}

#[test]
fn each_session_gets_its_own_store() {
    let b = backend(
        TlsVersion::Tls12,
        TlsVersion::Tls13,
        DataProtection::Private,
    );
    let (x, y) = (b.session_connector(), b.session_connector());
    assert!(!Arc::ptr_eq(&x.store, &y.store));
}

#[test]
fn version_refusals_are_told_from_other_handshake_errors() {
    use rustls::AlertDescription as A;
    let io = |e: rustls::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    assert!(is_version_refusal(&io(rustls::Error::AlertReceived(
        A::ProtocolVersion
    ))));
    assert!(!is_version_refusal(&io(rustls::Error::AlertReceived(
        A::BadCertificate
    ))));
    assert!(!is_version_refusal(&std::io::Error::from(
        std::io::ErrorKind::ConnectionReset
    )));
}

#[test]
fn backends_are_offered_aes128_gcm_first_in_each_version_and_every_suite() {
    use rustls::CipherSuite as C;
    let order: Vec<C> = backend_provider()
        .cipher_suites
        .iter()
        .map(|s| s.suite())
        .collect();
    let pos = |c: C| order.iter().position(|x| *x == c).unwrap();
    assert!(pos(C::TLS13_AES_128_GCM_SHA256) < pos(C::TLS13_AES_256_GCM_SHA384));
    assert!(
        pos(C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)
            < pos(C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384)
    );
    // Every TLS 1.3 suite before any TLS 1.2 one, and the same set as ring's.
    assert!(pos(C::TLS13_CHACHA20_POLY1305_SHA256) < pos(C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256));
    let mut all: Vec<C> = provider().cipher_suites.iter().map(|s| s.suite()).collect();
    let mut ours = order.clone();
    all.sort_by_key(|c| u16::from(*c));
    ours.sort_by_key(|c| u16::from(*c));
    assert_eq!(all, ours);
}
