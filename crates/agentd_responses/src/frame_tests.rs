//! Unit tests of `frame.rs`: boundaries across reads, the cut against `sse-stream` over the whole body, and
//! the large-block shortcut against `sse-stream` on the same block.

use super::*;

/// A gate of one slot with the default stall limit, for the tests that are not about either.
fn gate() -> Gate {
    Gate::new(Arc::new(Semaphore::new(1)), Duration::from_secs(30))
}

fn counts(chunks: &[&[u8]], limit: usize) -> bool {
    shapes(chunks, limit).is_some()
}

/// The shapes of the blocks ended, or `None` past the limit.
fn shapes(chunks: &[&[u8]], limit: usize) -> Option<Vec<Shape>> {
    let mut c = BoundaryCounter::new(limit);
    let mut seen = Vec::new();
    for chunk in chunks {
        let mut rest = *chunk;
        while let Some((end, shape)) = c.feed(rest).ok()? {
            seen.push(shape);
            rest = &rest[end..];
        }
    }
    Some(seen)
}

#[test]
fn resets_on_blank_lines_split_across_chunks() {
    assert!(counts(&[b"data: 12345\n", b"\n", b"data: 12345\n\n"], 13));
    assert!(counts(&[b"data: 12345\r\n\r", b"\ndata: 12345\r\n\r\n"], 15));
    assert!(counts(
        &[b"data: 12345\r", b"\n", b"\r", b"\n", b"data: 12345\r\n"],
        14
    ));
    assert!(!counts(&[b"data: 12345\n", b"data: 12345\n\n"], 20));
    // A CRLF pair is one line ending, not a blank line.
    assert!(!counts(&[b"data: 1\r\n", b"data: 2\r\n", b"data: 3\r\n"], 20));
}

#[test]
fn shapes_count_line_ends_across_chunks() {
    let lf = |line_ends| Shape { line_ends, cr: false };
    let cr = |line_ends| Shape { line_ends, cr: true };
    assert_eq!(
        shapes(&[b"event: a\nda", b"ta: 1\n", b"\ndata: 2\n\n"], 100),
        Some(vec![lf(3), lf(2)])
    );
    // The LF that completes a CRLF blank line opens the next block, which is marked CR too.
    assert_eq!(
        shapes(&[b"data: 1\r\n\r", b"\ndata: 2\n\n"], 100),
        Some(vec![cr(2), cr(2)])
    );
    assert_eq!(shapes(&[b"data: 1\r\r: c\n\n"], 100), Some(vec![cr(2), lf(2)]));
}

/// Events as (name, data), the way the stream hands them on.
type Seen = Vec<(Option<String>, Option<String>)>;

fn reference(body: &[u8]) -> Seen {
    let mut sse = SseByteStream::new(futures_util::stream::iter([Ok::<_, Infallible>(
        Bytes::copy_from_slice(body),
    )]));
    let mut seen = Vec::new();
    while let Some(Some(ev)) = sse.next().now_or_never() {
        let ev = ev.expect("valid");
        seen.push((ev.event, ev.data));
    }
    seen
}

/// A large block's data as text (a rope joined).
fn text(d: Data) -> String {
    match d {
        Data::Flat(s) => s.to_string(),
        Data::Rope(r) => String::from_utf8(r.join().to_vec()).expect("UTF-8 in these tests"),
    }
}

/// `bytes` as a rope of one piece.
fn one(bytes: Bytes) -> Rope {
    Rope::new(vec![bytes])
}

async fn cut(chunks: Vec<Bytes>) -> Seen {
    let body: ByteStream = Box::pin(futures_util::stream::iter(chunks.into_iter().map(Ok)));
    let mut framer = Framer::new(body, 1 << 20, gate());
    let mut seen = Vec::new();
    while let Some(block) = framer.next().await {
        let block = block.expect("under the limit");
        let total: usize = block.pieces.iter().map(Bytes::len).sum();
        assert_eq!(total, block.len);
        let parsed = if block.len >= 64 {
            parse_large(block).expect("valid").map(|(e, d)| (e, d.map(text)))
        } else {
            parse_block(block.pieces)
                .expect("valid")
                .map(|s| (s.event, s.data))
        };
        seen.extend(parsed);
    }
    seen
}

