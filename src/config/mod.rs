//! Configuration: the YAML policy file parsed into a typed [`Config`] at startup.
//!
//! Flow: YAML text → [`raw`] (serde mirror, `deny_unknown_fields`, scalars kept as
//! text) → [`build`] (validating conversion, every error collected with its key path)
//! → [`typed`] values that the runtime uses without re-checking ("parse, don't
//! validate"). `ftpsgate check` and `ftpsgate run` go through the same
//! [`Config::load`], so a config that checks clean is one that starts.
//!
//! This module must not open sockets, spawn tasks or read the clock. Its only I/O is
//! reading the config file and checking that the files it names exist; loading
//! certificates into rustls belongs to `tls/`.

mod build;
mod duration;
mod include;
mod lines;
mod pattern;
mod print;
mod raw;
mod schema;
mod typed;

#[cfg(test)]
pub(crate) mod tests;

use std::fmt;
use std::path::Path;

pub use typed::{
    AccessRule, Action, Active, AdvertiseRule, AuthKind, AuthProvider, Backend, BackendLogin,
    BackendTls, BackendVerify, Balance, CertIdentity, ClientAuth, ClientAuthMode, ClientCert,
    CommandPolicy, Config, Connect, ConnectBackend, ControlConfig, DataMode, DataProtection,
    FailedLogins, HealthCheck, LdapAuth, LdapLookup, Limits, Listener, ListenerLimits, ListenerTls,
    ListingsPolicy, LogTime, MetricsConfig, Nftables, Passive, PortRange, PortRangeError,
    PortShare, ProxyProtocol, ProxyVersion, Reload, ReuseScope, Route, RouteAuth, SniCert,
    Timeouts, TlsMode, TlsVersion, TransferLogConfig, TransferLogFormat, Transport, Tunnel,
    TunnelClientTls, TunnelServerTls, DEFAULT_BANNER, DEFAULT_IPV6_PREFIX, DEFAULT_UNAVAILABLE,
    NEVER_FILTERED,
};

pub use build::{ClientAuthFile, TlsSections};
use pattern::pattern_covers;
pub use pattern::user_matches;

/// Name used as the error location for YAML that did not come from a file.
const INLINE_SOURCE: &str = "<yaml>";

impl Config {
    /// Parses and validates `yaml`; relative file paths (`cert`, `key`, `ca`) are
    /// resolved against `base_dir` and must exist.
    ///
    /// Every unknown or repeated key is reported, located at `<yaml>:LINE:COLUMN`
    /// (with its key path in [`ConfigError::key`]), together with every semantic
    /// error under its key path (`listeners[0].passive.ports`). A syntax error or
    /// a value of the wrong shape stops serde: it is reported after the key
    /// errors, and the semantic build does not run.
    ///
    /// `include` paths are resolved against `base_dir`; [`Config::sources`] then
    /// lists the included files only.
    pub fn from_yaml_str(yaml: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
        parse(yaml, base_dir, INLINE_SOURCE, None)
    }

