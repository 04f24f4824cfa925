use super::*;
use crate::error::CapacityError;
use crate::ws::frame::{self, CLOSE, CONTINUE, PING, TEXT};
use std::time::Duration;
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

// Paused: the server waits `close_timeout` for the peer's EOF, which never comes.
#[tokio::test(start_paused = true)]
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

// Paused: the server waits `close_timeout` for the peer's EOF, which never comes.
#[tokio::test(start_paused = true)]
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

// Paused: the server waits `close_timeout` for the peer's EOF, which never comes.
#[tokio::test(start_paused = true)]
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

/// Reads frames off `raw` until EOF: `(opcode, payload)` each (server frames are
/// unmasked).
async fn read_frames_to_eof(raw: &mut DuplexStream) -> Vec<(OpCode, Vec<u8>)> {
    let mut buf = Vec::new();
    raw.read_to_end(&mut buf).await.unwrap();
    let mut frames = Vec::new();
    let mut rest = &buf[..];
    while let Some(head) = frame::parse_head(rest).unwrap() {
        let end = head.header_len + head.len as usize;
        assert!(rest.len() >= end, "truncated frame in {buf:x?}");
        frames.push((head.header.opcode, rest[head.header_len..end].to_vec()));
        rest = &rest[end..];
    }
    assert!(rest.is_empty(), "bytes after the last whole frame");
    frames
}

fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    p
}

// Paused: the server waits `close_timeout` for the peer's EOF, which never comes.
#[tokio::test(start_paused = true)]
async fn error_close_sends_what_was_queued_ahead_of_it() {
    // The bad frame is already buffered, so the error is found before anything is
    // written: the queued replies can only go out if the error close keeps them.
    let (a, mut raw) = duplex(1 << 20);
    let bad = frame::encode(TEXT, false, b"unmasked", None);
    let mut server = WebSocket::from_parts(
        a,
        Role::Server,
        WsConfig::default(),
        None,
        BytesMut::from(&bad[..]),
    );
    let out = server.outbound();
    for reply in ["reply 1", "reply 2"] {
        out.try_send(&PreparedMessage::new(Message::text(reply)))
            .unwrap();
    }
    let err = server.recv().await.unwrap_err();
    assert!(
        matches!(err, Error::Protocol(ProtocolError::BadMasking)),
        "{err}"
    );
    drop(server);
    let frames = read_frames_to_eof(&mut raw).await;
    let reason = ProtocolError::BadMasking.to_string();
    assert_eq!(
        frames,
        [
            (TEXT, b"reply 1".to_vec()),
            (TEXT, b"reply 2".to_vec()),
            (CLOSE, close_payload(1002, &reason)),
        ]
    );
}

#[tokio::test]
async fn nothing_the_peer_sends_after_the_close_decision_is_returned() {
    let mut input = masked(TEXT, true, b"accepted");
    input.extend(masked(TEXT, true, b"after the close"));
    input.extend(masked(CLOSE, true, &close_payload(1000, "")));
    let (a, mut raw) = duplex(1 << 20);
    let mut server =
        WebSocket::from_parts(a, Role::Server, WsConfig::default(), None, BytesMut::new());
    raw.write_all(&input).await.unwrap();
    let first = server.recv().await.unwrap().unwrap();
    assert_eq!(first.as_text(), Some("accepted"));
    // The owner decides to close (as the hub does on flooding) and replies first.
    let out = server.outbound();
    out.try_send(&PreparedMessage::new(Message::text("reply")))
        .unwrap();
    out.close(CloseCode::Policy, "flooding");
    assert_eq!(
        out.try_send(&PreparedMessage::new(Message::text("late"))),
        Err(SendError::Closed)
    );
    // The second message is read (to reach the peer's close) but never returned.
    assert!(server.recv().await.unwrap().is_none());
    drop(server);
    let frames = read_frames_to_eof(&mut raw).await;
    assert_eq!(
        frames,
        [
            (TEXT, b"reply".to_vec()),
            (CLOSE, close_payload(1008, "flooding")),
        ]
    );
}

