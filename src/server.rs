//! Serving a hub: a standalone TCP (or TLS) listener, any already-accepted stream, or a
//! route on an axum `Router` so HTTP and WebSocket share one port.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::auth::{AuthRejection, AuthRequest, Identity};
use crate::hub::{Hub, PendingGuard, PendingRefused, Slot, SlotError};
use crate::net::rewind::Rewind;
use crate::net::{TrustedProxies, forwarded, proxy_protocol};
use crate::protocol::SUBPROTOCOL;
use crate::session;
use crate::ws::handshake::{HandshakeConfig, accept_request};
use crate::ws::{WebSocket, WsConfig};

#[cfg(feature = "axum")]
mod serve_axum;

impl Hub {
    /// The handshake settings the hub serves with.
    pub(crate) fn handshake_config(&self) -> HandshakeConfig {
        let c = self.config();
        HandshakeConfig::default()
            .with_timeout(c.handshake_timeout)
            .with_max_request_size(c.max_request_size)
            .with_subprotocols([SUBPROTOCOL])
            .with_deflate(c.compression)
            .with_origin(c.origin.clone())
    }

    /// The engine settings every connection gets.
    pub(crate) fn ws_config(&self) -> WsConfig {
        self.config().ws.clone()
    }

    /// Accepts WebSocket connections on `listener` until [`shutdown`](Hub::shutdown)
    /// begins. Each connection runs in its own task.
    ///
    /// Before the upgrade every connection is bounded in time and in count: the HTTP
    /// request head and authentication must be done within `handshake_timeout` of
    /// `accept` (one deadline), and connections not yet upgraded are capped in all
    /// (`max_pending_connections`, over it `503`), per host (`max_pending_per_host`,
    /// `429`) and per network (`max_pending_per_network`, `429`); a connection over a
    /// cap is answered before anything is read from it, then closed. The request head
    /// is limited to `max_request_size` (8 KiB) and 64 header lines (`431`).
    ///
    /// ```no_run
    /// # async fn run() -> std::io::Result<()> {
    /// let hub = wshub::Hub::builder().build();
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    /// hub.serve(listener).await
    /// # }
    /// ```
    pub async fn serve(&self, listener: TcpListener) -> io::Result<()> {
        self.accept_loop(listener, TurnAway::HttpStatus, |hub, tcp, peer, pending| {
            let conn_hub = hub.clone();
            let deadline = pending.deadline;
            hub.spawn_tracked(async move {
                // The PROXY header (from trusted proxies) counts in the same deadline.
                let header = tokio::time::timeout_at(deadline, conn_hub.proxy_header(tcp, peer));
                let Ok(Some((stream, origin))) = header.await else {
                    return;
                };
                let upgraded = conn_hub
                    .upgrade_by(stream, Some(origin), deadline, Some(pending.guard))
                    .await;
                if let Some(upgraded) = upgraded {
                    conn_hub.spawn_session(upgraded);
                }
            });
        })
        .await
    }

