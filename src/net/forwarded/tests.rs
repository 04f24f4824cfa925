use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn node(s: &str, port: Option<u16>) -> Node {
    Node::Ip { ip: ip(s), port }
}

#[test]
fn rfc_7239_examples() {
    // §4 and §7.
    assert_eq!(
        parse_forwarded_element(r#"for="_gazonk""#),
        Ok(Node::Hidden)
    );
    assert_eq!(
        parse_forwarded_element(r#"For="[2001:db8:cafe::17]:4711""#),
        Ok(node("2001:db8:cafe::17", Some(4711)))
    );
    assert_eq!(
        parse_forwarded_element("for=192.0.2.60;proto=http;by=203.0.113.43"),
        Ok(node("192.0.2.60", None))
    );
    assert_eq!(
        parse_forwarded_element("for=192.0.2.43"),
        Ok(node("192.0.2.43", None))
    );
    assert_eq!(
        parse_forwarded_element(r#"for="192.0.2.43:47011""#),
        Ok(node("192.0.2.43", Some(47011)))
    );
    assert_eq!(parse_forwarded_element("for=unknown"), Ok(Node::Hidden));
    assert_eq!(
        parse_forwarded_element(r#"for="[2001:db8::1]:_abc""#),
        Ok(node("2001:db8::1", None))
    );
    assert_eq!(parse_forwarded_element("proto=https"), Ok(Node::Hidden));
    assert_eq!(
        parse_forwarded_element(r#"by="a;b,c" ; for = 192.0.2.1"#),
        Err(Malformed("a parameter name that is not a token"))
    );
    assert_eq!(
        parse_forwarded_element(r#"by="a;b,c\"";for=192.0.2.1"#),
        Ok(node("192.0.2.1", None))
    );
}

#[test]
fn malformed_forwarded_elements() {
    for bad in [
        "for",
        "for=",
        "=1.2.3.4",
        "for=[2001:db8::1]:80:90",
        "for=2001:db8::1",
        r#"for="[2001:db8::1""#,
        r#"for="[192.0.2.1]""#,
        r#"for="192.0.2.1:99999""#,
        r#"for="192.0.2.1:""#,
        "for=_",
        "for=_a/b",
        "for=1.2.3.4;for=5.6.7.8",
        r#"for="1.2.3.4"x"#,
        "for=1.2.3.4.5",
        "for=01.2.3.4",
        "for=a\"b",
    ] {
        assert!(parse_forwarded_element(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn x_forwarded_for_elements() {
    let p = parse_x_forwarded_for_element;
    assert_eq!(p(" 203.0.113.7 "), Ok(node("203.0.113.7", None)));
    assert_eq!(p("2001:db8::7"), Ok(node("2001:db8::7", None)));
    assert_eq!(
        p("::ffff:203.0.113.5"),
        Ok(node("::ffff:203.0.113.5", None))
    );
    assert_eq!(p("[2001:db8::7]:443"), Ok(node("2001:db8::7", Some(443))));
    assert_eq!(p("203.0.113.7:8080"), Ok(node("203.0.113.7", Some(8080))));
    assert_eq!(p("unknown"), Ok(Node::Hidden));
    for bad in [
        "",
        "example.com",
        "1.2.3.4:",
        "1.2.3.4:x",
        "1.2.3.4:_o",
        "[::1",
        "1.2.3",
    ] {
        assert!(p(bad).is_err(), "{bad:?}");
    }
}

fn headers(lines: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in lines {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn rightmost_untrusted_wins() {
    let trusted: TrustedProxies = "10.0.0.0/8".parse().unwrap();
    let peer = sa("10.0.0.1:5000");
    let client = |lines: &[(&str, &str)]| client_addr(peer, &headers(lines), &trusted);
    // Spoofed entries at the left are skipped over.
    assert_eq!(
        client(&[("x-forwarded-for", "1.1.1.1, 203.0.113.9, 10.0.0.5")]),
        Ok(sa("203.0.113.9:0"))
    );
    // Several lines are one list.
    assert_eq!(
        client(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "203.0.113.9,10.0.0.5")
        ]),
        Ok(sa("203.0.113.9:0"))
    );
    // All trusted: the leftmost.
    assert_eq!(
        client(&[("x-forwarded-for", "10.0.0.9, 10.0.0.5")]),
        Ok(sa("10.0.0.9:0"))
    );
    // Forwarded is preferred over X-Forwarded-For.
    assert_eq!(
        client(&[
            ("x-forwarded-for", "198.51.100.1"),
            (
                "forwarded",
                r#"for="[2001:db8::5]:4711";proto=https, for=10.0.0.2"#
            )
        ]),
        Ok(sa("[2001:db8::5]:4711"))
    );
    // Hidden at the client's place: the proxy that reported it.
    assert_eq!(
        client(&[("forwarded", "for=unknown, for=10.0.0.2")]),
        Ok(sa("10.0.0.2:0"))
    );
    assert_eq!(client(&[("forwarded", "for=_hidden")]), Ok(peer));
    // No header, or an empty one: the peer.
    assert_eq!(client(&[]), Ok(peer));
    assert_eq!(client(&[("x-forwarded-for", " , ")]), Ok(peer));
    // Garbage left of the client is never parsed.
    assert_eq!(
        client(&[("x-forwarded-for", "not an ip!!, 203.0.113.9")]),
        Ok(sa("203.0.113.9:0"))
    );
    assert_eq!(
        client(&[
            ("forwarded", r#"for="unterminated"#),
            ("forwarded", "for=203.0.113.9")
        ]),
        Err(Malformed("an unterminated quoted string"))
    );
    // Garbage the walk reaches is an error (the caller uses the peer).
    assert_eq!(
        client(&[("x-forwarded-for", "203.0.113.9, garbage, 10.0.0.3")]),
        Err(Malformed("not an IP address"))
    );
}

#[test]
fn headers_from_untrusted_peers_are_ignored() {
    let trusted: TrustedProxies = "10.0.0.0/8".parse().unwrap();
    let peer = sa("192.0.2.1:5000");
    let h = headers(&[
        ("x-forwarded-for", "203.0.113.9"),
        ("forwarded", "for=1.2.3.4"),
    ]);
    assert_eq!(client_addr(peer, &h, &trusted), Ok(peer));
    assert_eq!(client_addr(peer, &h, &TrustedProxies::none()), Ok(peer));
}

#[test]
fn only_the_last_max_hops_are_read() {
    let trusted: TrustedProxies = "10.0.0.0/8".parse().unwrap();
    let peer = sa("10.0.0.1:5000");
    // 40 trusted hops after a spoofed client: the walk stops at MAX_HOPS and takes
    // the leftmost hop it read, never the spoofed one.
    let mut list = vec!["6.6.6.6".to_owned()];
    list.extend((0..40).map(|i| format!("10.0.1.{i}")));
    let h = headers(&[("x-forwarded-for", &list.join(","))]);
    assert_eq!(
        client_addr(peer, &h, &trusted),
        Ok(SocketAddr::new(ip(&format!("10.0.1.{}", 40 - MAX_HOPS)), 0))
    );
}
