//! The upstream body cut into SSE blocks (everything up to and including a blank line) before any of it is
//! parsed, under the per-event size cap and the large-event gate.
//!
//! Why cut first: `sse-stream` appends a data line that spans many reads to a buffer that doubles as it
//! grows, so a multi-MB image event was copied about three times over on an async worker (perf: a fifth of
//! agentd's CPU on image turns). Here the reads of one block are kept as they came ([`Bytes`] slices, no
//! copy) until its blank line. A small block is then parsed by `sse-stream` on the spot; a block of at least
//! [`PARSE_OFF_WORKERS`] bytes goes to the blocking pool ([`parse_large`]). In the shape the Responses API
//! sends (`event:` and one `data:` line, told by the line ends counted while cutting) its data stays a
//! [`Rope`] over those reads: its image strings are found across them (`elide.rs`) and the image is decoded
//! across them (`agentd_core::ingest`), so the multi-MB line is not joined. Data in which no image string is
//! found (or that does not parse) is joined then, once; a block of any other shape is joined once and handed
//! to `sse-stream`.
//!
//! One difference from a single parser over the whole body: each block gets a fresh `sse-stream` parser, so
//! a byte-order mark is skipped at the start of any block, not only of the body.
//!
//! The large-event gate: a block reaching [`LARGE_EVENT`] bytes takes one of the client's slots before more
//! of it is read (without one the stream reads nothing, and TCP holds the upstream back). The slot is given
//! back when the reader asks for bytes after that block: the relay handles an image inline, so by then the
//! event has been parsed, decoded and stored and its memory is free. Twenty concurrent image turns then hold
//! at most `large_events_at_once` (one per core) images in memory, instead of twenty. A block that holds a slot
//! and gets no read for `stall_timeout` ends the stream ([`FrameError::Stalled`]): an upstream that dies in the
//! middle of an image must not keep the slot, which other streams wait for, until the idle timeout.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use futures_util::{FutureExt as _, Stream, StreamExt as _};
use sse_stream::{Sse, SseByteStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::PollSemaphore;

use crate::rope::Rope;

pub(crate) type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send>>;

/// Blocks at least this long are parsed on the blocking pool: a multi-MB image event parsed on an async
/// worker would stall every other stream that worker serves.
pub(crate) const PARSE_OFF_WORKERS: usize = 256 * 1024;

/// Blocks at least this long need a slot of the client's large-event gate.
const LARGE_EVENT: usize = 1024 * 1024;

/// Counts bytes since the last block boundary (an empty line, with LF, CRLF or CR line endings).
#[derive(Debug, Clone)]
pub(crate) struct BoundaryCounter {
    limit: usize,
    /// Bytes of the current block so far.
    count: usize,
    /// Line ends of the current block so far, and whether any was a CR.
    shape: Shape,
    line_empty: bool,
    last_cr: bool,
}

/// The line ends of a block: what [`BoundaryCounter`] saw anyway, so that the shape of a large block can be
/// checked without scanning it again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Shape {
    /// Line ends (a CRLF counts once), the blank line's included.
    pub line_ends: usize,
    /// Some line ended with CR or CRLF.
    pub cr: bool,
}

impl BoundaryCounter {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            count: 0,
            shape: Shape::default(),
            line_empty: true,
            last_cr: false,
        }
    }

    /// Feeds `chunk` up to the first blank line in it. `Ok(Some((end, shape)))`: the current block ends at
    /// `end` (feed the rest again); `Ok(None)`: all of `chunk` belongs to the current block; `Err`: the
    /// block is over the limit. Each byte is looked at once, however the body is cut into reads.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Result<Option<(usize, Shape)>, FrameError> {
        let mut pos = 0;
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
                self.shape.cr = true;
            } else {
                self.shape.line_ends += 1;
                self.shape.cr |= byte == b'\r';
                self.last_cr = byte == b'\r';
                if self.line_empty {
                    // A blank line: the block ends here, and must itself fit.
                    if self.count.saturating_add(idx + 1) > self.limit {
                        return Err(FrameError::TooLarge);
                    }
                    self.count = 0;
                    return Ok(Some((idx + 1, std::mem::take(&mut self.shape))));
                }
                self.line_empty = true;
            }
            pos = idx + 1;
        }
        if pos < chunk.len() {
            self.line_empty = false;
            self.last_cr = false;
        }
        self.count = self.count.saturating_add(chunk.len());
        if self.count > self.limit {
            return Err(FrameError::TooLarge);
        }
        Ok(None)
    }
}

