//! The per-request scenario: a typed builder ([`Scenario`]) and the `#fake:` directive it renders to and is
//! parsed from (the grammar is documented at the crate root).

use std::time::Duration;

/// What the turn does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kind {
    /// Text only, several deltas.
    #[default]
    Text,
    /// Image call(s) plus text.
    Image,
    /// A failed (moderation_blocked) image call and an explaining message in a *completed* response.
    Moderation,
    /// Nested `error` event then `response.failed` (unless `no-terminal`).
    Error,
    /// Flat (documented) `error` event then `response.failed` (unless `no-terminal`).
    FlatError,
    /// `response.failed` only.
    Failed,
    /// `response.incomplete` (max_output_tokens) after a few deltas.
    Incomplete,
    /// Text stream cut after `eof-after` events (default 4), no terminal event.
    Eof,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Image => "image",
            Self::Moderation => "moderation",
            Self::Error => "error",
            Self::FlatError => "flat-error",
            Self::Failed => "failed",
            Self::Incomplete => "incomplete",
            Self::Eof => "eof",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "text" => Self::Text,
            "image" => Self::Image,
            "moderation" => Self::Moderation,
            "error" => Self::Error,
            "flat-error" => Self::FlatError,
            "failed" => Self::Failed,
            "incomplete" => Self::Incomplete,
            "eof" => Self::Eof,
            _ => return None,
        })
    }
}

/// Where the text goes relative to the image calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TextPlacement {
    Before,
    #[default]
    After,
    Both,
    None,
}

/// Pre-stream failure answered instead of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// 401 `invalid_api_key`.
    Unauthorized,
    /// 403 organization-verification message.
    Forbidden,
    /// 429 `rate_limit_exceeded` with `retry-after` and `x-ratelimit-*`.
    RateLimited,
    /// 429 `insufficient_quota` (must not be retried).
    Quota,
    /// 500 `server_error`.
    Server,
    /// 503 overloaded.
    Unavailable,
    /// 400 `conversation_locked`.
    ConversationLocked,
    /// 400 `previous_response_not_found` regardless of the id.
    PreviousNotFound,
}

impl Failure {
    fn name(self) -> &'static str {
        match self {
            Self::Unauthorized => "401",
            Self::Forbidden => "403",
            Self::RateLimited => "429",
            Self::Quota => "quota",
            Self::Server => "500",
            Self::Unavailable => "503",
            Self::ConversationLocked => "locked",
            Self::PreviousNotFound => "prev",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "401" => Self::Unauthorized,
            "403" => Self::Forbidden,
            "429" => Self::RateLimited,
            "quota" => Self::Quota,
            "500" => Self::Server,
            "503" => Self::Unavailable,
            "locked" => Self::ConversationLocked,
            "prev" => Self::PreviousNotFound,
            _ => return None,
        })
    }
}

/// A scenario; build one and embed [`Scenario::directive`] in the last user text.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scenario {
    pub kind: Kind,
    pub images: u32,
    /// Partial images per call; `None` = the tool's `partial_images` (0 if unset).
    pub partials: Option<u8>,
    /// Final image size in MB (decoded bytes, 1 MB = 1,000,000); 0 = small.
    pub big_mb: u32,
    /// A plain unknown event with this many MB on one line.
    pub big_other_mb: u32,
    pub text: TextPlacement,
    pub deltas: u32,
    /// Final image item says `status:"generating"` while carrying the full result.
    pub generating: bool,
    /// Inject unknown event types and unknown fields.
    pub unknown: bool,
    pub no_tool_usage: bool,
    /// No terminal event after an error event.
    pub no_terminal: bool,
    /// Append `data: [DONE]` after the terminal event.
    pub done_marker: bool,
    pub eof_after: Option<u32>,
    pub fail: Option<Failure>,
    /// Fail only the first K requests carrying this directive.
    pub times: Option<u32>,
    /// Seconds for `retry-after` on 429/503 (default 1).
    pub retry_after: Option<u32>,
    /// Silence before the first event.
    pub delay: Duration,
    /// Silence between every two events.
    pub gap: Duration,
    /// One silence in the middle (after `generating`, or after the first text delta).
    pub stall: Duration,
    /// Write chunk size in bytes; `None` = the server default (1460).
    pub chunk: Option<usize>,
}

