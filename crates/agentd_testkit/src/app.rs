//! The application on a loopback port, built from the same parts as `agentd serve`, with a real database.

use crate::TestDb;
use agentd_agents::{AgentRegistry, ImageDefaults, ModelSettings};
use agentd_auth::{AuthSettings, Authenticator, ScopeSet, TenantId};
use agentd_core::{TurnSettings, Turns};
use agentd_fake_upstream::{FakeConfig, FakeUpstream};
use agentd_http::{App, AppState, HttpSettings};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// The HS256 secret of test apps.
pub const TEST_SECRET: &str = "test-secret-test-secret-test-secret!";

/// Options for [`TestApp`].
pub struct TestAppBuilder {
    db: TestDb,
    auth: AuthSettings,
    http: HttpSettings,
    agents_dir: PathBuf,
    turns: TurnSettings,
    fake: FakeConfig,
    storage: agentd_storage::StorageConfig,
    images: ImageDefaults,
}

impl TestAppBuilder {
    pub fn audience(mut self, aud: &str) -> Self {
        self.auth.jwt_audience = Some(aud.into());
        self
    }

    pub fn keepalive_seconds(mut self, n: u64) -> Self {
        self.http.sse_keepalive_seconds = n;
        self
    }

    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.http.max_body_bytes = n;
        self
    }

    /// Adjusts the turn settings (limits, timeouts).
    pub fn turns(mut self, f: impl FnOnce(&mut TurnSettings)) -> Self {
        f(&mut self.turns);
        self
    }

    /// Uses this object store (memory by default).
    pub fn storage(mut self, config: agentd_storage::StorageConfig) -> Self {
        self.storage = config;
        self
    }

    /// Adjusts the `IMAGE_*` defaults.
    pub fn images(mut self, f: impl FnOnce(&mut ImageDefaults)) -> Self {
        f(&mut self.images);
        self
    }

    /// Adjusts the fake upstream.
    pub fn fake(mut self, f: impl FnOnce(&mut FakeConfig)) -> Self {
        f(&mut self.fake);
        self
    }

    pub async fn start(self) -> TestApp {
        let agents = AgentRegistry::load(
            &self.agents_dir,
            &ImageDefaults::default(),
            &ModelSettings {
                default_model: "gpt-5.5".into(),
                ..Default::default()
            },
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let auth = Authenticator::new(&self.auth, &dir.path().join("unused")).unwrap();
        let fake = FakeUpstream::start(self.fake).await.unwrap();
        let mut cfg = agentd_core::client_config(&self.turns, fake.base_url(), Some("sk-test".into()));
        cfg.retry_base = std::time::Duration::from_millis(5);
        let client = agentd_responses::ResponsesClient::new(cfg).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut storage = self.storage;
        storage.public_base_url = format!("http://{addr}");
        if storage.url_signing_secret.is_none() {
            storage.url_signing_secret = Some(agentd_storage::Secret::new(
                "test-url-signing-secret-0123456789abcdef",
            ));
        }
        let url_ttl = storage.signed_url_ttl();
        let store = agentd_storage::build(&storage).await.unwrap();
        store.ensure_ready().await.unwrap();
        let parts = agentd_core::TurnParts {
            db: self.db.db.clone(),
            agents: agents.clone(),
            store: store.clone(),
            images: self.images,
            settings: self.turns,
        };
        let turns = Turns::new(parts, client);
        let app = App {
            db: self.db.db.clone(),
            agents,
            auth,
            turns,
            store,
            url_ttl,
            settings: self.http,
            tenants: Default::default(),
            playground: Default::default(),
        };
        let state = AppState(Arc::new(app));
        let router = agentd_http::router(state.clone());
        tokio::spawn(async move { axum_serve(listener, router).await });
        TestApp {
            addr,
            state,
            db: self.db,
            http: reqwest::Client::new(),
            fake,
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

async fn axum_serve(listener: tokio::net::TcpListener, router: axum::Router) {
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let _ = axum::serve(listener, router).await;
}

/// A running app and a client for it.
pub struct TestApp {
    pub addr: SocketAddr,
    pub state: AppState,
    pub db: TestDb,
    pub http: reqwest::Client,
    /// The fake Responses API this app talks to: its recorded requests show what was sent upstream.
    pub fake: FakeUpstream,
}

impl TestApp {
    /// An app on a fresh PostgreSQL database with the shipped agents.
    pub async fn postgres() -> TestApp {
        Self::builder(crate::fresh_postgres().await).start().await
    }

    pub fn builder(db: TestDb) -> TestAppBuilder {
        TestAppBuilder {
            db,
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
            turns: TurnSettings {
                rate_limit_per_minute: 0,
                concurrent_limit: 0,
                ..TurnSettings::default()
            },
            fake: FakeConfig::default(),
            storage: agentd_storage::StorageConfig {
                provider: agentd_storage::Provider::Memory,
                ..Default::default()
            },
            images: ImageDefaults::default(),
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

    /// `POST /v1/chat/stream` with `body`, read to the end (60 s at most).
    pub async fn stream(&self, token: &str, body: serde_json::Value) -> Streamed {
        let res = self
            .http
            .post(self.url("/v1/chat/stream"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
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
