//! Interoperability with Rust peers nobody here wrote, and of the engine's client role:
//! - tokio-tungstenite's client against the crate's echo server (tungstenite does not
//!   speak permessage-deflate, so these run uncompressed), unfragmented and fragmented;
//! - the crate's own client (`ws::handshake::connect`) against Python `websockets` as
//!   the server, with and without compression.

mod common;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as TMessage;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
use wshub::ws::handshake::{ClientConfig, connect};
use wshub::ws::{CloseCode, Message, WsConfig};

const SIZES: [usize; 6] = [0, 125, 126, 65535, 65536, 1 << 20];

/// Deterministic pseudo-random bytes.
fn bytes(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// Text of exactly `len` bytes with multi-byte characters.
fn text(len: usize) -> String {
    let mut s = String::with_capacity(len);
    let pieces = ["a", "é", "€", "𝄞", "z"];
    let mut i = 0;
    while s.len() < len {
        let p = pieces[i % pieces.len()];
        if s.len() + p.len() > len {
            s.push('x');
        } else {
            s.push_str(p);
        }
        i += 1;
    }
    s
}

fn fragment(opcode: Data, payload: &[u8], parts: usize) -> Vec<Frame> {
    let chunk = payload.len().div_ceil(parts).max(1);
    let pieces: Vec<&[u8]> = if payload.is_empty() {
        vec![&[][..]]
    } else {
        payload.chunks(chunk).collect()
    };
    let n = pieces.len();
    pieces
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let header = FrameHeader {
                is_final: i + 1 == n,
                opcode: if i == 0 {
                    OpCode::Data(opcode)
                } else {
                    OpCode::Data(Data::Continue)
                },
                ..FrameHeader::default()
            };
            Frame::from_payload(header, p.to_vec().into())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_tungstenite_client_against_echo() {
    let addr = common::echo::spawn_echo(true).await;
    let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
        .await
        .expect("connect");
    assert!(resp.headers().get("sec-websocket-extensions").is_none());
    let mut cases = 0;
    for (i, &len) in SIZES.iter().enumerate() {
        let t = text(len);
        let b = bytes(len, i as u32 + 1);
        // Unfragmented.
        ws.send(TMessage::text(t.clone())).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), TMessage::text(t.clone()));
        ws.send(TMessage::binary(b.clone())).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            TMessage::binary(b.clone())
        );
        // Fragmented (raw frames; tungstenite masks them as a client must).
        for frame in fragment(Data::Text, t.as_bytes(), 5) {
            ws.send(TMessage::Frame(frame)).await.unwrap();
        }
        assert_eq!(ws.next().await.unwrap().unwrap(), TMessage::text(t));
        for frame in fragment(Data::Binary, &b, 3) {
            ws.send(TMessage::Frame(frame)).await.unwrap();
        }
        assert_eq!(ws.next().await.unwrap().unwrap(), TMessage::binary(b));
        cases += 4;
    }
    assert_eq!(cases, 24);
    ws.close(None).await.unwrap();
    // The server answers the close and ends the stream.
    match ws.next().await {
        Some(Ok(TMessage::Close(_))) | None => {}
        other => panic!("expected the close answer, got {other:?}"),
    }
}

async fn engine_client_against_python_server(compression: bool) {
    let (_server, port) = common::spawn_python_echo_server(compression);
    let url = format!("ws://127.0.0.1:{port}/");
    let (mut ws, resp) = connect(&url, &ClientConfig::default(), WsConfig::default())
        .await
        .expect("handshake with Python websockets");
    assert_eq!(resp.status(), 101);
    assert_eq!(
        ws.deflate().is_some(),
        compression,
        "permessage-deflate negotiated iff the server has it on"
    );
    for (i, &len) in SIZES.iter().enumerate() {
        for msg in [
            Message::text(text(len)),
            Message::binary(bytes(len, i as u32 + 7)),
        ] {
            ws.send(msg.clone()).await.unwrap();
            let echoed = ws.recv().await.unwrap().expect("echo");
            assert_eq!(echoed, msg, "{len} bytes");
        }
    }
    ws.close(CloseCode::Normal, "done").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_client_against_python_server_with_deflate() {
    engine_client_against_python_server(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_client_against_python_server_without_deflate() {
    engine_client_against_python_server(false).await;
}
