//! The axum side: routes, request recording, auth/validation/scenario failures, the common OpenAI headers
//! on every response, the non-streamed JSON body and the SSE body (framing, contiguous `sequence_number`,
//! chunked writes, delays, truncation, optional `[DONE]`).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use agentd_responses::{CreateResponse, StreamEvent};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::post;
use serde_json::Value;

use crate::errors::FakeError;
use crate::scenario::{Kind, Scenario};
use crate::script::{self, Step, Turn};
use crate::splice;
use crate::validate::validate;
use crate::{RecordedRequest, Shared};

/// The router of a fake instance.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/responses", post(create_response))
        .fallback(not_found)
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn(common_headers))
        .with_state(shared)
}

async fn common_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    let rid = format!("req_{:032x}", rand::random::<u128>());
    let pairs = [
        ("openai-processing-ms", "42"),
        ("openai-version", "2020-10-01"),
        ("openai-organization", "org-fake"),
        ("openai-project", "proj_fake"),
        ("x-ratelimit-limit-requests", "5000"),
        ("x-ratelimit-limit-tokens", "800000"),
        ("x-ratelimit-remaining-requests", "4999"),
        ("x-ratelimit-remaining-tokens", "799000"),
        ("x-ratelimit-reset-requests", "12ms"),
        ("x-ratelimit-reset-tokens", "60ms"),
    ];
    for (k, v) in pairs {
        if !h.contains_key(k) {
            h.insert(k, HeaderValue::from_static(v));
        }
    }
    if let Ok(v) = HeaderValue::from_str(&rid) {
        h.insert("x-request-id", v);
    }
    resp
}

async fn not_found() -> Response {
    error_response(&FakeError::new(
        404,
        "invalid_request_error",
        None,
        None,
        "Invalid URL: this fake only serves POST /v1/responses.".to_owned(),
    ))
}

fn error_response(e: &FakeError) -> Response {
    let mut resp = Response::new(Body::from(e.body_json()));
    *resp.status_mut() = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(secs) = e.retry_after
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        h.insert(header::RETRY_AFTER, v);
    }
    if e.rate_limit_headers {
        h.insert("x-ratelimit-remaining-requests", HeaderValue::from_static("0"));
        h.insert("x-ratelimit-remaining-tokens", HeaderValue::from_static("0"));
        h.insert("x-ratelimit-reset-requests", HeaderValue::from_static("1s"));
        h.insert("x-ratelimit-reset-tokens", HeaderValue::from_static("6.57s"));
    }
    resp
}

fn has_bearer(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|k| !k.trim().is_empty())
}

async fn create_response(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    drop(body);
    if shared.cfg.record_requests {
        shared.record(recorded(&headers, &json));
    }
    let p = match prepare(&shared, &headers, json) {
        Err(e) => return error_response(&e),
        Ok(p) => p,
    };
    // An image turn draws and serializes multi-MB events (tens of ms of CPU): on a build thread, so that the
    // other streams of this server (a benchmark's text turns) are not held up behind it, as they would not be
    // behind another user's image at the real API.
    if let Some(builders) = shared.builders.as_ref().filter(|_| p.sc.kind == Kind::Image) {
        let s = Arc::clone(&shared);
        builders.run(move || respond(&s, p)).await.unwrap_or_else(|| {
            error_response(&FakeError::new(
                500,
                "server_error",
                None,
                None,
                "fake: the image turn could not be built".to_owned(),
            ))
        })
    } else {
        respond(&shared, p)
    }
}

/// An admitted request: what to answer with, not built yet.
struct Prepared {
    req: CreateResponse,
    sc: Scenario,
    prompt: String,
    model: String,
    id: String,
}

/// Builds the turn and its response (the JSON body, or the SSE stream's frames).
fn respond(shared: &Shared, p: Prepared) -> Response {
    let turn = script::build(&p.req, &p.sc, &p.prompt, &p.model, &p.id);
    if p.req.stream == Some(true) {
        sse_response(shared, &p.sc, turn)
    } else {
        json_response(&p.sc, &turn)
    }
}

