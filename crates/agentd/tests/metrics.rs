//! Prometheus metrics through the real binary (the recorder is process-global, so each server is a process of
//! its own with its own `METRICS_ADDR=127.0.0.1:0`): turns of known kinds against the offline model, then a
//! scrape whose counters must have moved by exactly the right amounts; the listener is never the public port,
//! and a port in use stops startup naming `METRICS_ADDR`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use agentd_testkit::{ServerOptions, ServerProcess};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const SECRET: &str = "metrics-test-secret-0123456789abcdef";

fn opts() -> ServerOptions {
    ServerOptions::new(env!("CARGO_BIN_EXE_agentd"))
        .env("AUTH_JWT_SECRET", SECRET)
        .env("METRICS_ADDR", "127.0.0.1:0")
}

/// One scrape of `/metrics`.
struct Scrape(String);

impl Scrape {
    async fn of(server: &ServerProcess) -> Self {
        let url = server
            .metrics_url("/metrics")
            .expect("the server announced its metrics listener");
        let res = reqwest::get(&url).await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain; version=0.0.4"),
            "{:?}",
            res.headers()
        );
        Self(res.text().await.unwrap())
    }

    /// The value of the series `name{labels}` (exactly these labels, in any order); 0 when absent.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut want: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        want.sort();
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let (n, mut got) = match series.split_once('{') {
                    Some((n, rest)) => (n, rest.strip_suffix('}')?.split(',').map(str::to_owned).collect()),
                    None => (series, Vec::new()),
                };
                got.sort();
                (n == name && got == want).then(|| value.parse().unwrap())
            })
            .unwrap_or(0.0)
    }
}

/// How much each series moved between two scrapes.
fn moved(before: &Scrape, after: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    after.get(name, labels) - before.get(name, labels)
}

