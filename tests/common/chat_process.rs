//! The chat example as a process of its own (`examples/chat.rs`), for tests that must
//! kill a node for real (`kill -9`): built once per test binary with the cargo that
//! runs the tests, copied to a private file (the target directory may be shared and
//! rebuilt meanwhile), started on a free loopback port, SIGKILLed when dropped.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::services::{TempDir, free_port};

/// How long the chat may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds the chat example (`cargo build --all-features --example chat`, as the test
/// suite is built) once per test binary and returns a private copy of it.
pub fn chat_binary() -> &'static Path {
    static BIN: OnceLock<(TempDir, PathBuf)> = OnceLock::new();
    &BIN.get_or_init(|| {
        let built = build_chat();
        let dir = TempDir::new("chat-bin");
        let copy = dir.path().join("chat");
        std::fs::copy(&built, &copy).unwrap();
        (dir, copy)
    })
    .1
}

fn build_chat() -> PathBuf {
    super::build_example::build_example("chat", &["--all-features"], super::manifest_dir())
        .expect("building the chat example")
}

/// A running chat process; dropping it kills it (SIGKILL).
pub struct ChatProcess {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    dir: TempDir,
}

impl ChatProcess {
    /// Starts the chat with `args` and `env` on a free port; returns once it accepts
    /// connections.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> ChatProcess {
        let dir = TempDir::new("chat-node");
        let port = free_port();
        let log = dir.path().join("chat.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(chat_binary())
            .args(["--port", &port.to_string()])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the chat exited at start ({status}):\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if TcpStream::connect(addr).is_ok() {
                return ChatProcess { child, addr, dir };
            }
            assert!(
                Instant::now() < deadline,
                "the chat did not start listening"
            );
            // Polling a process we do not control: there is no event to wait for.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9`: SIGKILL (what `Child::kill` sends on Unix), then reaps it. The
    /// process gets no chance to say goodbye.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "killed by SIGKILL");
    }

    /// What it printed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chat.log")).unwrap_or_default()
    }
}

impl Drop for ChatProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
