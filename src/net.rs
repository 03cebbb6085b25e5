//! Socket options applied to every connection the gateway holds.
//!
//! Long transfers leave the control connections idle for hours; NATs and
//! load balancers in between drop idle flows (e.g. 350 s on a cloud L4
//! balancer). TCP keepalive every minute keeps their state alive on both legs.

use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;

const KEEPALIVE_TIME: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);

/// `TCP_NODELAY` (FTP replies are small and latency-bound) and keepalive.
/// Failures are ignored: they only lose an optimisation.
pub(crate) fn tune(tcp: &TcpStream) {
    let _ = tcp.set_nodelay(true);
    let ka = TcpKeepalive::new()
        .with_time(KEEPALIVE_TIME)
        .with_interval(KEEPALIVE_INTERVAL);
    let _ = SockRef::from(tcp).set_tcp_keepalive(&ka);
}

/// Make the next close of this socket a reset (`SO_LINGER` 0): the peer then
/// sees an error instead of an orderly end of data.
pub(crate) fn abort(tcp: &TcpStream) {
    let _ = SockRef::from(tcp).set_linger(Some(Duration::ZERO));
}

/// Undo [`abort`]: closes end with a normal FIN again.
pub(crate) fn unabort(tcp: &TcpStream) {
    let _ = SockRef::from(tcp).set_linger(None);
}

/// For the client control connection: read TELNET "urgent" data (the Synch
/// that precedes `ABOR`, RFC 959 §4.1.3) inline, so its `IAC DM` bytes reach
/// the line parser instead of being dropped by the kernel mid-sequence.
pub(crate) fn urgent_inline(tcp: &TcpStream) {
    let _ = SockRef::from(tcp).set_out_of_band_inline(true);
}
