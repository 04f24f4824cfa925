use super::*;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn v2(cmd: u8, fam: u8, block: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(0x20 | cmd);
    out.push(fam);
    out.extend_from_slice(&(block.len() as u16).to_be_bytes());
    out.extend_from_slice(block);
    out
}

fn v2_tcp4() -> Vec<u8> {
    // 192.0.2.1:56324 -> 198.51.100.1:443, then a NOOP TLV.
    let mut block = vec![192, 0, 2, 1, 198, 51, 100, 1];
    block.extend_from_slice(&56324u16.to_be_bytes());
    block.extend_from_slice(&443u16.to_be_bytes());
    block.extend_from_slice(&[0x04, 0, 2, 0, 0]);
    v2(1, 0x11, &block)
}

/// Every strict prefix of a complete header is `Incomplete`, and bytes after it
/// are left alone.
fn assert_header(header: &[u8], source: Option<SocketAddr>) {
    let expected = Parsed::Complete {
        len: header.len(),
        source,
    };
    assert_eq!(parse(header), expected);
    for k in 0..header.len() {
        assert_eq!(parse(&header[..k]), Parsed::Incomplete, "prefix {k}");
    }
    let mut more = header.to_vec();
    more.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n\x16\x03\x01");
    assert_eq!(parse(&more), expected);
}

#[test]
fn v1_examples_from_the_specification() {
    assert_header(
        b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
        Some(sa("255.255.255.255:65535")),
    );
    assert_header(b"PROXY UNKNOWN\r\n", None);
    // The specification's worst case: exactly 107 bytes.
    let worst = format!(
        "PROXY UNKNOWN {a} {a} 65535 65535\r\n",
        a = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    );
    assert_eq!(worst.len(), V1_MAX_LEN);
    assert_header(worst.as_bytes(), None);
}

#[test]
fn v1_headers() {
    assert_header(
        b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n",
        Some(sa("192.0.2.1:56324")),
    );
    assert_header(
        b"PROXY TCP6 2001:db8::1 2001:db8::2 4711 443\r\n",
        Some(sa("[2001:db8::1]:4711")),
    );
    assert_header(b"PROXY UNKNOWN\r\n", None);
    assert_header(b"PROXY UNKNOWN 1.2.3.4 whatever\r\n", None);
    // The longest possible TCP6 line is exactly 104 bytes + CRLF.
    let longest = format!(
        "PROXY TCP6 {a} {a} 65535 65535\r\n",
        a = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    );
    assert!(longest.len() <= V1_MAX_LEN);
    assert_header(
        longest.as_bytes(),
        Some(sa("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")),
    );
}

#[test]
fn v1_malformed() {
    for bad in [
        &b"PROXY TCP4 192.0.2.1 198.51.100.1 56324\r\n"[..],
        b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443 7\r\n",
        b"PROXY TCP4 192.0.2.1  198.51.100.1 56324 443\r\n",
        b"PROXY TCP4 2001:db8::1 198.51.100.1 56324 443\r\n",
        b"PROXY TCP6 192.0.2.1 198.51.100.1 56324 443\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.1 65536 443\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.1 +5 443\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.1 -1 443\r\n",
        b"PROXY UDP4 192.0.2.1 198.51.100.1 1 2\r\n",
        b"PROXY tcp4 192.0.2.1 198.51.100.1 1 2\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.1 1 2\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.1 1 2\rX",
        b"PROXY TCP4 192.0.2.1\t198.51.100.1 1 2\r\n",
        b"PROXY \xff\r\n",
        b"PROXY\r\n",
        b"PROXY \r\n",
        b"PROXZ",
        b"GET / HTTP/1.1\r\n",
        b"\x16\x03\x01\x02\x00",
    ] {
        assert!(
            matches!(parse(bad), Parsed::Invalid(_)),
            "{:?}: {:?}",
            String::from_utf8_lossy(bad),
            parse(bad)
        );
    }
}

#[test]
fn v1_is_bounded_at_107_bytes() {
    let mut long = b"PROXY UNKNOWN ".to_vec();
    long.resize(V1_MAX_LEN - 1, b'x');
    assert_eq!(parse(&long), Parsed::Incomplete);
    let mut exact = long.clone();
    exact.pop();
    exact.extend_from_slice(b"\r\n");
    assert_eq!(
        parse(&exact),
        Parsed::Complete {
            len: V1_MAX_LEN,
            source: None
        }
    );
    long.push(b'x');
    assert!(matches!(parse(&long), Parsed::Invalid(_)));
    long.extend_from_slice(b"\r\n");
    assert!(matches!(parse(&long), Parsed::Invalid(_)));
    // CR as the 107th byte: its LF would be the 108th.
    let mut cr_last = long[..V1_MAX_LEN - 1].to_vec();
    cr_last.extend_from_slice(b"\r\n");
    assert!(matches!(parse(&cr_last), Parsed::Invalid(_)));
}

