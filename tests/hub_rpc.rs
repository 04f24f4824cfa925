//! RPC over real sockets: a client `call`s methods registered with `HubBuilder::rpc`
//! and gets exactly one `reply`: typed data, or `not_found`, `invalid_data`, the
//! handler's own error, `timeout`, `too_large`, and `rate_limited` (too many calls in
//! flight, or over the message rate limit); slow calls do not block the connection.

mod common;

use std::time::Duration;

use common::hub::{Client, serve, test_hub_builder};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;
use wshub::{HubBuilder, RpcContext, RpcError};

#[derive(Deserialize)]
struct AddReq {
    a: i64,
    b: i64,
}

#[derive(Serialize)]
struct AddResp {
    sum: i64,
    caller: String,
    conn_id: String,
    has_peer: bool,
}

/// The test hub with a few methods; `gate` holds `wait` until it turns `true`.
fn hub_with_methods(gate: watch::Receiver<bool>) -> HubBuilder {
    test_hub_builder()
        .rpc("math.add", |ctx: RpcContext, req: AddReq| async move {
            let sum = req
                .a
                .checked_add(req.b)
                .ok_or_else(|| RpcError::invalid("the sum overflows"))?;
            Ok::<_, RpcError>(AddResp {
                sum,
                caller: ctx.identity().user_id.clone(),
                conn_id: ctx.conn_id().to_string(),
                has_peer: ctx.peer().is_some(),
            })
        })
        .rpc("admin.only", |_ctx: RpcContext, _: ()| async move {
            Err::<(), _>(RpcError::forbidden("admins only"))
        })
        .rpc("never", |_ctx: RpcContext, _: ()| async move {
            std::future::pending::<()>().await;
            Ok::<_, RpcError>(())
        })
        .rpc("panics", |_ctx: RpcContext, _: ()| async move {
            if true {
                panic!("a bug in a handler");
            }
            Ok::<_, RpcError>(())
        })
        .rpc("big", |_ctx: RpcContext, n: usize| async move {
            Ok::<_, RpcError>("x".repeat(n))
        })
        .rpc("wait", move |_ctx: RpcContext, _: ()| {
            let mut gate = gate.clone();
            async move {
                let _ = gate.wait_for(|open| *open).await;
                Ok::<_, RpcError>("done")
            }
        })
}

async fn call(c: &mut Client, method: &str, data: Value) -> Value {
    c.request(json!({"op": "call", "method": method, "data": data}))
        .await
        .0
}

fn assert_error(reply: &Value, code: &str) {
    assert_eq!(reply["ok"], false, "{reply}");
    assert_eq!(reply["error"]["code"], code, "{reply}");
}

