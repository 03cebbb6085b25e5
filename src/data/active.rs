//! Client active mode: the gateway connects out to the data port a client
//! named in `PORT`/`EPRT` (already checked against bounce rules by the
//! session), from the control connection's local address and optionally from
//! a configured source port range. The gateway is still the TLS *server* on
//! that connection (RFC 4217 §7) and, as for pinholes, may require the
//! handshake to resume the control session.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpSocket;

use crate::config::PortRange;
use crate::control::Direction;
use crate::metrics::{Handshake, Metrics, PinholeRefusal, Resumption, Side};
use crate::stream::{utls, ClientDataStream, HoldIo, MaybeTls};
use crate::tls;

use super::pinhole::DataTls;
use super::PinholeError;

/// Where and how to connect to an active-mode client.
pub(crate) struct ActiveSpec {
    pub target: SocketAddr,
    pub source_ip: IpAddr,
    pub source_ports: Option<PortRange>,
    pub tls: Option<DataTls>,
    /// The transfer's direction (a download's client reads: it gets fresh tickets).
    pub direction: Direction,
    pub limit: Duration,
    pub metrics: Arc<Metrics>,
}

pub(crate) async fn connect(spec: ActiveSpec) -> Result<ClientDataStream, PinholeError> {
    let tcp = match tokio::time::timeout(spec.limit, connect_tcp(&spec)).await {
        Ok(r) => r?,
        Err(_) => return Err(PinholeError::Expired(spec.limit)),
    };
    crate::net::tune(&tcp);
    match &spec.tls {
        None => Ok(MaybeTls::Plain(tcp)),
        Some(DataTls {
            acceptors,
            require_reuse,
        }) => {
            let hs =
                utls::ServerTls::accept_with(acceptors.data(spec.direction), HoldIo::pass(tcp));
            let t = match tokio::time::timeout(spec.limit, hs).await {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    spec.metrics.tls_handshake(
                        Side::Client,
                        "none",
                        Handshake::Failed,
                        Resumption::Full,
                    );
                    tls::client_auth::note_failed_handshake(&e, "data", &spec.metrics);
                    return Err(PinholeError::Tls(e));
                }
                Err(_) => return Err(PinholeError::Expired(spec.limit)),
            };
            let conn = t.get_ref().1;
            let resumed = tls::was_resumed(conn.handshake_kind());
            spec.metrics.tls_handshake(
                Side::Client,
                tls::version_name(conn.protocol_version()),
                Handshake::Ok,
                Resumption::from_resumed(resumed),
            );
            if *require_reuse && !resumed {
                tracing::warn!(target = %spec.target, reason = "no_reuse", "refused active data connection: TLS session not resumed");
                spec.metrics.pinhole_refused(PinholeRefusal::NoReuse);
                return Err(PinholeError::ReuseRequired);
            }
            if let Err(why) = acceptors.check_data_cert(conn.peer_certificates(), &spec.metrics) {
                return Err(PinholeError::Tls(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("client certificate refused: {}", why.as_str()),
                )));
            }
            Ok(MaybeTls::Tls(Box::new(t)))
        }
    }
}

async fn connect_tcp(spec: &ActiveSpec) -> Result<tokio::net::TcpStream, PinholeError> {
    let new_socket = || match spec.source_ip {
        IpAddr::V4(_) => TcpSocket::new_v4(),
        IpAddr::V6(_) => TcpSocket::new_v6(),
    };
    let Some(range) = spec.source_ports else {
        let socket = new_socket().map_err(PinholeError::Bind)?;
        socket
            .bind(SocketAddr::new(spec.source_ip, 0))
            .map_err(PinholeError::Bind)?;
        return socket
            .connect(spec.target)
            .await
            .map_err(PinholeError::Connect);
    };
    for port in range.first..=range.last {
        let socket = new_socket().map_err(PinholeError::Bind)?;
        let _ = socket.set_reuseaddr(true);
        if socket.bind(SocketAddr::new(spec.source_ip, port)).is_err() {
            continue;
        }
        match socket.connect(spec.target).await {
            Ok(s) => return Ok(s),
            // The 4-tuple may still be in TIME_WAIT from an earlier transfer.
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    || e.kind() == std::io::ErrorKind::AddrNotAvailable =>
            {
                continue
            }
            Err(e) => return Err(PinholeError::Connect(e)),
        }
    }
    Err(PinholeError::Exhausted(range))
}