#[test]
fn v2_headers() {
    assert_header(&v2_tcp4(), Some(sa("192.0.2.1:56324")));
    let mut block = Vec::new();
    block.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
    block.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
    block.extend_from_slice(&4711u16.to_be_bytes());
    block.extend_from_slice(&443u16.to_be_bytes());
    assert_header(&v2(1, 0x21, &block), Some(sa("[2001:db8::1]:4711")));
    // LOCAL ignores whatever address block it has.
    assert_header(&v2(0, 0x00, &[]), None);
    assert_header(&v2(0, 0x11, &[1, 2, 3]), None);
    // AF_UNSPEC and AF_UNIX under PROXY: use the connection's address.
    assert_header(&v2(1, 0x00, &[]), None);
    assert_header(&v2(1, 0x31, &[0; 216]), None);
    // The cap itself is allowed.
    assert_header(&v2(1, 0x00, &[0; V2_MAX_ADDR_LEN]), None);
}

#[test]
fn v2_malformed() {
    let mut bad_version = v2_tcp4();
    bad_version[12] = 0x11;
    let mut bad_command = v2_tcp4();
    bad_command[12] = 0x22;
    for (bad, why) in [
        (bad_version, "version"),
        (bad_command, "command"),
        (v2(1, 0x11, &[0; 11]), "short IPv4 block"),
        (v2(1, 0x21, &[0; 35]), "short IPv6 block"),
        (v2(1, 0x12, &[0; 12]), "UDP"),
        (v2(1, 0x41, &[0; 12]), "family 4"),
        (v2(1, 0x13, &[0; 12]), "transport 3"),
        (v2(1, 0x10, &[0; 12]), "INET with UNSPEC transport"),
        (v2(1, 0x00, &[0; V2_MAX_ADDR_LEN + 1]), "over the cap"),
    ] {
        assert!(matches!(parse(&bad), Parsed::Invalid(_)), "{why}");
    }
    // Refused as soon as the length is known, not after buffering it.
    let mut huge = V2_SIGNATURE.to_vec();
    huge.extend_from_slice(&[0x21, 0x11, 0xFF, 0xFF]);
    assert!(matches!(parse(&huge), Parsed::Invalid(_)));
    // A bad version is refused before the length arrives.
    let mut early = V2_SIGNATURE.to_vec();
    early.push(0x31);
    assert!(matches!(parse(&early), Parsed::Invalid(_)));
    assert!(matches!(parse(b"\r\n\r\n\0\r\nQUIX"), Parsed::Invalid(_)));
}

#[tokio::test]
async fn read_header_leaves_what_follows() {
    // One write holding a header and the start of the next protocol.
    let mut input = b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n".to_vec();
    input.extend_from_slice(b"GET / HTTP/1.1\r\n");
    let mut r = input.as_slice();
    let (source, rest) = read_header(&mut r).await.unwrap();
    assert_eq!(source, Some(sa("192.0.2.1:56324")));
    let mut all = rest.to_vec();
    all.extend_from_slice(r);
    assert_eq!(all, b"GET / HTTP/1.1\r\n");

    // v2: never reads past the header.
    let mut input = v2_tcp4();
    input.extend_from_slice(b"\x16\x03\x01");
    let mut r = input.as_slice();
    let (source, rest) = read_header(&mut r).await.unwrap();
    assert_eq!(source, Some(sa("192.0.2.1:56324")));
    assert!(rest.is_empty());
    assert_eq!(r, b"\x16\x03\x01");

    // Byte by byte.
    let (mut client, mut server) = tokio::io::duplex(1);
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        client.write_all(b"PROXY UNKNOWN\r\nGET").await.unwrap();
        client
    });
    let (source, rest) = read_header(&mut server).await.unwrap();
    assert_eq!(source, None);
    let mut next = [0u8; 3];
    let got = rest.len();
    next[..got].copy_from_slice(&rest);
    server.read_exact(&mut next[got..]).await.unwrap();
    assert_eq!(&next, b"GET");
    let _client = writer.await.unwrap();

    let mut bad = b"GET / HTTP/1.1\r\n".as_slice();
    let e = read_header(&mut bad).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    let mut short = b"PROXY TCP4".as_slice();
    let e = read_header(&mut short).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
}