#[tokio::test]
async fn typed_call_returns_data_and_errors_are_exact() {
    let (_open, gate) = watch::channel(false);
    let hub = hub_with_methods(gate)
        .configure(|c| {
            c.rpc_timeout = Duration::from_millis(200);
            c.max_rpc_response = 1000;
        })
        .build();
    let url = serve(&hub).await;
    let mut c = Client::connect(&url).await;

    let r = call(&mut c, "math.add", json!({"a": 2, "b": 40})).await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(
        r["data"],
        json!({"sum": 42, "caller": c.user, "conn_id": c.conn_id, "has_peer": true})
    );

    // Unknown method.
    let r = call(&mut c, "math.sub", json!({"a": 1, "b": 1})).await;
    assert_error(&r, "not_found");
    assert_eq!(r["error"]["message"], "no such method: \"math.sub\"");
    // Data that does not fit the request type (and absent data, which is null).
    let r = call(&mut c, "math.add", json!({"a": "two", "b": 1})).await;
    assert_error(&r, "invalid_data");
    let r = c
        .request(json!({"op": "call", "method": "math.add"}))
        .await
        .0;
    assert_error(&r, "invalid_data");
    // The handler's own errors.
    let r = call(&mut c, "math.add", json!({"a": i64::MAX, "b": 1})).await;
    assert_error(&r, "invalid_data");
    assert_eq!(r["error"]["message"], "the sum overflows");
    let r = call(&mut c, "admin.only", Value::Null).await;
    assert_error(&r, "forbidden");
    assert_eq!(r["error"]["message"], "admins only");
    // A handler that never answers is cut at the timeout.
    let r = call(&mut c, "never", Value::Null).await;
    assert_error(&r, "timeout");
    assert_eq!(
        r["error"]["message"],
        "\"never\" did not answer within 200 ms"
    );
    // Responses are bounded: 998 characters and two quotes fit in 1000 bytes.
    let r = call(&mut c, "big", json!(998)).await;
    assert_eq!(r["data"].as_str().map(str::len), Some(998), "{r}");
    let r = call(&mut c, "big", json!(999)).await;
    assert_error(&r, "too_large");
    // A handler that panics still answers, once, and the hub carries on.
    let r = call(&mut c, "panics", Value::Null).await;
    assert_error(&r, "internal");
    // A call without an id is a protocol error: it could never be answered.
    c.send(json!({"op": "call", "method": "math.add", "data": {"a": 1, "b": 2}}))
        .await;
    let e = c.recv().await;
    assert_eq!(
        e,
        json!({"op": "error", "error": {"code": "bad_request", "message": "missing field `id`"}})
    );
    // The connection is still fine.
    let r = call(&mut c, "math.add", json!({"a": 1, "b": 2})).await;
    assert_eq!(r["data"]["sum"], 3, "{r}");
}

#[tokio::test]
async fn calls_in_flight_are_bounded_and_do_not_block_the_connection() {
    let (open, gate) = watch::channel(false);
    let hub = hub_with_methods(gate)
        .configure(|c| c.max_rpc_in_flight = 2)
        .build();
    let url = serve(&hub).await;
    let mut c = Client::connect(&url).await;
    for id in [1, 2, 3] {
        c.send(json!({"op": "call", "method": "wait", "id": id}))
            .await;
    }
    // The third is refused at once while the first two wait.
    let r = c.recv().await;
    assert_eq!(r["id"], 3, "{r}");
    assert_error(&r, "rate_limited");
    // The connection keeps reading and answering meanwhile: other ops and other
    // methods (a call that is not waiting counts only while it runs).
    c.join_ok("chat:lobby").await;
    let r = c.publish("chat:lobby", json!({"text": "still here"})).await;
    assert_eq!(r["ok"], true, "{r}");
    // Released: both waiting calls answer, one reply each.
    open.send_replace(true);
    let mut ids = Vec::new();
    while ids.len() < 2 {
        let r = c.recv().await;
        assert_eq!(r["op"], "reply", "{r}");
        assert_eq!(r["data"], "done", "{r}");
        ids.push(r["id"].as_u64().unwrap());
    }
    ids.sort_unstable();
    assert_eq!(ids, [1, 2]);
    // Places are given back: a new call runs.
    let r = call(&mut c, "wait", Value::Null).await;
    assert_eq!(r["data"], "done", "{r}");
    assert_eq!(c.recv_nothing(Duration::from_millis(100)).await, None);
}

#[tokio::test]
async fn calls_count_against_the_rate_limit() {
    let (_open, gate) = watch::channel(false);
    let hub = hub_with_methods(gate)
        .configure(|c| {
            c.rate_per_second = 0.01;
            c.rate_burst = 3.0;
        })
        .build();
    let url = serve(&hub).await;
    let mut c = Client::connect(&url).await;
    for id in 1..=5u64 {
        c.send(json!({"op": "call", "method": "math.add", "data": {"a": 1, "b": id}, "id": id}))
            .await;
    }
    let mut replies = Vec::new();
    for _ in 0..5 {
        replies.push(c.recv().await);
    }
    replies.sort_by_key(|r| r["id"].as_u64());
    for r in &replies[..3] {
        assert_eq!(r["ok"], true, "{r}");
    }
    assert_eq!(replies[2]["data"]["sum"], 4);
    for r in &replies[3..] {
        assert_error(r, "rate_limited");
    }
}
