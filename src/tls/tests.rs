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
        client_cert: None,
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

/// Client certificates: a resumed data handshake still shows the control
/// connection's certificate (`peer_certificates()` after resumption, TLS 1.2
/// and 1.3), and a full handshake with another certificate is a mismatch.
mod client_certs {
    use std::path::Path;

    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::config::{CertIdentity, ClientAuth, ClientAuthMode, ListenerTls, ReuseScope};
    use crate::metrics::{ClientCertRefusal, Metrics};

    struct Pki {
        dir: tempfile::TempDir,
        ca: CertificateDer<'static>,
        /// (chain, key) of client certificates with CN alice and bob.
        alice: (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
        bob: (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
    }

    fn pki() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name.push(DnType::CommonName, "test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let leaf = |cn: &str, eku: ExtendedKeyUsagePurpose, sans: Vec<String>| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(sans).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.extended_key_usages = vec![eku];
            let cert = p.signed_by(&key, &issuer).unwrap();
            (cert, key)
        };
        let (server, server_key) = leaf(
            "localhost",
            ExtendedKeyUsagePurpose::ServerAuth,
            vec!["localhost".into()],
        );
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        write("ca.pem", ca_cert.pem());
        write("server.pem", server.pem());
        write("server.key", server_key.serialize_pem());
        let client = |cn: &str| {
            let (c, k) = leaf(cn, ExtendedKeyUsagePurpose::ClientAuth, vec![]);
            (
                vec![c.der().clone()],
                PrivateKeyDer::try_from(k.serialize_der()).unwrap(),
            )
        };
        Pki {
            alice: client("alice"),
            bob: client("bob"),
            ca: ca_cert.der().clone(),
            dir,
        }
    }

    fn listener(dir: &Path) -> ListenerTls {
        ListenerTls {
            mode: config::TlsMode::Implicit,
            cert: Some(dir.join("server.pem")),
            key: Some(dir.join("server.key")),
            require: true,
            require_data_reuse: true,
            data_reuse_scope: ReuseScope::Session,
            min_version: TlsVersion::Tls12,
            max_version: TlsVersion::Tls13,
            allow_ccc: false,
            allow_clear_data: false,
            prefer_aes128: false,
            sni: vec![],
            client_auth: Some(ClientAuth {
                ca: dir.join("ca.pem"),
                mode: ClientAuthMode::Required,
                crl: vec![],
                identity: CertIdentity::Cn,
                require_user_match: false,
            }),
        }
    }

    fn client(
        pki: &Pki,
        who: &(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
        version: &'static SupportedProtocolVersion,
    ) -> Arc<ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pki.ca.clone()).unwrap();
        Arc::new(
            ClientConfig::builder_with_provider(provider())
                .with_protocol_versions(&[version])
                .unwrap()
                .with_root_certificates(roots)
                .with_client_auth_cert(who.0.clone(), who.1.clone_key())
                .unwrap(),
        )
    }

    /// One handshake over an in-memory pipe, then a byte each way (the client
    /// reads the TLS 1.3 tickets that came before the server's byte).
    async fn handshake(
        client: Arc<ClientConfig>,
        server: Arc<ServerConfig>,
    ) -> tokio_rustls::server::TlsStream<tokio::io::DuplexStream> {
        let (c, s) = tokio::io::duplex(64 * 1024);
        let name = ServerName::try_from("localhost").unwrap();
        let (cl, sv) = tokio::join!(
            TlsConnector::from(client).connect(name, c),
            TlsAcceptor::from(server).accept(s)
        );
        let (mut cl, mut sv) = (cl.unwrap(), sv.unwrap());
        let mut b = [0u8; 1];
        cl.write_all(b"x").await.unwrap();
        sv.read_exact(&mut b).await.unwrap();
        sv.write_all(b"y").await.unwrap();
        cl.read_exact(&mut b).await.unwrap();
        sv
    }

