//! TLS material and settings: a listener's `tls` (mode, cert/key, `sni` certs,
//! versions, `require`, `require_data_reuse`) and a backend's `tls` (mode, `ca`,
//! `pin_sha256`, `verify: false`, `server_name`, versions, `data_protection`).
//!
//! Also `tls.client_auth` (client certificates: `ca`, `mode`, `crl`, `identity`,
//! `require_user_match`) and a backend's `cert`/`key` (its client certificate).
//!
//! Files are only checked to exist here; loading them into rustls is `tls/`'s job
//! (`tls::check_sections` reports a bad CA or CRL at its own key, from the
//! [`ClientAuthFile`] sections recorded here).
//! A new TLS key goes here, refused with `TLS_ONLY` when `mode` is `none`.

use std::collections::HashMap;
use std::path::PathBuf;

use super::values::{
    existing_file, parse_bool, parse_data_protection, parse_mode, parse_pin, parse_reuse_scope,
    parse_server_name, parse_sni_name, parse_version,
};
use super::{Builder, Parsed, Reported};
use crate::config::raw::{RawBackendTls, RawClientAuth, RawListenerTls, RawPins, RawSniCert};
use crate::config::typed::{
    BackendTls, BackendVerify, CertIdentity, ClientAuth, ClientAuthMode, ClientCert,
    DataProtection, ListenerTls, ReuseScope, SniCert, TlsMode, TlsVersion,
};

/// A file of a `client_auth` section, for `tls::check_sections` to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuthFile {
    /// `client_auth.ca`.
    Ca(PathBuf),
    /// One of `client_auth.crl`, with the section's CA (a CRL is checked
    /// against the CAs it is used with).
    Crl {
        /// The section's `ca`.
        ca: PathBuf,
        /// The CRL file.
        crl: PathBuf,
    },
}

fn parse_client_auth_mode(s: &str) -> Result<ClientAuthMode, String> {
    match s {
        "required" => Ok(ClientAuthMode::Required),
        "optional" => Ok(ClientAuthMode::Optional),
        _ => Err(format!(
            "\"{s}\" is not a client_auth mode (expected required or optional)"
        )),
    }
}

fn parse_cert_identity(s: &str) -> Result<CertIdentity, String> {
    match s {
        "cn" => Ok(CertIdentity::Cn),
        "san_email" => Ok(CertIdentity::SanEmail),
        "san_dns" => Ok(CertIdentity::SanDns),
        _ => Err(format!(
            "\"{s}\" is not a certificate identity (expected cn, san_email or san_dns)"
        )),
    }
}

const TLS_ONLY: &str = "only allowed when mode is explicit or implicit";

impl<'a> Builder<'a> {
    /// `tls.client_auth`: `ca` is required, `mode` defaults to `required`,
    /// `identity` to `cn`; every file must exist. Its files are recorded for
    /// `check` (see [`ClientAuthFile`]).
    pub(super) fn client_auth(
        &mut self,
        p: &str,
        raw: &RawClientAuth,
    ) -> Result<ClientAuth, Reported> {
        let base = self.base_dir;
        let ca = self.required(&format!("{p}.ca"), raw.ca.as_deref(), |s| {
            existing_file(base, s)
        });
        let mode = self.optional(
            &format!("{p}.mode"),
            raw.mode.as_deref(),
            parse_client_auth_mode,
        );
        let identity = self.optional(
            &format!("{p}.identity"),
            raw.identity.as_deref(),
            parse_cert_identity,
        );
        let user_match = self.optional(
            &format!("{p}.require_user_match"),
            raw.require_user_match.as_deref(),
            parse_bool,
        );
        let mut crl = Vec::new();
        let mut crl_failed = false;
        for (i, s) in raw.crl.iter().flatten().enumerate() {
            match self.required(&format!("{p}.crl[{i}]"), Some(s), |s| {
                existing_file(base, s)
            }) {
                Ok(path) => crl.push(path),
                Err(Reported) => crl_failed = true,
            }
        }
        let (ca, mode, identity, user_match) = (ca?, mode?, identity?, user_match?);
        if crl_failed {
            return Err(Reported);
        }
        let at = |b: &Self, path: &str| b.position(path);
        let ca_path = format!("{p}.ca");
        let entry = (
            ca_path.clone(),
            at(self, &ca_path),
            ClientAuthFile::Ca(ca.clone()),
        );
        self.tls.client_auth.push(entry);
        for (i, c) in crl.iter().enumerate() {
            let path = format!("{p}.crl[{i}]");
            let file = ClientAuthFile::Crl {
                ca: ca.clone(),
                crl: c.clone(),
            };
            let entry = (path.clone(), at(self, &path), file);
            self.tls.client_auth.push(entry);
        }
        Ok(ClientAuth {
            ca,
            mode: mode.unwrap_or(ClientAuthMode::Required),
            crl,
            identity: identity.unwrap_or(CertIdentity::Cn),
            require_user_match: user_match.unwrap_or(false),
        })
    }

