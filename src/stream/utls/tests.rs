//! `UTls` against itself and against tokio-rustls, over in-memory pipes.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, HandshakeKind, ProtocolVersion, RootCertStore, ServerConfig};
use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;

pub(crate) fn configs(
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> (Arc<ClientConfig>, Arc<ServerConfig>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert: CertificateDer<'static> = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    server.enable_secret_extraction = true;
    let mut roots = RootCertStore::empty();
    roots.add(cert).unwrap();
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.enable_secret_extraction = true;
    (Arc::new(client), Arc::new(server))
}

fn name() -> ServerName<'static> {
    ServerName::try_from("localhost").unwrap()
}

/// Both sides on `UTls`, over a pipe of `cap` bytes each way.
pub(crate) async fn pair(
    c: &Arc<ClientConfig>,
    s: &Arc<ServerConfig>,
    cap: usize,
) -> (ClientTls<DuplexStream>, ServerTls<DuplexStream>) {
    let (a, b) = duplex(cap);
    let (client, server) = tokio::join!(
        ClientTls::connect(c.clone(), name(), a),
        ServerTls::accept_with(s.clone(), b)
    );
    (client.unwrap(), server.unwrap())
}

pub(crate) fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[tokio::test]
async fn handshake_both_sides_and_data_both_ways() {
    for v in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let (c, s) = configs(&[v]);
        let (mut client, mut server) = pair(&c, &s, 64 * 1024).await;
        assert_eq!(
            client.get_ref().1.handshake_kind(),
            Some(HandshakeKind::Full)
        );
        assert_eq!(
            server.get_ref().1.handshake_kind(),
            Some(HandshakeKind::Full)
        );
        assert_eq!(client.get_ref().1.protocol_version(), Some(v.version));
        assert!(client.get_ref().1.negotiated_cipher_suite().is_some());
        assert_eq!(
            client.get_ref().1.peer_certificates().map(|c| c.len()),
            Some(1)
        );
        assert!(server.get_ref().1.peer_certificates().is_none());
        client.write_all(b"ping").await.unwrap();
        client.flush().await.unwrap();
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        server.write_all(b"pong").await.unwrap();
        server.flush().await.unwrap();
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
    }
}

#[tokio::test]
async fn close_notify_is_a_clean_eof_and_a_bare_close_is_unexpected_eof() {
    let (c, s) = configs(&[&rustls::version::TLS13]);
    let (mut client, mut server) = pair(&c, &s, 64 * 1024).await;
    server.write_all(b"last").await.unwrap();
    server.shutdown().await.unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"last");
    // Reading on after the end stays at the end.
    assert_eq!(client.read(&mut [0u8; 8]).await.unwrap(), 0);

    let (mut client, server) = pair(&c, &s, 64 * 1024).await;
    // The transport closes under TLS: no close_notify.
    let (mut io, _) = {
        let UTls { io, info, .. } = server;
        (io, info)
    };
    io.shutdown().await.unwrap();
    let e = client.read(&mut [0u8; 8]).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
}

/// Reads smaller than a record, and reads that end inside a record after
/// whole ones (the record stays with rustls or its rest is kept).
#[tokio::test]
async fn reads_of_any_size_get_every_byte_of_large_records() {
    let (c, s) = configs(&[&rustls::version::TLS13]);
    for size in [100, 20_000, 40_000] {
        let (mut client, mut server) = pair(&c, &s, 1 << 20).await;
        let data = pattern(300_000);
        server.write_all(&data[..1000]).await.unwrap();
        server.write_all(&data[1000..]).await.unwrap();
        server.shutdown().await.unwrap();
        let mut got = Vec::new();
        let mut small = vec![0u8; size];
        loop {
            let n = client.read(&mut small).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&small[..n]);
        }
        assert!(got == data, "reads of {size}");
    }
}

async fn send<W: AsyncWrite + Unpin>(mut w: W, d: Vec<u8>) {
    for chunk in d.chunks(300_000) {
        w.write_all(chunk).await.unwrap();
    }
    w.shutdown().await.unwrap();
}