#[tokio::test]
async fn a_peer_that_reads_again_in_time_gets_the_queue_then_the_close() {
    // A 4 KiB pipe: the 64 KiB message cannot all be written until the peer reads.
    let (a, mut raw) = duplex(4 * 1024);
    let mut server =
        WebSocket::from_parts(a, Role::Server, WsConfig::default(), None, BytesMut::new());
    let out = server.outbound();
    let big = vec![7u8; 64 * 1024];
    out.try_send(&PreparedMessage::new(Message::binary(big.clone())))
        .unwrap();
    let task = tokio::spawn(async move { server.recv().await.map(|m| m.is_none()) });
    while out.queued_bytes() > 0 {
        tokio::task::yield_now().await;
    }
    out.close(CloseCode::Again, "slow consumer");
    // Read up to the close frame, then answer it.
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    while frames.last().is_none_or(|(op, _)| *op != CLOSE) {
        let mut chunk = [0u8; 8192];
        let n = raw.read(&mut chunk).await.unwrap();
        assert!(n > 0, "EOF before the close frame");
        buf.extend_from_slice(&chunk[..n]);
        while let Some(head) = frame::parse_head(&buf).unwrap() {
            let end = head.header_len + head.len as usize;
            if buf.len() < end {
                break;
            }
            frames.push((head.header.opcode, buf[head.header_len..end].to_vec()));
            buf.drain(..end);
        }
    }
    assert_eq!(
        frames,
        [
            (frame::BINARY, big),
            (CLOSE, close_payload(1013, "slow consumer")),
        ]
    );
    raw.write_all(&masked(CLOSE, true, &close_payload(1013, "")))
        .await
        .unwrap();
    assert!(task.await.unwrap().unwrap(), "closed normally");
}

#[tokio::test(start_paused = true)]
async fn a_close_queued_while_the_write_is_stuck_ends_within_close_timeout() {
    let timeout = Duration::from_secs(5);
    // A 1 KiB pipe whose other end never reads: the write side blocks for good.
    let (a, _raw) = duplex(1024);
    let mut server = WebSocket::from_parts(
        a,
        Role::Server,
        WsConfig::default().with_close_timeout(timeout),
        None,
        BytesMut::new(),
    );
    let out = server.outbound();
    out.try_send(&PreparedMessage::new(Message::binary(vec![0u8; 64 * 1024])))
        .unwrap();
    let task = tokio::spawn(async move { server.recv().await.map(|m| m.is_none()) });
    // Once the queue is empty the connection task holds the message in its write batch
    // and is parked on the full pipe.
    while out.queued_bytes() > 0 {
        tokio::task::yield_now().await;
    }
    // The close comes from another task (as a slow consumer's 1013 or a token expiry
    // does), while the connection task is parked.
    let started = tokio::time::Instant::now();
    out.close(CloseCode::Again, "slow consumer");
    let ended = tokio::time::timeout(timeout * 10, task)
        .await
        .expect("the connection outlived its close timeout")
        .unwrap();
    assert!(ended.unwrap(), "ends as a timed-out close, not an error");
    let took = started.elapsed();
    assert!(
        took >= timeout && took < timeout + Duration::from_millis(100),
        "closing took {took:?}"
    );
}

/// Once everything queued is written, an idle connection holds no write buffers: the
/// batch and the queue give their memory back (each idle connection would otherwise
/// keep two small deques for good).
#[tokio::test]
async fn written_out_connection_keeps_no_write_buffers() {
    let (mut server, mut raw) = raw_server(WsConfig::default());
    let out = server.outbound();
    for i in 0..3u8 {
        out.try_send(&PreparedMessage::new(Message::binary(vec![i; 10])))
            .unwrap();
    }
    // A pending pong goes first, so the data is appended behind it rather than
    // swapped in: the path that must free the queue's buffer itself.
    server.shared.lock().pong = Some(frame::encode(frame::PONG, false, b"p", None));
    server.flush().await.unwrap();
    assert_eq!(server.wbatch.capacity(), 0);
    assert_eq!(server.shared.lock().items.capacity(), 0);
    // And the plain path: data alone, swapped in.
    out.try_send(&PreparedMessage::new(Message::binary(vec![3; 10])))
        .unwrap();
    server.flush().await.unwrap();
    assert_eq!(server.wbatch.capacity(), 0);
    assert_eq!(server.shared.lock().items.capacity(), 0);
    // What was written: the pong, the three messages, the last one.
    let mut buf = vec![0u8; 3 + 4 * 12];
    raw.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf[..3], &[0x8A, 1, b'p']);
    for i in 0..4 {
        let at = 3 + 12 * i;
        assert_eq!(&buf[at..at + 3], &[0x82, 10, i as u8]);
    }
}
