//! Connections accepted but not yet upgraded ("pending"): counted in all, per host and
//! per network, so that connections which never finish their handshake (slowloris)
//! cost a bounded number of file descriptors and buffers, and one host or one network
//! cannot take the whole allowance.
//!
//! A connection is pending from `accept` until it upgrades to the hub or closes: its
//! TLS handshake, its HTTP request head and authentication under [`Hub::serve`] and
//! [`Hub::serve_tls`]; its whole life as a plain HTTP connection under
//! `Hub::serve_axum`.
//!
//! [`Hub::serve_tls`]: crate::Hub::serve_tls

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Hub;

/// The pending counts of one hub.
///
/// One lock for the three counts: a reservation checks all three caps and takes all or
/// nothing, which separate atomics could not do without rolling back under races. It is
/// held for two hash-map lookups, only when a connection is accepted and when its
/// handshake ends, never across an `.await`.
#[derive(Debug, Default)]
pub(crate) struct PendingCounts {
    counts: Mutex<Counts>,
    /// Connections turned away because a pending cap was full.
    refused: AtomicU64,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    /// Per host key ([`AddrGrouping::host`](crate::AddrGrouping::host)); an entry is
    /// removed when its count drops to zero, so the map holds at most `total` entries.
    per_host: HashMap<IpAddr, usize>,
    /// Per network key ([`AddrGrouping::network`](crate::AddrGrouping::network)).
    per_network: HashMap<IpAddr, usize>,
}

impl PendingCounts {
    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connections pending now.
    pub(crate) fn current(&self) -> usize {
        self.lock().total
    }

    /// Connections refused by a pending cap so far.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// The host and network a pending connection counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PendingKey {
    host: IpAddr,
    network: IpAddr,
}

/// Which pending cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PendingRefused {
    /// `max_pending_connections`: the server as a whole is busy (HTTP 503).
    Full,
    /// `max_pending_per_host` or `max_pending_per_network`: this client's share is
    /// used up (HTTP 429).
    PerClient,
}

/// A pending connection's place in the counts; gives it back when dropped (the
/// connection upgraded, or closed).
#[derive(Debug)]
pub(crate) struct PendingGuard {
    hub: Hub,
    key: Option<PendingKey>,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        let mut counts = self.hub.0.pending.lock();
        counts.total -= 1;
        if let Some(key) = self.key {
            decrement(&mut counts.per_host, key.host);
            decrement(&mut counts.per_network, key.network);
        }
    }
}

fn decrement(map: &mut HashMap<IpAddr, usize>, key: IpAddr) {
    if let Some(n) = map.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            map.remove(&key);
        }
    }
}

impl Hub {
    /// The host and network that a not-yet-upgraded connection from `peer` counts
    /// against for the per-host and per-network pending caps, or `None` to count it
    /// against the global cap only.
    ///
    /// This is the one place that decides it: a peer that speaks for many clients (a
    /// trusted reverse proxy) is exempted here, by returning `None` for it.
    pub(crate) fn pending_key(&self, peer: SocketAddr) -> Option<PendingKey> {
        // A trusted proxy carries many clients' connections: only the global cap
        // applies to it (the clients behind it are told apart after the head is read).
        if self.0.config.trusted_proxies.contains(peer.ip()) {
            return None;
        }
        let grouping = &self.0.config.addr_grouping;
        Some(PendingKey {
            host: grouping.host(peer.ip()),
            network: grouping.network(peer.ip()),
        })
    }