async fn recv<R: AsyncRead + Unpin>(mut r: R) -> Vec<u8> {
    let mut got = Vec::new();
    r.read_to_end(&mut got).await.unwrap();
    got
}

#[tokio::test]
async fn large_writes_cross_a_small_pipe_both_ways_at_once() {
    for v in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let (c, s) = configs(&[v]);
        // The pipe holds far less than one write: the writer waits on it.
        let (client, server) = pair(&c, &s, 7000).await;
        let data = pattern(3 << 20);
        let (cr, cw) = tokio::io::split(client);
        let (sr, sw) = tokio::io::split(server);
        let (_, _, from_server, from_client) = tokio::join!(
            send(sw, data.clone()),
            send(cw, data.clone()),
            recv(cr),
            recv(sr),
        );
        assert!(from_server == data, "server to client");
        assert!(from_client == data, "client to server");
    }
}

/// TLS 1.3 tickets arrive after the handshake: reading processes them into
/// the client config's store, and the next connection resumes. TLS 1.2
/// resumes by session id.
#[tokio::test]
async fn tickets_read_after_the_handshake_resume_the_next_connection() {
    for v in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let (c, s) = configs(&[v]);
        let (mut client, mut server) = pair(&c, &s, 64 * 1024).await;
        server.write_all(b"x").await.unwrap();
        server.shutdown().await.unwrap();
        assert_eq!(recv(&mut client).await, b"x");
        let (client, server) = pair(&c, &s, 64 * 1024).await;
        assert_eq!(
            client.get_ref().1.handshake_kind(),
            Some(HandshakeKind::Resumed),
            "{v:?}"
        );
        assert_eq!(
            server.get_ref().1.handshake_kind(),
            Some(HandshakeKind::Resumed)
        );
    }
}

/// A connection dropped unread still hands its tickets to the store.
#[tokio::test]
async fn salvage_takes_tickets_without_waiting() {
    let (c, s) = configs(&[&rustls::version::TLS13]);
    let (mut client, server) = pair(&c, &s, 64 * 1024).await;
    // The server wrote its tickets during the handshake; give nothing else.
    assert!(client.salvage(64 * 1024, None) > 0);
    drop(server);
    let (client, _server) = pair(&c, &s, 64 * 1024).await;
    assert_eq!(
        client.get_ref().1.handshake_kind(),
        Some(HandshakeKind::Resumed)
    );
}

#[tokio::test]
async fn key_update_both_ways_keeps_the_stream_going() {
    let (c, s) = configs(&[&rustls::version::TLS13]);
    let (mut client, mut server) = pair(&c, &s, 1 << 20).await;
    for round in 0..3u8 {
        client.refresh_traffic_keys().unwrap();
        client.write_all(&[round; 20_000]).await.unwrap();
        client.flush().await.unwrap();
        let mut buf = vec![0u8; 20_000];
        server.read_exact(&mut buf).await.unwrap();
        assert!(buf.iter().all(|b| *b == round));
        // The server answered the update request; its data follows.
        server.refresh_traffic_keys().unwrap();
        server.write_all(&[round; 30_000]).await.unwrap();
        server.flush().await.unwrap();
        let mut buf = vec![0u8; 30_000];
        client.read_exact(&mut buf).await.unwrap();
        assert!(buf.iter().all(|b| *b == round));
    }
    client.shutdown().await.unwrap();
    assert_eq!(recv(&mut server).await, b"");
}

