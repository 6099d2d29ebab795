//! The application, wired from [`Settings`]: agents, authentication, database, object store, the upstream (the
//! Responses API, or the built-in offline model when `OPENAI_API_KEY` is unset), the turn service and the HTTP
//! router. `agentd serve` and the test kit build it through this same [`AppBuilder`]; tests only point it at
//! their own database and fake upstream.

use crate::startup::{self, wait_for};
use agentd_auth::{Authenticator, KeySource, TenantId};
use agentd_config::Settings;
use agentd_core::{TurnParts, Turns};
use agentd_db::{Db, DbError};
use agentd_fake_upstream::{FakeConfig, FakeUpstream};
use agentd_http::{App, AppState, Urls};
use agentd_storage::{BlobStore, StorageError};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The model label of the built-in offline model (reported as every response's `model`).
pub const OFFLINE_LABEL: &str = "agentd-offline";

/// Builds an [`Application`].
pub struct AppBuilder {
    settings: Settings,
    db: Option<Db>,
    upstream: Option<(String, Option<String>)>,
    retry_base: Option<Duration>,
}

/// A built application: its state (turns, database, store, …) and router, ready to serve.
pub struct Application {
    pub state: AppState,
    pub router: axum::Router,
    /// On the development secret made under `var/`: its file and a 24 h token for tenant `demo` (printed by
    /// `serve`, prefilled by the playground). Never set when a secret or public key is configured.
    pub dev_token: Option<(std::path::PathBuf, String)>,
    /// Keeps the in-process offline model running.
    _offline: Option<FakeUpstream>,
}

impl AppBuilder {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            db: None,
            upstream: None,
            retry_base: None,
        }
    }

    /// Uses this (connected, migrated) database instead of connecting to `DATABASE_URL`.
    pub fn database(mut self, db: Db) -> Self {
        self.db = Some(db);
        self
    }

    /// Sends turns to this Responses API instead of the configured one (or the offline model).
    pub fn upstream(mut self, base_url: String, api_key: Option<String>) -> Self {
        self.upstream = Some((base_url, api_key));
        self
    }

    /// The first retry delay of upstream requests (tests shorten it).
    pub fn retry_base(mut self, base: Duration) -> Self {
        self.retry_base = Some(base);
        self
    }

    /// Wires everything. `addr` is where the server listens: the default base of the download URLs that
    /// agentd signs itself.
    pub async fn build(self, addr: SocketAddr) -> anyhow::Result<Application> {
        Box::pin(self.wire(addr)).await
    }

    async fn wire(self, addr: SocketAddr) -> anyhow::Result<Application> {
        let s = &self.settings;
        let agents = agentd_agents::AgentRegistry::load(&s.agents_dir, &s.image, &s.models())?;
        for a in agents.iter() {
            tracing::info!(agent = %a.key, model = %a.model, model_from = %a.model_source, image = a.image.is_some(), "agent loaded");
        }
        let auth = Authenticator::new(&s.auth, &s.var_dir.join("dev-jwt-secret"))?;
        // Both waited for at once: compose and pods start the database and the store together.
        let (db, store) = tokio::try_join!(open_db(s, self.db), build_store(s, addr))?;
        let (client, model_label, offline) = match self.upstream {
            Some((base, key)) => (client(s, base, key, self.retry_base)?, None, None),
            None if s.offline() => {
                tracing::warn!(
                    model = OFFLINE_LABEL,
                    "OPENAI_API_KEY is not set: turns go to the BUILT-IN OFFLINE MODEL \
                    (canned text, generated test images); set OPENAI_API_KEY for real answers"
                );
                let fake =
                    FakeUpstream::start(FakeConfig::offline(OFFLINE_LABEL, s.image.output_max_bytes()))
                        .await?;
                let client = client(s, fake.base_url(), Some("offline".into()), self.retry_base)?;
                (client, Some(OFFLINE_LABEL.to_owned()), Some(fake))
            }
            None => {
                tracing::info!(base_url = %agentd_config::redact_userinfo(&s.openai.base_url), "upstream: the Responses API");
                let client = client(
                    s,
                    s.openai.base_url.clone(),
                    s.openai.api_key.clone(),
                    self.retry_base,
                )?;
                (client, None, None)
            }
        };
        let turns = Turns::new(TurnParts {
            db: db.clone(),
            agents: agents.clone(),
            store: store.clone(),
            images: s.image.clone(),
            settings: s.turns.clone(),
            client,
            model_label,
        });
        let dev_token = match &auth.key_source {
            KeySource::DevFile(path) => {
                let demo = TenantId::parse("demo")?;
                Some((
                    path.clone(),
                    auth.mint(&demo, "dev", None, chrono::Duration::hours(24))?,
                ))
            }
            _ => None,
        };
        let app = App {
            db,
            agents,
            auth,
            turns,
            urls: Urls::new(store.clone(), s.storage.signed_url_ttl()),
            store,
            settings: s.http.clone(),
            lease: s.turns.lease(),
            tenants: Default::default(),
            playground: agentd_http::Playground::new(dev_token.as_ref().map(|(_, t)| t.clone())),
            readiness: Default::default(),
        };
        let state = AppState(Arc::new(app));
        Ok(Application {
            router: agentd_http::router(state.clone()),
            state,
            dev_token,
            _offline: offline,
        })
    }
}

