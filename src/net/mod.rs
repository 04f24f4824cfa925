//! Who the client is: addresses as the hub's connection limits see them.
//!
//! - [`AddrGrouping`]: which addresses count as one host (IPv6 by /64) and one network
//!   (IPv4 /24, IPv6 /48) for the per-host and per-network limits.
//! - [`TrustedProxies`]: the reverse proxies whose word on the client's address is
//!   believed, through [`forwarded`] headers (`Forwarded`, `X-Forwarded-For`) or the
//!   [`proxy_protocol`] (v1 and v2, on the hub's own listener).
//!
//! The parsers are public so they can be fuzzed (see `fuzz/`) and reused; the hub
//! applies them itself when [`HubConfig::trusted_proxies`](crate::HubConfig::trusted_proxies)
//! is set.

pub mod forwarded;
pub(crate) mod ip;
mod proxies;
pub mod proxy_protocol;
pub(crate) mod rewind;

pub use ip::AddrGrouping;
pub use proxies::{InvalidCidr, TrustedProxies};