impl Scenario {
    fn of(kind: Kind) -> Self {
        Self {
            kind,
            images: u32::from(kind == Kind::Image),
            deltas: 4,
            ..Self::default()
        }
    }
    pub fn text() -> Self {
        Self::of(Kind::Text)
    }
    pub fn image() -> Self {
        Self::of(Kind::Image)
    }
    pub fn moderation() -> Self {
        Self::of(Kind::Moderation)
    }
    pub fn error() -> Self {
        Self::of(Kind::Error)
    }
    pub fn flat_error() -> Self {
        Self::of(Kind::FlatError)
    }
    pub fn failed() -> Self {
        Self::of(Kind::Failed)
    }
    pub fn incomplete() -> Self {
        Self::of(Kind::Incomplete)
    }
    pub fn eof() -> Self {
        Self::of(Kind::Eof)
    }
    pub fn images(mut self, n: u32) -> Self {
        self.images = n;
        self
    }
    pub fn partials(mut self, n: u8) -> Self {
        self.partials = Some(n);
        self
    }
    pub fn big(mut self, mb: u32) -> Self {
        self.big_mb = mb;
        self
    }
    pub fn big_other(mut self, mb: u32) -> Self {
        self.big_other_mb = mb;
        self
    }
    pub fn text_at(mut self, placement: TextPlacement) -> Self {
        self.text = placement;
        self
    }
    pub fn deltas(mut self, n: u32) -> Self {
        self.deltas = n;
        self
    }
    pub fn generating(mut self) -> Self {
        self.generating = true;
        self
    }
    pub fn unknown(mut self) -> Self {
        self.unknown = true;
        self
    }
    pub fn no_tool_usage(mut self) -> Self {
        self.no_tool_usage = true;
        self
    }
    pub fn no_terminal(mut self) -> Self {
        self.no_terminal = true;
        self
    }
    pub fn done_marker(mut self) -> Self {
        self.done_marker = true;
        self
    }
    pub fn eof_after(mut self, events: u32) -> Self {
        self.eof_after = Some(events);
        self
    }
    pub fn fail(mut self, failure: Failure) -> Self {
        self.fail = Some(failure);
        self
    }
    pub fn times(mut self, k: u32) -> Self {
        self.times = Some(k);
        self
    }
    pub fn retry_after(mut self, secs: u32) -> Self {
        self.retry_after = Some(secs);
        self
    }
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
    pub fn gap(mut self, d: Duration) -> Self {
        self.gap = d;
        self
    }
    pub fn stall(mut self, d: Duration) -> Self {
        self.stall = d;
        self
    }
    pub fn chunk(mut self, bytes: usize) -> Self {
        self.chunk = Some(bytes);
        self
    }

