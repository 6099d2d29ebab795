//! The in-band `error` event, which the API sends in two shapes (nested `{"error":{…}}` and flat): read from
//! either into one [`StreamError`], written back in the nested one.

use serde::{Deserialize, Serialize, Serializer};

/// An in-band `error` event. Serializes to the nested wire shape
/// `{"sequence_number":n,"error":{"type","code","message","param"}}` (the enum adds `"type":"error"`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamError {
    pub sequence_number: Option<u64>,
    /// Error type, e.g. `server_error`, `insufficient_quota`.
    pub error_type: Option<String>,
    pub code: Option<String>,
    /// Never empty: falls back to a generic text when the event had none.
    pub message: String,
    pub param: Option<String>,
}

#[derive(Deserialize, Default)]
struct ErrorFields {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    param: Option<String>,
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    #[serde(default)]
    sequence_number: Option<u64>,
    #[serde(default)]
    error: Option<ErrorFields>,
    #[serde(flatten)]
    flat: ErrorFields,
}

fn code_string(v: Option<serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

impl StreamError {
    pub(crate) fn parse(text: &str) -> Result<Self, serde_json::Error> {
        let env: ErrorEnvelope = serde_json::from_str(text)?;
        let (kind, fields) = match env.error {
            Some(mut nested) => (nested.kind.take(), nested),
            // Flat shape: the top-level `type` is "error" itself, not an error type.
            None => (None, env.flat),
        };
        Ok(Self {
            sequence_number: env.sequence_number,
            error_type: kind,
            code: code_string(fields.code),
            message: fields
                .message
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| "upstream reported an error without a message".to_owned()),
            param: fields.param,
        })
    }
}

#[derive(Serialize)]
struct NestedErrorOut<'a> {
    #[serde(rename = "type")]
    kind: Option<&'a str>,
    code: Option<&'a str>,
    message: &'a str,
    param: Option<&'a str>,
}

#[derive(Serialize)]
struct ErrorOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sequence_number: Option<u64>,
    error: NestedErrorOut<'a>,
}

impl StreamError {
    /// Serializes as the whole `error` event: `{"type":"error","sequence_number":n,"error":{…}}`.
    pub(crate) fn serialize_event<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ErrorOut {
            kind: "error",
            sequence_number: self.sequence_number,
            error: NestedErrorOut {
                kind: self.error_type.as_deref(),
                code: self.code.as_deref(),
                message: &self.message,
                param: self.param.as_deref(),
            },
        }
        .serialize(s)
    }
}
