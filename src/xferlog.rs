//! The transfer log: one line per finished transfer, in the classic
//! wu-ftpd/vsftpd `xferlog` format (or JSON), appended to a configured file.
//!
//! The session hands over a [`TransferRecord`] when a transfer ends; this module
//! only formats and appends. It must never fail or slow down a transfer: I/O
//! errors are logged (once per kind of failure streak) and the record dropped.
//! Passwords never reach it; the record carries the login name only.
//!
//! xferlog fields (space separated, see `xferlog(5)`):
//! `DDD MMM dd hh:mm:ss YYYY secs remote-host bytes path type _ direction
//! access-mode user ftp 0 * status` — times are UTC; characters that would
//! break the field split (whitespace, control characters) become `_`.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::{TransferLogConfig, TransferLogFormat};
use crate::control::Direction;

/// One finished transfer, as the session saw it.
#[derive(Debug, Clone)]
pub struct TransferRecord {
    /// When the transfer ended.
    pub end: SystemTime,
    pub secs: f64,
    pub client_ip: IpAddr,
    /// Bytes relayed on the client leg.
    pub bytes: u64,
    /// The path argument of the transfer command, as sent by the client (lossy UTF-8).
    pub path: String,
    /// `TYPE I` (true) or `TYPE A` (false).
    pub binary: bool,
    pub direction: Direction,
    /// Login name (never the password).
    pub user: String,
    pub listener: String,
    pub backend: String,
    /// `true` when the client got a 2xx final reply.
    pub complete: bool,
}

/// Why the transfer log could not be opened at start.
#[derive(Debug, thiserror::Error)]
#[error("cannot open transfer log {path}: {source}")]
pub struct OpenError {
    pub path: String,
    pub source: std::io::Error,
}

/// Where transfer records go. `None`-like when not configured.
#[derive(Debug, Default)]
pub struct TransferLog {
    /// `None`: disabled. The mutex keeps each line in one `write` call, so
    /// concurrent sessions never interleave within a line.
    sink: Option<Sink>,
}

#[derive(Debug)]
struct Sink {
    file: Mutex<File>,
    format: TransferLogFormat,
    path: String,
    /// Set after a failed write so a full disk logs one warning, not one per transfer.
    failing: AtomicBool,
}

impl TransferLog {
    /// A log that drops every record.
    pub fn disabled() -> TransferLog {
        TransferLog::default()
    }

    /// Opens (creating if needed) the configured file for appending.
    pub fn open(cfg: &TransferLogConfig) -> Result<TransferLog, OpenError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&cfg.path)
            .map_err(|source| OpenError {
                path: cfg.path.display().to_string(),
                source,
            })?;
        Ok(TransferLog {
            sink: Some(Sink {
                file: Mutex::new(file),
                format: cfg.format,
                path: cfg.path.display().to_string(),
                failing: AtomicBool::new(false),
            }),
        })
    }

    /// What `ftpsgate check` does instead of [`Self::open`]: checks that the
    /// file could be opened for appending, creating and changing nothing (a
    /// check run as root must not leave a root-owned log behind). An
    /// existing file must be writable; otherwise its directory must exist
    /// and be writable. Uses the effective user, as the service would.
    pub fn check_writable(cfg: &TransferLogConfig) -> Result<(), OpenError> {
        use rustix::fs::{accessat, Access, AtFlags, CWD};
        let err = |source: std::io::Error| OpenError {
            path: cfg.path.display().to_string(),
            source,
        };
        let writable = |p: &std::path::Path, mode: Access| {
            accessat(CWD, p, mode, AtFlags::EACCESS).map_err(|e| err(e.into()))
        };
        match std::fs::metadata(&cfg.path) {
            Ok(m) if m.is_dir() => Err(err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "is a directory",
            ))),
            Ok(_) => writable(&cfg.path, Access::WRITE_OK),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let dir = match cfg.path.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d,
                    _ => std::path::Path::new("."),
                };
                writable(dir, Access::WRITE_OK | Access::EXEC_OK)
            }
            Err(e) => Err(err(e)),
        }
    }

    /// Whether records are written anywhere.
    pub fn is_enabled(&self) -> bool {
        self.sink.is_some()
    }

    /// Append one record. Never fails the transfer: I/O errors are logged.
    pub fn record(&self, rec: &TransferRecord) {
        let Some(sink) = &self.sink else { return };
        let line = match sink.format {
            TransferLogFormat::Xferlog => xferlog_line(rec),
            TransferLogFormat::Json => json_line(rec),
        };
        // A poisoned lock only means another thread panicked mid-write; the file
        // handle itself is still usable.
        let mut file = sink.file.lock().unwrap_or_else(|p| p.into_inner());
        match file.write_all(line.as_bytes()) {
            Ok(()) => {
                if sink.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(path = %sink.path, "transfer log writable again");
                }
            }
            Err(e) => {
                if !sink.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(path = %sink.path, error = %e, "cannot write transfer log; records are dropped");
                }
            }
        }
    }
}

