//! Messages encoded once and sent by many connections.

use std::fmt;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tungstenite::protocol::frame::coding::OpCode;

use super::deflate;
use super::frame::{self, BINARY, TEXT};
use super::message::Message;

/// Window sizes permessage-deflate can negotiate for the server (9..=15 bits).
const WINDOWS: usize = 7;

/// A message framed once, whose bytes any number of connections send without copying.
///
/// Each variant is built the first time a connection needs it and then shared: the
/// uncompressed frame for connections without permessage-deflate, the compressed one
/// for those with it (per negotiated window). Compressing one broadcast costs the same
/// for 1 or 10,000 receivers, and a message only compressed receivers get is never
/// framed uncompressed.
/// Cloning is a reference-count increment.
///
/// ```
/// use wshub::ws::{Message, PreparedMessage};
/// let msg = PreparedMessage::new(Message::text("hello everyone"));
/// let copy = msg.clone(); // shares the same bytes
/// assert_eq!(copy.payload(), b"hello everyone");
/// ```
#[derive(Clone)]
pub struct PreparedMessage(Arc<Inner>);

struct Inner {
    opcode: OpCode,
    payload: Bytes,
    level: u32,
    /// Server-role frame, unmasked and uncompressed, built on first use.
    plain: OnceLock<Bytes>,
    /// Compressed server-role frame per window size (index = bits - 9); `None` inside
    /// when compression would not make the message smaller.
    deflated: [OnceLock<Option<Bytes>>; WINDOWS],
}

impl fmt::Debug for PreparedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedMessage")
            .field("opcode", &self.0.opcode)
            .field("len", &self.0.payload.len())
            .finish_non_exhaustive()
    }
}

impl PreparedMessage {
    /// Prepares `msg`, compressing (when needed) at zlib level 1.
    pub fn new(msg: Message) -> Self {
        Self::with_compression_level(msg, 1)
    }

    /// Prepares `msg`, compressing (when needed) at zlib `level` (0-9).
    pub fn with_compression_level(msg: Message, level: u32) -> Self {
        let (opcode, payload) = match msg {
            Message::Text(t) => (TEXT, Bytes::from(t)),
            Message::Binary(b) => (BINARY, b),
        };
        PreparedMessage(Arc::new(Inner {
            opcode,
            payload,
            level: level.min(9),
            plain: OnceLock::new(),
            deflated: Default::default(),
        }))
    }

    /// The message payload (uncompressed).
    pub fn payload(&self) -> &[u8] {
        &self.0.payload
    }

    /// Whether this is a text message.
    pub fn is_text(&self) -> bool {
        self.0.opcode == TEXT
    }

    /// The uncompressed, unmasked frame (what a server sends to a peer without
    /// compression).
    pub fn plain_frame(&self) -> &Bytes {
        self.0
            .plain
            .get_or_init(|| frame::encode(self.0.opcode, false, &self.0.payload, None))
    }

    /// The compressed server frame for a peer whose server window is `window_bits`,
    /// built on first use and shared afterwards; `None` when compression does not
    /// shrink the message.
    pub fn deflated_frame(&self, window_bits: u8) -> Option<&Bytes> {
        let bits = window_bits.clamp(9, 15);
        self.0.deflated[usize::from(bits - 9)]
            .get_or_init(|| {
                let compressed = deflate::compress(&self.0.payload, self.0.level, bits);
                (compressed.len() < self.0.payload.len())
                    .then(|| frame::encode(self.0.opcode, true, &compressed, None))
            })
            .as_ref()
    }

    /// The frame to send on one connection. `deflate_bits` is the server window when the
    /// connection negotiated permessage-deflate and this message is worth compressing;
    /// `mask` is set in the client role, where every frame needs its own mask (and so its
    /// own copy).
    pub(crate) fn frame_for(&self, deflate_bits: Option<u8>, mask: Option<[u8; 4]>) -> Bytes {
        let framed = deflate_bits.and_then(|bits| self.deflated_frame(bits));
        match (framed, mask) {
            (Some(f), None) => f.clone(),
            (None, None) => self.plain_frame().clone(),
            (Some(f), Some(mask)) => {
                let head = frame::parse_head(f)
                    .ok()
                    .flatten()
                    .expect("a frame we encoded parses");
                frame::encode(self.0.opcode, true, &f[head.header_len..], Some(mask))
            }
            (None, Some(mask)) => frame::encode(self.0.opcode, false, &self.0.payload, Some(mask)),
        }
    }
}

impl From<Message> for PreparedMessage {
    fn from(msg: Message) -> Self {
        PreparedMessage::new(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_once_and_shared() {
        let msg = PreparedMessage::new(Message::text("abc ".repeat(1000)));
        let a = msg.frame_for(Some(15), None);
        let b = msg.clone().frame_for(Some(15), None);
        // Same allocation: the second receiver did not compress again.
        assert_eq!(a.as_ptr(), b.as_ptr());
        assert!(a.len() < 200);
        assert_eq!(a[0], 0x80 | 0x40 | 0x1, "FIN + RSV1 + text");
        let plain = msg.frame_for(None, None);
        assert_eq!(plain.as_ptr(), msg.plain_frame().as_ptr());
        assert_eq!(plain[0], 0x81);
    }

    #[test]
    fn plain_frame_is_built_only_when_needed() {
        let msg = PreparedMessage::new(Message::text("abc ".repeat(1000)));
        msg.frame_for(Some(15), None);
        assert!(
            msg.0.plain.get().is_none(),
            "only compressed receivers so far"
        );
        assert_eq!(msg.frame_for(None, None)[0], 0x81);
        assert!(msg.0.plain.get().is_some());
    }

    #[test]
    fn incompressible_is_sent_plain() {
        let mut x: u32 = 0x9E37_79B9;
        let data: Vec<u8> = (0..256)
            .map(|_| {
                // xorshift: bytes with no redundancy for deflate to find
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            })
            .collect();
        let msg = PreparedMessage::new(Message::binary(data));
        assert_eq!(msg.frame_for(Some(15), None)[0], 0x82);
    }

    #[test]
    fn client_frames_are_masked() {
        let msg = PreparedMessage::new(Message::text("hello"));
        let f = msg.frame_for(None, Some([1, 2, 3, 4]));
        assert_eq!(f[1] & 0x80, 0x80);
        assert_eq!(f.len(), 2 + 4 + 5);
    }
}
