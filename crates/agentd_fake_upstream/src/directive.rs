//! The `#fake:` directive: a [`Scenario`] rendered to one line of text and parsed back (the grammar is
//! documented at the crate root).

use crate::scenario::{Failure, Kind, Scenario, TextPlacement};
use std::time::Duration;

impl Scenario {
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
        if self.text_kb > 0 {
            kv("text-kb", self.text_kb.to_string());
        }
        if self.partial_mb > 0 {
            kv("partial-mb", self.partial_mb.to_string());
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
            ("nul", self.nul),
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
                "text-kb" => sc.text_kb = small(num).unwrap_or(0),
                "partial-mb" => sc.partial_mb = small(num).unwrap_or(0),
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
                "nul" => sc.nul = true,
                _ => {}
            }
        }
        Some((sc, line.to_owned()))
    }
}