/// Against tokio-rustls on the other end, both ways round.
#[tokio::test]
async fn interoperates_with_tokio_rustls() {
    for v in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let (c, s) = configs(&[v]);
        let data = pattern(1 << 20);
        let (a, b) = duplex(16 * 1024);
        let (client, server) = tokio::join!(
            ClientTls::connect(c.clone(), name(), a),
            tokio_rustls::TlsAcceptor::from(s.clone()).accept(b)
        );
        let (client, server) = (client.unwrap(), server.unwrap());
        let (cr, cw) = tokio::io::split(client);
        let (sr, sw) = tokio::io::split(server);
        let (_, _, x, y) = tokio::join!(
            send(cw, data.clone()),
            send(sw, data.clone()),
            recv(sr),
            recv(cr)
        );
        assert!(x == data && y == data);

        let (a, b) = duplex(16 * 1024);
        let (client, server) = tokio::join!(
            tokio_rustls::TlsConnector::from(c.clone()).connect(name(), a),
            ServerTls::accept_with(s.clone(), b)
        );
        let (client, server) = (client.unwrap(), server.unwrap());
        let (cr, cw) = tokio::io::split(client);
        let (sr, sw) = tokio::io::split(server);
        let (_, _, x, y) = tokio::join!(
            send(cw, data.clone()),
            send(sw, data.clone()),
            recv(sr),
            recv(cr)
        );
        assert!(x == data && y == data);
    }
}

/// The ClientHello is read before the config is chosen, and kept for the
/// connection.
#[tokio::test]
async fn the_client_hello_is_seen_before_the_config_is_chosen() {
    let (c, s) = configs(&[&rustls::version::TLS13]);
    let (a, b) = duplex(64 * 1024);
    let server = async move {
        let start = accept(b).await.unwrap();
        assert_eq!(start.client_hello()[0], 0x16);
        start.into_stream(s).await.unwrap()
    };
    let (client, server) = tokio::join!(ClientTls::connect(c, name(), a), server);
    assert!(client.is_ok());
    assert_eq!(
        server.get_ref().1.protocol_version(),
        Some(ProtocolVersion::TLSv1_3)
    );
}

#[tokio::test]
async fn a_failed_handshake_is_invalid_data_with_the_rustls_error() {
    let (c, _) = configs(&[&rustls::version::TLS13]);
    // Another certificate than the client trusts.
    let (_, s) = configs(&[&rustls::version::TLS13]);
    let (a, b) = duplex(64 * 1024);
    let (client, server) = tokio::join!(
        ClientTls::connect(c, name(), a),
        ServerTls::accept_with(s, b)
    );
    let e = client.err().expect("untrusted certificate");
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    assert!(e
        .get_ref()
        .and_then(|i| i.downcast_ref::<rustls::Error>())
        .is_some());
    // The server heard the client's alert.
    let e = server.err().expect("alert");
    assert!(
        matches!(
            e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
            Some(rustls::Error::AlertReceived(_))
        ),
        "{e}"
    );
    // Not TLS at all.
    let (mut a, b) = duplex(1024);
    a.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let e = accept(b).await.err().expect("not TLS");
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
}

