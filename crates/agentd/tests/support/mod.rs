//! Shared by the process suites (`replicas.rs`, `faults.rs`): real `agentd` processes on one PostgreSQL
//! database and one bucket of the S3 stand-in, talking to a fake Responses API that this test process runs
//! (so slow turns can be as slow as a test needs, and its recorded requests show what each replica sent);
//! requests that hand back status, headers and JSON; streams read event by event with bounded waits.

#![allow(dead_code, unused_imports, reason = "each suite uses its part")]

pub mod services;
pub mod sse;

use agentd_fake_upstream::{FakeConfig, FakeUpstream};
use agentd_testkit::{ServerOptions, ServerProcess, TestDb};
use reqwest::header::HeaderMap;
use serde_json::Value;
pub use sse::{EVENT_WAIT, Sse, ids, is_terminal, names};
use std::time::Duration;

pub const SECRET: &str = "process-suite-secret-0123456789abcdefgh";

/// Lease of a turn on its conversation in these suites (`RUN_LEASE_SECONDS`): short, so expiry tests are.
pub const LEASE_SECONDS: u64 = 6;

/// Replicas of one deployment: one database, one bucket, one upstream.
pub struct Cluster {
    pub db: TestDb,
    pub fake: FakeUpstream,
    pub bucket: String,
    /// How every replica is started; change it before [`Cluster::replica`].
    pub opts: ServerOptions,
}

/// `agentd` options for a deployment on `database_url`, storing into `bucket` of the shared S3 stand-in
/// (see [`ServerOptions::s3_stand_in`]) and answered by `fake`. No rate or concurrency limit unless a test sets
/// one; the lease is [`LEASE_SECONDS`].
pub fn options(database_url: &str, bucket: &str, fake: &FakeUpstream) -> ServerOptions {
    ServerOptions::new(env!("CARGO_BIN_EXE_agentd"))
        .env("AUTH_JWT_SECRET", SECRET)
        .database(database_url)
        .s3_stand_in(bucket)
        .env("OPENAI_BASE_URL", fake.base_url())
        .env("OPENAI_API_KEY", "sk-test")
        .env("RUN_LEASE_SECONDS", LEASE_SECONDS.to_string())
        .env("CHAT_RATE_LIMIT_PER_MINUTE", "0")
        .env("CHAT_STREAM_CONCURRENT_LIMIT", "0")
}

/// A bucket name no other test uses.
pub fn bucket(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

impl Cluster {
    /// A fresh database, a new bucket and a fake upstream of this test.
    pub async fn new(name: &str) -> Self {
        let db = agentd_testkit::fresh_postgres().await;
        let fake = FakeUpstream::start(FakeConfig::default())
            .await
            .expect("start the fake upstream");
        let bucket = bucket(name);
        let opts = options(&db.settings.url, &bucket, &fake);
        Self {
            db,
            fake,
            bucket,
            opts,
        }
    }

    /// Sets a variable for the replicas started from now on.
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.opts = self.opts.clone().env(key, value);
    }

    pub async fn replica(&self) -> ServerProcess {
        ServerProcess::start(self.opts.clone()).await
    }

    /// The request bodies the upstream received for `POST /responses`, in order.
    pub fn upstream_requests(&self) -> Vec<Value> {
        self.fake
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/responses"))
            .map(|r| r.body)
            .collect()
    }
}

/// A token every replica accepts (all scopes).
pub fn token(server: &ServerProcess, tenant: &str) -> String {
    server.token(tenant, "u1")
}

/// An answer read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    async fn read(res: reqwest::Response) -> Self {
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = tokio::time::timeout(EVENT_WAIT, res.text())
            .await
            .expect("the answer arrives")
            .unwrap_or_default();
        Self {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        }
    }

    /// `error.code` of the contract's envelope.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// `retry-after` in seconds.
    pub fn retry_after(&self) -> Option<u64> {
        self.headers.get("retry-after")?.to_str().ok()?.parse().ok()
    }

    /// Asserts the status and the envelope's code, and that the message says something.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.code()),
            (status, code),
            "expected {status} {code}: {self:?}"
        );
        assert!(
            self.body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.len() > 10),
            "{self:?}"
        );
    }
}

