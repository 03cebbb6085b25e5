//! The kernel's part of relaying bytes: CPU of a plain TCP relay on loopback.
//!
//! Issue 18 goal 1 compares the gateway's relay CPU with the AES-GCM floor (one
//! decryption and one encryption per byte). A relay also moves every byte
//! through two sockets — a receive copy, a send copy and, on loopback, the
//! delivery to the peer, which the kernel charges to the sender — and that part
//! is there without any TLS. This measures it: one thread relays `--mib` MiB
//! from one loopback connection to another with `read`/`write` and a
//! `--buf` KiB buffer (the gateway's relay grows to 256 KiB), while a source
//! and a sink thread feed and drain it. The relay thread's CPU time (user +
//! system, from `/proc/thread-self/schedstat`, nanoseconds) is the figure.
//!
//! ```sh
//! cargo run --release --example relay_floor -- --mib 256 --runs 3
//! ```
//!
//! Prints one line per run and `relay_floor_tcp mib=256 buf_kib=256
//! median_cpu_s=…` (`bench/run.sh` prints it beside the AES-GCM floor).
//!
//! `relay_floor --aead` measures the other floor, the cipher as the gateway
//! runs it: ring's AES-128-GCM and AES-256-GCM sealing 1 GiB in 16 KiB records
//! on one core (`aead_floor_ring aes128gcm=… aes256gcm=…`, MiB/s). ring uses
//! its VAES code here; `openssl speed` (OpenSSL 3.0) measures a different, on
//! this CPU about 2× slower, implementation.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// One run: CPU seconds of the relay thread for `mib` MiB.
fn run(mib: usize, buf: usize) -> std::io::Result<f64> {
    let sink_l = TcpListener::bind("127.0.0.1:0")?;
    let relay_l = TcpListener::bind("127.0.0.1:0")?;
    let (sink_addr, relay_addr) = (sink_l.local_addr()?, relay_l.local_addr()?);
    let sink = thread::spawn(move || -> std::io::Result<u64> {
        let (mut s, _) = sink_l.accept()?;
        let mut b = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            match s.read(&mut b)? {
                0 => return Ok(total),
                n => total += n as u64,
            }
        }
    });
    let relay = thread::spawn(move || -> std::io::Result<f64> {
        let (mut from, _) = relay_l.accept()?;
        let mut to = TcpStream::connect(sink_addr)?;
        from.set_nodelay(true)?;
        to.set_nodelay(true)?;
        let mut b = vec![0u8; buf];
        let start = thread_cpu_ns();
        loop {
            match from.read(&mut b)? {
                0 => break,
                n => to.write_all(&b[..n])?,
            }
        }
        let cpu = thread_cpu_ns().saturating_sub(start);
        Ok(cpu as f64 / 1e9)
    });
    let mut src = TcpStream::connect(relay_addr)?;
    let chunk: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    for _ in 0..mib * 4 {
        src.write_all(&chunk)?;
    }
    drop(src);
    let cpu = relay
        .join()
        .map_err(|_| std::io::Error::other("relay thread panicked"))??;
    let got = sink
        .join()
        .map_err(|_| std::io::Error::other("sink thread panicked"))??;
    if got != (mib * 1024 * 1024) as u64 {
        return Err(std::io::Error::other(format!(
            "sink got {got} bytes, not {mib} MiB"
        )));
    }
    Ok(cpu)
}

/// CPU seconds of ring's AES-GCM sealing `mib` MiB in 16 KiB records (the
/// cipher as the gateway runs it; opening costs the same per byte).
fn aead(alg: &'static ring::aead::Algorithm, mib: usize) -> f64 {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey};
    let key_bytes = vec![7u8; alg.key_len()];
    let Ok(unbound) = UnboundKey::new(alg, &key_bytes) else {
        return f64::NAN;
    };
    let key = LessSafeKey::new(unbound);
    let mut record = vec![0x5au8; 16 * 1024];
    let start = thread_cpu_ns();
    for i in 0..(mib * 64) as u64 {
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&i.to_be_bytes());
        let nonce = Nonce::assume_unique_for_key(n);
        if key
            .seal_in_place_separate_tag(nonce, Aad::empty(), &mut record)
            .is_err()
        {
            return f64::NAN;
        }
    }
    thread_cpu_ns().saturating_sub(start) as f64 / 1e9
}

fn main() -> std::io::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("--aead") {
        // Best of 3 (the least disturbed by other load), as MiB/s of one core.
        let best = |alg| {
            (0..3)
                .map(|_| aead(alg, 1024))
                .fold(f64::INFINITY, f64::min)
        };
        let (a128, a256) = (
            best(&ring::aead::AES_128_GCM),
            best(&ring::aead::AES_256_GCM),
        );
        println!(
            "aead_floor_ring aes128gcm={:.0} aes256gcm={:.0} (MiB/s, one core, 16 KiB records, best of 3)",
            1024.0 / a128,
            1024.0 / a256
        );
        return Ok(());
    }
    let (mut mib, mut buf_kib, mut runs) = (256usize, 256usize, 3usize);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().and_then(|v| v.parse().ok());
        match (a.as_str(), v) {
            ("--mib", Some(v)) => mib = v,
            ("--buf", Some(v)) => buf_kib = v,
            ("--runs", Some(v)) => runs = v,
            _ => {
                eprintln!("usage: relay_floor [--mib N] [--buf KIB] [--runs N]");
                std::process::exit(2);
            }
        }
    }
    let mut cpus = Vec::new();
    for i in 0..runs.max(1) {
        let cpu = run(mib, buf_kib.max(1) * 1024)?;
        eprintln!("run {i}: relay thread cpu {cpu:.3}s for {mib} MiB");
        cpus.push(cpu);
    }
    cpus.sort_by(f64::total_cmp);
    println!(
        "relay_floor_tcp mib={mib} buf_kib={buf_kib} median_cpu_s={:.3}",
        cpus[cpus.len() / 2]
    );
    Ok(())
}