async fn chat(server: &ServerProcess, tok: &str, agent: &str, message: &str) -> (u16, Value) {
    let res = server
        .http()
        .post(server.url("/v1/chat"))
        .bearer_auth(tok)
        .json(&json!({"agent": agent, "message": message}))
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

/// A streamed turn read to its end: its events as (kind, data).
async fn stream(server: &ServerProcess, tok: &str, agent: &str, message: &str) -> Vec<(String, Value)> {
    let res = open_stream(server, tok, agent, message).await;
    parse_events(&res.text().await.unwrap())
}

async fn open_stream(server: &ServerProcess, tok: &str, agent: &str, message: &str) -> reqwest::Response {
    let res = server
        .http()
        .post(server.url("/v1/chat/stream"))
        .bearer_auth(tok)
        .json(&json!({"agent": agent, "message": message}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res
}

fn parse_events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter_map(|block| {
            let kind = block.lines().find_map(|l| l.strip_prefix("event: "))?;
            let data = block.lines().find_map(|l| l.strip_prefix("data: "))?;
            Some((kind.to_owned(), serde_json::from_str(data).unwrap()))
        })
        .collect()
}

/// Scrapes until `name` reads `want` (a gauge settling after the client saw the last byte); panics after 20 s.
async fn settles(server: &ServerProcess, name: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = Scrape::of(server).await.get(name, &[]);
        if now == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} stayed at {now}, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn turns_images_streams_and_upstream_requests_are_counted_exactly() {
    let server = ServerProcess::start(opts()).await;
    let tok = server.token("acme", "u1");
    let before = Scrape::of(&server).await;

    assert_eq!(chat(&server, &tok, "assistant", "hello").await.0, 200);
    let events = stream(&server, &tok, "designer", "draw two cats #fake:image images=2").await;
    let sizes: Vec<f64> = events
        .iter()
        .filter(|(k, _)| k == "attachment")
        .map(|(_, d)| d["attachment"]["size_bytes"].as_f64().unwrap())
        .collect();
    assert_eq!(sizes.len(), 2, "{events:?}");
    let (last, done) = events.last().unwrap();
    assert_eq!(last, "run.completed");
    let cost = done["usage"]["image"]["estimated_cost_usd"].as_f64().unwrap();
    let (status, body) = chat(&server, &tok, "designer", "draw a fight #fake:moderation").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = chat(&server, &tok, "assistant", "fail please #fake:failed").await;
    assert_eq!(body["error"]["code"], "upstream_error", "{status} {body}");
    let (status, body) = chat(&server, &tok, "assistant", "cut short #fake:incomplete").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("incomplete")),
        "{body}"
    );
    let (status, body) = chat(&server, &tok, "assistant", "retry me #fake:text fail=500 times=1").await;
    assert_eq!(status, 200, "the retry succeeded: {body}");
    let (status, body) = chat(&server, &tok, "assistant", "bad key #fake:text fail=401").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (502, &json!("upstream_error")),
        "{body}"
    );

    // A stream stalled after its first delta is open, and its turn runs, while the scrape happens.
    let mut open = open_stream(&server, &tok, "assistant", "wait #fake:text stall=5000").await;
    let mut seen = String::new();
    while !seen.contains("event: message.delta") {
        seen.push_str(&String::from_utf8_lossy(
            &open.chunk().await.unwrap().expect("more events"),
        ));
    }
    let during = Scrape::of(&server).await;
    assert_eq!(during.get("agentd_streams_active", &[]), 1.0, "{}", during.0);
    assert_eq!(during.get("agentd_turns_running", &[]), 1.0);
    while open.chunk().await.unwrap().is_some() {}
    settles(&server, "agentd_streams_active", 0.0).await;
    settles(&server, "agentd_turns_running", 0.0).await;

    let after = Scrape::of(&server).await;
    let m = |name: &str, labels: &[(&str, &str)]| moved(&before, &after, name, labels);
    let report = &after.0;
    let (asst, des) = (("agent", "assistant"), ("agent", "designer"));
    // 5 assistant turns ran (hello, failed, incomplete, retried, stalled), 2 designer turns; the 401 never ran.
    assert_eq!(m("agentd_turns_started_total", &[asst]), 5.0, "{report}");
    assert_eq!(m("agentd_turns_started_total", &[des]), 2.0, "{report}");
    let fin = "agentd_turns_finished_total";
    assert_eq!(m(fin, &[asst, ("outcome", "completed")]), 3.0, "{report}");
    assert_eq!(m(fin, &[asst, ("outcome", "incomplete")]), 1.0, "{report}");
    assert_eq!(
        m(fin, &[asst, ("outcome", "failed"), ("code", "upstream_error")]),
        1.0,
        "{report}"
    );
    assert_eq!(m(fin, &[des, ("outcome", "completed")]), 2.0, "{report}");
    assert_eq!(
        m("agentd_turns_refused_total", &[("code", "upstream_error")]),
        1.0,
        "{report}"
    );
    let dur = "agentd_turn_duration_seconds_count";
    assert_eq!(m(dur, &[asst, ("outcome", "completed")]), 3.0, "{report}");
    assert_eq!(m(dur, &[asst, ("outcome", "failed")]), 1.0, "{report}");
    assert_eq!(m(dur, &[des, ("outcome", "completed")]), 2.0, "{report}");
    // The failed turn sent nothing after run.started: no time to first event.
    assert_eq!(
        m("agentd_turn_first_event_seconds_count", &[asst]),
        4.0,
        "{report}"
    );
    assert_eq!(
        m("agentd_turn_first_event_seconds_count", &[des]),
        2.0,
        "{report}"
    );

    assert_eq!(m("agentd_images_stored_total", &[des]), 2.0, "{report}");
    assert_eq!(
        m(
            "agentd_images_failed_total",
            &[des, ("code", "moderation_blocked")]
        ),
        1.0,
        "{report}"
    );
    assert_eq!(m("agentd_image_ingest_seconds_count", &[des]), 2.0, "{report}");
    assert_eq!(m("agentd_image_size_bytes_count", &[des]), 2.0, "{report}");
    assert_eq!(
        m("agentd_image_size_bytes_sum", &[des]),
        sizes.iter().sum::<f64>(),
        "{report}"
    );
    // Only the turn that made images has an image cost (a refused image is not paid for).
    assert_eq!(m("agentd_turn_image_cost_usd_count", &[des]), 1.0, "{report}");
    assert!(
        (m("agentd_turn_image_cost_usd_sum", &[des]) - cost).abs() < 1e-9,
        "{cost} {report}"
    );

    let up = "agentd_upstream_request_duration_seconds_count";
    assert_eq!(m(up, &[("status", "200")]), 7.0, "{report}");
    assert_eq!(m(up, &[("status", "500")]), 1.0, "{report}");
    assert_eq!(m(up, &[("status", "401")]), 1.0, "{report}");
    assert_eq!(
        m("agentd_upstream_retries_total", &[("status", "500")]),
        1.0,
        "{report}"
    );
    assert_eq!(
        m("agentd_upstream_retries_total", &[("status", "401")]),
        0.0,
        "{report}"
    );

    let pool = |state| after.get("agentd_db_pool_connections", &[("state", state)]);
    assert!(pool("in_use") + pool("idle") >= 1.0, "{report}");
    for id in ["acme", "tenant", "conversation_id", "run_id", "user"] {
        assert!(
            !report.contains(id),
            "no per-tenant or per-run label ({id}): {report}"
        );
    }
    assert!(report.contains("# HELP agentd_turns_finished_total"), "{report}");
}

