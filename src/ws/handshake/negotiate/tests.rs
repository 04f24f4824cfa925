use super::*;
use crate::ws::handshake::OriginPolicy;
use crate::ws::handshake::test_support::{ACCEPT, KEY, cfg};

fn request() -> Request<()> {
    Request::builder()
        .method(Method::GET)
        .uri("/chat")
        .version(Version::HTTP_11)
        .header("Host", "server.example.com")
        .header("Upgrade", "websocket")
        .header("Connection", "Upgrade")
        .header("Sec-WebSocket-Key", KEY)
        .header("Sec-WebSocket-Version", "13")
        .body(())
        .unwrap()
}

fn with(mut req: Request<()>, name: &'static str, value: &str) -> Request<()> {
    req.headers_mut()
        .insert(name, HeaderValue::from_str(value).unwrap());
    req
}

fn adding(mut req: Request<()>, name: &'static str, value: &str) -> Request<()> {
    req.headers_mut()
        .append(name, HeaderValue::from_str(value).unwrap());
    req
}

fn without(mut req: Request<()>, name: &'static str) -> Request<()> {
    req.headers_mut().remove(name);
    req
}

fn bad_request(req: &Request<()>, cfg: &HandshakeConfig) -> &'static str {
    match negotiate(req, cfg) {
        Err(HandshakeError::BadRequest(why)) => why,
        other => panic!("expected BadRequest, got {other:?}"),
    }
}

#[test]
fn accepts_the_rfc_example() {
    let n = negotiate(&request(), &cfg()).unwrap();
    assert_eq!(n.subprotocol(), None);
    assert!(n.deflate().is_none());
    let res = n.response();
    assert_eq!(res.status(), StatusCode::SWITCHING_PROTOCOLS);
    let h = res.headers();
    assert_eq!(h["sec-websocket-accept"], ACCEPT);
    assert_eq!(h["upgrade"], "websocket");
    assert_eq!(h["connection"], "Upgrade");
    assert!(!h.contains_key("sec-websocket-protocol"));
    assert!(!h.contains_key("sec-websocket-extensions"));
}

#[test]
fn method_must_be_get() {
    let mut req = request();
    *req.method_mut() = Method::POST;
    let err = negotiate(&req, &cfg()).unwrap_err();
    assert!(matches!(err, HandshakeError::MethodNotAllowed));
    assert_eq!(err.status(), Some(StatusCode::METHOD_NOT_ALLOWED));
}

#[test]
fn http_version_must_be_at_least_1_1() {
    let mut req = request();
    *req.version_mut() = Version::HTTP_10;
    bad_request(&req, &cfg());
}

#[test]
fn host_is_required() {
    bad_request(&without(request(), "host"), &cfg());
}

#[test]
fn upgrade_header_must_name_websocket() {
    let why = bad_request(&without(request(), "upgrade"), &cfg());
    assert_eq!(why, "missing or invalid Upgrade header");
    bad_request(&with(request(), "upgrade", "h2c"), &cfg());
    negotiate(&with(request(), "upgrade", "WebSocket"), &cfg()).unwrap();
    negotiate(&with(request(), "upgrade", "foo/2, websocket"), &cfg()).unwrap();
}

#[test]
fn connection_header_must_contain_upgrade() {
    bad_request(&without(request(), "connection"), &cfg());
    bad_request(&with(request(), "connection", "keep-alive"), &cfg());
    bad_request(&with(request(), "connection", "upgraded"), &cfg());
    negotiate(
        &with(request(), "connection", "keep-alive, Upgrade"),
        &cfg(),
    )
    .unwrap();
    let two = adding(
        with(request(), "connection", "keep-alive"),
        "connection",
        "upgrade",
    );
    negotiate(&two, &cfg()).unwrap();
}

#[test]
fn version_must_be_13() {
    for req in [
        with(request(), "sec-websocket-version", "8"),
        with(request(), "sec-websocket-version", "13, 8"),
        adding(request(), "sec-websocket-version", "13"),
        without(request(), "sec-websocket-version"),
    ] {
        let err = negotiate(&req, &cfg()).unwrap_err();
        assert!(matches!(err, HandshakeError::UnsupportedVersion), "{err:?}");
        assert_eq!(err.status(), Some(StatusCode::UPGRADE_REQUIRED));
    }
}

