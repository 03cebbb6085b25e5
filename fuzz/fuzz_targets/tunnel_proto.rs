//! The tunnel stream header (DMZ mode, `tunnel::proto`): any bytes given to
//! the request and answer decoders never panic; a decoded request encodes back
//! to the very bytes it was read from, an answer to one that decodes the same, and `decide` on a decoded request
//! never allows a data port below 1024 or an IP the backend does not have.
//!
//! Input: byte 0 = which decoder, the rest = bytes.
#![no_main]

use std::net::SocketAddr;

use ftpsgate::tunnel::proto::{
    decide, decode_answer, decode_request, encode_answer, encode_request, Allowed, Request,
    MIN_DATA_PORT,
};
use ftpsgate_fuzz::take_byte;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    let mode = take_byte(&mut data);
    if mode % 2 == 0 {
        if let Ok(Some((req, used))) = decode_request(data) {
            assert_eq!(encode_request(&req).as_deref(), Ok(&data[..used]));
            let resolved: [SocketAddr; 1] = ["10.0.0.5:21".parse().unwrap()];
            let allowed = [Allowed {
                name: req.backend(),
                resolved: &resolved,
            }];
            if let (Ok(targets), Request::Data { addr, .. }) = (decide(&req, &allowed), &req) {
                assert!(addr.port() >= MIN_DATA_PORT);
                assert!(targets.iter().all(|t| t.ip() == resolved[0].ip()));
            }
        }
    } else if let Ok(Some((answer, _))) = decode_answer(data) {
        let again = decode_answer(&encode_answer(&answer));
        assert_eq!(again.map(|o| o.map(|(a, _)| a)), Ok(Some(answer)));
    }
});