    /// Like [`serve`](Hub::serve), over TLS (`wss://`). The TLS handshake counts in the
    /// same `handshake_timeout` deadline as the request head and authentication. A
    /// connection over a pending cap is closed at once (answering it would take a TLS
    /// handshake).
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub async fn serve_tls(
        &self,
        listener: TcpListener,
        acceptor: tokio_rustls::TlsAcceptor,
    ) -> io::Result<()> {
        self.accept_loop(listener, TurnAway::Close, move |hub, tcp, peer, pending| {
            let acceptor = acceptor.clone();
            let tracker = hub.clone();
            tracker.spawn_tracked(async move {
                let deadline = pending.deadline;
                let header = tokio::time::timeout_at(deadline, hub.proxy_header(tcp, peer));
                let Ok(Some((tcp, origin))) = header.await else {
                    return;
                };
                match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let upgraded = hub
                            .upgrade_by(tls, Some(origin), deadline, Some(pending.guard))
                            .await;
                        if let Some(upgraded) = upgraded {
                            hub.spawn_session(upgraded);
                        }
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        })
        .await
    }

    /// Accepts connections until shutdown begins; counts each as pending (or turns it
    /// away at once when a pending cap is full) and hands it to `on_accept`.
    ///
    /// Turning a connection away happens here, in the accept loop, without a task or a
    /// timer: a flood of connections over the caps costs one accept, one write and one
    /// close each.
    async fn accept_loop(
        &self,
        listener: TcpListener,
        turn_away: TurnAway,
        mut on_accept: impl FnMut(Hub, tokio::net::TcpStream, SocketAddr, Pending),
    ) -> io::Result<()> {
        let mut shutdown = self.shutdown_signal();
        if *shutdown.borrow() {
            return Ok(());
        }
        loop {
            let accepted = tokio::select! {
                r = listener.accept() => r,
                _ = shutdown.changed() => return Ok(()),
            };
            match accepted {
                Ok((tcp, peer)) => {
                    // The deadline counts from here, before any byte is read: a TLS
                    // handshake, a request head and authentication all share it.
                    let deadline = Instant::now() + self.config().handshake_timeout;
                    match self.reserve_pending(peer) {
                        Ok(guard) => {
                            let _ = tcp.set_nodelay(true);
                            on_accept(self.clone(), tcp, peer, Pending { guard, deadline });
                        }
                        Err(why) => {
                            tracing::debug!(%peer, ?why, "pending cap full: connection turned away");
                            if let Some(metrics) = self.metrics() {
                                metrics.handshake_refused(turn_away.status(why));
                            }
                            turn_away.apply(tcp, why);
                        }
                    }
                }
                Err(e) => {
                    // Usually out of file descriptors: wait for some to free up rather
                    // than spin, and keep serving those already connected.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// The PROXY protocol step of a connection to the hub's own listener: when
    /// [`HubConfig::proxy_protocol`](crate::HubConfig::proxy_protocol) is on and the
    /// TCP peer is a trusted proxy, reads its PROXY header (within `handshake_timeout`)
    /// and puts back the bytes read past it. `None`: the header was missing, malformed
    /// or late, and the connection is closed (by dropping it).
    async fn proxy_header(
        &self,
        mut tcp: TcpStream,
        peer: SocketAddr,
    ) -> Option<(Rewind<TcpStream>, Origin)> {
        let config = self.config();
        if !(config.proxy_protocol && config.trusted_proxies.contains(peer.ip())) {
            return Some((Rewind::new(tcp, Bytes::new()), Origin::direct(peer)));
        }
        // Boxed, like the handshake: its state is needed once, not for the connection's
        // whole life.
        let read = Box::pin(proxy_protocol::read_header(&mut tcp));
        match tokio::time::timeout(config.handshake_timeout, read).await {
            Ok(Ok((source, rest))) => {
                let origin = match source {
                    Some(client) => Origin {
                        client,
                        proxy: Some(peer),
                    },
                    None => Origin::direct(peer),
                };
                Some((Rewind::new(tcp, rest), origin))
            }
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "bad PROXY protocol header, closing");
                None
            }
            Err(_) => {
                tracing::debug!(%peer, "PROXY protocol header timed out, closing");
                None
            }
        }
    }

    /// Serves one already-accepted stream (plain TCP, TLS, a Unix socket...): reads the
    /// upgrade request, applies limits and authentication, and runs the connection to
    /// its end. The request head and authentication must be done within
    /// `handshake_timeout` of this call. The stream does not count against the
    /// pending caps, which are the listener's (`serve`, `serve_tls`).
    ///
    /// `peer` is the TCP peer's address. When it is one of
    /// [`HubConfig::trusted_proxies`](crate::HubConfig::trusted_proxies), the client's
    /// address is taken from the request's `Forwarded` or `X-Forwarded-For` header.
    /// (PROXY protocol headers are read by [`serve`](Hub::serve) and `serve_tls`
    /// only: a stream given here has already been read from.)
    pub async fn serve_stream<S>(&self, stream: S, peer: Option<SocketAddr>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let deadline = Instant::now() + self.config().handshake_timeout;
        let upgraded = self
            .upgrade_by(stream, peer.map(Origin::direct), deadline, None)
            .await;
        if let Some((ws, identity, slot, client)) = upgraded {
            session::run(self.clone(), ws, identity, client, slot).await;
        }
    }

    /// Runs an upgraded connection in a task of its own.
    ///
    /// Why not go on in the task that did the handshake: a task's memory is sized
    /// for the largest state its future can be in, and that task's future holds the
    /// handshake's state (the request, the PROXY header's reader, the deadline's
    /// timer) next to the connection's. A fresh task holds only the connection, for
    /// as long as it is open (one spawn per connection, against about 1 KiB less for
    /// every open one).
    fn spawn_session<S>(&self, (ws, identity, slot, client): Upgraded<S>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        self.spawn_tracked(session::run(self.clone(), ws, identity, client, slot));
    }

    /// Upgrades `stream` by `deadline` and gives its pending place back. `None`: the
    /// handshake was refused, failed or was too late (already logged and counted).
    /// `origin`: who the connection is from (the TCP peer, or a PROXY header's client).
    async fn upgrade_by<S>(
        &self,
        stream: S,
        origin: Option<Origin>,
        deadline: Instant,
        pending: Option<PendingGuard>,
    ) -> Option<Upgraded<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        // The handshake runs in its own allocation, freed when it ends: awaited inline,
        // its state (request, headers, timers) would stay in the task until the
        // connection is handed to a task of its own.
        let peer = origin.as_ref().map(|o| o.client);
        let upgraded =
            tokio::time::timeout_at(deadline, Box::pin(self.upgrade(stream, origin))).await;
        // Upgraded or refused, the connection is no longer pending.
        drop(pending);
        let upgraded = match upgraded {
            Ok(Some(upgraded)) => upgraded,
            Ok(None) => return None,
            Err(_) => {
                tracing::debug!(?peer, "handshake deadline passed: connection closed");
                if let Some(metrics) = self.metrics() {
                    metrics.handshake_timed_out();
                }
                return None;
            }
        };
        if let Some(metrics) = self.metrics() {
            // From accept (the deadline is `handshake_timeout` after it) to the 101.
            let accepted = deadline - self.config().handshake_timeout;
            metrics.handshake_done(accepted.elapsed());
        }
        Some(upgraded)
    }

    /// The opening handshake, limits and authentication of one raw stream. Returns the
    /// client's address too (after forwarding headers), for the connection's logs.
    async fn upgrade<S>(&self, stream: S, origin: Option<Origin>) -> Option<Upgraded<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let peer = origin.map(|o| o.client);
        let upgrade = match accept_request(stream, peer, &self.handshake_config()).await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(?peer, error = %e, "handshake refused");
                // Refused with a status, or failed without one (the peer went away,
                // or the head did not arrive in time): only refusals count here.
                if let (Some(metrics), Some(status)) = (self.metrics(), e.status()) {
                    metrics.handshake_refused(Some(status));
                }
                return None;
            }
        };
        let trusted = &self.config().trusted_proxies;
        let origin = origin.map(|o| o.forwarded(upgrade.request().headers(), trusted));
        let client = origin.map(|o| o.client);
        let admitted = self.admit(auth_request(upgrade.request(), origin)).await;
        let (slot, identity) = match admitted {
            Ok(ok) => ok,
            Err((status, message)) => {
                self.record_refusal(status);
                let _ = upgrade.reject(status, &message).await;
                return None;
            }
        };
        match upgrade.accept(self.ws_config()).await {
            Ok(ws) => Some((ws, identity, slot, client)),
            Err(e) => {
                tracing::debug!(?client, error = %e, "upgrade failed");
                None
            }
        }
    }

