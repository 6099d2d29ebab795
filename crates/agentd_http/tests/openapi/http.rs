//! Talking to the server in these tests: tokens with given scopes, a request per documented operation that gets
//! past its extractors, sending one and checking the answer against the document, and the routes an axum router
//! really serves, read from the router itself.

use crate::doc::Doc;
use agentd_auth::{Scope, ScopeSet};
use agentd_testkit::TestApp;
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// A token with exactly `scopes` (by name).
pub fn token_with(app: &TestApp, scopes: &[String]) -> String {
    let set: Vec<Scope> = Scope::ALL
        .into_iter()
        .filter(|s| scopes.iter().any(|n| n == s.as_str()))
        .collect();
    app.token("acme", "u1", Some(ScopeSet::of(&set)))
}

fn png() -> Vec<u8> {
    agentd_fake_upstream::images::encode(agentd_fake_upstream::images::Format::Png, 16, 16, 1, 0)
}

pub fn upload_form() -> reqwest::multipart::Form {
    let part = reqwest::multipart::Part::bytes(png())
        .file_name("in.png")
        .mime_str("image/png")
        .unwrap();
    reqwest::multipart::Form::new().part("file", part)
}

/// A request that gets past the extractors of `path`, so the handler decides the answer.
pub fn probe(app: &TestApp, method: &str, path: &str, token: Option<&str>) -> RequestBuilder {
    let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    let mut req = app.http.request(m, app.url(&sample(path)));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    match (method, path) {
        ("post", "/v1/chat" | "/v1/chat/stream") => {
            req.json(&json!({"agent": "assistant", "message": "probe"}))
        }
        ("post", "/v1/uploads") => req.multipart(upload_form()),
        _ => req,
    }
}

/// Sends `req`; checks its status is one `method path` documents and, for JSON, that the body fits.
pub async fn answer(doc: &Doc, method: &str, path: &str, req: RequestBuilder) -> (u16, Value) {
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let json = res
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap().starts_with("application/json"));
    let text = res.text().await.unwrap();
    assert!(
        doc.response(method, path, status).is_some(),
        "{method} {path} answered {status}, which the document does not list: {text:.300}"
    );
    let body = if json {
        serde_json::from_str(&text).unwrap()
    } else {
        Value::Null
    };
    if json {
        doc.check(method, path, status, &body);
    }
    (status, body)
}

/// Sends `req`, expects `status`, checks the JSON body against `method path`'s schema and returns it.
pub async fn capture(doc: &Doc, method: &str, path: &str, req: RequestBuilder, status: u16) -> Value {
    let (got, body) = answer(doc, method, path, req).await;
    assert_eq!(got, status, "{method} {path}: {body}");
    body
}

/// The path templates `router` serves. axum lists no routes through its API, but its `Debug` output names
/// each one (`Node { paths: {RouteId(..): "/v1/agents", ..} }`); this reads the non-fallback part of it and
/// fails loudly if that shape changes.
pub fn served_paths(router: &axum::Router) -> BTreeSet<String> {
    let debug = format!("{router:?}");
    let start = debug
        .find("path_router:")
        .expect("axum's Router Debug names its path_router");
    let end = debug
        .find("fallback_router:")
        .expect("axum's Router Debug names its fallback_router");
    let section = &debug[start..end];
    let nodes = section
        .find("node: Node { paths: {")
        .expect("axum's PathRouter Debug shows node paths");
    let paths: BTreeSet<String> = section[nodes..]
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with('/'))
        .map(str::to_owned)
        .collect();
    assert!(
        paths.contains("/v1/agents"),
        "could not read routes from {section}"
    );
    paths
}

/// A concrete URL path for a documented template (values that name nothing, or the shipped `designer`).
pub fn sample(path: &str) -> String {
    let values: BTreeMap<&str, &str> = if path.starts_with("/v1/files/") {
        [("key", "tenants/acme/uploads/x.png")].into()
    } else {
        [
            ("key", "designer"),
            ("id", "00000000-0000-0000-0000-000000000000"),
            ("run_id", "no-such-run"),
            ("file", "app.js"),
        ]
        .into()
    };
    let mut out = path.to_owned();
    for (k, v) in values {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    assert!(!out.contains('{'), "no sample value for {path}");
    out
}
