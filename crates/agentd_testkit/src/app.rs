//! The application on a loopback port, built from the same parts as `agentd serve`, with a real database.

use crate::TestDb;
use agentd_agents::{AgentRegistry, ImageDefaults, ModelSettings};
use agentd_auth::{AuthSettings, Authenticator, ScopeSet, TenantId};
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
}

impl TestAppBuilder {
    pub fn audience(mut self, aud: &str) -> Self {
        self.auth.jwt_audience = Some(aud.into());
        self
    }

    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.http.max_body_bytes = n;
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
        let app = App {
            db: self.db.db.clone(),
            agents,
            auth,
            settings: self.http,
        };
        let state = AppState(Arc::new(app));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = agentd_http::router(state.clone());
        tokio::spawn(async move { axum_serve(listener, router).await });
        TestApp {
            addr,
            state,
            db: self.db,
            http: reqwest::Client::new(),
        }
    }
}

async fn axum_serve(listener: tokio::net::TcpListener, router: axum::Router) {
    let _ = axum::serve(listener, router).await;
}

/// A running app and a client for it.
pub struct TestApp {
    pub addr: SocketAddr,
    pub state: AppState,
    pub db: TestDb,
    pub http: reqwest::Client,
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
            http: HttpSettings::default(),
            agents_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config/agents"),
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
}