fn recorded(headers: &HeaderMap, json: &Value) -> RecordedRequest {
    RecordedRequest {
        method: "POST".to_owned(),
        path: "/v1/responses".to_owned(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: json.clone(),
    }
}

fn prepare(shared: &Shared, headers: &HeaderMap, json: Value) -> Result<Prepared, FakeError> {
    if shared.cfg.require_auth && !has_bearer(headers) {
        return Err(FakeError::missing_key());
    }
    validate(&json)?;
    let req: CreateResponse = serde_json::from_value(json).map_err(|e| {
        FakeError::new(
            400,
            "invalid_request_error",
            Some("invalid_type"),
            None,
            format!("Invalid request: {e}"),
        )
    })?;
    let (mut sc, prompt) = script::scenario_for(&req);
    if let Some(caps) = &shared.cfg.caps {
        sc = sc.clamped(caps);
    }
    if let Some(failure) = sc.fail
        && shared.should_fail(&sc.directive(), sc.times)
    {
        return Err(FakeError::canned(
            failure,
            sc.retry_after,
            req.previous_response_id.as_deref(),
        ));
    }
    if let Some(prev) = &req.previous_response_id
        && shared.cfg.strict_previous_response
        && !shared.is_issued(prev)
    {
        return Err(FakeError::previous_not_found(prev));
    }
    let id = script::new_id("resp");
    shared.issue(&id);
    let model = shared
        .cfg
        .model_override
        .clone()
        .unwrap_or_else(|| req.model.clone());
    Ok(Prepared {
        req,
        sc,
        prompt,
        model,
        id,
    })
}

fn json_response(sc: &Scenario, turn: &Turn) -> Response {
    if matches!(sc.kind, Kind::Error | Kind::FlatError) {
        return error_response(&FakeError::new(
            500,
            "server_error",
            None,
            None,
            "The server had an error while processing your request. Sorry about that!".to_owned(),
        ));
    }
    let mut text = serde_json::to_string(&turn.response).unwrap_or_default();
    if sc.kind == Kind::Eof || sc.eof_after.is_some() {
        text.truncate(text.len() / 2);
    }
    let mut resp = Response::new(Body::from(text));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

enum Piece {
    Bytes(Bytes),
    Sleep(Duration),
}

/// Adds fields the typed events do not model (and, with `unknown`, a field nobody knows) to known events.
fn decorate(ev: &StreamEvent, json: String, unknown: bool) -> String {
    let mut extra = String::new();
    if matches!(ev, StreamEvent::OutputTextDelta(_)) {
        extra.push_str(r#""logprobs":[],"obfuscation":"q1Zr","#);
    }
    if unknown && !matches!(ev, StreamEvent::Other { .. }) {
        extra.push_str(r#""x_fake_unknown":{"nested":[1,{"deep":true}]},"#);
    }
    if extra.is_empty() || !json.starts_with('{') || json == "{}" {
        return json;
    }
    format!("{{{extra}{}", &json[1..])
}

fn sse_response(shared: &Shared, sc: &Scenario, turn: Turn) -> Response {
    let chunk = sc.chunk.unwrap_or(shared.cfg.chunk_size).max(1);
    let gap = if sc.gap.is_zero() {
        shared.cfg.event_delay
    } else {
        sc.gap
    };
    let cut = sc.eof_after.or((sc.kind == Kind::Eof).then_some(4));
    let mut queue = VecDeque::new();
    if !sc.delay.is_zero() {
        queue.push_back(Piece::Sleep(sc.delay));
    }
    let mut seq: u64 = 0;
    let mut terminal_sent = false;
    for step in turn.steps {
        let mut ev = match step {
            Step::Sleep(d) => {
                queue.push_back(Piece::Sleep(d));
                continue;
            }
            Step::Event(ev) => *ev,
        };
        if cut.is_some_and(|n| seq >= u64::from(n)) {
            break;
        }
        if seq > 0 && !gap.is_zero() {
            queue.push_back(Piece::Sleep(gap));
        }
        let pace = shared.cfg.image_pace;
        if !pace.is_zero() && matches!(ev, StreamEvent::PartialImage(_)) {
            queue.push_back(Piece::Sleep(pace));
        }
        ev.set_sequence_number(seq);
        seq += 1;
        let frame = splice::frame(&mut ev, |ev| {
            decorate(ev, ev.to_json().unwrap_or_default(), sc.unknown)
        });
        queue.extend(splice::writes(frame, chunk).into_iter().map(Piece::Bytes));
        terminal_sent = ev.is_terminal();
    }
    if terminal_sent && (sc.done_marker || shared.cfg.send_done) {
        queue.push_back(Piece::Bytes(Bytes::from_static(b"data: [DONE]\n\n")));
    }
    let stream = futures_util::stream::unfold(queue, |mut q| async move {
        loop {
            match q.pop_front()? {
                Piece::Sleep(d) => tokio::time::sleep(d).await,
                Piece::Bytes(b) => return Some((Ok::<_, Infallible>(b), q)),
            }
        }
    });
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}
