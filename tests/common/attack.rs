//! Fixtures for the connection-exhaustion tests (slowloris): many raw TCP connections
//! from chosen loopback source addresses, a clock that moves only when the test says
//! so, and waiting for the server's counters instead of sleeping.
//!
//! # The clock
//!
//! The tests run on a paused tokio clock (`start_paused = true`). On its own, a paused
//! clock jumps to the next timer whenever the runtime has nothing to run, and with real
//! sockets that happens while a loopback packet is still on its way to epoll: the
//! server's handshake deadlines would fire in the middle of the attack.
//! [`hold_the_clock`] keeps one task always ready, so the runtime never parks and time
//! moves only with `tokio::time::advance`. Every wait is then on an event (a counter, a
//! byte, an EOF), bounded in real time by [`wait_until`] and [`Watchdog`], because a
//! tokio timeout would never fire.

use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::mpsc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;
use tokio::task::JoinHandle;

/// A slowloris request head: a request line and one header, never finished.
pub const PARTIAL_HEAD: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n";

/// The start of a TLS record (handshake, TLS 1.0 record version, 512 bytes announced)
/// and nothing more: a TLS listener waits for the rest.
pub const PARTIAL_TLS_RECORD: &[u8] = &[0x16, 0x03, 0x01, 0x02, 0x00];

/// Real time allowed for any one wait of a test.
pub const REAL_WAIT: Duration = Duration::from_secs(60);

/// Keeps the paused clock from advancing on its own (see the module docs). Abort the
/// handle, or let the runtime end, to stop it.
pub fn hold_the_clock() -> JoinHandle<()> {
    tokio::spawn(async {
        loop {
            tokio::task::yield_now().await;
        }
    })
}

/// Ends the process if the test is still running after `limit` of real time: with a
/// clock that only moves on request, no tokio timeout can bound a test.
pub struct Watchdog(Option<mpsc::Sender<()>>);

impl Watchdog {
    pub fn new(test: &'static str, limit: Duration) -> Watchdog {
        let (tx, rx) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                eprintln!("{test}: still running after {limit:?} of real time; aborting");
                std::process::exit(101);
            }
        });
        Watchdog(Some(tx))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Dropping the sender disconnects the channel: the watchdog thread ends.
        self.0.take();
    }
}

/// Yields until `cond` holds; panics after [`REAL_WAIT`] of real time.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < REAL_WAIT, "timed out waiting for {what}");
        tokio::task::yield_now().await;
    }
}

/// `127.a.b.c`.
pub fn lo(a: u8, b: u8, c: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, a, b, c))
}

/// Opens a TCP connection from `from` (any 127/8 address: each is another client
/// host to the server) to `addr`, sends `bytes`, and returns it as a non-blocking std
/// socket: [`peek`] then tells what the server did with it without waiting.
pub async fn open(from: IpAddr, addr: SocketAddr, bytes: &[u8]) -> std::net::TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(from, 0)).expect("bind source");
    let mut tcp = socket.connect(addr).await.expect("connect");
    // The server may have answered and closed already (over a cap): what it said is
    // what the test looks at, not whether this write got through.
    let _ = tcp.write_all(bytes).await;
    tcp.into_std().expect("into_std")
}

/// What the server has done with a connection so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Nothing: the connection is open and the server is silent.
    Held,
    /// An HTTP response with this status, then the end of the connection.
    Refused(u16),
    /// The end of the connection without an answer (EOF or reset).
    Closed,
}

/// What the server has sent on `s` so far (non-blocking). An answer must be a
/// complete HTTP response with `Connection: close`, followed by the end of the
/// connection.
pub fn peek(s: &mut std::net::TcpStream) -> Seen {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let start = std::time::Instant::now();
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if buf.is_empty() {
                    return Seen::Held;
                }
                // Part of an answer is here; the rest and the EOF were written with it
                // (the server answers and closes in one go), so they follow at once
                // on loopback.
                assert!(
                    start.elapsed() < Duration::from_secs(5),
                    "an answer without the end of the connection: {:?}",
                    String::from_utf8_lossy(&buf)
                );
                std::thread::yield_now();
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if buf.is_empty() {
        return Seen::Closed;
    }
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut res = httparse::Response::new(&mut headers);
    let len = match res.parse(&buf) {
        Ok(httparse::Status::Complete(len)) => len,
        other => panic!(
            "not an HTTP response ({other:?}): {:?}",
            String::from_utf8_lossy(&buf)
        ),
    };
    let header = |name: &str| {
        res.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
    };
    assert_eq!(
        header("connection").as_deref(),
        Some("close"),
        "{:?}",
        String::from_utf8_lossy(&buf)
    );
    let body_len: usize = header("content-length")
        .expect("content-length")
        .parse()
        .unwrap();
    assert_eq!(
        buf.len() - len,
        body_len,
        "{:?}",
        String::from_utf8_lossy(&buf)
    );
    Seen::Refused(res.code.expect("status"))
}

/// Waits until the server has done something with `s` (answered or closed it).
pub async fn wait_for_end(s: &mut std::net::TcpStream) -> Seen {
    let mut seen = Seen::Held;
    wait_until("the server to answer or close a connection", || {
        seen = peek(s);
        seen != Seen::Held
    })
    .await;
    seen
}

/// The resident set size of this process, in bytes (Linux: `/proc/self/statm`).
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .expect("resident field")
        .parse()
        .unwrap();
    // 4 KiB pages: x86-64 and the usual aarch64 Linux kernels.
    pages * 4096
}
