//! Serving an axum `Router` (the application's routes and the hub's) with the hub's
//! pre-upgrade protections, over plain TCP or TLS; and the checks `axum_route` applies
//! when it is mounted under a server the hub does not control (plain `axum::serve`).

use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use super::{Pending, TurnAway};
use crate::hub::Hub;
use crate::ws::handshake::{HandshakeConfig, MAX_HEADERS};

/// Most bytes hyper buffers for one HTTP connection (request heads being read,
/// responses being written). hyper's default is about 400 KiB; heads are limited to
/// `max_request_size` (8 KiB) anyway, and a smaller buffer keeps the memory of
/// `max_pending_connections` idle or slow connections small. Bodies stream through it.
const MAX_HTTP_BUFFER: usize = 64 * 1024;

impl Hub {
    /// Serves an axum app (its own routes plus [`axum_route`](Hub::axum_route)) on
    /// `listener` with the hub's protections, until [`shutdown`](Hub::shutdown) begins.
    /// Use it instead of `axum::serve`, which has no header-read timeout and no
    /// connection caps.
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
    /// What applies to every connection (HTTP/1.1 only):
    ///
    /// - **Pending caps.** A connection counts as pending from `accept` until it
    ///   upgrades to the hub or closes, including while it is a plain HTTP connection
    ///   (keep-alive, or a request in progress), against `max_pending_connections`
    ///   (over it: `503`), `max_pending_per_host` and `max_pending_per_network` (over
    ///   them: `429`). A connection over a cap gets its answer and `Connection: close`
    ///   before anything is read from it.
    /// - **Time.** The first request head must be complete within `handshake_timeout`
    ///   of `accept`; each later request head (including the idle wait before it on a
    ///   keep-alive connection) within `handshake_timeout` of the previous response; a
    ///   connection that misses it is closed without an answer. Authentication on the
    ///   hub's route is bounded by `handshake_timeout` too.
    /// - **Request heads.** At most `max_request_size` (8 KiB, the engine's
    ///   [`HandshakeConfig::max_request_size`]) and 64 header lines, on every route;
    ///   over them: `431`.
    /// - **Peer address.** Every request carries `ConnectInfo<SocketAddr>`, so per-IP
    ///   limits and authenticators see the client's address.
    /// - **Shutdown.** Once [`Hub::shutdown`] begins, no connection is accepted (the
    ///   listener is dropped and this returns), idle connections are closed, and
    ///   requests in progress get `shutdown_timeout` to finish; `Hub::shutdown` waits
    ///   for them.
    ///
    /// Not bounded here: how long your handlers take and how slowly a client may send a
    /// request body (a connection doing so stays pending, so it counts against the
    /// caps above). Bound them in the app if it reads bodies, e.g. with a timeout
    /// layer.
    #[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
    pub async fn serve_axum(&self, listener: TcpListener, app: Router) -> io::Result<()> {
        self.accept_loop(
            listener,
            TurnAway::HttpStatus,
            move |hub, tcp, peer, pending| {
                let app = app.clone();
                let tracker = hub.clone();
                tracker.spawn_tracked(async move { hub.serve_http(tcp, peer, app, pending).await });
            },
        )
        .await
    }

