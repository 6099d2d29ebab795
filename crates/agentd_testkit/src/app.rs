//! The application on a loopback port, built by the same [`agentd::AppBuilder`] as `agentd serve`, with a real
//! database and a fake Responses API of its own.

use crate::TestDb;
use agentd_agents::ImageDefaults;
use agentd_auth::{AuthSettings, ScopeSet, TenantId};
use agentd_config::Settings;
use agentd_core::TurnSettings;
use agentd_fake_upstream::{FakeConfig, FakeUpstream};
use agentd_http::{AppState, HttpSettings};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The HS256 secret of test apps.
pub const TEST_SECRET: &str = "test-secret-test-secret-test-secret!";

/// Options for [`TestApp`].
pub struct TestAppBuilder {
    db: TestDb,
    settings: Settings,
    fake: FakeConfig,
}

impl TestAppBuilder {
    pub fn audience(mut self, aud: &str) -> Self {
        self.settings.auth.jwt_audience = Some(aud.into());
        self
    }

    pub fn keepalive_seconds(mut self, n: u64) -> Self {
        self.settings.http.sse_keepalive_seconds = n;
        self
    }

    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.settings.http.max_body_bytes = n;
        self
    }

    /// Adjusts the turn settings (limits, timeouts).
    pub fn turns(mut self, f: impl FnOnce(&mut TurnSettings)) -> Self {
        f(&mut self.settings.turns);
        self
    }

    /// Uses this object store (memory by default).
    pub fn storage(mut self, config: agentd_storage::StorageConfig) -> Self {
        self.settings.storage = config;
        self
    }

    /// Adjusts the `IMAGE_*` defaults.
    pub fn images(mut self, f: impl FnOnce(&mut ImageDefaults)) -> Self {
        f(&mut self.settings.image);
        self
    }

    /// Adjusts the fake upstream.
    pub fn fake(mut self, f: impl FnOnce(&mut FakeConfig)) -> Self {
        f(&mut self.fake);
        self
    }

    pub async fn start(self) -> TestApp {
        let var = tempfile::tempdir().unwrap();
        let mut settings = self.settings;
        settings.var_dir = var.path().to_owned();
        settings.database = self.db.settings.clone();
        let fake = FakeUpstream::start(self.fake).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        if settings.storage.url_signing_secret.is_none() {
            settings.storage.url_signing_secret = Some(agentd_storage::Secret::new(
                "test-url-signing-secret-0123456789abcdef",
            ));
        }
        let app = agentd::AppBuilder::new(settings)
            .database(self.db.db.clone())
            .upstream(fake.base_url(), Some("sk-test".into()))
            .retry_base(std::time::Duration::from_millis(5))
            .build(addr)
            .await
            .unwrap();
        let state = app.state.clone();
        let timeouts = agentd::server::ConnTimeouts::of(&state.settings);
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(agentd::server::serve(listener, app.router, timeouts, stop));
        TestApp {
            addr,
            state,
            db: self.db,
            http: reqwest::Client::new(),
            fake,
            _var: var,
        }
    }
}

/// A stream read to its end.
pub struct Streamed {
    pub status: reqwest::StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub events: Vec<SseEvent>,
    pub raw: String,
}

impl Streamed {
    /// The event names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.events.iter().map(|e| e.event.as_str()).collect()
    }

    /// The data of the first event named `name`.
    pub fn first(&self, name: &str) -> &serde_json::Value {
        &self
            .events
            .iter()
            .find(|e| e.event == name)
            .unwrap_or_else(|| panic!("no {name} in {:?}", self.names()))
            .data
    }

    /// The data of the last event.
    pub fn last(&self) -> &serde_json::Value {
        &self.events.last().expect("at least one event").data
    }
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: Option<u64>,
    pub event: String,
    pub data: serde_json::Value,
}

/// Splits an SSE body into events (comments skipped).
pub fn parse_sse(raw: &str) -> Vec<SseEvent> {
    raw.split("\n\n")
        .filter_map(|block| {
            let (mut id, mut event, mut data) = (None, None, None);
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ").or_else(|| line.strip_prefix("id:")) {
                    id = v.trim().parse().ok();
                } else if let Some(v) = line
                    .strip_prefix("event: ")
                    .or_else(|| line.strip_prefix("event:"))
                {
                    event = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("data: ").or_else(|| line.strip_prefix("data:")) {
                    data = Some(serde_json::from_str(v).expect("one-line JSON data"));
                }
            }
            Some(SseEvent {
                id,
                event: event?,
                data: data.unwrap_or_default(),
            })
        })
        .collect()
}

/// A running app and a client for it.
pub struct TestApp {
    pub addr: SocketAddr,
    pub state: AppState,
    pub db: TestDb,
    pub http: reqwest::Client,
    /// The fake Responses API this app talks to: its recorded requests show what was sent upstream.
    pub fake: FakeUpstream,
    _var: tempfile::TempDir,
}

impl TestApp {
    /// An app on a fresh PostgreSQL database with the shipped agents.
    pub async fn postgres() -> TestApp {
        Box::pin(Self::builder(crate::fresh_postgres().await).start()).await
    }

