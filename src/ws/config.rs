//! Per-connection limits and knobs of the engine.

use std::time::Duration;

/// Limits and tuning of one WebSocket connection.
///
/// Every limit has a default; none is unbounded. Build one with
/// `WsConfig::default()` and the `with_*` methods.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WsConfig {
    /// Largest payload of one frame the peer may send. A frame announcing more is
    /// refused with close code 1009 as soon as its header arrives, before any of its
    /// payload is buffered. Default: 16 MiB.
    pub max_frame_size: usize,
    /// Largest message (after reassembling fragments and inflating) the peer may send.
    /// Over it: close 1009. Inflation stops at this size, so a decompression bomb
    /// never allocates its inflated size. Default: 16 MiB.
    pub max_message_size: usize,
    /// Bytes of encoded frames that may wait in the outbound queue. A
    /// [`try_send`](crate::ws::Outbound::try_send) that would go over it fails with
    /// [`SendError::Full`](crate::ws::SendError::Full) instead of growing the queue; the
    /// caller decides (the hub closes such a slow consumer with 1013). Control frames
    /// (pong, ping, close) are never refused. Default: 1 MiB.
    pub max_queued_bytes: usize,
    /// How long closing may take, from the moment a close is queued until the TCP
    /// connection is dropped: writing what was queued ahead of the close, the close
    /// frame, and waiting for the peer's close frame (or EOF). A peer that reads nothing
    /// cannot keep a closing connection (and its queue) longer than this. Default: 5 s,
    /// ample for a live peer to read a full outbound queue (`max_queued_bytes`) and
    /// answer, short enough that closed connections do not pile up.
    pub close_timeout: Duration,
    /// zlib level (0-9) used to compress outgoing messages when permessage-deflate was
    /// negotiated. Level 1 costs a fraction of level 6 and, for the JSON this crate
    /// carries, compresses nearly as well. Default: 1.
    pub compression_level: u32,
    /// Messages shorter than this are sent uncompressed even when permessage-deflate is
    /// on: deflate cannot shrink them and costs time. Default: 64 bytes.
    pub compression_threshold: usize,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            max_frame_size: 16 << 20,
            max_message_size: 16 << 20,
            max_queued_bytes: 1 << 20,
            close_timeout: Duration::from_secs(5),
            compression_level: 1,
            compression_threshold: 64,
        }
    }
}

impl WsConfig {
    /// Sets [`max_frame_size`](Self::max_frame_size).
    pub fn with_max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = bytes;
        self
    }
    /// Sets [`max_message_size`](Self::max_message_size).
    pub fn with_max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }
    /// Sets [`max_queued_bytes`](Self::max_queued_bytes).
    pub fn with_max_queued_bytes(mut self, bytes: usize) -> Self {
        self.max_queued_bytes = bytes;
        self
    }
    /// Sets [`close_timeout`](Self::close_timeout).
    pub fn with_close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }
    /// Sets [`compression_level`](Self::compression_level) (clamped to 0-9).
    pub fn with_compression_level(mut self, level: u32) -> Self {
        self.compression_level = level.min(9);
        self
    }
    /// Sets [`compression_threshold`](Self::compression_threshold).
    pub fn with_compression_threshold(mut self, bytes: usize) -> Self {
        self.compression_threshold = bytes;
        self
    }
}
