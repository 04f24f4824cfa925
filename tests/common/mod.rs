//! Shared fixtures for the integration tests: locating and running the real
//! WebSocket peers in `tests/peers/` (Python `websockets`, Node `ws`).
//!
//! The peers must be installed before the tests run (`.ci/run` does it):
//!
//! ```text
//! python3 -m pip install -r tests/peers/requirements.txt
//! npm ci --prefix tests/peers
//! ```
//!
//! A test that needs a peer which is not installed FAILS with a message saying
//! so; it is never skipped.
//!
//! `WSHUB_PYTHON` and `WSHUB_NODE` may name other interpreters than the
//! `python3` and `node` found on `PATH`.
#![allow(dead_code)]

pub mod attack;
pub mod build_example;
pub mod chat_process;
pub mod client;
pub mod cluster;
pub mod cluster_crowd;
pub mod crowd;
pub mod cut_proxy;
pub mod echo;
pub mod hub;
pub mod memory;
pub mod raw;
pub mod services;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{OnceLock, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// What to run when a peer is missing.
pub const INSTALL_HINT: &str = "install the interop test peers first, from the repository root: \
     `python3 -m pip install -r tests/peers/requirements.txt && npm ci --prefix tests/peers` \
     (`bash .ci/run` does this too)";

/// Number of echo cases each client peer runs: {text, binary} x
/// {0, 125, 126, 65535, 65536, 1048576 bytes} x {unfragmented, fragmented}.
pub const PEER_CASES: u64 = 24;

/// Generous limit for one client peer run (1 MiB messages, debug builds).
pub const PEER_TIMEOUT: Duration = Duration::from_secs(120);

/// The crate root (`CARGO_MANIFEST_DIR`).
pub fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/peers/`, where the peer programs live.
pub fn peers_dir() -> PathBuf {
    manifest_dir().join("tests").join("peers")
}

/// Absolute path of a file in `tests/peers/`, which must exist.
pub fn peer_script(name: &str) -> String {
    let path = peers_dir().join(name);
    assert!(
        path.is_file(),
        "peer program {} is missing from the repository",
        path.display()
    );
    path.to_str().expect("non-UTF-8 path").to_owned()
}

fn check_once(
    cell: &'static OnceLock<Result<String, String>>,
    check: fn() -> Result<String, String>,
) -> String {
    match cell.get_or_init(check) {
        Ok(program) => program.clone(),
        Err(msg) => panic!("{msg}"),
    }
}

/// The Python interpreter for the peers (`$WSHUB_PYTHON`, else `python3`).
///
/// Panics (failing the test) unless it runs and can import `websockets` with
/// its asyncio API (websockets >= 14).
pub fn python() -> String {
    static CHECKED: OnceLock<Result<String, String>> = OnceLock::new();
    check_once(&CHECKED, || {
        let program = std::env::var("WSHUB_PYTHON").unwrap_or_else(|_| "python3".into());
        let probe = "import websockets, websockets.asyncio.client, websockets.asyncio.server; \
                     print(websockets.__version__)";
        match Command::new(&program).args(["-c", probe]).output() {
            Ok(out) if out.status.success() => Ok(program),
            Ok(out) => Err(format!(
                "`{program}` cannot import the Python package `websockets` (>= 14 with its asyncio API); \
                 {INSTALL_HINT}\n{program} said: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => Err(format!(
                "cannot run `{program}` ({e}): a Python 3 is needed; {INSTALL_HINT}"
            )),
        }
    })
}

/// The Node.js executable for the peers (`$WSHUB_NODE`, else `node`).
///
/// Panics (failing the test) unless it runs and `tests/peers/node_modules/ws`
/// is installed.
pub fn node() -> String {
    static CHECKED: OnceLock<Result<String, String>> = OnceLock::new();
    check_once(&CHECKED, || {
        let program = std::env::var("WSHUB_NODE").unwrap_or_else(|_| "node".into());
        match Command::new(&program).arg("--version").output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => return Err(format!("`{program} --version` failed: {}", out.status)),
            Err(e) => {
                return Err(format!(
                    "cannot run `{program}` ({e}): Node.js is needed; {INSTALL_HINT}"
                ));
            }
        }
        let ws = peers_dir()
            .join("node_modules")
            .join("ws")
            .join("package.json");
        if !ws.is_file() {
            return Err(format!(
                "the Node package `ws` is not installed ({} is missing); {INSTALL_HINT}",
                ws.display()
            ));
        }
        Ok(program)
    })
}

/// Command line for `tests/peers/py_client.py` against `url`.
pub fn py_client_cmd(url: &str, compression: bool) -> Vec<String> {
    let mut cmd = vec![python(), peer_script("py_client.py"), url.to_owned()];
    if !compression {
        cmd.push("--no-compression".into());
    }
    cmd
}

/// Command line for `tests/peers/node_client.js` against `url`.
pub fn node_client_cmd(url: &str, compression: bool) -> Vec<String> {
    let mut cmd = vec![node(), peer_script("node_client.js"), url.to_owned()];
    if !compression {
        cmd.push("--no-compression".into());
    }
    cmd
}

/// How a peer run ended.
#[derive(Debug)]
pub struct PeerOutcome {
    /// The command line, for messages.
    pub command: String,
    /// Exit status (after a kill when `timed_out`).
    pub status: ExitStatus,
    /// Everything the peer printed on stdout.
    pub stdout: String,
    /// Everything the peer printed on stderr.
    pub stderr: String,
    /// The last stdout line that is a JSON object, or `Value::Null` if none.
    pub json: Value,
    /// The peer ran past its timeout and was killed.
    pub timed_out: bool,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl PeerOutcome {
    /// A human-readable account of the run, for assertion messages.
    pub fn report(&self) -> String {
        let tail = |s: &str, n: usize| {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        };
        format!(
            "peer: {}\nstatus: {}{} after {:.1?}\nerror: {}\n--- stdout (last 40 lines) ---\n{}\n--- stderr (last 40 lines) ---\n{}\n---",
            self.command,
            self.status,
            if self.timed_out {
                " (KILLED: timed out)"
            } else {
                ""
            },
            self.elapsed,
            self.json
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("-"),
            tail(&self.stdout, 40),
            tail(&self.stderr, 40),
        )
    }

    /// Asserts a client peer's echo run succeeded: exit 0, `"ok": true`,
    /// `cases` echo cases passed and permessage-deflate negotiated or not as
    /// `deflate` says.
    pub fn assert_echo_ok(&self, cases: u64, deflate: bool) {
        assert!(!self.timed_out, "peer timed out\n{}", self.report());
        assert_eq!(
            self.json["ok"],
            Value::Bool(true),
            "peer reported failure\n{}",
            self.report()
        );
        assert!(
            self.status.success(),
            "peer exited with {}\n{}",
            self.status,
            self.report()
        );
        assert_eq!(
            self.json["cases"].as_u64(),
            Some(cases),
            "echo case count\n{}",
            self.report()
        );
        assert_eq!(
            self.json["deflate"],
            Value::Bool(deflate),
            "permessage-deflate {} expected\n{}",
            if deflate {
                "negotiated"
            } else {
                "NOT negotiated"
            },
            self.report()
        );
        assert_eq!(
            self.json["close_code"].as_u64(),
            Some(1000),
            "close code echoed\n{}",
            self.report()
        );
    }
}

fn read_all(mut r: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Runs a peer program to completion (blocking), killing it after `timeout`.
///
/// `cmd[0]` is the program, the rest its arguments; stdin is `/dev/null`.
/// In async tests prefer [`run_peer_async`], which does not block a runtime
/// thread.
pub fn run_peer<S: AsRef<str>>(cmd: &[S], timeout: Duration) -> PeerOutcome {
    let (program, args) = cmd.split_first().expect("empty peer command");
    let command = cmd.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(" ");
    let start = Instant::now();
    let mut child = Command::new(program.as_ref())
        .args(args.iter().map(AsRef::as_ref))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start peer `{command}`: {e}"));
    let stdout = read_all(child.stdout.take().unwrap());
    let stderr = read_all(child.stderr.take().unwrap());

    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for peer") {
            break status;
        }
        if start.elapsed() >= timeout {
            timed_out = true;
            let _ = child.kill();
            break child.wait().expect("waiting for killed peer");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    let json = stdout
        .lines()
        .rev()
        .map(str::trim)
        .filter(|l| l.starts_with('{'))
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .unwrap_or(Value::Null);
    PeerOutcome {
        command,
        status,
        stdout,
        stderr,
        json,
        timed_out,
        elapsed: start.elapsed(),
    }
}

/// [`run_peer`] on tokio's blocking pool, for async tests (any runtime flavor).
pub async fn run_peer_async(cmd: Vec<String>, timeout: Duration) -> PeerOutcome {
    tokio::task::spawn_blocking(move || run_peer(&cmd, timeout))
        .await
        .expect("peer runner panicked")
}

/// Starts `tests/peers/py_echo_server.py` (Python `websockets` echo server on
/// 127.0.0.1) and returns it with its port.
///
/// permessage-deflate is accepted when `compression` is true. The server
/// exits when its stdin closes: dropping the returned `Child` (which owns the
/// stdin pipe) stops it, and so does the test process ending; it also exits
/// on its own after 120 s. Its stderr is inherited, so its complaints show up
/// in the test output.
pub fn spawn_python_echo_server(compression: bool) -> (Child, u16) {
    let mut cmd = Command::new(python());
    cmd.arg(peer_script("py_echo_server.py"));
    if !compression {
        cmd.arg("--no-compression");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start py_echo_server.py: {e}"));

    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut first = String::new();
        let _ = reader.read_line(&mut first);
        let _ = tx.send(first);
        // Keep draining so the server can never block on a full pipe.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    let line = match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            panic!("py_echo_server.py did not print its port within 20 s");
        }
    };
    let port = line
        .trim()
        .strip_prefix("PORT ")
        .and_then(|p| p.parse::<u16>().ok());
    match port {
        Some(port) => (child, port),
        None => {
            let _ = child.kill();
            let status = child.wait().ok();
            panic!(
                "py_echo_server.py: expected `PORT <n>` as its first line, got {line:?} (exit: {status:?})"
            );
        }
    }
}
