//! A real Prometheus (the Debian package's `prometheus` binary, installed by
//! `scripts/test-deps.sh`) scrapes the chat example's `/metrics`, started in this
//! process on 127.0.0.1:0, every second. The test drives traffic (joins with history
//! and recovery, publishes from clients and from the server, a refused token, a flood
//! closed with 1008, a slow consumer closed with 1013) and then asserts through
//! Prometheus' HTTP query API that the counters and histograms reached exactly what
//! happened; then it runs every query of the Grafana dashboard's panels
//! (`deploy/grafana/wshub.json`) through the same API, and each returns data.
//!
//! Prometheus runs on a free port with a generated configuration and a temporary
//! storage directory, and is killed (and the directory removed) by a guard when the
//! test ends, passed or failed. Every wait polls the API, within a deadline.
#![cfg(all(
    feature = "axum",
    feature = "tls",
    feature = "jwt",
    feature = "metrics"
))]

#[path = "../examples/chat.rs"]
#[allow(dead_code)]
mod chat;
mod common;
#[path = "browser/support.rs"]
mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chat::{ChatEvent, ChatOptions, ChatServer};
use common::hub::Client;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpSocket};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// How long any one wait (Prometheus ready, a series reaching its value) may take.
const WAIT: Duration = Duration::from_secs(60);
/// Messages the server publishes at most while waiting for the slow consumer.
const MAX_FIREHOSE: usize = 5_000;