    /// Connection limits, then authentication: what happens between a valid upgrade
    /// request and the 101. Refusals carry their HTTP status.
    pub(crate) async fn admit(
        &self,
        auth_req: AuthRequest,
    ) -> Result<(Slot, Identity), (StatusCode, String)> {
        let peer = auth_req.peer_addr();
        if self.is_shutting_down() {
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                "server shutting down".into(),
            ));
        }
        let refused = |e: SlotError| {
            let refusal = slot_refusal(&e);
            tracing::debug!(?peer, proxy = ?auth_req.proxy_addr(), reason = %refusal.1, "connection refused by a limit");
            refusal
        };
        let mut slot = self.reserve_slot(peer).map_err(refused)?;
        let timeout = self.config().handshake_timeout;
        let identity =
            match tokio::time::timeout(timeout, self.0.auth.authenticate(&auth_req)).await {
                Ok(Ok(identity)) => identity,
                Ok(Err(rejection)) => {
                    // The authenticator's reason, never the credential: `AuthRequest`
                    // (headers, query, cookies) is not logged.
                    tracing::info!(
                        peer = %peer.map_or_else(|| "-".to_owned(), |p| p.to_string()),
                        status = rejection.status().as_u16(),
                        reason = %rejection.message(),
                        "authentication failed"
                    );
                    return Err(rejection_response(&rejection));
                }
                Err(_) => {
                    return Err((
                        StatusCode::SERVICE_UNAVAILABLE,
                        "authentication timed out".into(),
                    ));
                }
            };
        if identity.is_expired(std::time::SystemTime::now()) {
            tracing::info!(
                peer = %peer.map_or_else(|| "-".to_owned(), |p| p.to_string()),
                status = 401,
                reason = "token expired",
                "authentication failed"
            );
            return Err((StatusCode::UNAUTHORIZED, "token expired".into()));
        }
        self.reserve_user(&mut slot, &identity.user_id)
            .map_err(refused)?;
        Ok((slot, identity))
    }
}

