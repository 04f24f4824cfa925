//! One connection attempt: the token placed in the request, TCP (and TLS for
//! `wss://`), the handshake on the crate's own engine, and the failure sorted into a
//! [`Disconnect`].

use std::sync::Arc;

use http::HeaderValue;
use http::header::AUTHORIZATION;
use tokio::net::TcpStream;

use super::error::{ClientError, Disconnect};
use super::options::{ClientOptions, TokenPlacement};
use crate::error::HandshakeError;
use crate::protocol::SUBPROTOCOL;
use crate::ws::handshake::{ClientConfig, WsUrl};
use crate::ws::{WebSocket, WsConfig};

/// An open connection, over TCP or TLS (boxed: the client task holds one at a time,
/// and its future stays small while it waits between connections).
pub(crate) enum Transport {
    Plain(Box<WebSocket<TcpStream>>),
    #[cfg(feature = "tls")]
    Tls(Box<WebSocket<tokio_rustls::client::TlsStream<TcpStream>>>),
}

/// Everything an attempt needs, cheap to clone into the attempt's own future (which
/// then borrows nothing from the client task, so the task keeps serving commands
/// while it runs).
#[derive(Clone)]
pub(crate) struct Connector {
    url: Arc<str>,
    placement: TokenPlacement,
    handshake: ClientConfig,
    ws: WsConfig,
    #[cfg(feature = "tls")]
    tls: Option<(tokio_rustls::TlsConnector, Arc<str>, u16)>,
}

impl Connector {
    /// Checks the URL (and, for `wss://`, that TLS is configured).
    pub(crate) fn new(
        url: &str,
        placement: TokenPlacement,
        options: &ClientOptions,
        #[cfg(feature = "tls")] tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    ) -> Result<Connector, ClientError> {
        let parsed = WsUrl::parse(url).map_err(|e| ClientError::Config(e.to_string()))?;
        if let TokenPlacement::Query(name) = &placement
            && name.is_empty()
        {
            return Err(ClientError::Config(
                "the token's query parameter needs a name".into(),
            ));
        }
        let handshake = options.handshake.clone().with_subprotocols([SUBPROTOCOL]);
        #[cfg(feature = "tls")]
        let tls = match (parsed.secure, tls) {
            (false, _) => None,
            (true, Some(config)) => Some((
                tokio_rustls::TlsConnector::from(config),
                Arc::from(parsed.host.as_str()),
                parsed.port,
            )),
            (true, None) => {
                return Err(ClientError::Config(
                    "wss:// needs a TLS configuration: ClientBuilder::tls_config".into(),
                ));
            }
        };
        #[cfg(not(feature = "tls"))]
        if parsed.secure {
            return Err(ClientError::Config(
                "wss:// needs wshub's `tls` feature".into(),
            ));
        }
        Ok(Connector {
            url: url.into(),
            placement,
            handshake,
            ws: options.ws.clone(),
            #[cfg(feature = "tls")]
            tls,
        })
    }

    /// One attempt, bounded by the handshake timeout (connects included).
    pub(crate) async fn connect(self, token: Option<String>) -> Result<Transport, Disconnect> {
        let mut cfg = self.handshake.clone();
        let mut url = self.url.to_string();
        if let Some(token) = token {
            match &self.placement {
                TokenPlacement::Header => {
                    let value =
                        HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                            Disconnect::Token(Arc::from(
                                Box::<dyn std::error::Error + Send + Sync>::from(
                                    "the token cannot go in a header (it has control characters)",
                                ),
                            ))
                        })?;
                    cfg.headers.insert(AUTHORIZATION, value);
                }
                TokenPlacement::Query(name) => url = with_query_param(&url, name, &token),
            }
        }
        let deadline = cfg.timeout;
        let attempt = async {
            #[cfg(feature = "tls")]
            if let Some((connector, host, port)) = &self.tls {
                let tcp = TcpStream::connect((&**host, *port)).await?;
                tcp.set_nodelay(true)?;
                let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host.to_string())
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
                let tls = connector.connect(name, tcp).await?;
                let (ws, _) =
                    crate::ws::handshake::client_handshake(tls, &url, &cfg, self.ws.clone())
                        .await?;
                return Ok(Transport::Tls(Box::new(ws)));
            }
            let (ws, _) = crate::ws::handshake::connect(&url, &cfg, self.ws.clone()).await?;
            Ok::<_, HandshakeError>(Transport::Plain(Box::new(ws)))
        };
        match tokio::time::timeout(deadline, attempt).await {
            Ok(Ok(transport)) => Ok(transport),
            Ok(Err(e)) => Err(sort_failure(e)),
            Err(_) => Err(Disconnect::Error(Arc::new(HandshakeError::Timeout.into()))),
        }
    }
}

/// A refusal with an HTTP status becomes [`Disconnect::Refused`] (the policy depends on
/// the status); anything else is a failure to connect.
fn sort_failure(e: HandshakeError) -> Disconnect {
    match &e {
        HandshakeError::Refused(why) => match refusal_status(why) {
            Some(status) => Disconnect::Refused { status },
            None => Disconnect::Error(Arc::new(e.into())),
        },
        _ => Disconnect::Error(Arc::new(e.into())),
    }
}

/// The status of the engine's `"HTTP 401 Unauthorized"` refusals.
fn refusal_status(why: &str) -> Option<u16> {
    let code = why.strip_prefix("HTTP ")?.get(..3)?;
    code.parse().ok().filter(|s| (100..600).contains(s))
}

/// `url` with `name=value` added to its query, both percent-encoded.
fn with_query_param(url: &str, name: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!(
        "{url}{sep}{}={}",
        percent_encode(name),
        percent_encode(value)
    )
}

/// Percent-encodes all but RFC 3986's unreserved characters, so the value reads back
/// the same through any query decoder (`+` included, which forms decode as a space).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_go_in_the_query_percent_encoded() {
        assert_eq!(
            with_query_param("ws://h/ws", "token", "a+b/c=d é"),
            "ws://h/ws?token=a%2Bb%2Fc%3Dd%20%C3%A9"
        );
        assert_eq!(
            with_query_param("ws://h/ws?room=1", "token", "x.y_z-~"),
            "ws://h/ws?room=1&token=x.y_z-~"
        );
    }

    #[test]
    fn refusals_are_sorted_by_status() {
        assert_eq!(refusal_status("HTTP 401 Unauthorized"), Some(401));
        assert_eq!(refusal_status("HTTP 503 Service Unavailable"), Some(503));
        assert_eq!(
            refusal_status("Sec-WebSocket-Accept does not match the key"),
            None
        );
        assert_eq!(refusal_status("HTTP x"), None);
        let d = sort_failure(HandshakeError::Refused("HTTP 403 Forbidden".into()));
        assert_eq!(d.status(), Some(403));
    }
}
