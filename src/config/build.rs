//! Validating conversion from [`super::raw`] to [`super::typed`].
//!
//! Every field is converted even after an earlier one failed, so one run reports
//! every problem, each under its YAML key path (`listeners[1].passive.ports`). A
//! conversion that failed has already recorded its error and yields [`Reported`];
//! the typed value is assembled only from parts that all succeeded.
//!
//! I/O is limited to `metadata` on the files the config names (`cert`, `key`, `ca`):
//! reading and parsing them is left to `tls/`, which runs right after, before any
//! socket is bound.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::duration;
use super::include::{Part, Tree};
use super::raw::{
    RawAccessRule, RawActive, RawAdvertise, RawBackend, RawBackendTls, RawCommands,
    RawFailedLogins, RawHealthCheck, RawLimits, RawListener, RawListenerLimits, RawListenerTls,
    RawMetrics, RawNftables, RawPassive, RawPins, RawProxyProtocol, RawReload, RawRoute,
    RawShutdown, RawSniCert, RawTimeouts, RawTransferLog,
};
use super::typed::{
    AccessRule, Action, Active, AdvertiseRule, Backend, BackendTls, BackendVerify, Balance,
    CommandPolicy, Config, DataMode, DataProtection, FailedLogins, HealthCheck, Limits, Listener,
    ListenerLimits, ListenerTls, MetricsConfig, Nftables, Passive, PortRange, PortShare,
    ProxyProtocol, ProxyVersion, Reload, Route, SniCert, Timeouts, TlsMode, TlsVersion,
    TransferLogConfig, TransferLogFormat,
};
use super::{ConfigError, ConfigErrors};

/// Default of `shutdown.grace`.
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Builds the typed [`Config`] from every gathered file, or returns every error found.
pub(crate) fn build(tree: Tree) -> Result<Config, ConfigErrors> {
    let Tree {
        top: raw,
        parts,
        sources,
    } = tree;
    let mut b = Builder {
        base_dir: &parts[0].base_dir,
        parts: &parts,
        file: None,
        errors: Vec::new(),
    };

    // References are checked against the names as written, so a backend with some
    // other error still counts as defined and does not cascade into listener errors.
    let backend_names: HashSet<&str> = parts
        .iter()
        .flat_map(|p| &p.backends)
        .filter_map(|r| r.name.as_deref())
        .collect();

    if parts.iter().all(|p| p.listeners.is_empty()) {
        b.error("listeners", "at least one listener is required");
    }
    // Each entry with the key path it is reported under (file-prefixed when included).
    let mut names = HashMap::new();
    let mut listeners: Vec<(String, Result<Listener, Reported>)> = Vec::new();
    let mut access = Vec::new();
    for part in &parts {
        b.enter(part);
        for (i, r) in part.listeners.iter().enumerate() {
            let p = format!("{}listeners[{i}]", b.prefix());
            let l = b.listener(&p, r, &backend_names, &mut names);
            listeners.push((p, l));
        }
        let p = format!("{}access", b.prefix());
        access.push(b.access(&p, Some(&part.access)));
    }
    b.check_listener_conflicts(&listeners);

    let mut names = HashMap::new();
    let mut backends = Vec::new();
    for part in &parts {
        b.enter(part);
        for (i, r) in part.backends.iter().enumerate() {
            let p = format!("{}backends[{i}]", b.prefix());
            backends.push(b.backend(&p, r, &mut names));
        }
    }

    // Sections below exist in the top file only (`include` refuses them elsewhere).
    b.enter(&parts[0]);
    let timeouts = b.timeouts(raw.timeouts.as_ref());
    let metrics = match raw.metrics.as_ref() {
        None => Ok(None),
        Some(m) => b.metrics(m, &listeners).map(Some),
    };
    let transfer_log = match raw.transfer_log.as_ref() {
        None => Ok(None),
        Some(t) => b.transfer_log(t).map(Some),
    };
    let limits = b.limits(raw.limits.as_ref());
    let shutdown_grace = b.shutdown(raw.shutdown.as_ref());
    let reload = b.reload(raw.reload.as_ref());

    let assembled = (|| {
        Ok(Config {
            listeners: listeners
                .into_iter()
                .map(|(_, l)| l)
                .collect::<Result<_, _>>()?,
            backends: backends.into_iter().collect::<Result<_, _>>()?,
            timeouts: timeouts?,
            metrics: metrics?,
            transfer_log: transfer_log?,
            access: access
                .into_iter()
                .collect::<Result<Vec<Vec<_>>, _>>()?
                .into_iter()
                .flatten()
                .collect(),
            limits: limits?,
            shutdown_grace: shutdown_grace?,
            reload: reload?,
            sources,
        })
    })();
    match assembled {
        Ok(config) if b.errors.is_empty() => Ok(config),
        Ok(_) => Err(ConfigErrors(b.errors)),
        Err(Reported) => {
            // Every `Reported` is created right after recording an error; this arm
            // only guards that invariant against a future edit.
            if b.errors.is_empty() {
                b.error(
                    "<config>",
                    "internal error: a value was refused without a message",
                );
            }
            Err(ConfigErrors(b.errors))
        }
    }
}

/// Marker: this value failed and its error is already in `Builder::errors`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reported;

/// An optional key: `Ok(None)` when absent.
type Parsed<T> = Result<Option<T>, Reported>;

/// Collects errors while converting; `base_dir` resolves relative file paths of the
/// file being converted (`file`, `None` for the top file).
struct Builder<'a> {
    base_dir: &'a Path,
    /// Every file, for the line numbers of errors.
    parts: &'a [Part],
    file: Option<&'a str>,
    errors: Vec<ConfigError>,
}