const BODIES: [&str; 7] = [
    "event: response.output_item.done\ndata: {\"result\":\"0123456789012345678901234567890123456789012345678901234567890123456789\"}\n\nevent: response.completed\ndata: {\"z\":\"0123456789012345678901234567890123456789012345678901234567890123456789\"}\n\n",
    "data: 0123456789012345678901234567890123456789012345678901234567890123456789\n\n:c\n\n\n\n\ndata: x\n\n",
    "event: a\ndata: {\"x\":1}\n\nevent: b\ndata: {\"y\":\"0123456789012345678901234567890123456789012345678901234567890123456789\"}\n\n: keep-alive\n\ndata: [DONE]\n\n",
    "event: a\r\ndata: first\r\ndata: second\r\n\r\nevent: b\r\ndata: 0123456789012345678901234567890123456789012345678901234567890123456789\r\n\r\n",
    "data:no space\r\rid: 7\rdata: 0123456789012345678901234567890123456789012345678901234567890123456789\r\r",
    "event:x\ndata:  two spaces, one kept, 0123456789012345678901234567890123456789012345678901234567890123\n\nevent: tail\ndata: incomplete",
    ": only a comment\n\nretry: 10\n\nevent: e\ndata: 0123456789012345678901234567890123456789012345678901234567890123456789\nid: 3\n\n",
];

#[tokio::test]
async fn cut_anywhere_parses_as_sse_stream_does_on_the_whole_body() {
    for body in BODIES {
        let expected = reference(body.as_bytes());
        assert!(!expected.is_empty());
        let bytes = Bytes::from(body);
        for split in 0..=bytes.len() {
            let chunks = vec![bytes.slice(..split), bytes.slice(split..)];
            assert_eq!(cut(chunks).await, expected, "{body:?} split at {split}");
        }
        let bytewise = (0..bytes.len()).map(|i| bytes.slice(i..=i)).collect();
        assert_eq!(cut(bytewise).await, expected, "{body:?} a byte at a time");
    }
}

