//! Tests for the control module: behaviour tests per file, plus property
//! tests in `props.rs`. Test code may unwrap; library code may not.

mod addr;
mod command;
mod feat;
mod line;
mod props;
mod reply;

use super::{Framed, LineFramer};

/// Feeds `input` through a framer in one push and drains it.
fn frame_all(input: &[u8], max_line: usize) -> Vec<Framed> {
    let mut framer = LineFramer::new(max_line);
    framer.push(input);
    drain(&mut framer)
}

fn drain(framer: &mut LineFramer) -> Vec<Framed> {
    std::iter::from_fn(|| framer.next_line()).collect()
}

fn line(text: &str) -> Framed {
    Framed::Line(text.as_bytes().to_vec())
}
