//! [`B64`]: the base64 text of an image as it arrived, without copies. Image results and partial previews are
//! multi-MB strings inside multi-MB SSE events; parsed with [`crate::StreamEvent::parse_bytes`], a `B64` is a
//! slice of the event's own buffer (no allocation, no copy), and the buffer is freed when the last slice is
//! dropped. From any other deserializer it is an owned copy.

use bytestring::ByteString;
use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::{Serialize, Serializer};
use std::cell::{Cell, RefCell};
use std::fmt::{self, Write as _};
use std::ops::Range;

thread_local! {
    /// The event text being parsed by `parse_bytes` on this thread, so borrowed strings can become slices of it.
    static SOURCE: RefCell<Option<Source>> = const { RefCell::new(None) };
}

/// An event being parsed, and the byte ranges of the strings [`elide`] cut out of it (marker `N` is `spans[N]`).
struct Source {
    text: ByteString,
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
}

/// Strings at least this long under an image key are cut out before parsing.
const ELIDE_MIN: usize = 64 * 1024;
/// Keys whose string values are base64 images.
const IMAGE_KEYS: [&[u8]; 2] = [b"\"result\"", b"\"partial_image_b64\""];
/// A cut-out string's stand-in is the JSON string `"\u0000#<nonce>:N"`; the parser hands it over as `\0#…`.
const MARKER: &str = "\"\\u0000#";

/// Base64 text (standard alphabet, as sent upstream); dereferences to `&str`. Cheap to clone.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct B64(ByteString);

impl B64 {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for B64 {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<String> for B64 {
    fn from(s: String) -> Self {
        Self(ByteString::from(s))
    }
}

impl From<&str> for B64 {
    fn from(s: &str) -> Self {
        Self(ByteString::from(s))
    }
}

impl fmt::Debug for B64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the data: megabytes in a log line help no one.
        write!(f, "B64({} chars)", self.0.len())
    }
}

impl Serialize for B64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
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
                let src = &src.text;
                let (start, end) = (src.as_ptr() as usize, src.as_ptr() as usize + src.len());
                let (v_start, v_end) = (v.as_ptr() as usize, v.as_ptr() as usize + v.len());
                (start <= v_start && v_end <= end).then(|| src.slice_ref(v))
            })
        });
        Ok(B64(sliced.unwrap_or_else(|| ByteString::from(v))))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<B64, E> {
        // A marker (the parser unescaped its `\u0000`) stands for the string cut out at its span.
        let cut = SOURCE.with(|s| {
            let s = s.borrow();
            let src = s.as_ref()?;
            let span = src.span_of(v)?;
            Some(src.text.slice_ref(&src.text[span.clone()]))
        });
        Ok(B64(cut.unwrap_or_else(|| ByteString::from(v))))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<B64, E> {
        Ok(B64(ByteString::from(v)))
    }
}

impl<'de> Deserialize<'de> for B64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(B64Visitor)
    }
}

/// Runs `parse` with `source` registered, so `B64` fields borrowed from it become slices of it. A source of
/// [`ELIDE_MIN`] bytes or more is parsed with its long image strings cut out ([`elide`]) — and again whole
/// when that parse fails or a cut-out string did not end up in a `B64`.
pub(crate) fn with_source<T, E>(source: &ByteString, parse: impl Fn(&str) -> Result<T, E>) -> Result<T, E> {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            SOURCE.with(|s| s.borrow_mut().take());
        }
    }
    let register = |spans: Vec<Range<usize>>, nonce: u64| {
        SOURCE.with(|s| {
            *s.borrow_mut() = Some(Source {
                text: source.clone(),
                taken: spans.iter().map(|_| Cell::new(false)).collect(),
                spans,
                nonce,
            });
        });
    };
    let _reset = Reset;
    if source.len() >= ELIDE_MIN {
        let nonce = rand::random::<u64>();
        if let Some((text, spans)) = elide(source, nonce) {
            register(spans, nonce);
            let parsed = parse(&text);
            let all_taken = SOURCE.with(|s| {
                s.borrow()
                    .as_ref()
                    .is_some_and(|src| src.taken.iter().all(Cell::get))
            });
            if parsed.is_ok() && all_taken {
                return parsed;
            }
        }
    }
    register(Vec::new(), 0);
    parse(source)
}

/// `source` with every string of at least [`ELIDE_MIN`] bytes that is the value of an image key and holds no
/// escape replaced by a marker, and the byte ranges cut out; `None` when there is none (or the JSON is cut
/// short: the parser then reports it). One pass: `memchr` from quote to quote.
fn elide(source: &str, nonce: u64) -> Option<(String, Vec<Range<usize>>)> {
    let b = source.as_bytes();
    let mut spans = Vec::new();
    let mut at = 0;
    // Outside a string the next quote opens one (JSON has no backslash outside strings); inside, a backslash
    // escapes the byte after it.
    while let Some(off) = memchr::memchr(b'"', &b[at..]) {
        let open = at + off;
        let (mut from, mut escaped) = (open + 1, false);
        let close = loop {
            let k = from + memchr::memchr2(b'"', b'\\', b.get(from..)?)?;
            if b[k] == b'"' {
                break k;
            }
            escaped = true;
            from = k + 2;
        };
        if close - open > ELIDE_MIN && !escaped && under_image_key(&b[..open]) {
            spans.push(open + 1..close);
        }
        at = close + 1;
    }
    if spans.is_empty() {
        return None;
    }
    let mut out =
        String::with_capacity(b.len() - spans.iter().map(|s| s.len()).sum::<usize>() + 16 * spans.len());
    let mut last = 0;
    for (n, span) in spans.iter().enumerate() {
        out.push_str(&source[last..span.start - 1]);
        let _ = write!(out, "{MARKER}{nonce:016x}:{n}\"");
        last = span.end + 1;
    }
    out.push_str(&source[last..]);
    Some((out, spans))
}