    /// [`serve_axum`](Hub::serve_axum) over TLS (`https://` and `wss://` on one port).
    /// The TLS handshake counts in the first request's `handshake_timeout` deadline. A
    /// connection over a pending cap is closed at once (answering it would take a TLS
    /// handshake). HTTP/1.1 only: the acceptor must not offer `h2` by ALPN (those of
    /// the [`tls`](crate::tls) module offer `http/1.1`).
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(all(feature = "axum", feature = "tls"))))]
    pub async fn serve_axum_tls(
        &self,
        listener: TcpListener,
        acceptor: tokio_rustls::TlsAcceptor,
        app: Router,
    ) -> io::Result<()> {
        self.accept_loop(listener, TurnAway::Close, move |hub, tcp, peer, pending| {
            let (app, acceptor) = (app.clone(), acceptor.clone());
            let tracker = hub.clone();
            tracker.spawn_tracked(async move {
                match tokio::time::timeout_at(pending.deadline, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => hub.serve_http(tls, peer, app, pending).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        })
        .await
    }

    /// One HTTP/1.1 connection of `serve_axum`, to its end or its upgrade.
    async fn serve_http<I>(&self, io: I, peer: SocketAddr, app: Router, pending: Pending)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Pending { guard, deadline } = pending;
        let config = self.config();
        let head_limits = self.handshake_config();
        // Set by the service when the first request head is complete: from then on
        // hyper's header-read timeout bounds the connection, not `deadline`.
        let first_request = Arc::new(AtomicBool::new(false));
        let service = {
            let first_request = first_request.clone();
            let router = TowerToHyperService::new(app);
            hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                first_request.store(true, Ordering::Release);
                // What `into_make_service_with_connect_info` does under `axum::serve`.
                req.extensions_mut().insert(ConnectInfo(peer));
                hyper::service::Service::call(&router, req)
            })
        };
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            // hyper starts this when it begins waiting for a head, which includes the
            // idle time of a keep-alive connection: an idle connection is closed after
            // it, so no connection is held open forever between requests.
            .header_read_timeout(config.handshake_timeout)
            .max_headers(MAX_HEADERS)
            .max_header_size(head_limits.max_request_size)
            .max_buf_size(MAX_HTTP_BUFFER.max(head_limits.max_request_size));
        // `with_upgrades`: the connection future ends when a request upgrades, handing
        // the socket to the hub's route; the pending place is given back then.
        let mut conn = pin!(
            builder
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades()
        );
        let mut first_head_due = pin!(tokio::time::sleep_until(deadline));
        let mut waiting_for_first = true;
        let mut shutdown = self.shutdown_signal();
        let mut draining: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        loop {
            tokio::select! {
                // The connection first: a head that arrived with the deadline wins.
                biased;
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
                    }
                    break;
                }
                () = &mut first_head_due, if waiting_for_first => {
                    if !first_request.load(Ordering::Acquire) {
                        tracing::debug!(%peer, "no request head by the handshake deadline: closed");
                        break;
                    }
                    waiting_for_first = false;
                }
                _ = shutdown.wait_for(|started| *started), if draining.is_none() => {
                    // Finish the request in progress, then close; an idle connection
                    // closes now.
                    conn.as_mut().graceful_shutdown();
                    draining = Some(Box::pin(tokio::time::sleep(config.shutdown_timeout)));
                }
                () = async { draining.as_mut().expect("guarded").await }, if draining.is_some() => {
                    tracing::debug!(%peer, "HTTP request still running at the shutdown deadline: closed");
                    break;
                }
            }
        }
        drop(guard);
    }
}

/// The documented handshake limits, checked on a request some other server has
/// already read (`axum_route` under `axum::serve`, whose hyper allows 100 header lines
/// and heads of about 400 KiB): at most `max_request_size` bytes of head and
/// [`MAX_HEADERS`] header lines. The size is measured as the head would be sent
/// without optional whitespace: the request line plus `name: value\r\n` per header
/// line plus the final `\r\n`.
#[allow(clippy::result_large_err)]
pub(super) fn check_head_limits(req: &Request, config: &HandshakeConfig) -> Result<(), Response> {
    let lines = req.headers().len();
    let too_large = |what: String| {
        Err((
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("{what}\n"),
        )
            .into_response())
    };
    if lines > MAX_HEADERS {
        return too_large(format!(
            "request head has {lines} header lines; at most {MAX_HEADERS} are accepted"
        ));
    }
    // "GET " + target + " HTTP/1.1\r\n"
    let target = req.uri().path_and_query().map_or(1, |p| p.as_str().len());
    let mut size = req.method().as_str().len() + 1 + target + 11;
    for (name, value) in req.headers() {
        size += name.as_str().len() + 2 + value.len() + 2;
    }
    size += 2;
    if size > config.max_request_size {
        return too_large(format!(
            "request head of {size} bytes; at most {} are accepted",
            config.max_request_size
        ));
    }
    Ok(())
}

/// Warns once per process when the hub's route gets a request without a peer address
/// (`axum::serve` without `into_make_service_with_connect_info`): per-IP limits are off
/// for such requests, and authenticators see no address.
pub(super) fn warn_once_without_peer(peer: Option<SocketAddr>) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if peer.is_none() && !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "wshub: a WebSocket request reached `axum_route` without `ConnectInfo<SocketAddr>`: \
             per-IP connection limits are OFF for such requests. Serve the app with \
             `Hub::serve_axum`, or with `axum::serve(listener, \
             app.into_make_service_with_connect_info::<SocketAddr>())`"
        );
    }
}