    /// Reads the file at `path` and parses it as [`Config::from_yaml_str`] would, with
    /// the file's directory (made absolute) as the base for relative paths, so the
    /// resulting paths do not depend on a later change of working directory.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        Config::load_for_check(path).0
    }

    /// [`Config::load`], plus every listener and backend `tls` section that
    /// converted cleanly even when the configuration as a whole did not, so
    /// `check` can load their certificates and keys in the same run.
    pub fn load_for_check(path: &Path) -> (Result<Config, ConfigErrors>, TlsSections) {
        let source = path.display().to_string();
        let text = match std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                path: source.clone(),
                line: None,
                column: None,
                key: None,
                message: format!("cannot read config file: {e}"),
            }])
        }) {
            Ok(text) => text,
            Err(e) => return (Err(e), TlsSections::default()),
        };
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        // `absolute` only fails for an empty path or an unreadable working directory;
        // the relative directory still resolves correctly for this process then.
        let base_dir = std::path::absolute(parent).unwrap_or_else(|_| parent.to_path_buf());
        parse_all(&text, &base_dir, &source, Some(path))
    }

    /// The configuration at `path` as one YAML document that loads to the same
    /// policy: includes merged in, file paths absolute (`check --print`).
    pub fn resolved_yaml(path: &Path) -> Result<String, ConfigErrors> {
        print::resolved(path)
    }

    /// The listener called `name`, if any.
    pub fn listener(&self, name: &str) -> Option<&Listener> {
        self.listeners.iter().find(|l| l.name == name)
    }

    /// The backend called `name`, if any. Every `Listener::backend` resolves here.
    pub fn backend(&self, name: &str) -> Option<&Backend> {
        self.backends.iter().find(|b| b.name == name)
    }

    /// Settings that are valid but weaken security or look like mistakes, one line
    /// each, prefixed with the key path. Meant to be logged at startup and printed by
    /// `check`; they never stop the gateway.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, l) in self.listeners.iter().enumerate() {
            let p = format!("listeners[{i}].tls");
            if l.tls.mode == TlsMode::None {
                out.push(format!(
                    "{p}.mode: none leaves client control and data connections unencrypted"
                ));
                continue;
            }
            if l.tls.mode == TlsMode::Explicit && !l.tls.require {
                out.push(format!(
                    "{p}.require: false lets clients send USER/PASS before AUTH TLS"
                ));
            }
            if !l.tls.require_data_reuse {
                out.push(format!(
                    "{p}.require_data_reuse: false accepts data connections that do not resume \
                     the control TLS session (data connection theft)"
                ));
            }
            if l.tls.allow_clear_data {
                out.push(format!(
                    "{p}.allow_clear_data: true lets PROT C data connections go unencrypted; \
                     the first connection from the client's address gets the data \
                     (a neighbour behind the same NAT can take it)"
                ));
            }
        }
        for (i, l) in self.listeners.iter().enumerate() {
            for (j, r) in l.routes.iter().enumerate() {
                let p = format!("listeners[{i}].routes[{j}]");
                let shadow = l.routes[..j].iter().position(|earlier| {
                    let identity = match (&earlier.cert_identity, &r.cert_identity) {
                        (None, _) => true,
                        (Some(e), Some(l)) => pattern_covers(e, l),
                        (Some(_), None) => false,
                    };
                    identity && pattern_covers(&earlier.user, &r.user)
                });
                if r.cert_identity.is_some() && l.tls.client_auth.is_none() {
                    out.push(format!(
                        "{p}.cert_identity: never matches: listener \"{}\" has no tls.client_auth",
                        l.name
                    ));
                }
                if let Some(k) = shadow {
                    out.push(format!(
                        "{p}.user: \"{}\" is never used: every name it matches is matched by \
                         routes[{k}] (\"{}\") first",
                        r.user, l.routes[k].user
                    ));
                }
                if let CommandPolicy::Allow(verbs) | CommandPolicy::Deny(verbs) = &r.commands {
                    for v in verbs {
                        if NEVER_FILTERED.contains(&v.as_str()) {
                            out.push(format!(
                                "{p}.commands: {v} is never filtered (session management)"
                            ));
                        }
                    }
                }
            }
        }
        for (i, b) in self.backends.iter().enumerate() {
            let p = format!("backends[{i}]");
            if b.tls.mode != TlsMode::None {
                if b.tls.verify == BackendVerify::Dangerous {
                    out.push(format!(
                        "{p}.tls.verify: false disables backend certificate verification (lab only)"
                    ));
                }
                if b.tls.data_protection == DataProtection::Clear {
                    out.push(format!(
                        "{p}.tls.data_protection: clear sends file data to the backend unencrypted"
                    ));
                }
            }
            if !self.listeners.iter().any(|l| l.routes_to(&b.name)) {
                out.push(format!(
                    "{p}.name: backend \"{}\" is not used by any listener",
                    b.name
                ));
            }
        }
        out
    }
}

/// Line and column of the value at `key` (`listeners[0].tls`) in the YAML file
/// at `file`, for errors found after the build (TLS material); `None` when the
/// file cannot be read or has no such key.
pub fn position_in_file(file: &Path, key: &str) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(file).ok()?;
    lines::LineMap::of(&text).position(key)
}

