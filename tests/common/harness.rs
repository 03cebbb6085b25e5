//! Small helpers that several test binaries share: in-process log capture, a hang guard
//! and per-binary passive port range allocation.

use std::future::Future;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::Duration;

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
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::Layer;
        let buf = captured_logs().clone();
        let capture = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(move || CaptureWriter(buf.clone()))
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target("ftpsgate", tracing::Level::DEBUG),
            );
        let stderr = std::env::var_os("RUST_LOG").map(|_| {
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(std::io::stderr)
                .with_filter(tracing_subscriber::EnvFilter::from_default_env())
        });
        let subscriber = tracing_subscriber::registry().with(capture).with(stderr);
        tracing::subscriber::set_global_default(subscriber).expect("install log capture");
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
