//! The front door, before a session exists: the PROXY header (who the
//! client really is behind a balancer), the access rules, the failed-login
//! cool-down, the per-address connection rate and the session limits
//! (unauthenticated sessions per address included). A refused client gets a `421` reply and
//! a close (on implicit-TLS listeners just a close: a clear reply would be
//! garbage to a TLS client); an admitted one becomes an [`Admitted`]
//! connection that the session runs on.
//!
//! Runs in the connection's own task, never in the accept loop, so one slow
//! peer (a PROXY header that trickles in) cannot hold up accepting others. A
//! new admission rule goes into [`admit`], its decision into `policy`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tracing::warn;

use crate::config::{self, TlsMode};
use crate::control::Reply;
use crate::listener::ListenerCtx;
use crate::policy;
use crate::shared::{ConnGuard, Shared};

/// A connection past the front door.
pub struct Admitted {
    /// The accepted connection (the PROXY header, if any, already read).
    pub tcp: TcpStream,
    /// The client (from the PROXY header when behind a balancer).
    pub client: SocketAddr,
    /// Counts against the session limits until the session ends.
    pub conn: ConnGuard,
}

/// Why a connection was refused, for the session's closing log line.
#[derive(Debug)]
pub struct Refused(pub String);

/// Read the PROXY header if the listener expects one, then apply the
/// access rules, the failed-login cool-down and the session limits.
/// Records `client` (and `via`) in the current span.
pub async fn admit(
    mut tcp: TcpStream,
    peer: SocketAddr,
    ctx: &ListenerCtx,
    shared: &Arc<Shared>,
) -> Result<Admitted, Refused> {
    let span = tracing::Span::current();
    // Behind a load balancer the PROXY header names the real client,
    // which is then the client for policy, pinholes, logs and metrics.
    let client = match &ctx.cfg.proxy_protocol {
        None => peer,
        Some(pp) => {
            span.record("via", tracing::field::display(peer));
            match proxied_client(&mut tcp, peer, pp).await {
                Ok(client) => client,
                Err(why) => {
                    span.record("client", tracing::field::display(peer));
                    warn!(error = %why, reason = "proxy_protocol", "connection refused");
                    return Err(Refused(why));
                }
            }
        }
    };
    span.record("client", tracing::field::display(client));
    tracing::info!("accepted");
    match check(client, ctx, shared) {
        Ok(conn) => Ok(Admitted { tcp, client, conn }),
        Err((reply, why)) => {
            if ctx.cfg.tls.mode != TlsMode::Implicit {
                refuse(&tcp, &reply).await;
            }
            Err(Refused(why))
        }
    }
}

/// The client address from a PROXY header; only allowed sources may send one,
/// and from them a header is mandatory.
async fn proxied_client(
    tcp: &mut TcpStream,
    peer: SocketAddr,
    pp: &config::ProxyProtocol,
) -> Result<SocketAddr, String> {
    let ip = peer.ip().to_canonical();
    if !pp.from.iter().any(|n| n.contains(&ip)) {
        return Err(format!("{peer} is not an allowed PROXY protocol source"));
    }
    match crate::proxy::read_header(tcp, pp.timeout).await {
        // LOCAL/UNKNOWN: the balancer's own connection (health check).
        Ok(p) => Ok(p.source.unwrap_or(peer)),
        Err(e) => Err(e.to_string()),
    }
}

/// The admission rules, in order: access, connection rate, cool-down, limits.
/// The refusal is the reply for the client and the reason for the log.
fn check(
    client: SocketAddr,
    ctx: &ListenerCtx,
    shared: &Arc<Shared>,
) -> Result<ConnGuard, (Reply, String)> {
    let ip = client.ip();
    if let policy::AccessDecision::Deny { rule } =
        policy::check_access(&ctx.cfg.access, &ctx.global_access, ip)
    {
        // Which rule, as the config names it (not `Some(3)`).
        let local = ctx.cfg.access.len();
        let rule = match rule {
            Some(i) if i < local => format!("listener access[{i}]"),
            Some(i) => format!("access[{}]", i - local),
            None => "no allow rule matched".to_string(),
        };
        warn!(rule = %rule, reason = "access", "client refused by access policy");
        return Err((
            Reply::new(421, "Access denied for your address"),
            "refused by access policy".to_string(),
        ));
    }
    if !shared.connection_rate_allows(ip) {
        // Each TLS handshake costs ~1 ms of CPU: refuse before it starts.
        warn!(
            reason = "connection_rate",
            "client refused: too many new connections per second"
        );
        return Err((
            Reply::new(421, "Too many connections per second; try again later"),
            "limit connection_rate_per_ip".to_string(),
        ));
    }
    if shared.login_blocked(ip) {
        warn!(
            reason = "failed_logins",
            "client refused: cooling down after failed logins"
        );
        return Err((
            Reply::new(
                421,
                "Too many failed logins from your address; try again later",
            ),
            "failed-login cool-down".to_string(),
        ));
    }
    shared
        .admit(&ctx.cfg.name, ip, &ctx.global_limits, &ctx.cfg.limits)
        .map_err(|r| {
            warn!(
                limit = r.as_str(),
                reason = "limit",
                "client refused: session limit reached"
            );
            (
                Reply::new(421, "Too many connections; try again later"),
                format!("limit {}", r.as_str()),
            )
        })
}

/// Best effort, bounded: the refusal must not wait on a client that never reads.
async fn refuse(tcp: &TcpStream, reply: &Reply) {
    let bytes = reply.to_bytes();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = tcp.writable().await;
        let _ = tcp.try_write(&bytes);
    })
    .await;
}
