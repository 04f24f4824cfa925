//! permessage-deflate (RFC 7692): extension negotiation, and stateless compression and
//! inflation of whole messages.
//!
//! Why stateless: a zlib compressor costs a few hundred KiB and an inflater a 32 KiB
//! window; kept per connection, that memory is held by every idle connection. So the
//! server always answers `server_no_context_takeover; client_no_context_takeover`, the
//! client always asks for `server_no_context_takeover`, and every message is compressed
//! and inflated on its own. The zlib states live in thread-locals (one compressor per
//! level and window, one inflater) and are reset between messages.

use std::borrow::Cow;
use std::cell::RefCell;

use bytes::{Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// Extension token of permessage-deflate (RFC 7692 §7).
const EXTENSION_NAME: &str = "permessage-deflate";

/// The empty stored block a `Z_SYNC_FLUSH` ends with: the sender strips it from every
/// message and the receiver appends it again (RFC 7692 §7.2.1, §7.2.2).
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Largest LZ77 window (32 KiB), the default of both sides when not limited.
const MAX_WINDOW_BITS: u8 = 15;

/// Smallest window zlib compresses raw deflate with (it refuses 8 bits).
const MIN_ZLIB_WINDOW_BITS: u8 = 9;

/// Highest zlib compression level.
const MAX_LEVEL: u32 = 9;

/// Smallest output growth of [`inflate`]: the most it allocates past what the message
/// really inflates to, bounded by `max_size + 1` anyway.
const INFLATE_STEP: usize = 16 * 1024;

/// Free room the compressor gets before each call: zlib asks for more than 6 bytes when
/// flushing, or it may repeat the flush marker.
const COMPRESS_MIN_ROOM: usize = 64;

/// Capacity the per-thread compression scratch buffer keeps between messages, so one
/// huge message does not pin its compressed size in every worker thread.
const SCRATCH_KEEP: usize = 256 * 1024;

/// Largest payload of one stored (uncompressed) deflate block.
const STORED_BLOCK_MAX: usize = 65_535;

/// Negotiated permessage-deflate parameters of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server starts every message with an empty LZ77 window, so the client inflates
    /// each message on its own. Always `true` once negotiated: this crate's server always
    /// answers with it and its client refuses a response without it.
    pub server_no_context_takeover: bool,
    /// The client starts every message with an empty LZ77 window. This crate's server
    /// always asks for it; this crate's client compresses every message on its own
    /// anyway, whatever the server answered.
    pub client_no_context_takeover: bool,
    /// Largest window (in bits, 8..=15; 15 when not limited) the server compresses with.
    /// A server built by this crate only negotiates 9..=15.
    pub server_max_window_bits: u8,
    /// Largest window (in bits, 8..=15; 15 when not limited) the client compresses with.
    /// A server built by this crate never limits it (15); a server the client talks to
    /// may answer 8, see `DeflateParams::client_window_bits`.
    pub client_max_window_bits: u8,
}

impl DeflateParams {
    /// Window bits the server must compress with.
    pub(crate) fn server_window_bits(&self) -> u8 {
        zlib_window_bits(self.server_max_window_bits)
    }

    /// Window bits the client must compress with.
    pub(crate) fn client_window_bits(&self) -> u8 {
        zlib_window_bits(self.client_max_window_bits)
    }
}

/// The window zlib compresses with to honour a negotiated limit of `bits`.
///
/// zlib has no raw 8-bit compressor, but 9 bits is a safe stand-in for 8: zlib never
/// emits a distance above `window - 262` (its `MAX_DIST`), i.e. 250 for a 512-byte
/// window, which an inflater with a 256-byte window decodes.
fn zlib_window_bits(bits: u8) -> u8 {
    bits.clamp(MIN_ZLIB_WINDOW_BITS, MAX_WINDOW_BITS)
}

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

/// Per-thread zlib compressors, one per (level, window bits) in use, and the buffer they
/// compress into.
#[derive(Default)]
struct Compressors {
    /// Cached compressors, reset before each message. At most 10 levels x 7 windows.
    entries: Vec<CachedCompressor>,
    /// Output buffer reused across messages; the result is copied out at its exact size.
    scratch: Vec<u8>,
}

