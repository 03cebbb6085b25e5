//! `listeners[]`: name, bind, backend, `passive` (ports, bind, `advertise` rules,
//! `nftables`), `active`, `proxy_protocol`, and the cross-listener check that no
//! two listeners (or pinhole ranges) would compete for the same port.
//!
//! A new listener key: its raw field in `raw.rs`, its typed field in `typed.rs`,
//! and its conversion in `Builder::listener` (or a helper here). TLS keys of a
//! listener go to `tls.rs`, its `access`/`routes` to `routes.rs`, its `limits` to
//! `limits.rs`.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use super::values::{
    parse_advertise, parse_bind, parse_bool, parse_ip, parse_network, parse_port_share,
};
use super::{Builder, Reported};
use crate::config::duration;
use crate::config::raw::{
    RawActive, RawAdvertise, RawListener, RawNftables, RawPassive, RawProxyProtocol,
};
use crate::config::typed::{
    Active, AdvertiseRule, Listener, Nftables, Passive, PortRange, ProxyProtocol,
};

impl<'a> Builder<'a> {
    pub(super) fn listener(
        &mut self,
        p: &str,
        raw: &RawListener,
        backends: &HashSet<&str>,
        names: &mut HashMap<String, Option<&'a str>>,
    ) -> Result<Listener, Reported> {
        let name = self.unique_name(&format!("{p}.name"), raw.name.as_deref(), "listener", names);
        let bind = self.required(&format!("{p}.bind"), raw.bind.as_deref(), parse_bind);
        let tls = self.listener_tls(&format!("{p}.tls"), raw.tls.as_ref());
        let passive = self.passive(
            &format!("{p}.passive"),
            raw.passive.as_ref(),
            bind.map(|b| b.ip()),
        );
        let active = self.active(&format!("{p}.active"), raw.active.as_ref());
        let proxy_protocol = match raw.proxy_protocol.as_ref() {
            None => Ok(None),
            Some(pp) => self
                .proxy_protocol(&format!("{p}.proxy_protocol"), pp)
                .map(Some),
        };
        let backend = self.required(&format!("{p}.backend"), raw.backend.as_deref(), |s| {
            if backends.contains(s) {
                Ok(s.to_owned())
            } else {
                Err(format!("backend \"{s}\" is not defined"))
            }
        });
        let access = self.access(&format!("{p}.access"), raw.access.as_deref());
        let limits = self.listener_limits(&format!("{p}.limits"), raw.limits.as_ref());
        let user_at_backend = self.optional(
            &format!("{p}.user_at_backend"),
            raw.user_at_backend.as_deref(),
            parse_bool,
        );
        let routes = self.routes(&format!("{p}.routes"), raw.routes.as_deref(), backends);
        Ok(Listener {
            name: name?,
            bind: bind?,
            tls: tls?,
            passive: passive?,
            active: active?,
            backend: backend?,
            access: access?,
            limits: limits?,
            routes: routes?,
            user_at_backend: user_at_backend?.unwrap_or(false),
            proxy_protocol: proxy_protocol?,
        })
    }

    /// `proxy_protocol`: `from` is required and non-empty (accepting headers
    /// from anyone would let any client choose its own address).
    pub(super) fn proxy_protocol(
        &mut self,
        p: &str,
        raw: &RawProxyProtocol,
    ) -> Result<ProxyProtocol, Reported> {
        let timeout = self
            .optional(
                &format!("{p}.timeout"),
                raw.timeout.as_deref(),
                duration::parse,
            )
            .map(|t| t.unwrap_or(Duration::from_secs(5)));
        let from = match &raw.from {
            None => {
                self.error(
                    &format!("{p}.from"),
                    "is required (the load balancers allowed to send PROXY headers)",
                );
                Err(Reported)
            }
            Some(list) if list.is_empty() => {
                self.error(&format!("{p}.from"), "must list at least one network");
                Err(Reported)
            }
            Some(list) => list
                .iter()
                .enumerate()
                .map(|(j, s)| self.required(&format!("{p}.from[{j}]"), Some(s), parse_network))
                .collect::<Vec<_>>()
                .into_iter()
                .collect::<Result<Vec<_>, _>>(),
        };
        Ok(ProxyProtocol {
            from: from?,
            timeout: timeout?,
        })
    }

