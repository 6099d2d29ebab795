//! Reading a Server-Sent Events response event by event, every wait bounded: a stream that hangs fails the
//! test with what it had read, it never blocks the suite.

use agentd_testkit::{SseEvent, parse_sse};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The longest silence a read waits for before the test fails (keep-alive comments do not count).
pub const EVENT_WAIT: Duration = Duration::from_secs(30);

/// An open event stream.
pub struct Sse {
    res: reqwest::Response,
    buf: Vec<u8>,
    pending: VecDeque<SseEvent>,
    ended: bool,
    /// Every event read so far, in order.
    pub seen: Vec<SseEvent>,
}

/// `run.completed` or `error`: the one event that ends a stream.
pub fn is_terminal(e: &SseEvent) -> bool {
    e.event == "run.completed" || e.event == "error"
}

/// The ids of `events`, in order (events without an id fail the test).
pub fn ids(events: &[SseEvent]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e.id.unwrap_or_else(|| panic!("event without an id: {e:?}")))
        .collect()
}

impl Sse {
    pub fn new(res: reqwest::Response) -> Self {
        Self {
            res,
            buf: Vec::new(),
            pending: VecDeque::new(),
            ended: false,
            seen: Vec::new(),
        }
    }

    /// The next event, `None` when the server ended the stream; fails the test after `wait` without one.
    pub async fn next_within(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(e) = self.pending.pop_front() {
                self.seen.push(e.clone());
                return Some(e);
            }
            if self.ended {
                return None;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = match tokio::time::timeout(left, self.res.chunk()).await {
                Ok(Ok(c)) => c,
                // A dropped connection (the server was killed) ends the stream like EOF does.
                Ok(Err(_)) => None,
                Err(_) => panic!(
                    "no event within {wait:?}; the stream hangs. Read so far: {:?}",
                    names(&self.seen)
                ),
            };
            match chunk {
                Some(bytes) => {
                    self.buf.extend_from_slice(&bytes);
                    self.split_blocks();
                }
                None => self.ended = true,
            }
        }
    }

    /// The next event within [`EVENT_WAIT`].
    pub async fn next(&mut self) -> Option<SseEvent> {
        self.next_within(EVENT_WAIT).await
    }

    /// Reads up to and including the first event that matches; fails if the stream ends first.
    pub async fn until(&mut self, mut matches: impl FnMut(&SseEvent) -> bool) -> Vec<SseEvent> {
        let mut out = Vec::new();
        loop {
            let Some(e) = self.next().await else {
                panic!("the stream ended before the awaited event: {:?}", names(&out));
            };
            let hit = matches(&e);
            out.push(e);
            if hit {
                return out;
            }
        }
    }

    /// Reads to the end: the events up to the terminal one, then checks that the server closes the stream.
    pub async fn rest(&mut self) -> Vec<SseEvent> {
        let out = self.until(is_terminal).await;
        if let Some(extra) = self.next().await {
            panic!("an event after the terminal one: {extra:?}");
        }
        out
    }

    fn split_blocks(&mut self) {
        while let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = self.buf.drain(..end + 2).collect();
            let text = String::from_utf8(block).unwrap_or_else(|e| panic!("SSE is not UTF-8: {e}"));
            self.pending.extend(parse_sse(&text));
        }
    }
}

/// The event names, in order.
pub fn names(events: &[SseEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| format!("{}#{}", e.event, e.id.unwrap_or_default()))
        .collect()
}
