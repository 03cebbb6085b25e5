//! Where log lines go and how they look: stderr, as text (colour only on a
//! terminal), one JSON object per line, or text with syslog priority
//! prefixes (`<4>…`) that journald turns into the entry's priority, so
//! `journalctl -p warning -u ftpsgate` finds the gateway's warnings.
//!
//! Set up once by `main.rs`; the rest of the crate only calls `tracing`.
//! Field values go through `logsafe` in every format (client text is escaped).

use std::io::IsTerminal;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// `--log-format`. `Text` becomes `Journald` when stderr is the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Human-readable; ANSI colour only when stderr is a terminal.
    Text,
    /// One JSON object per line (unchanged from earlier releases).
    Json,
    /// Text without colour or timestamp (journald adds its own), each line
    /// prefixed with its syslog priority (sd-daemon(3) `SD_WARNING` style).
    Journald,
}

/// The default filter when `RUST_LOG` is not set.
const DEFAULT_FILTER: &str = "info,libunftp=warn,rustls=error";

/// Install the global subscriber writing to stderr.
pub fn init(format: Format) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let format = match format {
        Format::Text if stderr_is_journal() => Format::Journald,
        f => f,
    };
    // User names, paths and SNI come from clients: every field is escaped
    // (`logsafe`: text, each value as it is formatted; JSON, each line).
    match format {
        Format::Text => builder
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .fmt_fields(crate::logsafe::text_fields())
            .init(),
        Format::Json => builder
            .with_writer(|| crate::logsafe::SafeWriter(std::io::stderr()))
            .json()
            // The gateway has one span (the session): its fields are in
            // "span" already; the list would repeat them on every line.
            .with_span_list(false)
            .init(),
        Format::Journald => builder
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .fmt_fields(crate::logsafe::text_fields())
            .event_format(SyslogPrefix(
                tracing_subscriber::fmt::format().without_time(),
            ))
            .init(),
    }
}

/// systemd sets `JOURNAL_STREAM=DEV:INODE` when stdout/stderr go to the
/// journal (systemd.exec(5)); it counts only if it names our stderr (a child
/// of such a process may have stderr redirected elsewhere).
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    match std::fs::File::from(fd).metadata() {
        Ok(m) => dev.parse() == Ok(m.dev()) && ino.parse() == Ok(m.ino()),
        Err(_) => false,
    }
}

/// The syslog priority of a level: err, warning, info, debug (RFC 5424 §6.2.1).
pub fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// Writes `<N>` before what the inner format writes.
struct SyslogPrefix<F>(F);

impl<S, N, F> FormatEvent<S, N> for SyslogPrefix<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "<{}>", priority(*event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_map_to_syslog_priorities() {
        assert_eq!(priority(Level::ERROR), 3);
        assert_eq!(priority(Level::WARN), 4);
        assert_eq!(priority(Level::INFO), 6);
        assert_eq!(priority(Level::TRACE), 7);
    }
}
