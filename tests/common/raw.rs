//! A raw WebSocket client over a plain tokio `TcpStream`, for the adversarial tests.
//!
//! Nothing here goes through the crate: the opening handshake is written by hand, and
//! frames are encoded and parsed bit by bit, so a test can send exactly the bytes it
//! wants (unmasked frames, reserved bits and opcodes, lying length fields, truncated
//! payloads) and see exactly the bytes the server answers with.
//!
//! Every read is bounded in time ([`READ_TIMEOUT`] for a frame, [`EOF_TIMEOUT`] for the
//! server to close the TCP connection after its close frame): a server that hangs fails
//! the test instead of hanging it.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

/// Continuation frame.
pub const OP_CONT: u8 = 0x0;
/// Text frame.
pub const OP_TEXT: u8 = 0x1;
/// Binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Ping frame.
pub const OP_PING: u8 = 0x9;
/// Pong frame.
pub const OP_PONG: u8 = 0xA;

/// RSV1 in the `rsv` argument of [`frame`] and [`RawClient::send_frame`].
pub const RSV1: u8 = 0b100;
/// RSV2 in the `rsv` argument.
pub const RSV2: u8 = 0b010;
/// RSV3 in the `rsv` argument.
pub const RSV3: u8 = 0b001;

/// How long [`RawClient::read_frame`] waits for a whole frame.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the server has to close the TCP connection after its close frame.
pub const EOF_TIMEOUT: Duration = Duration::from_secs(3);

/// The `Sec-WebSocket-Key` of RFC 6455 §1.3 and the accept value the RFC gives for it,
/// so the handshake check does not depend on the crate's own SHA-1/base64 code.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// `Sec-WebSocket-Accept` for [`KEY`] (RFC 6455 §1.3).
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A valid upgrade request for `addr` with [`KEY`], plus `extra_headers` (complete
/// header lines such as `"Sec-WebSocket-Extensions: permessage-deflate\r\n"`; the final
/// `\r\n` may be left out).
pub fn upgrade_request(addr: SocketAddr, extra_headers: &str) -> String {
    let mut extra = extra_headers.to_owned();
    if !extra.is_empty() && !extra.ends_with("\r\n") {
        extra.push_str("\r\n");
    }
    format!(
        "GET /chat HTTP/1.1\r\n\
         Host: {addr}\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\n\
         Sec-WebSocket-Version: 13\r\n\
         {extra}\r\n"
    )
}

/// XORs `buf` with `key` (RFC 6455 §5.3), eight bytes at a time so that masking the
/// multi-MiB payloads of the limit tests stays fast in debug builds.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4]) {
    let k = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let w = u64::from_ne_bytes((&*chunk).try_into().expect("8 bytes")) ^ k;
        chunk.copy_from_slice(&w.to_ne_bytes());
    }
    // The remainder starts at a multiple of 8, hence of 4: the key restarts at 0.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// The header of a frame: FIN, the `rsv` bits ([`RSV1`] | [`RSV2`] | [`RSV3`]), the
/// opcode (any 4-bit value, reserved ones included), the payload length `len` in the
/// shortest encoding, and the masking key if any. No payload.
pub fn frame_header(fin: bool, rsv: u8, opcode: u8, len: u64, mask: Option<[u8; 4]>) -> Vec<u8> {
    assert!(
        rsv <= 0b111 && opcode <= 0xF,
        "rsv {rsv:#b} or opcode {opcode:#x} out of range"
    );
    let mut out = Vec::with_capacity(14);
    out.push(((fin as u8) << 7) | (rsv << 4) | opcode);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= u64::from(u16::MAX) {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
    out
}

/// A whole frame with a given masking key (`None`: unmasked).
pub fn frame_with_mask(
    fin: bool,
    rsv: u8,
    opcode: u8,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) -> Vec<u8> {
    let mut out = frame_header(fin, rsv, opcode, payload.len() as u64, mask);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key);
    }
    out
}

