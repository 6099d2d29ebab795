//! The streaming half: a byte-stream wrapper that caps the size of one SSE event (counting bytes since the
//! last blank-line boundary, linearly, across chunk splits) and lets only a few streams of the client buffer a
//! large event at once, and [`EventStream`], which drives `sse-stream` under idle and total deadlines and ends
//! right after a terminal event.
//!
//! The large-event gate: an event passing [`LARGE_EVENT`] bytes takes one of the client's slots before more of
//! it is read (without one the stream reads nothing, and TCP holds the upstream back). The slot is given back
//! when the reader asks for bytes after that event: the relay handles an image inline, so by then the event
//! has been parsed, decoded and stored and its memory is free. Twenty concurrent image turns then hold at most
//! `large_events_at_once` (one per core) images in memory, instead of twenty.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sse_stream::SseByteStream;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::PollSemaphore;

use crate::error::{Error, TimeoutKind};
use crate::events::StreamEvent;

type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send>>;

/// Failure of the capped byte stream, surfaced through `sse_stream::Error::Body`.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("{0}")]
    Http(reqwest::Error),
    #[error("event too large")]
    TooLarge,
}

/// Counts bytes since the last event boundary (an empty line, with LF, CRLF or CR line endings).
#[derive(Debug, Clone)]
pub(crate) struct BoundaryCounter {
    limit: usize,
    /// Bytes of the current event so far.
    count: usize,
    /// The last chunk fed ended an event.
    ended: bool,
    line_empty: bool,
    last_cr: bool,
}

impl BoundaryCounter {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            count: 0,
            ended: false,
            line_empty: true,
            last_cr: false,
        }
    }

    /// Feeds a chunk; returns `false` once the current event exceeds the limit.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> bool {
        let mut pos = 0;
        let mut boundary_end = None;
        while let Some(off) = memchr::memchr2(b'\n', b'\r', &chunk[pos..]) {
            let idx = pos + off;
            if idx > pos {
                self.line_empty = false;
                self.last_cr = false;
            }
            let byte = chunk[idx];
            if byte == b'\n' && self.last_cr {
                // Second half of a CRLF: the line already ended at the CR.
                self.last_cr = false;
            } else {
                if self.line_empty {
                    // The event that just ended must itself fit.
                    let event_len = match boundary_end {
                        Some(prev) => idx + 1 - prev,
                        None => self.count.saturating_add(idx + 1),
                    };
                    if event_len > self.limit {
                        return false;
                    }
                    boundary_end = Some(idx + 1);
                } else {
                    self.line_empty = true;
                }
                self.last_cr = byte == b'\r';
            }
            pos = idx + 1;
        }
        if pos < chunk.len() {
            self.line_empty = false;
            self.last_cr = false;
        }
        self.ended = boundary_end.is_some();
        self.count = match boundary_end {
            Some(end) => chunk.len() - end,
            None => self.count.saturating_add(chunk.len()),
        };
        self.count <= self.limit
    }
}

/// Events at least this long need a slot of the client's large-event gate.
const LARGE_EVENT: usize = 1024 * 1024;

struct LimitedBody {
    inner: ByteStream,
    counter: BoundaryCounter,
    failed: bool,
    gate: PollSemaphore,
    slot: Option<OwnedSemaphorePermit>,
    /// The event that took the slot has ended: give the slot back on the next read.
    release: bool,
}

impl Stream for LimitedBody {
    type Item = Result<Bytes, BodyError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.failed {
            return Poll::Ready(None);
        }
        if self.release {
            self.release = false;
            self.slot = None;
        }
        if self.slot.is_none() && self.counter.count >= LARGE_EVENT {
            // `None` only if the semaphore were closed, which it never is: read on ungated.
            self.slot = ready!(self.gate.poll_acquire(cx));
        }
        let item = match ready!(self.inner.as_mut().poll_next(cx)) {
            Some(Ok(chunk)) => {
                if self.counter.feed(&chunk) {
                    self.release = self.slot.is_some() && self.counter.ended;
                    Some(Ok(chunk))
                } else {
                    self.failed = true;
                    Some(Err(BodyError::TooLarge))
                }
            }
            Some(Err(e)) => {
                self.failed = true;
                Some(Err(BodyError::Http(e)))
            }
            None => None,
        };
        Poll::Ready(item)
    }
}

struct State {
    sse: SseByteStream<LimitedBody>,
    idle: Duration,
    deadline: Instant,
    limit: usize,
    done: bool,
}

