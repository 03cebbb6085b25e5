//! The FTP control channel as pure data: framing lines, parsing client
//! commands, assembling and building server replies, data addresses
//! (227/229/PORT/EPRT) and the FEAT rewrite.
//!
//! In the flow listener → session → control → backend, the session shell
//! reads bytes, feeds them here, and acts on the values returned. Nothing in
//! this module may do I/O, spawn tasks, read a clock or depend on tokio, so
//! that every rule can be tested with plain byte strings.
#![forbid(unsafe_code)]

pub mod active;
pub mod addr;
pub mod command;
pub mod feat;
pub mod line;
pub mod reply;

pub use active::{check_active_target, is_inside, ActiveRefusal};
pub use addr::{
    parse_227, parse_229, parse_eprt_arg, parse_port_arg, render_227, render_229, render_eprt_arg,
    render_port_arg, AddrError,
};
pub use command::{
    escape_telnet, parse_command, strip_telnet, Command, CommandError, Direction, EpsvArg,
    ProtLevel, Secret, TransferKind,
};
pub use feat::{gateway_feat, FeatOptions};
pub use line::{Framed, LineFramer, MAX_LINE};
pub use reply::{Reply, ReplyAssembler, ReplyError};

#[cfg(test)]
mod tests;