/// A whole frame, masked with a random key when `masked` (as a client must).
pub fn frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    frame_with_mask(fin, rsv, opcode, payload, masked.then(random_key))
}

/// A masked close frame with `code` and `reason`.
pub fn close_frame(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason);
    frame(true, 0, OP_CLOSE, &payload, true)
}

/// A random masking key that is never all zeros (a zero key would hide masking bugs).
fn random_key() -> [u8; 4] {
    loop {
        let key: [u8; 4] = rand::random();
        if key != [0; 4] {
            return key;
        }
    }
}

/// One frame read from the server, with every header bit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// FIN bit.
    pub fin: bool,
    /// RSV1, RSV2, RSV3 as the high nibble's low three bits (`RSV1` = 0b100).
    pub rsv: u8,
    /// Opcode.
    pub opcode: u8,
    /// Unmasked payload.
    pub payload: Vec<u8>,
}

/// How a read ended without a frame.
#[derive(Debug)]
pub enum ReadEnd {
    /// The server closed the TCP connection (`bytes` were left over, part of a frame).
    Eof {
        /// Bytes of an incomplete frame received before the EOF.
        bytes: usize,
    },
    /// The connection failed (reset and the like).
    Io(io::Error),
    /// Nothing complete arrived in time.
    Timeout,
}

/// A hand-driven WebSocket client connection.
#[derive(Debug)]
pub struct RawClient {
    stream: TcpStream,
    /// Bytes received but not yet parsed into frames.
    buf: Vec<u8>,
    /// Header lines of the server's 101 response (names as sent).
    headers: Vec<(String, String)>,
}

impl RawClient {
    /// Connects to `addr` and performs a valid opening handshake, asserting the server
    /// answers `101 Switching Protocols` with the right `Sec-WebSocket-Accept`.
    /// `extra_headers`: more request header lines, e.g.
    /// `"Sec-WebSocket-Extensions: permessage-deflate\r\n"`.
    pub async fn connect(addr: SocketAddr, extra_headers: &str) -> RawClient {
        Self::connect_pipelined(addr, extra_headers, &[]).await
    }

    /// [`connect`](Self::connect), writing `pipelined` (frames) in the same write as the
    /// request head, before the 101 response has arrived.
    pub async fn connect_pipelined(
        addr: SocketAddr,
        extra_headers: &str,
        pipelined: &[u8],
    ) -> RawClient {
        let mut stream = tokio::time::timeout(READ_TIMEOUT, TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect");
        stream.set_nodelay(true).expect("set_nodelay");
        let mut request = upgrade_request(addr, extra_headers).into_bytes();
        request.extend_from_slice(pipelined);
        stream
            .write_all(&request)
            .await
            .expect("write the upgrade request");
        Self::finish_handshake(stream).await
    }

    /// Reads the server's answer to an upgrade request the caller already wrote on
    /// `stream` (in whatever pieces it liked, built with [`upgrade_request`]), asserting
    /// a 101 with the right `Sec-WebSocket-Accept`. Bytes read past the response head
    /// are kept as the start of the frame stream.
    pub async fn finish_handshake(mut stream: TcpStream) -> RawClient {
        let (response, leftover) = read_http_response(&mut stream).await;
        assert_eq!(
            response.status, 101,
            "expected 101 Switching Protocols, got {} {:?} body {:?}",
            response.status, response.headers, response.body
        );
        let accept = header_value(&response.headers, "sec-websocket-accept");
        assert_eq!(
            accept,
            Some(ACCEPT),
            "bad Sec-WebSocket-Accept in {:?}",
            response.headers
        );
        assert!(
            header_value(&response.headers, "upgrade")
                .is_some_and(|v| v.eq_ignore_ascii_case("websocket")),
            "101 without Upgrade: websocket: {:?}",
            response.headers
        );
        RawClient {
            stream,
            buf: leftover,
            headers: response.headers,
        }
    }

    /// The header lines of the 101 response.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The value of the 101 response's header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }

    /// Sends one frame: `rsv` is a combination of [`RSV1`], [`RSV2`], [`RSV3`]; `opcode`
    /// any 4-bit value; masked with a random key when `masked`.
    pub async fn send_frame(
        &mut self,
        fin: bool,
        rsv: u8,
        opcode: u8,
        payload: &[u8],
        masked: bool,
    ) {
        let bytes = frame(fin, rsv, opcode, payload, masked);
        self.send_raw(&bytes).await;
    }

    /// Sends a masked, final text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.send_frame(true, 0, OP_TEXT, text.as_bytes(), true)
            .await;
    }

