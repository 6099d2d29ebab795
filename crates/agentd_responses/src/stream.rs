//! The streaming half: [`EventStream`] reads the body as SSE blocks (`frame.rs`: size cap, large-event
//! gate), parses each into a [`StreamEvent`] (large ones on the blocking pool) under idle and total
//! deadlines, and ends right after a terminal event.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytestring::ByteString;
use futures_util::{Stream, StreamExt};
use tokio::time::Instant;

use crate::error::{Error, TimeoutKind};
use crate::events::StreamEvent;
use crate::frame::{self, ByteStream, Data, FrameError, Framer, Gate, PARSE_OFF_WORKERS, RawBlock};
use crate::rope::Rope;

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
            Ok(Some(Err(FrameError::Stalled))) => Err(Error::Timeout(TimeoutKind::Stalled)),
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
            Ok(Some(sse)) => payload(
                sse.event.as_deref(),
                sse.data.map(ByteString::from),
                StreamEvent::parse_bytes,
            ),
            Ok(None) => Decoded::Nothing,
            Err(e) => Decoded::Event(Err(Error::Decode(e.to_string()))),
        };
    }
    let parsed = tokio::task::spawn_blocking(move || match frame::parse_large(block) {
        Ok(Some((event, Some(Data::Rope(data))))) => rope_payload(event.as_deref(), data),
        Ok(Some((event, Some(Data::Flat(data))))) => {
            payload(event.as_deref(), Some(data), StreamEvent::parse_bytes)
        }
        Ok(Some((event, None))) => payload(event.as_deref(), None, StreamEvent::parse_bytes),
        Ok(None) => Decoded::Nothing,
        Err(e) => Decoded::Event(Err(Error::Decode(e.to_string()))),
    });
    parsed
        .await
        .unwrap_or_else(|e| Decoded::Event(Err(Error::Decode(format!("parser task: {e}")))))
}

/// The event in `data` held in the reads it arrived in; image base64 in it stays in those reads.
fn rope_payload(event: Option<&str>, data: Rope) -> Decoded {
    if let Some(ev) = StreamEvent::parse_rope(&data) {
        return Decoded::Event(Ok(ev));
    }
    // No image string cut out, or a parse that failed: parsed whole (a second scan would cut nothing more),
    // which reports what is wrong. The reads are let go as soon as they are joined.
    let joined = data.join();
    drop(data);
    match ByteString::try_from(joined) {
        Ok(data) => payload(event, Some(data), StreamEvent::parse_whole),
        Err(e) => Decoded::Event(Err(Error::Decode(format!(
            "event {:?}: data is not UTF-8: {e}",
            event.unwrap_or("message")
        )))),
    }
}

