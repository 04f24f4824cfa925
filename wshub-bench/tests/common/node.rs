//! The comparison's real Socket.IO 4.8 server (`benches/compare/node/socketio.js`), run
//! by Node with the packages of `tests/peers/` (`socket.io` and `jsonwebtoken`, pinned
//! in its `package-lock.json` to the comparison's versions), as the root crate's tests
//! run their Node `ws` peers.
//!
//! The packages must be installed first (`bash scripts/test-deps.sh`, which runs
//! `npm ci --prefix tests/peers`). A test that needs them when they are missing FAILS
//! saying so; it is never skipped. `WSHUB_NODE` may name another Node than the `node`
//! on `PATH`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// What to run when Node or a package is missing.
const INSTALL_HINT: &str = "install the test peers first, from the repository root: \
     `bash scripts/test-deps.sh` (it runs `npm ci --prefix tests/peers`)";

/// The repository root (wshub-bench is one of its workspace members).
fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("wshub-bench lives in the repository")
}

/// `tests/peers/node_modules`, where `npm ci --prefix tests/peers` installs.
fn node_modules() -> PathBuf {
    repo_root().join("tests").join("peers").join("node_modules")
}

/// The Node executable (`$WSHUB_NODE`, else `node`). Panics (failing the test) unless
/// it runs and `tests/peers/node_modules` holds `socket.io` and `jsonwebtoken`.
fn node() -> String {
    let program = std::env::var("WSHUB_NODE").unwrap_or_else(|_| "node".into());
    match std::process::Command::new(&program)
        .arg("--version")
        .output()
    {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "`{program} --version` failed ({}); {INSTALL_HINT}",
            out.status
        ),
        Err(e) => panic!("cannot run `{program}` ({e}): Node.js is needed; {INSTALL_HINT}"),
    }
    for package in ["socket.io", "jsonwebtoken"] {
        let manifest = node_modules().join(package).join("package.json");
        assert!(
            manifest.is_file(),
            "the Node package `{package}` is not installed ({} is missing); {INSTALL_HINT}",
            manifest.display()
        );
    }
    program
}

/// A running `socketio.js`; killed when dropped (also when a test fails).
#[derive(Debug)]
pub struct SocketIoServer {
    /// The Socket.IO endpoint, websocket transport only:
    /// `ws://127.0.0.1:PORT/socket.io/?EIO=4&transport=websocket`.
    pub url: String,
    /// The Node process: `kill_on_drop`, so a failing test leaves nothing behind.
    _child: Child,
}

/// Starts `socketio.js` on a free port of 127.0.0.1 (`PORT=0`; the port is read from
/// the line it prints once listening), refusing connections without a `?token=` HS256
/// JWT signed with `jwt_secret` when one is given.
pub async fn socketio_server(jwt_secret: Option<&str>) -> SocketIoServer {
    let script = repo_root().join("benches/compare/node/socketio.js");
    assert!(script.is_file(), "{} is missing", script.display());
    let mut cmd = Command::new(node());
    cmd.arg(&script)
        .env("PORT", "0")
        // Node looks for `require`d packages next to the script first (the
        // comparison's own `npm ci` there, the same pinned versions, when it ran),
        // then in NODE_PATH.
        .env("NODE_PATH", node_modules())
        .env_remove("JWT_SECRET")
        .env_remove("DEFLATE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        // Its complaints show in the test's output.
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Some(secret) = jwt_secret {
        cmd.env("JWT_SECRET", secret);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", script.display()));
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("socketio.js did not say it was listening within 20 s")
        .expect("reading socketio.js's output");
    let port = line
        .as_deref()
        .and_then(|l| l.trim().strip_prefix("socketio listening on "))
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or_else(|| {
            panic!(
                "socketio.js: expected `socketio listening on PORT`, got {line:?} \
                 (its error, if any, is above); {INSTALL_HINT}"
            )
        });
    // Nothing else is printed, but keep draining so it can never block on the pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    SocketIoServer {
        url: format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"),
        _child: child,
    }
}
