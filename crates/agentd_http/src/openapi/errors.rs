//! The error answers of each route in the OpenAPI document. A route declares the codes it can answer next to
//! its handler with [`route_errors!`]; this module groups them by HTTP status (the contract's codes through
//! [`status_of`], the HTTP layer's own codes from [`http_status`]) and narrows the envelope schema of each
//! status to exactly those codes, with the `retry-after` and `www-authenticate` headers where they are sent.

use crate::error::status_of;
use axum::http::StatusCode;
use std::collections::BTreeMap;
use utoipa::openapi::header::Header;
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::{HeaderBuilder, Ref, RefOr, Response, ResponseBuilder};

/// Every route that takes a bearer token: no/invalid token, a missing scope, a suspended tenant, the database
/// down while the tenant is looked up.
pub(crate) const AUTH: &[&str] = &[
    "unauthenticated",
    "forbidden",
    "tenant_suspended",
    "unavailable",
    "internal",
];

/// A JSON request body: malformed, not fitting the type (unknown fields included), over the body limit.
pub(crate) const JSON_BODY: &[&str] = &["invalid_json", "invalid_request", "payload_too_large"];

/// Declares the error answers of one route: `route_errors!(ShowErrors = AUTH + ["agent_not_found"]);` defines
/// `ShowErrors`, usable in `#[utoipa::path(responses(..., ShowErrors))]`.
macro_rules! route_errors {
    ($name:ident = $($set:ident +)* [$($code:literal),* $(,)?]) => {
        /// The error answers of this route, by status, for the OpenAPI document.
        pub(crate) struct $name;
        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<
                String,
                utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
            > {
                $crate::openapi::errors::responses(&[$($set,)* &[$($code),*]])
            }
        }
    };
}
pub(crate) use route_errors;

/// The status of a code only the HTTP layer answers (not a turn's [`agentd_core::Code`]).
fn http_status(code: &str) -> Option<StatusCode> {
    Some(match code {
        "invalid_json" => StatusCode::BAD_REQUEST,
        "unauthenticated" => StatusCode::UNAUTHORIZED,
        "forbidden" | "tenant_suspended" => StatusCode::FORBIDDEN,
        "not_found" => StatusCode::NOT_FOUND,
        "method_not_allowed" => StatusCode::METHOD_NOT_ALLOWED,
        _ => return None,
    })
}

/// The HTTP status a code is answered with, or `None` for a code the API never answers.
pub(crate) fn status_of_code(code: &str) -> Option<StatusCode> {
    http_status(code).or_else(|| {
        serde_json::from_value::<agentd_core::Code>(serde_json::Value::from(code))
            .ok()
            .map(status_of)
    })
}

/// What a status means, for the response's description.
fn meaning(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "Malformed JSON, wrong types, unknown fields or invalid values",
        401 => "No, invalid or expired bearer token",
        403 => {
            "Valid token, but the tenant is suspended or the token lacks the scope (or, for a download link: expired or altered)"
        }
        404 => "Not found; also when it exists in another tenant",
        409 => "A turn is already running on this conversation (or with this idempotency key)",
        413 => "Body over the configured limit",
        422 => "Well-formed but not allowed (e.g. image input to an agent without image tools)",
        429 => "Per-tenant rate limit or budget reached",
        500 => "A bug on the server side; `details.request_id` names it in the log",
        502 => "The model API answered with an error the client cannot fix",
        503 => {
            "The model API, the database or the object store is unavailable, or the server is shutting down"
        }
        504 => "The model API timed out",
        _ => "Error",
    }
}

/// The responses of a route's error `codes` (given in sets), grouped by status.
pub(crate) fn responses(sets: &[&[&str]]) -> BTreeMap<String, RefOr<Response>> {
    let mut by_status: BTreeMap<u16, Vec<&str>> = BTreeMap::new();
    for &code in sets.iter().flat_map(|s| s.iter()) {
        let status = status_of_code(code);
        debug_assert!(
            status.is_some(),
            "route_errors! names {code:?}, a code the API never answers"
        );
        let Some(status) = status else { continue };
        let codes = by_status.entry(status.as_u16()).or_default();
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    by_status
        .into_iter()
        .map(|(status, codes)| (status.to_string(), RefOr::T(response(status, &codes))))
        .collect()
}

fn response(status: u16, codes: &[&str]) -> Response {
    let listed = codes
        .iter()
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let meaning = StatusCode::from_u16(status).map_or("Error", meaning);
    let code = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(codes.iter().copied()));
    let narrowed = ObjectBuilder::new().property(
        "error",
        ObjectBuilder::new().property("code", code).required("code"),
    );
    let schema = AllOfBuilder::new()
        .item(Ref::from_schema_name("ErrorEnvelope"))
        .item(narrowed)
        .build();
    let mut res = ResponseBuilder::new()
        .description(format!("{meaning}: {listed}."))
        .content(
            "application/json",
            utoipa::openapi::ContentBuilder::new()
                .schema(Some(Schema::AllOf(schema)))
                .build(),
        );
    if status == 401 {
        res = res.header_ref(
            "www-authenticate",
            Ref::new("#/components/headers/WwwAuthenticate"),
        );
    }
    if matches!(status, 409 | 429 | 503) {
        res = res.header_ref("retry-after", Ref::new("#/components/headers/RetryAfter"));
    }
    res.build()
}

/// The response headers error answers refer to, for `components.headers`.
pub(crate) fn headers() -> [(&'static str, Header); 2] {
    let string = ObjectBuilder::new().schema_type(Type::String);
    let seconds = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0));
    [
        (
            "WwwAuthenticate",
            HeaderBuilder::new()
                .schema(Some(string))
                .description(Some("`Bearer`."))
                .build(),
        ),
        (
            "RetryAfter",
            HeaderBuilder::new()
                .schema(Some(seconds))
                .description(Some("Seconds to wait before retrying, when a retry may help."))
                .build(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_contract_code_has_the_status_of_its_table_row() {
        assert_eq!(status_of_code("agent_not_found"), Some(StatusCode::NOT_FOUND));
        assert_eq!(status_of_code("conversation_busy"), Some(StatusCode::CONFLICT));
        assert_eq!(status_of_code("upstream_error"), Some(StatusCode::BAD_GATEWAY));
        assert_eq!(status_of_code("tenant_suspended"), Some(StatusCode::FORBIDDEN));
        assert_eq!(status_of_code("no_such_code"), None);
    }

    #[test]
    fn codes_are_grouped_by_status() {
        let r = responses(&[AUTH, &["agent_not_found", "not_found", "unavailable"]]);
        let keys: Vec<&str> = r.keys().map(String::as_str).collect();
        assert_eq!(keys, ["401", "403", "404", "500", "503"]);
        let json = serde_json::to_value(&r["404"]).unwrap_or_default();
        assert_eq!(
            json["content"]["application/json"]["schema"]["allOf"][1]["properties"]["error"]["properties"]["code"]
                ["enum"],
            serde_json::json!(["agent_not_found", "not_found"])
        );
        let json = serde_json::to_value(&r["503"]).unwrap_or_default();
        assert_eq!(
            json["headers"]["retry-after"]["$ref"],
            "#/components/headers/RetryAfter"
        );
    }
}
