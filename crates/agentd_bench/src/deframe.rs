//! The bodies of the HTTP/1.1 responses on one connection, recovered from its raw bytes on the side while
//! they are relayed unchanged: status line and headers are skipped, the body is de-chunked
//! (`Transfer-Encoding: chunked`) or counted (`Content-Length`), and the next response starts after it. Enough
//! for what the fake upstream sends; not a general HTTP parser (no 1xx, no bodies delimited by close).

/// Where in a response the parser is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In the status line and headers.
    Head,
    /// In a chunk-size line.
    Size,
    /// In chunk data: bytes left.
    Data(u64),
    /// The CRLF after chunk data: bytes left of it.
    DataEnd(u8),
    /// After the last chunk, in the trailer section.
    Trailer,
    /// In a `Content-Length` body: bytes left.
    Fixed(u64),
}

/// One connection's response stream.
#[derive(Debug)]
pub struct Deframer {
    state: State,
    /// The current header or size line.
    line: Vec<u8>,
    chunked: bool,
    length: Option<u64>,
}

impl Default for Deframer {
    fn default() -> Self {
        Self {
            state: State::Head,
            line: Vec::new(),
            chunked: false,
            length: None,
        }
    }
}

/// What a piece of the stream held.
pub enum Part<'a> {
    /// Body bytes.
    Body(&'a [u8]),
    /// A response ended.
    End,
}

impl Deframer {
    /// Feeds raw bytes; calls `out` with body bytes and response ends, in order.
    pub fn feed(&mut self, mut buf: &[u8], out: &mut impl FnMut(Part<'_>)) {
        while !buf.is_empty() {
            match self.state {
                State::Data(left) | State::Fixed(left) => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    out(Part::Body(&buf[..n]));
                    buf = &buf[n..];
                    let rest = left - n as u64;
                    self.state = match (self.state, rest) {
                        (State::Data(_), 0) => State::DataEnd(2),
                        (State::Data(_), r) => State::Data(r),
                        (_, 0) => self.end(out),
                        (_, r) => State::Fixed(r),
                    };
                }
                State::DataEnd(left) => {
                    buf = &buf[1..];
                    self.state = if left > 1 {
                        State::DataEnd(left - 1)
                    } else {
                        State::Size
                    };
                }
                State::Head | State::Size | State::Trailer => {
                    let Some(i) = memchr::memchr(b'\n', buf) else {
                        self.push_line(buf);
                        return;
                    };
                    self.push_line(&buf[..i]);
                    buf = &buf[i + 1..];
                    let line = std::mem::take(&mut self.line);
                    let line = line.strip_suffix(b"\r").unwrap_or(&line);
                    self.state = self.on_line(line, out);
                }
            }
        }
    }

    fn push_line(&mut self, part: &[u8]) {
        // Header and size lines are short; cap them so a garbled stream cannot grow the buffer.
        let room = 8192usize.saturating_sub(self.line.len());
        self.line.extend_from_slice(&part[..part.len().min(room)]);
    }

    fn on_line(&mut self, line: &[u8], out: &mut impl FnMut(Part<'_>)) -> State {
        match self.state {
            State::Head if line.is_empty() => match (self.chunked, self.length) {
                (true, _) => State::Size,
                (false, Some(n)) if n > 0 => State::Fixed(n),
                _ => self.end(out),
            },
            State::Head => {
                let text = String::from_utf8_lossy(line).to_ascii_lowercase();
                if let Some((name, value)) = text.split_once(':') {
                    match name.trim() {
                        "transfer-encoding" => self.chunked = value.contains("chunked"),
                        "content-length" => self.length = value.trim().parse().ok(),
                        _ => {}
                    }
                }
                State::Head
            }
            State::Size => {
                let hex = String::from_utf8_lossy(line);
                let size = u64::from_str_radix(hex.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
                if size == 0 {
                    State::Trailer
                } else {
                    State::Data(size)
                }
            }
            State::Trailer if line.is_empty() => self.end(out),
            other => other,
        }
    }

    fn end(&mut self, out: &mut impl FnMut(Part<'_>)) -> State {
        out(Part::End);
        self.chunked = false;
        self.length = None;
        State::Head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> (Vec<u8>, usize) {
        let mut d = Deframer::default();
        let (mut body, mut ends) = (Vec::new(), 0);
        for c in chunks {
            d.feed(c, &mut |p| match p {
                Part::Body(b) => body.extend_from_slice(b),
                Part::End => {
                    body.push(b'|');
                    ends += 1;
                }
            });
        }
        (body, ends)
    }

    const WIRE: &[u8] =
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n\
        5\r\nevent\r\ne\r\n: x\ndata: {}\n\n\r\n0\r\n\r\n\
        HTTP/1.1 400 Bad Request\r\nContent-Length: 4\r\n\r\nnope\
        HTTP/1.1 204 No Content\r\n\r\n";

    #[test]
    fn bodies_of_chunked_and_sized_responses_split_anywhere() {
        let want = b"event: x\ndata: {}\n\n|nope||".to_vec();
        assert_eq!(run(&[WIRE]), (want.clone(), 3));
        for cut in 1..WIRE.len() {
            let (a, b) = WIRE.split_at(cut);
            assert_eq!(run(&[a, b]), (want.clone(), 3), "split at {cut}");
        }
        let bytes: Vec<&[u8]> = WIRE.chunks(1).collect();
        assert_eq!(run(&bytes), (want, 3));
    }
}