impl Hub {
    /// Counts a handshake refused with `status` after its request was read.
    pub(crate) fn record_refusal(&self, status: StatusCode) {
        if let Some(metrics) = self.metrics() {
            metrics.handshake_refused(Some(status));
        }
    }
}

/// The HTTP refusal of each connection limit.
fn slot_refusal(e: &SlotError) -> (StatusCode, String) {
    let (status, message) = match e {
        SlotError::Full => (StatusCode::SERVICE_UNAVAILABLE, "too many connections"),
        SlotError::PerIp => (
            StatusCode::TOO_MANY_REQUESTS,
            "too many connections from your address",
        ),
        SlotError::PerNetwork => (
            StatusCode::TOO_MANY_REQUESTS,
            "too many connections from your network",
        ),
        SlotError::PerUser => (
            StatusCode::TOO_MANY_REQUESTS,
            "too many connections for this user",
        ),
    };
    (status, message.to_owned())
}

/// An upgraded connection, ready to run: its socket, who it is, the connection slot
/// it holds, and the client's address (after forwarding headers).
type Upgraded<S> = (WebSocket<S>, Identity, Slot, Option<SocketAddr>);

/// Where a connection comes from, as far as the hub can tell.
#[derive(Debug, Clone, Copy)]
struct Origin {
    /// The client: the TCP peer, or the address a trusted proxy gave for it.
    client: SocketAddr,
    /// The TCP peer, when it is a trusted proxy that named `client`.
    proxy: Option<SocketAddr>,
}

impl Origin {
    /// A connection whose TCP peer is all we know.
    fn direct(peer: SocketAddr) -> Self {
        Origin {
            client: peer,
            proxy: None,
        }
    }

    /// Applies a request's forwarding headers, believed only if `client` (so far) is a
    /// trusted proxy. A malformed header is logged and changes nothing.
    fn forwarded(self, headers: &HeaderMap, trusted: &TrustedProxies) -> Self {
        match forwarded::client_addr(self.client, headers, trusted) {
            Ok(client) if client == self.client => self,
            Ok(client) => Origin {
                client,
                // The TCP peer, even when a PROXY header named the hop we just passed.
                proxy: Some(self.proxy.unwrap_or(self.client)),
            },
            Err(e) => {
                tracing::debug!(peer = %self.client, error = %e, "forwarding header ignored");
                self
            }
        }
    }
}

/// What the authenticator sees of an upgrade request.
fn auth_request<B>(req: &http::Request<B>, origin: Option<Origin>) -> AuthRequest {
    let mut auth_req = AuthRequest::from_request(req);
    if let Some(origin) = origin {
        auth_req = auth_req.with_peer_addr(origin.client);
        if let Some(proxy) = origin.proxy {
            auth_req = auth_req.with_proxy_addr(proxy);
        }
    }
    auth_req
}

fn rejection_response(r: &AuthRejection) -> (StatusCode, String) {
    (r.status(), r.message().to_owned())
}

/// A connection the accept loop let in: its place in the pending counts, and the
/// deadline for everything before its upgrade.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) guard: PendingGuard,
    pub(crate) deadline: Instant,
}

