//! Cutting the long image strings out of an event's JSON before it is parsed: the parser then sees a short
//! marker (`"\u0000#<nonce>:<N>"`) instead of megabytes of base64, and [`crate::b64`] hands each marked string
//! to its `B64` field as a slice of the event (no copy). [`elide_text`] scans text in one buffer,
//! [`elide_rope`] the same over a [`Rope`] of reads; both are one `memchr` pass from quote to quote.

use std::ops::Range;

use crate::rope::Rope;

/// Strings at least this long under an image key are cut out before parsing.
pub(crate) const ELIDE_MIN: usize = 64 * 1024;
/// Keys whose string values are base64 images.
const IMAGE_KEYS: [&[u8]; 2] = [b"\"result\"", b"\"partial_image_b64\""];
/// A cut-out string's stand-in is the JSON string `"\u0000#<nonce>:N"`; the parser hands it over as `\0#…`.
pub(crate) const MARKER: &str = "\"\\u0000#";

/// The marker standing for cut-out string `n` of a parse with `nonce`, as written into the JSON text.
fn marker(nonce: u64, n: usize) -> String {
    format!("{MARKER}{nonce:016x}:{n}\"")
}

/// `source` with every string of at least [`ELIDE_MIN`] bytes that is the value of an image key and holds no
/// escape replaced by a marker, and the byte ranges cut out; `None` when there is none (or the JSON is cut
/// short: the parser then reports it). One pass: `memchr` from quote to quote.
pub(crate) fn elide_text(source: &str, nonce: u64) -> Option<(String, Vec<Range<usize>>)> {
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
        if close - open > ELIDE_MIN && !escaped && under_image_key(&b[..open], true) {
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
        out.push_str(&marker(nonce, n));
        last = span.end + 1;
    }
    out.push_str(&source[last..]);
    Some((out, spans))
}

/// `before` ends with `"result":` or `"partial_image_b64":` (whitespace allowed around the colon). `whole`:
/// `before` is all the text before the value, not only its end (then a key that starts the window may be an
/// escaped quote's: no).
pub(crate) fn under_image_key(before: &[u8], whole: bool) -> bool {
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
            && match before.len().checked_sub(k.len() + 1) {
                Some(i) => before[i] != b'\\',
                None => whole,
            }
    })
}

/// How far before a string's quote its key is looked for (whitespace around the colon included). A key
/// further away (hundreds of blank bytes around its colon) is not found: that string is then parsed with
/// the rest, as a copy — slower, never different.
const KEY_WINDOW: usize = 256;

/// [`elide_text`] over a rope: the JSON text with every string of at least [`ELIDE_MIN`] bytes that
/// is the value of an image key (within [`KEY_WINDOW`]) and holds no escape replaced by a marker, and the
/// ranges cut out; `None` when there is none, the JSON is cut short, or the text left is not UTF-8 (the
/// caller then parses the joined data the ordinary way, which reports it). The same single `memchr` pass
/// from quote to quote, carried across pieces; only the text between the cut-out strings is copied.
pub(crate) fn elide_rope(data: &Rope, nonce: u64) -> Option<(String, Vec<Range<usize>>)> {
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
    for (n, span) in spans.iter().enumerate() {
        data.copy_range(last..span.start - 1, &mut out);
        out.extend_from_slice(marker(nonce, n).as_bytes());
        last = span.end + 1;
    }
    data.copy_range(last..data.len(), &mut out);
    Some((String::from_utf8(out).ok()?, spans))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    #[test]
    fn elide_cuts_long_image_strings_only() {
        let img = "Q".repeat(ELIDE_MIN + 10);
        let text = "t".repeat(ELIDE_MIN + 10);
        let src = format!(
            r#"{{"type":"x","a":{{"result": "{img}","note":"{text}","k":"v\"q"}},"partial_image_b64":"{img}","xresult":"{img}"}}"#
        );
        let (out, spans) = elide_text(&src, 0xabc).unwrap();
        assert_eq!(
            out,
            format!(
                r#"{{"type":"x","a":{{"result": "\u0000#0000000000000abc:0","note":"{text}","k":"v\"q"}},"partial_image_b64":"\u0000#0000000000000abc:1","xresult":"{img}"}}"#
            )
        );
        assert_eq!(spans.len(), 2);
        assert!(spans.iter().all(|s| src[s.clone()] == img));
        // Short images, escaped strings and unterminated JSON are left to the parser.
        assert_eq!(elide_text(r#"{"result":"abc"}"#, 1), None);
        assert_eq!(elide_text(&format!(r#"{{"result":"{img}\n"}}"#), 1), None);
        assert_eq!(elide_text(&format!(r#"{{"result":"{img}"#), 1), None);
        assert!(under_image_key(br#"{"result" : "#, true));
        assert!(!under_image_key(br#"{"a\"result":"#, true));
        // The end of a longer text: the byte before the key is unknown.
        assert!(under_image_key(br#""result":"#, true));
        assert!(!under_image_key(br#""result":"#, false));
        assert!(under_image_key(br#","result":"#, false));
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
            let flat = elide_text(src, 0xabc);
            for sizes in [
                &[1usize][..],
                &[2],
                &[3, 1],
                &[4096],
                &[8191, 1, 2],
                &[usize::MAX],
            ] {
                let rope = Rope::cut(src.as_bytes(), sizes);
                assert_eq!(elide_rope(&rope, 0xabc), flat, "{sizes:?} over {}…", &src[..20]);
            }
        }
        assert!(elide_text(&sources[0], 1).is_some(), "the test reaches the cut");
        let (_, spans) = elide_text(&sources[1], 1).unwrap();
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
        assert!(elide_text(&far, 1).is_some());
        assert_eq!(elide_rope(&Rope::cut(far.as_bytes(), &[4096]), 1), None);
        let pad = " ".repeat(KEY_WINDOW - r#""result":"#.len());
        let edge = format!(r#"{{"a\"result":{pad}"{img}"}}"#);
        assert_eq!(elide_text(&edge, 1), None, "an escaped quote's key");
        assert_eq!(elide_rope(&Rope::cut(edge.as_bytes(), &[4096]), 1), None);
    }

    #[test]
    fn text_that_is_not_utf8_outside_the_images_is_left_to_the_parser() {
        let img = "Q".repeat(ELIDE_MIN + 10);
        let mut src = format!(r#"{{"result":"{img}","x":""#).into_bytes();
        src.push(0xff);
        src.extend_from_slice(b"\"}");
        assert_eq!(elide_rope(&Rope::cut(&src, &[1000]), 1), None);
    }
}