/// One classic xferlog line, newline included.
pub fn xferlog_line(rec: &TransferRecord) -> String {
    let (direction, access) = (
        match rec.direction {
            Direction::Download => 'o',
            Direction::Upload => 'i',
        },
        // wu-ftpd: a = anonymous, r = real user; the gateway cannot see guests.
        if is_anonymous(&rec.user) { 'a' } else { 'r' },
    );
    // xferlog's transfer time is whole seconds; vsftpd writes at least 1.
    let secs = rec.secs.round().max(1.0) as u64;
    format!(
        "{time} {secs} {host} {bytes} {path} {kind} _ {direction} {access} {user} ftp 0 * {status}\n",
        time = ctime_utc(rec.end),
        host = rec.client_ip,
        bytes = rec.bytes,
        path = field(&rec.path),
        kind = if rec.binary { 'b' } else { 'a' },
        user = field(&rec.user),
        status = if rec.complete { 'c' } else { 'i' },
    )
}

/// One JSON object per line, newline included.
pub fn json_line(rec: &TransferRecord) -> String {
    let mut out = String::with_capacity(256);
    out.push('{');
    let _ = write!(out, "\"time\":\"{}\"", rfc3339_utc(rec.end));
    let _ = write!(out, ",\"duration_seconds\":{:.3}", rec.secs.max(0.0));
    let _ = write!(out, ",\"client_ip\":\"{}\"", rec.client_ip);
    let _ = write!(out, ",\"bytes\":{}", rec.bytes);
    out.push_str(",\"path\":");
    json_str(&mut out, &rec.path);
    let _ = write!(
        out,
        ",\"type\":\"{}\"",
        if rec.binary { "binary" } else { "ascii" }
    );
    let _ = write!(out, ",\"direction\":\"{}\"", direction_word(rec.direction));
    out.push_str(",\"user\":");
    json_str(&mut out, &rec.user);
    out.push_str(",\"listener\":");
    json_str(&mut out, &rec.listener);
    out.push_str(",\"backend\":");
    json_str(&mut out, &rec.backend);
    let _ = write!(out, ",\"complete\":{}", rec.complete);
    out.push_str("}\n");
    out
}

/// The JSON `direction` value.
fn direction_word(direction: Direction) -> &'static str {
    match direction {
        Direction::Download => "download",
        Direction::Upload => "upload",
    }
}

fn is_anonymous(user: &str) -> bool {
    user.eq_ignore_ascii_case("anonymous") || user.eq_ignore_ascii_case("ftp")
}

/// A value safe for one space-separated field: never empty, no whitespace,
/// control (C0, DEL, C1) or bidi/format characters (a file name with a
/// newline must not forge a second line, nor one with U+202E reorder it).
fn field(s: &str) -> String {
    if s.is_empty() {
        return "-".into();
    }
    s.chars()
        .map(|c| {
            if c.is_whitespace() || crate::logsafe::is_unsafe(c) {
                '_'
            } else {
                c
            }
        })
        .collect()
}

fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if crate::logsafe::is_unsafe(c) => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// UTC civil time of `t`: (year, month 1-12, day, hour, minute, second, weekday 0=Sunday).
fn civil(t: SystemTime) -> (i64, u32, u32, u32, u32, u32, u32) {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u32;
    // Days → civil date (proleptic Gregorian), after Howard Hinnant's `civil_from_days`.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    // 1970-01-01 was a Thursday (4).
    let weekday = (days + 4).rem_euclid(7) as u32;
    (
        year,
        month,
        day,
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        weekday,
    )
}

/// `Thu Mar  4 08:12:30 2004`, the `ctime(3)` layout xferlog uses.
fn ctime_utc(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s, wd) = civil(t);
    format!(
        "{} {} {d:>2} {h:02}:{mi:02}:{s:02} {y}",
        DAYS[wd as usize],
        MONTHS[(mo - 1) as usize]
    )
}

