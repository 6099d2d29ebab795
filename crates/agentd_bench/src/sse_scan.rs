//! An incremental scanner of Server-Sent Events bytes that finds where each event ends without keeping the
//! event: it remembers only the event name and the first bytes of its `data:`, so an 8 MB single-line image
//! event costs a `memchr` pass and no copy. Lines end in `\n` (a trailing `\r` is ignored); a blank line ends
//! an event.

/// Bytes of a line (and of the data) remembered.
const HEAD: usize = 512;

/// An event that has just ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedEvent {
    /// The `event:` field (`message` when absent).
    pub name: String,
    /// Bytes of the event on the wire, its blank line included.
    pub bytes: usize,
    /// The first bytes of its `data:` field.
    pub data_head: Vec<u8>,
}

impl ScannedEvent {
    /// The upstream's `response.output_item.done` of an image: `image_generation_call` near the start of the
    /// data, or (whatever the field order) an item too large to be anything but an image.
    pub fn is_image_item_done(&self) -> bool {
        self.name == "response.output_item.done"
            && (contains(&self.data_head, b"\"image_generation_call\"") || self.bytes > 64 * 1024)
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The scanner's state between two chunks.
#[derive(Debug, Default)]
pub struct Scanner {
    line_head: Vec<u8>,
    line_len: usize,
    name: Option<String>,
    data_head: Option<Vec<u8>>,
    bytes: usize,
}

impl Scanner {
    /// Feeds the next bytes; calls `done` for every event that ends in them.
    pub fn feed(&mut self, mut chunk: &[u8], mut done: impl FnMut(ScannedEvent)) {
        while !chunk.is_empty() {
            match memchr::memchr(b'\n', chunk) {
                Some(i) => {
                    self.take(&chunk[..i]);
                    self.end_line(&mut done);
                    chunk = &chunk[i + 1..];
                }
                None => {
                    self.take(chunk);
                    break;
                }
            }
        }
    }

    fn take(&mut self, part: &[u8]) {
        let room = HEAD.saturating_sub(self.line_head.len());
        self.line_head.extend_from_slice(&part[..part.len().min(room)]);
        self.line_len += part.len();
    }

    fn end_line(&mut self, done: &mut impl FnMut(ScannedEvent)) {
        self.bytes += self.line_len + 1;
        let mut line = std::mem::take(&mut self.line_head);
        let whole = line.len() == self.line_len;
        self.line_len = 0;
        if whole && line.last() == Some(&b'\r') {
            line.pop();
        }
        if whole && line.is_empty() {
            if self.name.is_some() || self.data_head.is_some() {
                done(ScannedEvent {
                    name: self.name.take().unwrap_or_else(|| "message".to_owned()),
                    bytes: self.bytes,
                    data_head: self.data_head.take().unwrap_or_default(),
                });
            }
            self.bytes = 0;
            return;
        }
        let value = |field: &[u8]| {
            let v = &line[field.len()..];
            v.strip_prefix(b" ").unwrap_or(v).to_vec()
        };
        if line.starts_with(b"event:") {
            self.name = Some(String::from_utf8_lossy(&value(b"event:")).trim().to_owned());
        } else if line.starts_with(b"data:") && self.data_head.is_none() {
            self.data_head = Some(value(b"data:"));
        }
        self.line_head = line;
        self.line_head.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&[u8]]) -> Vec<ScannedEvent> {
        let mut s = Scanner::default();
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, |e| out.push(e));
        }
        out
    }

    #[test]
    fn events_split_anywhere_are_found_once() {
        let wire = b"event: response.created\ndata: {\"a\":1}\n\n: keep-alive\n\nevent: response.output_item.done\r\ndata: {\"item\":{\"type\":\"image_generation_call\"}}\r\n\r\n";
        let whole = scan(&[wire]);
        assert_eq!(whole.len(), 2);
        assert_eq!(whole[0].name, "response.created");
        assert_eq!(whole[0].data_head, b"{\"a\":1}");
        assert_eq!(
            whole[0].bytes,
            "event: response.created\ndata: {\"a\":1}\n\n".len()
        );
        assert!(!whole[0].is_image_item_done());
        assert!(whole[1].is_image_item_done());
        for cut in 1..wire.len() {
            let (a, b) = wire.split_at(cut);
            assert_eq!(scan(&[a, b]), whole, "split at {cut}");
        }
    }

    #[test]
    fn a_huge_item_counts_as_an_image_whatever_its_field_order() {
        let mut ev = b"event: response.output_item.done\ndata: {\"item\":{\"result\":\"".to_vec();
        ev.extend(std::iter::repeat_n(b'A', 200_000));
        ev.extend_from_slice(b"\",\"type\":\"image_generation_call\"}}\n\n");
        let out = scan(&[&ev[..1000], &ev[1000..]]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].bytes, ev.len());
        assert_eq!(out[0].data_head.len(), HEAD - "data: ".len());
        assert!(out[0].is_image_item_done());
        let small = scan(&[b"event: response.output_item.done\ndata: {\"item\":{\"type\":\"message\"}}\n\n"]);
        assert!(!small[0].is_image_item_done());
    }
}
