//! [`HubConfig`]: every limit and timing of a hub, with its default and why.

use std::time::Duration;

use crate::net::{AddrGrouping, TrustedProxies};
use crate::ws::handshake::OriginPolicy;

/// Limits and timings of a hub. Every limit has a default; none is unbounded.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HubConfig {
    /// Most open connections; the next handshake gets HTTP 503. Default: 10,000
    /// (a process here may hold 20,000 files, and TLS or proxies need some).
    pub max_connections: usize,
    /// Most open connections from one host; the next gets HTTP 429 "too many
    /// connections from your address". A host is one IPv4 address or one IPv6 /64
    /// ([`addr_grouping`](Self::addr_grouping)); behind
    /// [`trusted_proxies`](Self::trusted_proxies) it is the client the proxy names.
    /// Default: 100 (generous for offices behind one NAT, stops one host taking all).
    pub max_connections_per_ip: usize,
    /// Most open connections from one network (an IPv4 /24 or IPv6 /48 by default,
    /// see [`addr_grouping`](Self::addr_grouping)); the next gets HTTP 429 "too many
    /// connections from your network". Default: 1,000, a tenth of the default
    /// `max_connections`: someone holding a whole /24 or /48 (or, with the per-host cap
    /// of 100, ten hosts' worth of addresses in one) still leaves nine tenths of the
    /// hub to everyone else. Lower it with `max_connections`.
    pub max_connections_per_network: usize,
    /// Most open connections of one user (the authenticator's
    /// [`Identity::user_id`](crate::Identity::user_id)), checked after authentication;
    /// the next gets HTTP 429 "too many connections for this user". Default: `None`
    /// (no limit: a user's tabs and devices all connect, and guests of
    /// [`AllowAnonymous`](crate::AllowAnonymous) get a fresh id each time anyway).
    /// Set it when accounts are cheap to use but not to create, so one account cannot
    /// hold the per-host caps of many addresses.
    pub max_connections_per_user: Option<usize>,
    /// Most rooms one connection may be in; a join over it gets `too_many_rooms`.
    /// Default: 100.
    pub max_rooms_per_connection: usize,
    /// Largest WebSocket message a client may send; over it the connection is closed
    /// with 1009. Default: 1 MiB (a namespace's `max_payload` refuses big publishes
    /// with a `too_large` reply well before this).
    pub max_message_size: usize,
    /// Bytes that may wait in one connection's outbound queue before it is closed with
    /// 1013 "slow consumer". Default: 1 MiB.
    pub max_queued_bytes: usize,
    /// Sustained client messages per second per connection (token bucket refill).
    /// Default: 50.
    pub rate_per_second: f64,
    /// Burst of client messages allowed above the sustained rate. Default: 100.
    pub rate_burst: f64,
    /// Rate-limited messages in a row after which the connection is closed with 1008
    /// ("flooding"); a message that passes resets the count. Default: 100.
    pub flood_limit: u32,
    /// Largest presence meta, in bytes of JSON; over it a join gets `too_large`.
    /// Default: 1 KiB.
    pub max_presence_meta: usize,
    /// How often the liveness sweep pings every connection. Default: 25 s (under the
    /// 30-60 s idle timeouts of common proxies and load balancers).
    pub ping_interval: Duration,
    /// A connection that sent nothing (not even a pong) for this long is closed and
    /// leaves its rooms. Default: 60 s.
    pub pong_timeout: Duration,
    /// Time a client has to complete the HTTP upgrade. Default: 10 s.
    pub handshake_timeout: Duration,
    /// How long [`Hub::shutdown`](crate::Hub::shutdown) lets connections drain their queues and finish the
    /// closing handshake before giving up on them. Default: 10 s.
    pub shutdown_timeout: Duration,
    /// zlib level for permessage-deflate (negotiated when the client offers it).
    /// Default: 1.
    pub compression_level: u32,
    /// Whether to negotiate permessage-deflate at all. Default: `true`.
    pub compression: bool,
    /// Which `Origin`s may connect (others get HTTP 403). Browsers always send `Origin`;
    /// restrict it when the authenticator trusts cookies, so another site cannot open a
    /// socket with your users' cookies. Requests without `Origin` (non-browser
    /// clients) are allowed by [`OriginPolicy::AllowList`]. Default:
    /// [`OriginPolicy::Any`].
    pub origin: OriginPolicy,
    /// Which client addresses count as one host and as one network for the per-host
    /// and per-network limits (IPv6 hosts by /64, networks by IPv4 /24 and IPv6 /48;
    /// IPv4-mapped IPv6 addresses are their IPv4 host). Default:
    /// [`AddrGrouping::default`].
    pub addr_grouping: AddrGrouping,
    /// Reverse proxies and load balancers whose word on the client's address is
    /// believed. Only from a TCP peer inside these blocks are `Forwarded` (RFC 7239) and
    /// `X-Forwarded-For` read (rightmost untrusted address wins, see
    /// [`net::forwarded`](crate::net::forwarded)), and PROXY protocol headers too when
    /// [`proxy_protocol`](Self::proxy_protocol) is on. The address found is what the
    /// limits, [`AuthRequest::peer_addr`](crate::AuthRequest::peer_addr) and the logs
    /// see. Default: none (anyone can write those headers, so trusting them must be a
    /// decision; behind a proxy without this, every user counts as the proxy's address).
    pub trusted_proxies: TrustedProxies,
    /// Whether a connection from a [trusted proxy](Self::trusted_proxies) to
    /// [`Hub::serve`](crate::Hub::serve) or `Hub::serve_tls` must begin with a PROXY
    /// protocol header (v1 or v2; v2 `LOCAL` and v1 `UNKNOWN` mean "use the TCP
    /// peer"). The header must arrive within `handshake_timeout` and be at most
    /// [`proxy_protocol::MAX_LEN`](crate::net::proxy_protocol::MAX_LEN) bytes; a
    /// missing or malformed one closes the connection. Other peers are served as usual
    /// (a PROXY header from them is a bad HTTP request). Not used by `axum_route` or
    /// [`Hub::serve_stream`](crate::Hub::serve_stream). Default: `false` (turn it on only when
    /// every trusted peer sends the header: a trusted peer that does not is refused).
    pub proxy_protocol: bool,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            max_connections: 10_000,
            max_connections_per_ip: 100,
            max_connections_per_network: 1_000,
            max_connections_per_user: None,
            max_rooms_per_connection: 100,
            max_message_size: 1 << 20,
            max_queued_bytes: 1 << 20,
            rate_per_second: 50.0,
            rate_burst: 100.0,
            flood_limit: 100,
            max_presence_meta: 1024,
            ping_interval: Duration::from_secs(25),
            pong_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(10),
            compression_level: 1,
            compression: true,
            origin: OriginPolicy::Any,
            addr_grouping: AddrGrouping::default(),
            trusted_proxies: TrustedProxies::none(),
            proxy_protocol: false,
        }
    }
}
