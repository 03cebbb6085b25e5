//! Process families: configuration reloads and when the running configuration
//! was loaded, and the build the process runs.
//!
//! Recorded by the gateway (start, reload) and `main.rs` (a reload whose
//! files do not parse).

use std::sync::atomic::AtomicU64;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{ok_label, Metrics};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

/// The configuration area's family handles (the registry holds clones).
#[derive(Debug)]
pub(super) struct Families {
    reloads: Family<ResultLabels, Counter>,
    loaded: Gauge<f64, AtomicU64>,
    /// 1 while the last reload was applied (or none was tried), 0 from a
    /// refused reload until the next good one: the running policy is stale.
    last_reload_ok: Gauge,
    build_info: Family<VersionLabels, Gauge>,
}

impl Families {
    pub(super) fn register(r: &mut Registry) -> Families {
        let f = Families {
            reloads: Family::default(),
            loaded: Gauge::default(),
            last_reload_ok: Gauge::default(),
            build_info: Family::default(),
        };
        r.register(
            "config_reloads",
            "Configuration reloads, by result",
            f.reloads.clone(),
        );
        r.register(
            "config_last_load_timestamp_seconds",
            "Unix time the running configuration was loaded",
            f.loaded.clone(),
        );
        r.register(
            "config_last_reload_successful",
            "1 if the last reload was applied (or none was tried), 0 from a refused reload until a good one",
            f.last_reload_ok.clone(),
        );
        f.last_reload_ok.set(1);
        r.register(
            "build_info",
            "Always 1; the version label says which ftpsgate runs",
            f.build_info.clone(),
        );
        // Series that alerts use with rate() exist from the start, at 0.
        for result in ["ok", "failed"] {
            drop(f.reloads.get_or_create(&ResultLabels { result }));
        }
        f.build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        f
    }
}

impl Metrics {
    /// `ftpsgate_config_last_load_timestamp_seconds` = now.
    pub fn config_loaded(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.config.loaded.set(now);
    }

    /// `ftpsgate_config_reloads_total{result}` +1 and
    /// `ftpsgate_config_last_reload_successful` = `ok` (it stays 0 after a
    /// refused reload until one is applied).
    pub fn config_reload(&self, ok: bool) {
        self.config.last_reload_ok.set(i64::from(ok));
        self.config
            .reloads
            .get_or_create(&ResultLabels {
                result: ok_label(ok),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::super::sample;
    use super::*;

    #[test]
    fn reloads_exist_at_zero_and_count_by_result() {
        let m = Metrics::new();
        let text = m.encode();
        assert_eq!(
            sample(&text, "ftpsgate_config_reloads_total{result=\"ok\"}"),
            Some(0.0)
        );
        m.config_reload(false);
        m.config_loaded();
        let text = m.encode();
        assert_eq!(
            sample(&text, "ftpsgate_config_reloads_total{result=\"failed\"}"),
            Some(1.0)
        );
        assert!(
            sample(&text, "ftpsgate_config_last_load_timestamp_seconds").is_some_and(|t| t > 0.0),
            "{text}"
        );
    }

    #[test]
    fn a_refused_reload_stays_visible_until_a_good_one() {
        let m = Metrics::new();
        let ok = |m: &Metrics| sample(&m.encode(), "ftpsgate_config_last_reload_successful");
        assert_eq!(ok(&m), Some(1.0), "no reload tried yet");
        m.config_reload(false);
        assert_eq!(ok(&m), Some(0.0));
        m.config_reload(false);
        assert_eq!(ok(&m), Some(0.0));
        m.config_reload(true);
        assert_eq!(ok(&m), Some(1.0));
    }
}
