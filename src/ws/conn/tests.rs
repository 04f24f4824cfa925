use super::*;
use crate::error::CapacityError;
use crate::ws::frame::{self, CLOSE, CONTINUE, PING, TEXT};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};
use tungstenite::protocol::frame::coding::OpCode;

fn pair() -> (WebSocket<DuplexStream>, WebSocket<DuplexStream>) {
    let (a, b) = duplex(64 * 1024);
    let cfg = WsConfig::default();
    (
        WebSocket::from_parts(a, Role::Server, cfg.clone(), None, BytesMut::new()),
        WebSocket::from_parts(b, Role::Client, cfg, None, BytesMut::new()),
    )
}

/// A server over one end of a pipe, and the raw other end.
fn raw_server(cfg: WsConfig) -> (WebSocket<DuplexStream>, DuplexStream) {
    let (a, b) = duplex(1 << 20);
    (
        WebSocket::from_parts(a, Role::Server, cfg, None, BytesMut::new()),
        b,
    )
}

fn masked(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut f = frame::encode(opcode, false, payload, Some([9, 8, 7, 6])).to_vec();
    if !fin {
        f[0] &= 0x7F;
    }
    f
}

async fn read_close_code(raw: &mut DuplexStream) -> u16 {
    let mut buf = Vec::new();
    raw.read_to_end(&mut buf).await.unwrap();
    let head = frame::parse_head(&buf).unwrap().unwrap();
    assert_eq!(
        head.header.opcode, CLOSE,
        "expected a close frame, got {buf:x?}"
    );
    u16::from_be_bytes([buf[head.header_len], buf[head.header_len + 1]])
}

#[tokio::test]
async fn messages_round_trip_both_ways() {
    let (mut server, mut client) = pair();
    let echo = tokio::spawn(async move {
        while let Some(m) = server.recv().await.unwrap() {
            server.send(m).await.unwrap();
        }
    });
    for len in [0usize, 1, 125, 126, 65535, 65536, 300_000] {
        let bin = Message::binary(vec![(len % 251) as u8; len]);
        client.send(bin.clone()).await.unwrap();
        assert_eq!(client.recv().await.unwrap().unwrap(), bin);
        let txt = Message::text("é".repeat(len / 2));
        client.send(txt.clone()).await.unwrap();
        assert_eq!(client.recv().await.unwrap().unwrap(), txt);
    }
    client.close(CloseCode::Normal, "bye").await.unwrap();
    echo.await.unwrap();
}

#[tokio::test]
async fn fragments_and_interleaved_ping_reassemble() {
    let (mut server, mut raw) = raw_server(WsConfig::default());
    let mut bytes = masked(TEXT, false, "héllo ".as_bytes());
    bytes.extend(masked(PING, true, b"p1"));
    // Split the two-byte 'é' across fragments: validation must carry over.
    let word = "wörld".as_bytes();
    bytes.extend(masked(CONTINUE, false, &word[..2]));
    bytes.extend(masked(CONTINUE, true, &word[2..]));
    raw.write_all(&bytes).await.unwrap();
    let msg = server.recv().await.unwrap().unwrap();
    assert_eq!(msg.as_text(), Some("héllo wörld"));
    // The pong went out while the message was being assembled.
    server.flush().await.unwrap();
    let mut pong = [0u8; 4];
    raw.read_exact(&mut pong).await.unwrap();
    assert_eq!(pong, [0x8A, 2, b'p', b'1']);
}

#[tokio::test]
async fn unmasked_client_frame_is_1002() {
    let (mut server, mut raw) = raw_server(WsConfig::default());
    raw.write_all(&frame::encode(TEXT, false, b"hi", None))
        .await
        .unwrap();
    let err = server.recv().await.unwrap_err();
    assert!(
        matches!(err, Error::Protocol(ProtocolError::BadMasking)),
        "{err}"
    );
    drop(server);
    assert_eq!(read_close_code(&mut raw).await, 1002);
}

#[tokio::test]
async fn bad_utf8_fails_before_the_frame_ends() {
    let (mut server, mut raw) = raw_server(WsConfig::default());
    let full = masked(
        TEXT,
        true,
        b"abc\xff and a lot more text that never arrives",
    );
    // Send only the header and the first 4 payload bytes.
    raw.write_all(&full[..2 + 4 + 4]).await.unwrap();
    let err = server.recv().await.unwrap_err();
    assert!(
        matches!(err, Error::Protocol(ProtocolError::InvalidUtf8)),
        "{err}"
    );
    drop(server);
    assert_eq!(read_close_code(&mut raw).await, 1007);
}

#[tokio::test]
async fn oversized_frame_is_1009_before_its_payload() {
    let (mut server, mut raw) = raw_server(WsConfig::default().with_max_frame_size(1000));
    // Header of a 1 MiB masked binary frame, no payload.
    let mut head = vec![0x82, 0x80 | 127];
    head.extend_from_slice(&(1u64 << 20).to_be_bytes());
    head.extend_from_slice(&[1, 2, 3, 4]);
    raw.write_all(&head).await.unwrap();
    let err = server.recv().await.unwrap_err();
    assert!(
        matches!(err, Error::Capacity(CapacityError::FrameTooLarge { .. })),
        "{err}"
    );
    drop(server);
    assert_eq!(read_close_code(&mut raw).await, 1009);
}

#[tokio::test]
async fn close_is_echoed_with_its_code() {
    let (mut server, mut raw) = raw_server(WsConfig::default());
    let mut payload = 4000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"done");
    raw.write_all(&masked(CLOSE, true, &payload)).await.unwrap();
    assert!(server.recv().await.unwrap().is_none());
    let peer = server.peer_close().unwrap().unwrap();
    assert_eq!(u16::from(peer.code), 4000);
    assert_eq!(peer.reason.as_str(), "done");
    drop(server);
    assert_eq!(read_close_code(&mut raw).await, 4000);
}

#[tokio::test]
async fn outbound_queue_is_bounded() {
    let (server, _raw) = raw_server(WsConfig::default().with_max_queued_bytes(10_000));
    let out = server.outbound();
    let msg = PreparedMessage::new(Message::binary(vec![0u8; 4000]));
    assert_eq!(out.try_send(&msg), Ok(()));
    assert_eq!(out.try_send(&msg), Ok(()));
    assert_eq!(out.try_send(&msg), Err(SendError::Full));
    out.close_now(CloseCode::Again, "slow consumer");
    assert_eq!(out.queued_bytes(), 0);
    assert_eq!(out.try_send(&msg), Err(SendError::Closed));
}

#[tokio::test]
async fn idle_connection_holds_no_read_buffer() {
    let (mut server, mut client) = pair();
    client.send(Message::text("x".repeat(5000))).await.unwrap();
    assert!(server.recv().await.unwrap().is_some());
    assert_eq!(server.rbuf.capacity(), 0);
}
