//! An event's SSE frame with its images spliced in rather than serialized, and the frame cut into writes.
//!
//! Why: an image event is megabytes of base64 (`output_item.done`, then `response.completed` again). Serialized
//! with serde_json, each is scanned for characters to escape (base64 has none) and copied twice (into the JSON,
//! then into the frame). perf on bench-images: that was most of the fake's CPU, on the same two cores as the
//! agentd it measures. Here each image of at least [`SPLICE_MIN`] bytes is swapped for a short marker, the rest
//! of the event is serialized as before, and the frame is the JSON around the markers with the image's own
//! buffer (the image cache's, [`crate::images`]) between them: the bytes on the wire are the same, the image is
//! not copied.

use agentd_responses::{B64, OutputItem, StreamEvent};
use bytes::{Bytes, BytesMut};

/// Image strings at least this long are spliced in; shorter ones are serialized as they are.
const SPLICE_MIN: usize = 16 * 1024;

const MARKER: &str = "@@fake-image-";

/// The SSE frame of `ev` (`event:` line, `data:` line, blank line) in pieces, its large image strings shared,
/// not copied. The bytes are the serialized frame's as long as the images are plain base64 held in one buffer
/// (the fake's own, from [`crate::images::image_b64`]): such text needs no escaping. `json` serializes an event (the caller's decorations included); it sees the event with markers
/// in place of the spliced images. `ev` is left as it was given.
pub(crate) fn frame(ev: &mut StreamEvent, json: impl Fn(&StreamEvent) -> String) -> Vec<Bytes> {
    let head = ev_head(ev);
    let (mut taken, mut images) = (Vec::new(), Vec::new());
    for (k, slot) in image_slots(ev).into_iter().enumerate() {
        if slot.len() >= SPLICE_MIN {
            let marker = B64::from(format!("{MARKER}{}@@", images.len()));
            images.push(std::mem::replace(slot, marker));
            taken.push(k);
        }
    }
    let text = json(ev);
    for (k, slot) in image_slots(ev).into_iter().enumerate() {
        if let Some(i) = taken.iter().position(|&t| t == k) {
            *slot = images[i].clone();
        }
    }
    // Some other text of the event looking like a marker would misplace an image: serialize it whole then.
    if text.matches(&format!("\"{MARKER}")).count() != images.len() {
        return vec![Bytes::from(format!("{head}{}\n\n", json(ev)))];
    }
    let mut pieces = Vec::with_capacity(2 * images.len() + 1);
    let mut open = head;
    let mut rest = text.as_str();
    while let Some((before, n, after)) = next_marker(rest) {
        let Some(image) = images.get(n) else { break };
        open.push_str(before);
        pieces.push(Bytes::from(std::mem::take(&mut open)));
        pieces.push(image.to_bytes());
        rest = after;
    }
    if pieces.len() != 2 * images.len() {
        return vec![Bytes::from(format!("{}{}\n\n", ev_head(ev), json(ev)))];
    }
    open.push_str(rest);
    open.push_str("\n\n");
    pieces.push(Bytes::from(open));
    pieces
}

fn ev_head(ev: &StreamEvent) -> String {
    format!("event: {}\ndata: ", ev.event_type())
}

/// Cuts a frame's pieces into writes of `size` bytes (the last one shorter), as if the frame were one buffer:
/// a write that spans pieces, and the frame's last one, are copied together; every other one is a slice of its
/// piece.
pub(crate) fn writes(pieces: Vec<Bytes>, size: usize) -> Vec<Bytes> {
    let size = size.max(1);
    let mut out = Vec::new();
    let mut pending = BytesMut::new();
    for mut piece in pieces {
        if !pending.is_empty() {
            let take = (size - pending.len()).min(piece.len());
            pending.extend_from_slice(&piece.split_to(take));
            if pending.len() < size {
                continue;
            }
            out.push(pending.split().freeze());
        }
        while piece.len() >= size {
            out.push(piece.split_to(size));
        }
        if !piece.is_empty() {
            pending.extend_from_slice(&piece);
        }
    }
    if !pending.is_empty() {
        out.push(pending.freeze());
    }
    out
}

/// Every image string of an event, in a fixed order.
fn image_slots(ev: &mut StreamEvent) -> Vec<&mut B64> {
    match ev {
        StreamEvent::PartialImage(p) => vec![&mut p.partial_image_b64],
        StreamEvent::OutputItemAdded(e) | StreamEvent::OutputItemDone(e) => {
            item(&mut e.item).into_iter().collect()
        }
        StreamEvent::Created(r)
        | StreamEvent::InProgress(r)
        | StreamEvent::Completed(r)
        | StreamEvent::Failed(r)
        | StreamEvent::Incomplete(r) => r.response.output.iter_mut().filter_map(item).collect(),
        _ => Vec::new(),
    }
}

fn item(item: &mut OutputItem) -> Option<&mut B64> {
    match item {
        OutputItem::ImageGenerationCall(call) => call.result.as_mut(),
        _ => None,
    }
}

