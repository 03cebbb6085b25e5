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
//!
//! This file holds the driver ([`build_all`]) and the error-collecting [`Builder`]
//! core; the conversions live beside the section they build, each an
//! `impl Builder` block of its own:
//!
//! | file | builds |
//! |---|---|
//! | `listeners.rs` | `listeners[]`: bind, backend, `passive`, `active`, `proxy_protocol`, port conflicts |
//! | `backends.rs` | `backends[]`: address, data mode, keepalive, `send_proxy`, `health_check` |
//! | `routes.rs` | `access` rules, `routes[]` and their `commands` filter |
//! | `tls.rs` | listener and backend `tls`: certs, keys, CA, SNI, pins, versions |
//! | `auth.rs` | `auth.providers` (password file, LDAP), routes' `auth`/`provider`/`backend_login`, secrets files |
//! | `tunnels.rs` | `tunnels[]`, `connect[]` (DMZ mode) and `backends[].via` |
//! | `control.rs` | `control`: the socket path, mode, owner and group |
//! | `limits.rs` | `limits`, `timeouts`, `shutdown`, `reload`, `metrics`, `transfer_log` |
//! | `values.rs` | the `parse_*` functions for single values that every section shares |
//!
//! A new key: its serde field in `raw.rs`, its typed field in `typed.rs`, its
//! conversion in the section file above, its tests in `../tests/` under the same
//! section name.

mod auth;
mod backends;
mod control;
mod limits;
mod listeners;
mod routes;
mod tls;
mod tunnels;
mod values;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::include::{Part, Tree};
use super::typed::{BackendTls, Config, Listener, ListenerTls};
use super::{ConfigError, ConfigErrors};
pub use tls::ClientAuthFile;
use values::parse_name;

/// Builds the typed [`Config`] from every gathered file, or returns every error
/// found; beside it every listener and backend `tls` section that converted
/// cleanly, so their certificates and keys can be checked even when other keys of
/// the file are wrong (`ftpsgate check` reports every phase).
pub(crate) fn build_all(tree: Tree) -> (Result<Config, ConfigErrors>, TlsSections) {
    let Tree {
        top: raw,
        parts,
        sources,
        key_errors: _,
    } = tree;
    let mut b = Builder {
        base_dir: &parts[0].base_dir,
        parts: &parts,
        file: None,
        errors: Vec::new(),
        tls: TlsSections::default(),
        auth: Vec::new(),
        auth_names: HashSet::new(),
    };

    // Providers first: routes refer to them (`auth` exists in the top file only).
    let mut auth_names = HashSet::new();
    let auth = b.auth(raw.auth.as_ref(), &mut auth_names);
    b.auth = auth.clone().unwrap_or_default();
    b.auth_names = auth_names;

    // References are checked against the names as written, so a backend with some
    // other error still counts as defined and does not cascade into listener errors.
    let backend_names: HashSet<&str> = parts
        .iter()
        .flat_map(|p| &p.backends)
        .filter_map(|r| r.name.as_deref())
        .collect();

    // A connector-only policy (`connect` alone) serves no clients.
    let connector_only = raw.connect.as_ref().is_some_and(|c| !c.is_empty());
    if parts.iter().all(|p| p.listeners.is_empty()) && !connector_only {
        b.error(
            "listeners",
            "at least one listener is required (or `connect` for a connector)",
        );
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
    let mut vias = Vec::new();
    for part in &parts {
        b.enter(part);
        for (i, r) in part.backends.iter().enumerate() {
            let p = format!("{}backends[{i}]", b.prefix());
            if let Some(via) = r.via.as_deref() {
                vias.push((p.clone(), via, r.data_mode.as_deref()));
            }
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
    let control = match raw.control.as_ref() {
        None => Ok(None),
        Some(c) => b.control(c).map(Some),
    };
    let tunnels = b.tunnels(raw.tunnels.as_deref().unwrap_or_default());
    let tunnel_names: Vec<&str> = raw
        .tunnels
        .iter()
        .flatten()
        .filter_map(|t| t.name.as_deref())
        .collect();
    b.check_via(&vias, &tunnel_names);
    let connect = b.connects(raw.connect.as_deref().unwrap_or_default());

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
            control: control?,
            auth: auth?,
            tunnels: tunnels.into_iter().collect::<Result<_, _>>()?,
            connect: connect.into_iter().collect::<Result<_, _>>()?,
            sources,
        })
    })();
    let tls = std::mem::take(&mut b.tls);
    let result = match assembled {
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
    };
    (result, tls)
}

/// `tls` sections that converted cleanly, each with where it is.
#[derive(Debug, Default)]
pub struct TlsSections {
    /// `listeners[].tls` sections.
    pub listeners: Vec<Section<ListenerTls>>,
    /// `backends[].tls` sections.
    pub backends: Vec<Section<BackendTls>>,
    /// Each file of the `client_auth` sections, at its own key.
    pub client_auth: Vec<Section<ClientAuthFile>>,
}

/// One section: key path (file-prefixed when included), its (line, column), value.
pub(super) type Section<T> = (String, Option<(u64, u64)>, T);

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
    /// Clean `tls` sections, returned by [`build_all`].
    tls: TlsSections,
    /// `auth.providers` that built, for routes' `provider`.
    auth: Vec<std::sync::Arc<super::typed::AuthProvider>>,
    /// Every provider name as written (a broken provider is still defined).
    auth_names: HashSet<String>,
}

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

    /// Line and column of `path` in the file the path names (any file's entries
    /// may be compared, e.g. for conflicts).
    fn position(&self, path: &str) -> Option<(u64, u64)> {
        let (part, key) = match path.split_once(": ") {
            Some((file, key)) => match self.parts.iter().find(|p| p.label.as_deref() == Some(file))
            {
                Some(part) => (Some(part), key),
                None => (self.parts.first(), path),
            },
            None => (self.parts.first(), path),
        };
        part.and_then(|p| p.lines.position(key))
    }

    fn error(&mut self, path: &str, message: impl Into<String>) {
        let at = self.position(path);
        self.errors.push(ConfigError {
            path: path.to_owned(),
            line: at.map(|(line, _)| line),
            column: at.map(|(_, column)| column),
            key: None,
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
}
