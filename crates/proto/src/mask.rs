//! Payload masking (RFC 6455 §5.3).
//!
//! Masking XORs every payload byte with one byte of a 4-byte key, cycling
//! through the key. It runs over every byte a server receives, so it has a
//! fast path that works a machine word at a time. [`apply_mask_scalar`] is
//! the byte-at-a-time reference; tests check the two agree for every length
//! and alignment, and `benches/proto.rs` measures both.
//!
//! This module is the only place in silverback where `unsafe` is allowed.
#![allow(unsafe_code)]

/// XORs `buf` with `key`, byte by byte: the reference implementation.
///
/// `buf[i] ^= key[i % 4]`.
///
/// ```
/// use silverback_proto::mask::apply_mask_scalar;
/// let mut data = *b"Hello";
/// apply_mask_scalar(&mut data, [0x37, 0xfa, 0x21, 0x3d]);
/// assert_eq!(data, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
/// ```
pub fn apply_mask_scalar(buf: &mut [u8], key: [u8; 4]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// XORs `buf` with `key` (masking and unmasking are the same operation),
/// a machine word at a time.
///
/// Gives exactly the result of [`apply_mask_scalar`].
///
/// ```
/// use silverback_proto::mask::apply_mask;
/// let key = [0x37, 0xfa, 0x21, 0x3d];
/// let mut data = *b"Hello";
/// apply_mask(&mut data, key);
/// assert_eq!(data, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
/// apply_mask(&mut data, key);
/// assert_eq!(&data, b"Hello");
/// ```
pub fn apply_mask(buf: &mut [u8], key: [u8; 4]) {
    if buf.len() < ALIGNED_THRESHOLD {
        apply_mask_unaligned(buf, key);
        return;
    }
    // SAFETY: `u64` is plain old data: every bit pattern is a valid `u64`,
    // and `align_to_mut` only hands out a middle slice whose start is
    // correctly aligned for `u64` and whose length fits inside `buf`; the
    // prefix and suffix cover the rest of `buf` exactly, so every byte is
    // visited once through exactly one of the three slices.
    let (prefix, words, suffix) = unsafe { buf.align_to_mut::<u64>() };
    apply_mask_scalar(prefix, key);
    // The words start `prefix.len()` bytes into the payload: rotate the key
    // so that the first byte of the first word is masked with
    // `key[prefix.len() % 4]`.
    let k64 = key_word(rotate_key(key, prefix.len()));
    // A plain loop over aligned words: the compiler vectorizes it.
    for w in words.iter_mut() {
        *w ^= k64;
    }
    let offset = prefix.len() + words.len() * 8;
    apply_mask_scalar(suffix, rotate_key(key, offset));
}

/// Below this length, unaligned 8-byte loads beat aligning first.
const ALIGNED_THRESHOLD: usize = 256;

/// Two copies of the key in memory order, read as one native word.
#[inline]
fn key_word(key: [u8; 4]) -> u64 {
    let [a, b, c, d] = key;
    u64::from_ne_bytes([a, b, c, d, a, b, c, d])
}

/// Word at a time with unaligned loads (safe code): for short payloads.
#[inline]
fn apply_mask_unaligned(buf: &mut [u8], key: [u8; 4]) {
    let k64 = key_word(key);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ k64).to_ne_bytes());
    }
    // The remainder starts at a multiple of 8, so the key is not rotated.
    apply_mask_scalar(chunks.into_remainder(), key);
}

/// The key to use for a slice that starts `offset` bytes into a payload.
#[inline]
fn rotate_key(key: [u8; 4], offset: usize) -> [u8; 4] {
    let mut k = key;
    k.rotate_left(offset & 3);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// Differential test: the fast path equals the scalar reference for
    /// every length 0..=64 (and some larger ones) at every alignment offset.
    #[test]
    fn fast_path_matches_scalar_for_all_lengths_and_offsets() {
        let keys = [
            [0x37, 0xfa, 0x21, 0x3d],
            [0, 0, 0, 0],
            [0xff, 0xff, 0xff, 0xff],
            [1, 2, 3, 4],
        ];
        let lengths = (0..=64usize).chain([65, 127, 128, 129, 255, 256, 257, 300, 1000, 4099]);
        for len in lengths {
            for offset in 0..16 {
                for key in keys {
                    let mut storage = pattern(len + 16, len as u8);
                    let original = storage.clone();
                    let mut expected = storage.clone();
                    apply_mask_scalar(&mut expected[offset..offset + len], key);
                    apply_mask(&mut storage[offset..offset + len], key);
                    assert_eq!(storage, expected, "len {len} offset {offset} key {key:?}");
                    // Bytes outside the slice are untouched.
                    assert_eq!(storage[..offset], original[..offset]);
                    assert_eq!(storage[offset + len..], original[offset + len..]);
                }
            }
        }
    }

    #[test]
    fn masking_twice_is_identity() {
        let mut data = pattern(1000, 7);
        let orig = data.clone();
        apply_mask(&mut data, [9, 8, 7, 6]);
        assert_ne!(data, orig);
        apply_mask(&mut data, [9, 8, 7, 6]);
        assert_eq!(data, orig);
    }
}
