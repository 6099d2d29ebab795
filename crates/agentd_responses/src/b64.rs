//! [`B64`]: the base64 text of an image as it arrived, without copies. Image results and partial previews are
//! multi-MB strings inside multi-MB SSE events; parsed with [`crate::StreamEvent::parse_bytes`], a `B64` is a
//! slice of the event's own buffer (no allocation, no copy), and the buffer is freed when the last slice is
//! dropped. A large event read off the wire is not joined when its image strings are found: its data is a
//! rope of the reads it arrived in (`rope.rs`) and a `B64` is a rope over part of them. From any other
//! deserializer it is an owned copy.

use crate::elide::{ELIDE_MIN, MARKER};
use crate::rope::Rope;
use bytestring::ByteString;
use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::{Serialize, Serializer};
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::ops::Range;

thread_local! {
    /// The event text being parsed by `parse_bytes` on this thread, so borrowed strings can become slices of it.
    static SOURCE: RefCell<Option<Source>> = const { RefCell::new(None) };
}

/// The text of an event being parsed: one buffer, or the reads it arrived in.
enum Text {
    Flat(ByteString),
    Rope(Rope),
}

/// An event being parsed, and the byte ranges of the strings `elide.rs` cut out of it (marker `N` is `spans[N]`).
struct Source {
    text: Text,
    spans: Vec<Range<usize>>,
    /// This parse's marker nonce.
    nonce: u64,
    /// Which spans a `B64` or [`restore`] took.
    taken: Vec<Cell<bool>>,
}

impl Source {
    /// The span a marker's text (`\0#<nonce>:<N>`, as the parser hands it over) stands for; marks it taken.
    fn span_of(&self, v: &str) -> Option<&Range<usize>> {
        let (nonce, n) = v.strip_prefix("\0#")?.split_once(':')?;
        if u64::from_str_radix(nonce, 16).ok()? != self.nonce || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: usize = n.parse().ok()?;
        self.taken.get(n)?.set(true);
        self.spans.get(n)
    }

    /// The cut-out string at `span`, as a `B64` sharing the source's memory.
    fn b64(&self, span: &Range<usize>) -> B64 {
        match &self.text {
            Text::Flat(t) => B64(Repr::Flat(t.slice_ref(&t[span.clone()]))),
            Text::Rope(r) => B64(Repr::Rope(r.slice(span.clone()))),
        }
    }
}

/// Base64 text (standard alphabet, as sent upstream). A clone shares the text (a rope's clone copies its list
/// of read handles).
#[derive(Clone)]
pub struct B64(Repr);

#[derive(Clone)]
enum Repr {
    Flat(ByteString),
    /// Part of a large event's reads. Not checked as UTF-8 here: the image decoder checks every character,
    /// the relay checks a preview before forwarding it.
    Rope(Rope),
}

