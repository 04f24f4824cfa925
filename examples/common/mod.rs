//! Code the `chat` and `news_feed` examples share: their command-line flags, logging
//! (`RUST_LOG`, `--log-format json`), serving an axum app (with the hub on one of its
//! routes, and its metrics on `/metrics`) over http or https with `Hub::serve_axum`,
//! static assets and JSON errors. Each example includes it with
//! `#[path = "common/mod.rs"] mod common;`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::pin;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use wshub::Hub;
use wshub::tls::TlsAcceptor;

/// The browser client both pages use, served at `/wshub.js`.
pub const WSHUB_JS: &str = include_str!("../../clients/wshub.js");

/// How to serve `https://` and `wss://`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsChoice {
    /// A certificate for `localhost`, `127.0.0.1` and `::1` generated at start (rcgen),
    /// valid for nothing else: for trying wss:// on one machine. Its PEM is written to
    /// `cert_out`, if set, for the user to trust.
    SelfSigned {
        /// Where to write the certificate (never the key).
        cert_out: Option<PathBuf>,
    },
    /// A real certificate chain and its private key, from PEM files.
    Files {
        /// The certificate chain (PEM).
        cert: PathBuf,
        /// The private key (PEM).
        key: PathBuf,
    },
}

impl TlsChoice {
    /// A self-signed certificate written to `<temp dir>/wshub-<example>-<pid>-cert.pem`:
    /// one file per process, so two servers never overwrite each other's certificate.
    pub fn self_signed_for(example: &str) -> Self {
        let name = format!("wshub-{example}-{}-cert.pem", std::process::id());
        TlsChoice::SelfSigned {
            cert_out: Some(std::env::temp_dir().join(name)),
        }
    }
}

/// How the examples write their logs (to stderr).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One line of text per event, for people (the default).
    #[default]
    Text,
    /// One JSON object per line, for a log collector (`--log-format json`): the
    /// event's fields, and the connection's (`conn_id`, `user`, `peer`) under `span`.
    Json,
}

/// The flags both examples take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flags {
    /// `--host`: the address to listen on. Default 127.0.0.1 (this machine only).
    pub host: IpAddr,
    /// `--port`, else the `PORT` environment variable, else the example's default.
    pub port: u16,
    /// `--tls` (self-signed) or `--cert FILE --key FILE`.
    pub tls: Option<TlsChoice>,
    /// `--log-format text|json`. Default text.
    pub log_format: LogFormat,
    /// `--redis URL`: run as one node of a cluster on that Redis (the backplane).
    /// Default: none, a single process.
    pub redis: Option<String>,
    /// `--trusted-proxy CIDR` (repeatable): reverse proxies whose `X-Forwarded-For`
    /// names the client (`deploy/nginx.conf`, `deploy/haproxy.cfg`). Default: none.
    pub trusted_proxies: Vec<String>,
}

impl Flags {
    /// Parses `std::env::args()` and `PORT`; prints the usage and exits on a bad flag.
    pub fn from_env(example: &str, default_port: u16) -> Flags {
        let args = std::env::args().skip(1);
        match Flags::parse(example, args, std::env::var("PORT").ok(), default_port) {
            Ok(flags) => flags,
            Err(message) => {
                let usage = format!(
                    "usage: cargo run --example {example} -- [--port N] [--host IP] \
                     [--tls | --cert FILE --key FILE] [--log-format text|json] \
                     [--redis URL] [--trusted-proxy CIDR]...\n\
                     RUST_LOG sets what is logged (default: info)"
                );
                if message.is_empty() {
                    println!("{usage}");
                    std::process::exit(0);
                }
                eprintln!("{example}: {message}\n{usage}");
                std::process::exit(2);
            }
        }
    }

