//! The `size` rule of the image tool, per image model: the standard sizes everywhere, flexible `WxH` sizes for
//! gpt-image-2 and later.

const STANDARD_SIZES: &[&str] = &["auto", "1024x1024", "1024x1536", "1536x1024"];

/// The major version of a `gpt-image-N…` model, 0 when it is not one.
pub(crate) fn image_model_major(model: &str) -> u32 {
    model
        .strip_prefix("gpt-image-")
        .map(|rest| rest.chars().take_while(char::is_ascii_digit).collect::<String>())
        .and_then(|digits| digits.parse().ok())
        .unwrap_or(0)
}

/// Size rules: the three standard sizes (and `auto`) everywhere; for gpt-image-2 and later also any `WxH`
/// with both sides multiples of 16, longest side ≤ 3840, aspect ≤ 3:1 and 655,360–8,294,400 pixels.
pub fn check_size(model: &str, size: &str) -> Result<(), String> {
    if STANDARD_SIZES.contains(&size) {
        return Ok(());
    }
    let flexible = image_model_major(model) >= 2;
    let standard = "auto, 1024x1024, 1024x1536 or 1536x1024";
    if !flexible {
        return Err(format!("{model} accepts {standard}"));
    }
    let rule = "WxH with both sides multiples of 16, longest side at most 3840, aspect at most 3:1 and \
                655,360 to 8,294,400 pixels";
    let parsed = size
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)));
    let Some((w, h)) = parsed else {
        return Err(format!("{standard}, or {rule}"));
    };
    let (long, short) = (w.max(h), w.min(h));
    let pixels = u64::from(w) * u64::from(h);
    let ok = w % 16 == 0
        && h % 16 == 0
        && long <= 3840
        && short > 0
        && long <= 3 * short
        && (655_360..=8_294_400).contains(&pixels);
    if ok {
        Ok(())
    } else {
        Err(format!("{standard}, or {rule}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_and_flexible_sizes() {
        assert!(check_size("gpt-image-1.5", "1024x1536").is_ok());
        assert!(check_size("gpt-image-1.5", "2048x2048").is_err());
        assert!(check_size("gpt-image-2", "2048x2048").is_ok());
        assert!(check_size("gpt-image-2-2026-04-21", "3840x2160").is_ok());
        assert!(check_size("gpt-image-2.5-flare", "2048x1152").is_ok());
        assert!(
            check_size("gpt-image-2", "3856x2160").is_err(),
            "longest side over 3840"
        );
        assert!(
            check_size("gpt-image-2", "1000x1000").is_err(),
            "not multiples of 16"
        );
        assert!(check_size("gpt-image-2", "3840x1040").is_err(), "aspect over 3:1");
        assert!(
            check_size("gpt-image-2", "1024x624").is_err(),
            "under 655,360 pixels"
        );
        assert!(
            check_size("gpt-image-2", "1024x640").is_ok(),
            "exactly 655,360 pixels"
        );
        assert!(check_size("gpt-image-2", "big").is_err());
    }
}
