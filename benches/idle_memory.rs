//! Memory held by idle WebSocket connections on the server (not criterion: a plain
//! program that prints a report and stops by itself).
//!
//! ```text
//! cargo bench --bench idle_memory
//! WSHUB_IDLE_CONNS=2000 cargo bench --bench idle_memory
//! ```
//!
//! The server runs in its own process, so its resident memory is measured alone: this
//! binary re-executes itself with `WSHUB_IDLE_ROLE=wshub-server`, which runs the echo
//! example's server (`examples/echo.rs`, permessage-deflate on) on 127.0.0.1. This
//! process then opens `WSHUB_IDLE_CONNS` (default 10,000) connections to it with raw TCP
//! and a hand-written upgrade request (offering permessage-deflate, as browsers do),
//! keeps them open and silent, and reads the server's `VmRSS` from `/proc/<pid>/status`:
//! before any connection, at half and at all of them (each after it settles). It prints
//! the RSS per connection: over all connections, and the marginal cost over the second
//! half (which excludes one-time costs such as per-thread buffers). Target: under 4 KiB.
//!
//! When Node and `tests/peers/node_modules/ws` are installed (`npm ci --prefix
//! tests/peers`), a Node `ws` echo server (default options) is measured the same way in
//! the same run, and both are printed side by side.
//!
//! Each process holds one descriptor per connection; the per-process limit on this
//! machine is 20,000 open files.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/echo.rs"]
mod echo_example;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// Set in the environment of the re-executed server process.
const ROLE_ENV: &str = "WSHUB_IDLE_ROLE";
const ROLE_WSHUB_SERVER: &str = "wshub-server";
const ROLE_WSHUB_HUB: &str = "wshub-hub";
/// Number of connections to open.
const CONNS_ENV: &str = "WSHUB_IDLE_CONNS";
const DEFAULT_CONNS: usize = 10_000;
/// Target for wshub.
const TARGET_KIB_PER_CONN: f64 = 4.0;

/// The Node `ws` echo server: prints `PORT <n>` once listening, exits when stdin closes.
const NODE_SERVER: &str = r#"
const { WebSocketServer } = require(process.env.WSHUB_WS_MODULE);
const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});
wss.on('listening', () => console.log('PORT ' + wss.address().port));
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
"#;

fn main() {
    match std::env::var(ROLE_ENV).as_deref() {
        Ok(ROLE_WSHUB_SERVER) => return wshub_server(false),
        Ok(ROLE_WSHUB_HUB) => return wshub_server(true),
        _ => {}
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then only say so,
    // instead of opening thousands of connections in a test run.
    if !std::env::args().any(|a| a == "--bench") {
        println!("idle_memory: skipped (run it with `cargo bench --bench idle_memory`)");
        return;
    }
    let conns = std::env::var(CONNS_ENV)
        .ok()
        .map(|v| {
            v.parse::<usize>()
                .expect("WSHUB_IDLE_CONNS must be a number")
        })
        .unwrap_or(DEFAULT_CONNS);
    assert!(
        (2..=19_000).contains(&conns),
        "{CONNS_ENV} must be within 2..=19000 (one descriptor each, 20,000 per process)"
    );

    println!("idle_memory: {conns} idle WebSocket connections per server, server RSS from /proc");
    let mut results = Vec::new();

    let exe = std::env::current_exe().expect("current exe");
    let mut cmd = Command::new(&exe);
    cmd.env(ROLE_ENV, ROLE_WSHUB_SERVER);
    results.push(measure("wshub (examples/echo.rs)", cmd, conns, echo_check));

    let mut node = None;
    match node_command() {
        Ok(cmd) => node = Some(measure("Node ws (default options)", cmd, conns, echo_check)),
        Err(why) => println!("\nNode ws: skipped ({why})"),
    }

    // The hub holds more per connection than the bare engine (its registry entry, rate
    // limiter, session state): measured the same way, each connection idle after its
    // welcome.
    let mut cmd = Command::new(&exe);
    cmd.env(ROLE_ENV, ROLE_WSHUB_HUB);
    results.push(measure("wshub Hub (wshub.v1)", cmd, conns, welcome_check));
    results.extend(node);

    println!("\n=== idle memory per connection ({conns} connections) ===");
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>12} {:>12} {:>8}",
        "server", "RSS 0", "RSS half", "RSS all", "KiB/conn", "marginal", "deflate"
    );
    for r in &results {
        println!(
            "{:<28} {:>7} MiB {:>6} MiB {:>6} MiB {:>12.2} {:>12.2} {:>8}",
            r.name,
            r.rss_idle_kib / 1024,
            r.rss_half_kib / 1024,
            r.rss_full_kib / 1024,
            r.per_conn_kib(),
            r.marginal_kib(),
            if r.deflate { "yes" } else { "no" },
        );
    }
    if let [wshub, _hub, node] = &results[..] {
        println!(
            "Node ws / wshub per connection: {:.1}x (marginal: {:.1}x)",
            node.per_conn_kib() / wshub.per_conn_kib(),
            node.marginal_kib() / wshub.marginal_kib()
        );
    }
    let wshub = &results[0];
    println!(
        "wshub target < {TARGET_KIB_PER_CONN} KiB/connection: {} ({:.2} KiB)",
        if wshub.per_conn_kib() < TARGET_KIB_PER_CONN {
            "met"
        } else {
            "NOT met"
        },
        wshub.per_conn_kib()
    );
}