const TLS_ONLY: &str = "only allowed when mode is explicit or implicit";

impl<'a> Builder<'a> {
    /// Converts entries of `part` from now on.
    fn enter(&mut self, part: &'a Part) {
        self.base_dir = &part.base_dir;
        self.file = part.label.as_deref();
    }

    /// What key paths of the current file start with: `""` or `"teams/a.yaml: "`.
    fn prefix(&self) -> String {
        self.file.map(|f| format!("{f}: ")).unwrap_or_default()
    }

    fn error(&mut self, path: &str, message: impl Into<String>) {
        // The path names its file (any file's entries may be compared, e.g. for
        // conflicts), so the line is looked up in the file the path names.
        let (part, key) = match path.split_once(": ") {
            Some((file, key)) => match self.parts.iter().find(|p| p.label.as_deref() == Some(file))
            {
                Some(part) => (Some(part), key),
                None => (self.parts.first(), path),
            },
            None => (self.parts.first(), path),
        };
        self.errors.push(ConfigError {
            path: path.to_owned(),
            line: part.and_then(|p| p.lines.line(key)),
            message: message.into(),
        });
    }

    /// Converts an optional key with `parse`, recording its error under `path`.
    fn optional<T>(
        &mut self,
        path: &str,
        raw: Option<&str>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Parsed<T> {
        match raw.map(parse) {
            None => Ok(None),
            Some(Ok(v)) => Ok(Some(v)),
            Some(Err(message)) => {
                self.error(path, message);
                Err(Reported)
            }
        }
    }

    /// Like [`Self::optional`], but absence is an error too.
    fn required<T>(
        &mut self,
        path: &str,
        raw: Option<&str>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, Reported> {
        match self.optional(path, raw, parse)? {
            Some(v) => Ok(v),
            None => {
                self.error(path, "is required");
                Err(Reported)
            }
        }
    }

    /// A required, non-empty name that no earlier entry of the same `kind` used, in
    /// any file; `seen` maps each name to the file that defined it first.
    fn unique_name(
        &mut self,
        path: &str,
        raw: Option<&str>,
        kind: &str,
        seen: &mut HashMap<String, Option<&'a str>>,
    ) -> Result<String, Reported> {
        let name = self.required(path, raw, parse_name)?;
        if let Some(first) = seen.get(&name) {
            let message = match *first {
                f if f == self.file => format!("duplicate {kind} name \"{name}\""),
                Some(f) => format!("duplicate {kind} name \"{name}\" (first defined in {f})"),
                None => format!("duplicate {kind} name \"{name}\" (first defined in the top file)"),
            };
            self.error(path, message);
            return Err(Reported);
        }
        seen.insert(name.clone(), self.file);
        Ok(name)
    }

    fn listener(
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
    fn proxy_protocol(
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
    fn nftables(&mut self, p: &str, raw: &RawNftables) -> Result<Nftables, Reported> {
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

    /// An `access` list: each rule has exactly one of `allow`/`deny`, a non-empty
    /// list of CIDR networks (a bare address means that one host).
    fn access(
        &mut self,
        p: &str,
        raw: Option<&[RawAccessRule]>,
    ) -> Result<Vec<AccessRule>, Reported> {
        let mut rules = Vec::new();
        let mut failed = false;
        for (i, r) in raw.unwrap_or_default().iter().enumerate() {
            let rp = format!("{p}[{i}]");
            let (action, key, list) = match (&r.allow, &r.deny) {
                (Some(list), None) => (Action::Allow, "allow", list),
                (None, Some(list)) => (Action::Deny, "deny", list),
                (Some(_), Some(_)) => {
                    self.error(&rp, "a rule has allow or deny, not both; split it in two");
                    failed = true;
                    continue;
                }
                (None, None) => {
                    self.error(&rp, "a rule needs allow or deny");
                    failed = true;
                    continue;
                }
            };
            if list.is_empty() {
                self.error(&format!("{rp}.{key}"), "must list at least one network");
                failed = true;
                continue;
            }
            let networks: Vec<Result<ipnet::IpNet, Reported>> = list
                .iter()
                .enumerate()
                .map(|(j, s)| self.required(&format!("{rp}.{key}[{j}]"), Some(s), parse_network))
                .collect();
            match networks.into_iter().collect::<Result<Vec<_>, _>>() {
                Ok(networks) => rules.push(AccessRule { action, networks }),
                Err(Reported) => failed = true,
            }
        }
        if failed {
            Err(Reported)
        } else {
            Ok(rules)
        }
    }

    /// `listeners[i].limits`: every key optional.
    fn listener_limits(
        &mut self,
        p: &str,
        raw: Option<&RawListenerLimits>,
    ) -> Result<ListenerLimits, Reported> {
        let Some(raw) = raw else {
            return Ok(ListenerLimits::default());
        };
        let max_sessions = self.optional(
            &format!("{p}.max_sessions"),
            raw.max_sessions.as_deref(),
            parse_count,
        );
        let per_ip = self.optional(
            &format!("{p}.max_sessions_per_ip"),
            raw.max_sessions_per_ip.as_deref(),
            parse_count,
        );
        let bandwidth = self.optional(
            &format!("{p}.bandwidth"),
            raw.bandwidth.as_deref(),
            parse_bandwidth,
        );
        Ok(ListenerLimits {
            max_sessions: max_sessions?,
            max_sessions_per_ip: per_ip?,
            bandwidth: bandwidth?,
        })
    }

    /// `listeners[i].routes`: each needs `user` and defined `backends`.
    fn routes(
        &mut self,
        p: &str,
        raw: Option<&[RawRoute]>,
        defined: &HashSet<&str>,
    ) -> Result<Vec<Route>, Reported> {
        let routes: Vec<Result<Route, Reported>> = raw
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(j, r)| self.route(&format!("{p}[{j}]"), r, defined))
            .collect();
        routes.into_iter().collect()
    }

    fn route(
        &mut self,
        p: &str,
        raw: &RawRoute,
        defined: &HashSet<&str>,
    ) -> Result<Route, Reported> {
        let user = self.required(&format!("{p}.user"), raw.user.as_deref(), parse_user);
        let backends = match raw.backends.as_deref() {
            None => {
                self.error(&format!("{p}.backends"), "is required");
                Err(Reported)
            }
            Some([]) => {
                self.error(&format!("{p}.backends"), "must list at least one backend");
                Err(Reported)
            }
            Some(list) => {
                let mut seen = HashSet::new();
                let checked: Vec<Result<String, Reported>> = list
                    .iter()
                    .enumerate()
                    .map(|(k, s)| {
                        let kp = format!("{p}.backends[{k}]");
                        if !defined.contains(s.as_str()) {
                            self.error(&kp, format!("backend \"{s}\" is not defined"));
                            Err(Reported)
                        } else if !seen.insert(s.as_str()) {
                            self.error(&kp, format!("backend \"{s}\" is listed twice"));
                            Err(Reported)
                        } else {
                            Ok(s.clone())
                        }
                    })
                    .collect();
                checked.into_iter().collect()
            }
        };
        let balance = self.optional(
            &format!("{p}.balance"),
            raw.balance.as_deref(),
            parse_balance,
        );
        let commands = self.commands(&format!("{p}.commands"), raw.commands.as_ref());
        Ok(Route {
            user: user?,
            backends: backends?,
            balance: balance?.unwrap_or_default(),
            commands: commands?,
        })
    }

    /// `routes[j].commands`: exactly one of `allow` or `deny`, verbs upper-cased.
    fn commands(&mut self, p: &str, raw: Option<&RawCommands>) -> Result<CommandPolicy, Reported> {
        let Some(raw) = raw else {
            return Ok(CommandPolicy::Any);
        };
        let (key, list) = match (&raw.allow, &raw.deny) {
            (Some(list), None) => ("allow", list),
            (None, Some(list)) => ("deny", list),
            (Some(_), Some(_)) => {
                self.error(p, "allow and deny cannot both be set; keep one");
                return Err(Reported);
            }
            (None, None) => {
                self.error(p, "needs allow or deny");
                return Err(Reported);
            }
        };
        let verbs: Vec<Result<String, Reported>> = list
            .iter()
            .enumerate()
            .map(|(k, s)| self.required(&format!("{p}.{key}[{k}]"), Some(s), parse_verb))
            .collect();
        let verbs = verbs.into_iter().collect::<Result<Vec<_>, _>>()?;
        Ok(if key == "allow" {
            CommandPolicy::Allow(verbs)
        } else {
            CommandPolicy::Deny(verbs)
        })
    }

    /// Global `limits`: every key optional; `failed_logins` keys default to 5 in
    /// 60 s, 300 s cool-down.
    fn limits(&mut self, raw: Option<&RawLimits>) -> Result<Limits, Reported> {
        let Some(raw) = raw else {
            return Ok(Limits::default());
        };
        let max_sessions = self.optional(
            "limits.max_sessions",
            raw.max_sessions.as_deref(),
            parse_count,
        );
        let per_ip = self.optional(
            "limits.max_sessions_per_ip",
            raw.max_sessions_per_ip.as_deref(),
            parse_count,
        );
        let unauthenticated = self.optional(
            "limits.max_unauthenticated_per_ip",
            raw.max_unauthenticated_per_ip.as_deref(),
            parse_count,
        );
        let rate = self.optional(
            "limits.connection_rate_per_ip",
            raw.connection_rate_per_ip.as_deref(),
            |s| match parse_count(s)? {
                n if n > u32::MAX as usize => Err(format!("\"{s}\" is too large")),
                n => Ok(n as u32),
            },
        );
        let failed_logins = match raw.failed_logins.as_ref() {
            None => Ok(None),
            Some(f) => self.failed_logins("limits.failed_logins", f).map(Some),
        };
        Ok(Limits {
            max_sessions: max_sessions?,
            max_sessions_per_ip: per_ip?,
            max_unauthenticated_per_ip: unauthenticated?,
            connection_rate_per_ip: rate?,
            failed_logins: failed_logins?,
        })
    }

    fn failed_logins(&mut self, p: &str, raw: &RawFailedLogins) -> Result<FailedLogins, Reported> {
        let default = FailedLogins::default();
        let max = self.optional(
            &format!("{p}.max"),
            raw.max.as_deref(),
            |s| match parse_count(s)? {
                n if n > u32::MAX as usize => Err(format!("\"{s}\" is too large")),
                n => Ok(n as u32),
            },
        );
        let window = self.optional(
            &format!("{p}.window"),
            raw.window.as_deref(),
            duration::parse,
        );
        let cooldown = self.optional(
            &format!("{p}.cooldown"),
            raw.cooldown.as_deref(),
            duration::parse,
        );
        Ok(FailedLogins {
            max: max?.unwrap_or(default.max),
            window: window?.unwrap_or(default.window),
            cooldown: cooldown?.unwrap_or(default.cooldown),
        })
    }

    fn shutdown(&mut self, raw: Option<&RawShutdown>) -> Result<Duration, Reported> {
        let grace = raw.and_then(|r| r.grace.as_deref());
        self.optional("shutdown.grace", grace, duration::parse)
            .map(|d| d.unwrap_or(DEFAULT_SHUTDOWN_GRACE))
    }

    fn reload(&mut self, raw: Option<&RawReload>) -> Result<Reload, Reported> {
        let Some(raw) = raw else {
            return Ok(Reload::default());
        };
        let default = Reload::default();
        let watch = self.optional("reload.watch", raw.watch.as_deref(), parse_bool);
        let interval = self.optional("reload.interval", raw.interval.as_deref(), duration::parse);
        Ok(Reload {
            watch: watch?.unwrap_or(default.watch),
            interval: interval?.unwrap_or(default.interval),
        })
    }

    /// `tls.sni`: names are unique within the listener; files must exist.
    fn sni(&mut self, p: &str, raw: &[RawSniCert]) -> Result<Vec<SniCert>, Reported> {
        let base = self.base_dir;
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut out = Vec::new();
        let mut failed = false;
        for (j, r) in raw.iter().enumerate() {
            let ep = format!("{p}[{j}]");
            let names = match r.names.as_deref() {
                None => {
                    self.error(&format!("{ep}.names"), "is required");
                    Err(Reported)
                }
                Some([]) => {
                    self.error(&format!("{ep}.names"), "must list at least one name");
                    Err(Reported)
                }
                Some(list) => {
                    let mut names = Vec::new();
                    let mut bad = false;
                    for (k, s) in list.iter().enumerate() {
                        let np = format!("{ep}.names[{k}]");
                        match self.required(&np, Some(s), parse_sni_name) {
                            Ok(name) => match seen.get(&name) {
                                Some(first) => {
                                    self.error(
                                        &np,
                                        format!("\"{name}\" is already listed in {p}[{first}]"),
                                    );
                                    bad = true;
                                }
                                None => {
                                    seen.insert(name.clone(), j);
                                    names.push(name);
                                }
                            },
                            Err(Reported) => bad = true,
                        }
                    }
                    if bad {
                        Err(Reported)
                    } else {
                        Ok(names)
                    }
                }
            };
            let cert = self.required(&format!("{ep}.cert"), r.cert.as_deref(), |s| {
                existing_file(base, s)
            });
            let key = self.required(&format!("{ep}.key"), r.key.as_deref(), |s| {
                existing_file(base, s)
            });
            match (names, cert, key) {
                (Ok(names), Ok(cert), Ok(key)) => out.push(SniCert { names, cert, key }),
                _ => failed = true,
            }
        }
        if failed {
            Err(Reported)
        } else {
            Ok(out)
        }
    }

    /// `active`: both keys optional.
    fn active(&mut self, p: &str, raw: Option<&RawActive>) -> Result<Active, Reported> {
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
    fn advertise(
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

    fn listener_tls(
        &mut self,
        p: &str,
        raw: Option<&RawListenerTls>,
    ) -> Result<ListenerTls, Reported> {
        let empty = RawListenerTls::default();
        let raw = raw.unwrap_or(&empty);
        let key_path = |k: &str| format!("{p}.{k}");
        let base = self.base_dir;

        let mode = self.required(&key_path("mode"), raw.mode.as_deref(), parse_mode);
        let cert = self.optional(&key_path("cert"), raw.cert.as_deref(), |s| {
            existing_file(base, s)
        });
        let key = self.optional(&key_path("key"), raw.key.as_deref(), |s| {
            existing_file(base, s)
        });
        let require = self.optional(&key_path("require"), raw.require.as_deref(), parse_bool);
        let reuse = self.optional(
            &key_path("require_data_reuse"),
            raw.require_data_reuse.as_deref(),
            parse_bool,
        );
        let min_version = self.optional(
            &key_path("min_version"),
            raw.min_version.as_deref(),
            parse_version,
        );
        let max_version = self.optional(
            &key_path("max_version"),
            raw.max_version.as_deref(),
            parse_version,
        );
        let allow_ccc = self.optional(&key_path("allow_ccc"), raw.allow_ccc.as_deref(), parse_bool);
        let allow_clear_data = self.optional(
            &key_path("allow_clear_data"),
            raw.allow_clear_data.as_deref(),
            parse_bool,
        );
        let sni = match raw.sni.as_deref() {
            Some(list) if raw.mode.as_deref() != Some("none") => self.sni(&key_path("sni"), list),
            _ => Ok(Vec::new()),
        };
        let mode = mode?;

        if mode == TlsMode::None {
            let mut refused = false;
            for (k, given) in [
                ("cert", raw.cert.is_some()),
                ("key", raw.key.is_some()),
                ("min_version", raw.min_version.is_some()),
                ("max_version", raw.max_version.is_some()),
                ("sni", raw.sni.is_some()),
            ] {
                if given {
                    self.error(&key_path(k), TLS_ONLY);
                    refused = true;
                }
            }
            // `require: false` is accepted with `none` so that a policy can say
            // explicitly that cleartext logins are intended.
            for (k, value) in [("require", &require), ("require_data_reuse", &reuse)] {
                if *value == Ok(Some(true)) {
                    self.error(&key_path(k), "must be false or absent when mode is none");
                    refused = true;
                }
            }
            require?;
            reuse?;
            if refused {
                return Err(Reported);
            }
            return Ok(ListenerTls {
                mode,
                cert: None,
                key: None,
                require: false,
                require_data_reuse: false,
                min_version: TlsVersion::Tls12,
                max_version: TlsVersion::Tls13,
                allow_ccc: false,
                // Without TLS there is nothing else.
                allow_clear_data: true,
                sni: Vec::new(),
            });
        }

        let cert = self.needed_with_tls(&key_path("cert"), cert, mode);
        let key = self.needed_with_tls(&key_path("key"), key, mode);
        let (min_version, max_version) =
            self.version_range(&key_path("max_version"), min_version, max_version)?;
        Ok(ListenerTls {
            mode,
            cert: Some(cert?),
            key: Some(key?),
            require: require?.unwrap_or(true),
            require_data_reuse: reuse?.unwrap_or(true),
            min_version,
            max_version,
            allow_ccc: allow_ccc?.unwrap_or(false),
            allow_clear_data: allow_clear_data?.unwrap_or(false),
            sni: sni?,
        })
    }

    /// `min_version`/`max_version` with their defaults (1.2, 1.3); a maximum
    /// below the minimum is reported at `max_path`.
    fn version_range(
        &mut self,
        max_path: &str,
        min: Parsed<TlsVersion>,
        max: Parsed<TlsVersion>,
    ) -> Result<(TlsVersion, TlsVersion), Reported> {
        let min = min?.unwrap_or(TlsVersion::Tls12);
        let max = max?.unwrap_or(TlsVersion::Tls13);
        if max < min {
            self.error(
                max_path,
                format!("\"{max}\" is lower than min_version \"{min}\""),
            );
            return Err(Reported);
        }
        Ok((min, max))
    }

    /// A key that is optional in the YAML but required once TLS is on.
    fn needed_with_tls<T>(
        &mut self,
        path: &str,
        value: Parsed<T>,
        mode: TlsMode,
    ) -> Result<T, Reported> {
        match value? {
            Some(v) => Ok(v),
            None => {
                self.error(path, format!("is required when mode is {mode}"));
                Err(Reported)
            }
        }
    }

    fn passive(
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
    fn check_listener_conflicts(&mut self, listeners: &[(String, Result<Listener, Reported>)]) {
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

    fn backend(
        &mut self,
        p: &str,
        raw: &RawBackend,
        names: &mut HashMap<String, Option<&'a str>>,
    ) -> Result<Backend, Reported> {
        let name = self.unique_name(&format!("{p}.name"), raw.name.as_deref(), "backend", names);
        let address = self.required(
            &format!("{p}.address"),
            raw.address.as_deref(),
            parse_host_port,
        );
        let host = address.as_ref().ok().map(|(h, _)| h.as_str());
        let tls = self.backend_tls(&format!("{p}.tls"), raw.tls.as_ref(), host);
        let health_check = match raw.health_check.as_ref() {
            None => Ok(None),
            Some(h) => self.health_check(&format!("{p}.health_check"), h).map(Some),
        };
        let data_mode =
            self.optional(
                &format!("{p}.data_mode"),
                raw.data_mode.as_deref(),
                |s| match s {
                    "passive" => Ok(DataMode::Passive),
                    "active" => Ok(DataMode::Active),
                    "same-as-client" => Ok(DataMode::SameAsClient),
                    _ => Err(format!(
                        "\"{s}\" is not a data mode (expected passive, active or same-as-client)"
                    )),
                },
            );
        let keepalive_noop = self.optional(
            &format!("{p}.keepalive_noop"),
            raw.keepalive_noop.as_deref(),
            duration::parse,
        );
        let send_proxy = self.optional(
            &format!("{p}.send_proxy"),
            raw.send_proxy.as_deref(),
            |s| match s {
                "v1" => Ok(ProxyVersion::V1),
                "v2" => Ok(ProxyVersion::V2),
                _ => Err(format!(
                    "\"{s}\" is not a PROXY protocol version (expected v1 or v2)"
                )),
            },
        );
        let (host, port) = address?;
        Ok(Backend {
            name: name?,
            host,
            port,
            tls: tls?,
            health_check: health_check?,
            data_mode: data_mode?.unwrap_or(DataMode::Passive),
            keepalive_noop: keepalive_noop?,
            send_proxy: send_proxy?,
        })
    }

    /// `health_check`: both keys optional; a check may not outlast its interval, or
    /// checks would pile up behind a backend that hangs.
    fn health_check(&mut self, p: &str, raw: &RawHealthCheck) -> Result<HealthCheck, Reported> {
        let default = HealthCheck::default();
        let interval = self
            .optional(
                &format!("{p}.interval"),
                raw.interval.as_deref(),
                duration::parse,
            )
            .map(|d| d.unwrap_or(default.interval));
        let timeout = self
            .optional(
                &format!("{p}.timeout"),
                raw.timeout.as_deref(),
                duration::parse,
            )
            .map(|d| d.unwrap_or(default.timeout));
        let (interval, timeout) = (interval?, timeout?);
        if timeout > interval {
            self.error(
                &format!("{p}.timeout"),
                format!(
                    "{} is longer than interval {}",
                    written_duration(raw.timeout.as_deref(), timeout),
                    written_duration(raw.interval.as_deref(), interval)
                ),
            );
            return Err(Reported);
        }
        Ok(HealthCheck { interval, timeout })
    }

    /// `metrics`: `bind` is required and must not take a listener's control address.
    fn metrics(
        &mut self,
        raw: &RawMetrics,
        listeners: &[(String, Result<Listener, Reported>)],
    ) -> Result<MetricsConfig, Reported> {
        let bind = self.required("metrics.bind", raw.bind.as_deref(), parse_bind)?;
        if bind.port() != 0 {
            let taken = listeners
                .iter()
                .find(|(_, l)| matches!(l, Ok(l) if l.bind == bind));
            if let Some((i, _)) = taken {
                self.error("metrics.bind", format!("{bind} is already used by {i}"));
                return Err(Reported);
            }
        }
        Ok(MetricsConfig { bind })
    }

    /// `transfer_log`: the file may be missing (it is created at start), but its
    /// directory must exist.
    fn transfer_log(&mut self, raw: &RawTransferLog) -> Result<TransferLogConfig, Reported> {
        let base = self.base_dir;
        let path = self.required("transfer_log.path", raw.path.as_deref(), |s| {
            log_file(base, s)
        });
        let format = self
            .optional(
                "transfer_log.format",
                raw.format.as_deref(),
                parse_log_format,
            )
            .map(|f| f.unwrap_or(TransferLogFormat::Xferlog));
        Ok(TransferLogConfig {
            path: path?,
            format: format?,
        })
    }

    /// `host` is the address' host, `None` when the address itself was refused.
    fn backend_tls(
        &mut self,
        p: &str,
        raw: Option<&RawBackendTls>,
        host: Option<&str>,
    ) -> Result<BackendTls, Reported> {
        let empty = RawBackendTls::default();
        let raw = raw.unwrap_or(&empty);
        let key_path = |k: &str| format!("{p}.{k}");
        let base = self.base_dir;

        let mode = self
            .optional(&key_path("mode"), raw.mode.as_deref(), parse_mode)
            .map(|m| m.unwrap_or(TlsMode::None));
        let ca = self.optional(&key_path("ca"), raw.ca.as_deref(), |s| {
            existing_file(base, s)
        });
        let pins = self.pins(&key_path("pin_sha256"), raw.pin_sha256.as_ref());
        let verify = self.optional(&key_path("verify"), raw.verify.as_deref(), parse_bool);
        let server_name = self.optional(
            &key_path("server_name"),
            raw.server_name.as_deref(),
            parse_server_name,
        );
        let min_version = self.optional(
            &key_path("min_version"),
            raw.min_version.as_deref(),
            parse_version,
        );
        let max_version = self.optional(
            &key_path("max_version"),
            raw.max_version.as_deref(),
            parse_version,
        );
        let data_protection = self.optional(
            &key_path("data_protection"),
            raw.data_protection.as_deref(),
            parse_data_protection,
        );
        let mode = mode?;

        if mode == TlsMode::None {
            let mut refused = false;
            for (k, given) in [
                ("ca", raw.ca.is_some()),
                ("pin_sha256", raw.pin_sha256.is_some()),
                ("verify", raw.verify.is_some()),
                ("server_name", raw.server_name.is_some()),
                ("min_version", raw.min_version.is_some()),
                ("max_version", raw.max_version.is_some()),
            ] {
                if given {
                    self.error(&key_path(k), TLS_ONLY);
                    refused = true;
                }
            }
            if data_protection == Ok(Some(DataProtection::Private)) {
                self.error(
                    &key_path("data_protection"),
                    "must be clear or absent when mode is none",
                );
                refused = true;
            }
            data_protection?;
            if refused {
                return Err(Reported);
            }
            return Ok(BackendTls {
                mode,
                verify: BackendVerify::NotApplicable,
                server_name: host.ok_or(Reported)?.to_owned(),
                min_version: TlsVersion::Tls12,
                max_version: TlsVersion::Tls13,
                data_protection: DataProtection::Clear,
            });
        }

        let verify = self.backend_verify(p, mode, ca, pins, verify);
        let versions = self.version_range(&key_path("max_version"), min_version, max_version);
        let server_name = match server_name? {
            Some(name) => name,
            None => host.ok_or(Reported)?.to_owned(),
        };
        let (min_version, max_version) = versions?;
        Ok(BackendTls {
            mode,
            verify: verify?,
            server_name,
            min_version,
            max_version,
            data_protection: data_protection?.unwrap_or(DataProtection::Private),
        })
    }

    /// Exactly one of `ca`, `pin_sha256` or `verify: false` must be given with TLS: a
    /// backend connection that silently trusts anything must be asked for by name.
    fn backend_verify(
        &mut self,
        p: &str,
        mode: TlsMode,
        ca: Parsed<PathBuf>,
        pins: Parsed<Vec<[u8; 32]>>,
        verify: Parsed<bool>,
    ) -> Result<BackendVerify, Reported> {
        // "Given" counts values that failed to parse too, so a bad pin is not also
        // reported as a missing one.
        let has_ca = ca != Ok(None);
        let has_pin = pins != Ok(None);
        match verify? {
            Some(false) => {
                if has_ca || has_pin {
                    self.error(
                        &format!("{p}.verify"),
                        "false cannot be combined with ca or pin_sha256",
                    );
                    return Err(Reported);
                }
                Ok(BackendVerify::Dangerous)
            }
            verify => match (has_ca, has_pin) {
                (true, false) => Ok(BackendVerify::Ca(ca?.ok_or(Reported)?)),
                (false, true) => Ok(BackendVerify::Pin(pins?.ok_or(Reported)?)),
                (true, true) => {
                    self.error(p, "ca and pin_sha256 cannot both be set; keep one");
                    Err(Reported)
                }
                (false, false) => {
                    if verify == Some(true) {
                        self.error(
                            &format!("{p}.verify"),
                            "verify: true needs ca or pin_sha256",
                        );
                    } else {
                        self.error(
                            p,
                            format!(
                                "one of ca, pin_sha256 or verify: false is required when mode is {mode}"
                            ),
                        );
                    }
                    Err(Reported)
                }
            },
        }
    }

    /// `pin_sha256` as one string (errors under `path`) or a list (under `path[i]`).
    fn pins(&mut self, path: &str, raw: Option<&RawPins>) -> Parsed<Vec<[u8; 32]>> {
        match raw {
            None => Ok(None),
            Some(RawPins::One(s)) => self
                .required(path, Some(s), parse_pin)
                .map(|p| Some(vec![p])),
            Some(RawPins::Many(list)) if list.is_empty() => {
                self.error(path, "must list at least one pin");
                Err(Reported)
            }
            Some(RawPins::Many(list)) => {
                let pins: Vec<Result<[u8; 32], Reported>> = list
                    .iter()
                    .enumerate()
                    .map(|(i, s)| self.required(&format!("{path}[{i}]"), Some(s), parse_pin))
                    .collect();
                pins.into_iter().collect::<Result<_, _>>().map(Some)
            }
        }
    }

    fn timeouts(&mut self, raw: Option<&RawTimeouts>) -> Result<Timeouts, Reported> {
        let empty = RawTimeouts::default();
        let raw = raw.unwrap_or(&empty);
        let default = Timeouts::default();
        let mut get = |key: &str, value: &Option<String>, fallback| {
            self.optional(
                &format!("timeouts.{key}"),
                value.as_deref(),
                duration::parse,
            )
            .map(|d| d.unwrap_or(fallback))
        };
        let connect = get("connect", &raw.connect, default.connect);
        let login = get("login", &raw.login, default.login);
        let idle = get("idle", &raw.idle, default.idle);
        let pinhole = get("pinhole", &raw.pinhole, default.pinhole);
        let data_idle = get("data_idle", &raw.data_idle, default.data_idle);
        let control_write = get("control_write", &raw.control_write, default.control_write);
        Ok(Timeouts {
            control_write: control_write?,
            connect: connect?,
            login: login?,
            idle: idle?,
            pinhole: pinhole?,
            data_idle: data_idle?,
        })
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

/// A CIDR network (`10.0.0.0/8`, `::1/128`), or a bare address meaning that host.
/// Host bits are dropped (`10.1.2.3/8` is `10.0.0.0/8`), as the kernel would.
fn parse_network(s: &str) -> Result<ipnet::IpNet, String> {
    if let Ok(net) = s.parse::<ipnet::IpNet>() {
        return Ok(net.trunc());
    }
    s.parse::<IpAddr>()
        .map(ipnet::IpNet::from)
        .map_err(|_| format!("\"{s}\" is not a CIDR network (e.g. \"10.0.0.0/8\" or \"::1/128\")"))
}

/// A positive whole number (session counts, login attempts).
fn parse_count(s: &str) -> Result<usize, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("\"{s}\" is not a whole number"));
    }
    match s.parse::<usize>() {
        Err(_) => Err(format!("\"{s}\" is too large")),
        Ok(0) => Err(format!("\"{s}\" must be at least 1")),
        Ok(n) => Ok(n),
    }
}

/// `passive.max_per_client`: `"N"` ports or `"P%"` of the range (1–100).
fn parse_port_share(s: &str) -> Result<PortShare, String> {
    match s.strip_suffix('%') {
        Some(p) => match p.trim().parse::<u8>() {
            Ok(n) if (1..=100).contains(&n) => Ok(PortShare::Percent(n)),
            _ => Err(format!("\"{s}\" is not a percentage from 1% to 100%")),
        },
        None => parse_count(s).map(PortShare::Ports),
    }
}

/// Bytes per second: a plain integer, or one with K/M/G (powers of 1000) or
/// KiB/MiB/GiB (powers of 1024); zero is refused (it would stall every transfer).
fn parse_bandwidth(s: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "\"{s}\" is not a bandwidth (bytes per second, e.g. \"500K\", \"10MiB\" or 1048576)"
        )
    };
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() {
        return Err(bad());
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("\"{s}\" is too large"))?;
    let factor: u64 = match unit {
        "" => 1,
        "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(bad()),
    };
    match n.checked_mul(factor) {
        None => Err(format!("\"{s}\" is too large")),
        Some(0) => Err(format!("\"{s}\" must be greater than zero")),
        Some(v) => Ok(v),
    }
}

/// A route's `user`: an exact login name or a glob with `*` and `?`.
fn parse_user(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.chars().any(char::is_control) {
        return Err(format!("{s:?} contains a control character"));
    }
    Ok(s.to_owned())
}

fn parse_balance(s: &str) -> Result<Balance, String> {
    match s {
        "round-robin" => Ok(Balance::RoundRobin),
        "least-connections" => Ok(Balance::LeastConnections),
        _ => Err(format!(
            "\"{s}\" is not a balance mode (expected round-robin or least-connections)"
        )),
    }
}

/// An FTP command verb: 3 or 4 ASCII letters (RFC 959 section 5.3.1), upper-cased.
fn parse_verb(s: &str) -> Result<String, String> {
    if (3..=4).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphabetic()) {
        Ok(s.to_ascii_uppercase())
    } else {
        Err(format!(
            "\"{s}\" is not an FTP command (3 or 4 letters, e.g. STOR)"
        ))
    }
}

/// A server name clients may send in SNI: a DNS name (no IP, no wildcard),
/// lower-cased since names compare case-insensitively.
fn parse_sni_name(s: &str) -> Result<String, String> {
    if s.parse::<IpAddr>().is_ok() || !is_dns_name(s) {
        return Err(format!(
            "\"{s}\" is not a DNS name (SNI carries names only; wildcards are not supported)"
        ));
    }
    Ok(s.trim_end_matches('.').to_ascii_lowercase())
}

fn parse_name(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err("must not be empty".into());
    }
    Ok(s.to_owned())
}

fn parse_bind(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| {
        format!("\"{s}\" is not an IP address and port (e.g. \"127.0.0.1:2021\" or \"[::1]:2021\")")
    })
}

fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse()
        .map_err(|_| format!("\"{s}\" is not an IP address"))
}

/// An address written into 227/229 replies. A wildcard would send clients
/// nowhere. IPv6 is accepted: such clients get `229` (EPSV); a `PASV` from them
/// gets `425` since 227 carries IPv4 only (RFC 959 h1,h2,h3,h4).
fn parse_advertise(s: &str) -> Result<IpAddr, String> {
    let ip = parse_ip(s)?;
    if ip.is_unspecified() {
        return Err(format!(
            "\"{s}\" is the unspecified address; clients cannot connect to it"
        ));
    }
    Ok(ip)
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("\"{s}\" is not a boolean (expected true or false)")),
    }
}

