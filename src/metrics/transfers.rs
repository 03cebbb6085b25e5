//! Transfer families: transfers finished and their duration, data bytes per
//! leg, passive pinholes (open, opened, used, expired) and refused data
//! connections.
//!
//! Transfers are recorded by the session's `Env` when the machine reports one
//! finished; pinholes by `data/` (open, close, refusals) and the machine
//! (`PORT` bounce). The session's [`TransferResult`] and the control
//! dialogue's [`Direction`] are mapped to labels here.
//!
//! Passive-port usage per listener: the gateway sets each range's size when
//! it configures a listener; a pinhole holds a [`PortHeld`] while its port is
//! bound.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::{Metrics, Side};
use crate::control::Direction;
use crate::session::outcome::TransferResult;

/// Why a data connection or pinhole was refused (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PinholeRefusal {
    /// Connection from an address other than the control client's (RFC 2577).
    Stealing,
    /// `PORT`/`EPRT` toward a foreign address or a port < 1024.
    Bounce,
    /// No free port in the passive range.
    Exhausted,
    /// Data TLS handshake did not resume the control session.
    NoReuse,
    /// A same-address connection whose data TLS handshake failed.
    Handshake,
    /// A same-address connection that sent no TLS handshake in time.
    Silent,
    /// The client address or user already holds its share of the range.
    Share,
}

impl PinholeRefusal {
    /// Every reason, for pre-creating the series at 0 (alerts on `rate()` need them).
    pub const ALL: [PinholeRefusal; 7] = [
        PinholeRefusal::Stealing,
        PinholeRefusal::Bounce,
        PinholeRefusal::Exhausted,
        PinholeRefusal::NoReuse,
        PinholeRefusal::Handshake,
        PinholeRefusal::Silent,
        PinholeRefusal::Share,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            PinholeRefusal::Stealing => "stealing",
            PinholeRefusal::Bounce => "bounce",
            PinholeRefusal::Exhausted => "exhausted",
            PinholeRefusal::NoReuse => "no_reuse",
            PinholeRefusal::Handshake => "handshake_failed",
            PinholeRefusal::Silent => "silent",
            PinholeRefusal::Share => "share",
        }
    }
}

/// The `direction` label value.
fn direction_label(direction: Direction) -> &'static str {
    match direction {
        Direction::Download => "download",
        Direction::Upload => "upload",
    }
}

