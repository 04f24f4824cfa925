//! Arbitrary bytes as one compressed message (a masked RSV1 binary frame) to a server
//! that negotiated permessage-deflate, checked against zlib (see `wshub_fuzz::inflate`).
//!
//! ```text
//! cd fuzz && cargo +nightly fuzz run inflate
//! ```
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wshub_fuzz::inflate(data);
});
