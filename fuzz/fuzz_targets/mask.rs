//! `apply_mask` (word at a time, aligned or not) against the scalar
//! reference on arbitrary data, key and starting offset: always equal, and
//! bytes around the slice untouched.
#![no_main]

use libfuzzer_sys::fuzz_target;
use silverback_proto::mask::{apply_mask, apply_mask_scalar};

fuzz_target!(|data: &[u8]| {
    let [k0, k1, k2, k3, offset, rest @ ..] = data else {
        return;
    };
    let key = [*k0, *k1, *k2, *k3];
    // The offset moves the slice's start against the allocation's
    // alignment (and so which bytes the fast path handles word-wise).
    let offset = usize::from(*offset % 16);
    let mut storage = vec![0xa5u8; offset + rest.len() + 16];
    storage[offset..offset + rest.len()].copy_from_slice(rest);
    let original = storage.clone();
    let mut expected = rest.to_vec();
    apply_mask_scalar(&mut expected, key);
    apply_mask(&mut storage[offset..offset + rest.len()], key);
    assert_eq!(&storage[offset..offset + rest.len()], &expected[..]);
    assert_eq!(storage[..offset], original[..offset]);
    assert_eq!(
        storage[offset + rest.len()..],
        original[offset + rest.len()..]
    );
    // Masking is an involution.
    apply_mask(&mut storage[offset..offset + rest.len()], key);
    assert_eq!(storage, original);
});