/// The re-executed server process, on 127.0.0.1:0 in a multi-threaded runtime: the echo
/// example's server, or (`hub`) a `Hub` with default settings but connection limits
/// raised for the test. Prints `PORT <n>`; exits when stdin closes (the parent finished
/// or died).
fn wshub_server(hub: bool) {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        println!("PORT {port}");
        std::io::stdout().flush().expect("stdout");
        std::thread::spawn(|| {
            let mut sink = [0u8; 64];
            while matches!(std::io::stdin().read(&mut sink), Ok(n) if n > 0) {}
            std::process::exit(0);
        });
        if hub {
            let hub = wshub::Hub::builder()
                .configure(|c| {
                    c.max_connections = 20_000;
                    c.max_connections_per_ip = 20_000;
                    // Every client is 127.0.0.1: one host and one /24.
                    c.max_connections_per_network = 20_000;
                })
                .build();
            let _ = hub.serve(listener).await;
        } else {
            echo_example::serve(listener, true).await;
        }
    });
}

/// `node -e NODE_SERVER` with the peers' `ws` module, or why it cannot run.
fn node_command() -> Result<Command, String> {
    let module: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "tests",
        "peers",
        "node_modules",
        "ws",
    ]
    .iter()
    .collect();
    if !module.join("package.json").is_file() {
        return Err(format!(
            "{} is missing; run `npm ci --prefix tests/peers`",
            module.display()
        ));
    }
    let node = std::env::var("WSHUB_NODE").unwrap_or_else(|_| "node".into());
    let version = Command::new(&node)
        .arg("--version")
        .output()
        .map_err(|e| format!("`{node}` does not run: {e}"))?;
    if !version.status.success() {
        return Err(format!("`{node} --version` failed"));
    }
    let mut cmd = Command::new(node);
    cmd.arg("-e")
        .arg(NODE_SERVER)
        .env("WSHUB_WS_MODULE", module);
    Ok(cmd)
}

/// One server's numbers.
struct Measured {
    name: &'static str,
    conns: usize,
    half: usize,
    rss_idle_kib: u64,
    rss_half_kib: u64,
    rss_full_kib: u64,
    deflate: bool,
}

impl Measured {
    fn per_conn_kib(&self) -> f64 {
        (self.rss_full_kib as f64 - self.rss_idle_kib as f64) / self.conns as f64
    }
    fn marginal_kib(&self) -> f64 {
        (self.rss_full_kib as f64 - self.rss_half_kib as f64) / (self.conns - self.half) as f64
    }
}

/// A server child process; killed if still running when dropped.
struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    port: u16,
}

impl Server {
    fn start(mut cmd: Command) -> Server {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the server");
        let stdin = child.stdin.take();
        let mut lines = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        let port = loop {
            line.clear();
            let n = lines.read_line(&mut line).expect("server stdout");
            assert!(n > 0, "the server exited before printing its port");
            if let Some(port) = line.trim().strip_prefix("PORT ") {
                break port.parse().expect("port number");
            }
        };
        Server { child, stdin, port }
    }

