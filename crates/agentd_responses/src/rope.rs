//! [`Rope`]: bytes held as the reads they arrived in. A large event's data stays a rope, its long image
//! strings are found by scanning the rope ([`elide`]), and each becomes a [`crate::B64`] over part of the
//! rope: the multi-MB base64 is neither copied into one allocation nor UTF-8 validated here (the image
//! decoder checks every character of a result, the relay checks a preview before forwarding it); only the
//! JSON around it is copied, checked and parsed.

use bytes::Bytes;
use std::fmt::Write as _;
use std::ops::Range;

use crate::b64::{ELIDE_MIN, MARKER, under_image_key};

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

/// How far before a string's quote its key is looked for (whitespace around the colon included). A key
/// further away (hundreds of blank bytes around its colon) is not found: that string is then parsed with
/// the rest, as a copy — slower, never different.
const KEY_WINDOW: usize = 256;

/// [`crate::b64`]'s elision over a rope: the JSON text with every string of at least [`ELIDE_MIN`] bytes that
/// is the value of an image key (within [`KEY_WINDOW`]) and holds no escape replaced by a marker, and the
/// ranges cut out; `None` when there is none, the JSON is cut short, or the text left is not UTF-8 (the
/// caller then parses the joined data the ordinary way, which reports it). The same single `memchr` pass
/// from quote to quote, carried across pieces; only the text between the cut-out strings is copied.
pub(crate) fn elide(data: &Rope, nonce: u64) -> Option<(String, Vec<Range<usize>>)> {
    let mut spans = Vec::new();
    let mut open: Option<(usize, bool)> = None; // the open string's quote, and whether it held an escape
    let mut skip_first = false; // a backslash ended the last piece: the next byte is escaped
    let mut base = 0;
    for p in data.chunks() {
        let mut i = usize::from(std::mem::take(&mut skip_first));
        while i < p.len() {
            match open {
                None => match memchr::memchr(b'"', &p[i..]) {
                    Some(off) => {
                        open = Some((base + i + off, false));
                        i += off + 1;
                    }
                    None => break,
                },
                Some((at, escaped)) => match memchr::memchr2(b'"', b'\\', &p[i..]) {
                    Some(off) if p[i + off] == b'"' => {
                        let close = base + i + off;
                        if close - at > ELIDE_MIN
                            && !escaped
                            && under_image_key(&data.tail_before(at, KEY_WINDOW), at <= KEY_WINDOW)
                        {
                            spans.push(at + 1..close);
                        }
                        open = None;
                        i += off + 1;
                    }
                    Some(off) => {
                        open = Some((at, true));
                        i += off + 2;
                        skip_first = i > p.len();
                    }
                    None => break,
                },
            }
        }
        base += p.len();
    }
    if spans.is_empty() || open.is_some() {
        return None;
    }
    let kept = data.len() - spans.iter().map(ExactSizeIterator::len).sum::<usize>();
    let mut out = Vec::with_capacity(kept + 32 * spans.len());
    let mut last = 0;
    let mut marker = String::new();
    for (n, span) in spans.iter().enumerate() {
        data.copy_range(last..span.start - 1, &mut out);
        marker.clear();
        let _ = write!(marker, "{MARKER}{nonce:016x}:{n}\"");
        out.extend_from_slice(marker.as_bytes());
        last = span.end + 1;
    }
    data.copy_range(last..data.len(), &mut out);
    Some((String::from_utf8(out).ok()?, spans))
}

impl Rope {
    /// Up to `n` bytes right before `at`, copied.
    fn tail_before(&self, at: usize, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n);
        self.copy_range(at.saturating_sub(n)..at, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    /// `text` cut into pieces of the given sizes, cycling (the last piece takes what is left).
    fn cut(text: &[u8], sizes: &[usize]) -> Rope {
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
        Rope::new(pieces)
    }

    #[test]
    fn slices_and_copies_agree_with_the_joined_bytes() {
        let text: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        for sizes in [&[1usize][..], &[7, 1, 300], &[4096], &[5000]] {
            let r = cut(&text, sizes);
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
        let r = cut(&text, &[1000]);
        let s = r.slice(1500..1600);
        assert_eq!(s.chunks().next().unwrap().as_ptr(), r.pieces[1][500..].as_ptr());
    }

    #[test]
    fn the_rope_scan_cuts_what_the_flat_one_cuts_wherever_the_reads_split() {
        let img = "Q".repeat(ELIDE_MIN + 10);
        let text = "t".repeat(ELIDE_MIN + 10);
        let (at_min, under_min) = ("Q".repeat(ELIDE_MIN), "Q".repeat(ELIDE_MIN - 1));
        let sources = [
            format!(
                r#"{{"type":"x","é":"ü ∑","a":{{"result": "{img}","note":"{text}","k":"v\"q\\"}},"partial_image_b64":"{img}","xresult":"{img}","ö":"∂"}}"#
            ),
            format!(r#"{{"result":"{at_min}","partial_image_b64":"{under_min}"}}"#),
            format!(r#"{{"result":"{under_min}","partial_image_b64":"{at_min}"}}"#),
            format!(r#"{{"result":"{img}\n","é":"ü"}}"#),
            format!(r#"{{"item":{{"result":"{img}"}},"tail":"\\\"{img}\\"}}"#),
            format!(r#"{{"result":"{img}"#),
            format!(r#"{{"result":"{img}","ok":"\\"}}"#),
            r#"{"result":"abc"}"#.to_owned(),
        ];
        for src in &sources {
            let flat = crate::b64::elide(src, 0xabc);
            for sizes in [
                &[1usize][..],
                &[2],
                &[3, 1],
                &[4096],
                &[8191, 1, 2],
                &[usize::MAX],
            ] {
                let rope = cut(src.as_bytes(), sizes);
                assert_eq!(elide(&rope, 0xabc), flat, "{sizes:?} over {}…", &src[..20]);
            }
        }
        assert!(
            crate::b64::elide(&sources[0], 1).is_some(),
            "the test reaches the cut"
        );
        let (_, spans) = crate::b64::elide(&sources[1], 1).unwrap();
        assert_eq!(
            spans.len(),
            1,
            "a string of ELIDE_MIN bytes is cut, one byte shorter is not"
        );
    }

    #[test]
    fn a_key_far_before_its_string_is_not_looked_for() {
        // Hundreds of blank bytes between key and value: the flat scan cuts the string, the rope scan leaves it
        // to the parser (slower, never different); and a key at the very start of the window is not taken for
        // one without knowing the byte before it.
        let img = "Q".repeat(ELIDE_MIN + 10);
        let far = format!(r#"{{"result"{}:"{img}"}}"#, " ".repeat(300));
        assert!(crate::b64::elide(&far, 1).is_some());
        assert_eq!(elide(&cut(far.as_bytes(), &[4096]), 1), None);
        let pad = " ".repeat(KEY_WINDOW - r#""result":"#.len());
        let edge = format!(r#"{{"a\"result":{pad}"{img}"}}"#);
        assert_eq!(crate::b64::elide(&edge, 1), None, "an escaped quote's key");
        assert_eq!(elide(&cut(edge.as_bytes(), &[4096]), 1), None);
    }

    #[test]
    fn text_that_is_not_utf8_outside_the_images_is_left_to_the_parser() {
        let img = "Q".repeat(ELIDE_MIN + 10);
        let mut src = format!(r#"{{"result":"{img}","x":""#).into_bytes();
        src.push(0xff);
        src.extend_from_slice(b"\"}");
        assert_eq!(elide(&cut(&src, &[1000]), 1), None);
    }
}
