//! Request validation like the real endpoint: `model` required, known `tools[].type`, and the
//! `image_generation` tool's parameter rules (sizes, quality, formats, transparency, input_fidelity,
//! partial_images). Works on the raw JSON so out-of-range values are reported, not silently dropped.

use serde_json::Value;

use crate::errors::FakeError;

const KNOWN_TOOLS: &[&str] = &[
    "image_generation",
    "function",
    "web_search",
    "web_search_preview",
    "file_search",
    "code_interpreter",
    "mcp",
    "computer_use_preview",
    "local_shell",
    "shell",
    "custom",
    "apply_patch",
];

fn invalid_value(param: &str, value: &Value, allowed: &str) -> FakeError {
    FakeError::invalid(
        Some("invalid_value"),
        param,
        format!("Invalid value: {value}. Supported values are: {allowed}."),
    )
}

fn check_enum(tool: &Value, i: usize, field: &str, allowed: &[&str]) -> Result<(), FakeError> {
    match tool.get(field) {
        None | Some(Value::Null) => Ok(()),
        Some(v) if v.as_str().is_some_and(|s| allowed.contains(&s)) => Ok(()),
        Some(v) => Err(invalid_value(
            &format!("tools[{i}].{field}"),
            v,
            &allowed.join(", "),
        )),
    }
}

fn is_flexible(model: &str) -> bool {
    model.starts_with("gpt-image-2")
}

/// Size rules: the 3 standard sizes and `auto`; gpt-image-2* also any `WxH` with edges multiple of 16,
/// max edge ≤ 3840, aspect ≤ 3:1 and 655,360–8,294,400 pixels.
pub fn size_ok(model: &str, size: &str) -> bool {
    if matches!(size, "auto" | "1024x1024" | "1024x1536" | "1536x1024") {
        return true;
    }
    if !is_flexible(model) {
        return false;
    }
    let Some((w, h)) = parse_size(size) else {
        return false;
    };
    let (long, short) = (w.max(h), w.min(h));
    w % 16 == 0
        && h % 16 == 0
        && long <= 3840
        && long <= 3 * short
        && (655_360..=8_294_400).contains(&(u64::from(w) * u64::from(h)))
}

/// `"WxH"` → (W, H).
pub fn parse_size(size: &str) -> Option<(u32, u32)> {
    let (w, h) = size.split_once('x')?;
    let (w, h) = (w.parse::<u32>().ok()?, h.parse::<u32>().ok()?);
    (w > 0 && h > 0).then_some((w, h))
}

fn check_image_tool(tool: &Value, i: usize) -> Result<(), FakeError> {
    let model = tool.get("model").and_then(Value::as_str).unwrap_or("gpt-image-1");
    if let Some(size) = tool.get("size").filter(|v| !v.is_null())
        && !size.as_str().is_some_and(|s| size_ok(model, s))
    {
        return Err(FakeError::invalid(
            Some("invalid_value"),
            &format!("tools[{i}].size"),
            format!(
                "Invalid size {size} for model '{model}'. Supported: auto, 1024x1024, 1024x1536, 1536x1024{}.",
                if is_flexible(model) {
                    ", or WxH with edges multiple of 16, max edge 3840, aspect ratio at most 3:1 and \
                     655360 to 8294400 pixels"
                } else {
                    ""
                }
            ),
        ));
    }
    let mut qualities = vec!["low", "medium", "high", "auto"];
    if model.starts_with("gpt-image-2.5") {
        qualities.extend(["xhigh", "max"]);
    }
    check_enum(tool, i, "quality", &qualities)?;
    check_enum(tool, i, "output_format", &["png", "webp", "jpeg"])?;
    check_enum(tool, i, "background", &["transparent", "opaque", "auto"])?;
    check_enum(tool, i, "moderation", &["auto", "low"])?;
    check_enum(tool, i, "action", &["generate", "edit", "auto"])?;
    check_enum(tool, i, "input_fidelity", &["high", "low"])?;
    let format = tool.get("output_format").and_then(Value::as_str).unwrap_or("png");
    if tool.get("background").and_then(Value::as_str) == Some("transparent") && format == "jpeg" {
        return Err(FakeError::invalid(
            Some("invalid_value"),
            &format!("tools[{i}].background"),
            "Transparent background requires output_format 'png' or 'webp'.".to_owned(),
        ));
    }
    if tool.get("input_fidelity").is_some_and(|v| !v.is_null())
        && (is_flexible(model) || model.starts_with("gpt-image-1-mini"))
    {
        return Err(FakeError::invalid(
            Some("unsupported_parameter"),
            &format!("tools[{i}].input_fidelity"),
            format!("Unsupported parameter: 'input_fidelity' is not supported with model '{model}'."),
        ));
    }
    if let Some(p) = tool.get("partial_images").filter(|v| !v.is_null())
        && p.as_u64().is_none_or(|n| n > 3)
    {
        return Err(FakeError::invalid(
            Some("integer_above_max_value"),
            &format!("tools[{i}].partial_images"),
            format!("Invalid 'tools[{i}].partial_images': expected an integer between 0 and 3, got {p}."),
        ));
    }
    if let Some(c) = tool.get("output_compression").filter(|v| !v.is_null())
        && c.as_u64().is_none_or(|n| n > 100)
    {
        return Err(invalid_value(
            &format!("tools[{i}].output_compression"),
            c,
            "0 to 100",
        ));
    }
    Ok(())
}

/// Validates a parsed request body.
pub fn validate(body: &Value) -> Result<(), FakeError> {
    if !body.is_object() {
        return Err(FakeError::new(
            400,
            "invalid_request_error",
            None,
            None,
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your \
             HTTP library correctly.)"
                .to_owned(),
        ));
    }
    if body
        .get("model")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(FakeError::invalid(
            Some("missing_required_parameter"),
            "model",
            "Missing required parameter: 'model'.".to_owned(),
        ));
    }
    if let Some(tools) = body.get("tools").filter(|v| !v.is_null()) {
        let Some(tools) = tools.as_array() else {
            return Err(FakeError::invalid(
                Some("invalid_type"),
                "tools",
                "Invalid type for 'tools': expected an array.".to_owned(),
            ));
        };
        for (i, tool) in tools.iter().enumerate() {
            let kind = tool.get("type").and_then(Value::as_str).unwrap_or_default();
            if !KNOWN_TOOLS.contains(&kind) {
                return Err(invalid_value(
                    &format!("tools[{i}].type"),
                    &Value::from(kind),
                    &KNOWN_TOOLS.join(", "),
                ));
            }
            if kind == "image_generation" {
                check_image_tool(tool, i)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert!(size_ok("gpt-image-1.5", "1024x1536"));
        assert!(!size_ok("gpt-image-1.5", "2048x2048"));
        assert!(size_ok("gpt-image-2", "2048x1152"));
        assert!(size_ok("gpt-image-2", "3840x2160"));
        assert!(!size_ok("gpt-image-2", "3856x2160"));
        assert!(!size_ok("gpt-image-2", "1000x1000"));
        assert!(!size_ok("gpt-image-2", "3840x1024"));
        assert!(!size_ok("gpt-image-2", "512x512"));
    }
}