    fn rss_kib(&self) -> u64 {
        rss_kib(self.child.id())
    }

    /// Closes its stdin (it exits by itself), then waits; kills it after 5 s.
    fn stop(mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Dropped here: killed.
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `VmRSS` of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc status")
}

/// RSS once it stops moving: sampled every 250 ms until two samples in a row are within
/// 0.5% (at most 10 s).
fn settled_rss_kib(server: &Server) -> u64 {
    std::thread::sleep(Duration::from_millis(500));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = server.rss_kib();
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let now = server.rss_kib();
        if now.abs_diff(last) * 200 <= last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// Opens one connection and completes the upgrade; returns the stream and whether the
/// server accepted permessage-deflate.
/// Opens a WebSocket; returns the stream, whether permessage-deflate was negotiated,
/// and the bytes read past the response head (a server may send its first frame in the
/// same packet as the 101).
fn open_ws(addr: SocketAddr) -> (TcpStream, bool, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).expect("send upgrade");
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).expect("read upgrade response");
        assert!(n > 0, "server closed during the handshake");
        head.extend_from_slice(&buf[..n]);
        assert!(head.len() < 8192, "response head too large");
    }
    let end = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let rest = head[end..].to_vec();
    let head = String::from_utf8_lossy(&head[..end]);
    assert!(
        head.starts_with("HTTP/1.1 101"),
        "upgrade refused: {}",
        head.lines().next().unwrap_or("")
    );
    let deflate = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("sec-websocket-extensions: permessage-deflate")
    });
    (stream, deflate, rest)
}

/// One echo round trip on `stream` (a masked 5-byte text frame), to check the server
/// really speaks WebSocket before measuring it.
fn echo_check(stream: &mut TcpStream, _early: &[u8]) {
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | 5];
    frame.extend_from_slice(&mask);
    frame.extend(b"hello".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    stream.write_all(&frame).expect("send");
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).expect("echo");
    assert_eq!(&reply, b"\x81\x05hello", "unexpected echo");
}

/// Reads the hub's `welcome` (one unmasked text frame) on `stream`, to check the server
/// really speaks `wshub.v1` before measuring it.
fn welcome_check(stream: &mut TcpStream, early: &[u8]) {
    let mut reader = early.chain(&mut *stream);
    let mut head = [0u8; 2];
    reader.read_exact(&mut head).expect("welcome header");
    assert_eq!(head[0], 0x81, "expected one text frame");
    let len = usize::from(head[1] & 0x7F);
    assert!(len < 126, "short welcome expected");
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).expect("welcome body");
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("\"welcome\""),
        "unexpected first message {text}"
    );
}

fn measure(
    name: &'static str,
    cmd: Command,
    conns: usize,
    check: fn(&mut TcpStream, &[u8]),
) -> Measured {
    println!("\n--- {name} ---");
    let server = Server::start(cmd);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, server.port));
    println!("server pid {} listening on {addr}", server.child.id());
    let rss_idle_kib = settled_rss_kib(&server);
    println!("RSS before connections: {rss_idle_kib} KiB");

    let half = conns / 2;
    let mut streams = Vec::with_capacity(conns);
    let start = Instant::now();
    let (mut first, deflate, early) = open_ws(addr);
    check(&mut first, &early);
    streams.push(first);
    while streams.len() < half {
        streams.push(open_ws(addr).0);
    }
    let rss_half_kib = settled_rss_kib(&server);
    println!("RSS with {half} connections: {rss_half_kib} KiB");
    while streams.len() < conns {
        streams.push(open_ws(addr).0);
    }
    let opened = start.elapsed();
    let rss_full_kib = settled_rss_kib(&server);
    println!(
        "RSS with {conns} connections: {rss_full_kib} KiB (opened in {:.1} s, permessage-deflate {})",
        opened.as_secs_f64(),
        if deflate { "negotiated" } else { "declined" }
    );
    let m = Measured {
        name,
        conns,
        half,
        rss_idle_kib,
        rss_half_kib,
        rss_full_kib,
        deflate,
    };
    println!(
        "{:.2} KiB per connection ({:.2} KiB marginal over the second half)",
        m.per_conn_kib(),
        m.marginal_kib()
    );
    drop(streams);
    server.stop();
    m
}
