//! Negotiating permessage-deflate from `Sec-WebSocket-Extensions` headers (RFC 7692 §7).

use std::borrow::Cow;

use super::{DeflateParams, EXTENSION_NAME, MAX_WINDOW_BITS, MIN_ZLIB_WINDOW_BITS};

/// Server side: picks the first acceptable permessage-deflate offer among all
/// `Sec-WebSocket-Extensions` header values (each a comma-separated list of
/// `name; param; param=value` extensions, values possibly quoted strings; RFC 6455 §9.1,
/// RFC 7692 §7). Offers for other extensions are ignored; an offer with an unknown or
/// repeated parameter or a bad value is declined and the next one is tried.
///
/// Returns the parameters and the exact response header value:
/// `permessage-deflate; server_no_context_takeover; client_no_context_takeover`, plus
/// `; server_max_window_bits=N` when the offer limited the server window to N. Returns
/// `None` when no offer is acceptable.
pub(crate) fn negotiate_server<'a>(
    offers: impl IntoIterator<Item = &'a str>,
) -> Option<(DeflateParams, String)> {
    offers
        .into_iter()
        .flat_map(|value| split_unquoted(value, b','))
        .find_map(accept_offer)
}

/// Accepts one extension of an offer when it is an acceptable permessage-deflate offer.
fn accept_offer(extension: &str) -> Option<(DeflateParams, String)> {
    let mut parts = split_unquoted(extension, b';');
    let name = trim_ows(parts.next()?);
    if !name.eq_ignore_ascii_case(EXTENSION_NAME) {
        return None;
    }
    let offer = parse_params(parts).ok()?;
    let mut response =
        String::from("permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    let server_max_window_bits = match offer.server_max_window_bits {
        None => MAX_WINDOW_BITS,
        // The answer may not exceed the offer, and zlib has no raw 8-bit mode: decline
        // rather than answer 9 (RFC 7692 §7.1.2.1). A 9-bit zlib stream would in fact
        // decode with 8 bits (see `zlib_window_bits`), but the server stays conservative.
        Some(bits) if bits < MIN_ZLIB_WINDOW_BITS => return None,
        Some(bits) => {
            response.push_str("; server_max_window_bits=");
            response.push_str(&bits.to_string());
            bits
        }
    };
    // client_max_window_bits (with or without a value) only allows us to limit the
    // client's window. We inflate with a 15-bit window, which decodes any window size, so
    // the response leaves it out and the client keeps the default of 15.
    Some((
        DeflateParams {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits,
            client_max_window_bits: MAX_WINDOW_BITS,
        },
        response,
    ))
}

/// Client side: the offer the crate's client sends.
///
/// It asks for `server_no_context_takeover` because the client inflates every message on
/// its own (see the module docs); a server that cannot honour it must decline the offer
/// (RFC 7692 §7.1.1.1) and the connection then runs uncompressed.
pub(crate) const CLIENT_OFFER: &str =
    "permessage-deflate; server_no_context_takeover; client_max_window_bits";

/// Client side: validates the server's `Sec-WebSocket-Extensions` response value against
/// [`CLIENT_OFFER`] (RFC 7692 §7.1) and returns the negotiated parameters.
///
/// Fails (the client must then fail the connection) on anything but exactly one
/// permessage-deflate extension, on unknown or repeated parameters, on bad values (window
/// bits outside 8..=15, a value on a `*_no_context_takeover`, `client_max_window_bits`
/// without a value), and when `server_no_context_takeover` is missing.
pub(crate) fn accept_client_response(value: &str) -> Result<DeflateParams, &'static str> {
    // Empty list elements are allowed by the `#rule` of RFC 7230 §7.
    let mut extensions = split_unquoted(value, b',').filter(|e| !trim_ows(e).is_empty());
    let extension = extensions
        .next()
        .ok_or("empty Sec-WebSocket-Extensions response")?;
    if extensions.next().is_some() {
        return Err("server accepted an extension that was not offered");
    }
    let mut parts = split_unquoted(extension, b';');
    let name = parts.next().map(trim_ows).unwrap_or_default();
    if !name.eq_ignore_ascii_case(EXTENSION_NAME) {
        return Err("server accepted an extension that was not offered");
    }
    let response = parse_params(parts)?;
    if !response.server_no_context_takeover {
        // We offered it; a server that accepts the offer must include it (RFC 7692
        // §7.1.1.1), and without it our stateless inflater could not follow the stream.
        return Err("server_no_context_takeover missing from the response");
    }
    let client_max_window_bits = match response.client_max_window_bits {
        None => MAX_WINDOW_BITS,
        Some(Some(bits)) => bits,
        Some(None) => return Err("client_max_window_bits without a value in the response"),
    };
    Ok(DeflateParams {
        server_no_context_takeover: true,
        client_no_context_takeover: response.client_no_context_takeover,
        server_max_window_bits: response.server_max_window_bits.unwrap_or(MAX_WINDOW_BITS),
        client_max_window_bits,
    })
}