fn map_sse_error(e: sse_stream::Error, limit: usize) -> Error {
    match e {
        sse_stream::Error::Body(inner) => match inner.downcast::<BodyError>() {
            Ok(b) => match *b {
                BodyError::TooLarge => Error::EventTooLarge { limit },
                BodyError::Http(e) => Error::Transport(crate::client::error_chain(&e)),
            },
            Err(other) => Error::Transport(other.to_string()),
        },
        other => Error::Decode(other.to_string()),
    }
}

async fn next_event(mut st: State) -> Option<(Result<StreamEvent, Error>, State)> {
    if st.done {
        return None;
    }
    loop {
        let idle_deadline = Instant::now() + st.idle;
        let (deadline, kind) = if idle_deadline < st.deadline {
            (idle_deadline, TimeoutKind::Idle)
        } else {
            (st.deadline, TimeoutKind::Total)
        };
        let outcome = match tokio::time::timeout_at(deadline, st.sse.next()).await {
            Err(_) => Err(Error::Timeout(kind)),
            Ok(None) => Err(Error::UnexpectedEof),
            Ok(Some(Err(e))) => Err(map_sse_error(e, st.limit)),
            Ok(Some(Ok(sse))) => {
                let Some(data) = sse.data else { continue };
                let trimmed = data.trim();
                if trimmed.is_empty() || trimmed == "[DONE]" {
                    continue;
                }
                let data = bytestring::ByteString::from(data);
                match parse(data).await {
                    Ok(ev) => Ok(ev),
                    Err(e) => Err(Error::Decode(format!(
                        "event {:?}: {e}",
                        sse.event.as_deref().unwrap_or("message")
                    ))),
                }
            }
        };
        st.done = match &outcome {
            Ok(ev) => ev.is_terminal(),
            Err(_) => true,
        };
        return Some((outcome, st));
    }
}

/// Events at least this long are parsed on the blocking pool: a multi-MB image event parsed on an async
/// worker would stall every other stream that worker serves.
const PARSE_OFF_WORKERS: usize = 256 * 1024;

async fn parse(data: bytestring::ByteString) -> Result<StreamEvent, serde_json::Error> {
    if data.len() < PARSE_OFF_WORKERS {
        return StreamEvent::parse_bytes(&data);
    }
    match tokio::task::spawn_blocking(move || StreamEvent::parse_bytes(&data)).await {
        Ok(parsed) => parsed,
        Err(e) => Err(serde::de::Error::custom(format!("parser task: {e}"))),
    }
}

/// Stream of parsed upstream events. Ends right after a terminal event; any `Err` item is the last one.
pub struct EventStream {
    inner: Pin<Box<dyn Stream<Item = Result<StreamEvent, Error>> + Send>>,
    request_id: Option<String>,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
}

impl EventStream {
    pub(crate) fn new(
        body: ByteStream,
        request_id: Option<String>,
        idle: Duration,
        deadline: Instant,
        limit: usize,
        large_events: Arc<Semaphore>,
    ) -> Self {
        let limited = LimitedBody {
            inner: body,
            counter: BoundaryCounter::new(limit),
            failed: false,
            gate: PollSemaphore::new(large_events),
            slot: None,
            release: false,
        };
        let state = State {
            sse: SseByteStream::new(limited),
            idle,
            deadline,
            limit,
            done: false,
        };
        Self {
            inner: Box::pin(futures_util::stream::unfold(state, next_event)),
            request_id,
        }
    }

    /// The upstream `x-request-id` of this stream.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }
}

impl Stream for EventStream {
    type Item = Result<StreamEvent, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::BoundaryCounter;

    fn run(chunks: &[&[u8]], limit: usize) -> bool {
        let mut c = BoundaryCounter::new(limit);
        chunks.iter().all(|ch| c.feed(ch))
    }

    #[test]
    fn resets_on_blank_lines_split_across_chunks() {
        assert!(run(&[b"data: 12345\n", b"\n", b"data: 12345\n\n"], 13));
        assert!(run(&[b"data: 12345\r\n\r", b"\ndata: 12345\r\n\r\n"], 15));
        assert!(run(
            &[b"data: 12345\r", b"\n", b"\r", b"\n", b"data: 12345\r\n"],
            14
        ));
        assert!(!run(&[b"data: 12345\n", b"data: 12345\n\n"], 20));
        // A CRLF pair is one line ending, not a blank line.
        assert!(!run(&[b"data: 1\r\n", b"data: 2\r\n", b"data: 3\r\n"], 20));
    }
}
