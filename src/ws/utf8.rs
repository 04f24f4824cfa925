//! Incremental UTF-8 validation for text messages that arrive in pieces (fragments, or
//! one large frame read over several socket reads), failing on the first invalid byte
//! instead of after the whole message has been buffered.

/// Validates a byte stream piece by piece; holds at most the 3 bytes of one code point
/// that was cut between two pieces.
#[derive(Debug, Default, Clone)]
pub(crate) struct Utf8Validator {
    partial: [u8; 4],
    len: u8,
}

/// Length of the UTF-8 sequence that `lead` starts (only called on valid lead bytes).
fn seq_len(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

impl Utf8Validator {
    /// Feeds the next piece. `false` as soon as the input so far cannot be the prefix of
    /// valid UTF-8.
    pub(crate) fn feed(&mut self, mut data: &[u8]) -> bool {
        if self.len > 0 {
            let have = self.len as usize;
            let need = seq_len(self.partial[0]);
            let take = (need - have).min(data.len());
            self.partial[have..have + take].copy_from_slice(&data[..take]);
            self.len += take as u8;
            data = &data[take..];
            let cur = &self.partial[..self.len as usize];
            match std::str::from_utf8(cur) {
                Ok(_) => self.len = 0,
                // Still a valid but incomplete prefix: wait for more.
                Err(e) if e.error_len().is_none() => return true,
                Err(_) => return false,
            }
        }
        match std::str::from_utf8(data) {
            Ok(_) => true,
            Err(e) => match e.error_len() {
                Some(_) => false,
                None => {
                    // An incomplete code point at the end: keep it for the next piece.
                    let rest = &data[e.valid_up_to()..];
                    self.partial[..rest.len()].copy_from_slice(rest);
                    self.len = rest.len() as u8;
                    true
                }
            },
        }
    }

    /// Whether the input ended on a code point boundary (call at the end of a message).
    pub(crate) fn is_complete(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_split(bytes: &[u8]) -> bool {
        let whole = std::str::from_utf8(bytes).is_ok();
        for split in 0..=bytes.len() {
            for split2 in split..=bytes.len() {
                let mut v = Utf8Validator::default();
                let ok = v.feed(&bytes[..split])
                    && v.feed(&bytes[split..split2])
                    && v.feed(&bytes[split2..])
                    && v.is_complete();
                assert_eq!(ok, whole, "{bytes:x?} split at {split}/{split2}");
            }
        }
        whole
    }

    #[test]
    fn valid_text_in_any_split() {
        assert!(check_split("héllo wörld €𝄞 κόσμε".as_bytes()));
        assert!(check_split(b""));
    }

    #[test]
    fn invalid_text_in_any_split() {
        assert!(!check_split(
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"
        ));
        assert!(!check_split(b"abc\xff"));
        assert!(!check_split(b"\xf4\x90\x80\x80"));
        assert!(!check_split(b"\xe2\x82")); // truncated at the end
    }

    #[test]
    fn fails_fast_on_first_bad_byte() {
        let mut v = Utf8Validator::default();
        assert!(v.feed(b"ok "));
        // 0xC0 can never start a valid sequence: refused without waiting for more.
        assert!(!v.feed(b"\xc0"));
        let mut v = Utf8Validator::default();
        // A surrogate lead is refused as soon as its second byte is seen.
        assert!(!v.feed(b"\xed\xa0"));
    }
}
