//! Reading the server's log: colours removed, the address of its `listening` line and of its metrics listener.

use std::net::SocketAddr;

/// The address of a `listening` log line, text (`… listening addr=127.0.0.1:PORT`) or JSON.
pub(crate) fn listening_addr(line: &str) -> Option<SocketAddr> {
    if line.trim_start().starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let message = v.get("message").or_else(|| v.pointer("/fields/message"))?;
        if message != "listening" {
            return None;
        }
        let addr = v.get("addr").or_else(|| v.pointer("/fields/addr"))?;
        return addr.as_str()?.parse().ok();
    }
    let mut words = line.split_whitespace();
    words.find(|w| *w == "listening")?;
    words.find_map(|w| w.strip_prefix("addr=")?.parse().ok())
}

/// The metrics listener's address from the line that announces it (`… metrics_addr=127.0.0.1:PORT`, or JSON).
pub(crate) fn metrics_addr(line: &str) -> Option<SocketAddr> {
    if line.trim_start().starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let addr = v
            .get("metrics_addr")
            .or_else(|| v.pointer("/fields/metrics_addr"))?;
        return addr.as_str()?.parse().ok();
    }
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("metrics_addr=")?.parse().ok())
}

/// Removes ANSI escape sequences (`ESC [ … final-byte`), which the text log format uses for colours.
pub(crate) fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_address_in_text_and_json_lines() {
        let text = "2026-01-01T00:00:00.000000Z \u{1b}[32m INFO\u{1b}[0m listening \u{1b}[3maddr\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:4321";
        assert_eq!(
            listening_addr(&strip_ansi(text)),
            Some(SocketAddr::from(([127, 0, 0, 1], 4321)))
        );
        let json = r#"{"timestamp":"x","level":"INFO","message":"listening","addr":"127.0.0.1:99"}"#;
        assert_eq!(listening_addr(json), Some(SocketAddr::from(([127, 0, 0, 1], 99))));
        assert_eq!(listening_addr("INFO starting agentd addr=127.0.0.1:1"), None);
        let metrics = "2026-01-01T00:00:00Z \u{1b}[32m INFO\u{1b}[0m metrics: GET http://127.0.0.1:77/metrics \u{1b}[3mmetrics_addr\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:77";
        assert_eq!(
            listening_addr(&strip_ansi(metrics)),
            None,
            "not the public address"
        );
        assert_eq!(
            metrics_addr(&strip_ansi(metrics)),
            Some(SocketAddr::from(([127, 0, 0, 1], 77)))
        );
        let json = r#"{"level":"INFO","metrics_addr":"127.0.0.1:78","message":"metrics: GET http://127.0.0.1:78/metrics"}"#;
        assert_eq!(metrics_addr(json), Some(SocketAddr::from(([127, 0, 0, 1], 78))));
    }
}
