//! The server under test: the chat example, built with cargo and run as its own
//! process (so its RSS is its own), killed when the [`Server`] guard drops, including
//! when the soak panics.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long the chat may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts at starting it (a free port found by binding port 0 may be taken by
/// someone else before the chat binds it).
const START_ATTEMPTS: usize = 3;

/// Builds `examples/chat.rs` with the `bench` profile (the one `cargo bench` has just
/// built the crate and its dependencies with, so only the example is compiled and
/// linked; it is the release profile plus line tables) and returns the executable.
/// Uses the `cargo` that runs this bench (`CARGO`), and its JSON messages to find the
/// binary wherever the target directory is.
pub(crate) fn build_chat() -> io::Result<PathBuf> {
    build_example::build_example(
        "chat",
        &["--profile", "bench"],
        Path::new(env!("CARGO_MANIFEST_DIR")),
    )
}

#[path = "../../tests/common/build_example.rs"]
mod build_example;

/// The running chat. Dropping it kills the process (SIGKILL) and reaps it.
#[derive(Debug)]
pub(crate) struct Server {
    child: Child,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    /// Its stdout and stderr.
    pub(crate) log: PathBuf,
}

impl Server {
    /// Starts `bin` on a free loopback port with up to `max_per_ip` connections from
    /// one address (the load all comes from 127.0.0.1), logging to `log`; returns once
    /// it accepts TCP connections.
    pub(crate) fn start(bin: &Path, max_per_ip: usize, log: &Path) -> io::Result<Server> {
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match Server::start_once(bin, max_per_ip, log) {
                Ok(server) => return Ok(server),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    fn start_once(bin: &Path, max_per_ip: usize, log: &Path) -> io::Result<Server> {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let out = File::create(log)?;
        let child = Command::new(bin)
            .args(["--port", &port.to_string()])
            .env("CHAT_MAX_CONNECTIONS_PER_IP", max_per_ip.to_string())
            // The chat logs every slow consumer and flooder at `info`: thousands of
            // lines in 20 minutes. Warnings only, unless asked.
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        // The guard exists from here on: an early return kills the process.
        let mut server = Server {
            child,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            log: log.to_owned(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = server.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "the chat exited at start ({status}); see {}",
                    log.display()
                )));
            }
            if TcpStream::connect_timeout(&server.addr, Duration::from_secs(1)).is_ok() {
                return Ok(server);
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!(
                    "the chat did not listen on {} within {START_TIMEOUT:?}",
                    server.addr
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once the process has exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Resident memory (`VmRSS` of `/proc/PID/status`), in KiB.
    pub(crate) fn rss_kib(&self) -> io::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| io::Error::other("no VmRSS in /proc/PID/status"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Never leave the server running, whatever ended the soak.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