impl Config {
    /// The files authentication at the gateway reads, in config order without
    /// duplicates: each `auth.providers[].passwd_file`, LDAP `ca` and
    /// `search.bind_password_file`, then each route's
    /// `backend_login.password_file`. `reload.watch` polls them, so an
    /// `ftpsgate passwd` edit takes effect without a signal.
    pub fn auth_files(&self) -> Vec<std::path::PathBuf> {
        let mut out: Vec<std::path::PathBuf> = Vec::new();
        let mut add = |p: &Path| {
            if !out.iter().any(|q| q == p) {
                out.push(p.to_path_buf());
            }
        };
        for provider in &self.auth {
            match &provider.kind {
                AuthKind::PasswdFile { path, .. } => add(path),
                AuthKind::Ldap(ldap) => {
                    add(&ldap.ca);
                    if let LdapLookup::Search {
                        bind_password_file, ..
                    } = &ldap.lookup
                    {
                        add(bind_password_file);
                    }
                }
            }
        }
        for l in &self.listeners {
            for r in &l.routes {
                if let RouteAuth::Gateway {
                    backend_login: Some(b),
                    ..
                } = &r.auth
                {
                    add(&b.password_file);
                }
            }
        }
        out
    }

    /// Private keys and password files (`auth.providers[].passwd_file`) that
    /// group or others may read, one line each with its key path (reads file
    /// metadata, so it is not part of the pure [`Config::warnings`]). Printed
    /// by `check`, logged at start and reload. (Secrets files that group or
    /// others may read are errors, not warnings: see `backend_login`.)
    pub fn key_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, provider) in self.auth.iter().enumerate() {
            if let AuthKind::PasswdFile { path, .. } = &provider.kind {
                if let Some(mode) = key_exposed(path) {
                    out.push(format!(
                        "auth.providers[{i}].passwd_file: password file {} is readable by group \
                         or others (mode {mode:03o}); its hashes can be attacked offline: \
                         chmod 600 it (owned by the user ftpsgate runs as)",
                        path.display()
                    ));
                }
            }
        }
        for (i, l) in self.listeners.iter().enumerate() {
            let p = format!("listeners[{i}].tls");
            let sni = l.tls.sni.iter().enumerate();
            let keys = l.tls.key.iter().map(|k| (format!("{p}.key"), k));
            let keys = keys.chain(sni.map(|(j, s)| (format!("{p}.sni[{j}].key"), &s.key)));
            for (at, key) in keys {
                if let Some(mode) = key_exposed(key) {
                    out.push(format!(
                        "{at}: private key {} is readable by group or others (mode {mode:03o}); \
                         chmod 600 it (owned by the user ftpsgate runs as)",
                        key.display()
                    ));
                }
            }
        }
        out
    }
}

/// The permission bits of a private key file when group or others may read
/// it; `None` when it is private or cannot be inspected.
fn key_exposed(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o044 != 0).then_some(mode)
}

/// One problem with the configuration, located by its key path.
///
/// Displayed as `PATH: MESSAGE`, or `PATH (line N): MESSAGE` when the line is known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}{}: {message}", line.map(|n| format!(" (line {n})")).unwrap_or_default())]
pub struct ConfigError {
    /// Where: a YAML key path such as `listeners[1].passive.ports`, or for syntax
    /// errors, unknown and repeated keys `SOURCE:LINE:COLUMN` (SOURCE is the file
    /// or `<yaml>`).
    /// Key paths in an included file are prefixed with that file, as written
    /// relative to the top file: `teams/a.yaml: listeners[0].backend`.
    pub path: String,
    /// 1-based line of the offending value (or of the mapping a required key is
    /// missing from) in the file `path` points into; `None` when unknown or
    /// already part of `path` (syntax errors).
    pub line: Option<u64>,
    /// 1-based column beside `line`, when known.
    pub column: Option<u64>,
    /// The key path of an error whose `path` is a `SOURCE:LINE:COLUMN` location
    /// (an unknown or repeated key), so [`ConfigError::located`] can name it.
    pub key: Option<String>,
    /// What is wrong, quoting the offending value.
    pub message: String,
}

impl ConfigError {
    /// One line in the format editors and CI annotate:
    /// `FILE:LINE:COL: key.path: message`. `top` names the top file (as given on
    /// the command line); errors in an included file name that file, relative to
    /// the top file's directory as written there. Position parts that are not
    /// known are left out.
    pub fn located(&self, top: &str) -> String {
        if let Some(key) = &self.key {
            return format!("{}: {key}: {}", self.path, self.message);
        }
        // Syntax errors: `path` is already `SOURCE:LINE:COLUMN` (or just SOURCE).
        if self.line.is_none() && is_location(&self.path) {
            return format!("{}: {}", self.path, self.message);
        }
        let (file, key) = match self.path.split_once(": ") {
            Some((label, key)) => (in_dir_of(top, label), key),
            None => (top.to_owned(), self.path.as_str()),
        };
        let at = match (self.line, self.column) {
            (Some(l), Some(c)) => format!(":{l}:{c}"),
            (Some(l), None) => format!(":{l}"),
            _ => String::new(),
        };
        format!("{file}{at}: {key}: {}", self.message)
    }
}