/// An endless source (`tokio::io::repeat`) whose bytes are never consumed
/// (no complete record): the incoming buffer grows to [`IN_MAX`] and no
/// further, then the read is refused as `InvalidData` — a peer cannot make a
/// data connection hold more than 256 KiB of TLS input.
#[tokio::test]
async fn incoming_buffer_stops_at_its_bound() {
    let mut src = tokio::io::repeat(0x17);
    let mut inb = InBuf::new();
    let mut total = 0;
    let err = loop {
        match poll_fn(|cx| inb.poll_fill(&mut src, cx)).await {
            Ok(n) => {
                assert!(n > 0);
                total += n;
                assert!(inb.buf.len() <= IN_MAX, "grew to {}", inb.buf.len());
                assert!(total <= IN_MAX, "took {total}");
            }
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    assert_eq!(total, IN_MAX);
}

/// The record layer after the handshake (`own`), as `Own` in the stream.
fn own_of<IO, C: Unbuffered>(s: &mut UTls<IO, C>) -> &mut own::Own<C::Data> {
    match &mut s.mode {
        Mode::Own(own) => own,
        _ => panic!("records not handed over after the handshake"),
    }
}

/// A KeyUpdate that asks for ours (rustls's `refresh_traffic_keys`) gets
/// it: our send keys move on, and the peer reads what follows.
#[tokio::test]
async fn a_key_update_request_from_rustls_is_answered() {
    let (c, s) = configs(&[&rustls::version::TLS13]);
    let (a, b) = duplex(1 << 20);
    let (client, server) = tokio::join!(
        tokio_rustls::TlsConnector::from(c.clone()).connect(name(), a),
        ServerTls::accept_with(s.clone(), b)
    );
    let (mut client, mut server) = (client.unwrap(), server.unwrap());
    server.write_all(b"before").await.unwrap();
    server.flush().await.unwrap();
    let mut buf = [0u8; 6];
    client.read_exact(&mut buf).await.unwrap();
    let sealed = own_of(&mut server).tx_seq();
    assert!(sealed > 0);
    client.get_mut().1.refresh_traffic_keys().unwrap();
    client.write_all(b"after").await.unwrap();
    client.flush().await.unwrap();
    let mut buf = [0u8; 5];
    server.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"after");
    // Our KeyUpdate went out under the old keys; the new ones start at 0.
    assert_eq!(own_of(&mut server).tx_seq(), 0);
    server.write_all(b"new keys").await.unwrap();
    server.flush().await.unwrap();
    let mut buf = [0u8; 8];
    client.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"new keys");
}

/// Before the cipher suite's confidentiality limit, a TLS 1.3 stream moves
/// its send keys on by itself (here the limit is lowered to 3 records).
#[tokio::test]
async fn send_keys_move_on_before_the_confidentiality_limit() {
    let (c, s) = configs(&[&rustls::version::TLS13]);
    let (a, b) = duplex(1 << 20);
    let (client, server) = tokio::join!(
        ClientTls::connect(c.clone(), name(), a),
        tokio_rustls::TlsAcceptor::from(s.clone()).accept(b)
    );
    let (mut client, mut server) = (client.unwrap(), server.unwrap());
    own_of(&mut client).set_tx_limit(3);
    let data = pattern(10 * 1000);
    for chunk in data.chunks(1000) {
        client.write_all(chunk).await.unwrap();
    }
    client.flush().await.unwrap();
    assert!(own_of(&mut client).tx_seq() <= 3);
    let mut got = vec![0u8; data.len()];
    server.read_exact(&mut got).await.unwrap();
    assert_eq!(got, data);
}

/// A record that does not open ends the connection: the reader gets
/// `InvalidData` and the peer `bad_record_mac`.
#[tokio::test]
async fn a_forged_record_is_bad_record_mac_for_both_ends() {
    // A record of the right size, and one shorter than its tag.
    let forgeries = [
        [&[23u8, 3, 3, 0, 40][..], &[0x42; 40]].concat(),
        vec![23, 3, 3, 0, 3, 1, 2, 3],
    ];
    for (v, forged) in [&rustls::version::TLS13, &rustls::version::TLS12]
        .into_iter()
        .flat_map(|v| forgeries.iter().map(move |f| (v, f)))
    {
        let (c, s) = configs(&[v]);
        let (a, b) = duplex(1 << 20);
        let (client, server) = tokio::join!(
            tokio_rustls::TlsConnector::from(c.clone()).connect(name(), a),
            ServerTls::accept_with(s.clone(), b)
        );
        let (mut client, mut server) = (client.unwrap(), server.unwrap());
        client.get_mut().0.write_all(forged).await.unwrap();
        let e = server.read(&mut [0u8; 16]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{v:?}");
        assert!(e.to_string().contains("decrypt"), "{v:?}: {e}");
        // Still an error on the next read, and no write goes through.
        assert!(server.read(&mut [0u8; 16]).await.is_err());
        assert!(server.write_all(b"x").await.is_err());
        let e = client.read(&mut [0u8; 16]).await.unwrap_err();
        assert!(e.to_string().contains("BadRecordMac"), "{v:?}: {e}");
    }
}