fn parse_mode(s: &str) -> Result<TlsMode, String> {
    match s {
        "none" => Ok(TlsMode::None),
        "explicit" => Ok(TlsMode::Explicit),
        "implicit" => Ok(TlsMode::Implicit),
        _ => Err(format!(
            "\"{s}\" is not a TLS mode (expected explicit, implicit or none)"
        )),
    }
}

fn parse_version(s: &str) -> Result<TlsVersion, String> {
    match s {
        "1.2" => Ok(TlsVersion::Tls12),
        "1.3" => Ok(TlsVersion::Tls13),
        _ => Err(format!(
            "\"{s}\" is not a TLS version (expected \"1.2\" or \"1.3\")"
        )),
    }
}

fn parse_data_protection(s: &str) -> Result<DataProtection, String> {
    match s {
        "private" => Ok(DataProtection::Private),
        "clear" => Ok(DataProtection::Clear),
        _ => Err(format!(
            "\"{s}\" is not a data protection level (expected private or clear)"
        )),
    }
}

/// `host:port` with host an IPv4 literal, a bracketed IPv6 literal or a DNS name;
/// the host is returned without brackets, ready for connect and for SNI.
fn parse_host_port(s: &str) -> Result<(String, u16), String> {
    let refuse = || format!("\"{s}\" is not host:port");
    let (host, port) = s.rsplit_once(':').ok_or_else(refuse)?;
    let port = if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
        port.parse::<u16>().ok().filter(|p| *p != 0)
    } else {
        None
    }
    .ok_or_else(refuse)?;
    let host = match host.strip_prefix('[') {
        Some(inner) => {
            let inner = inner.strip_suffix(']').ok_or_else(refuse)?;
            inner.parse::<Ipv6Addr>().map_err(|_| refuse())?;
            inner
        }
        None if host.parse::<Ipv4Addr>().is_ok() || is_dns_name(host) => host,
        None => return Err(refuse()),
    };
    Ok((host.to_owned(), port))
}

