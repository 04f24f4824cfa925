//! `wshub::client` over `wss://`: a hub served with TLS (a self-signed certificate),
//! a client trusting exactly that certificate joins and publishes; one trusting
//! another certificate fails the TLS handshake and says so.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::client::{TestTokens, next_message};
use common::hub::{ChatMessage, test_hub_builder};
use tokio::net::TcpListener;
use wshub::client::{Client, ClientError, ConnectionState, Disconnect};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_with_a_trusted_certificate() {
    let tokens = TestTokens::default();
    tokens.allow("a", "ann");
    let hub = test_hub_builder().authenticator(tokens.clone()).build();
    let cert = wshub::tls::self_signed(["localhost", "127.0.0.1"]).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let h = hub.clone();
    let acceptor = cert.acceptor.clone();
    tokio::spawn(async move { h.serve_tls(listener, acceptor).await });

    let trusted = Arc::new(wshub::tls::client_config_trusting(cert.cert_pem.as_bytes()).unwrap());
    for host in ["localhost", "127.0.0.1"] {
        let ann = Client::builder(format!("wss://{host}:{port}/"))
            .token("a")
            .tls_config(trusted.clone())
            .build()
            .unwrap();
        let mut lobby = ann.join::<ChatMessage>("chat:secure").await.unwrap();
        let text = format!("over tls to {host}");
        let published = ann
            .publish("chat:secure", &ChatMessage { text: text.clone() })
            .await
            .unwrap();
        assert_eq!(published.delivered, 1);
        let m = next_message(&mut lobby).await;
        assert_eq!(
            (m.from.as_deref(), m.data.text.as_str()),
            (Some("ann"), text.as_str())
        );
        ann.close().await;
    }

    // A client trusting an unrelated certificate for the same names never gets in.
    let other = wshub::tls::self_signed(["localhost"]).unwrap();
    let untrusting = Client::builder(format!("wss://localhost:{port}/"))
        .token("a")
        .tls_config(wshub::tls::client_config_trusting(other.cert_pem.as_bytes()).unwrap())
        .configure(|o| {
            o.backoff.base = Duration::from_millis(10);
            o.backoff.max_attempts = Some(2);
        })
        .build()
        .unwrap();
    let err = untrusting.connected().await.unwrap_err();
    let ClientError::GaveUp(Disconnect::Error(e)) = &err else {
        panic!("{err:?}")
    };
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    assert!(matches!(
        untrusting.state(),
        ConnectionState::GaveUp { attempts: 2, .. }
    ));
    // Only the first client's two handshakes reached the authenticator.
    assert_eq!(tokens.attempts(), 2);

    // wss:// without a TLS configuration is a configuration error, at once.
    let err = Client::builder(format!("wss://localhost:{port}/"))
        .build()
        .unwrap_err();
    assert!(matches!(err, ClientError::Config(_)), "{err:?}");
}
