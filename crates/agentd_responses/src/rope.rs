//! [`Rope`]: bytes held as the reads they arrived in. A large event's data stays a rope, its long image
//! strings are found by scanning the rope (`elide.rs`), and each becomes a [`crate::B64`] over part of the
//! rope: the multi-MB base64 is neither copied into one allocation nor UTF-8 validated here (the image
//! decoder checks every character of a result, the relay checks a preview before forwarding it); only the
//! JSON around it is copied, checked and parsed.

use bytes::Bytes;
use std::ops::Range;

/// Bytes as a sequence of [`Bytes`] slices. A clone copies the piece list (a handle per read), not the bytes.
/// Finding a range takes a binary search over the
/// pieces' offsets, so cutting many strings out of a rope of many pieces (a hostile upstream's tiny reads)
/// costs O(log pieces) each, not a walk from the first piece.
#[derive(Clone, Default)]
pub(crate) struct Rope {
    pieces: Vec<Bytes>,
    /// Where each piece starts.
    starts: Vec<usize>,
    len: usize,
}

impl Rope {
    /// The pieces in order; empty ones are dropped.
    pub(crate) fn new(pieces: Vec<Bytes>) -> Self {
        let pieces: Vec<Bytes> = pieces.into_iter().filter(|p| !p.is_empty()).collect();
        let mut starts = Vec::with_capacity(pieces.len());
        let mut len = 0;
        for p in &pieces {
            starts.push(len);
            len += p.len();
        }
        Self { pieces, starts, len }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The pieces, in order.
    pub(crate) fn chunks(&self) -> impl Iterator<Item = &[u8]> {
        self.pieces.iter().map(|p| &p[..])
    }

    /// The pieces overlapping `range`, each with the part of it inside `range`. Panics when out of bounds.
    fn parts(&self, range: Range<usize>) -> impl Iterator<Item = (&Bytes, Range<usize>)> {
        assert!(
            range.start <= range.end && range.end <= self.len,
            "rope range {range:?} of {}",
            self.len
        );
        // The last piece starting at or before `range.start`.
        let first = self
            .starts
            .partition_point(|&s| s <= range.start)
            .saturating_sub(1);
        self.pieces[first..]
            .iter()
            .zip(&self.starts[first..])
            .take_while(move |(_, from)| **from < range.end)
            .map(move |(p, &from)| {
                let a = range.start.saturating_sub(from).min(p.len());
                let b = (range.end - from).min(p.len());
                (p, a..b)
            })
    }

    /// The bytes in `range` as a rope of slices of the same pieces (no copy). Panics when out of bounds.
    pub(crate) fn slice(&self, range: Range<usize>) -> Self {
        Self::new(self.parts(range).map(|(p, r)| p.slice(r)).collect())
    }

    /// Appends the bytes in `range` to `out`.
    pub(crate) fn copy_range(&self, range: Range<usize>, out: &mut Vec<u8>) {
        for (p, r) in self.parts(range) {
            out.extend_from_slice(&p[r]);
        }
    }

    /// All of it in one allocation (one piece: no copy).
    pub(crate) fn join(&self) -> Bytes {
        match &self.pieces[..] {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => {
                let mut out = Vec::with_capacity(self.len);
                for p in many {
                    out.extend_from_slice(p);
                }
                Bytes::from(out)
            }
        }
    }

    /// The first `n` bytes (fewer if shorter), copied.
    pub(crate) fn head(&self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n.min(self.len));
        self.copy_range(0..n.min(self.len), &mut out);
        out
    }

    /// The last `n` bytes (fewer if shorter), copied.
    pub(crate) fn tail(&self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n.min(self.len));
        self.copy_range(self.len - n.min(self.len)..self.len, &mut out);
        out
    }
}

impl Rope {
    /// Up to `n` bytes right before `at`, copied.
    pub(crate) fn tail_before(&self, at: usize, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n);
        self.copy_range(at.saturating_sub(n)..at, &mut out);
        out
    }
}

#[cfg(test)]
impl Rope {
    /// `text` cut into pieces of the given sizes, cycling (the last piece takes what is left).
    pub(crate) fn cut(text: &[u8], sizes: &[usize]) -> Self {
        let all = Bytes::copy_from_slice(text);
        let mut pieces = Vec::new();
        let mut at = 0;
        for s in sizes.iter().cycle() {
            if at >= text.len() {
                break;
            }
            let end = at.saturating_add(*s).min(text.len());
            pieces.push(all.slice(at..end));
            at = end;
        }
        Self::new(pieces)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    #[test]
    fn slices_and_copies_agree_with_the_joined_bytes() {
        let text: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        for sizes in [&[1usize][..], &[7, 1, 300], &[4096], &[5000]] {
            let r = Rope::cut(&text, sizes);
            assert_eq!(r.len(), text.len());
            assert_eq!(&r.join()[..], &text[..]);
            for range in [0..0, 0..1, 3..700, 699..4999, 4999..5000, 0..5000, 2500..2500] {
                let s = r.slice(range.clone());
                assert_eq!(&s.join()[..], &text[range.clone()], "{sizes:?} {range:?}");
                let mut c = Vec::new();
                r.copy_range(range.clone(), &mut c);
                assert_eq!(c, &text[range]);
            }
            assert_eq!(r.head(10), &text[..10]);
            assert_eq!(r.tail(10), &text[4990..]);
            assert_eq!(r.tail_before(20, 64), &text[..20]);
        }
        // Slices share the pieces' memory.
        let r = Rope::cut(&text, &[1000]);
        let s = r.slice(1500..1600);
        assert_eq!(s.chunks().next().unwrap().as_ptr(), r.pieces[1][500..].as_ptr());
    }
}