#[test]
fn key_must_be_base64_of_16_bytes() {
    for key in [
        "",
        "short",
        "dGhlIHNhbXBsZSBub25jZQ=",
        "dGhlIHNhbXBsZSBub25jZQ!=",
        "dGhlIHNhbXBsZSBub25jZQ=A",
        // 20 bytes
        "AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    ] {
        let why = bad_request(&with(request(), "sec-websocket-key", key), &cfg());
        assert_eq!(why, "missing or invalid Sec-WebSocket-Key header");
    }
    bad_request(&without(request(), "sec-websocket-key"), &cfg());
    bad_request(&adding(request(), "sec-websocket-key", KEY), &cfg());
    negotiate(
        &with(request(), "sec-websocket-key", "AAAAAAAAAAAAAAAAAAAAAA=="),
        &cfg(),
    )
    .unwrap();
}

#[test]
fn body_is_refused() {
    bad_request(&with(request(), "content-length", "5"), &cfg());
    bad_request(&with(request(), "transfer-encoding", "chunked"), &cfg());
    negotiate(&with(request(), "content-length", "0"), &cfg()).unwrap();
}

#[test]
fn origin_allow_list() {
    let cfg = cfg().with_origin(OriginPolicy::allow_list(["https://app.example.com"]));
    negotiate(&with(request(), "origin", "https://app.example.com"), &cfg).unwrap();
    negotiate(&with(request(), "origin", "HTTPS://App.Example.com"), &cfg).unwrap();
    // No Origin: not a browser.
    negotiate(&request(), &cfg).unwrap();
    for origin in [
        "https://evil.example",
        "https://app.example.com.evil.example",
        "null",
    ] {
        let err = negotiate(&with(request(), "origin", origin), &cfg).unwrap_err();
        assert!(matches!(err, HandshakeError::OriginNotAllowed), "{origin}");
        assert_eq!(err.status(), Some(StatusCode::FORBIDDEN));
    }
    let two = adding(
        with(request(), "origin", "https://app.example.com"),
        "origin",
        "https://evil.example",
    );
    bad_request(&two, &cfg);
}

#[test]
fn origin_custom_policy() {
    let cfg = cfg().with_origin(OriginPolicy::custom(|o| o == Some("https://ok.example")));
    negotiate(&with(request(), "origin", "https://ok.example"), &cfg).unwrap();
    assert!(matches!(
        negotiate(&request(), &cfg),
        Err(HandshakeError::OriginNotAllowed)
    ));
    assert_eq!(format!("{:?}", cfg.origin), "Custom(..)");
}

#[test]
fn subprotocol_follows_server_preference() {
    let cfg = cfg().with_subprotocols(["v3.chat", "v2.chat", "v1.chat"]);
    let req = adding(
        with(request(), "sec-websocket-protocol", "v1.chat, other"),
        "sec-websocket-protocol",
        "v2.chat",
    );
    let n = negotiate(&req, &cfg).unwrap();
    assert_eq!(n.subprotocol(), Some("v2.chat"));
    assert_eq!(n.response().headers()["sec-websocket-protocol"], "v2.chat");

    // Nothing in common: no subprotocol, no header.
    let req = with(request(), "sec-websocket-protocol", "mqtt, V2.CHAT");
    let n = negotiate(&req, &cfg).unwrap();
    assert_eq!(n.subprotocol(), None);
    assert!(
        !n.response()
            .headers()
            .contains_key("sec-websocket-protocol")
    );

    // The server speaks none.
    let req = with(request(), "sec-websocket-protocol", "v1.chat");
    assert_eq!(
        negotiate(&req, &HandshakeConfig::default())
            .unwrap()
            .subprotocol(),
        None
    );
}

#[test]
fn deflate_offer_gets_an_extensions_header() {
    let req = with(
        request(),
        "sec-websocket-extensions",
        "permessage-deflate; client_max_window_bits",
    );
    let n = negotiate(&req, &cfg()).unwrap();
    assert!(n.deflate().is_some());
    let res = n.response();
    let ext = res.headers()["sec-websocket-extensions"].to_str().unwrap();
    assert!(ext.starts_with("permessage-deflate"), "{ext}");

    let off = negotiate(&req, &cfg().with_deflate(false)).unwrap();
    assert!(off.deflate().is_none());
    assert!(
        !off.response()
            .headers()
            .contains_key("sec-websocket-extensions")
    );

    let none = negotiate(&request(), &cfg()).unwrap();
    assert!(none.deflate().is_none());
    let other = negotiate(
        &with(request(), "sec-websocket-extensions", "x-foo"),
        &cfg(),
    )
    .unwrap();
    assert!(other.deflate().is_none());
}