fn parse_server_name(s: &str) -> Result<String, String> {
    if s.parse::<IpAddr>().is_ok() || is_dns_name(s) {
        Ok(s.to_owned())
    } else {
        Err(format!("\"{s}\" is not a DNS name or IP address"))
    }
}

/// RFC 1123 host name (underscores tolerated, as internal names use them). A name
/// whose last label is numeric must be an IPv4 literal instead, so `300.1.1.1` is
/// refused rather than looked up.
fn is_dns_name(s: &str) -> bool {
    let name = s.strip_suffix('.').unwrap_or(s);
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let last_numeric = name
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    name.split('.').all(label_ok) && !last_numeric
}

/// SHA-256 fingerprint: 64 hex digits, colons allowed anywhere and ignored (the
/// `openssl x509 -fingerprint` output pastes as is).
fn parse_pin(s: &str) -> Result<[u8; 32], String> {
    let digits: String = s.chars().filter(|c| *c != ':').collect();
    let count = digits.chars().count();
    if count != 64 {
        return Err(format!("expected 64 hex digits, got {count}"));
    }
    if let Some(c) = digits.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(format!("expected 64 hex digits, found {c:?}"));
    }
    let mut pin = [0u8; 32];
    hex::decode_to_slice(&digits, &mut pin).map_err(|e| format!("not hex: {e}"))?;
    Ok(pin)
}