    /// Writes `bytes` as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .await
            .expect("write to the server");
    }

    /// Reads the next frame (within `limit`), without panicking on EOF or timeout.
    pub async fn try_read_frame(&mut self, limit: Duration) -> Result<Frame, ReadEnd> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(frame) = self.parse_frame() {
                return Ok(frame);
            }
            match self.fill(deadline).await {
                Ok(0) => {
                    return Err(ReadEnd::Eof {
                        bytes: self.buf.len(),
                    });
                }
                Ok(_) => {}
                Err(end) => return Err(end),
            }
        }
    }

    /// Reads the next frame with every header bit; panics on EOF, error or timeout.
    pub async fn read_full_frame(&mut self) -> Frame {
        match self.try_read_frame(READ_TIMEOUT).await {
            Ok(frame) => frame,
            Err(end) => panic!("expected a frame from the server, got {end:?}"),
        }
    }

    /// Reads the next frame: `(fin, rsv1, opcode, payload)`. Asserts RSV2 and RSV3 are
    /// clear (no extension the server can negotiate uses them). Panics after
    /// [`READ_TIMEOUT`], on EOF and on errors.
    pub async fn read_frame(&mut self) -> (bool, bool, u8, Vec<u8>) {
        let f = self.read_full_frame().await;
        assert_eq!(f.rsv & (RSV2 | RSV3), 0, "server set RSV2/RSV3: {f:?}");
        (f.fin, f.rsv & RSV1 != 0, f.opcode, f.payload)
    }

    /// Reads a whole message (reassembling fragments, skipping nothing): asserts the
    /// next frames form one data message and returns `(opcode, rsv1 of its first
    /// frame, payload)`.
    pub async fn read_message(&mut self) -> (u8, bool, Vec<u8>) {
        let (fin, rsv1, opcode, mut payload) = self.read_frame().await;
        assert!(
            opcode == OP_TEXT || opcode == OP_BINARY,
            "expected a data message, got opcode {opcode:#x} payload {:?}",
            String::from_utf8_lossy(&payload)
        );
        let mut done = fin;
        while !done {
            let (fin, rsv1_cont, op, more) = self.read_frame().await;
            assert_eq!(
                op, OP_CONT,
                "expected a continuation frame, got opcode {op:#x}"
            );
            assert!(!rsv1_cont, "RSV1 on a continuation frame from the server");
            payload.extend_from_slice(&more);
            done = fin;
        }
        (opcode, rsv1, payload)
    }

    /// Asserts the next message is an uncompressed text message equal to `text`.
    pub async fn expect_text(&mut self, text: &str) {
        let (opcode, rsv1, payload) = self.read_message().await;
        assert_eq!(opcode, OP_TEXT, "expected a text message");
        assert!(!rsv1, "unexpectedly compressed echo of {text:?}");
        assert_eq!(
            String::from_utf8_lossy(&payload),
            text,
            "wrong echo ({} bytes instead of {})",
            payload.len(),
            text.len()
        );
    }

    /// Asserts the next frame is a close frame and returns its payload, then asserts the
    /// server closes the TCP connection.
    pub async fn expect_close_frame(&mut self) -> Vec<u8> {
        let f = match self.try_read_frame(READ_TIMEOUT).await {
            Ok(f) => f,
            Err(end) => panic!("expected a close frame from the server, got {end:?}"),
        };
        assert_eq!(
            f.opcode,
            OP_CLOSE,
            "expected a close frame, got opcode {:#x} payload {:?}",
            f.opcode,
            String::from_utf8_lossy(&f.payload)
        );
        assert!(f.fin && f.rsv == 0, "bad close frame header: {f:?}");
        let payload = f.payload;
        self.expect_eof().await;
        payload
    }

    /// Asserts the next frame is a close frame carrying exactly `code`, then that the
    /// server closes the TCP connection within [`EOF_TIMEOUT`].
    pub async fn expect_close(&mut self, code: u16) {
        let payload = self.expect_close_frame().await;
        assert!(
            payload.len() >= 2,
            "expected close code {code}, got a close frame with payload {payload:?}"
        );
        let got = u16::from_be_bytes([payload[0], payload[1]]);
        assert_eq!(
            got,
            code,
            "wrong close code (reason {:?})",
            String::from_utf8_lossy(&payload[2..])
        );
        assert!(
            std::str::from_utf8(&payload[2..]).is_ok(),
            "close reason is not UTF-8: {payload:?}"
        );
    }

    /// Asserts no more bytes arrive and the server closes the TCP connection within
    /// [`EOF_TIMEOUT`]. A reset counts as closed (the close frame was already read).
    pub async fn expect_eof(&mut self) {
        assert!(
            self.buf.is_empty(),
            "bytes after the close frame: {:?}",
            self.buf
        );
        let deadline = Instant::now() + EOF_TIMEOUT;
        match self.fill(deadline).await {
            Ok(0) => {}
            Ok(_) => panic!("data after the close frame: {:?}", self.buf),
            Err(ReadEnd::Io(e)) if e.kind() == io::ErrorKind::ConnectionReset => {}
            Err(end) => panic!("server did not close the TCP connection: {end:?}"),
        }
    }

    /// Reads once more into `buf` (at most until `deadline`): `Ok(0)` on EOF.
    async fn fill(&mut self, deadline: Instant) -> Result<usize, ReadEnd> {
        let mut chunk = vec![0u8; 64 * 1024];
        match timeout_at(deadline, self.stream.read(&mut chunk)).await {
            Err(_) => Err(ReadEnd::Timeout),
            Ok(Err(e)) => Err(ReadEnd::Io(e)),
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
        }
    }

    /// Takes one complete frame off the front of `buf`, if there is one.
    fn parse_frame(&mut self) -> Option<Frame> {
        let b = &self.buf;
        if b.len() < 2 {
            return None;
        }
        let fin = b[0] & 0x80 != 0;
        let rsv = (b[0] >> 4) & 0b111;
        let opcode = b[0] & 0x0F;
        assert!(
            b[1] & 0x80 == 0,
            "the server sent a masked frame (RFC 6455 §5.1)"
        );
        let (len, mut pos) = match b[1] & 0x7F {
            126 => {
                if b.len() < 4 {
                    return None;
                }
                let len = u64::from(u16::from_be_bytes([b[2], b[3]]));
                assert!(len >= 126, "non-minimal 16-bit length {len}");
                (len, 4)
            }
            127 => {
                if b.len() < 10 {
                    return None;
                }
                let len = u64::from_be_bytes(b[2..10].try_into().expect("8 bytes"));
                assert!(len > u64::from(u16::MAX), "non-minimal 64-bit length {len}");
                (len, 10)
            }
            n => (u64::from(n), 2),
        };
        assert!(len <= 64 << 20, "server announced a {len}-byte frame");
        let len = len as usize;
        if b.len() < pos + len {
            return None;
        }
        let payload = b[pos..pos + len].to_vec();
        pos += len;
        self.buf.drain(..pos);
        Some(Frame {
            fin,
            rsv,
            opcode,
            payload,
        })
    }
}

