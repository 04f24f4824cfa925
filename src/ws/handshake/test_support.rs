//! Fixtures shared by the handshake tests.

use tokio::io::{AsyncReadExt, DuplexStream};

use super::HandshakeConfig;

/// The example of RFC 6455 §1.3.
pub(super) const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub(super) const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

pub(super) fn cfg() -> HandshakeConfig {
    HandshakeConfig::default()
}

/// Read from `stream` until a whole HTTP head has arrived.
pub(super) async fn read_http_head(stream: &mut DuplexStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0; 256];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "EOF after {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8(buf).unwrap()
}
