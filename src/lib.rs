//! ftpsgate — an FTPS-aware application-level gateway.
//!
//! ```text
//!  client ──TLS──▶ listener ──▶ session ──────────────▶ backend (plain/explicit/implicit)
//!                                  │  control: parse, answer AUTH/PBSZ/PROT/FEAT,
//!                                  │  rewrite PASV/EPSV → pinhole
//!  client ──TLS──▶ pinhole ──▶ relay ──────────────────▶ backend data port
//! ```
//!
//! Layout, in data-flow order:
//! - [`config`]: YAML → typed configuration (pure, validated at startup);
//! - [`gateway`]: binds listeners and runs the accept loops;
//! - [`session`]: one client session (the I/O shell around `control`);
//! - [`policy`]: access, routing, command filter and login throttle decisions —
//!   pure, no I/O, time passed in;
//! - [`control`]: command/reply parsing and rewriting — pure, no I/O;
//! - [`tls`]: acceptor/connector, PEM loading, per-session resumption caches;
//! - [`backend`]: the backend control leg and its data connections;
//! - [`data`]: pinholes and the byte relay;
//! - [`demo`]: the self-contained demo (in-process backend + generated cert);
//! - beside the flow: [`metrics`], [`xferlog`] (recorded by sessions), [`health`]
//!   (readiness, backend checks) and [`http`] (`/metrics`, `/healthz`, `/readyz`).
#![forbid(unsafe_code)]

pub mod backend;
pub mod channel;
pub mod config;
pub mod control;
pub mod data;
pub mod demo;
pub mod gateway;
pub mod health;
pub mod http;
pub mod listener;
pub mod metrics;
pub mod net;
pub mod policy;
pub mod proxy;
pub mod session;
pub mod shared;
pub mod stream;
pub mod tls;
pub mod xferlog;

pub use gateway::{Gateway, StartError, StartErrors};
