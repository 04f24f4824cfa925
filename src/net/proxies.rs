//! [`TrustedProxies`]: the reverse proxies whose word on a client's address is believed.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use super::ip::{mask_v4, mask_v6, normalize};

/// The TCP peers (reverse proxies, load balancers) allowed to tell the hub who the
/// client is, as a list of CIDR blocks.
///
/// Only when a connection's TCP peer is inside one of these blocks does the hub read
/// the client's address from `Forwarded` (RFC 7239) or `X-Forwarded-For`, or (with
/// [`HubConfig::proxy_protocol`](crate::HubConfig::proxy_protocol)) from a PROXY
/// protocol header. Anyone else can write those headers, so from any other peer they
/// are ignored. The default trusts no one.
///
/// ```
/// use wshub::TrustedProxies;
///
/// let proxies: TrustedProxies = "10.0.0.0/8, 127.0.0.1, fd00::/8".parse().unwrap();
/// assert!(proxies.contains("10.1.2.3".parse().unwrap()));
/// assert!(proxies.contains("::ffff:127.0.0.1".parse().unwrap())); // IPv4-mapped
/// assert!(!proxies.contains("192.0.2.1".parse().unwrap()));
/// assert!(TrustedProxies::new(["10.0.0.0/33"]).is_err());
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    /// Normalised blocks: IPv4-mapped IPv6 blocks turned into IPv4, host bits cleared,
    /// so [`contains`](Self::contains) is one mask and compare per block.
    blocks: Vec<Block>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Block {
    addr: IpAddr,
    prefix: u8,
}

impl Block {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => mask_v4(ip, self.prefix) == net,
            (IpAddr::V6(net), IpAddr::V6(ip)) => mask_v6(ip, self.prefix) == net,
            _ => false,
        }
    }
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Block {
    type Err = InvalidCidr;

    fn from_str(s: &str) -> Result<Self, InvalidCidr> {
        let invalid = || InvalidCidr(s.to_owned());
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => {
                // Digits only: `u8::from_str` would take "+8".
                if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(invalid());
                }
                let addr: IpAddr = addr.parse().map_err(|_| invalid())?;
                let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
                (addr, Some(prefix))
            }
            None => (s.parse().map_err(|_| invalid())?, None),
        };
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(bits);
        if prefix > bits {
            return Err(invalid());
        }
        Ok(match (addr, normalize(addr)) {
            // `::ffff:10.0.0.0/104` is `10.0.0.0/8`; a shorter prefix reaches outside
            // the mapped range and stays an IPv6 block.
            (IpAddr::V6(_), IpAddr::V4(v4)) if prefix >= 96 => Block {
                addr: IpAddr::V4(mask_v4(v4, prefix - 96)),
                prefix: prefix - 96,
            },
            (IpAddr::V4(v4), _) => Block {
                addr: IpAddr::V4(mask_v4(v4, prefix)),
                prefix,
            },
            (IpAddr::V6(v6), _) => Block {
                addr: IpAddr::V6(mask_v6(v6, prefix)),
                prefix,
            },
        })
    }
}

/// A string that is neither an IP address nor `ADDRESS/PREFIX` with a prefix that fits
/// the address (at most 32 for IPv4, 128 for IPv6).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CIDR block {0:?}: expected an IP address or ADDRESS/PREFIX")]
pub struct InvalidCidr(String);

impl TrustedProxies {
    /// Trusts no one: forwarding headers and PROXY headers are never believed (the
    /// default).
    pub fn none() -> Self {
        TrustedProxies::default()
    }

    /// The loopback addresses (`127.0.0.0/8` and `::1`): a reverse proxy on the same
    /// machine.
    pub fn loopback() -> Self {
        TrustedProxies::new(["127.0.0.0/8", "::1"]).expect("valid blocks")
    }

    /// Trusts these blocks: each an address (`10.0.0.7`, `::1`) or a CIDR block
    /// (`10.0.0.0/8`, `fd00::/8`).
    pub fn new<I, S>(blocks: I) -> Result<Self, InvalidCidr>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let blocks = blocks
            .into_iter()
            .map(|b| b.as_ref().trim().parse())
            .collect::<Result<_, _>>()?;
        Ok(TrustedProxies { blocks })
    }

    /// Adds one block (an address or `ADDRESS/PREFIX`), builder style.
    pub fn with(mut self, block: &str) -> Result<Self, InvalidCidr> {
        self.blocks.push(block.trim().parse()?);
        Ok(self)
    }

    /// Whether `ip` (IPv4-mapped IPv6 addresses as their IPv4 address) is inside one of
    /// the blocks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = normalize(ip);
        self.blocks.iter().any(|b| b.contains(ip))
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }
}

/// A list of blocks separated by commas and/or whitespace, as an environment variable
/// or a command-line flag would give it: `"10.0.0.0/8, 127.0.0.1"`. An empty string
/// trusts no one.
impl FromStr for TrustedProxies {
    type Err = InvalidCidr;

    fn from_str(s: &str) -> Result<Self, InvalidCidr> {
        TrustedProxies::new(
            s.split(|c: char| c == ',' || c.is_ascii_whitespace())
                .filter(|b| !b.is_empty()),
        )
    }
}

/// The blocks, comma-separated (`10.0.0.0/8, 127.0.0.1/32`); parses back with
/// [`FromStr`].
impl fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.blocks.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{b}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrustedProxies[{self}]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_and_single_addresses() {
        let p = TrustedProxies::new(["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "::1"]).unwrap();
        assert!(p.contains(ip("10.255.0.1")));
        assert!(!p.contains(ip("11.0.0.1")));
        assert!(p.contains(ip("192.0.2.7")));
        assert!(!p.contains(ip("192.0.2.8")));
        assert!(p.contains(ip("2001:db8:ffff::1")));
        assert!(!p.contains(ip("2001:db9::1")));
        assert!(p.contains(ip("::1")));
        assert!(!p.contains(ip("::2")));
        assert!(!TrustedProxies::none().contains(ip("127.0.0.1")));
        assert!(TrustedProxies::none().is_empty());
    }

    #[test]
    fn ipv4_mapped_addresses_match_ipv4_blocks_both_ways() {
        let p = TrustedProxies::new(["127.0.0.1"]).unwrap();
        assert!(p.contains(ip("::ffff:127.0.0.1")));
        let mapped = TrustedProxies::new(["::ffff:10.0.0.0/104"]).unwrap();
        assert!(mapped.contains(ip("10.9.9.9")));
        assert!(!mapped.contains(ip("11.0.0.1")));
        assert_eq!(mapped.to_string(), "10.0.0.0/8");
    }

    #[test]
    fn host_bits_are_cleared_and_display_round_trips() {
        let p: TrustedProxies = "10.1.2.3/8,  fd00::1/8\n127.0.0.1".parse().unwrap();
        assert_eq!(p.to_string(), "10.0.0.0/8, fd00::/8, 127.0.0.1/32");
        assert_eq!(p.to_string().parse::<TrustedProxies>().unwrap(), p);
        assert_eq!(
            "".parse::<TrustedProxies>().unwrap(),
            TrustedProxies::none()
        );
        assert!(TrustedProxies::loopback().contains(ip("127.9.9.9")));
    }

    #[test]
    fn bad_blocks_are_refused() {
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0/8",
            "example.com",
            "10.0.0.0/8/8",
        ] {
            assert_eq!(
                TrustedProxies::new([bad]),
                Err(InvalidCidr(bad.to_owned())),
                "{bad}"
            );
        }
        assert!(TrustedProxies::none().with("nope").is_err());
    }
}