/// Connects a new client and checks it gets an echo: the server survived whatever the
/// test did to it and serves the next client.
pub async fn assert_server_alive(addr: SocketAddr) {
    let mut client = RawClient::connect(addr, "").await;
    client.send_text("still alive?").await;
    client.expect_text("still alive?").await;
    client.send_raw(&close_frame(1000, b"")).await;
    client.expect_close(1000).await;
}

/// An HTTP response as read by [`raw_http`].
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header lines, names as sent.
    pub headers: Vec<(String, String)>,
    /// Body (`Content-Length` bytes, or up to EOF), lossily decoded.
    pub body: String,
}

/// The value of header `name` (case-insensitive) in `headers`.
pub fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Sends `request` (any bytes, as text) on a new connection to `addr` and reads the
/// response: `(status code, headers, body)`. Does not wait for the connection to close
/// after a 101.
pub async fn raw_http(addr: SocketAddr, request: &str) -> (u16, Vec<(String, String)>, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let r = raw_http_on(&mut stream, request.as_bytes()).await;
    (r.status, r.headers, r.body)
}

/// Sends `request` on `stream` and reads one HTTP response. A write error is ignored
/// (a server refusing an oversized head may stop reading it), as is a reset after the
/// response head arrived.
pub async fn raw_http_on(stream: &mut TcpStream, request: &[u8]) -> HttpResponse {
    if let Err(e) = stream.write_all(request).await {
        eprintln!("raw_http: write failed ({e}); reading the response anyway");
    }
    read_http_response(stream).await.0
}