/// The permessage-deflate parameters of one offer or response, checked for syntax,
/// repetitions and value ranges.
#[derive(Debug, Default)]
struct Params {
    /// `server_no_context_takeover` was present.
    server_no_context_takeover: bool,
    /// `client_no_context_takeover` was present.
    client_no_context_takeover: bool,
    /// Value of `server_max_window_bits` (always 8..=15; the parameter needs a value).
    server_max_window_bits: Option<u8>,
    /// `client_max_window_bits`: absent, present without a value, or with one (8..=15).
    client_max_window_bits: Option<Option<u8>>,
}

/// Parses the `param[=value]` parts that follow the extension name.
fn parse_params<'a>(parts: impl Iterator<Item = &'a str>) -> Result<Params, &'static str> {
    let mut params = Params::default();
    for part in parts {
        let (name, value) = parse_param(part).ok_or("malformed extension parameter")?;
        if name.eq_ignore_ascii_case("server_no_context_takeover") {
            if params.server_no_context_takeover {
                return Err("duplicate server_no_context_takeover");
            }
            if value.is_some() {
                return Err("server_no_context_takeover takes no value");
            }
            params.server_no_context_takeover = true;
        } else if name.eq_ignore_ascii_case("client_no_context_takeover") {
            if params.client_no_context_takeover {
                return Err("duplicate client_no_context_takeover");
            }
            if value.is_some() {
                return Err("client_no_context_takeover takes no value");
            }
            params.client_no_context_takeover = true;
        } else if name.eq_ignore_ascii_case("server_max_window_bits") {
            if params.server_max_window_bits.is_some() {
                return Err("duplicate server_max_window_bits");
            }
            let bits = value
                .as_deref()
                .and_then(parse_window_bits)
                .ok_or("server_max_window_bits needs a value in 8..=15")?;
            params.server_max_window_bits = Some(bits);
        } else if name.eq_ignore_ascii_case("client_max_window_bits") {
            if params.client_max_window_bits.is_some() {
                return Err("duplicate client_max_window_bits");
            }
            let bits = match value.as_deref() {
                None => None,
                Some(v) => {
                    Some(parse_window_bits(v).ok_or("client_max_window_bits value not in 8..=15")?)
                }
            };
            params.client_max_window_bits = Some(bits);
        } else {
            return Err("unknown permessage-deflate parameter");
        }
    }
    Ok(params)
}

/// Parses a window-bits value: a decimal integer in 8..=15 without leading zeroes
/// (RFC 7692 §7.1.2.1).
fn parse_window_bits(value: &str) -> Option<u8> {
    match value {
        "8" => Some(8),
        "9" => Some(9),
        "10" => Some(10),
        "11" => Some(11),
        "12" => Some(12),
        "13" => Some(13),
        "14" => Some(14),
        "15" => Some(15),
        _ => None,
    }
}

/// Parses one `name [ "=" ( token | quoted-string ) ]` parameter (RFC 6455 §9.1), with
/// optional whitespace around it and around `=`. Returns the name and the unquoted value.
fn parse_param(part: &str) -> Option<(&str, Option<Cow<'_, str>>)> {
    let part = trim_ows(part);
    let (name, value) = match part.split_once('=') {
        None => (part, None),
        Some((name, value)) => (trim_ows(name), Some(trim_ows(value))),
    };
    if !is_token(name) {
        return None;
    }
    let value = match value {
        None => None,
        Some(v) if v.starts_with('"') => {
            // RFC 7692 §7: a quoted value must still be a token once unquoted.
            let unquoted = unquote(v)?;
            if !is_token(&unquoted) {
                return None;
            }
            Some(unquoted)
        }
        Some(v) if is_token(v) => Some(Cow::Borrowed(v)),
        Some(_) => return None,
    };
    Some((name, value))
}

/// Unquotes an RFC 7230 §3.2.6 quoted-string that must make up all of `s`.
fn unquote(s: &str) -> Option<Cow<'_, str>> {
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return (!inner.contains('"')).then_some(Cow::Borrowed(inner));
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            // An unescaped quote would have ended the string early.
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(Cow::Owned(out))
}

/// Whether `s` is a non-empty RFC 7230 `token`.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Trims optional whitespace (spaces and tabs, RFC 7230 `OWS`).
fn trim_ows(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

/// Splits `s` on the ASCII byte `sep` wherever it is not inside a quoted string.
fn split_unquoted(s: &str, sep: u8) -> SplitUnquoted<'_> {
    SplitUnquoted { rest: Some(s), sep }
}