    #[tokio::test]
    async fn resumed_data_connections_carry_the_control_certificate() {
        let pki = pki();
        let tls = ServerTls::from_config(&listener(pki.dir.path())).unwrap();
        let metrics = Metrics::new();
        for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
            let acc = tls.session_acceptors("127.0.0.1".parse().unwrap()).unwrap();
            let alice = client(&pki, &pki.alice, version);
            let control = handshake(alice.clone(), acc.download.clone()).await;
            assert_eq!(
                acc.bind_client_cert(control.get_ref().1).as_deref(),
                Some("alice")
            );
            let data = handshake(alice, acc.data(crate::control::Direction::Download)).await;
            let conn = data.get_ref().1;
            assert!(was_resumed(conn.handshake_kind()), "{version:?} resumed");
            assert_eq!(
                conn.peer_certificates().and_then(|c| c.first()),
                Some(&pki.alice.0[0]),
                "{version:?}"
            );
            assert_eq!(
                acc.check_data_cert(conn.peer_certificates(), &metrics),
                Ok(())
            );
            // bob: valid, but not this session's certificate.
            let bob = client(&pki, &pki.bob, version);
            let data = handshake(bob, acc.data(crate::control::Direction::Upload)).await;
            assert_eq!(
                acc.check_data_cert(data.get_ref().1.peer_certificates(), &metrics),
                Err(ClientCertRefusal::Mismatch)
            );
        }
        assert!(metrics
            .encode()
            .contains("ftpsgate_client_cert_refused_total{reason=\"mismatch\"} 2"));
    }

    #[tokio::test]
    async fn prefer_aes128_chooses_aes128_over_the_clients_aes256_first_order() {
        let pki = pki();
        for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
            for prefer in [false, true] {
                let cfg = ListenerTls {
                    prefer_aes128: prefer,
                    ..listener(pki.dir.path())
                };
                let tls = ServerTls::from_config(&cfg).unwrap();
                let acc = tls.session_acceptors("127.0.0.1".parse().unwrap()).unwrap();
                // ring's default order, as rustls and OpenSSL clients: AES-256 first.
                let alice = client(&pki, &pki.alice, version);
                let control = handshake(alice, acc.download.clone()).await;
                let suite = control
                    .get_ref()
                    .1
                    .negotiated_cipher_suite()
                    .unwrap()
                    .suite();
                let name = suite.as_str().unwrap();
                let want = if prefer { "AES_128_GCM" } else { "AES_256_GCM" };
                assert!(name.contains(want), "{version:?} prefer={prefer}: {name}");
            }
        }
    }
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

/// Every provider we build offers and picks X25519 first, whatever order the
/// rustls release in the lock file defaults to, and keeps ring's whole set.
#[test]
fn key_exchange_is_x25519_first_in_every_provider() {
    use rustls::NamedGroup as G;
    for p in [provider(), backend_provider(), aes128_first()] {
        let order: Vec<G> = p.kx_groups.iter().map(|g| g.name()).collect();
        assert_eq!(order, [G::X25519, G::secp256r1, G::secp384r1]);
        let mut ring: Vec<u16> = rustls::crypto::ring::ALL_KX_GROUPS
            .iter()
            .map(|g| u16::from(g.name()))
            .collect();
        let mut ours: Vec<u16> = order.iter().map(|g| u16::from(*g)).collect();
        ring.sort_unstable();
        ours.sort_unstable();
        assert_eq!(ring, ours);
    }
}

/// Our backend-side client, against a server that prefers P-384 (rustls
/// 0.23.48's ring default order), sends an X25519 key share and agrees on X25519
/// with no HelloRetryRequest: the client's first share is what a server picks
/// when it supports it.
#[test]
fn our_client_agrees_on_x25519_with_a_p384_first_server() {
    use rustls::crypto::ring::kx_group;
    let certs = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = certs.cert.der().clone();
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(certs.signing_key.serialize_der()).unwrap();
    let mut server_provider = rustls::crypto::ring::default_provider();
    server_provider.kx_groups = vec![kx_group::SECP384R1, kx_group::X25519, kx_group::SECP256R1];
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(server_provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(backend_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut c =
        rustls::ClientConnection::new(Arc::new(client), "localhost".try_into().unwrap()).unwrap();
    let mut s = rustls::ServerConnection::new(Arc::new(server)).unwrap();
    let mut flights = 0;
    while (c.is_handshaking() || s.is_handshaking()) && flights < 10 {
        flights += 1;
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        s.read_tls(&mut buf.as_slice()).unwrap();
        s.process_new_packets().unwrap();
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        c.read_tls(&mut buf.as_slice()).unwrap();
        c.process_new_packets().unwrap();
    }
    assert!(!c.is_handshaking() && !s.is_handshaking());
    // ClientHello → server flight, then the client's Finished: two; a
    // HelloRetryRequest would add one.
    assert_eq!(flights, 2, "no HelloRetryRequest");
    assert_eq!(
        c.negotiated_key_exchange_group().map(|g| g.name()),
        Some(rustls::NamedGroup::X25519)
    );
}
