//! Arbitrary `Forwarded` / `X-Forwarded-For` header lines through the client-address
//! walk (first byte: header, trusted set and peer; see `wshub_fuzz::forwarded`).
//!
//! ```text
//! cd fuzz && cargo +nightly fuzz run forwarded corpus/forwarded seeds/forwarded
//! ```
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wshub_fuzz::forwarded(data);
});
