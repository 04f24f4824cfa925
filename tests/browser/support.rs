//! Fixtures for the tests of the examples (`tests/browser_chat.rs`,
//! `tests/browser_news.rs`, `tests/news_feed_http.rs`, `tests/examples_tls.rs`),
//! included with `#[path = "browser/support.rs"] mod support;`:
//!
//! - a small HTTP/1.1 client over any stream (plain TCP or TLS), enough for the
//!   examples' JSON routes: it sends one request with `Connection: close`, reads the
//!   answer to EOF and decodes `Content-Length` or chunked bodies;
//! - the browser prerequisites (Node.js, `playwright-core` in `tests/peers`,
//!   Chromium), checked once: a missing one FAILS the test with what to install,
//!   it never skips;
//! - [`run_script`], which runs a Node script of `tests/browser/` against a server
//!   URL, answers its `@@CONTROL <command>` lines (see `tests/browser/lib.mjs`) and
//!   returns its final JSON line; failures list the screenshots the script saved in
//!   `target/browser-screenshots/`.
//!
//! `WSHUB_NODE` and `WSHUB_CHROMIUM` may name another `node` and another Chromium
//! than `node` on `PATH` and `/usr/bin/chromium`.
#![allow(dead_code)]

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The crate root.
pub fn repo_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where the browser scripts save screenshots (and the page's HTML) on failure.
pub fn screenshot_dir() -> PathBuf {
    repo_dir().join("target").join("browser-screenshots")
}

/// Generous limit for one HTTP exchange with a local example server.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// HTTP/1.1 client
// ---------------------------------------------------------------------------

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header fields, names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The decoded body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header field named `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics (with the body) if it is not.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): status {} content-type {:?} body {:?}",
                self.status,
                self.header("content-type"),
                self.text()
            )
        })
    }
}

impl std::fmt::Display for HttpResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.text();
        let shown: String = text.chars().take(600).collect();
        write!(
            f,
            "HTTP {} (content-type {:?}) {shown}",
            self.status,
            self.header("content-type")
        )
    }
}

/// Sends one request over `stream` and reads the response (to EOF: the request
/// says `Connection: close`).
///
/// The body is written while the response is read, so a server that answers early
/// (413 before reading a large body) and closes is still heard. `headers` come in
/// addition to `Host`, `Connection` and `Content-Length` (left out when `headers` have
/// a `Content-Length` or `Transfer-Encoding`: `body` is then sent as given).
pub async fn http_on<S>(
    stream: S,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<HttpResponse>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let framed = headers.iter().any(|(name, _)| {
        name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
    });
    if !framed && (!body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH")) {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);

    let (mut rd, mut wr) = tokio::io::split(stream);
    let writer = tokio::spawn(async move {
        // A server that refuses early may reset the connection mid-body: that is
        // for the reader to judge, not an error here.
        let r = wr.write_all(&request).await;
        if r.is_ok() {
            let _ = wr.flush().await;
        }
        // Keep the write half (and so the stream) open until the read side is done.
        wr
    });
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let read_result = loop {
        match rd.read(&mut buf).await {
            Ok(0) => break Ok(()),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) => break Err(e),
        }
    };
    writer.abort();
    if let Err(e) = read_result {
        // A reset after a complete response is still a response.
        if parse_response(&raw).is_err() {
            return Err(e);
        }
    }
    parse_response(&raw)
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Parses a complete HTTP/1.1 response (head and body up to EOF).
fn parse_response(raw: &[u8]) -> io::Result<HttpResponse> {
    let mut header_buf = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut header_buf);
    let head_len = match resp.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return Err(invalid(format!(
                "incomplete response head ({} bytes): {:?}",
                raw.len(),
                String::from_utf8_lossy(&raw[..raw.len().min(300)])
            )));
        }
        Err(e) => return Err(invalid(format!("bad response head: {e}"))),
    };
    let status = resp.code.unwrap_or(0);
    let headers: Vec<(String, String)> = resp
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let rest = &raw[head_len..];
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let body = if find("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
        decode_chunked(rest)?
    } else if let Some(len) = find("content-length") {
        let len: usize = len
            .trim()
            .parse()
            .map_err(|_| invalid(format!("bad content-length {len:?}")))?;
        if rest.len() < len {
            return Err(invalid(format!(
                "body cut short: {} of {len} bytes",
                rest.len()
            )));
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn decode_chunked(mut data: &[u8]) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| invalid("chunked body: no chunk size line"))?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| invalid(format!("chunked body: bad size {size_text:?}")))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if data.len() < size + 2 {
            return Err(invalid("chunked body cut short"));
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// One request to `addr` over plain TCP; panics on I/O errors and after
/// [`HTTP_TIMEOUT`].
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let exchange = async {
        let tcp = TcpStream::connect(addr).await?;
        http_on(tcp, method, &addr.to_string(), path, headers, body).await
    };
    match tokio::time::timeout(HTTP_TIMEOUT, exchange).await {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => panic!("{method} http://{addr}{path}: {e}"),
        Err(_) => panic!("{method} http://{addr}{path}: no response within {HTTP_TIMEOUT:?}"),
    }
}

/// `POST path` with a JSON body.
pub async fn post_json(addr: SocketAddr, path: &str, body: &Value) -> HttpResponse {
    http(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
    .await
}

// ---------------------------------------------------------------------------
// Browser prerequisites
// ---------------------------------------------------------------------------

/// What to install when a browser test prerequisite is missing.
pub const BROWSER_INSTALL_HINT: &str = "the browser tests need Node.js (>= 20), Chromium and \
     the npm package playwright-core; install them from the repository root with \
     `apt-get install chromium chromium-driver` (Debian; or set WSHUB_CHROMIUM to a \
     Chromium/Chrome binary) and `npm ci --prefix tests/peers` (`bash .ci/run` does both). \
     Never `npx playwright install`: the tests use the system Chromium";

/// The programs a browser test runs.
#[derive(Debug, Clone)]
pub struct BrowserEnv {
    /// Node.js.
    pub node: String,
    /// The Chromium binary playwright-core launches.
    pub chromium: String,
}

fn find_chromium() -> Result<String, String> {
    let candidates: Vec<String> = match std::env::var("WSHUB_CHROMIUM") {
        Ok(path) => vec![path],
        Err(_) => [
            "/usr/bin/chromium",
            "/usr/bin/chromium-browser",
            "/usr/bin/google-chrome",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    };
    let mut tried = Vec::new();
    for c in &candidates {
        // playwright-core wants a path, not a command name.
        let c = &on_path(c).unwrap_or_else(|| c.clone());
        match std::process::Command::new(c).arg("--version").output() {
            Ok(out) if out.status.success() => return Ok(c.clone()),
            Ok(out) => tried.push(format!("{c}: `--version` exited with {}", out.status)),
            Err(e) => tried.push(format!("{c}: {e}")),
        }
    }
    Err(format!(
        "no usable Chromium ({}); {BROWSER_INSTALL_HINT}",
        tried.join("; ")
    ))
}

/// `program` found on `PATH` when it is a bare name.
fn on_path(program: &str) -> Option<String> {
    if program.contains('/') {
        return None;
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
}

fn check_browser_env() -> Result<BrowserEnv, String> {
    let node = std::env::var("WSHUB_NODE").unwrap_or_else(|_| "node".into());
    let version = match std::process::Command::new(&node).arg("--version").output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        Ok(out) => return Err(format!("`{node} --version` failed: {}", out.status)),
        Err(e) => return Err(format!("cannot run `{node}` ({e}); {BROWSER_INSTALL_HINT}")),
    };
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < 20 {
        return Err(format!(
            "Node.js {version} is too old for playwright-core (>= 20 needed); {BROWSER_INSTALL_HINT}"
        ));
    }
    let pw = repo_dir().join("tests/peers/node_modules/playwright-core/package.json");
    if !pw.is_file() {
        return Err(format!(
            "playwright-core is not installed ({} is missing); {BROWSER_INSTALL_HINT}",
            pw.display()
        ));
    }
    let chromium = find_chromium()?;
    Ok(BrowserEnv { node, chromium })
}

/// The browser prerequisites, checked once per test binary; panics (failing the
/// test) with install instructions when one is missing.
pub fn browser_env() -> BrowserEnv {
    static CHECKED: OnceLock<Result<BrowserEnv, String>> = OnceLock::new();
    match CHECKED.get_or_init(check_browser_env) {
        Ok(env) => env.clone(),
        Err(msg) => panic!("{msg}"),
    }
}

// ---------------------------------------------------------------------------
// Running a browser script
// ---------------------------------------------------------------------------

/// How a browser script run ended.
#[derive(Debug)]
pub struct ScriptOutcome {
    /// The command line, for messages.
    pub command: String,
    /// Exit status (`None` if it could not be collected after a kill).
    pub status: Option<ExitStatus>,
    /// Everything the script printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr (its progress log and the pages' consoles).
    pub stderr: String,
    /// The last stdout line that is a JSON object, or `Value::Null`.
    pub json: Value,
    /// The script ran past its time limit and was killed.
    pub timed_out: bool,
    /// Wall time.
    pub elapsed: Duration,
    /// The control commands the script sent, with the answers.
    pub controls: Vec<(String, String)>,
}

impl ScriptOutcome {
    /// A human-readable account of the run.
    pub fn report(&self) -> String {
        let tail = |s: &str, n: usize| {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        };
        let shots = match self.json.get("screenshots").and_then(Value::as_array) {
            Some(list) if !list.is_empty() => list
                .iter()
                .filter_map(Value::as_str)
                .map(|s| format!("\n  {s}"))
                .collect::<String>(),
            _ => " none".to_owned(),
        };
        format!(
            "script: {}\nstatus: {}{} after {:.1?}\nfailed step: {}\nerror: {}\ncontrol: {:?}\n\
             screenshots (and .html of each page) in {}:{shots}\n\
             --- stdout (last 20 lines) ---\n{}\n--- stderr (last 80 lines) ---\n{}\n---",
            self.command,
            self.status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "?".into()),
            if self.timed_out {
                " (KILLED: timed out)"
            } else {
                ""
            },
            self.elapsed,
            self.json.get("step").and_then(Value::as_str).unwrap_or("-"),
            self.json
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("-"),
            self.controls,
            screenshot_dir().display(),
            tail(&self.stdout, 20),
            tail(&self.stderr, 80),
        )
    }

    /// Asserts the script passed (`"ok": true`, exit 0) and returns its JSON.
    #[track_caller]
    pub fn assert_ok(&self) -> &Value {
        assert!(
            !self.timed_out,
            "browser script timed out\n{}",
            self.report()
        );
        assert_eq!(
            self.json["ok"],
            Value::Bool(true),
            "browser script failed\n{}",
            self.report()
        );
        assert!(
            self.status.is_some_and(|s| s.success()),
            "browser script exited with {:?}\n{}",
            self.status,
            self.report()
        );
        &self.json
    }
}

/// Runs `tests/browser/<script>` against `url` in headless Chromium, killing it
/// (and its browser) after `timeout`.
///
/// Each `@@CONTROL <command>` line the script prints is handed to `on_control`; its
/// `Ok(text)` goes back on the script's stdin as `ok <text>`, its `Err(text)` as
/// `error <text>`.
pub async fn run_script<F>(
    script: &str,
    url: &str,
    timeout: Duration,
    mut on_control: F,
) -> ScriptOutcome
where
    F: AsyncFnMut(&str) -> Result<String, String>,
{
    let env = browser_env();
    // One browser at a time per test binary: two Chromiums on a small CI machine make
    // both slow enough to flake.
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = ONE_AT_A_TIME.lock().await;
    let path = repo_dir().join("tests").join("browser").join(script);
    assert!(
        path.is_file(),
        "browser script {} is missing",
        path.display()
    );
    // The script stops itself a little before the hard limit, so that it can still
    // take its screenshots and print why.
    let own_limit = timeout
        .saturating_sub(Duration::from_secs(8))
        .as_secs()
        .max(5);
    let args: Vec<String> = vec![
        path.display().to_string(),
        url.to_owned(),
        "--chromium".into(),
        env.chromium.clone(),
        "--screenshots".into(),
        screenshot_dir().display().to_string(),
        "--timeout".into(),
        own_limit.to_string(),
    ];
    let command = format!("{} {}", env.node, args.join(" "));
    let start = Instant::now();
    let mut child = tokio::process::Command::new(&env.node)
        .args(&args)
        .current_dir(repo_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{command}`: {e}; {BROWSER_INSTALL_HINT}"));
    let pid = child.id();
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let stderr_task = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf).await;
        String::from_utf8_lossy(&buf).into_owned()
    });
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();

    let deadline = tokio::time::Instant::now() + timeout;
    let mut stdout = String::new();
    let mut controls = Vec::new();
    let mut timed_out = false;
    loop {
        match tokio::time::timeout_at(deadline, lines.next_line()).await {
            Err(_) => {
                timed_out = true;
                break;
            }
            Ok(Ok(Some(line))) => {
                stdout.push_str(&line);
                stdout.push('\n');
                if let Some(cmd) = line.strip_prefix("@@CONTROL ") {
                    let cmd = cmd.trim().to_owned();
                    let answer = match on_control(&cmd).await {
                        Ok(text) => format!("ok {text}"),
                        Err(text) => format!("error {text}"),
                    };
                    controls.push((cmd, answer.clone()));
                    let _ = stdin.write_all(format!("{answer}\n").as_bytes()).await;
                    let _ = stdin.flush().await;
                }
            }
            Ok(Ok(None)) | Ok(Err(_)) => break,
        }
    }
    drop(stdin);
    if let (true, Some(pid)) = (timed_out, pid) {
        // The whole process group: node and the Chromium it launched.
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status();
    }
    let status = match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
        Ok(Ok(status)) => Some(status),
        _ => {
            let _ = child.start_kill();
            None
        }
    };
    let stderr = tokio::time::timeout(Duration::from_secs(5), stderr_task)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let json = stdout
        .lines()
        .rev()
        .map(str::trim)
        .filter(|l| l.starts_with('{'))
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .unwrap_or(Value::Null);
    let elapsed = start.elapsed();
    // Shown with `--nocapture` (or on a failure): what the script measured.
    eprintln!("browser script {script}: {elapsed:.1?}, final line: {json}");
    ScriptOutcome {
        command,
        status,
        stdout,
        stderr,
        json,
        timed_out,
        elapsed,
        controls,
    }
}

/// A control handler for scripts that send none.
pub async fn no_control(cmd: &str) -> Result<String, String> {
    Err(format!("this test has no control command `{cmd}`"))
}

/// Waits until `members()` (the ids of the connections in a room) is exactly one
/// connection other than `previous`, and returns its id: a page whose connection a
/// test cut is back in the room, on a new connection. Checks every 10 ms, for at most
/// 10 s.
pub async fn one_new_member(
    members: impl Fn() -> Vec<u64>,
    previous: Option<u64>,
) -> Result<u64, String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = members();
        if let [id] = now[..]
            && Some(id) != previous
        {
            return Ok(id);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "the room holds connections {now:?} after 10 s, not one other than {previous:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
