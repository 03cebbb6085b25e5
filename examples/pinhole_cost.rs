//! Cost of one kernel pinhole (`passive.nftables`): `N` add + delete of an
//! `ADDR . PORT` element with a timeout, either forking `nft` twice per
//! pinhole (what ftpsgate did before it spoke netlink) or over ftpsgate's netlink code
//! ([`ftpsgate::KernelPinholes`]). Needs `CAP_NET_ADMIN` and the set; run by
//! `bench/pinholes.sh` inside a network namespace of its own.
//!
//! ```text
//! pinhole_cost fork|netlink --count N [--table "inet ftpsgate"] [--set pinholes]
//! ```
//!
//! Prints one line: `pinhole_cost mode=… count=N wall_us_per_pinhole=…
//! cpu_us_per_pinhole=…` (CPU: this process plus its children, kernel time
//! included).

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use ftpsgate::config::Nftables;
use ftpsgate::KernelPinholes;

#[derive(Clone, Copy, ValueEnum, Debug)]
enum Mode {
    /// Two `nft` processes per pinhole (`add element`, `delete element`).
    Fork,
    /// ftpsgate's netlink batches.
    Netlink,
}

#[derive(Parser)]
#[command(about = "time N kernel pinholes (add + delete of one set element)")]
struct Args {
    mode: Mode,
    #[arg(long, default_value_t = 1000)]
    count: u32,
    #[arg(long, default_value = "inet ftpsgate")]
    table: String,
    #[arg(long, default_value = "pinholes")]
    set: String,
}

/// CPU time of this (single-threaded) process in seconds, kernel time
/// included: its on-CPU nanoseconds (`/proc/thread-self/schedstat`) plus
/// the utime + stime of its waited-for children (`/proc/self/stat` fields
/// 16–17, clock ticks of 1/100 s).
fn cpu_secs() -> anyhow::Result<f64> {
    let sched = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    let own_ns: f64 = sched
        .split_whitespace()
        .next()
        .and_then(|x| x.parse().ok())
        .context("bad schedstat")?;
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let rest = stat.rsplit_once(") ").context("bad /proc/self/stat")?.1;
    let children: f64 = rest
        .split_whitespace()
        .skip(13)
        .take(2)
        .map(|x| x.parse().unwrap_or(0.0))
        .sum();
    Ok(own_ns / 1e9 + children / 100.0)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (family, table) = args
        .table
        .split_once(' ')
        .context("--table is \"FAMILY NAME\"")?;
    let client = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    let lifetime = Duration::from_secs(30);
    let kernel = match args.mode {
        Mode::Netlink => Some(
            KernelPinholes::open(&Nftables {
                table: args.table.clone(),
                set: args.set.clone(),
                set6: None,
                fail_on_error: true,
            })
            .map_err(anyhow::Error::msg)?,
        ),
        Mode::Fork => None,
    };
    let nft = |verb: &str, element: String| -> anyhow::Result<()> {
        let out = Command::new("nft")
            .args([verb, "element", family, table, &args.set, &element])
            .output()
            .context("running nft")?;
        if !out.status.success() {
            bail!("nft: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    };
    let cpu0 = cpu_secs()?;
    let t0 = Instant::now();
    for i in 0..args.count {
        let port = 55000 + (i % 1000) as u16;
        match &kernel {
            Some(k) => {
                k.add(client, port, lifetime).map_err(anyhow::Error::msg)?;
                k.remove(client, port);
            }
            None => {
                let secs = lifetime.as_secs();
                nft("add", format!("{{ {client} . {port} timeout {secs}s }}"))?;
                nft("delete", format!("{{ {client} . {port} }}"))?;
            }
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_secs()? - cpu0;
    let n = f64::from(args.count.max(1));
    println!(
        "pinhole_cost mode={:?} count={} wall_us_per_pinhole={:.1} cpu_us_per_pinhole={:.1}",
        args.mode,
        args.count,
        wall / n * 1e6,
        cpu / n * 1e6
    );
    Ok(())
}