#[test]
fn the_large_block_shortcut_agrees_with_sse_stream() {
    let big = "A".repeat(300_000);
    let blocks = [
        format!("event: response.output_item.done\ndata: {{\"result\":\"{big}\"}}\n\n"),
        format!("data: {big}\n\n"),
        format!("data:{big}\n\n"),
        format!("event:\ndata: {big}\n\n"),
        // Not the shortcut's shape: sse-stream answers.
        format!("event: e\r\ndata: {big}\r\n\r\n"),
        format!("data: {big}\ndata: two\n\n"),
        format!("id: 1\ndata: {big}\n\n"),
        format!("data: {big}\n: comment\n\n"),
    ];
    for (n, block) in blocks.iter().enumerate() {
        let mut counter = BoundaryCounter::new(1 << 20);
        let Ok(Some((end, shape))) = counter.feed(block.as_bytes()) else {
            panic!("one block: {:?}", &block[..40])
        };
        assert!(end + 1 >= block.len(), "one block: {:?}", &block[..40]);
        // A CRLF blank line ends the block at its CR.
        let bytes = Bytes::from(block.clone()).slice(..end);
        let shortcut = simple(&one(bytes.clone()), shape);
        assert_eq!(
            shortcut.is_some(),
            n < 4,
            "the shortcut is taken for the API's shape only"
        );
        if let Some((_, Some(data))) = &shortcut {
            // The data is the block's memory, not a copy of it.
            let Data::Rope(data) = data else {
                panic!("the shortcut's data is a rope")
            };
            let (start, end) = (bytes.as_ptr() as usize, bytes.as_ptr() as usize + bytes.len());
            for c in data.chunks() {
                let at = c.as_ptr() as usize;
                assert!(start <= at && at + c.len() <= end, "data copied out of the block");
            }
        }
        let expected = parse_block(vec![bytes.clone()])
            .unwrap()
            .map(|s| (s.event, s.data));
        let got = parse_large(RawBlock {
            len: bytes.len(),
            pieces: vec![bytes.slice(..1000), bytes.slice(1000..)],
            shape,
        })
        .unwrap()
        .map(|(e, d)| (e, d.map(text)));
        assert_eq!(got, expected, "{:?}", &block[..40]);
    }
    let lf = |line_ends| Shape { line_ends, cr: false };
    let shortcut = simple(&one(Bytes::from(format!("data: {big}\n\n"))), lf(2)).expect("the API's shape");
    assert_eq!(shortcut.1.map(text).map(|d| d.len()), Some(big.len()));
    let named =
        simple(&one(Bytes::from(format!("event: e\ndata: {big}\n\n"))), lf(3)).expect("the API's shape");
    assert_eq!(named.0.as_deref(), Some("e"));
    assert!(
        simple(&one(Bytes::from(format!("event: e\ndata: {big}\n\n"))), lf(4)).is_none(),
        "another line"
    );
    // The data is not checked here: the event parse is (`stream.rs`), and the image decoder.
    assert!(
        simple(&one(Bytes::from(b"data: \xff\xfe\n\n".to_vec())), lf(2)).is_some(),
        "not read through"
    );
}

#[tokio::test]
async fn a_block_over_the_limit_fails_the_stream_after_the_blocks_before_it() {
    let body: ByteStream = Box::pin(futures_util::stream::iter([
        Ok(Bytes::from_static(b"data: 1\n\ndata: 0123456789")),
        Ok(Bytes::from_static(b"data: 2\n\n")),
    ]));
    let mut framer = Framer::new(body, 12, gate());
    assert!(matches!(framer.next().await, Some(Ok(b)) if b.len == 9));
    assert!(matches!(framer.next().await, Some(Err(FrameError::TooLarge))));
    assert!(framer.next().await.is_none());
}

#[tokio::test]
async fn tiny_reads_are_copied_together_and_large_ones_kept() {
    let line = format!("data: {}\n\n", "A".repeat(200_000));
    let bytes = Bytes::from(line.clone());
    // A byte at a time: the block is a handful of pieces, not 200,000.
    let reads: Vec<_> = (0..bytes.len()).map(|i| Ok(bytes.slice(i..=i))).collect();
    let body: ByteStream = Box::pin(futures_util::stream::iter(reads));
    let mut framer = Framer::new(body, 1 << 20, gate());
    let block = framer.next().await.unwrap().unwrap();
    assert!(
        block.pieces.len() <= 1 + bytes.len() / STAGING + 1,
        "{} pieces",
        block.pieces.len()
    );
    assert_eq!(block.pieces.concat(), line.as_bytes());
    // Large reads stay as they came (no copy): the pieces are the reads themselves.
    let reads: Vec<_> = bytes.chunks(SMALL_READ).map(|c| Ok(bytes.slice_ref(c))).collect();
    let count = reads.len();
    let body: ByteStream = Box::pin(futures_util::stream::iter(reads));
    let mut framer = Framer::new(body, 1 << 20, gate());
    let block = framer.next().await.unwrap().unwrap();
    assert!(
        block.pieces.len() >= count - 1,
        "{} pieces for {count} reads",
        block.pieces.len()
    );
    assert_eq!(
        block.pieces[0].as_ptr(),
        bytes.as_ptr(),
        "the first read is not copied"
    );
}

