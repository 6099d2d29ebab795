//! [`B64`]: the base64 text of an image as it arrived, without copies. Image results and partial previews are
//! multi-MB strings inside multi-MB SSE events; parsed with [`crate::StreamEvent::parse_bytes`], a `B64` is a
//! slice of the event's own buffer (no allocation, no copy), and the buffer is freed when the last slice is
//! dropped. From any other deserializer it is an owned copy.

use bytestring::ByteString;
use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::{Serialize, Serializer};
use std::cell::RefCell;
use std::fmt;

thread_local! {
    /// The event text being parsed by `parse_bytes` on this thread, so borrowed strings can become slices of it.
    static SOURCE: RefCell<Option<ByteString>> = const { RefCell::new(None) };
}

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
                let (start, end) = (src.as_ptr() as usize, src.as_ptr() as usize + src.len());
                let (v_start, v_end) = (v.as_ptr() as usize, v.as_ptr() as usize + v.len());
                (start <= v_start && v_end <= end).then(|| src.slice_ref(v))
            })
        });
        Ok(B64(sliced.unwrap_or_else(|| ByteString::from(v))))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<B64, E> {
        Ok(B64(ByteString::from(v)))
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

/// Runs `parse` with `source` registered, so `B64` fields borrowed from it become slices of it.
pub(crate) fn with_source<T>(source: &ByteString, parse: impl FnOnce(&str) -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            SOURCE.with(|s| s.borrow_mut().take());
        }
    }
    SOURCE.with(|s| *s.borrow_mut() = Some(source.clone()));
    let _reset = Reset;
    parse(source)
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
}