/// Reads one HTTP response head (and its `Content-Length` body) within
/// [`READ_TIMEOUT`]; returns it and any bytes read past it.
async fn read_http_response(stream: &mut TcpStream) -> (HttpResponse, Vec<u8>) {
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let mut eof = false;
    let (status, headers, head_len) = loop {
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut res = httparse::Response::new(&mut hs);
        match res.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let headers = res
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_owned(),
                            String::from_utf8_lossy(h.value).trim().to_owned(),
                        )
                    })
                    .collect::<Vec<_>>();
                break (res.code.expect("status code"), headers, len);
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => panic!(
                "malformed HTTP response ({e}): {:?}",
                String::from_utf8_lossy(&buf)
            ),
        }
        assert!(
            !eof,
            "connection closed before a complete HTTP response head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        match timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => panic!(
                "timed out waiting for the HTTP response; got {:?}",
                String::from_utf8_lossy(&buf)
            ),
            Ok(Ok(0)) => eof = true,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => panic!(
                "read error before a complete HTTP response head ({e}); got {:?}",
                String::from_utf8_lossy(&buf)
            ),
        }
    };
    let mut rest = buf.split_off(head_len);
    if status == 101 {
        return (
            HttpResponse {
                status,
                headers,
                body: String::new(),
            },
            rest,
        );
    }
    let content_length = header_value(&headers, "content-length").map(|v| {
        v.parse::<usize>()
            .unwrap_or_else(|_| panic!("bad Content-Length {v:?}"))
    });
    while !eof && content_length.is_none_or(|n| rest.len() < n) {
        match timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => panic!("timed out reading the HTTP response body"),
            Ok(Ok(0)) | Ok(Err(_)) => eof = true,
            Ok(Ok(n)) => rest.extend_from_slice(&chunk[..n]),
        }
    }
    let body_len = content_length.unwrap_or(rest.len());
    assert!(
        rest.len() >= body_len,
        "body shorter than Content-Length {body_len}: {:?}",
        String::from_utf8_lossy(&rest)
    );
    let leftover = rest.split_off(body_len);
    (
        HttpResponse {
            status,
            headers,
            body: String::from_utf8_lossy(&rest).into_owned(),
        },
        leftover,
    )
}
