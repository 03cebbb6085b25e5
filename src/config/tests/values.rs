//! Single-value parsers (`build/values.rs`, `duration.rs`): durations, enumerations,
//! booleans.

use std::time::Duration;

use super::*;
use crate::config::duration;

#[test]
fn duration_parser_units_and_limits() {
    assert_eq!(duration::parse("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(duration::parse("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(duration::parse("5m"), Ok(Duration::from_secs(300)));
    assert_eq!(duration::parse("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(duration::parse("45"), Ok(Duration::from_secs(45)));
    for bad in [
        "",
        "s",
        "ms",
        "1.5s",
        "-3s",
        "+5",
        "10 s",
        "10sec",
        "5d",
        "99999999999999999999",
    ] {
        let e = duration::parse(bad).expect_err(bad);
        assert!(e.contains("is not a duration"), "{bad}: {e}");
    }
    assert_eq!(
        duration::parse("18446744073709551615h"),
        Err("\"18446744073709551615h\" is too large".into())
    );
}

#[test]
fn bad_enumerations_and_booleans() {
    let dir = certs();
    let yaml = EXAMPLE
        .replace("mode: explicit\n      cert", "mode: auto\n      cert")
        .replace("require: true", "require: yes")
        .replace(
            "min_version: \"1.2\"\n    passive",
            "min_version: 1.1\n    passive",
        )
        .replace("data_protection: private", "data_protection: safe");
    assert_eq!(
        errors(&yaml, dir.path()),
        [
            "listeners[0].tls.mode: \"auto\" is not a TLS mode (expected explicit, implicit or none)",
            "listeners[0].tls.require: \"yes\" is not a boolean (expected true or false)",
            "listeners[0].tls.min_version: \"1.1\" is not a TLS version (expected \"1.2\" or \"1.3\")",
            "backends[0].tls.data_protection: \"safe\" is not a data protection level (expected private or clear)",
        ]
    );
}
