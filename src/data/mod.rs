//! The data path: pinholes (one listener per transfer, toward the client) and
//! the relay that copies bytes between the client and backend data legs.

pub mod active;
pub mod nft;
pub mod pinhole;
pub mod relay;

pub use pinhole::{Pinhole, PinholeError, PinholeSpec};
pub use relay::RelayError;
