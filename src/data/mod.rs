//! The data path: pinholes (one listener per transfer, toward the client) and
//! the relay that copies bytes between the client and backend data legs.

pub(crate) mod active;
pub(crate) mod nft;
pub(crate) mod pinhole;
pub(crate) mod relay;

pub(crate) use pinhole::{Pinhole, PinholeError, PinholeSpec};
pub(crate) use relay::RelayError;
