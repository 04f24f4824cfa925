//! Fan-out over real sockets with independent clients: exact delivery counts, the
//! publisher's own copy, per-publisher order, and isolation between rooms.

mod common;

use common::hub::{Client, serve, test_hub_builder};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_reaches_every_member_once_in_order() {
    let hub = test_hub_builder().build();
    let url = serve(&hub).await;
    let mut a = Client::connect(&url).await;
    let mut b = Client::connect(&url).await;
    let mut other_room = Client::connect(&url).await;
    a.join_ok("chat:one").await;
    b.join_ok("chat:one").await;
    other_room.join_ok("chat:two").await;
    // (Presence diffs, b's join, are skipped by `recv`: they come on the hub's tick.)

    const N: usize = 50;
    for i in 0..N {
        a.send(json!({"op": "publish", "room": "chat:one", "data": {"text": format!("m{i}")}}))
            .await;
    }
    for client in [&mut a, &mut b] {
        for i in 0..N {
            let m = client.recv().await;
            assert_eq!(m["op"], "message", "{m}");
            assert_eq!(m["room"], "chat:one");
            assert_eq!(m["from"], json!(a_user(&m)));
            assert_eq!(
                m["data"]["text"],
                format!("m{i}"),
                "order kept per publisher"
            );
        }
    }
    assert!(
        other_room
            .recv_nothing(std::time::Duration::from_millis(300))
            .await
            .is_none()
    );

    let reply = b.publish("chat:one", json!({"text": "from b"})).await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["data"]["delivered"], 2);
}

fn a_user(m: &serde_json::Value) -> String {
    m["from"].as_str().unwrap().to_owned()
}
