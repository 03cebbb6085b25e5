//! The record layer against rustls's own: for every suite of the ring
//! provider, records rustls sealed open here and records sealed here open in
//! rustls; then what must be refused is.

use std::io::{Read, Write};
use std::sync::Arc;

use rustls::crypto::ring::cipher_suite as cs;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConnection, ServerConnection, SupportedCipherSuite};

use super::*;

const SUITES: [SupportedCipherSuite; 6] = [
    cs::TLS13_AES_128_GCM_SHA256,
    cs::TLS13_AES_256_GCM_SHA384,
    cs::TLS13_CHACHA20_POLY1305_SHA256,
    cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
];

/// A finished handshake between rustls's buffered connections with `suite`
/// only (ECDSA P-256 certificate, so the TLS 1.2 ECDSA suites apply).
fn connected(suite: SupportedCipherSuite) -> (ClientConnection, ServerConnection) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let der: CertificateDer<'static> = cert.der().clone();
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = vec![suite];
    let provider = Arc::new(provider);
    let versions = [suite.version()];
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![der.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    server.enable_secret_extraction = true;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.enable_secret_extraction = true;
    let name = ServerName::try_from("localhost").unwrap();
    let mut c = ClientConnection::new(Arc::new(client), name).unwrap();
    let mut s = ServerConnection::new(Arc::new(server)).unwrap();
    let mut wire = Vec::new();
    for _ in 0..10 {
        wire.clear();
        c.write_tls(&mut wire).unwrap();
        s.read_tls(&mut &wire[..]).unwrap();
        s.process_new_packets().unwrap();
        wire.clear();
        s.write_tls(&mut wire).unwrap();
        c.read_tls(&mut &wire[..]).unwrap();
        c.process_new_packets().unwrap();
        if !c.is_handshaking() && !s.is_handshaking() && !s.wants_write() && !c.wants_write() {
            break;
        }
    }
    assert!(!c.is_handshaking() && !s.is_handshaking());
    (c, s)
}

/// Keys for both directions of the server side.
fn server_keys(s: ServerConnection) -> (Keys, Keys) {
    let version = s.protocol_version().unwrap();
    let secrets = s.dangerous_extract_secrets().unwrap();
    (
        Keys::new(version, secrets.tx).unwrap(),
        Keys::new(version, secrets.rx).unwrap(),
    )
}

#[test]
fn records_open_and_seal_as_rustls_does_for_every_suite() {
    for suite in SUITES {
        let (mut c, s) = connected(suite);
        let (mut tx, mut rx) = server_keys(s);
        // rustls → here: two records (sequence numbers 0 and 1), one empty.
        let mut wire = Vec::new();
        for msg in [&b"first record"[..], &vec![0x5a; MAX_PLAIN][..]] {
            c.writer().write_all(msg).unwrap();
            c.write_tls(&mut wire).unwrap();
        }
        let mut at = 0;
        for want in [&b"first record"[..], &vec![0x5a; MAX_PLAIN][..]] {
            let len = rx.complete_record(&wire[at..]).unwrap().unwrap();
            let (typ, plain) = rx.open_in_place(&mut wire[at..at + len]).unwrap();
            assert_eq!(typ, APPLICATION_DATA, "{suite:?}");
            assert_eq!(&wire[at + plain.start..at + plain.end], want, "{suite:?}");
            at += len;
        }
        assert_eq!(at, wire.len());
        // Here → rustls: data, an empty record, more data, close_notify.
        let mut out = vec![0u8; 64 * 1024];
        let mut n = 0;
        for msg in [&b"reply"[..], &[][..], &vec![7u8; 3000][..]] {
            n += tx.seal(APPLICATION_DATA, msg, &mut out[n..]).unwrap();
        }
        n += tx.seal(ALERT, &[1, 0], &mut out[n..]).unwrap();
        c.read_tls(&mut &out[..n]).unwrap();
        c.process_new_packets().unwrap();
        let mut got = Vec::new();
        c.reader().read_to_end(&mut got).unwrap();
        let mut want = b"reply".to_vec();
        want.extend_from_slice(&[7u8; 3000]);
        assert_eq!(got, want, "{suite:?}");
    }
}