    /// `tls.sni`: names are unique within the listener; files must exist.
    pub(super) fn sni(&mut self, p: &str, raw: &[RawSniCert]) -> Result<Vec<SniCert>, Reported> {
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

    pub(super) fn listener_tls(
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
        let scope = self.optional(
            &key_path("data_reuse_scope"),
            raw.data_reuse_scope.as_deref(),
            parse_reuse_scope,
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
        let prefer_aes128 = self.optional(
            &key_path("prefer_aes128"),
            raw.prefer_aes128.as_deref(),
            parse_bool,
        );
        let sni = match raw.sni.as_deref() {
            Some(list) if raw.mode.as_deref() != Some("none") => self.sni(&key_path("sni"), list),
            _ => Ok(Vec::new()),
        };
        let client_auth = match raw.client_auth.as_ref() {
            Some(ca) if raw.mode.as_deref() != Some("none") => {
                self.client_auth(&key_path("client_auth"), ca).map(Some)
            }
            _ => Ok(None),
        };
        let mode = mode?;

        if mode == TlsMode::None {
            let mut refused = false;
            for (k, given) in [
                ("cert", raw.cert.is_some()),
                ("key", raw.key.is_some()),
                ("min_version", raw.min_version.is_some()),
                ("max_version", raw.max_version.is_some()),
                ("prefer_aes128", raw.prefer_aes128.is_some()),
                ("sni", raw.sni.is_some()),
                ("data_reuse_scope", raw.data_reuse_scope.is_some()),
                ("client_auth", raw.client_auth.is_some()),
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
                data_reuse_scope: ReuseScope::Session,
                min_version: TlsVersion::Tls12,
                max_version: TlsVersion::Tls13,
                allow_ccc: false,
                // Without TLS there is nothing else.
                allow_clear_data: true,
                prefer_aes128: false,
                sni: Vec::new(),
                client_auth: None,
            });
        }

        let cert = self.needed_with_tls(&key_path("cert"), cert, mode);
        let key = self.needed_with_tls(&key_path("key"), key, mode);
        let (min_version, max_version) =
            self.version_range(&key_path("max_version"), min_version, max_version)?;
        let require = require?.unwrap_or(true);
        let client_auth = client_auth?;
        let required_cert = client_auth
            .as_ref()
            .is_some_and(|c| c.mode == ClientAuthMode::Required);
        if required_cert && mode == TlsMode::Explicit && !require {
            // A login in clear would never show a certificate.
            self.error(
                &key_path("require"),
                "must be true with client_auth mode required (a login without AUTH TLS would skip the certificate)",
            );
            return Err(Reported);
        }
        Ok(ListenerTls {
            mode,
            cert: Some(cert?),
            key: Some(key?),
            require,
            require_data_reuse: reuse?.unwrap_or(true),
            data_reuse_scope: scope?.unwrap_or(ReuseScope::User),
            min_version,
            max_version,
            allow_ccc: allow_ccc?.unwrap_or(false),
            allow_clear_data: allow_clear_data?.unwrap_or(false),
            prefer_aes128: prefer_aes128?.unwrap_or(false),
            sni: sni?,
            client_auth,
        })
    }

    /// `min_version`/`max_version` with their defaults (1.2, 1.3); a maximum
    /// below the minimum is reported at `max_path`.
    pub(super) fn version_range(
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
    pub(super) fn needed_with_tls<T>(
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

    /// `host` is the address' host, `None` when the address itself was refused.
    pub(super) fn backend_tls(
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
        let client_cert = self.backend_client_cert(p, raw);
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
                ("cert", raw.cert.is_some()),
                ("key", raw.key.is_some()),
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
                client_cert: None,
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
            client_cert: client_cert?,
        })
    }

    /// A backend's `cert` and `key` (its client certificate): both or neither.
    fn backend_client_cert(
        &mut self,
        p: &str,
        raw: &RawBackendTls,
    ) -> Result<Option<ClientCert>, Reported> {
        let base = self.base_dir;
        let cert = self.optional(&format!("{p}.cert"), raw.cert.as_deref(), |s| {
            existing_file(base, s)
        });
        let key = self.optional(&format!("{p}.key"), raw.key.as_deref(), |s| {
            existing_file(base, s)
        });
        match (cert?, key?) {
            (Some(cert), Some(key)) => Ok(Some(ClientCert { cert, key })),
            (None, None) => Ok(None),
            (Some(_), None) => {
                self.error(&format!("{p}.key"), "is required with cert");
                Err(Reported)
            }
            (None, Some(_)) => {
                self.error(&format!("{p}.cert"), "is required with key");
                Err(Reported)
            }
        }
    }

    /// Exactly one of `ca`, `pin_sha256` or `verify: false` must be given with TLS: a
    /// backend connection that silently trusts anything must be asked for by name.
    pub(super) fn backend_verify(
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
    pub(super) fn pins(&mut self, path: &str, raw: Option<&RawPins>) -> Parsed<Vec<[u8; 32]>> {
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
}
