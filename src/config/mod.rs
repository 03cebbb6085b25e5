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
mod raw;
mod typed;

#[cfg(test)]
pub(crate) mod tests;

use std::fmt;
use std::path::Path;

pub use typed::{
    AccessRule, Action, Active, AdvertiseRule, Backend, BackendTls, BackendVerify, Balance,
    CommandPolicy, Config, ControlConfig, DataMode, DataProtection, FailedLogins, HealthCheck,
    Limits, Listener, ListenerLimits, ListenerTls, MetricsConfig, Nftables, Passive, PortRange,
    PortRangeError, PortShare, ProxyProtocol, ProxyVersion, Reload, ReuseScope, Route, SniCert,
    Timeouts, TlsMode, TlsVersion, TransferLogConfig, TransferLogFormat, DEFAULT_IPV6_PREFIX,
    NEVER_FILTERED,
};

use pattern::pattern_covers;
pub use pattern::user_matches;

/// Name used as the error location for YAML that did not come from a file.
const INLINE_SOURCE: &str = "<yaml>";

impl Config {
    /// Parses and validates `yaml`; relative file paths (`cert`, `key`, `ca`) are
    /// resolved against `base_dir` and must exist.
    ///
    /// Syntax errors and unknown keys come back as a single error located at
    /// `<yaml>:LINE:COLUMN`; otherwise every semantic error is reported, each under
    /// its key path (`listeners[0].passive.ports`).
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
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                path: source.clone(),
                line: None,
                message: format!("cannot read config file: {e}"),
            }])
        })?;
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        // `absolute` only fails for an empty path or an unreadable working directory;
        // the relative directory still resolves correctly for this process then.
        let base_dir = std::path::absolute(parent).unwrap_or_else(|_| parent.to_path_buf());
        parse(&text, &base_dir, &source, Some(path))
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
                let shadow = l.routes[..j]
                    .iter()
                    .position(|earlier| pattern_covers(&earlier.user, &r.user));
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

impl Config {
    /// Private keys that group or others may read, one line each with its key
    /// path (reads file metadata, so it is not part of the pure
    /// [`Config::warnings`]). Printed by `check`, logged at start and reload.
    pub fn key_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, l) in self.listeners.iter().enumerate() {
            let p = format!("listeners[{i}].tls");
            let sni = l.tls.sni.iter().enumerate();
            let keys = l.tls.key.iter().map(|k| (format!("{p}.key"), k));
            let keys = keys.chain(sni.map(|(j, s)| (format!("{p}.sni[{j}].key"), &s.key)));
            for (at, key) in keys {
                if let Some(mode) = key_exposed(key) {
                    out.push(format!(
                        "{at}: private key {} is readable by group or others (mode {mode:03o}); \
                         chmod 600 it",
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
    /// errors and unknown keys `SOURCE:LINE:COLUMN` (SOURCE is the file or `<yaml>`).
    /// Key paths in an included file are prefixed with that file, as written
    /// relative to the top file: `teams/a.yaml: listeners[0].backend`.
    pub path: String,
    /// 1-based line of the offending value (or of the mapping a required key is
    /// missing from) in the file `path` points into; `None` when unknown or
    /// already part of `path` (syntax errors).
    pub line: Option<u64>,
    /// What is wrong, quoting the offending value.
    pub message: String,
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
    let raw: raw::RawConfig =
        serde_saphyr::from_str(yaml).map_err(|e| ConfigErrors(vec![syntax_error(&e, source)]))?;
    let mut tree = include::gather(raw, yaml, base_dir, file).map_err(ConfigErrors)?;
    if let Some(file) = file {
        let absolute = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
        tree.sources.insert(0, absolute);
    }
    build::build(tree)
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
                message,
            }
        }
        None => ConfigError {
            path: source.to_owned(),
            line: None,
            message: plain,
        },
    }
}
