//! permessage-deflate (RFC 7692): extension negotiation, and stateless compression and
//! inflation of whole messages.
//!
//! Why stateless: a zlib compressor costs a few hundred KiB and an inflater a 32 KiB
//! window; kept per connection, that memory is held by every idle connection. So the
//! server always answers `server_no_context_takeover; client_no_context_takeover`, the
//! client always asks for `server_no_context_takeover`, and every message is compressed
//! and inflated on its own. The zlib states live in thread-locals (one compressor per
//! level and window, one inflater) and are reset between messages.

mod codec;
mod negotiate;

pub(crate) use codec::{InflateError, compress, inflate};
pub(crate) use negotiate::{CLIENT_OFFER, accept_client_response, negotiate_server};

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