fn bounded(b: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    b.timeout(Duration::from_secs(120))
}

/// `GET path`.
pub async fn get(server: &ServerProcess, path: &str, tok: &str) -> Answer {
    let res = bounded(server.http().get(server.url(path)).bearer_auth(tok))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    Answer::read(res).await
}

/// `DELETE path`.
pub async fn delete(server: &ServerProcess, path: &str, tok: &str) -> Answer {
    let res = bounded(server.http().delete(server.url(path)).bearer_auth(tok))
        .send()
        .await
        .unwrap_or_else(|e| panic!("DELETE {path}: {e}"));
    Answer::read(res).await
}

/// `POST /v1/chat` (waits for the whole turn).
pub async fn chat(server: &ServerProcess, tok: &str, body: &Value) -> Answer {
    chat_with(server, tok, body, None).await
}

/// `POST /v1/chat` with an `Idempotency-Key`.
pub async fn chat_with(server: &ServerProcess, tok: &str, body: &Value, key: Option<&str>) -> Answer {
    let mut req = bounded(server.http().post(server.url("/v1/chat")).bearer_auth(tok)).json(body);
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    let res = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST /v1/chat {body}: {e}"));
    Answer::read(res).await
}

/// `POST /v1/chat/stream`: the open stream, or the refusal.
pub async fn stream(server: &ServerProcess, tok: &str, body: &Value) -> Result<Sse, Answer> {
    stream_with(server, tok, body, None).await
}

/// `POST /v1/chat/stream` with an `Idempotency-Key`.
pub async fn stream_with(
    server: &ServerProcess,
    tok: &str,
    body: &Value,
    key: Option<&str>,
) -> Result<Sse, Answer> {
    let mut req = server
        .http()
        .post(server.url("/v1/chat/stream"))
        .bearer_auth(tok)
        .json(body);
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    let res = tokio::time::timeout(EVENT_WAIT, req.send())
        .await
        .expect("the stream answers")
        .unwrap_or_else(|e| panic!("POST /v1/chat/stream {body}: {e}"));
    open(res).await
}

/// `GET /v1/runs/{run_id}/events`, resuming after `last_event_id` (the `Last-Event-ID` header) if given.
pub async fn resume(
    server: &ServerProcess,
    tok: &str,
    run_id: &str,
    last_event_id: Option<u64>,
) -> Result<Sse, Answer> {
    resume_at(server, tok, &format!("/v1/runs/{run_id}/events"), last_event_id).await
}

/// `GET path` of a run's events (e.g. with `?after=N`), with `Last-Event-ID` if given.
pub async fn resume_at(
    server: &ServerProcess,
    tok: &str,
    path: &str,
    last_event_id: Option<u64>,
) -> Result<Sse, Answer> {
    let mut req = server.http().get(server.url(path)).bearer_auth(tok);
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id.to_string());
    }
    let res = tokio::time::timeout(EVENT_WAIT, req.send())
        .await
        .expect("the stream answers")
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    open(res).await
}

async fn open(res: reqwest::Response) -> Result<Sse, Answer> {
    let is_sse = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if res.status() == 200 && is_sse {
        Ok(Sse::new(res))
    } else {
        Err(Answer::read(res).await)
    }
}

/// The open stream, failing the test with the refusal.
pub fn opened(r: Result<Sse, Answer>) -> Sse {
    r.unwrap_or_else(|a| panic!("the stream was refused: {a:?}"))
}

/// Fetches a download URL without a token: status and bytes.
pub async fn download(url: &str) -> (u16, Vec<u8>) {
    let res = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = res.status().as_u16();
    (status, res.bytes().await.map(|b| b.to_vec()).unwrap_or_default())
}

/// PNG magic number.
pub fn is_png(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A])
}

/// A JSON value without the keys that change on every read (`url`, `url_expires_at`), for comparing events.
pub fn without_urls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| *k != "url" && *k != "url_expires_at")
                .map(|(k, v)| (k.clone(), without_urls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_urls).collect()),
        other => other.clone(),
    }
}

/// Waits (bounded) until `ready` holds, polling every 200 ms; fails with `what` after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    while !ready().await {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