/// A Prometheus server in a temporary directory: killed, and its directory removed,
/// when dropped.
struct Prometheus {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Prometheus {
    /// Starts Prometheus scraping `target`'s `/metrics` every second, on a free port;
    /// returns once it answers `/-/ready`.
    async fn start(target: SocketAddr) -> Prometheus {
        let binary = which("prometheus").unwrap_or_else(|| {
            panic!(
                "the `prometheus` binary is not on PATH: install the Debian package \
                 (`apt-get install prometheus`, which scripts/test-deps.sh does)"
            )
        });
        let mut last_log = String::new();
        // A port that was free a moment ago; another process taking it meanwhile makes
        // Prometheus exit, and the next attempt gets another.
        for _ in 0..3 {
            let dir = std::env::temp_dir().join(format!(
                "wshub-prometheus-{}-{}",
                std::process::id(),
                rand::random::<u32>()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let config = dir.join("prometheus.yml");
            std::fs::write(
                &config,
                format!(
                    "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                     scrape_configs:\n  - job_name: wshub-chat\n    metrics_path: /metrics\n    \
                     static_configs:\n      - targets: [\"{target}\"]\n"
                ),
            )
            .unwrap();
            let port = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().port()
            };
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
            let child = Command::new(&binary)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--log.level=warn")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
            // From here the guard kills it and removes `dir`, whatever happens.
            let mut prom = Prometheus { child, dir, addr };
            let deadline = Instant::now() + WAIT;
            loop {
                if let Ok(Some(_)) = prom.child.try_wait() {
                    break; // exited: the port was taken, or worse (its log says)
                }
                if try_get(addr, "/-/ready")
                    .await
                    .is_some_and(|r| r.status == 200)
                {
                    return prom;
                }
                assert!(
                    Instant::now() < deadline,
                    "Prometheus not ready within {WAIT:?}:\n{}",
                    prom.log()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            last_log = prom.log();
        }
        panic!("Prometheus did not start after 3 attempts:\n{last_log}");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// Runs an instant query; the result vector.
    async fn query(&self, promql: &str) -> Vec<Value> {
        let path = format!("/api/v1/query?query={}", percent_encode(promql));
        let resp = support::http(self.addr, "GET", &path, &[], b"").await;
        assert_eq!(resp.status, 200, "{promql}: {resp}");
        let body = resp.json();
        assert_eq!(body["status"], "success", "{promql}: {body}");
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The value of a query that returns one series, if it returns one.
    async fn value(&self, promql: &str) -> Option<f64> {
        let result = self.query(promql).await;
        match result.as_slice() {
            [one] => one["value"][1].as_str()?.parse().ok(),
            [] => None,
            many => panic!("{promql}: expected one series, got {many:?}"),
        }
    }

    /// Polls until `promql` has one series satisfying `ok`; returns its value.
    async fn wait_for(&self, promql: &str, what: &str, ok: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + WAIT;
        let mut last = None;
        loop {
            last = self.value(promql).await.or(last);
            if let Some(v) = last
                && ok(v)
            {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{promql}: expected {what}, last seen {last:?} after {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Polls until `promql` equals `expected` exactly.
    async fn wait_eq(&self, promql: &str, expected: f64) {
        self.wait_for(promql, &format!("= {expected}"), |v| v == expected)
            .await;
    }
}

/// A GET that may fail (the server not listening yet).
async fn try_get(addr: SocketAddr, path: &str) -> Option<support::HttpResponse> {
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    tokio::time::timeout(
        Duration::from_secs(5),
        support::http_on(tcp, "GET", &addr.to_string(), path, &[], b""),
    )
    .await
    .ok()?
    .ok()
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of `series` (exact name and labels) in a text exposition.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in /metrics"))
        .parse()
        .unwrap()
}

/// Every `expr` of the dashboard's panels (rows' nested panels too).
fn dashboard_queries() -> Vec<(String, String)> {
    let path = common::manifest_dir().join("deploy/grafana/wshub.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = t["expr"].as_str() {
                    let title = p["title"].as_str().unwrap_or("?").to_owned();
                    out.push((title, expr.to_owned()));
                }
            }
            walk(&p["panels"], out);
        }
    }
    walk(&dashboard["panels"], &mut out);
    out
}

async fn start_chat() -> ChatServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    chat::start(
        listener,
        ChatOptions {
            secret: Some(b"metrics test key".to_vec()),
            // A ping every second, so round trips are measured while the test runs.
            ping_interval: Some(Duration::from_secs(1)),
            ..ChatOptions::default()
        },
    )
    .await
    .expect("starting the chat example")
}

fn text(t: &str) -> Value {
    json!({"kind": "text", "text": t})
}

/// Connects `name` with a fresh token.
async fn connect(server: &ChatServer, name: &str) -> Client {
    let token = server.auth.login(name).expect("login").token;
    Client::connect(&format!("{}?token={token}", server.ws_url())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_sees_what_happened_and_the_dashboard_has_data() {
    let server = start_chat().await;
    let prom = Prometheus::start(server.local_addr).await;
    prom.wait_eq(r#"up{job="wshub-chat"}"#, 1.0).await;

    // A reader that stays to the end and answers pings (tungstenite does, as it reads).
    let mut carol = connect(&server, "carol").await;
    carol.join_ok("chat:lobby").await;
    let reader = tokio::spawn(async move { while let Some(Ok(_)) = carol.ws.next().await {} });

    // Alice joins asking for the room's last 10 messages (a history join), publishes 5.
    let mut alice = connect(&server, "alice").await;
    let (reply, _) = alice
        .request(json!({"op": "join", "room": "chat:lobby", "history": 10}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    let mut delivered = 0;
    let mut positions = Vec::new();
    for i in 0..5 {
        let r = alice
            .publish("chat:lobby", text(&format!("hello {i}")))
            .await;
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["data"]["delivered"], 2, "carol and alice: {r}");
        delivered += 2;
        positions.push(r["data"].clone());
    }
    // Bob recovers from alice's first message (everything after it is there), then
    // asks to recover another room from an epoch it never had: recovered: false.
    let mut bob = connect(&server, "bob").await;
    let since = json!({"seq": positions[0]["seq"], "epoch": positions[0]["epoch"]});
    let (reply, _) = bob
        .request(json!({"op": "join", "room": "chat:lobby", "since": since}))
        .await;
    assert_eq!(reply["data"]["recovered"], true, "{reply}");
    assert_eq!(reply["data"]["replayed"], 4, "{reply}");
    let (reply, _) = bob
        .request(json!({"op": "join", "room": "chat:other", "since": {"seq": 3, "epoch": "gone"}}))
        .await;
    assert_eq!(reply["data"]["recovered"], false, "{reply}");
    for i in 0..3 {
        let r = bob.publish("chat:lobby", text(&format!("hi {i}"))).await;
        assert_eq!(r["data"]["delivered"], 3, "{r}");
        delivered += 3;
    }

    // A forged token: 401 before any upgrade.
    let refused = Client::connect_with(
        &format!("{}?token=forged.token.value", server.ws_url()),
        &[],
    )
    .await
    .err();
    assert_eq!(refused, Some(401));

    // Mallory floods: 250 messages in one write; closed with 1008 ("flooding").
    let mut mallory = connect(&server, "mallory").await;
    for i in 0..250 {
        let op = json!({"op": "publish", "room": "chat:lobby", "data": text("spam"), "id": i});
        mallory
            .ws
            .feed(Message::text(op.to_string()))
            .await
            .unwrap();
    }
    mallory.ws.flush().await.unwrap();
    assert_eq!(mallory.expect_close().await, 1008);

    // A slow consumer: a member of chat:firehose whose socket has an 8 KiB receive
    // buffer and who stops reading, while the server publishes 8 KiB messages.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(8 * 1024).unwrap();
    let stream = socket.connect(server.local_addr).await.unwrap();
    let token = server.auth.login("slowpoke").unwrap().token;
    let mut slowpoke =
        Client::connect_on(stream, &format!("{}?token={token}", server.ws_url()), &[])
            .await
            .expect("slowpoke connects");
    slowpoke.join_ok("chat:firehose").await;
    let firehose = server.hub.room::<ChatEvent>("chat:firehose").unwrap();
    let mut server_publishes = 0;
    while server.hub.stats().slow_consumers == 0 {
        assert!(
            server_publishes < MAX_FIREHOSE,
            "no slow consumer after {MAX_FIREHOSE} publishes"
        );
        let event = ChatEvent::Text {
            text: "x".repeat(8 * 1024),
            name: "server".into(),
            at: 0,
        };
        delivered += firehose.publish(event).await.unwrap().delivered;
        server_publishes += 1;
    }
    drop(firehose);
    drop(slowpoke);

    alice.close().await;
    bob.close().await;
    let deadline = Instant::now() + WAIT;
    while server.hub.stats().connections != 1 {
        assert!(
            Instant::now() < deadline,
            "connections did not end: {:?}",
            server.hub.stats()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // What the hub itself says now, for the counters whose exact value the test cannot
    // know in advance (how many flood messages were refused before the close).
    let own = server.hub.metrics_text().expect("metrics are on");
    let client_messages = sample(&own, "wshub_client_messages_total");
    let rate_limited = sample(&own, r#"wshub_rate_limited_total{limit="connection"}"#);
    assert!(
        rate_limited >= 100.0,
        "the flood limit is 100 strikes: {rate_limited}"
    );
    // Joins (carol 1, alice 1, bob 2, slowpoke 1) and 8 publishes, then mallory's
    // messages up to the close: her burst of 100 that passed (answered not_joined)
    // and the refused ones. What she sent after the close was never read as a message.
    let flood_passed = client_messages - 13.0 - rate_limited;
    assert!(flood_passed >= 100.0, "{client_messages} {rate_limited}");

    let publishes = 8.0 + server_publishes as f64;
    for (series, expected) in [
        ("wshub_connections_opened_total", 5.0),
        ("wshub_handshake_duration_seconds_count", 5.0),
        (r#"wshub_connections_closed_total{code="1000"}"#, 2.0),
        (r#"wshub_connections_closed_total{code="1008"}"#, 1.0),
        (r#"wshub_connections_closed_total{code="1013"}"#, 1.0),
        (r#"wshub_connections_closed_total{code="1006"}"#, 0.0),
        (r#"wshub_handshakes_refused_total{status="401"}"#, 1.0),
        (r#"wshub_handshakes_refused_total{status="429"}"#, 0.0),
        (r#"wshub_messages_received_total{namespace="chat"}"#, 8.0),
        (
            r#"wshub_messages_published_total{namespace="chat"}"#,
            publishes,
        ),
        (
            r#"wshub_deliveries_total{namespace="chat"}"#,
            delivered as f64,
        ),
        ("wshub_fanout_duration_seconds_count", publishes),
        (
            r#"wshub_fanout_duration_seconds_bucket{le="+Inf"}"#,
            publishes,
        ),
        (r#"wshub_join_replays_total{outcome="history"}"#, 1.0),
        (r#"wshub_join_replays_total{outcome="recovered"}"#, 1.0),
        (r#"wshub_join_replays_total{outcome="not_recovered"}"#, 1.0),
        ("wshub_slow_consumers_total", 1.0),
        ("wshub_rate_limit_closes_total", 1.0),
        (
            r#"wshub_rate_limited_total{limit="connection"}"#,
            rate_limited,
        ),
        (r#"wshub_rate_limited_total{limit="membership"}"#, 0.0),
        ("wshub_client_messages_total", client_messages),
        ("wshub_connections", 1.0),
        ("wshub_users", 1.0),
        (r#"wshub_presence_users{namespace="chat"}"#, 1.0),
        // chat:other went with bob, chat:firehose on the sweep after its handle went.
        (r#"wshub_rooms{namespace="chat"}"#, 1.0),
    ] {
        prom.wait_eq(series, expected).await;
    }
    // What keeps moving: bytes both ways (pings and pongs too), round trips measured.
    let sent = prom
        .wait_for(
            "wshub_sent_bytes_total",
            "> 8 KiB per firehose message",
            |v| v >= (server_publishes * 8 * 1024) as f64 / 2.0,
        )
        .await;
    let payload = prom
        .wait_for("wshub_sent_payload_bytes_total", "> 0", |v| v > 0.0)
        .await;
    assert!(sent > 0.0 && payload > 0.0);
    prom.wait_for("wshub_received_bytes_total", "> 0", |v| v > 0.0)
        .await;
    prom.wait_for("wshub_received_payload_bytes_total", "> 0", |v| v > 0.0)
        .await;
    prom.wait_for("wshub_ping_rtt_seconds_count", "> 0", |v| v > 0.0)
        .await;
    // A sum in seconds, and a loopback round trip well under a second.
    let rtt = prom
        .wait_for(
            "wshub_ping_rtt_seconds_sum / wshub_ping_rtt_seconds_count",
            "a mean round trip",
            |v| v > 0.0,
        )
        .await;
    assert!(rtt < 1.0, "mean ping round trip {rtt} s");
    let p99 = prom
        .wait_for(
            "histogram_quantile(0.99, wshub_fanout_duration_seconds_bucket)",
            "a p99",
            |v| v.is_finite(),
        )
        .await;
    assert!(p99 > 0.0 && p99 <= 1.0, "fan-out p99 {p99} s");

    // Every query of every dashboard panel returns data, with the dashboard's
    // variables as Grafana would fill them (all jobs; a 10 s rate window, ten scrapes).
    let queries = dashboard_queries();
    assert!(queries.len() >= 20, "{queries:?}");
    for (title, expr) in &queries {
        let promql = expr
            .replace("$__rate_interval", "10s")
            .replace("$job", ".*");
        assert!(!promql.contains('$'), "{title}: unknown variable in {expr}");
        let result = prom.query(&promql).await;
        assert!(!result.is_empty(), "panel {title:?}: no data for {promql}");
    }
    // The panels the issue names are all there.
    for wanted in [
        "wshub_connections{",
        "wshub_client_messages_total",
        "wshub_deliveries_total",
        "histogram_quantile(0.5, sum by (le) (rate(wshub_fanout_duration_seconds_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(wshub_fanout_duration_seconds_bucket",
        "wshub_slow_consumers_total",
        "wshub_connections_closed_total",
        "wshub_handshakes_refused_total",
        "wshub_rate_limited_total",
    ] {
        assert!(
            queries.iter().any(|(_, e)| e.contains(wanted)),
            "no dashboard query uses {wanted}"
        );
    }

    reader.abort();
    drop(prom);
    server.shutdown().await.unwrap();
}
