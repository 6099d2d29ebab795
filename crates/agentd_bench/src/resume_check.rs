//! What `bench-resume` checks a run by: each received event as compared (id, name, data without URLs, which are
//! minted fresh on every replay; previews are not kept), and the tally of a run's received events against a full
//! replay of it — lost, duplicated, different.

use std::collections::HashMap;

use serde_json::Value;
use sse_stream::Sse;

/// One event as the check compares it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Seen {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) data: Value,
}

/// `run.completed` or `error`: the stream ends with it.
pub(crate) fn is_terminal(name: &str) -> bool {
    matches!(name, "run.completed" | "error")
}

/// The event as compared: data without URLs (minted fresh on every replay); `None` for a preview.
pub(crate) fn seen(sse: &Sse) -> Result<Option<Seen>, String> {
    let name = sse.event.clone().unwrap_or_default();
    let id = sse
        .id
        .as_deref()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| format!("`{name}` without a numeric id"))?;
    if name == "image.partial" {
        return Ok(None);
    }
    let data: Value = serde_json::from_str(sse.data.as_deref().unwrap_or("null"))
        .map_err(|e| format!("`{name}` data is not JSON: {e}"))?;
    Ok(Some(Seen {
        id,
        name,
        data: without_urls(&data),
    }))
}

fn without_urls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| *k != "url" && *k != "url_expires_at")
                .map(|(k, v)| (k.clone(), without_urls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_urls).collect()),
        other => other.clone(),
    }
}

/// How a run's received events compare with its full replay.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    /// Events of the full replay.
    pub replayed: usize,
    /// Replayed events never received.
    pub lost: usize,
    /// Extra receptions of an id.
    pub duplicated: usize,
    /// Received events whose name or data differ from the replay's (or that the replay does not have).
    pub different: usize,
}

/// Counts what `got` lost, duplicated and got different from `replay`.
pub(crate) fn tally(got: &[Seen], replay: &[Seen]) -> Tally {
    let reference: HashMap<u64, &Seen> = replay.iter().map(|e| (e.id, e)).collect();
    let mut received: HashMap<u64, usize> = HashMap::new();
    let mut different = 0;
    for e in got {
        *received.entry(e.id).or_default() += 1;
        if reference.get(&e.id).is_none_or(|r| *r != e) {
            different += 1;
        }
    }
    Tally {
        replayed: replay.len(),
        lost: reference.keys().filter(|id| !received.contains_key(id)).count(),
        duplicated: received.values().map(|n| n - 1).sum(),
        different,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_not_compared_and_previews_not_kept() {
        let att = Sse {
            event: Some("attachment".into()),
            id: Some("7".into()),
            data: Some(r#"{"attachment":{"object_id":"o","url":"http://x?sig=1","size_bytes":3}}"#.into()),
            retry: None,
        };
        let a = seen(&att).unwrap().unwrap();
        assert_eq!(a.id, 7);
        let mut again = att.clone();
        again.data = Some(r#"{"attachment":{"object_id":"o","url":"http://y?sig=2","size_bytes":3}}"#.into());
        assert_eq!(a, seen(&again).unwrap().unwrap());
        again.data = Some(r#"{"attachment":{"object_id":"p","url":"http://y?sig=2","size_bytes":3}}"#.into());
        assert_ne!(a, seen(&again).unwrap().unwrap());
        let partial = Sse {
            event: Some("image.partial".into()),
            ..att
        };
        assert_eq!(seen(&partial), Ok(None));
    }

    fn ev(id: u64, text: &str) -> Seen {
        Seen {
            id,
            name: "message.delta".into(),
            data: serde_json::json!({ "text": text }),
        }
    }

    #[test]
    fn lost_duplicated_and_different_events_are_counted() {
        let replay = [ev(1, "a"), ev(2, "b"), ev(3, "c"), ev(4, "d")];
        let exact = tally(&replay, &replay);
        assert_eq!(
            (exact.replayed, exact.lost, exact.duplicated, exact.different),
            (4, 0, 0, 0)
        );
        let got = [ev(1, "a"), ev(2, "b"), ev(2, "b"), ev(4, "D"), ev(5, "e")];
        let bad = tally(&got, &replay);
        assert_eq!(
            (bad.lost, bad.duplicated, bad.different),
            (1, 1, 2),
            "3 lost; 2 twice; 4 differs, 5 unknown"
        );
    }
}