/// `2004-03-04T08:12:30.123Z`.
fn rfc3339_utc(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, _) = civil(t);
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_millis())
        .unwrap_or(0);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn record() -> TransferRecord {
        TransferRecord {
            // 2004-03-04 08:12:30.250 UTC
            end: UNIX_EPOCH + Duration::from_millis(1_078_387_950_250),
            secs: 0.2,
            client_ip: "192.0.2.7".parse().unwrap(),
            bytes: 37,
            path: "/incoming/my file\n.txt".into(),
            binary: false,
            direction: Direction::Download,
            user: "ftpuser".into(),
            listener: "edge".into(),
            backend: "legacy".into(),
            complete: true,
        }
    }

    #[test]
    fn xferlog_line_matches_the_classic_layout() {
        assert_eq!(
            xferlog_line(&record()),
            "Thu Mar  4 08:12:30 2004 1 192.0.2.7 37 /incoming/my_file_.txt a _ o r ftpuser ftp 0 * c\n"
        );
        let mut r = record();
        r.direction = Direction::Upload;
        r.binary = true;
        r.complete = false;
        r.user = "anonymous".into();
        r.secs = 12.6;
        r.path = String::new();
        assert_eq!(
            xferlog_line(&r),
            "Thu Mar  4 08:12:30 2004 13 192.0.2.7 37 - b _ i a anonymous ftp 0 * i\n"
        );
    }

    #[test]
    fn hostile_fields_are_escaped_in_both_formats() {
        let mut r = record();
        r.user = "root\x1b[2J\u{202E}nimda".into();
        r.path = "/a\u{85}b\u{2028}c\x7f".into();
        let line = xferlog_line(&r);
        assert!(line.contains(" /a_b_c_ "), "{line}");
        assert!(line.contains(" root_[2J_nimda ftp "), "{line}");
        assert_eq!(line.matches('\n').count(), 1);
        let json = json_line(&r);
        assert!(
            json.contains(r#""user":"root\u001b[2J\u202enimda""#),
            "{json}"
        );
        assert!(
            json.contains(r#""path":"/a\u0085b\u2028c\u007f""#),
            "{json}"
        );
        assert!(!json
            .trim_end_matches('\n')
            .chars()
            .any(crate::logsafe::is_unsafe));
    }

    #[test]
    fn json_line_escapes_and_uses_utc() {
        assert_eq!(
            json_line(&record()),
            "{\"time\":\"2004-03-04T08:12:30.250Z\",\"duration_seconds\":0.200,\
             \"client_ip\":\"192.0.2.7\",\"bytes\":37,\"path\":\"/incoming/my file\\n.txt\",\
             \"type\":\"ascii\",\"direction\":\"download\",\"user\":\"ftpuser\",\
             \"listener\":\"edge\",\"backend\":\"legacy\",\"complete\":true}\n"
        );
    }

    #[test]
    fn civil_dates_across_leap_years_and_epoch() {
        assert_eq!(ctime_utc(UNIX_EPOCH), "Thu Jan  1 00:00:00 1970");
        // 2024-02-29 23:59:59 UTC, a Thursday.
        let t = UNIX_EPOCH + Duration::from_secs(1_709_251_199);
        assert_eq!(ctime_utc(t), "Thu Feb 29 23:59:59 2024");
        assert_eq!(rfc3339_utc(t), "2024-02-29T23:59:59.000Z");
    }

    #[test]
    fn open_appends_and_disabled_drops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("xferlog");
        std::fs::write(&path, "old\n").unwrap();
        let log = TransferLog::open(&TransferLogConfig {
            path: path.clone(),
            format: TransferLogFormat::Xferlog,
        })
        .unwrap();
        assert!(log.is_enabled());
        log.record(&record());
        log.record(&record());
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.starts_with("old\n"));
        TransferLog::disabled().record(&record());
        assert!(!TransferLog::disabled().is_enabled());
        let err = TransferLog::open(&TransferLogConfig {
            path: dir.path().join("missing/xferlog"),
            format: TransferLogFormat::Json,
        })
        .unwrap_err();
        assert!(err.to_string().contains("missing/xferlog"), "{err}");
    }

    #[test]
    fn check_writable_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = |p: std::path::PathBuf| TransferLogConfig {
            path: p,
            format: TransferLogFormat::Xferlog,
        };
        let fresh = dir.path().join("xferlog");
        TransferLog::check_writable(&cfg(fresh.clone())).unwrap();
        assert!(!fresh.exists(), "check created the log");
        let err =
            TransferLog::check_writable(&cfg(dir.path().join("missing/xferlog"))).unwrap_err();
        assert!(err.to_string().contains("missing/xferlog"), "{err}");
        let err = TransferLog::check_writable(&cfg(dir.path().to_path_buf())).unwrap_err();
        assert!(err.to_string().contains("directory"), "{err}");
        std::fs::write(&fresh, "old\n").unwrap();
        TransferLog::check_writable(&cfg(fresh.clone())).unwrap();
        assert_eq!(std::fs::read_to_string(&fresh).unwrap(), "old\n");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }
}
