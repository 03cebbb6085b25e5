//! Tunnel families (DMZ mode, `src/tunnel/`): on the edge, connectors up,
//! streams open, bytes through the tunnel and refused connectors; on the
//! connector, connection attempts (reconnects), whether the edge is up and
//! refused edge requests.
//!
//! Label values are configured tunnel names, configured edge addresses (as
//! written in `connect[].edge`) and closed enums ([`TunnelDirection`],
//! [`Refusal`]).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{ok_label, Metrics};
use crate::tunnel::proto::Refusal;

/// Bytes into the edge from the connector (`in`) or out to it (`out`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TunnelDirection {
    /// From the connector into the edge.
    In,
    /// From the edge out to the connector.
    Out,
}

impl TunnelDirection {
    /// The `direction` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            TunnelDirection::In => "in",
            TunnelDirection::Out => "out",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TunnelLabels {
    tunnel: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BytesLabels {
    tunnel: String,
    direction: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EdgeLabels {
    edge: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ConnectLabels {
    edge: String,
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RefusedLabels {
    edge: String,
    reason: &'static str,
}

/// The tunnel area's family handles (the registry holds clones).
#[derive(Debug, Default)]
pub(super) struct Families {
    connectors: Family<TunnelLabels, Gauge>,
    streams: Family<TunnelLabels, Gauge>,
    bytes: Family<BytesLabels, Counter>,
    connectors_refused: Family<TunnelLabels, Counter>,
    connects: Family<ConnectLabels, Counter>,
    edge_up: Family<EdgeLabels, Gauge>,
    requests_refused: Family<RefusedLabels, Counter>,
}

impl Families {
    pub(super) fn register(r: &mut Registry) -> Families {
        let f = Families::default();
        r.register(
            "tunnel_connectors",
            "Edge: connectors connected to this tunnel now",
            f.connectors.clone(),
        );
        r.register(
            "tunnel_streams_open",
            "Edge: streams (backend connections) open over this tunnel now",
            f.streams.clone(),
        );
        r.register(
            "tunnel_bytes",
            "Edge: bytes through this tunnel, in (from the connector) and out",
            f.bytes.clone(),
        );
        r.register(
            "tunnel_connectors_refused",
            "Edge: connectors refused (tunnel handshake failed: untrusted or missing client certificate)",
            f.connectors_refused.clone(),
        );
        r.register(
            "tunnel_connects",
            "Connector: connection attempts to the edge, by result (reconnects included)",
            f.connects.clone(),
        );
        r.register(
            "tunnel_edge_up",
            "Connector: 1 while connected to this edge",
            f.edge_up.clone(),
        );
        r.register(
            "tunnel_requests_refused",
            "Connector: edge requests refused (not one of this connector's backends), by reason",
            f.requests_refused.clone(),
        );
        f
    }
}

fn tunnel(name: &str) -> TunnelLabels {
    TunnelLabels {
        tunnel: name.to_owned(),
    }
}

impl Metrics {
    /// `ftpsgate_tunnel_connectors{tunnel}`.
    pub fn tunnel_connectors(&self, name: &str, n: usize) {
        self.tunnel
            .connectors
            .get_or_create(&tunnel(name))
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// `ftpsgate_tunnel_streams_open{tunnel}` up by one.
    pub fn tunnel_stream_opened(&self, name: &str) {
        self.tunnel.streams.get_or_create(&tunnel(name)).inc();
    }

    /// `ftpsgate_tunnel_streams_open{tunnel}` down by one.
    pub fn tunnel_stream_closed(&self, name: &str) {
        self.tunnel.streams.get_or_create(&tunnel(name)).dec();
    }

    /// The `ftpsgate_tunnel_bytes_total{tunnel, direction}` counter itself,
    /// for a stream to add to without a label lookup per read or write.
    pub fn tunnel_bytes_counter(&self, name: &str, direction: TunnelDirection) -> Counter {
        self.tunnel
            .bytes
            .get_or_create(&BytesLabels {
                tunnel: name.to_owned(),
                direction: direction.as_str(),
            })
            .clone()
    }

    /// `ftpsgate_tunnel_bytes_total{tunnel, direction}`.
    pub fn tunnel_bytes(&self, name: &str, direction: TunnelDirection, n: u64) {
        self.tunnel
            .bytes
            .get_or_create(&BytesLabels {
                tunnel: name.to_owned(),
                direction: direction.as_str(),
            })
            .inc_by(n);
    }

    /// `ftpsgate_tunnel_connectors_refused_total{tunnel}`.
    pub fn tunnel_connector_refused(&self, name: &str) {
        self.tunnel
            .connectors_refused
            .get_or_create(&tunnel(name))
            .inc();
    }

    /// `ftpsgate_tunnel_connects_total{edge, result}`.
    pub fn tunnel_connect(&self, edge: &str, ok: bool) {
        self.tunnel
            .connects
            .get_or_create(&ConnectLabels {
                edge: edge.to_owned(),
                result: ok_label(ok),
            })
            .inc();
    }

    /// `ftpsgate_tunnel_edge_up{edge}`.
    pub fn tunnel_edge_up(&self, edge: &str, up: bool) {
        self.tunnel
            .edge_up
            .get_or_create(&EdgeLabels {
                edge: edge.to_owned(),
            })
            .set(i64::from(up));
    }

    /// `ftpsgate_tunnel_requests_refused_total{edge, reason}`.
    pub fn tunnel_request_refused(&self, edge: &str, reason: Refusal) {
        self.tunnel
            .requests_refused
            .get_or_create(&RefusedLabels {
                edge: edge.to_owned(),
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
    fn tunnel_families_record() {
        let m = Metrics::new();
        m.tunnel_connectors("lan", 2);
        m.tunnel_stream_opened("lan");
        m.tunnel_stream_opened("lan");
        m.tunnel_stream_closed("lan");
        m.tunnel_bytes("lan", TunnelDirection::In, 10);
        m.tunnel_connector_refused("lan");
        m.tunnel_connect("edge:4433", true);
        m.tunnel_edge_up("edge:4433", true);
        m.tunnel_request_refused("edge:4433", Refusal::ForeignAddress);
        let t = m.encode();
        for (series, v) in [
            ("ftpsgate_tunnel_connectors{tunnel=\"lan\"}", 2.0),
            ("ftpsgate_tunnel_streams_open{tunnel=\"lan\"}", 1.0),
            ("ftpsgate_tunnel_bytes_total{tunnel=\"lan\",direction=\"in\"}", 10.0),
            ("ftpsgate_tunnel_connectors_refused_total{tunnel=\"lan\"}", 1.0),
            ("ftpsgate_tunnel_connects_total{edge=\"edge:4433\",result=\"ok\"}", 1.0),
            ("ftpsgate_tunnel_edge_up{edge=\"edge:4433\"}", 1.0),
            (
                "ftpsgate_tunnel_requests_refused_total{edge=\"edge:4433\",reason=\"foreign_address\"}",
                1.0,
            ),
        ] {
            assert_eq!(sample(&t, series), Some(v), "{series} in {t}");
        }
    }
}
