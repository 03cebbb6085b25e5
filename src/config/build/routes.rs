//! Who may connect and where a login goes: `access` rules (global and per
//! listener), `listeners[].routes` (user and certificate identity patterns,
//! backends, balance) and their
//! `commands` filter.
//!
//! A new access or routing key goes here; the decisions made with these values
//! (matching, routing, filtering) belong to `policy`, not to the builder.

use std::collections::HashSet;

use super::values::{parse_balance, parse_network, parse_user, parse_verb};
use super::{Builder, Reported};
use crate::config::raw::{RawAccessRule, RawCommands, RawRoute};
use crate::config::typed::{AccessRule, Action, CommandPolicy, Route};

impl<'a> Builder<'a> {
    /// An `access` list: each rule has exactly one of `allow`/`deny`, a non-empty
    /// list of CIDR networks (a bare address means that one host).
    pub(super) fn access(
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

    /// `listeners[i].routes`: each needs `user` and defined `backends`.
    pub(super) fn routes(
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

    pub(super) fn route(
        &mut self,
        p: &str,
        raw: &RawRoute,
        defined: &HashSet<&str>,
    ) -> Result<Route, Reported> {
        let user = self.required(&format!("{p}.user"), raw.user.as_deref(), parse_user);
        let cert_identity = self.optional(
            &format!("{p}.cert_identity"),
            raw.cert_identity.as_deref(),
            parse_user,
        );
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
        let auth = self.route_auth(p, raw);
        Ok(Route {
            user: user?,
            cert_identity: cert_identity?,
            backends: backends?,
            balance: balance?.unwrap_or_default(),
            commands: commands?,
            auth: auth?,
        })
    }

    /// `routes[j].commands`: exactly one of `allow` or `deny`, verbs upper-cased.
    pub(super) fn commands(
        &mut self,
        p: &str,
        raw: Option<&RawCommands>,
    ) -> Result<CommandPolicy, Reported> {
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
}