fn parse_log_format(s: &str) -> Result<TransferLogFormat, String> {
    match s {
        "xferlog" => Ok(TransferLogFormat::Xferlog),
        "json" => Ok(TransferLogFormat::Json),
        _ => Err(format!(
            "\"{s}\" is not a transfer log format (expected xferlog or json)"
        )),
    }
}

/// A duration as the operator wrote it, or the default in seconds.
fn written_duration(written: Option<&str>, value: std::time::Duration) -> String {
    match written {
        Some(w) => format!("\"{w}\""),
        None => format!("{}s (default)", value.as_secs()),
    }
}

/// Resolves `written` against `base` for a file the gateway appends to: it need not
/// exist, but must not be a directory, and its directory must exist.
fn log_file(base: &Path, written: &str) -> Result<PathBuf, String> {
    if written.is_empty() {
        return Err("must not be empty".into());
    }
    let path = base.join(written);
    if path.is_dir() {
        return Err(format!("{written} is a directory"));
    }
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => {
            Err(format!("directory of {written} does not exist"))
        }
        _ => Ok(path),
    }
}

/// Resolves `written` against `base` and checks that it names a regular file.
/// Messages quote the path as written, which is what the operator can find.
fn existing_file(base: &Path, written: &str) -> Result<PathBuf, String> {
    if written.is_empty() {
        return Err("must not be empty".into());
    }
    let path = base.join(written);
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_file() => Ok(path),
        Ok(_) => Err(format!("{written} is not a regular file")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("file {written} does not exist"))
        }
        Err(e) => Err(format!("cannot access file {written}: {e}")),
    }
}
