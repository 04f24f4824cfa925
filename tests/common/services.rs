//! External services the cluster tests start themselves: `redis-server`, `nginx` and
//! `haproxy` (Debian packages, installed by `scripts/test-deps.sh`), each on a free
//! loopback port, with its files in a temporary directory, killed when dropped.
//!
//! A missing program FAILS the test with a message saying how to install it; it is
//! never skipped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a service may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// What to run when a service program is missing.
const INSTALL_HINT: &str =
    "install it first: `bash scripts/test-deps.sh` (apt-get install redis-server nginx haproxy)";

/// A free port on 127.0.0.1, found by binding port 0 and letting it go. Another
/// process may take it before the service binds it: services are started with a retry.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh temporary directory, removed by [`TempDir`]'s drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("wshub-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Spawns `program`, failing with the install hint if it does not exist.
fn spawn(cmd: &mut Command, program: &str, log: &Path) -> Child {
    let out = std::fs::File::create(log).unwrap();
    let err = out.try_clone().unwrap();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{program}` ({e}); {INSTALL_HINT}"))
}

/// Waits until `ready` holds, or fails with the service's log.
fn wait_ready(what: &str, child: &mut Child, log: &Path, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if ready() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited ({status}) before it was ready:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{what} not ready after {START_TIMEOUT:?}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        // Polling a process we do not control: there is no event to wait for.
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A `redis-server` of its own: no persistence (`--save ''`, `--appendonly no`), so a
/// restart loses everything, as a Redis without persistence does.
pub struct RedisServer {
    pub port: u16,
    child: Child,
    dir: TempDir,
}

impl RedisServer {
    /// Starts one on a free port.
    pub fn start() -> RedisServer {
        let dir = TempDir::new("redis");
        for _ in 0..5 {
            let port = free_port();
            if let Some(child) = Self::spawn_on(port, dir.path()) {
                return RedisServer { port, child, dir };
            }
        }
        panic!("redis-server could not bind a free port in 5 tries");
    }

    fn spawn_on(port: u16, dir: &Path) -> Option<Child> {
        let log = dir.join("redis.log");
        let mut child = spawn(
            Command::new("redis-server")
                .args(["--port", &port.to_string()])
                .args(["--bind", "127.0.0.1"])
                .args(["--save", ""])
                .args(["--appendonly", "no"])
                .args(["--daemonize", "no"])
                .arg("--dir")
                .arg(dir),
            "redis-server",
            &log,
        );
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if ping(port) {
                return Some(child);
            }
            if let Ok(Some(_)) = child.try_wait() {
                // Most likely the port was taken meanwhile: try another.
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                assert!(
                    text.contains("Address already in use"),
                    "redis-server exited:\n{text}"
                );
                return None;
            }
            assert!(Instant::now() < deadline, "redis-server not ready");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (SIGKILL: nothing saved, clients see the connection drop).
    pub fn kill(&mut self) {
        kill(&mut self.child);
    }

    /// Starts it again on the same port (empty: no persistence).
    pub fn start_again(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            // The port may linger briefly after the kill.
            if let Some(child) = Self::spawn_on(self.port, self.dir.path()) {
                self.child = child;
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not restart");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills it and starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.start_again();
    }

    /// Runs one command with the inline protocol (tests: inspect keys) and returns
    /// the raw reply.
    pub fn command(&self, line: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        let mut buf = [0u8; 65536];
        let n = s.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// Whether a Redis answers PING on `port`.
fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

/// Whether something accepts TCP connections on `port`.
fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// The text of a file of `deploy/`, with `replacements` applied (each must occur).
pub fn deploy_file(name: &str, replacements: &[(&str, String)]) -> String {
    let path = super::manifest_dir().join("deploy").join(name);
    let mut text = std::fs::read_to_string(&path).unwrap();
    for (from, to) in replacements {
        assert!(text.contains(from), "{} has no {from:?}", path.display());
        text = text.replace(from, to);
    }
    text
}

/// An `nginx` of its own, running `config` (a whole `nginx.conf`) with its prefix, pid
/// file, logs and temporary files in a temporary directory.
pub struct Nginx {
    pub port: u16,
    child: Child,
    _dir: TempDir,
}

impl Nginx {
    /// Starts nginx with `config`, which must listen on `port`.
    pub fn start(config: &str, port: u16) -> Nginx {
        let dir = TempDir::new("nginx");
        let conf = dir.path().join("nginx.conf");
        // Everything nginx writes goes under the prefix: pid, logs, temp paths.
        let prefix = dir.path().display();
        let config =
            format!("pid {prefix}/nginx.pid;\nerror_log {prefix}/error.log info;\n{config}");
        // The relative temp and log paths of deploy/nginx.conf live here.
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        std::fs::write(&conf, config).unwrap();
        let log = dir.path().join("stderr.log");
        let mut child = spawn(
            Command::new("nginx")
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(&conf)
                .args(["-g", "daemon off;"]),
            "nginx",
            &log,
        );
        wait_ready("nginx", &mut child, &log, || listening(port));
        Nginx {
            port,
            child,
            _dir: dir,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// An `haproxy` of its own, in the foreground (`-db`), running `config`.
pub struct Haproxy {
    pub port: u16,
    child: Child,
    _dir: TempDir,
}

impl Haproxy {
    /// Starts haproxy with `config`, which must listen on `port`.
    pub fn start(config: &str, port: u16) -> Haproxy {
        let dir = TempDir::new("haproxy");
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg, config).unwrap();
        let log = dir.path().join("stderr.log");
        let check = Command::new("haproxy")
            .arg("-c")
            .arg("-f")
            .arg(&cfg)
            .output()
            .unwrap_or_else(|e| panic!("cannot run `haproxy` ({e}); {INSTALL_HINT}"));
        assert!(
            check.status.success(),
            "haproxy -c refused the configuration:\n{}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let mut child = spawn(
            Command::new("haproxy").arg("-db").arg("-f").arg(&cfg),
            "haproxy",
            &log,
        );
        wait_ready("haproxy", &mut child, &log, || listening(port));
        Haproxy {
            port,
            child,
            _dir: dir,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}
