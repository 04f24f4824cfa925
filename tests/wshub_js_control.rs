//! `clients/wshub.js` (under Node, with `ws`) and the server-side controls: a room the
//! server joins the connection to appears in the client (`joined` event, presence kept),
//! a direct message arrives as a `direct` event, and a server-side removal (a ban)
//! arrives as a `left` event and drops the room from the client. The server join's
//! `joined` event carries the room's stream position.

mod common;

use std::time::Duration;

use common::hub::{serve, test_hub_builder};
use common::{node, peer_script, run_peer_async};
use serde_json::json;
use wshub::{Connection, RpcContext, RpcError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wshub_js_follows_server_joins_direct_sends_and_removals() {
    let hub = test_hub_builder()
        .on_connect(|conn: Connection| async move {
            conn.join("chat:srv").await.expect("server-side join");
            conn.send(&json!({"kind": "notice", "text": "welcome aboard"}))
                .expect("direct send");
        })
        .rpc("ban.me", |ctx: RpcContext, _: ()| async move {
            let user = ctx.identity().user_id.clone();
            let removed = ctx.hub().remove_user_from_rooms(&user, |_| true, "banned");
            Ok::<_, RpcError>(json!({ "removed": removed }))
        })
        .build();
    let url = serve(&hub).await;
    let outcome = run_peer_async(
        vec![node(), peer_script("wshub_js_control.js"), url],
        Duration::from_secs(20),
    )
    .await;
    let j = &outcome.json;
    assert_eq!(j["ok"], true, "{}", outcome.report());
    assert_eq!(
        j["roomsAfterJoin"],
        json!(["chat:srv"]),
        "{}",
        outcome.report()
    );
    assert_eq!(
        j["presence"].as_array().map(Vec::len),
        Some(1),
        "{}",
        outcome.report()
    );
    assert_eq!(
        j["serverJoinPosition"],
        json!({"seq": 0, "epoch": "string"}),
        "the `joined` event carries the empty room's position\n{}",
        outcome.report()
    );
    let events = j["events"].as_array().unwrap();
    assert!(
        events.contains(&json!(["joined", {"room": "chat:srv", "server": true}])),
        "{}",
        outcome.report()
    );
    assert!(
        events.contains(
            &json!(["direct", {"from": null, "data": {"kind": "notice", "text": "welcome aboard"}}])
        ),
        "{}",
        outcome.report()
    );
    assert!(
        events.contains(&json!(["left", {"room": "chat:srv", "reason": "banned"}])),
        "{}",
        outcome.report()
    );
    assert_eq!(j["banned"], json!({"removed": 1}), "{}", outcome.report());
    assert_eq!(j["roomsAfterBan"], json!([]), "{}", outcome.report());
}