    /// Renders the `#fake:` directive (one line).
    pub fn directive(&self) -> String {
        let mut parts = vec![format!("#fake:{}", self.kind.name())];
        let mut kv = |k: &str, v: String| parts.push(format!("{k}={v}"));
        if self.images != u32::from(self.kind == Kind::Image) {
            kv("images", self.images.to_string());
        }
        if let Some(p) = self.partials {
            kv("partials", p.to_string());
        }
        if self.big_mb > 0 {
            kv("big", self.big_mb.to_string());
        }
        if self.big_other_mb > 0 {
            kv("big-other", self.big_other_mb.to_string());
        }
        if self.text != TextPlacement::After {
            let t = match self.text {
                TextPlacement::Before => "before",
                TextPlacement::After => "after",
                TextPlacement::Both => "both",
                TextPlacement::None => "none",
            };
            kv("text", t.to_owned());
        }
        if self.deltas != 4 {
            kv("deltas", self.deltas.to_string());
        }
        if let Some(n) = self.eof_after {
            kv("eof-after", n.to_string());
        }
        if let Some(f) = self.fail {
            kv("fail", f.name().to_owned());
        }
        if let Some(k) = self.times {
            kv("times", k.to_string());
        }
        if let Some(s) = self.retry_after {
            kv("retry-after", s.to_string());
        }
        for (k, d) in [("delay", self.delay), ("gap", self.gap), ("stall", self.stall)] {
            if !d.is_zero() {
                kv(k, d.as_millis().to_string());
            }
        }
        if let Some(c) = self.chunk {
            kv("chunk", c.to_string());
        }
        for (flag, on) in [
            ("generating", self.generating),
            ("unknown", self.unknown),
            ("no-tool-usage", self.no_tool_usage),
            ("no-terminal", self.no_terminal),
            ("done", self.done_marker),
        ] {
            if on {
                parts.push(flag.to_owned());
            }
        }
        parts.join(" ")
    }

    /// Finds and parses the directive in a text: from `#fake:` to the end of that line. Unknown keys and
    /// unparsable values are ignored (the fake never fails on its own directive).
    pub fn find_in(text: &str) -> Option<(Self, String)> {
        let start = text.rfind("#fake:")?;
        let line = text[start..].lines().next().unwrap_or_default().trim();
        let mut tokens = line.split_whitespace();
        let head = tokens.next()?.trim_start_matches("#fake:");
        let mut sc = Self::of(Kind::parse(head).unwrap_or_default());
        for tok in tokens {
            let (k, v) = tok.split_once('=').unwrap_or((tok, ""));
            let num = v.parse::<u64>().ok();
            let ms = num.map(Duration::from_millis);
            let small = |n: Option<u64>| n.and_then(|n| u32::try_from(n).ok());
            match k {
                "images" => sc.images = small(num).unwrap_or(sc.images),
                "partials" => sc.partials = num.and_then(|n| u8::try_from(n).ok()),
                "big" => sc.big_mb = small(num).unwrap_or(0),
                "big-other" => sc.big_other_mb = small(num).unwrap_or(0),
                "text" => {
                    sc.text = match v {
                        "before" => TextPlacement::Before,
                        "both" => TextPlacement::Both,
                        "none" => TextPlacement::None,
                        _ => TextPlacement::After,
                    }
                }
                "deltas" => sc.deltas = small(num).unwrap_or(sc.deltas),
                "eof-after" => sc.eof_after = small(num),
                "fail" => sc.fail = Failure::parse(v),
                "times" => sc.times = small(num),
                "retry-after" => sc.retry_after = small(num),
                "delay" => sc.delay = ms.unwrap_or_default(),
                "gap" => sc.gap = ms.unwrap_or_default(),
                "stall" => sc.stall = ms.unwrap_or_default(),
                "chunk" => sc.chunk = num.and_then(|n| usize::try_from(n).ok()).filter(|n| *n > 0),
                "generating" => sc.generating = true,
                "unknown" => sc.unknown = true,
                "no-tool-usage" => sc.no_tool_usage = true,
                "no-terminal" => sc.no_terminal = true,
                "done" => sc.done_marker = true,
                _ => {}
            }
        }
        Some((sc, line.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directive_round_trips() {
        let sc = Scenario::image()
            .partials(2)
            .big(6)
            .fail(Failure::Unavailable)
            .times(2)
            .stall(Duration::from_millis(300))
            .generating();
        let text = format!("draw a cat {}\nthanks", sc.directive());
        let (parsed, line) = Scenario::find_in(&text).unwrap();
        assert_eq!(parsed, sc);
        assert!(line.starts_with("#fake:image"));
    }
}
