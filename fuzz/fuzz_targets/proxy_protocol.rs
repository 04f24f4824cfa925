//! Arbitrary bytes as the start of a connection from a trusted load balancer, through
//! the PROXY protocol v1/v2 parser (see `wshub_fuzz::proxy_protocol`).
//!
//! ```text
//! cd fuzz && cargo +nightly fuzz run proxy_protocol corpus/proxy_protocol seeds/proxy_protocol
//! ```
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wshub_fuzz::proxy_protocol(data);
});
