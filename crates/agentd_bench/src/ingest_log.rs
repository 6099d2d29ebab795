//! agentd's JSON log lines (`LOG_FORMAT=json`), read from its stdout: every `"image stored"` line's
//! `ingest_ms` (agentd's own clock, from having parsed the upstream's `response.output_item.done` to emitting
//! the `attachment` event), plus a count and a sample of WARN/ERROR lines. Fields may be flattened into the
//! top level or nested under `"fields"`; both are read. This is a second opinion beside the timing proxy's
//! figure (which needs no log field): if the message or field is renamed, the report shows `n=0` here and
//! nothing else changes.

use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;

use crate::agentd::Tap;

/// What was collected so far.
#[derive(Debug, Default)]
struct Seen {
    ingest_ms: Vec<f64>,
    lines: u64,
    unparsed: u64,
    warnings: u64,
    warning_samples: Vec<String>,
}

/// Shared between the stdout reader thread and the benchmark.
#[derive(Debug, Default, Clone)]
pub struct IngestLog {
    seen: Arc<Mutex<Seen>>,
}

/// A field of a tracing JSON line: top level (`flatten_event`) or under `fields`.
fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).or_else(|| v.get("fields").and_then(|f| f.get(key)))
}

impl IngestLog {
    /// The tap to pass to [`crate::agentd::Launch::stdout_tap`].
    pub fn tap(&self) -> Tap {
        let me = self.clone();
        Arc::new(move |line: &str| me.observe(line))
    }

    fn observe(&self, line: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.lines += 1;
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            seen.unparsed += 1;
            return;
        };
        let message = field(&v, "message").and_then(Value::as_str).unwrap_or("");
        if message == "image stored" {
            match field(&v, "ingest_ms").and_then(value_f64) {
                Some(ms) => seen.ingest_ms.push(ms),
                None => seen.unparsed += 1,
            }
        }
        let level = v.get("level").and_then(Value::as_str).unwrap_or("");
        if matches!(level, "WARN" | "ERROR") {
            seen.warnings += 1;
            if seen.warning_samples.len() < 3 {
                seen.warning_samples
                    .push(crate::turns::clip(&format!("{level} {message}"), 140));
            }
        }
    }

    /// `ingest_ms` values seen so far.
    pub fn stored(&self) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .ingest_ms
            .len()
    }

    /// `ingest_ms` values from index `from` on.
    pub fn ingest_since(&self, from: usize) -> Vec<f64> {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.ingest_ms
            .get(from..)
            .map(<[f64]>::to_vec)
            .unwrap_or_default()
    }

    /// Lines read, lines that were not JSON (or an `image stored` line without a numeric `ingest_ms`),
    /// WARN/ERROR lines and up to three of them.
    pub fn counts(&self) -> (u64, u64, u64, Vec<String>) {
        let s = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        (s.lines, s.unparsed, s.warnings, s.warning_samples.clone())
    }
}

/// A JSON number, or a string holding one.
fn value_f64(v: &Value) -> Option<f64> {
    v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_flat_and_nested_lines() {
        let log = IngestLog::default();
        let tap = log.tap();
        tap(r#"{"timestamp":"t","level":"INFO","message":"image stored","ingest_ms":12.5,"size_bytes":6}"#);
        tap(r#"{"level":"INFO","fields":{"message":"image stored","ingest_ms":"3"}}"#);
        tap(r#"{"level":"WARN","fields":{"message":"slow"}}"#);
        tap("not json");
        assert_eq!(log.ingest_since(0), vec![12.5, 3.0]);
        assert_eq!(log.ingest_since(1), vec![3.0]);
        assert_eq!(log.ingest_since(9), Vec::<f64>::new());
        let (lines, unparsed, warnings, _) = log.counts();
        assert_eq!((lines, unparsed, warnings), (4, 1, 1));
    }
}
