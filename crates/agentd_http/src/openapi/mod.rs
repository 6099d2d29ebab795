//! The OpenAPI 3.1 document of `api-v1.md`, generated from the server's own types: the operations of the route
//! table (`routes::table`, the same table the router is built from), the schemas of the types the handlers
//! read and write, the bearer scheme with its scopes, each route's error codes, and the Server-Sent Events of
//! both stream routes. Served at `GET /openapi.json` (no token), printed by `agentd openapi`, and committed as
//! `docs/openapi.json`.

pub(crate) mod errors;

use crate::AppState;
use crate::error::ErrorEnvelope;
use crate::sse::StreamEvent;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::sync::LazyLock;
use utoipa::OpenApi as _;
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "agentd",
        description = "A multi-tenant backend for agents on the OpenAI Responses API: chat turns with streamed \
text and generated images, conversations, uploads and usage.\n\n\
Every `/v1` route except `GET /v1/files/{key}` takes `Authorization: Bearer <JWT>`; each operation names the \
scopes it needs. Everything is confined to the token's tenant: another tenant's resource answers exactly like \
one that does not exist (404).\n\n\
Every error answers `{\"error\": {\"code\", \"message\", \"details\"?}}`; each operation lists the codes it can \
answer, by status. A 5xx carries `details.request_id`, equal to the `x-request-id` response header. An unknown \
path answers 404 `not_found`, a known path with another method 405 `method_not_allowed`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(ErrorEnvelope, StreamEvent<'static>), responses(EventStream)),
    tags(
        (name = "agents", description = "The agents operators declared, with their effective image tool configuration."),
        (name = "chat", description = "Chat turns: one JSON answer, a Server-Sent Events stream, and resuming a stream."),
        (name = "conversations", description = "Past conversations with their messages and images."),
        (name = "files", description = "Uploads, attachments, signed downloads and usage."),
        (name = "service", description = "Health, readiness and this document. No token."),
        (name = "playground", description = "A page for trying the server in a browser. No token."),
    )
)]
struct ApiDoc;

/// How the bearer token is checked, for the security scheme.
const BEARER: &str = "A JWT: HS256 with the configured secret (development) or EdDSA/RS256 with configured \
public keys. Required claims: `sub` (user id), `tenant_id`, `exp`; optional: `scope`, `iat`, `nbf`, `iss`, `aud` \
(checked when configured). `scope` is space-separated: `chat` (run turns, upload), `conversations:read`, \
`conversations:write` (delete), `agents:read`; a token without `scope` has all four. A missing scope is \
403 `forbidden`.";

/// What a stream looks like on the wire, for both stream routes.
const STREAM: &str = "Server-Sent Events. Each event has an `id:` line (an integer, 1, 2, 3… within the run), \
an `event:` line with its kind and a one-line JSON `data:` line; the schema shows one event as \
`{id, event, data}`. `run.started` comes first; exactly one terminal event, `run.completed` or `error`, ends \
the stream (a turn cut off by a shutdown ends with `error` `shutting_down`, retryable). A `: keep-alive` comment \
line is sent after SSE_KEEPALIVE_SECONDS (default 15) of silence. Final images arrive only as `attachment` \
URLs, never as base64. The turn runs to its end even if the client goes away: resume with \
`GET /v1/runs/{run_id}/events` and `Last-Event-ID` (a browser `EventSource` does this by itself); the replay \
keeps the original ids but skips `image.partial` previews, and `attachment` events carry fresh URLs.";

/// The 200 answer of both stream routes.
pub(crate) struct EventStream;

impl<'s> utoipa::ToResponse<'s> for EventStream {
    fn response() -> (&'s str, RefOr<utoipa::openapi::Response>) {
        let id = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .description(Some(
                "The `id:` line: 1 for the first event, +1 for each next one.",
            ));
        let frame = AllOfBuilder::new()
            .item(ObjectBuilder::new().property("id", id).required("id"))
            .item(Ref::from_schema_name("StreamEvent"))
            .description(Some("One event: its `id:`, `event:` and `data:` lines."));
        let res = ResponseBuilder::new()
            .description(STREAM)
            .content(
                "text/event-stream",
                ContentBuilder::new()
                    .schema(Some(Schema::AllOf(frame.build())))
                    .build(),
            )
            .header(
                "cache-control",
                HeaderBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                    .description(Some("`no-cache`."))
                    .build(),
            )
            .header(
                "idempotent-replayed",
                HeaderBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                    .description(Some(
                        "`true` when `POST /v1/chat/stream` replays an earlier request with the same \
                         Idempotency-Key.",
                    ))
                    .build(),
            )
            .header_ref("x-request-id", Ref::new("#/components/headers/RequestId"));
        ("EventStream", RefOr::T(res.build()))
    }
}

/// The document. Paths are axum's with a wildcard's `*` dropped (`/v1/files/{*key}` is `/v1/files/{key}`).
pub fn document() -> OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(crate::routes::table(0).into_openapi());
    doc.paths.paths = std::mem::take(&mut doc.paths.paths)
        .into_iter()
        .map(|(path, item)| (openapi_path(&path), item))
        .collect();
    for item in doc.paths.paths.values_mut() {
        let ops = [
            &mut item.get,
            &mut item.post,
            &mut item.delete,
            &mut item.put,
            &mut item.patch,
        ];
        for op in ops.into_iter().flatten() {
            for res in op.responses.responses.values_mut() {
                if let RefOr::T(res) = res {
                    let id = RefOr::Ref(Ref::new("#/components/headers/RequestId"));
                    res.headers.insert("x-request-id".into(), id);
                }
            }
        }
    }
    let components = doc.components.get_or_insert_with(Default::default);
    let scheme = HttpBuilder::new()
        .scheme(HttpAuthScheme::Bearer)
        .bearer_format("JWT")
        .description(Some(BEARER))
        .build();
    components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    let request_id = HeaderBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .description(Some(
            "The request's id (the client's `x-request-id` if sane, else made here), as in the server log.",
        ))
        .build();
    components
        .headers
        .insert("RequestId".into(), RefOr::T(request_id));
    for (name, header) in errors::headers() {
        components.headers.insert(name.into(), RefOr::T(header));
    }
    doc
}

/// An axum route path as an OpenAPI path.
pub fn openapi_path(axum_path: &str) -> String {
    axum_path.replace("{*", "{")
}

/// The document as pretty JSON with a final newline: what `GET /openapi.json` answers and `agentd openapi`
/// prints.
pub fn document_json() -> String {
    match document().to_pretty_json() {
        Ok(mut json) => {
            json.push('\n');
            json
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot serialize the OpenAPI document");
            String::from("{}\n")
        }
    }
}

static DOCUMENT: LazyLock<String> = LazyLock::new(document_json);

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::default().routes(routes!(serve))
}

/// This document
///
/// The OpenAPI 3.1 document of this API. No token.
#[utoipa::path(get, path = "/openapi.json", tag = "service", operation_id = "openapi",
    responses((status = 200, description = "This document.", body = serde_json::Value, content_type = "application/json")))]
async fn serve() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT.as_str()).into_response()
}