/// One cached compressor and the settings it was built with.
struct CachedCompressor {
    /// zlib level (0..=9).
    level: u32,
    /// Window bits (9..=15).
    window_bits: u8,
    /// Raw-deflate compressor.
    compress: Compress,
}

thread_local! {
    /// This thread's compressors (see [`compress`]).
    static COMPRESSORS: RefCell<Compressors> = RefCell::new(Compressors::default());
    /// This thread's inflater (see [`inflate`]); created on first use, 15-bit window.
    static DECOMPRESSOR: RefCell<Option<Decompress>> = const { RefCell::new(None) };
}

/// Compresses one whole message payload as a raw deflate stream with zlib `level` (0..=9,
/// higher is clamped) and a window of `window_bits` (clamped to 9..=15), flushed with
/// `Z_SYNC_FLUSH` and without the trailing `00 00 ff ff` (RFC 7692 §7.2.1). An empty
/// payload gives a valid compressed empty message (`[0x00]`).
///
/// Uses this thread's cached compressor for `(level, window_bits)`, reset first, so no
/// state carries from one message to the next (`*_no_context_takeover`).
pub(crate) fn compress(payload: &[u8], level: u32, window_bits: u8) -> Bytes {
    let level = level.min(MAX_LEVEL);
    let window_bits = zlib_window_bits(window_bits);
    let cached = COMPRESSORS
        .try_with(|cell| {
            cell.try_borrow_mut()
                .ok()
                .map(|mut c| c.compress(payload, level, window_bits))
        })
        .ok()
        .flatten();
    // Only reached while the thread-local is being torn down or (never in practice) is
    // already borrowed: a one-off compressor does the same job.
    cached.unwrap_or_else(|| Compressors::default().compress(payload, level, window_bits))
}

impl Compressors {
    /// Compresses `payload` with the cached compressor for `(level, window_bits)`,
    /// creating it on first use.
    fn compress(&mut self, payload: &[u8], level: u32, window_bits: u8) -> Bytes {
        let matches = |e: &CachedCompressor| e.level == level && e.window_bits == window_bits;
        if !self.entries.iter().any(matches) {
            self.entries.push(CachedCompressor {
                level,
                window_bits,
                compress: Compress::new_with_window_bits(
                    Compression::new(level),
                    false,
                    window_bits,
                ),
            });
        }
        let Self { entries, scratch } = self;
        let ok = entries
            .iter_mut()
            .find(|e| matches(e))
            .is_some_and(|entry| deflate_sync(&mut entry.compress, payload, scratch));
        let compressed = if ok {
            Bytes::copy_from_slice(scratch)
        } else {
            // zlib failing on a valid state does not happen; if it ever did, stored blocks
            // are still a correct compressed message.
            stored(payload)
        };
        scratch.clear();
        if scratch.capacity() > SCRATCH_KEEP {
            scratch.shrink_to(SCRATCH_KEEP);
        }
        compressed
    }
}

/// Compresses `payload` into `out` (cleared first) with a sync flush and strips the
/// trailing `00 00 ff ff`. Returns `false` if zlib failed, with `out` unusable.
fn deflate_sync(compress: &mut Compress, payload: &[u8], out: &mut Vec<u8>) -> bool {
    compress.reset();
    out.clear();
    // Most messages this crate carries (JSON) compress well; `Vec` growth covers the rest.
    out.reserve(payload.len() / 2 + COMPRESS_MIN_ROOM);
    let mut input = payload;
    loop {
        if out.capacity() - out.len() < COMPRESS_MIN_ROOM {
            out.reserve(out.len().max(4096));
        }
        let (in_before, out_before) = (compress.total_in(), out.len());
        if compress
            .compress_vec(input, out, FlushCompress::Sync)
            .is_err()
        {
            return false;
        }
        let Ok(consumed) = usize::try_from(compress.total_in() - in_before) else {
            return false;
        };
        let Some(rest) = input.get(consumed..) else {
            return false;
        };
        input = rest;
        // With all input consumed, a sync flush that leaves output room is complete.
        if input.is_empty() && out.len() < out.capacity() {
            break;
        }
        if consumed == 0 && out.len() == out_before {
            // No progress despite free room: zlib is stuck; never loop forever.
            return false;
        }
    }
    if !out.ends_with(&SYNC_TAIL) {
        return false;
    }
    out.truncate(out.len() - SYNC_TAIL.len());
    if out.is_empty() {
        // The flush always emits its block header first, so this cannot happen; but an
        // empty payload would make the receiver read the appended tail as a block header.
        out.push(0x00);
    }
    true
}

