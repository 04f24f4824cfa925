//! `broadcast` over `wss://`: the hub serves a self-signed certificate, the generator
//! trusts it (`--ca-file`) and every message arrives; without trusting it, every
//! connection fails.

mod common;

use tokio::net::TcpListener;
use wshub_bench::conn::Target;
use wshub_bench::scenario::broadcast;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_over_tls() {
    let cert = wshub::tls::self_signed(["localhost"]).unwrap();
    let hub = common::hub(11);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = cert.acceptor.clone();
    tokio::spawn(async move { hub.serve_tls(listener, acceptor).await });

    let url = format!("wss://localhost:{port}/");
    let mut target = Target::resolve(&url).await.unwrap();
    target.subprotocol = Some("wshub.v1".into());
    target.token = Some("tok-{i}".into());
    let opts = || broadcast::BroadcastOpts {
        subscribers: 10,
        messages: Some(100),
        progress: false,
        ..Default::default()
    };

    // Not trusted yet: refused before any WebSocket byte.
    let untrusted = broadcast::run(target.clone(), opts()).await.unwrap();
    assert_eq!(untrusted.connected, 0);
    assert_eq!(untrusted.connect_failed, 11);

    target.trust(cert.cert_pem.as_bytes()).unwrap();
    let r = broadcast::run(target, opts()).await.unwrap();
    assert_eq!(r.connected, 11);
    assert_eq!(r.expected, 100 * 11);
    common::assert_complete(&r);
}
