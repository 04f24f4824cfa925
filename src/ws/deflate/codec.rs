//! Compressing and inflating whole messages with per-thread zlib states.

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::*;

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
