//! Arbitrary bytes as the client side of a server WebSocket, with and without
//! permessage-deflate (first byte: flags; see `wshub_fuzz::frames`).
//!
//! ```text
//! cd fuzz && cargo +nightly fuzz run frames
//! ```
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wshub_fuzz::frames(data);
});
