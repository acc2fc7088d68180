//! Incremental UTF-8 validation for fragmented text messages.
//!
//! A text message may be split over many frames, and a frame boundary may
//! fall inside a multi-byte character. [`Utf8Validator`] validates each
//! fragment as it arrives (so a message fails on the fragment that holds the
//! bad sequence, not at its end) and carries at most three bytes of an
//! unfinished character over to the next fragment.

use std::fmt;

/// The payload of a text message is not valid UTF-8 (close code 1007).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utf8Error;

impl fmt::Display for Utf8Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid UTF-8 in text message")
    }
}

impl std::error::Error for Utf8Error {}

/// Validates a UTF-8 byte stream given in pieces.
///
/// ```
/// use silverback_proto::utf8::Utf8Validator;
/// let euro = "€".as_bytes(); // e2 82 ac
/// let mut v = Utf8Validator::new();
/// v.feed(&euro[..1]).unwrap();
/// v.feed(&euro[1..]).unwrap();
/// v.finish().unwrap();
///
/// // 0xe2 0x28 can never start a valid character: rejected at once.
/// let mut v = Utf8Validator::new();
/// assert!(v.feed(&[0xe2, 0x28]).is_err());
/// ```
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    pending: [u8; 4],
    pending_len: u8,
}

/// Width of the character whose first byte is `lead` (valid lead bytes only).
fn char_width(lead: u8) -> usize {
    match lead {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates the next piece. Fails as soon as the bytes seen so far can
    /// no longer be the beginning of valid UTF-8.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), Utf8Error> {
        if self.pending_len > 0 {
            let have = usize::from(self.pending_len);
            let width = char_width(self.pending[0]);
            let take = (width - have).min(data.len());
            self.pending[have..have + take].copy_from_slice(&data[..take]);
            let have = have + take;
            data = &data[take..];
            match std::str::from_utf8(&self.pending[..have]) {
                Ok(_) => self.pending_len = 0,
                Err(e) if e.error_len().is_none() => {
                    // Still a valid, unfinished prefix: wait for more.
                    self.pending_len = have as u8;
                    return Ok(());
                }
                Err(_) => return Err(Utf8Error),
            }
        }
        match simdutf8::compat::from_utf8(data) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                let rest = &data[e.valid_up_to()..];
                self.pending[..rest.len()].copy_from_slice(rest);
                self.pending_len = rest.len() as u8;
                Ok(())
            }
            Err(_) => Err(Utf8Error),
        }
    }

    /// Ends the message: fails if it stopped inside a character.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        let incomplete = self.pending_len > 0;
        self.pending_len = 0;
        if incomplete {
            Err(Utf8Error)
        } else {
            Ok(())
        }
    }

    /// Forgets any unfinished character, ready for a new message.
    pub fn reset(&mut self) {
        self.pending_len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate_split(data: &[u8], sizes: &[usize]) -> Result<(), Utf8Error> {
        let mut v = Utf8Validator::new();
        let mut rest = data;
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes[i % sizes.len()].min(rest.len());
            v.feed(&rest[..n])?;
            rest = &rest[n..];
            i += 1;
        }
        v.finish()
    }

    #[test]
    fn agrees_with_std_for_every_split() {
        let samples: Vec<Vec<u8>> = vec![
            "κόσμε".into(),
            "Hello-µ@ßöäüàá-UTF-8!!".into(),
            "𝄞 music € and ascii".into(),
            vec![
                0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80,
            ],
            vec![0xf4, 0x90, 0x80, 0x80],
            vec![0xf0, 0x9f, 0x98],
            vec![0xc0, 0xaf],
            vec![0xed, 0x9f, 0xbf],
            vec![0xef, 0xbf, 0xbf],
            vec![0x80],
        ];
        for s in &samples {
            let expected = std::str::from_utf8(s).is_ok();
            for chunk in 1..=5 {
                assert_eq!(
                    validate_split(s, &[chunk]).is_ok(),
                    expected,
                    "{s:x?} in chunks of {chunk}"
                );
            }
            assert_eq!(validate_split(s, &[1, 2, 3]).is_ok(), expected);
        }
    }

    #[test]
    fn fails_on_the_fragment_holding_the_bad_byte() {
        // "κόσμε" then a surrogate (ed a0 80) split across fragments: the
        // failure must come with the fragment that holds 0xa0.
        let mut v = Utf8Validator::new();
        v.feed("κόσμε".as_bytes()).unwrap();
        v.feed(&[0xed]).unwrap();
        assert!(v.feed(&[0xa0]).is_err());
    }

    #[test]
    fn truncated_message_fails_at_finish() {
        let mut v = Utf8Validator::new();
        v.feed(&[0xe2, 0x82]).unwrap();
        assert!(v.finish().is_err());
    }
}
