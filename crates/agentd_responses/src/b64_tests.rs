//! Unit tests of `b64.rs`.

use super::*;

#[derive(serde::Deserialize)]
struct Holder {
    b: B64,
}

#[test]
fn borrowed_strings_become_slices_of_the_source() {
    let src = ByteString::from(String::from(r#"{"b":"aGVsbG8="}"#));
    let h: Holder = with_source(&src, |t| serde_json::from_str(t)).unwrap();
    assert_eq!(h.b.as_str(), "aGVsbG8=");
    let offset = h.b.as_str().as_ptr() as usize - src.as_ptr() as usize;
    assert_eq!(offset, 6, "a slice of the source, not a copy");
    // Without a registered source (or from an escaped string) it is a copy.
    let h: Holder = serde_json::from_str(r#"{"b":"a\/b"}"#).unwrap();
    assert_eq!(h.b.as_str(), "a/b");
    assert_eq!(format!("{:?}", h.b), "B64(3 chars)");
}

/// `src` parsed through [`with_source`], and the length of each text the parser was handed.
fn parse_counted<T: de::DeserializeOwned>(src: &ByteString) -> (T, Vec<usize>) {
    let lens = RefCell::new(Vec::new());
    let parsed = with_source(src, |t| {
        lens.borrow_mut().push(t.len());
        serde_json::from_str(t)
    })
    .unwrap();
    (parsed, lens.into_inner())
}

#[test]
fn a_long_image_string_is_parsed_once_without_its_text() {
    let img = "Q".repeat(ELIDE_MIN * 2);
    let src = ByteString::from(format!(r#"{{"b":"{img}"}}"#));
    let (h, lens): (Holder, _) = parse_counted(&src);
    assert_eq!(lens.len(), 1, "`b` is no image key: nothing elided, one parse");
    assert_eq!(h.b.as_str(), img);

    let src = ByteString::from(format!(
        r#"{{"b":{{"result":"{img}"}},"partial_image_b64":"{img}"}}"#
    ));
    #[derive(serde::Deserialize)]
    struct Item {
        result: B64,
    }
    #[derive(serde::Deserialize)]
    struct Both {
        b: Item,
        partial_image_b64: B64,
    }
    let (h, lens): (Both, _) = parse_counted(&src);
    assert_eq!(
        lens.len(),
        1,
        "one parse, not a second one of the whole text: {lens:?}"
    );
    assert!(
        lens[0] < 200,
        "the parser saw the markers, not the images: {lens:?}"
    );
    for b in [&h.b.result, &h.partial_image_b64] {
        assert_eq!(b.as_str(), img);
        let offset = b.as_str().as_ptr() as usize - src.as_ptr() as usize;
        assert!(offset < src.len(), "a slice of the source");
    }
}