/// One block of the body: the reads it arrived in, sliced at its boundaries.
#[derive(Debug)]
pub(crate) struct RawBlock {
    pub pieces: Vec<Bytes>,
    pub len: usize,
    pub shape: Shape,
}

/// Why the body could not be cut.
#[derive(Debug)]
pub(crate) enum FrameError {
    Http(reqwest::Error),
    TooLarge,
    /// No read for the gate's stall limit in a block that holds a slot.
    Stalled,
}

/// The client's large-event gate: its slots, and how long a block holding one may wait for its next read.
#[derive(Clone)]
pub(crate) struct Gate {
    pub slots: Arc<Semaphore>,
    pub stall: Duration,
}

impl Gate {
    pub(crate) fn new(slots: Arc<Semaphore>, stall: Duration) -> Self {
        Self { slots, stall }
    }
}

/// Reads shorter than this that continue a block are copied together ([`Partial`]). Small: upstream reads
/// of a few KiB are the common case (perf on bench-images: copying those cost more than the parse saved).
const SMALL_READ: usize = 256;
/// The size a run of small reads is copied together into.
const STAGING: usize = 64 * 1024;

/// The block being read. Its first read and every read of at least [`SMALL_READ`] bytes are kept as they
/// came; shorter reads after the first are copied together, so a body cut into tiny reads (hostile, or a
/// broken proxy) costs neither a `Bytes` handle nor a read buffer per byte, while the usual reads are not
/// copied: the handles then weigh at most 32 bytes per 256 of data.
#[derive(Default)]
struct Partial {
    pieces: Vec<Bytes>,
    staging: BytesMut,
    len: usize,
}

impl Partial {
    fn push(&mut self, piece: Bytes) {
        self.len += piece.len();
        if (self.pieces.is_empty() && self.staging.is_empty()) || piece.len() >= SMALL_READ {
            self.flush();
            self.pieces.push(piece);
        } else {
            if self.staging.capacity() - self.staging.len() < piece.len() {
                self.flush();
                self.staging = BytesMut::with_capacity(STAGING);
            }
            self.staging.extend_from_slice(&piece);
        }
    }

    /// Hands the staged bytes on as a piece; later small reads fill the rest of the same buffer (a run of
    /// small reads cut short by a large one must not hold a buffer of its own).
    fn flush(&mut self) {
        if !self.staging.is_empty() {
            self.pieces.push(self.staging.split().freeze());
        }
    }

    fn finish(&mut self, shape: Shape) -> RawBlock {
        self.flush();
        RawBlock {
            pieces: std::mem::take(&mut self.pieces),
            len: std::mem::take(&mut self.len),
            shape,
        }
    }
}

/// The body as a stream of [`RawBlock`]s, one at a time (a read holding many blocks is cut lazily). An
/// incomplete last block is dropped at the end of the body, as the SSE specification says.
pub(crate) struct Framer {
    inner: ByteStream,
    counter: BoundaryCounter,
    partial: Partial,
    /// What is left of the last read after the blocks handed out so far.
    rest: Bytes,
    failed: bool,
    gate: PollSemaphore,
    slot: Option<OwnedSemaphorePermit>,
    /// The block that took the slot has ended: give the slot back on the next read.
    release: bool,
    /// How long a block holding the slot may wait for a read; when it last read (or took the slot); and the
    /// stall timer, set once and moved on only when it fires early — not re-armed at every read of the image.
    stall: Duration,
    heard: Instant,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl Framer {
    pub(crate) fn new(inner: ByteStream, limit: usize, gate: Gate) -> Self {
        Self {
            inner,
            counter: BoundaryCounter::new(limit),
            partial: Partial::default(),
            rest: Bytes::new(),
            failed: false,
            gate: PollSemaphore::new(gate.slots),
            slot: None,
            release: false,
            stall: gate.stall,
            heard: Instant::now(),
            stalled: None,
        }
    }
}

impl Stream for Framer {
    type Item = Result<RawBlock, FrameError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if !this.rest.is_empty() {
                let read = std::mem::take(&mut this.rest);
                match this.counter.feed(&read) {
                    Ok(Some((end, shape))) => {
                        this.partial.push(read.slice(..end));
                        this.rest = read.slice(end..);
                        this.release = this.slot.is_some();
                        return Poll::Ready(Some(Ok(this.partial.finish(shape))));
                    }
                    Ok(None) => this.partial.push(read),
                    Err(e) => {
                        this.failed = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                }
            }
            if this.failed {
                return Poll::Ready(None);
            }
            if std::mem::take(&mut this.release) {
                this.slot = None;
            }
            if this.slot.is_none() && this.partial.len >= LARGE_EVENT {
                // `None` only if the semaphore were closed, which it never is: read on ungated.
                this.slot = ready!(this.gate.poll_acquire(cx));
                this.heard = Instant::now();
            }
            let Poll::Ready(next) = this.inner.as_mut().poll_next(cx) else {
                if this.slot.is_some() {
                    let due = this.heard + this.stall;
                    let timer = this
                        .stalled
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                    while timer.as_mut().poll(cx).is_ready() {
                        if Instant::now() >= due {
                            // The slot goes back now, not when the stream is dropped.
                            (this.failed, this.slot, this.stalled) = (true, None, None);
                            return Poll::Ready(Some(Err(FrameError::Stalled)));
                        }
                        // Set at an earlier read: wait on from the last one.
                        timer.as_mut().reset(due);
                    }
                }
                return Poll::Pending;
            };
            this.heard = Instant::now();
            match next {
                Some(Ok(read)) => this.rest = read,
                Some(Err(e)) => {
                    this.failed = true;
                    return Poll::Ready(Some(Err(FrameError::Http(e))));
                }
                None => {
                    this.failed = true;
                    return Poll::Ready(None);
                }
            }
        }
    }
}