    /// Parses flags (`--port 8080` or `--port=8080`); an `Err` carries the problem, or
    /// is empty for `--help`.
    pub fn parse(
        example: &str,
        args: impl IntoIterator<Item = String>,
        env_port: Option<String>,
        default_port: u16,
    ) -> Result<Flags, String> {
        let mut port = match env_port.filter(|p| !p.is_empty()) {
            Some(p) => p.parse().map_err(|_| format!("PORT={p} is not a port"))?,
            None => default_port,
        };
        let mut host = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let (mut tls, mut cert, mut key) = (false, None, None);
        let mut log_format = LogFormat::Text;
        let mut redis = None;
        let mut trusted_proxies = Vec::new();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
                _ => (arg, None),
            };
            let mut value = |name: &str| {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            match flag.as_str() {
                "--port" => {
                    let v = value("--port")?;
                    port = v.parse().map_err(|_| format!("--port {v}: not a port"))?;
                }
                "--host" => {
                    let v = value("--host")?;
                    host = v
                        .parse()
                        .map_err(|_| format!("--host {v}: not an IP address"))?;
                }
                "--tls" => tls = true,
                "--cert" => cert = Some(PathBuf::from(value("--cert")?)),
                "--key" => key = Some(PathBuf::from(value("--key")?)),
                "--log-format" => {
                    log_format = match value("--log-format")?.as_str() {
                        "text" => LogFormat::Text,
                        "json" => LogFormat::Json,
                        other => {
                            return Err(format!("--log-format {other}: text or json"));
                        }
                    };
                }
                "--redis" => redis = Some(value("--redis")?),
                "--trusted-proxy" => {
                    let v = value("--trusted-proxy")?;
                    wshub::TrustedProxies::new([v.as_str()])
                        .map_err(|e| format!("--trusted-proxy {v}: {e}"))?;
                    trusted_proxies.push(v);
                }
                "-h" | "--help" => return Err(String::new()),
                other => return Err(format!("unknown argument {other}")),
            }
        }
        let tls = match (cert, key) {
            (Some(cert), Some(key)) => Some(TlsChoice::Files { cert, key }),
            (None, None) if tls => Some(TlsChoice::self_signed_for(example)),
            (None, None) => None,
            _ => return Err("--cert and --key go together".into()),
        };
        Ok(Flags {
            host,
            port,
            tls,
            log_format,
            redis,
            trusted_proxies,
        })
    }
}

/// Applies `--redis` and `--trusted-proxy` to a hub being built: a backplane on that
/// Redis (its keys and channel under the prefix `prefix`, its presence entries
/// outliving a dead node by `presence_ttl` if given, else the backplane's default),
/// and the trusted proxies. Exits with a message if the Redis URL is not one.
pub fn cluster_options(
    example: &str,
    mut builder: wshub::HubBuilder,
    redis: Option<&str>,
    trusted_proxies: &[String],
    prefix: &str,
    presence_ttl: Option<std::time::Duration>,
) -> wshub::HubBuilder {
    if let Some(url) = redis {
        let mut options = wshub::redis::RedisOptions::default();
        options.prefix = prefix.to_owned();
        if let Some(ttl) = presence_ttl {
            options.presence_ttl = ttl;
        }
        match wshub::redis::RedisBackplane::new(url, options) {
            Ok(backplane) => builder = builder.backplane(backplane),
            Err(e) => {
                eprintln!("{example}: --redis {url}: {e}");
                std::process::exit(2);
            }
        }
    }
    if !trusted_proxies.is_empty() {
        // Checked when the flags were parsed.
        let proxies = wshub::TrustedProxies::new(trusted_proxies.iter().map(String::as_str))
            .expect("checked by Flags::parse");
        // Per-host limits then count the clients the proxy names, one by one; the
        // proxy itself is exempt from the pending caps.
        builder = builder.configure(|c| c.trusted_proxies = proxies);
    }
    builder
}

/// What is known about the certificate of a server started with TLS.
#[derive(Debug, Clone)]
pub struct TlsInfo {
    /// The certificate in PEM form (for clients to trust a self-signed one).
    pub cert_pem: String,
    /// The certificate's file: the one given with `--cert`, or where the self-signed
    /// one was written.
    pub cert_path: Option<PathBuf>,
    /// Whether the certificate was generated at start (clients must be told to trust
    /// it, or to skip verification).
    pub self_signed: bool,
}