impl B64 {
    /// Text held in pieces (e.g. the reads it arrived in), never joined.
    pub fn from_pieces(pieces: Vec<bytes::Bytes>) -> Self {
        Self(Repr::Rope(Rope::new(pieces)))
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Flat(s) => s.len(),
            Repr::Rope(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The text; copied into one string when it is held in pieces, with any bytes that are not UTF-8 (they
    /// are not checked in pieces, the decoder refuses them) replaced by U+FFFD.
    pub fn as_str(&self) -> Cow<'_, str> {
        match &self.0 {
            Repr::Flat(s) => Cow::Borrowed(s),
            Repr::Rope(r) => {
                let mut joined = Vec::with_capacity(r.len());
                r.copy_range(0..r.len(), &mut joined);
                Cow::Owned(
                    String::from_utf8(joined)
                        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
                )
            }
        }
    }

    /// Only ASCII (as base64 is): what the relay checks before forwarding a preview held in pieces.
    pub fn is_ascii(&self) -> bool {
        self.chunks().all(<[u8]>::is_ascii)
    }

    /// The first `n` bytes (fewer if shorter), e.g. to sniff the image format.
    pub fn head(&self, n: usize) -> Cow<'_, [u8]> {
        match &self.0 {
            Repr::Flat(s) => Cow::Borrowed(&s.as_bytes()[..n.min(s.len())]),
            Repr::Rope(r) => Cow::Owned(r.head(n)),
        }
    }

    /// The text as one shared buffer: no copy when it is held in one piece (built from a `String`, or parsed
    /// from a flat event), one copy when it is held in several.
    pub fn to_bytes(&self) -> bytes::Bytes {
        match &self.0 {
            Repr::Flat(s) => s.as_bytes().clone(),
            Repr::Rope(r) => r.join(),
        }
    }

    /// The text's bytes in the pieces it is held in, in order.
    pub fn chunks(&self) -> Box<dyn Iterator<Item = &[u8]> + '_> {
        match &self.0 {
            Repr::Flat(s) => Box::new(std::iter::once(&s.as_bytes()[..]).filter(|c| !c.is_empty())),
            Repr::Rope(r) => Box::new(r.chunks()),
        }
    }
}

impl Default for B64 {
    fn default() -> Self {
        Self(Repr::Flat(ByteString::new()))
    }
}

impl PartialEq for B64 {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.chunks().flatten().eq(other.chunks().flatten())
    }
}

impl Eq for B64 {}

impl From<String> for B64 {
    fn from(s: String) -> Self {
        Self(Repr::Flat(ByteString::from(s)))
    }
}

impl From<&str> for B64 {
    fn from(s: &str) -> Self {
        Self(Repr::Flat(ByteString::from(s)))
    }
}

impl fmt::Debug for B64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the data: megabytes in a log line help no one.
        write!(f, "B64({} chars)", self.len())
    }
}

impl Serialize for B64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Repr::Flat(t) => s.serialize_str(t),
            // Piece by piece into the serializer's own buffer: no joined copy.
            Repr::Rope(r) => s.collect_str(&Pieces(r)),
        }
    }
}

/// A rope's text for `collect_str`; bytes that are not UTF-8 become U+FFFD (base64 is ASCII: the relay
/// forwards no preview that is not).
struct Pieces<'a>(&'a Rope);

impl fmt::Display for Pieces<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chunks() {
            match std::str::from_utf8(c) {
                Ok(text) => f.write_str(text)?,
                Err(_) => f.write_str(&String::from_utf8_lossy(c))?,
            }
        }
        Ok(())
    }
}

struct B64Visitor;

impl<'de> Visitor<'de> for B64Visitor {
    type Value = B64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a base64 string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<B64, E> {
        let sliced = SOURCE.with(|s| {
            s.borrow().as_ref().and_then(|src| {
                let Text::Flat(src) = &src.text else {
                    return None;
                };
                let (start, end) = (src.as_ptr() as usize, src.as_ptr() as usize + src.len());
                let (v_start, v_end) = (v.as_ptr() as usize, v.as_ptr() as usize + v.len());
                (start <= v_start && v_end <= end).then(|| src.slice_ref(v))
            })
        });
        Ok(B64(Repr::Flat(sliced.unwrap_or_else(|| ByteString::from(v)))))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<B64, E> {
        // A marker (the parser unescaped its `\u0000`) stands for the string cut out at its span.
        let cut = SOURCE.with(|s| {
            let s = s.borrow();
            let src = s.as_ref()?;
            let span = src.span_of(v)?;
            Some(src.b64(span))
        });
        Ok(cut.unwrap_or_else(|| B64::from(v)))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<B64, E> {
        Ok(B64::from(v))
    }
}

impl<'de> Deserialize<'de> for B64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(B64Visitor)
    }
}

/// Clears the registered source when a parse ends (or panics).
struct Reset;

impl Drop for Reset {
    fn drop(&mut self) {
        SOURCE.with(|s| s.borrow_mut().take());
    }
}