/// `text` ends in `:LINE:COLUMN`, or names a file with no key path after it.
fn is_location(text: &str) -> bool {
    let mut parts = text.rsplitn(3, ':');
    let column = parts.next().unwrap_or_default();
    let line = parts.next().unwrap_or_default();
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    numeric(column) && numeric(line)
}

/// An included file's label (relative to the top file's directory) as a path an
/// operator can open from where `top` was given.
fn in_dir_of(top: &str, label: &str) -> String {
    match Path::new(top).parent() {
        Some(dir) if !dir.as_os_str().is_empty() && Path::new(label).is_relative() => {
            dir.join(label).display().to_string()
        }
        _ => label.to_owned(),
    }
}

impl ConfigErrors {
    /// Every error as [`ConfigError::located`] renders it, one per line.
    pub fn located(&self, top: &str) -> String {
        self.0
            .iter()
            .map(|e| e.located(top))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Every problem found in one configuration; never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Shared by [`Config::from_yaml_str`] and [`Config::load`]; `source` names the input
/// in syntax error locations.
/// `file` is the top file's path when loading from disk (listed first in
/// [`Config::sources`], and part of include cycle detection).
fn parse(
    yaml: &str,
    base_dir: &Path,
    source: &str,
    file: Option<&Path>,
) -> Result<Config, ConfigErrors> {
    parse_all(yaml, base_dir, source, file).0
}

/// [`parse`], plus the `tls` sections that converted cleanly (empty when the
/// file did not get as far as the build).
fn parse_all(
    yaml: &str,
    base_dir: &Path,
    source: &str,
    file: Option<&Path>,
) -> (Result<Config, ConfigErrors>, TlsSections) {
    let none = TlsSections::default;
    // Unknown and repeated keys are all collected first; they do not stop the
    // phases after them, so one run shows every mistake.
    let mut errors = lines::tree(yaml)
        .map(|t| schema::check(&t, source))
        .unwrap_or_default();
    let raw: raw::RawConfig = match serde_saphyr::from_str_with_options(yaml, read_options()) {
        Ok(raw) => raw,
        Err(e) => {
            errors.push(syntax_error(&e, source));
            return (Err(ConfigErrors(errors)), none());
        }
    };
    let mut tree = match include::gather(raw, yaml, base_dir, file) {
        Ok(tree) => tree,
        Err(more) => {
            errors.extend(more);
            return (Err(ConfigErrors(errors)), none());
        }
    };
    errors.append(&mut tree.key_errors);
    if let Some(file) = file {
        let absolute = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
        tree.sources.insert(0, absolute);
    }
    let (built, tls) = build::build_all(tree);
    let result = match built {
        Ok(config) if errors.is_empty() => Ok(config),
        Ok(_) => Err(ConfigErrors(errors)),
        Err(ConfigErrors(more)) => {
            errors.extend(more);
            Err(ConfigErrors(errors))
        }
    };
    (result, tls)
}

/// How every config file is read: a repeated key is not a serde error (the key
/// check reports it with both lines); the first value is the one used.
pub(crate) fn read_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::FirstWins,
    }
}

/// Turns serde-saphyr's error (syntax, unknown key, wrong shape) into one
/// [`ConfigError`] located at `SOURCE:LINE:COLUMN`.
fn syntax_error(e: &serde_saphyr::Error, source: &str) -> ConfigError {
    // The plain rendering ends in " at line L, column C"; that position moves into
    // `path`, so it is trimmed from the message (kept if the wording ever changes).
    let plain = e.without_snippet().to_string();
    match e.location() {
        Some(loc) => {
            let suffix = format!(" at line {}, column {}", loc.line(), loc.column());
            let message = plain.strip_suffix(&suffix).unwrap_or(&plain).to_owned();
            ConfigError {
                path: format!("{source}:{}:{}", loc.line(), loc.column()),
                line: None,
                column: None,
                key: None,
                message,
            }
        }
        None => ConfigError {
            path: source.to_owned(),
            line: None,
            column: None,
            key: None,
            message: plain,
        },
    }
}