/// An app being served.
#[derive(Debug)]
pub struct Served {
    /// The address it listens on.
    pub local_addr: SocketAddr,
    /// `Some` when serving https and wss.
    pub tls: Option<TlsInfo>,
    /// The serving task: it ends, after dropping the listener (so the port can be
    /// bound again), once the hub has begun shutting down. `Hub::shutdown` waits for
    /// open HTTP requests to finish.
    pub task: JoinHandle<io::Result<()>>,
}

/// Serves `app` on `listener`, over TLS if `tls` says so, until `hub` begins shutting
/// down, with `Hub::serve_axum`: request heads are bounded in size and time, idle
/// connections are closed, connections not yet upgraded are capped in all, per host
/// and per network, and peer addresses reach the hub as `ConnectInfo`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    hub: Hub,
    tls: Option<&TlsChoice>,
) -> io::Result<Served> {
    let local_addr = listener.local_addr()?;
    let Some(choice) = tls else {
        let task = tokio::spawn(async move { hub.serve_axum(listener, app).await });
        return Ok(Served {
            local_addr,
            tls: None,
            task,
        });
    };
    let (acceptor, info) = tls_acceptor(choice, local_addr.ip())?;
    let task = tokio::spawn(async move { hub.serve_axum_tls(listener, acceptor, app).await });
    Ok(Served {
        local_addr,
        tls: Some(info),
        task,
    })
}

/// Builds the TLS acceptor, generating (and writing out) a self-signed certificate if
/// asked to.
fn tls_acceptor(choice: &TlsChoice, ip: IpAddr) -> io::Result<(TlsAcceptor, TlsInfo)> {
    match choice {
        TlsChoice::Files { cert, key } => {
            let acceptor = wshub::tls::acceptor_from_pem_files(cert, key).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("{} / {}: {e}", cert.display(), key.display()),
                )
            })?;
            let cert_pem = std::fs::read_to_string(cert)?;
            Ok((
                acceptor,
                TlsInfo {
                    cert_pem,
                    cert_path: Some(cert.clone()),
                    self_signed: false,
                },
            ))
        }
        TlsChoice::SelfSigned { cert_out } => {
            let mut hosts = vec!["localhost".to_owned(), "127.0.0.1".into(), "::1".into()];
            if !ip.is_unspecified() && !ip.is_loopback() {
                hosts.push(ip.to_string());
            }
            let generated = wshub::tls::self_signed(hosts)?;
            if let Some(path) = cert_out {
                write_cert(path, &generated.cert_pem)?;
            }
            Ok((
                generated.acceptor,
                TlsInfo {
                    cert_pem: generated.cert_pem,
                    cert_path: cert_out.clone(),
                    self_signed: true,
                },
            ))
        }
    }
}

/// Writes the certificate to a new file: a leftover file (or a link someone planted in
/// a shared temp dir) is removed, never written through.
fn write_cert(path: &Path, pem: &str) -> io::Result<()> {
    use std::io::Write;
    let write = || -> io::Result<()> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)?;
        file.write_all(pem.as_bytes())
    };
    write().map_err(|e| io::Error::new(e.kind(), format!("writing {}: {e}", path.display())))
}

/// Prints where the self-signed certificate is, if there is one.
pub fn print_certificate(tls: Option<&TlsInfo>) {
    if let Some(TlsInfo {
        cert_path: Some(path),
        self_signed: true,
        ..
    }) = tls
    {
        println!(
            "self-signed certificate: {} (trust it, or accept the browser's warning once)",
            path.display()
        );
    }
}

