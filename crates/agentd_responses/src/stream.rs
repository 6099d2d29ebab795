//! The streaming half: [`EventStream`] reads the body as SSE blocks (`frame.rs`: size cap, large-event
//! gate), parses each into a [`StreamEvent`] (large ones on the blocking pool) under idle and total
//! deadlines, and ends right after a terminal event.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytestring::ByteString;
use futures_util::{Stream, StreamExt};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::error::{Error, TimeoutKind};
use crate::events::StreamEvent;
use crate::frame::{self, ByteStream, FrameError, Framer, PARSE_OFF_WORKERS, RawBlock};

struct State {
    frames: Framer,
    idle: Duration,
    deadline: Instant,
    limit: usize,
    done: bool,
}

async fn next_event(mut st: State) -> Option<(Result<StreamEvent, Error>, State)> {
    if st.done {
        return None;
    }
    // Silence is counted from the last block with fields: comments and blank lines do not keep a stream alive.
    let mut heard = Instant::now();
    loop {
        let idle_deadline = heard + st.idle;
        let (deadline, kind) = if idle_deadline < st.deadline {
            (idle_deadline, TimeoutKind::Idle)
        } else {
            (st.deadline, TimeoutKind::Total)
        };
        let outcome = match tokio::time::timeout_at(deadline, st.frames.next()).await {
            Err(_) => Err(Error::Timeout(kind)),
            Ok(None) => Err(Error::UnexpectedEof),
            Ok(Some(Err(FrameError::TooLarge))) => Err(Error::EventTooLarge { limit: st.limit }),
            Ok(Some(Err(FrameError::Http(e)))) => Err(Error::Transport(crate::client::error_chain(&e))),
            Ok(Some(Ok(block))) => match decode(block).await {
                Decoded::Event(outcome) => outcome,
                quiet => {
                    if matches!(quiet, Decoded::Fields) {
                        heard = Instant::now();
                    }
                    // A read can hold thousands of empty blocks: let the worker's other tasks run meanwhile.
                    tokio::task::consume_budget().await;
                    continue;
                }
            },
        };
        st.done = match &outcome {
            Ok(ev) => ev.is_terminal(),
            Err(_) => true,
        };
        return Some((outcome, st));
    }
}

/// What one block held.
#[expect(
    clippy::large_enum_variant,
    reason = "moved once per event, as the Option<Result<StreamEvent, _>> it replaces was; boxing would allocate per event"
)]
enum Decoded {
    Event(Result<StreamEvent, Error>),
    /// Fields, but no data to parse (no `data`, empty data, `[DONE]`).
    Fields,
    /// No fields: a comment, a keep-alive, blank lines.
    Nothing,
}

/// A block's event, parsed on the spot or, for a large block, on the blocking pool.
async fn decode(block: RawBlock) -> Decoded {
    if block.len < PARSE_OFF_WORKERS {
        return match frame::parse_block(block.pieces) {
            Ok(Some(sse)) => payload(sse.event.as_deref(), sse.data.map(ByteString::from)),
            Ok(None) => Decoded::Nothing,
            Err(e) => Decoded::Event(Err(Error::Decode(e.to_string()))),
        };
    }
    let parsed = tokio::task::spawn_blocking(move || match frame::parse_large(block) {
        Ok(Some((event, data))) => payload(event.as_deref(), data),
        Ok(None) => Decoded::Nothing,
        Err(e) => Decoded::Event(Err(Error::Decode(e.to_string()))),
    });
    parsed
        .await
        .unwrap_or_else(|e| Decoded::Event(Err(Error::Decode(format!("parser task: {e}")))))
}

/// The event in one `data` payload; image base64 in it stays a slice of `data`.
fn payload(event: Option<&str>, data: Option<ByteString>) -> Decoded {
    let Some(data) = data.filter(|d| !matches!(d.trim(), "" | "[DONE]")) else {
        return Decoded::Fields;
    };
    Decoded::Event(
        StreamEvent::parse_bytes(&data)
            .map_err(|e| Error::Decode(format!("event {:?}: {e}", event.unwrap_or("message")))),
    )
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
        let state = State {
            frames: Framer::new(body, limit, large_events),
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
    use super::*;
    use bytes::Bytes;

    /// An upstream that only sends keep-alive comments (`: …` blocks) every 20 ms, forever.
    fn keep_alives() -> ByteStream {
        Box::pin(futures_util::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Some((Ok(Bytes::from_static(b": keep-alive\n\n")), ()))
        }))
    }

    #[tokio::test]
    async fn keep_alive_comments_do_not_count_as_events_for_the_idle_timeout() {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(5);
        let gate = Arc::new(Semaphore::new(1));
        let mut events = EventStream::new(
            keep_alives(),
            None,
            Duration::from_millis(150),
            deadline,
            1024,
            gate,
        );
        let first = events.next().await.expect("an outcome");
        assert!(
            matches!(first, Err(Error::Timeout(TimeoutKind::Idle))),
            "{first:?} after {:?}",
            started.elapsed()
        );
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "the idle timeout, not the total one"
        );
        assert!(events.next().await.is_none(), "nothing after the error");
    }
}
