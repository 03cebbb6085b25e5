//! Gateway authentication families: password checks done by the gateway
//! itself (`auth: gateway` routes), by provider and result. Recorded by the
//! session driver; the provider label is a configured `auth.providers` name,
//! the result a closed set ([`AuthResult`]) — never the user name.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::Metrics;

/// How one check went: the `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthResult {
    /// The password was right.
    Ok,
    /// Unknown user or wrong password (not told apart).
    BadCredentials,
    /// The provider could not answer (LDAP down, TLS, timeout).
    Unavailable,
}

impl AuthResult {
    /// The `result` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthResult::Ok => "ok",
            AuthResult::BadCredentials => "bad_credentials",
            AuthResult::Unavailable => "unavailable",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct AuthLabels {
    provider: String,
    result: &'static str,
}

/// The auth area's family handles (the registry holds clones).
#[derive(Debug)]
pub(super) struct Families {
    checks: Family<AuthLabels, Counter>,
}

impl Families {
    pub(super) fn register(r: &mut Registry) -> Families {
        let f = Families {
            checks: Family::default(),
        };
        r.register(
            "gateway_auth",
            "Passwords checked by the gateway (auth: gateway routes), by provider and result",
            f.checks.clone(),
        );
        f
    }
}

impl Metrics {
    /// `ftpsgate_gateway_auth_total{provider, result}`.
    pub fn gateway_auth(&self, provider: &str, result: AuthResult) {
        self.auth
            .checks
            .get_or_create(&AuthLabels {
                provider: provider.to_owned(),
                result: result.as_str(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_auth_series_carry_provider_and_result() {
        let m = Metrics::new();
        m.gateway_auth("local", AuthResult::BadCredentials);
        m.gateway_auth("local", AuthResult::Ok);
        m.gateway_auth("corp", AuthResult::Unavailable);
        let text = m.encode();
        for series in [
            "ftpsgate_gateway_auth_total{provider=\"local\",result=\"bad_credentials\"} 1",
            "ftpsgate_gateway_auth_total{provider=\"local\",result=\"ok\"} 1",
            "ftpsgate_gateway_auth_total{provider=\"corp\",result=\"unavailable\"} 1",
        ] {
            assert!(text.contains(series), "{series} missing:\n{text}");
        }
    }
}
