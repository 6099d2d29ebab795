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
    pub(crate) fn name(self) -> &'static str {
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

    pub(crate) fn parse(s: &str) -> Option<Self> {
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
    pub(crate) fn name(self) -> &'static str {
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

    pub(crate) fn parse(s: &str) -> Option<Self> {
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
    /// A U+0000 in the text reply.
    pub nul: bool,
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
    /// The text reply padded to this many KB (1 KB = 1000 bytes); 0 = the canned sentence.
    pub text_kb: u32,
    /// Partial images of about this many MB each; 0 = small.
    pub partial_mb: u32,
}

impl Scenario {
    pub(crate) fn of(kind: Kind) -> Self {
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
    pub fn text_kb(mut self, kb: u32) -> Self {
        self.text_kb = kb;
        self
    }
    pub fn partial_mb(mut self, mb: u32) -> Self {
        self.partial_mb = mb;
        self
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
