//! A join storm into one presence room (issue 13): the server side and a presence probe,
//! for a run with the load tool `wshub-bench` (not criterion: a plain program).
//!
//! ```text
//! cargo bench --bench presence_storm --no-run        # builds target/release/deps/presence_storm-*
//! BIN=$(ls -t $CARGO_TARGET_DIR/release/deps/presence_storm-* | grep -v '\.d$' | head -1)
//! taskset -c 0 $BIN server 9400 &                     # the hub, on core 0 (prints its PID)
//! taskset -c 1 $BIN probe ws://127.0.0.1:9400/ 3 45 & # 3 members first, counting presence bytes
//! taskset -c 1 wshub-bench idle ws://127.0.0.1:9400/ --connections 19000 \
//!     --room bench:storm --duration 5s --server-pid $PID --source-ips 200 --quiet --json
//! ```
//!
//! Server CPU is `utime + stime` from `/proc/$PID/stat` (sampled while the storm runs),
//! peak RSS `VmHWM` from `/proc/$PID/status`.
//!
//! `server PORT` serves a hub with one namespace, `bench` (presence on, defaults
//! otherwise, 20,000 subscribers a room), with the connection caps lifted for a load
//! test from one host (`max_connections`, per host, per network, pending). It prints
//! `PID <pid> PORT <port>` and serves until killed. `STORM_BIG_ROOM=N` sets the
//! big-room threshold (`STORM_BIG_ROOM=1000000`: exact presence at any size, as before
//! big rooms existed), `STORM_PRESENCE=off` turns presence off.
//!
//! `probe URL N SECONDS` opens N connections, joins `bench:storm` with each, and counts
//! what they receive about presence (`presence_*` messages and bytes) per second for
//! SECONDS; it prints one JSON line: the total and the largest second of each member.
//! They join before the storm, so they see all of it (the worst case).

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use wshub::{Hub, Namespace};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("server") => server(args.get(1).map_or("9400", String::as_str)).await,
        Some("probe") => {
            let url = args.get(1).expect("probe URL N SECONDS");
            let n = args.get(2).map_or(3, |s| s.parse().expect("N"));
            let secs = args.get(3).map_or(60, |s| s.parse().expect("SECONDS"));
            probe(url, n, Duration::from_secs(secs)).await;
        }
        // `cargo bench` runs every bench with `--bench`: nothing to do unasked.
        _ => eprintln!("usage: presence_storm server PORT | probe URL N SECONDS"),
    }
}

async fn server(port: &str) {
    let env = |name: &str| std::env::var(name).ok();
    let mut ns = Namespace::<Value>::new("bench").max_subscribers(20_000);
    if let Some(n) = env("STORM_BIG_ROOM") {
        ns = ns.big_room(n.parse().expect("STORM_BIG_ROOM: a number"));
    }
    if env("STORM_PRESENCE").as_deref() == Some("off") {
        ns = ns.presence(false);
    }
    let hub = Hub::builder()
        .namespace(ns)
        .configure(|c| wshub::bench_support::lift_limits_for_load(c, 20_000))
        .build();
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}"))
        .await
        .expect("bind");
    println!(
        "PID {} PORT {}",
        std::process::id(),
        listener.local_addr().unwrap().port()
    );
    hub.serve(listener).await.expect("serve");
}

async fn probe(url: &str, n: usize, run: Duration) {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let url = url.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut req = url.into_client_request().unwrap();
            req.headers_mut()
                .insert("sec-websocket-protocol", "wshub.v1".parse().unwrap());
            let (mut ws, _) = tokio_tungstenite::connect_async(req)
                .await
                .expect("connect");
            let join = json!({"op": "join", "room": "bench:storm", "id": 1});
            ws.send(Message::text(join.to_string())).await.unwrap();
            let start = Instant::now();
            let mut per_sec: Vec<u64> = Vec::new();
            let (mut msgs, mut bytes) = (0u64, 0u64);
            let mut ops = std::collections::BTreeMap::<String, u64>::new();
            while let Ok(Some(Ok(msg))) =
                tokio::time::timeout_at((start + run).into(), ws.next()).await
            {
                let Message::Text(text) = msg else { continue };
                let v: Value = serde_json::from_str(&text).unwrap();
                let op = v["op"].as_str().unwrap_or_default();
                if !op.starts_with("presence_") {
                    continue;
                }
                *ops.entry(op.to_owned()).or_default() += 1;
                let sec = start.elapsed().as_secs() as usize;
                if per_sec.len() <= sec {
                    per_sec.resize(sec + 1, 0);
                }
                per_sec[sec] += text.len() as u64;
                msgs += 1;
                bytes += text.len() as u64;
            }
            json!({
                "messages": msgs,
                "bytes": bytes,
                "max_bytes_in_a_second": per_sec.iter().max().copied().unwrap_or(0),
                "ops": ops,
            })
        }));
    }
    let mut members = Vec::new();
    for t in tasks {
        members.push(t.await.unwrap());
    }
    println!("{}", json!({ "members": members }));
}
