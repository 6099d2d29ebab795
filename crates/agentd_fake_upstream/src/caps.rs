//! Caps on what a `#fake:` directive may ask for, for the built-in offline model: there the directive comes
//! from an end user's message, so every value that costs memory or time is **clamped** (never refused: the
//! turn still answers, only smaller or sooner). The test server has no caps ([`crate::FakeConfig::caps`] is
//! `None`), so tests keep their unbounded knobs.

use std::time::Duration;

use crate::scenario::Scenario;

/// Upper bounds for directive values (lower bound for `chunk`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectiveCaps {
    /// `big` and `big-other` (given in MB = 1,000,000 bytes) stay at or under this many bytes: the
    /// server's own image cap (`IMAGE_OUTPUT_MAX_MB`) for the offline model.
    pub max_bytes: u64,
    /// `images`.
    pub max_images: u32,
    /// `deltas`.
    pub max_deltas: u32,
    /// `delay` and `stall`.
    pub max_delay: Duration,
    /// `gap` (paid once per event).
    pub max_gap: Duration,
    /// `retry-after`, in seconds.
    pub max_retry_after: u32,
    /// `chunk` is raised to at least this many bytes (tiny writes of a big event cost a queue entry each).
    pub min_chunk: usize,
}

impl DirectiveCaps {
    /// The offline model's caps, with images capped at `max_image_bytes`.
    pub fn offline(max_image_bytes: u64) -> Self {
        Self {
            max_bytes: max_image_bytes,
            max_images: 4,
            max_deltas: 64,
            max_delay: Duration::from_secs(5),
            max_gap: Duration::from_secs(1),
            max_retry_after: 5,
            min_chunk: 1024,
        }
    }
}

impl Scenario {
    /// This scenario with every value within `caps`.
    pub fn clamped(mut self, caps: &DirectiveCaps) -> Self {
        let max_mb = u32::try_from(caps.max_bytes / 1_000_000).unwrap_or(u32::MAX);
        self.big_mb = self.big_mb.min(max_mb);
        self.big_other_mb = self.big_other_mb.min(max_mb);
        self.partial_mb = self.partial_mb.min(max_mb);
        self.text_kb = self.text_kb.min(64);
        self.images = self.images.min(caps.max_images);
        self.partials = self.partials.map(|p| p.min(3));
        self.deltas = self.deltas.min(caps.max_deltas);
        self.delay = self.delay.min(caps.max_delay);
        self.stall = self.stall.min(caps.max_delay);
        self.gap = self.gap.min(caps.max_gap);
        self.retry_after = self.retry_after.map(|s| s.min(caps.max_retry_after));
        self.chunk = self.chunk.map(|c| c.max(caps.min_chunk));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(directive: &str) -> Scenario {
        Scenario::find_in(directive).map(|(sc, _)| sc).unwrap_or_default()
    }

    #[test]
    fn every_costly_value_is_clamped_to_the_offline_caps() {
        let caps = DirectiveCaps::offline(6 * 1024 * 1024);
        let sc = parse(
            "#fake:image big=5000000 big-other=5000000 images=4000000 partials=200 deltas=4000000000 \
             delay=99999999 stall=99999999 gap=99999999 retry-after=99999 chunk=1 fail=429",
        )
        .clamped(&caps);
        assert_eq!((sc.big_mb, sc.big_other_mb), (6, 6), "6 MiB holds 6 MB, not 7");
        assert_eq!((sc.images, sc.partials, sc.deltas), (4, Some(3), 64));
        assert_eq!(
            (sc.delay, sc.stall, sc.gap),
            (
                Duration::from_secs(5),
                Duration::from_secs(5),
                Duration::from_secs(1)
            )
        );
        assert_eq!((sc.retry_after, sc.chunk), (Some(5), Some(1024)));
    }

    #[test]
    fn small_values_and_other_caps_pass_unchanged() {
        let sc = parse("#fake:image big=2 images=2 partials=1 gap=10 chunk=4096 generating");
        assert_eq!(sc.clone().clamped(&DirectiveCaps::offline(6 * 1024 * 1024)), sc);
        // A 1 MiB image cap allows `big=1` (1,000,000 bytes) and nothing above.
        let one = parse("#fake:image big=2 big-other=9").clamped(&DirectiveCaps::offline(1024 * 1024));
        assert_eq!((one.big_mb, one.big_other_mb), (1, 1));
    }
}
