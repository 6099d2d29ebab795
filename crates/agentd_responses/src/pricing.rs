//! Published image-generation billing facts (wire notes §5.2, §5.3): output tokens per final image by model,
//! quality and size, and the USD price of image output tokens. Estimates only: the upstream's
//! `tool_usage.image_gen` is the billing truth when present. Each partial image adds
//! [`PARTIAL_IMAGE_TOKENS`].

/// Output tokens each partial image adds.
pub const PARTIAL_IMAGE_TOKENS: u64 = 100;

fn parse_size(size: &str) -> Option<(u32, u32)> {
    let (w, h) = size.split_once('x')?;
    Some((w.parse().ok()?, h.parse().ok()?))
}

/// Image output tokens of one final image (`auto` or an unparsable size counts as 1024x1024).
pub fn image_output_tokens(model: &str, quality: &str, size: &str) -> u64 {
    let (w, h) = parse_size(size).unwrap_or((1024, 1024));
    if model.starts_with("gpt-image-2") {
        // The calculator's formula for gpt-image-2: f·s·(2,000,000 + W·H) / 4,000,000, rounded up.
        let f: u64 = match quality {
            "low" => 16,
            "high" | "xhigh" | "max" => 96,
            _ => 48,
        };
        let (long, short) = (u64::from(w.max(h)), u64::from(w.min(h)));
        let s = (2 * f * short + long) / (2 * long.max(1));
        (f * s * (2_000_000 + u64::from(w) * u64::from(h))).div_ceil(4_000_000)
    } else {
        let row: [u64; 3] = match quality {
            "low" => [272, 408, 400],
            "high" => [4160, 6240, 6208],
            _ => [1056, 1584, 1568],
        };
        match (w, h) {
            (1024, 1536) => row[1],
            (1536, 1024) => row[2],
            _ => row[0],
        }
    }
}

/// USD per million image output tokens.
pub fn image_output_usd_per_million(model: &str) -> f64 {
    if model.starts_with("gpt-image-1-mini") {
        8.0
    } else if model.starts_with("gpt-image-1.5") {
        32.0
    } else if model.starts_with("gpt-image-1") {
        40.0
    } else {
        30.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_readings() {
        assert_eq!(image_output_tokens("gpt-image-2", "high", "1024x1024"), 7024);
        assert_eq!(image_output_tokens("gpt-image-2", "high", "1024x1536"), 5488);
        assert_eq!(image_output_tokens("gpt-image-2", "high", "2048x2048"), 14272);
        assert_eq!(image_output_tokens("gpt-image-2", "high", "3840x2160"), 13342);
        assert_eq!(image_output_tokens("gpt-image-2", "medium", "1536x1024"), 1372);
        assert_eq!(image_output_tokens("gpt-image-2", "low", "1024x1024"), 196);
        assert_eq!(image_output_tokens("gpt-image-1.5", "high", "1536x1024"), 6208);
        assert_eq!(image_output_tokens("gpt-image-1-mini", "low", "1024x1536"), 408);
        let usd = image_output_tokens("gpt-image-1", "high", "1024x1024") as f64
            * image_output_usd_per_million("gpt-image-1")
            / 1e6;
        assert!((usd - 0.1664).abs() < 1e-9, "the $0.167 list price");
    }
}