    /// Counts a just-accepted connection from `peer` as pending, or says which cap
    /// refuses it (and counts the refusal).
    pub(crate) fn reserve_pending(&self, peer: SocketAddr) -> Result<PendingGuard, PendingRefused> {
        let key = self.pending_key(peer);
        let config = &self.0.config;
        let refused = {
            let mut counts = self.0.pending.lock();
            let host_n = key.map_or(0, |k| counts.per_host.get(&k.host).copied().unwrap_or(0));
            let net_n = key.map_or(0, |k| {
                counts.per_network.get(&k.network).copied().unwrap_or(0)
            });
            // The client's own share first: a host over its share is told 429 even
            // when the server as a whole is also full, since waiting for the server
            // would not help it.
            if key.is_some()
                && (host_n >= config.max_pending_per_host
                    || net_n >= config.max_pending_per_network)
            {
                Some(PendingRefused::PerClient)
            } else if counts.total >= config.max_pending_connections {
                Some(PendingRefused::Full)
            } else {
                counts.total += 1;
                if let Some(k) = key {
                    *counts.per_host.entry(k.host).or_insert(0) += 1;
                    *counts.per_network.entry(k.network).or_insert(0) += 1;
                }
                None
            }
        };
        match refused {
            Some(why) => {
                self.0.pending.refused.fetch_add(1, Ordering::Relaxed);
                Err(why)
            }
            None => Ok(PendingGuard {
                hub: self.clone(),
                key,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        SocketAddr::new(s.parse().unwrap(), 4000)
    }

    fn hub(total: usize, host: usize, network: usize) -> Hub {
        Hub::builder()
            .configure(|c| {
                c.max_pending_connections = total;
                c.max_pending_per_host = host;
                c.max_pending_per_network = network;
            })
            .build()
    }

    #[tokio::test]
    async fn caps_hold_per_host_per_network_and_in_all() {
        let hub = hub(5, 2, 3);
        let a1 = hub.reserve_pending(addr("10.0.0.1")).unwrap();
        let _a2 = hub.reserve_pending(addr("10.0.0.1")).unwrap();
        assert_eq!(
            hub.reserve_pending(addr("10.0.0.1")).unwrap_err(),
            PendingRefused::PerClient
        );
        // An IPv4-mapped IPv6 address is the same host.
        assert_eq!(
            hub.reserve_pending(addr("::ffff:10.0.0.1")).unwrap_err(),
            PendingRefused::PerClient
        );
        let _b = hub.reserve_pending(addr("10.0.0.2")).unwrap();
        // The /24 is full (3), though host .3 has nothing pending.
        assert_eq!(
            hub.reserve_pending(addr("10.0.0.3")).unwrap_err(),
            PendingRefused::PerClient
        );
        let _c = hub.reserve_pending(addr("10.0.1.1")).unwrap();
        let _d = hub.reserve_pending(addr("10.0.2.1")).unwrap();
        assert_eq!(
            hub.reserve_pending(addr("10.0.3.1")).unwrap_err(),
            PendingRefused::Full
        );
        assert_eq!(hub.stats().pending, 5);
        assert_eq!(hub.stats().refused_pending, 4);
        // Giving one back frees its host, its network and a global place.
        drop(a1);
        assert_eq!(hub.stats().pending, 4);
        let _a3 = hub.reserve_pending(addr("10.0.0.1")).unwrap();
    }

    #[tokio::test]
    async fn one_ipv6_slash_64_is_one_host() {
        let hub = hub(100, 2, 100);
        let _a = hub.reserve_pending(addr("2001:db8:0:1::1")).unwrap();
        let _b = hub.reserve_pending(addr("2001:db8:0:1::2")).unwrap();
        assert_eq!(
            hub.reserve_pending(addr("2001:db8:0:1:ffff::3"))
                .unwrap_err(),
            PendingRefused::PerClient
        );
        let _c = hub.reserve_pending(addr("2001:db8:0:2::1")).unwrap();
    }

    #[tokio::test]
    async fn counts_return_to_zero_and_maps_empty() {
        let hub = hub(10, 10, 10);
        let guards: Vec<_> = (1..=5)
            .map(|i| hub.reserve_pending(addr(&format!("192.0.2.{i}"))).unwrap())
            .collect();
        assert_eq!(hub.stats().pending, 5);
        drop(guards);
        let counts = hub.0.pending.lock();
        assert_eq!(counts.total, 0);
        assert!(counts.per_host.is_empty() && counts.per_network.is_empty());
    }
}
