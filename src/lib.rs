//! ftpsgate — an FTPS-aware application-level gateway.
//!
//! ```text
//!  client ──TLS──▶ listener ──▶ session ──────────────▶ backend (plain/explicit/implicit)
//!                                  │  control: parse, answer AUTH/PBSZ/PROT/FEAT,
//!                                  │  rewrite PASV/EPSV → pinhole
//!  client ──TLS──▶ pinhole ──▶ relay ──────────────────▶ backend data port
//! ```
//!
//! Layout, in data-flow order (each module's own doc says what it must not do):
//! - [`config`]: YAML → typed configuration (pure, validated at startup; `check`
//!   runs exactly this);
//! - [`gateway`]: builds a generation from a `Config`, binds listeners, reloads and
//!   drains; [`gateway::accept`] runs the accept loops, [`gateway::admit`] is the
//!   front door before a session exists (PROXY header, access, cool-down, limits);
//! - [`listener`]: what one listener's sessions share ([`listener::ListenerCtx`]);
//! - [`shared`]: process-wide state across reloads (drain signals, session counts
//!   for limits, the failed-login throttle's counters);
//! - [`session`]: one client session — [`session::state`] is the pure protocol
//!   machine (time as an input, actions out), `session` itself the I/O driver that
//!   performs its actions, `session::env` its side effects (metrics, transfer log,
//!   throttle);
//! - [`policy`]: every decision as a pure function — access, routing, command
//!   filter, login throttle, and [`policy::balance`] (which backend first);
//! - [`auth`]: authentication at the gateway (password file, LDAP) for
//!   routes with `auth: gateway`, asked by the session before any backend leg;
//! - [`control`]: command/reply parsing and rewriting — pure, no I/O;
//! - [`tls`]: acceptor/connector, PEM loading, per-session resumption caches,
//!   client certificates (`client_auth`: verifier, refusal reasons; `identity`);
//! - [`backend`]: the backend control leg and its data connections;
//!   [`backend::pool`] the backends at run time (in-use counts, cursors, fallback);
//! - [`data`]: pinholes (with their kernel twins) and the byte relay;
//! - [`tunnel`]: DMZ mode — the edge end (tunnels connectors dial into) and the
//!   connector end (dials out, connects only to its own backends);
//! - [`demo`]: the self-contained demo (in-process backend + generated cert);
//! - beside the flow: [`metrics`], [`xferlog`] (recorded by sessions), [`health`]
//!   (readiness, backend checks) and [`http`] (`/metrics`, `/healthz`, `/readyz`);
//!   [`logsafe`] escapes what a client controls before it reaches a log.
//!
//! Where a change goes:
//! - a new admission rule (before any byte is exchanged): `gateway::admit`, its
//!   decision in `policy`;
//! - a new balancing algorithm: a `config::Balance` variant and an arm in
//!   `policy::balance::order` (unit-tested there);
//! - a new metric: its family in `metrics`, its call from `session::env` (session
//!   events) or from the component that observes it;
//! - a new FTP command rule: `control` parses it, `session::state` decides, `policy`
//!   holds any configurable rule;
//! - a new config key: `config::raw` (the YAML shape), `config`'s builder (the
//!   typed value and its errors), `policies/example.yaml` (documented).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auth;
pub(crate) mod backend;
pub(crate) mod channel;
pub mod config;
pub mod control;
pub mod ctl;
pub(crate) mod data;
pub mod demo;
pub mod gateway;
pub(crate) mod health;
pub(crate) mod http;
pub(crate) mod listener;
pub mod logging;
pub mod logsafe;
pub mod metrics;
pub(crate) mod net;
pub mod policy;
pub mod proxy;
pub mod session;
pub(crate) mod shared;
pub(crate) mod stream;
pub(crate) mod tls;
pub mod tunnel;
pub(crate) mod xferlog;

/// Kernel pinholes (`passive.nftables`, nf_tables netlink); public for
/// `examples/pinhole_cost.rs` (the per-pinhole cost in `bench/pinholes.sh`).
pub use data::nft::KernelPinholes;
pub use gateway::{Gateway, StartError, StartErrors};