/// Encodes `payload` as stored (uncompressed) deflate blocks, in the same stripped
/// sync-flush form as [`compress`].
fn stored(payload: &[u8]) -> Bytes {
    let blocks = payload.len() / STORED_BLOCK_MAX + 1;
    let mut out = Vec::with_capacity(payload.len() + blocks * 5 + 1);
    for chunk in payload.chunks(STORED_BLOCK_MAX) {
        let len = u16::try_from(chunk.len()).unwrap_or(u16::MAX);
        // BFINAL = 0, BTYPE = 00 (stored), then padding to the byte boundary.
        out.push(0x00);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    // Header byte of the empty stored block whose LEN/NLEN are the stripped tail.
    out.push(0x00);
    Bytes::from(out)
}

/// Why a compressed message could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// The message inflates to more than the allowed size (close code 1009).
    TooLarge,
    /// The payload is not valid deflate data (close code 1007).
    Corrupt,
}

/// Inflates one whole message's compressed payload (all fragments concatenated, without
/// the `00 00 ff ff` tail, which this appends), with this thread's inflater reset first.
///
/// Output grows in bounded steps and inflation stops with [`InflateError::TooLarge`] the
/// moment it would pass `max_size`, so a decompression bomb never allocates more than
/// `max_size + 1` bytes. A stream ending in a final (BFINAL) block is accepted; whatever
/// follows that block is ignored. Invalid deflate data gives [`InflateError::Corrupt`].
pub(crate) fn inflate(payload: &[u8], max_size: usize) -> Result<BytesMut, InflateError> {
    let cached = DECOMPRESSOR
        .try_with(|cell| {
            cell.try_borrow_mut().ok().map(|mut slot| {
                let decompress = slot.get_or_insert_with(|| Decompress::new(false));
                inflate_with(decompress, payload, max_size)
            })
        })
        .ok()
        .flatten();
    // Only reached while the thread-local is being torn down or (never in practice) is
    // already borrowed: a one-off inflater does the same job.
    cached.unwrap_or_else(|| inflate_with(&mut Decompress::new(false), payload, max_size))
}