fn client(
    s: &Settings,
    base: String,
    key: Option<String>,
    retry_base: Option<Duration>,
) -> anyhow::Result<agentd_responses::ResponsesClient> {
    let mut cfg = agentd_core::client_config(&s.turns, base, key);
    if let Some(b) = retry_base {
        cfg.retry_base = b;
    }
    Ok(agentd_responses::ResponsesClient::new(cfg)?)
}

/// The given database, or `DATABASE_URL`'s once it answers and its schema is current.
async fn open_db(s: &Settings, given: Option<Db>) -> anyhow::Result<Db> {
    if let Some(db) = given {
        return Ok(db);
    }
    let db = wait_for("the database", startup::WAIT, DbError::is_transient, || async {
        let db = Db::connect(&s.database).await?;
        db.prepare(&s.database).await?;
        Ok(db)
    })
    .await?;
    tracing::info!(database = db.kind(), url = %s.database.redacted_url(), "database ready");
    Ok(db)
}

/// The object store, ready (bucket created where that is ours to do, checked where it must exist).
async fn build_store(settings: &Settings, addr: SocketAddr) -> anyhow::Result<Arc<dyn BlobStore>> {
    let mut cfg = settings.storage.clone();
    // Unset: where the server is bound (an explicit value is kept, whatever it is).
    cfg.public_base_url
        .get_or_insert_with(|| format!("http://{addr}"));
    let self_signed = matches!(
        cfg.provider,
        agentd_storage::Provider::Memory | agentd_storage::Provider::Filesystem
    );
    if self_signed && cfg.url_signing_secret.is_none() {
        // Like the dev JWT secret: made once under var/, so download links survive a restart.
        let path = settings.var_dir.join("url-signing-secret");
        let secret = agentd_auth::read_or_create_secret(&path)
            .map_err(|e| anyhow::anyhow!("cannot read or create {}: {e}", path.display()))?;
        cfg.url_signing_secret = Some(agentd_storage::Secret::new(secret));
    }
    let store = agentd_storage::build(&cfg)
        .await
        .map_err(|e| anyhow::anyhow!("object store ({}): {e}", cfg.provider))?;
    let unavailable = |e: &StorageError| matches!(e, StorageError::Unavailable(_));
    wait_for("the object store", startup::WAIT, unavailable, || {
        store.ensure_ready()
    })
    .await
    .map_err(|e| anyhow::anyhow!("object store ({}) is not ready: {e}", cfg.provider))?;
    tracing::info!(provider = %cfg.provider, "object store ready");
    Ok(store)
}
