//! Small helpers that several test binaries share: in-process log capture (or a stderr
//! copy for post-mortems), a hang guard, per-binary passive port ranges and killing a
//! child's process group.

use std::future::Future;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// Log capture: one global subscriber per test binary.

/// Everything the `ftpsgate` target logs at debug level, from every test of this binary.
pub fn captured_logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| Arc::new(Mutex::new(Vec::new())))
}

struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs (once) the global subscriber: `ftpsgate=debug` into [`captured_logs`], and, when
/// `RUST_LOG` is set, a copy to stderr filtered by it (for post-mortems). Every test calls it
/// first, so the gateway's events are captured whichever test runs first.
pub fn init_logs() {
    init_logs_capturing("ftpsgate=debug");
}

/// Like [`init_logs`], capturing what the `EnvFilter` directives `capture` select (e.g.
/// `"info,ftpsgate=trace"`). Only the first call of a binary takes effect.
pub fn init_logs_capturing(capture: &str) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        use tracing_subscriber::Layer;
        let buf = captured_logs().clone();
        let capture = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(move || CaptureWriter(buf.clone()))
            .with_filter(tracing_subscriber::EnvFilter::new(capture));
        let stderr = std::env::var_os("RUST_LOG").map(|_| {
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(std::io::stderr)
                .with_filter(tracing_subscriber::EnvFilter::from_default_env())
        });
        // `try_init` also forwards `log` records (as `fmt().try_init()` does).
        tracing_subscriber::registry()
            .with(capture)
            .with(stderr)
            .try_init()
            .expect("install log capture");
    });
}

/// For binaries that capture nothing (their process measurements must not grow a log
/// buffer): with `RUST_LOG` set, the gateway's logs go to stderr, filtered by it.
pub fn init_stderr_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_ansi(false)
                .with_writer(std::io::stderr)
                .try_init();
        }
    });
}

/// Routes `ftpsgate=debug` to the test's captured output (shown when a test fails).
pub fn init_test_writer_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("ftpsgate=debug"))
            .with_test_writer()
            .with_ansi(false)
            .try_init();
    });
}

// ---------------------------------------------------------------------------------------
// Helpers

/// Fails the test instead of hanging when `fut` takes longer than `secs`.
pub async fn bounded<T>(secs: u64, what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: no result within {secs}s (hang)"))
}

/// Consecutive port ranges handed out from `start` on; every range must end before
/// `limit` (i.e. `first + width <= limit`). Each test binary keeps one in a `static`, with
/// its own span, so the binaries' passive ranges never overlap.
pub struct PortRanges {
    next: AtomicU16,
    limit: u16,
}

impl PortRanges {
    pub const fn new(start: u16, limit: u16) -> PortRanges {
        PortRanges {
            next: AtomicU16::new(start),
            limit,
        }
    }

    /// The next `width` ports, as `(first, last)`.
    pub fn take(&self, width: u16) -> (u16, u16) {
        let first = self.next.fetch_add(width, Ordering::SeqCst);
        assert!(first + width <= self.limit, "own passive ranges exhausted");
        (first, first + width - 1)
    }
}

/// Each test binary's own passive port span `[start, limit)`: away from `pasv_range()`
/// (41000 and up, vsftpd and the binaries without a span here), from each other, and below
/// Linux's ephemeral ports (32768 and up), so no outgoing connection of any process can
/// occupy them: single-port and "nothing listens in my range" checks are then exact.
const OWN_SPANS: &[(&str, u16, u16)] = &[
    ("hardening", 5000, 11999),
    ("proxy_protocol", 12000, 20000),
    ("policy", 20000, 30000),
    ("bad_input", 30000, 31999),
];

/// The next `width` ports of this binary's span in [`OWN_SPANS`], as `(first, last)`.
/// The binary is known by its crate name (`tests/policy.rs` is `policy`).
pub fn own_range(width: u16) -> (u16, u16) {
    static RANGES: OnceLock<PortRanges> = OnceLock::new();
    let binary = env!("CARGO_CRATE_NAME");
    RANGES
        .get_or_init(|| {
            let &(_, start, limit) = OWN_SPANS
                .iter()
                .find(|(name, _, _)| *name == binary)
                .unwrap_or_else(|| panic!("no own passive span for test binary {binary}"));
            PortRanges {
                next: AtomicU16::new(start),
                limit,
            }
        })
        .take(width)
}

// ---------------------------------------------------------------------------------------
// Child processes

/// SIGTERM the process group `pid` (our daemons run in their own group: listener plus
/// session processes), wait up to 2 s for `child` to exit (or 100 ms without one), then
/// SIGKILL what is left of the group; reaps `child` when given.
pub fn kill_group(pid: u32, child: Option<&mut Child>) {
    let pgid = format!("-{pid}");
    let signal = |sig: &str| {
        let _ = Command::new("kill")
            .args([sig, "--", &pgid])
            .stderr(Stdio::null())
            .status();
    };
    signal("-TERM");
    match child {
        Some(child) => {
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            signal("-KILL");
            let _ = child.kill();
            let _ = child.wait();
        }
        None => {
            std::thread::sleep(Duration::from_millis(100));
            signal("-KILL");
        }
    }
}