#[tokio::test]
async fn rate_limit_and_budget_refusals_are_counted_by_code() {
    let server = ServerProcess::start(
        opts()
            .env("CHAT_RATE_LIMIT_PER_MINUTE", "2")
            .env("IMAGE_TENANT_MONTHLY_BUDGET_USD", "0.000001"),
    )
    .await;
    let before = Scrape::of(&server).await;
    let hasty = server.token("hasty", "u1");
    for _ in 0..2 {
        assert_eq!(chat(&server, &hasty, "assistant", "hi").await.0, 200);
    }
    let (status, body) = chat(&server, &hasty, "assistant", "hi").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (429, &json!("rate_limited")),
        "{body}"
    );

    let broke = server.token("broke", "u1");
    let (status, body) = chat(&server, &broke, "designer", "draw a cat").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["message"]["attachments"].as_array().unwrap().is_empty(),
        "{body}"
    );
    let (status, body) = chat(&server, &broke, "designer", "draw a dog").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (429, &json!("budget_exhausted")),
        "{body}"
    );

    let after = Scrape::of(&server).await;
    let m = |name: &str, labels: &[(&str, &str)]| moved(&before, &after, name, labels);
    let report = &after.0;
    let refused = "agentd_turns_refused_total";
    assert_eq!(m(refused, &[("code", "rate_limited")]), 1.0, "{report}");
    assert_eq!(m(refused, &[("code", "budget_exhausted")]), 1.0, "{report}");
    let des = ("agent", "designer");
    assert_eq!(
        m("agentd_images_failed_total", &[des, ("code", "budget_exhausted")]),
        1.0,
        "{report}"
    );
    assert_eq!(m("agentd_images_stored_total", &[des]), 0.0, "{report}");
    assert_eq!(
        m("agentd_turn_image_cost_usd_count", &[des]),
        1.0,
        "made, so paid for: {report}"
    );
    assert_eq!(
        m("agentd_turns_started_total", &[("agent", "assistant")]),
        2.0,
        "{report}"
    );
    assert_eq!(m("agentd_turns_started_total", &[des]), 1.0, "{report}");
}

#[tokio::test]
async fn metrics_have_their_own_listener_never_the_public_port() {
    let server = ServerProcess::start(opts()).await;
    let public = server.http().get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(public.status(), 404);
    let body: Value = public.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    let metrics_url = server.metrics_url("/metrics").unwrap();
    assert_ne!(metrics_url, server.url("/metrics"));
    let other = reqwest::get(metrics_url.replace("/metrics", "/v1/agents"))
        .await
        .unwrap();
    assert_eq!(other.status(), 404, "the metrics listener serves /metrics only");

    // Empty METRICS_ADDR: no listener at all.
    let off = ServerProcess::start(opts().env("METRICS_ADDR", "")).await;
    assert_eq!(off.metrics_url("/metrics"), None);
    assert!(
        off.current_logs().iter().any(|l| l.contains("metrics off")),
        "{:?}",
        off.current_logs()
    );
}

#[tokio::test]
async fn a_metrics_port_in_use_stops_startup_naming_metrics_addr() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = ServerProcess::try_start(opts().env("METRICS_ADDR", addr.to_string()))
        .await
        .err()
        .expect("the server must not start without its metrics listener");
    assert_eq!(err.exit.and_then(|s| s.code()), Some(2), "{err}");
    assert!(
        err.log.contains(&format!("cannot listen on METRICS_ADDR={addr}")),
        "{err}"
    );
}
