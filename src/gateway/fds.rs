//! The process's file descriptor limit: raised to the hard limit at start
//! (`main`), read when a generation is built so the session caps that the
//! config leaves out are derived from it (`policy::bounds::fill_default_limits`, see [`with_default_limits`]).

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Descriptors assumed when the limit cannot be read or is unlimited.
const FALLBACK: u64 = 1024;
/// An "unlimited" hard limit is capped here (the kernel's `nr_open` default).
const CEILING: u64 = 1 << 20;

/// Raise the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit
/// in force afterwards (unchanged when raising failed).
pub fn raise_nofile() -> u64 {
    let now = getrlimit(Resource::Nofile);
    let hard = now.maximum.unwrap_or(CEILING).min(CEILING);
    if now.current.is_some_and(|soft| soft < hard) {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(hard),
                maximum: now.maximum,
            },
        );
    }
    soft_nofile()
}

/// The soft `RLIMIT_NOFILE` now in force.
pub fn soft_nofile() -> u64 {
    match getrlimit(Resource::Nofile).current {
        Some(0) => FALLBACK,
        Some(n) => n.min(CEILING),
        None => CEILING,
    }
}

/// `config` with the session caps it leaves out derived from `nofile`.
pub fn with_default_limits(config: &crate::config::Config, nofile: u64) -> crate::config::Config {
    let mut config = config.clone();
    crate::policy::bounds::fill_default_limits(&mut config.limits, nofile);
    config
}