/// Parses one block with `sse-stream` (its reads fed in order): the event, or `None` for a block without
/// fields (a comment, a keep-alive).
pub(crate) fn parse_block(pieces: Vec<Bytes>) -> Result<Option<Sse>, sse_stream::Error> {
    let mut sse = SseByteStream::new(futures_util::stream::iter(
        pieces.into_iter().map(Ok::<_, Infallible>),
    ));
    // The input is all there: the stream is ready at once.
    match sse.next().now_or_never() {
        Some(Some(Ok(event))) => Ok(Some(event)),
        Some(Some(Err(e))) => Err(e),
        Some(None) | None => Ok(None),
    }
}

/// A large block's data: the reads it arrived in when the block has the Responses API's shape, else joined.
pub(crate) enum Data {
    Flat(ByteString),
    Rope(Rope),
}

/// An event's name and its data, if it had a `data` field.
pub(crate) type Named = (Option<String>, Option<Data>);

/// A large block's event name and data (`None`: a block without fields). In the Responses API's shape the
/// data is a rope over the block's reads (not joined, not scanned, not UTF-8 checked here); any other shape
/// is joined once and handed to `sse-stream`. CPU-bound when joining: call it on the blocking pool.
pub(crate) fn parse_large(block: RawBlock) -> Result<Option<Named>, sse_stream::Error> {
    let rope = Rope::new(block.pieces);
    if let Some(found) = simple(&rope, block.shape) {
        return Ok(Some(found));
    }
    let joined = rope.join();
    drop(rope);
    let sse = parse_block(vec![joined])?;
    Ok(sse.map(|sse| (sse.event, sse.data.map(|d| Data::Flat(ByteString::from(d))))))
}

/// `[event: NAME LF] data: VALUE LF LF`, LF line ends only → (NAME, VALUE as a rope over `block`). The shape
/// the framer counted says there is no other line end, so only the block's first and last bytes are read.
/// Anything else is `None`: the caller hands the block to `sse-stream`, the reference for every other case.
fn simple(block: &Rope, shape: Shape) -> Option<Named> {
    if shape.cr || block.tail(2) != b"\n\n" {
        return None;
    }
    // The event line (a name is short) and the start of the data line.
    let head = block.head(300);
    let mut at = 0;
    let mut event = None;
    if head.starts_with(b"event:") {
        let end = memchr::memchr(b'\n', &head[..head.len().min(256)])?;
        let value = &head[b"event:".len()..end];
        let value = value.strip_prefix(b" ").unwrap_or(value);
        event = Some(std::str::from_utf8(value).ok()?.to_owned());
        at = end + 1;
    }
    // The event line's end (if any), the data line's and the blank line's: no other.
    if shape.line_ends != usize::from(event.is_some()) + 2 || !head.get(at..)?.starts_with(b"data:") {
        return None;
    }
    at += b"data:".len();
    at += usize::from(head.get(at) == Some(&b' '));
    let end = block.len() - 2;
    Some((event, Some(Data::Rope(block.slice(at.min(end)..end)))))
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