#[tokio::test]
async fn small_reads_between_large_ones_share_one_staging_buffer() {
    let large = Bytes::from(vec![b'A'; 300]);
    let mut reads = vec![Ok(Bytes::from_static(b"data: "))];
    for _ in 0..10 {
        reads.push(Ok(Bytes::from_static(b"B")));
        reads.push(Ok(large.clone()));
    }
    reads.push(Ok(Bytes::from_static(b"\n\n")));
    let body: ByteStream = Box::pin(futures_util::stream::iter(reads));
    let mut framer = Framer::new(body, 1 << 20, gate());
    let block = framer.next().await.unwrap().unwrap();
    assert_eq!(block.len, 6 + 10 * 301 + 2);
    let staged: Vec<&Bytes> = block.pieces.iter().filter(|p| p.len() == 1).collect();
    assert_eq!(staged.len(), 10);
    for pair in staged.windows(2) {
        assert_eq!(
            pair[1].as_ptr() as usize,
            pair[0].as_ptr() as usize + 1,
            "each 1-byte read is the next byte of the same buffer, not a buffer of its own"
        );
    }
}

#[tokio::test]
async fn a_read_of_many_blocks_is_cut_one_block_at_a_time() {
    let body: ByteStream = Box::pin(futures_util::stream::iter([Ok(Bytes::from(
        ":\n\n".repeat(10_000),
    ))]));
    let mut framer = Framer::new(body, 1 << 20, gate());
    let mut blocks = 0;
    while let Some(block) = framer.next().await {
        let block = block.unwrap();
        assert_eq!(
            parse_block(block.pieces).unwrap(),
            None,
            "a comment has no fields"
        );
        blocks += 1;
        if blocks == 1 {
            assert_eq!(framer.rest.len(), 3 * 9_999, "the rest of the read is left uncut");
        }
    }
    assert_eq!(blocks, 10_000);
}

/// An upstream that stops in the middle of a large block gives its slot up after the stall limit, with
/// `Stalled`, and another stream waiting for the slot reads on; without the limit that one waited for the whole
/// idle timeout (300 s by default). A block that pauses for less than the limit is read whole.
#[tokio::test(start_paused = true)]
async fn a_large_block_that_stops_arriving_gives_its_slot_up() {
    let slots = Arc::new(Semaphore::new(1));
    let gate = || Gate::new(Arc::clone(&slots), Duration::from_secs(30));
    let half = Bytes::from(format!("data: {}", "A".repeat(2 << 20)));
    // Half an event, then a pause of 29 s, the rest, then silence for ever.
    let slow: ByteStream = Box::pin(
        futures_util::stream::iter([Ok(half.clone())])
            .chain(futures_util::stream::once(async {
                tokio::time::sleep(Duration::from_secs(29)).await;
                Ok(Bytes::from_static(b"B\n\n"))
            }))
            .chain(futures_util::stream::iter([Ok(half.clone())]))
            .chain(futures_util::stream::pending()),
    );
    let mut stalled = Framer::new(slow, 64 << 20, gate());
    let first = stalled.next().await.unwrap().unwrap();
    assert_eq!(first.len, half.len() + 3, "a 29 s pause is within the limit");
    let other: ByteStream = Box::pin(futures_util::stream::iter([
        Ok(half.clone()),
        Ok(Bytes::from_static(b"\n\n")),
    ]));
    let mut waiting = Framer::new(other, 64 << 20, gate());
    let started = Instant::now();
    let (stalled_end, waiting_block) = tokio::join!(stalled.next(), waiting.next());
    assert!(
        matches!(stalled_end, Some(Err(FrameError::Stalled))),
        "{:?}",
        stalled_end.map(|r| r.map(|b| b.len))
    );
    assert_eq!(waiting_block.unwrap().unwrap().len, half.len() + 2);
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(30),
        "the other stream waited out the limit, no more"
    );
    assert!(stalled.next().await.is_none(), "nothing after the stall");
}
