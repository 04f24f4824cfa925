//! Frame-level codec on tungstenite's [`FrameHeader`]: parse and validate a header
//! before its payload arrives, unmask in place, and encode frames as single `Bytes`.

use std::io::Cursor;

use bytes::{BufMut, Bytes, BytesMut};
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

use crate::error::ProtocolError;

/// A parsed frame header plus where its payload starts.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub(crate) header: FrameHeader,
    /// Payload length announced by the header.
    pub(crate) len: u64,
    /// Bytes the header itself takes.
    pub(crate) header_len: usize,
}

/// Parses a frame header at the start of `buf`; `Ok(None)` when more bytes are needed.
pub(crate) fn parse_head(buf: &[u8]) -> Result<Option<Head>, ProtocolError> {
    let mut cursor = Cursor::new(buf);
    match FrameHeader::parse(&mut cursor) {
        Ok(Some((header, len))) => Ok(Some(Head {
            header,
            len,
            header_len: cursor.position() as usize,
        })),
        Ok(None) => Ok(None),
        // The only error parsing from memory can raise is a reserved opcode.
        Err(_) => Err(ProtocolError::UnknownOpcode(buf[0] & 0x0F)),
    }
}

/// XORs `buf` with `mask`, where `buf` starts `offset` bytes into the masked payload.
///
/// Eight bytes at a time: the compiler vectorizes the loop, so unmasking costs far less
/// than the copy into the read buffer.
pub(crate) fn apply_mask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    let mut m = [0u8; 8];
    for (i, b) in m.iter_mut().enumerate() {
        *b = mask[(i + offset) & 3];
    }
    let m64 = u64::from_ne_bytes(m);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let w = u64::from_ne_bytes(chunk.try_into().expect("chunk of 8")) ^ m64;
        chunk.copy_from_slice(&w.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= m[i & 7];
    }
}

/// Whether `opcode` is a control opcode (close, ping, pong).
pub(crate) fn is_control(opcode: OpCode) -> bool {
    matches!(opcode, OpCode::Control(_))
}

/// Encodes one final frame. `mask` is `Some` in the client role (RFC 6455 §5.3).
pub(crate) fn encode(opcode: OpCode, rsv1: bool, payload: &[u8], mask: Option<[u8; 4]>) -> Bytes {
    let header = FrameHeader {
        is_final: true,
        rsv1,
        rsv2: false,
        rsv3: false,
        opcode,
        mask,
    };
    let len = payload.len() as u64;
    let mut out = BytesMut::with_capacity(header.len(len) + payload.len());
    let mut w = (&mut out).writer();
    header
        .format(len, &mut w)
        .expect("writing to memory cannot fail");
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(mask) = mask {
        apply_mask(&mut out[start..], mask, 0);
    }
    out.freeze()
}

/// Encodes a close frame with `code` and `reason` (cut to fit the 125-byte limit on a
/// character boundary).
pub(crate) fn encode_close(code: u16, reason: &str, mask: Option<[u8; 4]>) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    encode(OpCode::Control(Control::Close), false, &payload, mask)
}

/// Whether a close code may appear in a close frame (RFC 6455 §7.4 and the IANA
/// registry): 1000-1003, 1007-1014, 3000-4999. 1004-1006 and 1015 are reserved, and
/// 1016-2999 are reserved for future revisions of the protocol.
pub(crate) fn close_code_is_valid(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// The data opcodes, for matching.
pub(crate) const TEXT: OpCode = OpCode::Data(Data::Text);
pub(crate) const BINARY: OpCode = OpCode::Data(Data::Binary);
pub(crate) const CONTINUE: OpCode = OpCode::Data(Data::Continue);
pub(crate) const PING: OpCode = OpCode::Control(Control::Ping);
pub(crate) const PONG: OpCode = OpCode::Control(Control::Pong);
pub(crate) const CLOSE: OpCode = OpCode::Control(Control::Close);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_matches_bytewise_at_every_offset() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let data: Vec<u8> = (0..100u8).collect();
        for offset in 0..4 {
            for len in [0, 1, 7, 8, 9, 31, 100] {
                let mut fast = data[..len].to_vec();
                apply_mask(&mut fast, mask, offset);
                let slow: Vec<u8> = data[..len]
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ mask[(i + offset) & 3])
                    .collect();
                assert_eq!(fast, slow, "offset {offset} len {len}");
            }
        }
    }

    #[test]
    fn encode_then_parse() {
        for len in [0usize, 125, 126, 65535, 65536] {
            let payload = vec![7u8; len];
            let frame = encode(BINARY, true, &payload, Some([1, 2, 3, 4]));
            let head = parse_head(&frame).unwrap().unwrap();
            assert_eq!(head.len, len as u64);
            assert!(head.header.rsv1);
            assert_eq!(head.header.opcode, BINARY);
            let mut body = frame[head.header_len..].to_vec();
            apply_mask(&mut body, head.header.mask.unwrap(), 0);
            assert_eq!(body, payload);
        }
    }

    #[test]
    fn partial_header_needs_more() {
        let frame = encode(TEXT, false, &[0u8; 300], None);
        assert!(parse_head(&frame[..1]).unwrap().is_none());
        assert!(parse_head(&frame[..3]).unwrap().is_none());
        assert!(parse_head(&frame[..4]).unwrap().is_some());
    }

    #[test]
    fn reserved_opcode_is_an_error() {
        assert_eq!(
            parse_head(&[0x83, 0x00]).unwrap_err(),
            ProtocolError::UnknownOpcode(3)
        );
        assert_eq!(
            parse_head(&[0x8B, 0x00]).unwrap_err(),
            ProtocolError::UnknownOpcode(11)
        );
    }

    #[test]
    fn close_reason_is_cut_on_a_char_boundary() {
        let reason = "é".repeat(100);
        let frame = encode_close(1000, &reason, None);
        assert!(frame.len() <= 127);
        assert!(std::str::from_utf8(&frame[4..]).is_ok());
    }

    #[test]
    fn close_codes() {
        for ok in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999,
        ] {
            assert!(close_code_is_valid(ok), "{ok}");
        }
        for bad in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!close_code_is_valid(bad), "{bad}");
        }
    }
}
