//! [`HubConfig`]: every limit and timing of a hub, with its default and why.

use std::time::Duration;

use crate::net::{AddrGrouping, TrustedProxies};
use crate::ws::WsConfig;
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
    /// Sustained client messages per second per connection (token bucket refill).
    /// Default: 50.
    pub rate_per_second: f64,
    /// Burst of client messages allowed above the sustained rate. Default: 100.
    pub rate_burst: f64,
    /// Rate-limited messages after which the connection is closed with 1008
    /// ("flooding"). Each message that passes forgives a quarter of the count (not all
    /// of it, so flooding in batches with a pause between them is caught too).
    /// Default: 100.
    pub flood_limit: u32,
    /// Sustained client messages per second of one user across all their connections
    /// (on top of the per-connection limit), so opening more tabs or sockets does not
    /// buy more throughput. Over it: `rate_limited`, as for the per-connection limit.
    /// Default: 100 (two busy tabs). `f64::INFINITY` turns it off.
    pub user_rate_per_second: f64,
    /// Burst above `user_rate_per_second`. Default: 200.
    pub user_rate_burst: f64,
    /// Sustained client messages per second from one host (an IPv4 address or an
    /// IPv6 /64, see `addr_grouping`) across all its connections and users, so many
    /// accounts on one machine do not multiply the per-user limit. Default: 200.
    /// `f64::INFINITY` turns it off (for hubs whose clients all share one address
    /// that no trusted proxy reveals).
    pub host_rate_per_second: f64,
    /// Burst above `host_rate_per_second`. Default: 400.
    pub host_rate_burst: f64,
    /// Sustained `join`s and `leave`s per second per connection. Joining and leaving
    /// is what presence announces to everyone in a room, so it has a limit of its own,
    /// below the message rate. Over it: `rate_limited`. Default: 5.
    pub membership_rate_per_second: f64,
    /// Burst of joins and leaves above `membership_rate_per_second` (a page joining
    /// its rooms at load). Default: 20.
    pub membership_burst: f64,
    /// Largest presence meta, in bytes of JSON as the hub encodes it (the bytes every
    /// member receives); over it a join gets `too_large`. Default: 256 bytes (a name,
    /// a status and an avatar URL; large profiles belong in the application's own
    /// API, not in every member's presence stream).
    pub max_presence_meta: usize,
    /// Largest response of one RPC ([`HubBuilder::rpc`](crate::HubBuilder::rpc)), in
    /// bytes of JSON; a larger one is not sent and the caller gets `too_large`.
    /// Default: 64 KiB, as a namespace's `max_payload`: a reply goes through the
    /// caller's outbound queue like any message ([`ws`](Self::ws)'s
    /// `max_queued_bytes`, 1 MiB), and a few large replies must not make the caller a
    /// slow consumer. Page large lists instead.
    pub max_rpc_response: usize,
    /// How long one RPC handler may run; one that has not answered by then is dropped
    /// (cancelled at its next `.await`) and the caller gets `timeout`. Default: 10 s
    /// (long enough for a database query, short enough that a stuck backend does not
    /// hold the caller's `max_rpc_in_flight` places for long).
    pub rpc_timeout: Duration,
    /// Most RPCs of one connection running at once; a call over it gets
    /// `rate_limited` at once. Each runs in its own task, so a slow method never holds
    /// up the connection's other ops. Default: 16 (more than a page needs, few enough
    /// that one connection cannot start a backend stampede; the message rate limit
    /// bounds how fast calls arrive, this bounds how many wait).
    pub max_rpc_in_flight: usize,
    /// Most client publishes of one connection waiting for a namespace's async publish
    /// hook ([`Namespace::on_publish_async`](crate::Namespace::on_publish_async)), the
    /// one being checked included; over it a publish gets `rate_limited`. They are
    /// checked one at a time, in order, so a slow hook makes them wait rather than
    /// overtake each other. Default: 16.
    pub max_pending_publishes: usize,
    /// How long an async publish hook ([`Namespace::on_publish_async`](crate::Namespace::on_publish_async))
    /// may take over one message; one that has not answered by then is dropped
    /// (cancelled at its next `.await`), the message is not published and the
    /// publisher gets `timeout`, and the connection's next publish is checked. Default:
    /// 10 s, as `rpc_timeout`: a stuck moderation service must not hold a connection's
    /// publishes (all queued behind the stuck one) for ever.
    pub publish_hook_timeout: Duration,
    /// Bytes of stored messages the default in-memory history keeps across all rooms;
    /// over it the oldest messages of any room go first. Ignored when the hub has a
    /// store of its own ([`HubBuilder::history_store`](crate::HubBuilder::history_store)).
    /// Default: 64 MiB (about 300,000 chat messages of 200 bytes).
    pub history_budget: usize,
    /// Most messages one recovering join (`since`) is sent; a client that missed more
    /// gets `recovered: false` and refetches instead of being buried in a replay. A
    /// recovery is also refused when its messages add up to more than half of the
    /// connection's queue ([`ws`](Self::ws)'s `max_queued_bytes`), since it would
    /// close the client as a slow consumer. Default: 1,000.
    pub max_recovery: usize,
    /// Most recent messages a join may ask for with `history`; more is capped, not
    /// refused. Default: 100 (a page of chat).
    pub max_join_history: usize,
    /// Presence changes (joins and leaves) are announced once per tick per room, as one
    /// `presence_diff` holding every change of the tick: N changes cost each member one
    /// message, and a user who joins and leaves within a tick costs nothing.
    /// Default: 100 ms (live enough for people, ten diffs a second at most).
    pub presence_tick: Duration,
    /// The longest gap between a small room's diffs while its presence keeps changing.
    /// A room's first diff after a quiet spell goes out on the next tick; while changes
    /// keep coming, each diff waits twice as long as the one before, up to this, and
    /// carries the byte budget of the ticks it waited
    /// ([`presence_diff_budget`](Self::presence_diff_budget) per tick), so presence
    /// stays as current in bytes while a join storm costs each member a few messages a
    /// second instead of ten: a storm's cost is one write per member per diff.
    /// Default: 1 s. Set it to `presence_tick` for a diff every tick.
    pub presence_tick_max: Duration,
    /// Most bytes of entries in one `presence_diff` per tick it waited (one entry may
    /// pass it; a diff paced by [`presence_tick_max`](Self::presence_tick_max) carries
    /// the budget of each tick since the last); changes left over are announced in the
    /// next diff. With `presence_tick` this bounds the presence bytes one member
    /// receives per room: on average at most `presence_diff_budget` + one entry per
    /// tick. Default: 4 KiB (so at most about
    /// 45 KB/s per room per member, with the default tick and meta limit, however fast
    /// the room churns).
    pub presence_diff_budget: usize,
    /// Rooms with more users than this are *big* (`PROTOCOL.md`, section 6): members
    /// get an exact count every [`presence_count_interval`](Self::presence_count_interval)
    /// and the joins and leaves of the users the application marks as interesting to
    /// them ([`HubBuilder::presence_interest`](crate::HubBuilder::presence_interest)),
    /// not every change; a join reply carries the count and the first page of members,
    /// not the whole room; clients page through the rest (`presence_page`). A big room
    /// turns small again at three quarters of this, once it has been big for
    /// [`presence_min_big`](Self::presence_min_big). A namespace may set its own
    /// ([`NamespaceOptions::big_room`](crate::NamespaceOptions::big_room)).
    /// Default: 200 users: a list a person still reads whole, and a join reply of at
    /// most about 20 KB (with short metas), while a storm of joins into a room of that
    /// size costs at most 200 entries a join; past it the cost of exact presence grows
    /// with the square of the room.
    pub presence_big_room: usize,
    /// How often a big room's members are sent its count (`presence_count`), when it
    /// changed. Default: 1 s (a count people watch, and one small message a second per
    /// member however fast the room churns).
    pub presence_count_interval: Duration,
    /// How long a room stays big before it may turn small again. Turning small sends
    /// every member the room's whole presence, so this bounds how often that can
    /// happen to a room hovering at the threshold. Default: 10 s.
    pub presence_min_big: Duration,
    /// Most users in one page of a member list: a big room's join reply and
    /// `presence` reply carry the first page, and `presence_page` gives at most this
    /// many (a larger `limit` is capped). Default: 100 (a screenful, about 10 KB with
    /// short metas).
    pub presence_page_size: usize,
    /// Longest room name a client may use, in bytes; longer names get `bad_request`.
    /// Default: 128.
    pub max_room_name_len: usize,
    /// Which characters a client's room names may contain; others get `bad_request`.
    /// Default: [`default_room_name_char`] (ASCII letters and digits and
    /// `- _ . : @ / + = ~ , #`: no spaces, controls, quotes or look-alikes). Rooms
    /// named from Rust ([`Hub::room`](crate::Hub::room)) are not checked.
    pub room_name_chars: fn(char) -> bool,
    /// How often the liveness sweep pings every connection. Default: 25 s (under the
    /// 30-60 s idle timeouts of common proxies and load balancers).
    pub ping_interval: Duration,
    /// A connection that sent nothing (not even a pong) for this long is closed and
    /// leaves its rooms. Default: 60 s.
    pub pong_timeout: Duration,
    /// Time a connection has, from `accept`, to finish everything before the upgrade:
    /// TLS handshake, HTTP request head and authentication, as one deadline (under
    /// [`Hub::serve`](crate::Hub::serve) and [`Hub::serve_tls`](crate::Hub::serve_tls)).
    /// Under `Hub::serve_axum` it bounds the TLS handshake and first request head
    /// together, each later request head (and the idle wait before it), and
    /// authentication on the hub's route. Past it the connection is closed without an
    /// answer. Default: 10 s (a slow mobile TLS handshake takes a second or two;
    /// slowloris connections are dropped soon after).
    pub handshake_timeout: Duration,
    /// Largest HTTP request head a client may send before the upgrade (the request line
    /// and every header, cookies included), under every serving path (`serve`,
    /// `serve_tls`, `serve_axum` on every route, and `axum_route` under plain
    /// `axum::serve`); over it the answer is `431`. Default: 8 KiB, as nginx's default
    /// header buffers: enough for a browser's upgrade with a few cookies, and what a
    /// connection may hold before it is authenticated. Raise it for applications with
    /// large cookies or tokens in headers.
    pub max_request_size: usize,
    /// Most connections accepted but not yet upgraded (see
    /// [`HubStats::pending`](crate::HubStats::pending)). Over it a new connection is
    /// answered `503` with `Connection: close` (plain HTTP) or closed (TLS) before
    /// anything is read from it. Default: 1,024: this bounds what connections that
    /// never finish their handshake (slowloris) can hold, in file descriptors and
    /// buffers (each pending connection holds at most one request head of
    /// `max_request_size`, 8 KiB, plus hyper's or rustls's buffers), while a legitimate
    /// handshake is pending only for a few milliseconds.
    pub max_pending_connections: usize,
    /// Most pending connections from one host (keyed by
    /// [`AddrGrouping::host`](crate::AddrGrouping::host): one IPv4 address, one IPv6
    /// /64). Over it a new connection is answered `429` (plain HTTP) or closed (TLS).
    /// Default: 16 (a browser opens up to 6 HTTP/1.1 connections per site, plus its
    /// WebSocket upgrades; raise it when many users share one address behind a NAT and
    /// the hub serves their HTTP too, under `Hub::serve_axum`). Behind a reverse proxy
    /// every connection comes from the proxy's address: raise this and
    /// `max_pending_per_network` above what the proxy may hold open.
    pub max_pending_per_host: usize,
    /// Most pending connections from one network (keyed by
    /// [`AddrGrouping::network`](crate::AddrGrouping::network): an IPv4 /24, an IPv6
    /// /48). Over it a new connection is answered `429` (plain HTTP) or closed (TLS).
    /// Default: 128 (one eighth of `max_pending_connections`, so that one network
    /// cannot fill the global cap and crowd everyone else out).
    pub max_pending_per_network: usize,
    /// How long [`Hub::shutdown`](crate::Hub::shutdown) lets connections drain their queues and finish the
    /// closing handshake before giving up on them. Default: 10 s.
    pub shutdown_timeout: Duration,
    /// The engine's limits for every connection of the hub: frame and message sizes,
    /// the outbound queue, the close timeout, compression level and threshold (see
    /// [`WsConfig`]). Nested rather than copied, so every engine limit can be set on a
    /// hub:
    ///
    /// - [`max_message_size`](WsConfig::max_message_size) and
    ///   [`max_frame_size`](WsConfig::max_frame_size): largest message and frame a
    ///   client may send; over them the connection is closed with 1009. Default: 1 MiB
    ///   each, not the engine's 16 MiB: a hub carries small JSON messages, and a
    ///   namespace's `max_payload` (64 KiB) refuses big publishes with a `too_large`
    ///   reply well before this.
    /// - [`max_queued_bytes`](WsConfig::max_queued_bytes): bytes that may wait in one
    ///   connection's outbound queue; over it the connection is closed with 1013
    ///   ("slow consumer"). Default: 1 MiB.
    /// - [`compression_level`](WsConfig::compression_level): zlib level of every
    ///   message the hub sends compressed (each is compressed once for all its
    ///   receivers). Default: 1.
    /// - the rest as in [`WsConfig::default`].
    ///
    /// ```
    /// let mut config = wshub::HubConfig::default();
    /// config.ws = config.ws.with_max_message_size(64 * 1024).with_max_queued_bytes(256 * 1024);
    /// ```
    pub ws: WsConfig,
    /// Whether to negotiate permessage-deflate at all (at the level of
    /// [`ws.compression_level`](WsConfig::compression_level)). Default: `true`.
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
    /// Whether to record Prometheus metrics ([`Hub::metrics_text`](crate::Hub),
    /// feature `metrics`; without the feature nothing is recorded either way).
    /// Default: `true`: recording adds about one uncontended atomic add per event, on
    /// counters kept per thread, and a clock read on each side of a publish
    /// (`BENCHMARKS.md` has the fan-out with it on and off). `false` records nothing,
    /// and `/metrics` answers 404.
    pub metrics: bool,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            max_connections: 10_000,
            max_connections_per_ip: 100,
            max_connections_per_network: 1_000,
            max_connections_per_user: None,
            max_rooms_per_connection: 100,
            rate_per_second: 50.0,
            rate_burst: 100.0,
            flood_limit: 100,
            user_rate_per_second: 100.0,
            user_rate_burst: 200.0,
            host_rate_per_second: 200.0,
            host_rate_burst: 400.0,
            membership_rate_per_second: 5.0,
            membership_burst: 20.0,
            max_presence_meta: 256,
            max_rpc_response: 64 * 1024,
            rpc_timeout: Duration::from_secs(10),
            max_rpc_in_flight: 16,
            max_pending_publishes: 16,
            publish_hook_timeout: Duration::from_secs(10),
            history_budget: crate::history::MemoryHistory::DEFAULT_BUDGET,
            max_recovery: 1_000,
            max_join_history: 100,
            presence_tick: Duration::from_millis(100),
            presence_tick_max: Duration::from_secs(1),
            presence_diff_budget: 4096,
            presence_big_room: 200,
            presence_count_interval: Duration::from_secs(1),
            presence_min_big: Duration::from_secs(10),
            presence_page_size: 100,
            max_room_name_len: 128,
            room_name_chars: default_room_name_char,
            ping_interval: Duration::from_secs(25),
            pong_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
            max_request_size: 8 * 1024,
            max_pending_connections: 1024,
            max_pending_per_host: 16,
            max_pending_per_network: 128,
            shutdown_timeout: Duration::from_secs(10),
            ws: WsConfig::default()
                .with_max_message_size(1 << 20)
                .with_max_frame_size(1 << 20),
            compression: true,
            origin: OriginPolicy::Any,
            addr_grouping: AddrGrouping::default(),
            trusted_proxies: TrustedProxies::none(),
            proxy_protocol: false,
            metrics: true,
        }
    }
}

/// The characters [`HubConfig::room_name_chars`] allows by default: ASCII letters and
/// digits and `- _ . : @ / + = ~ , #`.
pub fn default_room_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_.:@/+=~,#".contains(c)
}
