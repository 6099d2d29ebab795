//! Large events are parsed with their long image strings cut out: the image fields still come out as slices of
//! the event, and nothing else — long text, other keys, items of unknown types — changes.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use agentd_responses::{OutputItem, StreamEvent};
use bytestring::ByteString;

fn b64(n: usize, c: char) -> String {
    std::iter::repeat_n(c, n).collect()
}

fn within(source: &ByteString, part: &str) -> bool {
    let (s, p) = (source.as_ptr() as usize, part.as_ptr() as usize);
    s <= p && p + part.len() <= s + source.len()
}

#[test]
fn an_image_result_is_a_slice_of_its_event() {
    let image = b64(300_000, 'A');
    let raw = format!(
        r#"{{"type":"response.output_item.done","sequence_number":7,"output_index":0,"item":{{"id":"ig_1","type":"image_generation_call","status":"completed","result" : "{image}","revised_prompt":"a cat"}}}}"#
    );
    let source = ByteString::from(raw);
    let StreamEvent::OutputItemDone(e) = StreamEvent::parse_bytes(&source).unwrap() else {
        panic!("not output_item.done");
    };
    let OutputItem::ImageGenerationCall(call) = e.item else {
        panic!("not an image call");
    };
    let result = call.result.unwrap();
    assert_eq!(result.as_str(), image);
    assert!(within(&source, &result.as_str()), "a slice, not a copy");
    assert_eq!(call.revised_prompt.as_deref(), Some("a cat"));
    assert_eq!(e.sequence_number, Some(7));
}

#[test]
fn a_partial_image_is_a_slice_and_long_text_is_left_alone() {
    let image = b64(200_000, 'B');
    let raw = format!(
        r#"{{"type":"response.image_generation_call.partial_image","output_index":0,"item_id":"ig_1","partial_image_index":0,"partial_image_b64":"{image}"}}"#
    );
    let source = ByteString::from(raw);
    let StreamEvent::PartialImage(p) = StreamEvent::parse_bytes(&source).unwrap() else {
        panic!("not a partial image");
    };
    assert_eq!(p.partial_image_b64.as_str(), image);
    assert!(within(&source, &p.partial_image_b64.as_str()));

    // A completed response with a long text and an image: the text is parsed as sent, the image sliced.
    let text = b64(150_000, 'x');
    let image = b64(150_000, 'C');
    let raw = format!(
        r#"{{"type":"response.completed","response":{{"id":"resp_1","status":"completed","output":[{{"type":"message","role":"assistant","content":[{{"type":"output_text","text":"{text}","annotations":[]}}]}},{{"type":"image_generation_call","id":"ig_2","result":"{image}"}}]}}}}"#
    );
    let source = ByteString::from(raw);
    let StreamEvent::Completed(c) = StreamEvent::parse_bytes(&source).unwrap() else {
        panic!("not completed");
    };
    let OutputItem::Message(m) = &c.response.output[0] else {
        panic!("not a message");
    };
    let agentd_responses::MessageContent::OutputText { text: got, .. } = &m.content[0] else {
        panic!("not text");
    };
    assert_eq!(got, &text);
    let OutputItem::ImageGenerationCall(call) = &c.response.output[1] else {
        panic!("not an image call");
    };
    assert!(within(&source, &call.result.as_ref().unwrap().as_str()));
}

#[test]
fn unknown_items_and_events_are_kept_verbatim() {
    let long = b64(100_000, 'D');
    let item = format!(r#"{{"type":"future_call","id":"f_1","result":"{long}"}}"#);
    let raw = format!(r#"{{"type":"response.output_item.done","output_index":1,"item":{item}}}"#);
    let StreamEvent::OutputItemDone(e) = StreamEvent::parse_bytes(&ByteString::from(raw)).unwrap() else {
        panic!("not output_item.done");
    };
    let OutputItem::Other { raw, .. } = e.item else {
        panic!("not other");
    };
    assert_eq!(raw.get(), item, "the cut-out string is put back");

    let raw = format!(r#"{{"type":"response.future_event","result":"{long}","n":1}}"#);
    let StreamEvent::Other { raw: kept, .. } =
        StreamEvent::parse_bytes(&ByteString::from(raw.clone())).unwrap()
    else {
        panic!("not other");
    };
    assert_eq!(kept.get(), raw);
}

#[test]
fn a_long_result_outside_an_image_field_keeps_its_value() {
    // Kept as a JSON value (an unknown content part), not a base64 field: the event is parsed again whole.
    let long = b64(100_000, 'H');
    let raw = format!(
        r#"{{"type":"response.completed","response":{{"id":"resp_1","status":"completed","output":[{{"type":"message","role":"assistant","content":[{{"type":"output_image","result":"{long}"}}]}}]}}}}"#
    );
    let StreamEvent::Completed(c) = StreamEvent::parse_bytes(&ByteString::from(raw)).unwrap() else {
        panic!("not completed");
    };
    let OutputItem::Message(m) = &c.response.output[0] else {
        panic!("not a message");
    };
    let agentd_responses::MessageContent::Other(part) = &m.content[0] else {
        panic!("not an unknown part");
    };
    assert_eq!(part["result"].as_str(), Some(long.as_str()));
}

#[test]
fn escaped_or_forged_strings_are_parsed_normally() {
    // A result with an escape is not cut out: it is decoded by the parser (a copy).
    let image = format!("{}\\/", b64(100_000, 'E'));
    let raw = format!(
        r#"{{"type":"response.output_item.done","output_index":0,"item":{{"id":"ig_1","type":"image_generation_call","result":"{image}"}}}}"#
    );
    let StreamEvent::OutputItemDone(e) = StreamEvent::parse_bytes(&ByteString::from(raw)).unwrap() else {
        panic!("not output_item.done");
    };
    let OutputItem::ImageGenerationCall(call) = e.item else {
        panic!("not an image call");
    };
    assert_eq!(call.result.unwrap().as_str(), format!("{}/", b64(100_000, 'E')));
    // A marker sent by the upstream itself (it cannot know the parse's nonce) stays the string it is.
    let raw = format!(
        r#"{{"type":"response.output_item.done","output_index":0,"item":{{"id":"ig_1","type":"image_generation_call","result":"\u0000#0","partial_image_b64":"{}"}}}}"#,
        b64(100_000, 'F')
    );
    let StreamEvent::OutputItemDone(e) = StreamEvent::parse_bytes(&ByteString::from(raw)).unwrap() else {
        panic!("not output_item.done");
    };
    let OutputItem::ImageGenerationCall(call) = e.item else {
        panic!("not an image call");
    };
    assert_eq!(call.result.unwrap().as_str(), "\0#0");
    // Cut short: the parser reports it.
    let raw = format!(
        r#"{{"type":"response.output_item.done","item":{{"result":"{}"#,
        b64(100_000, 'G')
    );
    assert!(StreamEvent::parse_bytes(&ByteString::from(raw)).is_err());
}