/// Iterator of [`split_unquoted`]. Quoted strings may hold `,` and `;` (RFC 6455 §9.1), so
/// a plain `split` would cut them; an unterminated quote runs to the end of the input,
/// where the parameter parser rejects it.
struct SplitUnquoted<'a> {
    /// What is left to split; `None` once the last piece was returned.
    rest: Option<&'a str>,
    /// The separator (`,` between extensions, `;` between parameters).
    sep: u8,
}

impl<'a> Iterator for SplitUnquoted<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let s = self.rest?;
        let mut in_quotes = false;
        let mut escaped = false;
        for (i, b) in s.bytes().enumerate() {
            if escaped {
                escaped = false;
            } else if in_quotes && b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_quotes = !in_quotes;
            } else if b == self.sep && !in_quotes {
                // `sep` is ASCII, so both slices start and end on char boundaries.
                self.rest = s.get(i + 1..);
                return s.get(..i);
            }
        }
        self.rest = None;
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain answer to an offer that does not limit the server window.
    const PLAIN_RESPONSE: &str =
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    /// Parameters the server negotiates for an offer with no window limit.
    const PLAIN_PARAMS: DeflateParams = DeflateParams {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    };

    /// Negotiates a single header value.
    fn negotiate(value: &str) -> Option<(DeflateParams, String)> {
        negotiate_server([value])
    }

    #[test]
    fn plain_offer() {
        let (params, response) = negotiate("permessage-deflate").unwrap();
        assert_eq!(params, PLAIN_PARAMS);
        assert_eq!(response, PLAIN_RESPONSE);
        assert_eq!(params.server_window_bits(), 15);
        assert_eq!(params.client_window_bits(), 15);
    }

    #[test]
    fn client_max_window_bits_with_and_without_value() {
        for offer in [
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; client_max_window_bits=10",
            "permessage-deflate; client_max_window_bits=8",
            "permessage-deflate;client_max_window_bits = 15",
        ] {
            let (params, response) = negotiate(offer).unwrap();
            assert_eq!(params, PLAIN_PARAMS, "{offer}");
            // We inflate with 15 bits, so we never limit the client.
            assert_eq!(response, PLAIN_RESPONSE, "{offer}");
        }
        for bad in [
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=",
            "permessage-deflate; client_max_window_bits=abc",
        ] {
            assert_eq!(negotiate(bad), None, "{bad}");
        }
    }

    #[test]
    fn server_max_window_bits_is_answered_and_used() {
        let (params, response) =
            negotiate("permessage-deflate; server_max_window_bits=10; client_max_window_bits")
                .unwrap();
        assert_eq!(
            response,
            format!("{PLAIN_RESPONSE}; server_max_window_bits=10")
        );
        assert_eq!(params.server_max_window_bits, 10);
        assert_eq!(params.server_window_bits(), 10);
        assert_eq!(params.client_window_bits(), 15);
        // Without a value or out of range: declined.
        assert_eq!(
            negotiate("permessage-deflate; server_max_window_bits"),
            None
        );
        assert_eq!(
            negotiate("permessage-deflate; server_max_window_bits=16"),
            None
        );
    }

    #[test]
    fn server_window_8_is_declined_for_the_next_offer() {
        let offers = "permessage-deflate; server_max_window_bits=8, \
                      permessage-deflate; server_max_window_bits=9";
        let (params, response) = negotiate(offers).unwrap();
        assert_eq!(params.server_max_window_bits, 9);
        assert_eq!(
            response,
            format!("{PLAIN_RESPONSE}; server_max_window_bits=9")
        );
        assert_eq!(
            negotiate("permessage-deflate; server_max_window_bits=8"),
            None
        );
    }

    #[test]
    fn unknown_and_duplicate_params_are_declined() {
        assert_eq!(negotiate("permessage-deflate; foo"), None);
        assert_eq!(negotiate("permessage-deflate; foo=1"), None);
        assert_eq!(
            negotiate("permessage-deflate; client_max_window_bits; client_max_window_bits"),
            None
        );
        assert_eq!(
            negotiate("permessage-deflate; server_no_context_takeover; server_no_context_takeover"),
            None
        );
        assert_eq!(
            negotiate("permessage-deflate; server_max_window_bits=10; server_max_window_bits=11"),
            None
        );
        assert_eq!(
            negotiate("permessage-deflate; server_no_context_takeover=1"),
            None
        );
        assert_eq!(
            negotiate("permessage-deflate; client_no_context_takeover=\"x\""),
            None
        );
        // The unknown one is declined, the plain fallback accepted.
        let (params, _) = negotiate("permessage-deflate; foo, permessage-deflate").unwrap();
        assert_eq!(params, PLAIN_PARAMS);
    }

    #[test]
    fn context_takeover_params_are_accepted() {
        let (params, response) =
            negotiate("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
                .unwrap();
        assert_eq!(params, PLAIN_PARAMS);
        assert_eq!(response, PLAIN_RESPONSE);
    }

    #[test]
    fn several_header_values_and_other_extensions() {
        let headers = [
            "x-webkit-deflate-frame",
            "foo; bar=\"a,b;c\", permessage-deflate; bogus",
            "PerMessage-Deflate ; Server_Max_Window_Bits = 12",
            "permessage-deflate",
        ];
        let (params, response) = negotiate_server(headers).unwrap();
        assert_eq!(params.server_max_window_bits, 12);
        assert_eq!(
            response,
            format!("{PLAIN_RESPONSE}; server_max_window_bits=12")
        );

        assert_eq!(negotiate_server(["x-foo", "bar; baz=1"]), None);
        assert_eq!(negotiate_server(Vec::<&str>::new()), None);
        assert_eq!(negotiate(""), None);
        assert_eq!(negotiate(" , ,"), None);
        // Another extension's name that merely starts like ours.
        assert_eq!(negotiate("permessage-deflate-x"), None);
        // Empty list elements are skipped.
        assert_eq!(negotiate(", permessage-deflate ,").unwrap().0, PLAIN_PARAMS);
    }

    #[test]
    fn quoted_values() {
        let (params, _) = negotiate(
            "permessage-deflate; server_max_window_bits=\"11\"; client_max_window_bits=\"9\"",
        )
        .unwrap();
        assert_eq!(params.server_max_window_bits, 11);
        let (params, _) = negotiate("permessage-deflate; server_max_window_bits=\"1\\3\"").unwrap();
        assert_eq!(params.server_max_window_bits, 13);
        for bad in [
            "permessage-deflate; server_max_window_bits=\"11",
            "permessage-deflate; server_max_window_bits=\"1\"1\"",
            "permessage-deflate; server_max_window_bits=\" 11\"",
            "permessage-deflate; server_max_window_bits=\"\"",
            "permessage-deflate; server_max_window_bits=1\"1\"",
            "permessage-deflate; \"server_max_window_bits\"=11",
        ] {
            assert_eq!(negotiate(bad), None, "{bad}");
        }
        // A quoted comma does not split the list: this is a single (declined) offer.
        assert_eq!(
            negotiate("permessage-deflate; x=\"a, permessage-deflate\""),
            None
        );
    }

    #[test]
    fn client_accepts_valid_responses() {
        let p = accept_client_response(PLAIN_RESPONSE).unwrap();
        assert_eq!(p, PLAIN_PARAMS);
        let p = accept_client_response("permessage-deflate; server_no_context_takeover").unwrap();
        assert!(!p.client_no_context_takeover);
        assert_eq!(
            (p.server_max_window_bits, p.client_max_window_bits),
            (15, 15)
        );
        let p = accept_client_response(
            "Permessage-Deflate;server_no_context_takeover; client_max_window_bits=\"10\" ; \
             server_max_window_bits=12",
        )
        .unwrap();
        assert_eq!(p.client_max_window_bits, 10);
        assert_eq!(p.client_window_bits(), 10);
        assert_eq!(p.server_max_window_bits, 12);
        let p = accept_client_response(
            "permessage-deflate; server_no_context_takeover; client_max_window_bits=8",
        )
        .unwrap();
        assert_eq!(p.client_max_window_bits, 8);
        assert_eq!(p.client_window_bits(), 9);
        // Our own server's answers are accepted by our own client.
        for offer in [CLIENT_OFFER, "permessage-deflate; server_max_window_bits=9"] {
            let (server, response) = negotiate(offer).unwrap();
            assert_eq!(accept_client_response(&response), Ok(server));
        }
    }

    #[test]
    fn client_rejects_invalid_responses() {
        for bad in [
            "",
            "permessage-deflate",
            "permessage-deflate; client_no_context_takeover",
            "x-foo; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover, x-foo",
            "permessage-deflate; server_no_context_takeover, permessage-deflate; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover; foo",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; client_max_window_bits",
            "permessage-deflate; server_no_context_takeover; client_max_window_bits=7",
            "permessage-deflate; server_no_context_takeover; client_max_window_bits=16",
            "permessage-deflate; server_no_context_takeover; server_max_window_bits",
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=20",
            "permessage-deflate; server_no_context_takeover; client_max_window_bits=9; \
             client_max_window_bits=9",
            "permessage-deflate; server_no_context_takeover; client_max_window_bits=\"9",
        ] {
            assert!(accept_client_response(bad).is_err(), "{bad}");
        }
    }
}
