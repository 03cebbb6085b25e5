//! The demo plain-FTP backend (libunftp, see `ftpsgate::demo::backend`) as a process
//! of its own, for the scale and soak benchmarks: the gateway under test then runs in
//! a separate process whose RSS and CPU can be measured alone.
//!
//! ```sh
//! cargo run --release --example bench_backend -- [--root DIR]
//! ```
//!
//! Prints the control address (`127.0.0.1:PORT`) as the only line on stdout once the
//! server greets, then runs until SIGTERM or SIGINT. Without `--root` it serves a
//! seeded temporary directory (`hello.txt`, `sample.bin`), removed at exit. Every
//! user/password is accepted; no TLS.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use ftpsgate::demo::backend::DemoBackend;
use tokio::signal::unix::{signal, SignalKind};

#[derive(Parser)]
#[command(about = "ftpsgate demo FTP backend as a standalone process (benchmarks)")]
struct Args {
    /// Directory to serve (default: a seeded temporary directory).
    #[arg(long)]
    root: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    rt.block_on(async move {
        // Install the handlers before announcing the address, so a SIGTERM sent as
        // soon as the caller has read it is never lost.
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        let backend = DemoBackend::start(args.root).await?;
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", backend.addr)?;
            out.flush()?;
        }
        eprintln!(
            "bench_backend: serving {} on {} (pid {})",
            backend.root.display(),
            backend.addr,
            std::process::id()
        );
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        backend.stop().await;
        Ok(())
    })
}
