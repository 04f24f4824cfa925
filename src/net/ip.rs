//! Grouping client addresses for per-host and per-network limits.
//!
//! One IPv4 address is one host, but one IPv6 host usually owns a whole /64 (SLAAC,
//! privacy addresses): keying limits on the full IPv6 address would let one machine
//! dodge them with 2^64 source addresses. IPv4-mapped IPv6 addresses
//! (`::ffff:a.b.c.d`, what a dual-stack socket reports for IPv4 peers) are the IPv4
//! host they map.
//!
//! A network is a larger block (by default an IPv4 /24 or an IPv6 /48): one attacker
//! with a block of addresses must not be able to take the hub's whole connection cap.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// How client addresses are grouped for limits. Prefix lengths are clamped to the
/// address size (32 or 128 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AddrGrouping {
    /// IPv6 addresses sharing this prefix count as one host. Default: 64 (one LAN or
    /// one host's SLAAC range).
    pub ipv6_host_prefix: u8,
    /// IPv4 addresses sharing this prefix count as one network. Default: 24.
    pub ipv4_network_prefix: u8,
    /// IPv6 addresses sharing this prefix count as one network. Default: 48 (a typical
    /// site allocation).
    pub ipv6_network_prefix: u8,
}

impl Default for AddrGrouping {
    fn default() -> Self {
        AddrGrouping {
            ipv6_host_prefix: 64,
            ipv4_network_prefix: 24,
            ipv6_network_prefix: 48,
        }
    }
}

impl AddrGrouping {
    /// The key of the host `ip` belongs to: the IPv4 address itself (IPv4-mapped IPv6
    /// addresses normalised to IPv4), or the IPv6 address masked to
    /// `ipv6_host_prefix`.
    pub fn host(&self, ip: IpAddr) -> IpAddr {
        match normalize(ip) {
            IpAddr::V4(v4) => IpAddr::V4(v4),
            IpAddr::V6(v6) => IpAddr::V6(mask_v6(v6, self.ipv6_host_prefix)),
        }
    }

    /// The key of the network `ip` belongs to (`ipv4_network_prefix` or
    /// `ipv6_network_prefix`).
    pub fn network(&self, ip: IpAddr) -> IpAddr {
        match normalize(ip) {
            IpAddr::V4(v4) => IpAddr::V4(mask_v4(v4, self.ipv4_network_prefix)),
            IpAddr::V6(v6) => IpAddr::V6(mask_v6(v6, self.ipv6_network_prefix)),
        }
    }
}

/// `ip` with IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) turned into IPv4.
pub(crate) fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// `ip` with all but its first `prefix` bits zeroed.
pub(crate) fn mask_v4(ip: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let prefix = u32::from(prefix.min(32));
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    Ipv4Addr::from(u32::from(ip) & mask)
}

/// `ip` with all but its first `prefix` bits zeroed.
pub(crate) fn mask_v6(ip: Ipv6Addr, prefix: u8) -> Ipv6Addr {
    let prefix = u32::from(prefix.min(128));
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    };
    Ipv6Addr::from(u128::from(ip) & mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_mapped_addresses_are_their_ipv4_host() {
        let g = AddrGrouping::default();
        assert_eq!(g.host(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(g.network(ip("::ffff:192.0.2.7")), ip("192.0.2.0"));
    }

    #[test]
    fn one_ipv6_slash_64_is_one_host() {
        let g = AddrGrouping::default();
        assert_eq!(g.host(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            g.host(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            g.host(ip("2001:db8:1:2::9"))
        );
        assert_ne!(g.host(ip("2001:db8:1:3::1")), g.host(ip("2001:db8:1:2::1")));
        assert_eq!(g.network(ip("2001:db8:1:ffff::1")), ip("2001:db8:1::"));
    }

    #[test]
    fn ipv4_hosts_are_exact_and_networks_are_slash_24() {
        let g = AddrGrouping::default();
        assert_eq!(g.host(ip("127.0.0.2")), ip("127.0.0.2"));
        assert_eq!(g.network(ip("127.0.0.200")), ip("127.0.0.0"));
        assert_ne!(g.network(ip("127.0.1.1")), g.network(ip("127.0.0.1")));
    }

    #[test]
    fn prefixes_are_clamped() {
        let g = AddrGrouping {
            ipv6_host_prefix: 200,
            ipv4_network_prefix: 0,
            ipv6_network_prefix: 128,
        };
        assert_eq!(g.host(ip("2001:db8::1")), ip("2001:db8::1"));
        assert_eq!(g.network(ip("10.1.2.3")), ip("0.0.0.0"));
    }
}
