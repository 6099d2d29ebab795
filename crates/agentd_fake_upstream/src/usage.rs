//! Token accounting the fake reports: mainline `usage` (rough text estimate) and `tool_usage.image_gen`
//! output tokens per the wire notes §5.2 tables (+100 per partial image).

use agentd_responses::{ImageGenUsage, TokenSplit, Usage};

pub use agentd_responses::pricing::image_output_tokens;

/// Rough token count of a text (4 characters per token).
pub fn text_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4).max(1)
}

/// Mainline usage for a prompt and an answer.
pub fn mainline(prompt: &str, answer: &str) -> Usage {
    let input = 20 + text_tokens(prompt);
    let reasoning = 64;
    let output = text_tokens(answer) + reasoning;
    Usage {
        input_tokens: input,
        input_tokens_details: Some(serde_json::json!({ "cached_tokens": 0 })),
        output_tokens: output,
        output_tokens_details: Some(serde_json::json!({ "reasoning_tokens": reasoning })),
        total_tokens: input + output,
    }
}

/// `tool_usage.image_gen` summed over calls (`image_tokens` = final images + 100 per partial).
pub fn image_gen(prompt: &str, image_tokens: u64) -> ImageGenUsage {
    let input = text_tokens(prompt);
    ImageGenUsage {
        input_tokens: input,
        input_tokens_details: Some(TokenSplit {
            text_tokens: input,
            image_tokens: 0,
        }),
        output_tokens: image_tokens,
        output_tokens_details: Some(TokenSplit {
            text_tokens: 0,
            image_tokens,
        }),
        total_tokens: input + image_tokens,
    }
}

#[cfg(test)]
mod tests {
    use super::image_output_tokens;

    #[test]
    fn tables() {
        assert_eq!(image_output_tokens("gpt-image-2", "low", "1024x1024"), 196);
        assert_eq!(image_output_tokens("gpt-image-2", "medium", "1536x1024"), 1372);
        assert_eq!(image_output_tokens("gpt-image-2", "high", "2048x2048"), 14272);
        assert_eq!(image_output_tokens("gpt-image-2", "high", "3840x2160"), 13342);
        assert_eq!(image_output_tokens("gpt-image-2", "low", "1024x1536"), 158);
        assert_eq!(image_output_tokens("gpt-image-1.5", "high", "1024x1536"), 6240);
    }
}