/// How a listener turns away a connection over a pending cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TurnAway {
    /// Plain HTTP: answer `503`/`429` with `Connection: close`, then close.
    HttpStatus,
    /// TLS: close at once (an answer would cost a TLS handshake).
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    Close,
}

impl TurnAway {
    /// The status a connection turned away for `why` gets (`None`: closed unanswered).
    fn status(self, why: PendingRefused) -> Option<StatusCode> {
        match (self, why) {
            (TurnAway::Close, _) => None,
            (TurnAway::HttpStatus, PendingRefused::Full) => Some(StatusCode::SERVICE_UNAVAILABLE),
            (TurnAway::HttpStatus, PendingRefused::PerClient) => {
                Some(StatusCode::TOO_MANY_REQUESTS)
            }
        }
    }

    /// Turns `tcp` away without waiting for anything: one non-blocking write of a
    /// canned response (a fresh socket's send buffer always has room for it), one
    /// non-blocking read of what the client already sent, and a close.
    fn apply(self, tcp: tokio::net::TcpStream, why: PendingRefused) {
        use std::io::{Read, Write};
        // Out of tokio's reactor: a fresh tokio stream does not know yet that it is
        // writable, and would refuse a `try_write` rather than try.
        let Ok(mut tcp) = tcp.into_std() else { return };
        if self == TurnAway::HttpStatus {
            let response: &[u8] = match why {
                PendingRefused::Full => {
                    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\
                      Content-Type: text/plain; charset=utf-8\r\nContent-Length: 21\r\n\
                      Retry-After: 1\r\n\r\ntoo many connections\n"
                }
                PendingRefused::PerClient => {
                    b"HTTP/1.1 429 Too Many Requests\r\nConnection: close\r\n\
                      Content-Type: text/plain; charset=utf-8\r\nContent-Length: 39\r\n\
                      Retry-After: 1\r\n\r\ntoo many connections from your network\n"
                }
            };
            let _ = tcp.write(response);
        }
        // Closing a socket with unread input sends a reset, which can destroy the
        // response before the client reads it: read what has already arrived (the
        // request head, usually) first. Once, without waiting: a client that keeps
        // sending gets the reset.
        let mut sink = [0u8; 2048];
        let _ = tcp.read(&mut sink);
    }
}

#[cfg(feature = "axum")]
mod axum_route {
    use axum::extract::{ConnectInfo, Request};
    use axum::response::{IntoResponse, Response};
    use bytes::BytesMut;
    use hyper_util::rt::TokioIo;

    use super::*;
    use crate::ws::handshake::negotiate;
    use crate::ws::{Role, WebSocket};

    impl Hub {
        /// An axum route that upgrades to the hub, for mounting next to the
        /// application's own routes on one port. Serve the app with
        /// [`serve_axum`](Hub::serve_axum) (or `serve_axum_tls`), which bounds every
        /// connection before its upgrade:
        ///
        /// ```no_run
        /// use axum::{Router, routing::get};
        /// # async fn run() -> std::io::Result<()> {
        /// let hub = wshub::Hub::builder().build();
        /// let app = Router::new()
        ///     .route("/", get(|| async { "hello" }))
        ///     .route("/ws", hub.axum_route());
        /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
        /// hub.serve_axum(listener, app).await
        /// # }
        /// ```
        ///
        /// Which limits apply depends on the server the route is mounted under:
        ///
        /// | limit | `serve_axum` | `axum::serve` |
        /// | --- | --- | --- |
        /// | head size (8 KiB) and header lines (64), `431` | while reading the head, every route | this route only, after hyper read the head (hyper's own limits: about 400 KiB, 100 lines) |
        /// | time for the request head | `handshake_timeout` | none (axum sets no header-read timeout) |
        /// | idle keep-alive connections | closed after `handshake_timeout` | kept open |
        /// | pending caps (`max_pending_*`) | yes | no |
        /// | `max_connections`, `max_connections_per_ip` | yes | total only, unless the app is served with `ConnectInfo` |
        /// | authentication time (`handshake_timeout`) | yes | yes |
        /// | origin policy, subprotocol, permessage-deflate | yes | yes |
        ///
        /// Under `axum::serve`, serve the app with
        /// `app.into_make_service_with_connect_info::<std::net::SocketAddr>()`: without
        /// `ConnectInfo` the hub does not know peer addresses, per-IP limits are off,
        /// and the first such request logs a warning (once per process).
        #[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
        pub fn axum_route<St>(&self) -> axum::routing::MethodRouter<St>
        where
            St: Clone + Send + Sync + 'static,
        {
            let hub = self.clone();
            axum::routing::get(move |req: Request| {
                let hub = hub.clone();
                async move { hub.upgrade_axum(req).await }
            })
        }

