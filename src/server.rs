//! Serving a hub: a standalone TCP (or TLS) listener, any already-accepted stream, or a
//! route on an axum `Router` so HTTP and WebSocket share one port.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use crate::auth::{AuthRejection, AuthRequest, Identity};
use crate::hub::{Hub, Slot, SlotError};
use crate::protocol::SUBPROTOCOL;
use crate::session;
use crate::ws::handshake::{HandshakeConfig, accept_request};
use crate::ws::{WebSocket, WsConfig};

impl Hub {
    /// The handshake settings the hub serves with.
    pub(crate) fn handshake_config(&self) -> HandshakeConfig {
        let c = self.config();
        HandshakeConfig::default()
            .with_timeout(c.handshake_timeout)
            .with_subprotocols([SUBPROTOCOL])
            .with_deflate(c.compression)
            .with_origin(c.origin.clone())
    }

    /// The engine settings every connection gets.
    pub(crate) fn ws_config(&self) -> WsConfig {
        let c = self.config();
        WsConfig::default()
            .with_max_message_size(c.max_message_size)
            .with_max_frame_size(c.max_message_size)
            .with_max_queued_bytes(c.max_queued_bytes)
            .with_compression_level(c.compression_level)
    }

    /// Accepts WebSocket connections on `listener` until [`shutdown`](Hub::shutdown)
    /// begins. Each connection runs in its own task.
    ///
    /// ```no_run
    /// # async fn run() -> std::io::Result<()> {
    /// let hub = wshub::Hub::builder().build();
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    /// hub.serve(listener).await
    /// # }
    /// ```
    pub async fn serve(&self, listener: TcpListener) -> io::Result<()> {
        self.accept_loop(listener, |hub, tcp, peer| {
            let conn_hub = hub.clone();
            hub.spawn_tracked(async move { conn_hub.serve_stream(tcp, Some(peer)).await });
        })
        .await
    }

    /// Like [`serve`](Hub::serve), over TLS (`wss://`). The TLS handshake must finish
    /// within `handshake_timeout`.
    #[cfg(feature = "tls")]
    pub async fn serve_tls(
        &self,
        listener: TcpListener,
        acceptor: tokio_rustls::TlsAcceptor,
    ) -> io::Result<()> {
        self.accept_loop(listener, move |hub, tcp, peer| {
            let acceptor = acceptor.clone();
            let tracker = hub.clone();
            tracker.spawn_tracked(async move {
                let timeout = hub.config().handshake_timeout;
                match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => hub.serve_stream(tls, Some(peer)).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        })
        .await
    }

    async fn accept_loop(
        &self,
        listener: TcpListener,
        mut on_accept: impl FnMut(Hub, tokio::net::TcpStream, SocketAddr),
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
                    let _ = tcp.set_nodelay(true);
                    on_accept(self.clone(), tcp, peer);
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

    /// Serves one already-accepted stream (plain TCP, TLS, a Unix socket...): reads the
    /// upgrade request, applies limits and authentication, and runs the connection to
    /// its end.
    pub async fn serve_stream<S>(&self, stream: S, peer: Option<SocketAddr>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        // The handshake runs in its own allocation, freed when it ends: awaited inline,
        // its state (request, headers, timers) would stay in every connection's task
        // for the connection's whole life.
        let Some((ws, identity, slot)) = Box::pin(self.upgrade(stream, peer)).await else {
            return;
        };
        session::run(self.clone(), ws, identity, peer).await;
        drop(slot);
    }

    /// The opening handshake, limits and authentication of one raw stream.
    async fn upgrade<S>(
        &self,
        stream: S,
        peer: Option<SocketAddr>,
    ) -> Option<(WebSocket<S>, Identity, Slot)>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let upgrade = match accept_request(stream, peer, &self.handshake_config()).await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(?peer, error = %e, "handshake refused");
                return None;
            }
        };
        let admitted = self.admit(auth_request(upgrade.request(), peer)).await;
        let (slot, identity) = match admitted {
            Ok(ok) => ok,
            Err((status, message)) => {
                let _ = upgrade.reject(status, &message).await;
                return None;
            }
        };
        match upgrade.accept(self.ws_config()).await {
            Ok(ws) => Some((ws, identity, slot)),
            Err(e) => {
                tracing::debug!(?peer, error = %e, "upgrade failed");
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
        let slot = self.reserve_slot(peer).map_err(|e| match e {
            SlotError::Full => (
                StatusCode::SERVICE_UNAVAILABLE,
                "too many connections".to_owned(),
            ),
            SlotError::PerIp => (
                StatusCode::TOO_MANY_REQUESTS,
                "too many connections from your address".to_owned(),
            ),
        })?;
        let timeout = self.config().handshake_timeout;
        let identity =
            match tokio::time::timeout(timeout, self.0.auth.authenticate(&auth_req)).await {
                Ok(Ok(identity)) => identity,
                Ok(Err(rejection)) => {
                    tracing::debug!(?peer, %rejection, "authentication refused");
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
            return Err((StatusCode::UNAUTHORIZED, "token expired".into()));
        }
        Ok((slot, identity))
    }
}

/// What the authenticator sees of an upgrade request.
fn auth_request<B>(req: &http::Request<B>, peer: Option<SocketAddr>) -> AuthRequest {
    let auth_req = AuthRequest::from_request(req);
    match peer {
        Some(peer) => auth_req.with_peer_addr(peer),
        None => auth_req,
    }
}

fn rejection_response(r: &AuthRejection) -> (StatusCode, String) {
    (r.status(), r.message().to_owned())
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
        /// application's own routes on one port:
        ///
        /// ```no_run
        /// use axum::{Router, routing::get};
        /// # async fn run() -> std::io::Result<()> {
        /// let hub = wshub::Hub::builder().build();
        /// let app = Router::new()
        ///     .route("/", get(|| async { "hello" }))
        ///     .route("/ws", hub.axum_route());
        /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
        /// // `with_connect_info` gives the hub peer addresses (per-IP limits, auth).
        /// axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await
        /// # }
        /// ```
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

        async fn upgrade_axum(&self, mut req: Request) -> Response {
            let peer = req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0);
            let negotiated = match negotiate(&req, &self.handshake_config()) {
                Ok(n) => n,
                Err(e) => {
                    let status = e.status().unwrap_or(StatusCode::BAD_REQUEST);
                    return (status, e.response_headers(), format!("{e}\n")).into_response();
                }
            };
            let (slot, identity) = match self.admit(auth_request(&req, peer)).await {
                Ok(ok) => ok,
                Err((status, message)) => return (status, message).into_response(),
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
                        session::run(hub, ws, identity, peer).await;
                    }
                    Err(e) => tracing::debug!(?peer, error = %e, "upgrade failed"),
                }
                drop(slot);
            });
            let (parts, ()) = negotiated.response().into_parts();
            Response::from_parts(parts, axum::body::Body::empty())
        }
    }
}