    /// `passive.nftables`.
    pub(super) fn nftables(&mut self, p: &str, raw: &RawNftables) -> Result<Nftables, Reported> {
        let name = |s: &str| -> Result<String, String> {
            if !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == ' ')
            {
                Ok(s.to_owned())
            } else {
                Err(format!("\"{s}\" is not an nftables name"))
            }
        };
        let table = self
            .optional(&format!("{p}.table"), raw.table.as_deref(), name)
            .map(|t| t.unwrap_or_else(|| "inet ftpsgate".to_owned()));
        let set = self
            .optional(&format!("{p}.set"), raw.set.as_deref(), name)
            .map(|t| t.unwrap_or_else(|| "pinholes".to_owned()));
        let set6 = self.optional(&format!("{p}.set6"), raw.set6.as_deref(), name);
        let fail = self.optional(
            &format!("{p}.on_error"),
            raw.on_error.as_deref(),
            |s| match s {
                "fail" => Ok(true),
                "warn" => Ok(false),
                _ => Err(format!("\"{s}\" is not fail or warn")),
            },
        );
        Ok(Nftables {
            table: table?,
            set: set?,
            set6: set6?,
            fail_on_error: fail?.unwrap_or(true),
        })
    }

    /// `active`: both keys optional.
    pub(super) fn active(&mut self, p: &str, raw: Option<&RawActive>) -> Result<Active, Reported> {
        let Some(raw) = raw else {
            return Ok(Active::default());
        };
        let enabled = self.optional(&format!("{p}.enabled"), raw.enabled.as_deref(), parse_bool);
        let ports = self.optional(&format!("{p}.ports"), raw.ports.as_deref(), |s| {
            s.parse::<PortRange>().map_err(|e| e.to_string())
        });
        Ok(Active {
            enabled: enabled?.unwrap_or(true),
            ports: ports?,
        })
    }

    /// `passive.advertise`: one address, or rules `{ networks, address, ports }`
    /// where only the last rule may leave out `networks` (it would shadow the
    /// rest) and an advertised range has the size of the bound range.
    pub(super) fn advertise(
        &mut self,
        p: &str,
        raw: Option<&RawAdvertise>,
        bound: Option<PortRange>,
    ) -> Result<Vec<AdvertiseRule>, Reported> {
        match raw {
            None => Ok(Vec::new()),
            Some(RawAdvertise::One(s)) => {
                let address = self.required(p, Some(s), parse_advertise)?;
                Ok(vec![AdvertiseRule {
                    networks: Vec::new(),
                    address,
                    ports: None,
                }])
            }
            Some(RawAdvertise::Rules(rules)) => {
                let mut out = Vec::new();
                let mut failed = false;
                for (i, r) in rules.iter().enumerate() {
                    let rp = format!("{p}[{i}]");
                    let mut networks = Vec::new();
                    for (j, n) in r.networks.iter().flatten().enumerate() {
                        match n.parse::<ipnet::IpNet>() {
                            Ok(net) => networks.push(net.trunc()),
                            Err(_) => {
                                self.error(
                                    &format!("{rp}.networks[{j}]"),
                                    format!("\"{n}\" is not a CIDR network"),
                                );
                                failed = true;
                            }
                        }
                    }
                    if r.networks.is_none() && i + 1 != rules.len() {
                        self.error(
                            &format!("{rp}.networks"),
                            "only the last rule may leave out networks (it matches every client)",
                        );
                        failed = true;
                    }
                    let address = self.required(
                        &format!("{rp}.address"),
                        r.address.as_deref(),
                        parse_advertise,
                    );
                    let ports = self.optional(&format!("{rp}.ports"), r.ports.as_deref(), |s| {
                        let range = s.parse::<PortRange>().map_err(|e| e.to_string())?;
                        match bound {
                            Some(b) if b.len() != range.len() => Err(format!(
                                "{range} has {} ports but passive.ports {b} has {}; a port forward maps them one to one",
                                range.len(),
                                b.len()
                            )),
                            _ => Ok(range),
                        }
                    });
                    match (address, ports) {
                        (Ok(address), Ok(ports)) => out.push(AdvertiseRule {
                            networks,
                            address,
                            ports,
                        }),
                        _ => failed = true,
                    }
                }
                if failed {
                    Err(Reported)
                } else {
                    Ok(out)
                }
            }
        }
    }

    pub(super) fn passive(
        &mut self,
        p: &str,
        raw: Option<&RawPassive>,
        control_ip: Result<IpAddr, Reported>,
    ) -> Result<Passive, Reported> {
        let empty = RawPassive::default();
        let raw = raw.unwrap_or(&empty);
        let ports = self.required(&format!("{p}.ports"), raw.ports.as_deref(), |s| {
            s.parse::<PortRange>().map_err(|e| e.to_string())
        });
        let bind = self.optional(&format!("{p}.bind"), raw.bind.as_deref(), parse_ip);
        let bound = ports.as_ref().ok().copied();
        let advertise = self.advertise(&format!("{p}.advertise"), raw.advertise.as_ref(), bound);
        let nftables = match raw.nftables.as_ref() {
            None => Ok(None),
            Some(n) => self.nftables(&format!("{p}.nftables"), n).map(Some),
        };
        let share = self.optional(
            &format!("{p}.max_per_client"),
            raw.max_per_client.as_deref(),
            parse_port_share,
        );
        let bind = match bind? {
            Some(ip) => ip,
            // The control bind's error, if any, is already reported.
            None => control_ip?,
        };
        Ok(Passive {
            ports: ports?,
            bind,
            advertise: advertise?,
            nftables: nftables?,
            max_per_client: share?.unwrap_or_default(),
        })
    }

    /// Conflicts between listeners that would make a bind fail at runtime, possibly
    /// only for some transfers: same control address, overlapping pinhole ranges, or
    /// a pinhole range covering a control port, on addresses that share ports.
    /// Each listener comes with its key path (`listeners[0]`, or file-prefixed).
    pub(super) fn check_listener_conflicts(
        &mut self,
        listeners: &[(String, Result<Listener, Reported>)],
    ) {
        let ok: Vec<(&str, &Listener)> = listeners
            .iter()
            .filter_map(|(p, l)| l.as_ref().ok().map(|l| (p.as_str(), l)))
            .collect();
        for (n, &(j, lj)) in ok.iter().enumerate() {
            // Port 0 asks the OS for a fresh port each time, so it never collides.
            if lj.bind.port() != 0 {
                if let Some(&(i, _)) = ok[..n].iter().find(|(_, li)| li.bind == lj.bind) {
                    self.error(
                        &format!("{j}.bind"),
                        format!("{} is already used by {i}", lj.bind),
                    );
                }
            }
            for &(i, li) in &ok[..n] {
                if shares_ports(li.passive.bind, lj.passive.bind)
                    && li.passive.ports.overlaps(&lj.passive.ports)
                {
                    self.error(
                        &format!("{j}.passive.ports"),
                        format!("{} overlaps {i}.passive.ports", lj.passive.ports),
                    );
                }
            }
            for &(i, li) in &ok {
                if shares_ports(li.bind.ip(), lj.passive.bind)
                    && lj.passive.ports.contains(li.bind.port())
                {
                    self.error(
                        &format!("{j}.passive.ports"),
                        format!(
                            "{} contains the control port of {i}.bind ({})",
                            lj.passive.ports, li.bind
                        ),
                    );
                }
            }
        }
    }
}

/// Whether sockets bound to `a` and `b` compete for the same ports. On Linux a
/// wildcard bind conflicts with every address of its family, and `::` (dual-stack
/// by default) with IPv4 addresses as well.
fn shares_ports(a: IpAddr, b: IpAddr) -> bool {
    let wildcard_covers = |w: IpAddr, other: IpAddr| {
        w.is_unspecified() && (w.is_ipv6() || w.is_ipv4() == other.is_ipv4())
    };
    a == b || wildcard_covers(a, b) || wildcard_covers(b, a)
}