/// `"@@fake-image-N@@"` → N.
fn marker_number(s: &str) -> Option<usize> {
    s.strip_prefix(MARKER)?.strip_suffix("@@")?.parse().ok()
}

/// The text before the next marker string (up to its opening quote, included), its number, and the text from
/// its closing quote on.
fn next_marker(text: &str) -> Option<(&str, usize, &str)> {
    let open = text.find(&format!("\"{MARKER}"))?;
    let from = open + 1;
    let len = text[from..].find('"')?;
    let n = marker_number(&text[from..from + len])?;
    Some((&text[..from], n, &text[from + len..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentd_responses::{
        ImageGenerationCall, MessageContent, MessageItem, OutputItemEvent, PartialImageEvent, ResponseEvent,
    };

    fn image(n: usize, seed: u8) -> B64 {
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let text: String = (0..n)
            .map(|i| alphabet[(i * 7 + usize::from(seed)) % 64] as char)
            .collect();
        B64::from(text)
    }

    fn call(result: Option<B64>) -> OutputItem {
        OutputItem::ImageGenerationCall(ImageGenerationCall {
            id: "ig_1".to_owned(),
            status: Some("completed".to_owned()),
            result,
            ..Default::default()
        })
    }

    fn events() -> Vec<StreamEvent> {
        let message = OutputItem::Message(MessageItem {
            id: Some("msg_1".to_owned()),
            status: Some("completed".to_owned()),
            role: "assistant".to_owned(),
            content: vec![MessageContent::OutputText {
                text: "a \"quoted\" @@fake-image-0@@ line".to_owned(),
                annotations: Vec::new(),
                logprobs: None,
            }],
            ..Default::default()
        });
        let mut completed = ResponseEvent::default();
        completed.response.output = vec![
            call(Some(image(100_000, 1))),
            message,
            call(Some(image(20, 2))),
            call(Some(image(SPLICE_MIN, 3))),
        ];
        let mut looks_like_a_marker = ResponseEvent::default();
        looks_like_a_marker.response.output = vec![
            OutputItem::Message(MessageItem {
                content: vec![MessageContent::Refusal {
                    refusal: format!("{MARKER}0@@"),
                }],
                ..Default::default()
            }),
            call(Some(image(SPLICE_MIN, 6))),
            OutputItem::Message(MessageItem {
                content: vec![MessageContent::Refusal {
                    refusal: format!("{MARKER}9@@"),
                }],
                ..Default::default()
            }),
            call(Some(image(SPLICE_MIN, 7))),
        ];
        vec![
            StreamEvent::PartialImage(PartialImageEvent {
                item_id: "ig_1".to_owned(),
                partial_image_b64: image(70_001, 4),
                ..Default::default()
            }),
            StreamEvent::OutputItemDone(OutputItemEvent {
                sequence_number: Some(3),
                output_index: 0,
                item: call(Some(image(SPLICE_MIN - 1, 5))),
            }),
            StreamEvent::Completed(completed),
            StreamEvent::Completed(looks_like_a_marker),
        ]
    }

    fn joined(pieces: &[Bytes]) -> Vec<u8> {
        pieces.iter().flat_map(|p| p.iter().copied()).collect()
    }

    #[test]
    fn a_spliced_frame_is_the_serialized_frame_and_shares_the_images() {
        let decorate = |ev: &StreamEvent| format!("{{\"x\":1,{}", &ev.to_json().unwrap()[1..]);
        let mut shared = 0;
        for mut ev in events() {
            let before = ev.to_json().unwrap();
            let whole = format!("event: {}\ndata: {}\n\n", ev.event_type(), decorate(&ev));
            let images: Vec<Bytes> = image_slots(&mut ev).iter().map(|b| b.to_bytes()).collect();
            let pieces = frame(&mut ev, decorate);
            assert_eq!(String::from_utf8(joined(&pieces)).unwrap(), whole);
            assert_eq!(ev.to_json().unwrap(), before, "the event is left as it was");
            for image in images {
                let in_pieces = pieces.iter().any(|p| p.as_ptr() == image.as_ptr());
                assert!(!in_pieces || image.len() >= SPLICE_MIN, "{} chars", image.len());
                shared += usize::from(in_pieces);
            }
        }
        assert_eq!(
            shared, 3,
            "the last event's text looks like a marker: serialized whole"
        );
    }

    #[test]
    fn writes_are_the_frame_cut_at_every_size_whatever_its_pieces() {
        let mut ev = events().remove(2);
        let pieces = frame(&mut ev, |e| e.to_json().unwrap());
        let whole = joined(&pieces);
        for size in [1, 7, 1460, 16_384, 100_000, whole.len(), whole.len() + 1] {
            let out = writes(pieces.clone(), size);
            assert_eq!(joined(&out), whole, "size {size}");
            let (last, full) = out.split_last().unwrap();
            assert!(full.iter().all(|w| w.len() == size), "size {size}");
            assert!(!last.is_empty() && last.len() <= size, "size {size}");
        }
    }
}