    pub fn builder(db: TestDb) -> TestAppBuilder {
        let settings = Settings {
            auth: AuthSettings {
                jwt_secret: Some(TEST_SECRET.into()),
                ..Default::default()
            },
            // Tests change tenant statuses under the app's feet: always ask the database.
            http: HttpSettings {
                tenant_cache_seconds: 0,
                ..HttpSettings::default()
            },
            agents_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config/agents"),
            agent_model_default: "gpt-5.5".into(),
            turns: TurnSettings {
                rate_limit_per_minute: 0,
                concurrent_limit: 0,
                ..TurnSettings::default()
            },
            storage: agentd_storage::StorageConfig {
                provider: agentd_storage::Provider::Memory,
                ..Default::default()
            },
            ..Settings::default()
        };
        TestAppBuilder {
            db,
            settings,
            fake: FakeConfig::default(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A token for `tenant`/`user` with all scopes (or `scopes`).
    pub fn token(&self, tenant: &str, user: &str, scopes: Option<ScopeSet>) -> String {
        let t = TenantId::parse(tenant).unwrap();
        self.state
            .auth
            .mint(&t, user, scopes, chrono::Duration::minutes(10))
            .unwrap()
    }

    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// `GET path` as JSON.
    pub async fn get_json(&self, path: &str, token: &str) -> (reqwest::StatusCode, serde_json::Value) {
        let res = self.get(path, token).await;
        (res.status(), res.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// `POST /v1/chat` with `body`.
    pub async fn chat(&self, token: &str, body: serde_json::Value) -> reqwest::Response {
        self.http
            .post(self.url("/v1/chat"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// `POST /v1/chat` with `body`, its JSON answer.
    pub async fn chat_json(&self, token: &str, body: serde_json::Value) -> serde_json::Value {
        self.chat(token, body).await.json().await.unwrap()
    }

    /// `POST /v1/chat` in the background (a turn that runs while the test does something else).
    pub fn spawn_chat(
        &self,
        token: &str,
        body: serde_json::Value,
    ) -> tokio::task::JoinHandle<reqwest::StatusCode> {
        let req = self
            .http
            .post(self.url("/v1/chat"))
            .bearer_auth(token)
            .json(&body);
        tokio::spawn(async move { req.send().await.unwrap().status() })
    }

    /// `POST /v1/chat/stream` with `body`, read as far as its first chunk: the `run.started` data, and the
    /// response with the rest of the stream still to read.
    pub async fn stream_started(
        &self,
        token: &str,
        body: serde_json::Value,
    ) -> (reqwest::Response, serde_json::Value) {
        let mut res = self.post_stream(token, &body).await;
        let first = res.chunk().await.unwrap().expect("a first chunk");
        let events = parse_sse(std::str::from_utf8(&first).unwrap());
        assert_eq!(events[0].event, "run.started", "{events:?}");
        let started = events[0].data.clone();
        (res, started)
    }

    /// `POST /v1/chat/stream` with `body`, unread.
    async fn post_stream(&self, token: &str, body: &serde_json::Value) -> reqwest::Response {
        self.http
            .post(self.url("/v1/chat/stream"))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// `GET /v1/runs/{run_id}/events`, after `last_event_id` (the `Last-Event-ID` header) if given.
    pub async fn run_events(
        &self,
        token: &str,
        run_id: &str,
        last_event_id: Option<u64>,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .get(self.url(&format!("/v1/runs/{run_id}/events")))
            .bearer_auth(token);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id.to_string());
        }
        req.send().await.unwrap()
    }

    /// Holds `tenant`'s rate cell (its row in `tenant_rate`, PostgreSQL) locked in a side transaction until the
    /// returned one ends, as a slow admission of that tenant would: its next admissions wait at the cell.
    pub async fn hold_rate_cell(&self, tenant: &str) -> sqlx::Transaction<'static, sqlx::Postgres> {
        let side = sqlx::PgPool::connect(&self.db.settings.url).await.unwrap();
        let mut hold = side.begin().await.unwrap();
        sqlx::query("SELECT 1 FROM tenant_rate WHERE tenant_id = $1 FOR UPDATE")
            .bind(tenant)
            .execute(&mut *hold)
            .await
            .unwrap();
        hold
    }

    /// Waits (10 s at most) until the upstream has received `n` requests in all: a turn that reached it was
    /// admitted (its lease and user message are committed).
    pub async fn until_upstream_requests(&self, n: usize) {
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while self.fake.requests().len() < n {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the upstream did not get {n} requests within 10 s"));
    }

    /// [`Self::run_events`], which must answer 200, read to the end (30 s at most: a stream that does not end
    /// fails the test; a dead holder is found by a reader's look at the run, every 5 s).
    pub async fn resume(&self, token: &str, run_id: &str, last_event_id: Option<u64>) -> Vec<SseEvent> {
        let res = self.run_events(token, run_id, last_event_id).await;
        assert_eq!(res.status(), 200, "resume {run_id} after {last_event_id:?}");
        let raw = tokio::time::timeout(std::time::Duration::from_secs(30), res.text())
            .await
            .unwrap_or_else(|_| panic!("resume {run_id} after {last_event_id:?}: the stream did not end"))
            .unwrap();
        parse_sse(&raw)
    }

    /// `POST /v1/chat/stream` with `body`, read to the end (60 s at most).
    pub async fn stream(&self, token: &str, body: serde_json::Value) -> Streamed {
        let res = self.post_stream(token, &body).await;
        let (status, headers) = (res.status(), res.headers().clone());
        let raw = tokio::time::timeout(std::time::Duration::from_secs(60), res.text())
            .await
            .expect("stream ended")
            .unwrap();
        Streamed {
            status,
            headers,
            events: parse_sse(&raw),
            raw,
        }
    }
}