/// [`inflate`] with a given raw 15-bit inflater.
fn inflate_with(
    decompress: &mut Decompress,
    payload: &[u8],
    max_size: usize,
) -> Result<BytesMut, InflateError> {
    decompress.reset(false);
    // One byte past the limit is room enough to notice the message is too large.
    let limit = max_size.saturating_add(1);
    let mut out: Vec<u8> =
        Vec::with_capacity(payload.len().saturating_mul(4).max(INFLATE_STEP).min(limit));
    // The payload, then the tail the sender stripped: fed one after the other instead of
    // copying the payload to append 4 bytes.
    let mut input = payload;
    let mut tail_fed = false;
    loop {
        if input.is_empty() && !tail_fed {
            input = &SYNC_TAIL;
            tail_fed = true;
        }
        if out.len() == out.capacity() {
            // Geometric growth (amortised copies), capped at the limit. `out.len()` is at
            // most `max_size` here, so the target is always larger.
            let target = out
                .capacity()
                .saturating_mul(2)
                .max(out.len().saturating_add(INFLATE_STEP))
                .min(limit);
            out.reserve_exact(target.saturating_sub(out.len()));
        }
        let (in_before, out_before) = (decompress.total_in(), out.len());
        let status = decompress
            .decompress_vec(input, &mut out, FlushDecompress::Sync)
            .map_err(|_| InflateError::Corrupt)?;
        let consumed = usize::try_from(decompress.total_in() - in_before)
            .map_err(|_| InflateError::Corrupt)?;
        input = input.get(consumed..).ok_or(InflateError::Corrupt)?;
        if out.len() > max_size {
            return Err(InflateError::TooLarge);
        }
        let room = out.len() < out.capacity();
        match status {
            // A final block ended the stream (RFC 7692 §7.2.3.4 allows BFINAL).
            Status::StreamEnd => break,
            // Everything fed and the output not full: the inflater has nothing left.
            _ if input.is_empty() && tail_fed && room => break,
            // Input left, output room, yet no progress: never loop forever.
            _ if room && consumed == 0 && out.len() == out_before => {
                return Err(InflateError::Corrupt);
            }
            _ => {}
        }
    }
    if out.capacity() - out.len() > INFLATE_STEP {
        // Do not hand the connection up to twice the message size to hold while the
        // message is processed.
        out.shrink_to_fit();
    }
    // Vec -> Bytes -> BytesMut moves the allocation without copying.
    Ok(BytesMut::from(Bytes::from(out)))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

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

    /// Deterministic pseudo-random bytes (xorshift64), so tests need no RNG dependency.
    fn random_bytes(len: usize, mut seed: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed.to_le_bytes()[0]
            })
            .collect()
    }

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

    /// Compresses and inflates `data`, checking the result and the stripped tail.
    fn round_trip(data: &[u8], level: u32, bits: u8) -> Bytes {
        let compressed = compress(data, level, bits);
        assert!(!compressed.is_empty());
        assert!(!compressed.ends_with(&SYNC_TAIL));
        let inflated = inflate(&compressed, data.len()).unwrap();
        assert_eq!(&inflated[..], data, "level {level} bits {bits}");
        compressed
    }

    #[test]
    fn round_trips() {
        let random = random_bytes(64 * 1024, 0x9e37_79b9_7f4a_7c15);
        let repetitive: Vec<u8> = b"{\"room\":\"lobby\",\"user\":42,\"text\":\"hello\"}"
            .iter()
            .copied()
            .cycle()
            .take(1024 * 1024)
            .collect();
        for bits in [9, 15] {
            for level in [1, 9] {
                let empty = round_trip(b"", level, bits);
                assert!(empty.len() <= 2, "{empty:?}");
                round_trip(b"hello", level, bits);
                round_trip(&random, level, bits);
                let small = round_trip(&repetitive, level, bits);
                // zlib's level 1 with a 512-byte window only gets to ~15%.
                assert!(small.len() < repetitive.len() / 5, "{}", small.len());
            }
        }
        // Levels and windows outside the ranges are clamped, not a panic.
        round_trip(b"clamped clamped clamped", 42, 8);
        round_trip(b"clamped clamped clamped", 0, 200);
    }

    #[test]
    fn empty_message_encodings_inflate_to_empty() {
        assert_eq!(&compress(b"", 1, 15)[..], &[0x00]);
        for encoded in [&[0x00][..], &[0x02, 0x00][..]] {
            assert!(inflate(encoded, 0).unwrap().is_empty());
        }
    }

    #[test]
    fn window_bits_are_honoured() {
        // Data whose only repetitions are 300 bytes apart: a 9-bit compressor must not
        // reference them, so a 9-bit inflater decodes the output.
        let block = random_bytes(300, 7);
        let data: Vec<u8> = block.iter().copied().cycle().take(30_000).collect();
        let compressed = compress(&data, 9, 9);
        let mut framed = compressed.to_vec();
        framed.extend_from_slice(&SYNC_TAIL);
        let mut small = Decompress::new_with_window_bits(false, 9);
        let mut out = Vec::with_capacity(data.len() + 1);
        small
            .decompress_vec(&framed, &mut out, FlushDecompress::Sync)
            .unwrap();
        assert_eq!(out, data);
        // The 15-bit window finds those repetitions.
        assert!(compress(&data, 9, 15).len() < compressed.len() / 10);
    }

    #[test]
    fn compressors_do_not_carry_context_between_messages() {
        let data = b"the same message twice, the same message twice";
        let first = compress(data, 6, 15);
        let second = compress(data, 6, 15);
        assert_eq!(first, second);
        // Interleaved with other settings on the same thread.
        compress(b"other", 1, 10);
        assert_eq!(compress(data, 6, 15), first);
    }

    #[test]
    fn stored_fallback_inflates() {
        for len in [0, 1, 100, STORED_BLOCK_MAX, STORED_BLOCK_MAX + 1, 200_000] {
            let data = random_bytes(len, len as u64 + 1);
            let encoded = stored(&data);
            assert_eq!(&inflate(&encoded, len).unwrap()[..], &data[..], "{len}");
        }
    }

    #[test]
    fn max_size_is_exact() {
        let data = vec![b'a'; 100_000];
        let compressed = compress(&data, 1, 15);
        assert_eq!(inflate(&compressed, 100_000).unwrap().len(), 100_000);
        assert_eq!(inflate(&compressed, 99_999), Err(InflateError::TooLarge));
        assert_eq!(inflate(&compressed, 0), Err(InflateError::TooLarge));
        let out = inflate(&compress(b"", 1, 15), 0).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn decompression_bomb_stops_at_the_limit() {
        // 50 MiB of zeros: 50 independently compressed 1 MiB chunks, each ending on a
        // sync flush, concatenate into one valid raw deflate stream.
        let mut chunk = compress(&vec![0u8; 1024 * 1024], 9, 15).to_vec();
        chunk.extend_from_slice(&SYNC_TAIL);
        let mut bomb = chunk.repeat(50);
        bomb.truncate(bomb.len() - SYNC_TAIL.len());
        assert!(bomb.len() < 100 * 1024, "{}", bomb.len());
        assert_eq!(
            inflate(&bomb, 50 * 1024 * 1024).map(|b| b.len()),
            Ok(50 * 1024 * 1024)
        );

        let start = Instant::now();
        assert_eq!(inflate(&bomb, 1024 * 1024), Err(InflateError::TooLarge));
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn corrupt_input() {
        // BTYPE = 11 is reserved.
        assert_eq!(inflate(&[0x07], 1024), Err(InflateError::Corrupt));
        // Stored block whose NLEN is not the complement of LEN.
        assert_eq!(
            inflate(&[0x00, 0x05, 0x00, 0x00, 0x00], 1024),
            Err(InflateError::Corrupt)
        );
        // Fixed-Huffman block: a match at distance 1 before any output (too far back).
        assert_eq!(
            inflate(&[0x02, 0x02, 0x00], 1024),
            Err(InflateError::Corrupt)
        );
        assert_eq!(inflate(&random_bytes(4096, 3), usize::MAX).ok(), None);
        // The thread's inflater still works after errors.
        assert_eq!(&inflate(&compress(b"ok", 1, 15), 2).unwrap()[..], b"ok");
    }

    #[test]
    fn inflates_other_encoders_output() {
        let data: Vec<u8> = (0..200_000u32)
            .map(|i| (i % 251) as u8 ^ (i / 977) as u8)
            .collect();
        // A plain flate2 compressor with a 15-bit window, sync flush, tail stripped.
        let mut c = Compress::new(Compression::default(), false);
        let mut out = Vec::with_capacity(data.len() + 1024);
        c.compress_vec(&data, &mut out, FlushCompress::Sync)
            .unwrap();
        assert!(out.ends_with(&SYNC_TAIL));
        out.truncate(out.len() - 4);
        assert_eq!(&inflate(&out, data.len()).unwrap()[..], &data[..]);

        // Ended with a final block (BFINAL) instead of a sync flush.
        let mut c = Compress::new(Compression::best(), false);
        let mut out = Vec::with_capacity(data.len() + 1024);
        assert_eq!(
            c.compress_vec(&data, &mut out, FlushCompress::Finish)
                .unwrap(),
            Status::StreamEnd
        );
        assert_eq!(&inflate(&out, data.len()).unwrap()[..], &data[..]);

        // RFC 7692 §7.2.3.1 example: "Hello" compressed.
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(&inflate(&hello, 5).unwrap()[..], b"Hello");
        // RFC 7692 §7.2.3.4 example: "Hello" in a final block.
        let hello_final = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        assert_eq!(&inflate(&hello_final, 5).unwrap()[..], b"Hello");
    }
}
