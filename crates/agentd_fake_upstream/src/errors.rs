//! Pre-stream HTTP errors in the exact §4.1 body shape `{"error":{message,type,param,code}}`, including the
//! canned failures a scenario can ask for (401/403/429/quota/500/503/conversation_locked/...).

use agentd_responses::ApiErrorBody;

use crate::scenario::Failure;

/// An HTTP error the fake answers with, plus the extra headers it carries.
#[derive(Debug, Clone)]
pub struct FakeError {
    pub status: u16,
    pub body: ApiErrorBody,
    pub retry_after: Option<u32>,
    pub rate_limit_headers: bool,
}

impl FakeError {
    pub fn new(
        status: u16,
        error_type: &str,
        code: Option<&str>,
        param: Option<&str>,
        message: String,
    ) -> Self {
        Self {
            status,
            body: ApiErrorBody {
                message,
                error_type: Some(error_type.to_owned()),
                code: code.map(str::to_owned),
                param: param.map(str::to_owned),
            },
            retry_after: None,
            rate_limit_headers: false,
        }
    }

    /// 400 `invalid_request_error` with `param` set.
    pub fn invalid(code: Option<&str>, param: &str, message: String) -> Self {
        Self::new(400, "invalid_request_error", code, Some(param), message)
    }

    /// The JSON body; `param` and `code` are always present (null when absent), like the real API.
    pub fn body_json(&self) -> String {
        serde_json::json!({ "error": {
            "message": self.body.message,
            "type": self.body.error_type,
            "param": self.body.param,
            "code": self.body.code,
        }})
        .to_string()
    }

    /// The canned failure of a scenario.
    pub fn canned(failure: Failure, retry_after: Option<u32>, previous_id: Option<&str>) -> Self {
        let mut e = match failure {
            Failure::Unauthorized => Self::new(
                401,
                "invalid_request_error",
                Some("invalid_api_key"),
                None,
                "Incorrect API key provided: sk-fake***. You can find your API key at \
                 https://platform.openai.com/account/api-keys."
                    .to_owned(),
            ),
            Failure::Forbidden => Self::new(
                403,
                "invalid_request_error",
                None,
                None,
                "Your organization must be verified to use the model `gpt-image-2`. Please go to: \
                 https://platform.openai.com/settings/organization/general and click on Verify Organization."
                    .to_owned(),
            ),
            Failure::RateLimited => {
                let mut e = Self::new(
                    429,
                    "tokens",
                    Some("rate_limit_exceeded"),
                    None,
                    "Rate limit reached for gpt-5.5 on tokens per min (TPM): Limit 30000, Used 29000, \
                     Requested 6570. Please try again in 6.57s."
                        .to_owned(),
                );
                e.retry_after = Some(retry_after.unwrap_or(1));
                e.rate_limit_headers = true;
                e
            }
            Failure::Quota => Self::new(
                429,
                "insufficient_quota",
                Some("insufficient_quota"),
                None,
                "You exceeded your current quota, please check your plan and billing details.".to_owned(),
            ),
            Failure::Server => Self::new(
                500,
                "server_error",
                None,
                None,
                "The server had an error while processing your request. Sorry about that!".to_owned(),
            ),
            Failure::Unavailable => {
                let mut e = Self::new(
                    503,
                    "service_unavailable_error",
                    Some("server_is_overloaded"),
                    None,
                    "The engine is currently overloaded, please try again later".to_owned(),
                );
                e.retry_after = retry_after;
                e
            }
            Failure::ConversationLocked => Self::invalid(
                Some("conversation_locked"),
                "conversation",
                "Another process is currently operating on this conversation. Please retry in a few seconds."
                    .to_owned(),
            ),
            Failure::PreviousNotFound => Self::previous_not_found(previous_id.unwrap_or("resp_unknown")),
        };
        if e.status == 429 {
            e.rate_limit_headers = true;
        }
        e
    }

    /// 400 `previous_response_not_found`.
    pub fn previous_not_found(id: &str) -> Self {
        Self::invalid(
            Some("previous_response_not_found"),
            "previous_response_id",
            format!("Previous response with id '{id}' not found."),
        )
    }

    /// 401 for a request without a bearer token.
    pub fn missing_key() -> Self {
        Self::new(
            401,
            "invalid_request_error",
            Some("invalid_api_key"),
            None,
            "You didn't provide an API key. You need to provide your API key in an Authorization header \
             using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
                .to_owned(),
        )
    }
}