/// The event in one `data` payload, read by `parse`; image base64 in it stays a slice of `data`.
fn payload(
    event: Option<&str>,
    data: Option<ByteString>,
    parse: fn(&ByteString) -> Result<StreamEvent, serde_json::Error>,
) -> Decoded {
    let Some(data) = data.filter(|d| !matches!(d.trim(), "" | "[DONE]")) else {
        return Decoded::Fields;
    };
    Decoded::Event(
        parse(&data).map_err(|e| Error::Decode(format!("event {:?}: {e}", event.unwrap_or("message")))),
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
        gate: Gate,
    ) -> Self {
        let state = State {
            frames: Framer::new(body, limit, gate),
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
    use std::sync::Arc;
    use tokio::sync::Semaphore;

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
        let gate = Gate::new(Arc::new(Semaphore::new(1)), Duration::from_secs(30));
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

    /// `body` in reads of 16 KiB (the last one longer, never a small read that would be copied), parsed.
    fn large_events(body: impl Into<Bytes>) -> (Bytes, EventStream) {
        let all: Bytes = body.into();
        let step = 16 * 1024;
        let mut reads = Vec::new();
        let mut at = 0;
        while at < all.len() {
            let end = if all.len() - at < 2 * step {
                all.len()
            } else {
                at + step
            };
            reads.push(Ok(all.slice(at..end)));
            at = end;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let events = EventStream::new(
            Box::pin(futures_util::stream::iter(reads)),
            None,
            Duration::from_secs(5),
            deadline,
            1 << 24,
            Gate::new(Arc::new(Semaphore::new(1)), Duration::from_secs(30)),
        );
        (all, events)
    }

    fn partial(b64: &str) -> String {
        format!(
            "event: response.image_generation_call.partial_image\ndata: {{\"type\":\"response.image_generation_call.partial_image\",\"output_index\":0,\"item_id\":\"ig_1\",\"partial_image_index\":0,\"partial_image_b64\":\"{b64}\"}}\n\n"
        )
    }

    fn item_done(b64: &str) -> String {
        format!(
            "event: response.output_item.done\ndata: {{\"type\":\"response.output_item.done\",\"output_index\":0,\"item\":{{\"id\":\"ig_1\",\"type\":\"image_generation_call\",\"status\":\"completed\",\"result\":\"{b64}\",\"revised_prompt\":\"a cat — é\"}}}}\n\n"
        )
    }

    async fn image_call(events: &mut EventStream) -> crate::ImageGenerationCall {
        let Some(Ok(StreamEvent::OutputItemDone(d))) = events.next().await else {
            panic!("an item")
        };
        let crate::OutputItem::ImageGenerationCall(call) = d.item else {
            panic!("an image call")
        };
        call
    }

    #[tokio::test]
    async fn a_large_image_event_is_parsed_without_joining_its_reads() {
        let img = "QUJD".repeat(100_000);
        let (all, mut events) = large_events(partial(&img) + &item_done(&img));
        let (start, end) = (all.as_ptr() as usize, all.as_ptr() as usize + all.len());
        let in_the_reads = |b: &crate::B64| {
            b.chunks().count() > 1
                && b.chunks()
                    .all(|c| start <= c.as_ptr() as usize && c.as_ptr() as usize + c.len() <= end)
        };
        let Some(Ok(StreamEvent::PartialImage(p))) = events.next().await else {
            panic!("a partial image")
        };
        assert_eq!(p.partial_image_b64.as_str(), img);
        assert!(
            in_the_reads(&p.partial_image_b64),
            "held in the reads, not joined"
        );
        assert!(p.partial_image_b64.is_ascii());
        // Serialized piece by piece, as it would have been whole.
        assert_eq!(
            serde_json::to_string(&p.partial_image_b64).unwrap(),
            serde_json::to_string(&img).unwrap()
        );
        let call = image_call(&mut events).await;
        let result = call.result.expect("a result");
        assert_eq!(result.as_str(), img);
        assert!(in_the_reads(&result), "held in the reads, not joined");
        assert_eq!(call.revised_prompt.as_deref(), Some("a cat — é"));
    }

    #[tokio::test]
    async fn large_events_without_images_or_not_utf8_are_parsed_the_ordinary_way() {
        // No image string to cut out: joined and parsed whole.
        let text = "é".repeat(200_000);
        let done = format!(
            "event: response.output_text.done\ndata: {{\"type\":\"response.output_text.done\",\"item_id\":\"m\",\"text\":\"{text}\"}}\n\n"
        );
        let (_, mut events) = large_events(done);
        let Some(Ok(StreamEvent::OutputTextDone(d))) = events.next().await else {
            panic!("output_text.done")
        };
        assert_eq!(d.text, text);

        // Not UTF-8 outside an image string: the event fails to decode, as before.
        let mut bad = format!(
            "event: x\ndata: {{\"type\":\"x\",\"pad\":\"{}",
            "A".repeat(300_000)
        )
        .into_bytes();
        bad.extend_from_slice(b"\xff\"}\n\n");
        let (_, mut events) = large_events(bad);
        let Some(Err(Error::Decode(why))) = events.next().await else {
            panic!("a decode error")
        };
        assert!(why.contains("not UTF-8"), "{why}");
    }

    #[tokio::test]
    async fn an_image_string_that_is_not_base64_text_is_kept_for_the_checks_after() {
        // Bytes that are not UTF-8 inside an image string: the parse succeeds, the text is not ASCII (the relay
        // forwards no such preview, the decoder refuses such a result), and it renders with U+FFFD.
        let mut img = "QUJD".repeat(100_000).into_bytes();
        img[1000] = 0xff;
        let mut raw = Vec::new();
        for event in [partial("IMG"), item_done("IMG")] {
            let (head, tail) = event.split_once("IMG").unwrap();
            raw.extend_from_slice(head.as_bytes());
            raw.extend_from_slice(&img);
            raw.extend_from_slice(tail.as_bytes());
        }
        let (_, mut events) = large_events(raw);
        let Some(Ok(StreamEvent::PartialImage(p))) = events.next().await else {
            panic!("a partial image")
        };
        assert!(!p.partial_image_b64.is_ascii());
        assert!(p.partial_image_b64.as_str().contains('\u{fffd}'));
        let call = image_call(&mut events).await;
        let result = call.result.expect("a result");
        assert!(!result.is_ascii());
        assert_eq!(result.len(), img.len());
    }
}