/// The `result` label value of a finished transfer (logs use the same word).
pub fn result_label(result: TransferResult) -> &'static str {
    match result {
        TransferResult::Ok => "ok",
        TransferResult::Failed => "failed",
        TransferResult::Aborted => "aborted",
        TransferResult::Refused => "refused",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TransferLabels {
    listener: String,
    direction: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DirLabels {
    direction: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BytesLabels {
    side: &'static str,
    direction: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ListenerLabels {
    listener: String,
}

/// One bound passive port of a listener: counted in
/// `ftpsgate_passive_ports_in_use` from creation until dropped.
#[derive(Debug)]
pub struct PortHeld(Gauge);

impl Drop for PortHeld {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Transfers take from milliseconds (a 1 KiB file on a LAN) to hours.
fn transfer_histogram() -> Histogram {
    Histogram::new([
        0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
    ])
}

/// The transfer area's family handles (the registry holds clones).
#[derive(Debug)]
pub(super) struct Families {
    transfers: Family<TransferLabels, Counter>,
    duration: Family<DirLabels, Histogram, fn() -> Histogram>,
    data_bytes: Family<BytesLabels, Counter>,
    pinholes_open: Gauge,
    pinholes_opened: Counter,
    pinholes_used: Counter,
    pinholes_expired: Counter,
    pinhole_refusals: Family<ReasonLabels, Counter>,
    passive_in_use: Family<ListenerLabels, Gauge>,
    passive_size: Family<ListenerLabels, Gauge>,
}

impl Families {
    pub(super) fn register(r: &mut Registry) -> Families {
        let f = Families {
            transfers: Family::default(),
            duration: Family::new_with_constructor(transfer_histogram),
            data_bytes: Family::default(),
            pinholes_open: Gauge::default(),
            pinholes_opened: Counter::default(),
            pinholes_used: Counter::default(),
            pinholes_expired: Counter::default(),
            pinhole_refusals: Family::default(),
            passive_in_use: Family::default(),
            passive_size: Family::default(),
        };
        r.register(
            "transfers",
            "Data transfers finished, by listener, direction and result",
            f.transfers.clone(),
        );
        r.register(
            "transfer_duration_seconds",
            "Duration of finished data transfers",
            f.duration.clone(),
        );
        r.register(
            "data_bytes",
            "Data bytes relayed, by side (client/backend leg) and direction",
            f.data_bytes.clone(),
        );
        r.register(
            "pinholes_open",
            "Passive data pinholes currently open",
            f.pinholes_open.clone(),
        );
        r.register(
            "pinholes_opened",
            "Passive data pinholes opened",
            f.pinholes_opened.clone(),
        );
        r.register(
            "pinholes_used",
            "Pinholes closed after serving their one data connection",
            f.pinholes_used.clone(),
        );
        r.register(
            "pinholes_expired",
            "Pinholes closed unused (timeout or session end)",
            f.pinholes_expired.clone(),
        );
        r.register(
            "pinhole_refusals",
            "Data connections or pinholes refused, by reason",
            f.pinhole_refusals.clone(),
        );
        r.register(
            "passive_ports_in_use",
            "Ports of the listener's passive range bound by a pinhole now",
            f.passive_in_use.clone(),
        );
        r.register(
            "passive_ports",
            "Size of the listener's passive port range",
            f.passive_size.clone(),
        );
        // Series that alerts use with rate() exist from the start, at 0.
        for reason in PinholeRefusal::ALL {
            drop(f.pinhole_refusals.get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            }));
        }
        f
    }
}

impl Metrics {
    /// `ftpsgate_transfers_total{listener,direction,result}`,
    /// `ftpsgate_transfer_duration_seconds{direction}` (histogram),
    /// `ftpsgate_data_bytes_total{side,direction}` for both sides.
    pub fn transfer_finished(
        &self,
        listener: &str,
        dir: Direction,
        result: TransferResult,
        client_bytes: u64,
        backend_bytes: u64,
        secs: f64,
    ) {
        let t = &self.transfers;
        let direction = direction_label(dir);
        t.transfers
            .get_or_create(&TransferLabels {
                listener: listener.to_owned(),
                direction,
                result: result_label(result),
            })
            .inc();
        t.duration
            .get_or_create(&DirLabels { direction })
            .observe(secs.max(0.0));
        for (side, bytes) in [(Side::Client, client_bytes), (Side::Backend, backend_bytes)] {
            t.data_bytes
                .get_or_create(&BytesLabels {
                    side: side.as_str(),
                    direction,
                })
                .inc_by(bytes);
        }
    }

    /// `ftpsgate_passive_ports{listener}` = `size`; `..._in_use` created at 0.
    pub fn passive_range(&self, listener: &str, size: usize) {
        let labels = ListenerLabels {
            listener: listener.to_owned(),
        };
        self.transfers
            .passive_size
            .get_or_create(&labels)
            .set(i64::try_from(size).unwrap_or(i64::MAX));
        drop(self.transfers.passive_in_use.get_or_create(&labels));
    }

    /// `ftpsgate_passive_ports_in_use{listener}` +1 until the guard is dropped.
    pub fn passive_port_held(&self, listener: &str) -> PortHeld {
        let g = self
            .transfers
            .passive_in_use
            .get_or_create(&ListenerLabels {
                listener: listener.to_owned(),
            })
            .clone();
        g.inc();
        PortHeld(g)
    }

    /// `ftpsgate_pinholes_open` +1, `ftpsgate_pinholes_opened_total` +1.
    pub fn pinhole_opened(&self) {
        self.transfers.pinholes_open.inc();
        self.transfers.pinholes_opened.inc();
    }

    /// `ftpsgate_pinholes_open` -1, and `ftpsgate_pinholes_used_total` or
    /// `ftpsgate_pinholes_expired_total` +1.
    pub fn pinhole_closed(&self, used: bool) {
        self.transfers.pinholes_open.dec();
        if used {
            self.transfers.pinholes_used.inc();
        } else {
            self.transfers.pinholes_expired.inc();
        }
    }

    /// `ftpsgate_pinhole_refusals_total{reason}`.
    pub fn pinhole_refused(&self, reason: PinholeRefusal) {
        self.transfers
            .pinhole_refusals
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::super::sample;
    use super::*;

    #[test]
    fn transfer_series_count_both_legs_and_every_refusal_reason() {
        let m = Metrics::new();
        m.transfer_finished(
            "edge",
            Direction::Upload,
            TransferResult::Ok,
            1024,
            1000,
            0.3,
        );
        m.pinhole_refused(PinholeRefusal::NoReuse);
        let text = m.encode();
        for (series, value) in [
            (
                "ftpsgate_transfers_total{listener=\"edge\",direction=\"upload\",result=\"ok\"}",
                1.0,
            ),
            (
                "ftpsgate_data_bytes_total{side=\"client\",direction=\"upload\"}",
                1024.0,
            ),
            (
                "ftpsgate_data_bytes_total{side=\"backend\",direction=\"upload\"}",
                1000.0,
            ),
            (
                "ftpsgate_transfer_duration_seconds_count{direction=\"upload\"}",
                1.0,
            ),
            (
                "ftpsgate_transfer_duration_seconds_bucket{direction=\"upload\",le=\"0.5\"}",
                1.0,
            ),
            ("ftpsgate_pinhole_refusals_total{reason=\"no_reuse\"}", 1.0),
            ("ftpsgate_pinhole_refusals_total{reason=\"stealing\"}", 0.0),
        ] {
            assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
        }
    }

    #[test]
    fn pinholes_open_follows_opened_and_closed() {
        let m = Metrics::new();
        m.pinhole_opened();
        m.pinhole_opened();
        m.pinhole_closed(true);
        let text = m.encode();
        assert_eq!(sample(&text, "ftpsgate_pinholes_open"), Some(1.0));
        assert_eq!(sample(&text, "ftpsgate_pinholes_opened_total"), Some(2.0));
        assert_eq!(sample(&text, "ftpsgate_pinholes_used_total"), Some(1.0));
        assert_eq!(sample(&text, "ftpsgate_pinholes_expired_total"), Some(0.0));
    }

    #[test]
    fn passive_ports_in_use_follow_the_guards() {
        let m = Metrics::new();
        m.passive_range("edge", 100);
        let a = m.passive_port_held("edge");
        let b = m.passive_port_held("edge");
        let text = m.encode();
        assert_eq!(
            sample(&text, "ftpsgate_passive_ports{listener=\"edge\"}"),
            Some(100.0)
        );
        assert_eq!(
            sample(&text, "ftpsgate_passive_ports_in_use{listener=\"edge\"}"),
            Some(2.0)
        );
        drop((a, b));
        assert_eq!(
            sample(
                &m.encode(),
                "ftpsgate_passive_ports_in_use{listener=\"edge\"}"
            ),
            Some(0.0)
        );
    }
}