/// Ends `main`: an error is printed as a sentence, with exit code 1.
pub fn exit_code(example: &str, result: io::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{example}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Waits for Ctrl-C (then shuts `hub` down: every WebSocket is closed with 1001, so
/// browsers reconnect as soon as the server is back) or for the server task to end.
pub async fn run_until_ctrl_c(hub: Hub, task: JoinHandle<io::Result<()>>) -> io::Result<()> {
    let mut task = pin!(task);
    tokio::select! {
        r = &mut task => return r.map_err(io::Error::other)?,
        r = tokio::signal::ctrl_c() => r?,
    }
    println!("shutting down");
    hub.shutdown().await;
    task.await.map_err(io::Error::other)?
}

/// Logs to stderr in `format`; `RUST_LOG` overrides the default filter (`info`).
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ =
        tracing::subscriber::set_global_default(log_subscriber(format, filter, std::io::stderr));
}

/// The examples' log subscriber, writing to `writer` (stderr, or a test's buffer).
///
/// What the hub logs at `info`: each connection's `connected` and `closed` (with the
/// close `code`, `reason` and `initiator`), `authentication failed` (peer, status,
/// the authenticator's reason), `flooding: closing (1008)`, `closed slow consumer
/// (1013)`, and token expiries and ping timeouts; the connection's span carries
/// `conn_id`, `user` and `peer`. Never a token, a cookie or a message body: the
/// request and what clients publish are not logged.
pub fn log_subscriber<W>(
    format: LogFormat,
    filter: tracing_subscriber::EnvFilter,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => Box::new(builder.finish()),
        // The innermost span (the connection's) only: `spans` would repeat it.
        LogFormat::Json => Box::new(
            builder
                .json()
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
        ),
    }
}

/// Binds `flags.host:flags.port`, explaining the usual failure.
pub async fn bind(flags: &Flags) -> io::Result<TcpListener> {
    TcpListener::bind((flags.host, flags.port))
        .await
        .map_err(|e| {
            let hint = if e.kind() == io::ErrorKind::AddrInUse {
                format!(" (another program uses it: try --port {})", flags.port + 10)
            } else {
                String::new()
            };
            io::Error::new(
                e.kind(),
                format!("cannot listen on {}:{}{hint}: {e}", flags.host, flags.port),
            )
        })
}

/// A static asset compiled into the binary. Pages get a Content-Security-Policy that
/// allows only this origin's scripts and styles: no inline script runs, so even a
/// rendering bug could not execute a message as code.
pub fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response();
    if content_type.starts_with("text/html") {
        response.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; script-src 'self'; style-src 'self'; \
                 connect-src 'self' ws: wss:; img-src 'self' data:; base-uri 'none'; \
                 form-action 'self'; frame-ancestors 'none'",
            ),
        );
    }
    response
}

/// An HTTP error answered as JSON: `{"error": "...", "field": "..."}` (`field` names
/// the offending input field, when there is one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What is wrong, for people.
    pub message: String,
    /// The input field at fault.
    pub field: Option<&'static str>,
}

impl ApiError {
    /// A 400 about `field`.
    pub fn field(field: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            field: Some(field),
        }
    }

    /// An error about the request as a whole.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            field: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.field {
            Some(field) => json!({ "error": self.message, "field": field }),
            None => json!({ "error": self.message }),
        };
        (self.status, axum::Json(body)).into_response()
    }
}

/// How long a client has to send a request body.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads a JSON object body of at most `limit` bytes: 415 unless the content type is
/// JSON (which also keeps other sites' HTML forms out: browsers must ask first before
/// sending JSON cross-origin), 413 over the limit, 408 if it takes over 10 s to arrive,
/// 400 if it is not a JSON object.
pub async fn read_json_object(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Map<String, Value>, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send JSON with content-type: application/json",
        ));
    }
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    // `to_bytes` stops reading at the limit, whatever Content-Length claimed; the time
    // bound stops a client trickling its body from holding the connection (the server
    // bounds request heads, not bodies).
    let bytes = tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| ApiError::new(StatusCode::REQUEST_TIMEOUT, "the body took too long"))?
        .map_err(|_| too_large())?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object",
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not valid JSON: {e}"),
        )),
    }
}

/// Milliseconds since the Unix epoch (what JavaScript's `Date` takes).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
