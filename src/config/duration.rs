//! Duration values of the `timeouts` section: `"500ms"`, `"30s"`, `"5m"`, `"1h"`, or a
//! bare integer meaning seconds.
//!
//! Deliberately small: whole numbers only, one unit, no spaces, no fractions, so a
//! value reads the same to every operator. Zero is refused because every duration here
//! is a timeout, and a zero timeout would fail each connection at once.

use std::time::Duration;

/// Parses one duration, or says why not in words meant for `ConfigError::message`.
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    let not_duration = || {
        format!(
            "\"{text}\" is not a duration (expected e.g. \"500ms\", \"30s\", \"5m\", \"1h\" \
             or a number of seconds)"
        )
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(not_duration());
    }
    let n: u64 = digits.parse().map_err(|_| not_duration())?;
    let duration = match unit {
        "ms" => Some(Duration::from_millis(n)),
        "" | "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => return Err(not_duration()),
    };
    match duration {
        None => Err(format!("\"{text}\" is too large")),
        Some(d) if d.is_zero() => Err(format!("\"{text}\" must be greater than zero")),
        Some(d) => Ok(d),
    }
}