        /// An axum route answering `GET` with [`metrics_text`](Hub::metrics_text) in
        /// the Prometheus text exposition format (`text/plain; version=0.0.4`), for
        /// mounting next to the application's routes; `404` when
        /// [`HubConfig::metrics`](crate::HubConfig::metrics) is off.
        ///
        /// ```no_run
        /// use axum::{Router, routing::get};
        /// # async fn run() -> std::io::Result<()> {
        /// let hub = wshub::Hub::builder().build();
        /// let app = Router::new()
        ///     .route("/", get(|| async { "hello" }))
        ///     .route("/ws", hub.axum_route())
        ///     .route("/metrics", hub.metrics_route());
        /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
        /// hub.serve_axum(listener, app).await
        /// # }
        /// ```
        ///
        /// The metrics say how many are connected and what flows, never who: no
        /// label names a room, user or connection. Still, an operator may prefer to
        /// keep them off the public port: mount this on a router served on an
        /// internal address, or behind the application's own authentication layer.
        #[cfg(feature = "metrics")]
        #[cfg_attr(docsrs, doc(cfg(all(feature = "axum", feature = "metrics"))))]
        pub fn metrics_route<St>(&self) -> axum::routing::MethodRouter<St>
        where
            St: Clone + Send + Sync + 'static,
        {
            let hub = self.clone();
            axum::routing::get(move || {
                let hub = hub.clone();
                async move {
                    match hub.metrics_text() {
                        Some(text) => (
                            [(http::header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
                            text,
                        )
                            .into_response(),
                        None => (StatusCode::NOT_FOUND, "metrics are off\n").into_response(),
                    }
                }
            })
        }

        async fn upgrade_axum(&self, mut req: Request) -> Response {
            // The handshake is timed from here: hyper has read the head (under
            // `serve_axum`, within the connection's first-head deadline).
            let started = std::time::Instant::now();
            let trusted = &self.config().trusted_proxies;
            let origin = req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| Origin::direct(c.0).forwarded(req.headers(), trusted));
            let peer = origin.map(|o| o.client);
            super::serve_axum::warn_once_without_peer(peer);
            let config = self.handshake_config();
            // Under `axum::serve` these limits were not applied when the head was read.
            if let Err(response) = super::serve_axum::check_head_limits(&req, &config) {
                self.record_refusal(response.status());
                return response;
            }
            let negotiated = match negotiate(&req, &config) {
                Ok(n) => n,
                Err(e) => {
                    let status = e.status().unwrap_or(StatusCode::BAD_REQUEST);
                    self.record_refusal(status);
                    return (status, e.response_headers(), format!("{e}\n")).into_response();
                }
            };
            let (slot, identity) = match self.admit(auth_request(&req, origin)).await {
                Ok(ok) => ok,
                Err((status, message)) => {
                    self.record_refusal(status);
                    return (status, message).into_response();
                }
            };
            let on_upgrade = hyper::upgrade::on(&mut req);
            let hub = self.clone();
            let deflate = negotiated.deflate();
            self.spawn_tracked(async move {
                match on_upgrade.await {
                    Ok(upgraded) => {
                        let ws = WebSocket::from_parts(
                            TokioIo::new(upgraded),
                            Role::Server,
                            hub.ws_config(),
                            deflate,
                            BytesMut::new(),
                        );
                        session::run(hub, ws, identity, peer, slot).await;
                    }
                    Err(e) => tracing::debug!(?peer, error = %e, "upgrade failed"),
                }
            });
            let (parts, ()) = negotiated.response().into_parts();
            if let Some(metrics) = self.metrics() {
                metrics.handshake_done(started.elapsed());
            }
            Response::from_parts(parts, axum::body::Body::empty())
        }
    }
}