fn register(text: Text, spans: Vec<Range<usize>>, nonce: u64) {
    SOURCE.with(|s| {
        *s.borrow_mut() = Some(Source {
            text,
            taken: spans.iter().map(|_| Cell::new(false)).collect(),
            spans,
            nonce,
        });
    });
}

/// Every cut-out string ended up in a `B64` (or was restored).
fn all_taken() -> bool {
    SOURCE.with(|s| {
        s.borrow()
            .as_ref()
            .is_some_and(|src| src.taken.iter().all(Cell::get))
    })
}

/// Runs `parse` with `source` registered, so `B64` fields borrowed from it become slices of it. A source of
/// [`ELIDE_MIN`] bytes or more is parsed with its long image strings cut out (`elide.rs`) — and again whole
/// when that parse fails or a cut-out string did not end up in a `B64`.
pub(crate) fn with_source<T, E>(source: &ByteString, parse: impl Fn(&str) -> Result<T, E>) -> Result<T, E> {
    let _reset = Reset;
    if source.len() >= ELIDE_MIN {
        let nonce = rand::random::<u64>();
        if let Some((text, spans)) = crate::elide::elide_text(source, nonce) {
            register(Text::Flat(source.clone()), spans, nonce);
            let parsed = parse(&text);
            if parsed.is_ok() && all_taken() {
                return parsed;
            }
        }
    }
    with_whole_source(source, parse)
}

/// Runs `parse` on all of `source`, registered so that `B64` fields borrowed from it become slices of it:
/// for data the cutting already failed on (`with_rope`), so it is not scanned again.
pub(crate) fn with_whole_source<T, E>(
    source: &ByteString,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<T, E> {
    let _reset = Reset;
    register(Text::Flat(source.clone()), Vec::new(), 0);
    parse(source)
}

/// Runs `parse` on `data` (JSON held in pieces) with its long image strings cut out (`elide.rs`)
/// and registered, so those `B64` fields become ropes over `data`. `None` when nothing is cut out, the parse
/// fails, or a cut-out string did not end up in a `B64`: the caller then joins `data` and parses it whole.
pub(crate) fn with_rope<T, E>(data: &Rope, parse: impl Fn(&str) -> Result<T, E>) -> Option<T> {
    let _reset = Reset;
    let nonce = rand::random::<u64>();
    let (text, spans) = crate::elide::elide_rope(data, nonce)?;
    register(Text::Rope(data.clone()), spans, nonce);
    let parsed = parse(&text).ok()?;
    all_taken().then_some(parsed)
}

/// `text` (part of the event being parsed) with any markers put back as the strings they stand for: for JSON
/// kept verbatim, such as an item or event of a type this crate does not know. A string cut out of data held
/// in pieces comes back with any bytes that are not UTF-8 as U+FFFD.
pub(crate) fn restore(text: &str) -> String {
    if !text.contains(MARKER) {
        return text.to_owned();
    }
    SOURCE.with(|s| {
        let s = s.borrow();
        let Some(src) = s.as_ref() else {
            return text.to_owned();
        };
        let mut out = String::with_capacity(text.len() + src.spans.iter().map(|s| s.len()).sum::<usize>());
        let mut rest = text;
        while let Some(pos) = rest.find(MARKER) {
            // The marker as written: `"\u0000#<nonce>:<N>"`.
            let after = &rest[pos + MARKER.len()..];
            let len = after.find('"').unwrap_or(after.len());
            let span = src.span_of(&format!("\0#{}", &after[..len]));
            match span {
                Some(span) if len < after.len() => {
                    out.push_str(&rest[..pos]);
                    out.push('"');
                    out.push_str(&src.b64(span).as_str());
                    out.push('"');
                    rest = &after[len + 1..];
                }
                _ => {
                    out.push_str(&rest[..pos + MARKER.len()]);
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    })
}

#[cfg(test)]
#[path = "b64_tests.rs"]
mod tests;