/// `before` ends with `"result":` or `"partial_image_b64":` (whitespace allowed around the colon).
fn under_image_key(before: &[u8]) -> bool {
    let trim = |s: &[u8]| -> usize {
        s.iter()
            .rposition(|c| !c.is_ascii_whitespace())
            .map_or(0, |p| p + 1)
    };
    let before = &before[..trim(before)];
    let Some(before) = before.strip_suffix(b":") else {
        return false;
    };
    let before = &before[..trim(before)];
    // The key's opening quote must not be an escaped one inside a longer key.
    IMAGE_KEYS.iter().any(|k| {
        before.ends_with(k)
            && before
                .len()
                .checked_sub(k.len() + 1)
                .is_none_or(|i| before[i] != b'\\')
    })
}

/// `text` (part of the event being parsed) with any markers put back as the strings they stand for: for JSON
/// kept verbatim, such as an item or event of a type this crate does not know.
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
                    out.push_str(&src.text[span.clone()]);
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
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Holder {
        b: B64,
    }

    #[test]
    fn borrowed_strings_become_slices_of_the_source() {
        let src = ByteString::from(String::from(r#"{"b":"aGVsbG8="}"#));
        let h: Holder = with_source(&src, |t| serde_json::from_str(t)).unwrap();
        assert_eq!(h.b.as_str(), "aGVsbG8=");
        let offset = h.b.as_ptr() as usize - src.as_ptr() as usize;
        assert_eq!(offset, 6, "a slice of the source, not a copy");
        // Without a registered source (or from an escaped string) it is a copy.
        let h: Holder = serde_json::from_str(r#"{"b":"a\/b"}"#).unwrap();
        assert_eq!(h.b.as_str(), "a/b");
        assert_eq!(format!("{:?}", h.b), "B64(3 chars)");
    }

    /// `src` parsed through [`with_source`], and the length of each text the parser was handed.
    fn parse_counted<T: de::DeserializeOwned>(src: &ByteString) -> (T, Vec<usize>) {
        let lens = RefCell::new(Vec::new());
        let parsed = with_source(src, |t| {
            lens.borrow_mut().push(t.len());
            serde_json::from_str(t)
        })
        .unwrap();
        (parsed, lens.into_inner())
    }

    #[test]
    fn a_long_image_string_is_parsed_once_without_its_text() {
        let img = "Q".repeat(ELIDE_MIN * 2);
        let src = ByteString::from(format!(r#"{{"b":"{img}"}}"#));
        let (h, lens): (Holder, _) = parse_counted(&src);
        assert_eq!(lens.len(), 1, "`b` is no image key: nothing elided, one parse");
        assert_eq!(h.b.as_str(), img);

        let src = ByteString::from(format!(
            r#"{{"b":{{"result":"{img}"}},"partial_image_b64":"{img}"}}"#
        ));
        #[derive(serde::Deserialize)]
        struct Item {
            result: B64,
        }
        #[derive(serde::Deserialize)]
        struct Both {
            b: Item,
            partial_image_b64: B64,
        }
        let (h, lens): (Both, _) = parse_counted(&src);
        assert_eq!(
            lens.len(),
            1,
            "one parse, not a second one of the whole text: {lens:?}"
        );
        assert!(
            lens[0] < 200,
            "the parser saw the markers, not the images: {lens:?}"
        );
        for b in [&h.b.result, &h.partial_image_b64] {
            assert_eq!(b.as_str(), img);
            let offset = b.as_ptr() as usize - src.as_ptr() as usize;
            assert!(offset < src.len(), "a slice of the source");
        }
    }

    #[test]
    fn elide_cuts_long_image_strings_only() {
        let img = "Q".repeat(ELIDE_MIN + 10);
        let text = "t".repeat(ELIDE_MIN + 10);
        let src = format!(
            r#"{{"type":"x","a":{{"result": "{img}","note":"{text}","k":"v\"q"}},"partial_image_b64":"{img}","xresult":"{img}"}}"#
        );
        let (out, spans) = elide(&src, 0xabc).unwrap();
        assert_eq!(
            out,
            format!(
                r#"{{"type":"x","a":{{"result": "\u0000#0000000000000abc:0","note":"{text}","k":"v\"q"}},"partial_image_b64":"\u0000#0000000000000abc:1","xresult":"{img}"}}"#
            )
        );
        assert_eq!(spans.len(), 2);
        assert!(spans.iter().all(|s| src[s.clone()] == img));
        // Short images, escaped strings and unterminated JSON are left to the parser.
        assert_eq!(elide(r#"{"result":"abc"}"#, 1), None);
        assert_eq!(elide(&format!(r#"{{"result":"{img}\n"}}"#), 1), None);
        assert_eq!(elide(&format!(r#"{{"result":"{img}"#), 1), None);
        assert!(under_image_key(br#"{"result" : "#));
        assert!(!under_image_key(br#"{"a\"result":"#));
    }
}