#[test]
fn a_changed_byte_or_a_replayed_record_does_not_open() {
    for suite in SUITES {
        let (mut c, s) = connected(suite);
        let (_, mut rx) = server_keys(s);
        let mut wire = Vec::new();
        c.writer().write_all(b"data").unwrap();
        c.write_tls(&mut wire).unwrap();
        let clean = wire.clone();
        for i in 0..wire.len() {
            let mut bad = clean.clone();
            bad[i] ^= 0x01;
            let r = rx.clone().open_in_place(&mut bad);
            assert!(r.is_err(), "{suite:?} byte {i} changed");
        }
        let mut ok = clean.clone();
        rx.open_in_place(&mut ok).unwrap();
        // The same record again (sequence number moved on).
        let mut again = clean.clone();
        assert!(matches!(
            rx.open_in_place(&mut again),
            Err(Error::DecryptError)
        ));
    }
}

#[test]
fn oversized_records_and_headers_are_record_overflow() {
    for suite in [SUITES[0], SUITES[3]] {
        let (_, s) = connected(suite);
        let (_, rx) = server_keys(s);
        let limit = if suite.version() == &rustls::version::TLS13 {
            MAX_PLAIN + 256
        } else {
            MAX_PLAIN + 2048
        };
        let mut header = [APPLICATION_DATA, 3, 3, 0, 0];
        header[3..].copy_from_slice(&(limit as u16).to_be_bytes());
        assert_eq!(rx.complete_record(&header).unwrap(), None);
        header[3..].copy_from_slice(&(limit as u16 + 1).to_be_bytes());
        assert!(matches!(
            rx.complete_record(&header),
            Err(Error::PeerSentOversizedRecord)
        ));
    }
}

#[test]
fn every_length_and_type_sealed_here_opens_with_the_peers_keys() {
    for suite in SUITES {
        let (c, s) = connected(suite);
        let version = s.protocol_version().unwrap();
        let (mut tx, _) = server_keys(s);
        let mut rx = Keys::new(version, c.dangerous_extract_secrets().unwrap().rx).unwrap();
        let mut lens = vec![0, 1, 15, 16, 17, 255, 256, 1000, MAX_PLAIN - 1, MAX_PLAIN];
        let mut x = 12345u32;
        for _ in 0..40 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            lens.push(x as usize % (MAX_PLAIN + 1));
        }
        for (i, len) in lens.into_iter().enumerate() {
            let typ = [APPLICATION_DATA, HANDSHAKE, ALERT][i % 3];
            let plain: Vec<u8> = (0..len).map(|j| (j * 31 + i) as u8).collect();
            let mut rec = vec![0u8; tx.sealed_len(len)];
            assert_eq!(tx.seal(typ, &plain, &mut rec).unwrap(), rec.len());
            assert_eq!(rx.complete_record(&rec).unwrap(), Some(rec.len()));
            let (got_typ, range) = rx.open_in_place(&mut rec).unwrap();
            assert_eq!(got_typ, typ, "{suite:?} {len}");
            assert_eq!(&rec[range], &plain[..], "{suite:?} {len}");
        }
    }
}

#[test]
fn a_tls13_record_of_padding_only_or_in_the_clear_is_refused() {
    let (c, s) = connected(SUITES[0]);
    let version = s.protocol_version().unwrap();
    let (mut tx, _) = server_keys(s);
    let mut rx = Keys::new(version, c.dangerous_extract_secrets().unwrap().rx).unwrap();
    // A content type of 0 is padding: nothing is left to say what it is.
    let mut rec = vec![0u8; tx.sealed_len(3)];
    tx.seal(0, &[0, 0, 0], &mut rec).unwrap();
    assert!(rx.clone().open_in_place(&mut rec).is_err());
    // A record whose outer type is not application_data.
    rec[0] = HANDSHAKE;
    assert!(rx.open_in_place(&mut rec).is_err());
}
