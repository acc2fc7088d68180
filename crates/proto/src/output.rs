//! The output queue of a [`Connection`](crate::Connection).
//!
//! Small frames are encoded into one contiguous buffer, so that many
//! replies leave in one write. A large unmasked payload that is already
//! held in a [`Bytes`] (a server echoing or forwarding a message) is queued
//! by reference behind its frame header instead of being copied: the
//! transport writes the pieces with one vectored write.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

/// Largest frame header: 2 + 8 bytes of length + 4 of masking key.
const MAX_HEAD: usize = 14;

/// A frame header followed by a payload held by reference (or, when the
/// header is empty, bytes moved out of the contiguous buffer).
struct Segment {
    head: [u8; MAX_HEAD],
    head_start: u8,
    head_end: u8,
    body: Bytes,
}

impl Segment {
    fn head(&self) -> &[u8] {
        &self.head[self.head_start as usize..self.head_end as usize]
    }

    fn len(&self) -> usize {
        self.head().len() + self.body.len()
    }
}

/// Queued output: `segments` first, then `tail`.
#[derive(Default)]
pub(crate) struct Output {
    segments: VecDeque<Segment>,
    /// Bytes queued in `segments`.
    segments_len: usize,
    tail: BytesMut,
}

impl Output {
    /// Nothing is queued (not even an end marker).
    pub(crate) fn is_empty(&self) -> bool {
        self.segments.is_empty() && self.tail.is_empty()
    }

    /// The contiguous buffer new frames are encoded into.
    pub(crate) fn tail_mut(&mut self) -> &mut BytesMut {
        &mut self.tail
    }

    /// Queues `head` (at most 14 bytes) followed by `body`, without
    /// copying `body`.
    pub(crate) fn push_shared(&mut self, head: &[u8], body: Bytes) {
        debug_assert!(head.len() <= MAX_HEAD);
        if !self.tail.is_empty() {
            // What was queued before keeps its place in front.
            let earlier = self.tail.split().freeze();
            self.push_segment(&[], earlier);
        }
        self.push_segment(head, body);
    }

    fn push_segment(&mut self, head: &[u8], body: Bytes) {
        if head.is_empty() && body.is_empty() {
            // An empty piece would make `chunk` empty with bytes left.
            return;
        }
        let mut seg = Segment {
            head: [0; MAX_HEAD],
            head_start: 0,
            head_end: head.len() as u8,
            body,
        };
        seg.head[..head.len()].copy_from_slice(head);
        self.segments_len += seg.len();
        self.segments.push_back(seg);
    }

    /// All queued output in one buffer (copies when payloads were queued
    /// by reference).
    pub(crate) fn take_all(&mut self) -> BytesMut {
        if self.segments.is_empty() {
            return self.tail.split();
        }
        let mut all = BytesMut::with_capacity(self.remaining());
        for seg in self.segments.drain(..) {
            all.extend_from_slice(seg.head());
            all.extend_from_slice(&seg.body);
        }
        self.segments_len = 0;
        all.extend_from_slice(&self.tail);
        self.tail.clear();
        all
    }

    /// Frees the contiguous buffer's memory if it is empty.
    pub(crate) fn shrink(&mut self) {
        if self.tail.is_empty() {
            self.tail = BytesMut::new();
        }
        if self.segments.is_empty() {
            self.segments = VecDeque::new();
        }
    }
}

impl Buf for Output {
    fn remaining(&self) -> usize {
        self.segments_len + self.tail.len()
    }

    fn chunk(&self) -> &[u8] {
        match self.segments.front() {
            Some(seg) if !seg.head().is_empty() => seg.head(),
            Some(seg) => &seg.body,
            None => &self.tail,
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        let pieces = self
            .segments
            .iter()
            .flat_map(|seg| [seg.head(), &seg.body[..]])
            .chain(std::iter::once(&self.tail[..]))
            .filter(|piece| !piece.is_empty());
        for (slot, piece) in dst.iter_mut().zip(pieces) {
            *slot = IoSlice::new(piece);
            n += 1;
        }
        n
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(cnt <= self.remaining(), "advance past the queued output");
        while cnt > 0 {
            let Some(seg) = self.segments.front_mut() else {
                self.tail.advance(cnt);
                return;
            };
            let head = seg.head().len().min(cnt);
            seg.head_start += head as u8;
            let body = seg.body.len().min(cnt - head);
            seg.body.advance(body);
            cnt -= head + body;
            self.segments_len -= head + body;
            if seg.head().is_empty() && seg.body.is_empty() {
                self.segments.pop_front();
            }
        }
        if self.tail.is_empty() && self.segments.is_empty() {
            // Reuse the buffer from its start.
            self.tail.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_kept_across_pieces_and_partial_writes() {
        for max_write in [1, 3, 7, 14, 1000, usize::MAX] {
            let mut out = Output::default();
            out.tail_mut().extend_from_slice(b"ab");
            out.push_shared(b"HD", Bytes::from_static(b"body1"));
            out.tail_mut().extend_from_slice(b"cd");
            out.push_shared(b"", Bytes::from_static(b"body2"));
            out.push_shared(b"H", Bytes::from_static(b""));
            out.push_shared(b"", Bytes::new());
            out.tail_mut().extend_from_slice(b"ef");
            assert_eq!(out.remaining(), 2 + 7 + 2 + 5 + 1 + 2);
            // Short writes of the first piece only (a transport without
            // vectored writes); the vectored path is in tests/scenarios.rs.
            let mut wire = Vec::new();
            while out.has_remaining() {
                let piece = out.chunk();
                let n = piece.len().min(max_write);
                wire.extend_from_slice(&piece[..n]);
                out.advance(n);
            }
            assert_eq!(wire, b"abHDbody1cdbody2Hef", "writes of {max_write}");
            assert_eq!(out.remaining(), 0);
            assert!(out.chunk().is_empty());
        }
    }

    #[test]
    fn chunk_by_chunk_equals_take() {
        let mut a = Output::default();
        let mut b = Output::default();
        for out in [&mut a, &mut b] {
            out.tail_mut().extend_from_slice(b"x");
            out.push_shared(&[1, 2, 3], Bytes::from(vec![9u8; 100]));
            out.tail_mut().extend_from_slice(b"yz");
        }
        let mut chunked = Vec::new();
        while a.has_remaining() {
            let c = a.chunk().to_vec();
            a.advance(c.len());
            chunked.extend_from_slice(&c);
        }
        assert_eq!(chunked, b.take_all().to_vec());
        assert_eq!(b.remaining(), 0);
    }
}
