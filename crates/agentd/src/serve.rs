//! `agentd serve`: builds the application from the settings, binds, announces itself (with a ready token when
//! running on the development secret), and shuts down gracefully on SIGINT/SIGTERM.

use agentd_auth::{Authenticator, KeySource, TenantId};
use agentd_config::Settings;
use agentd_core::Turns;
use agentd_db::Db;
use agentd_http::{App, AppState};
use std::sync::Arc;
use std::time::Duration;

pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    crate::telemetry::init(&settings.log);
    tracing::info!(config = %settings.redacted(), "starting agentd");
    let agents = crate::cli::load_agents(&settings)?;
    for a in agents.iter() {
        tracing::info!(agent = %a.key, model = %a.model, model_from = %a.model_source, image = a.image.is_some(), "agent loaded");
    }
    let auth = Authenticator::new(&settings.auth, &settings.var_dir.join("dev-jwt-secret"))?;
    let db = Db::connect(&settings.database).await?;
    db.prepare(&settings.database).await?;
    tracing::info!(database = db.kind(), url = %settings.database.redacted_url(), "database ready");

    let listener = tokio::net::TcpListener::bind(settings.http.bind_addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on BIND_ADDR={}: {e}", settings.http.bind_addr))?;
    let addr = listener.local_addr()?;
    if let KeySource::DevFile(path) = &auth.key_source {
        announce_dev_token(&auth, addr, path)?;
    }
    let store = build_store(&settings, addr).await?;
    let turns = build_turns(&settings, &db, &agents, &store).await?;
    let app = App {
        db: db.clone(),
        agents,
        auth,
        turns: turns.clone(),
        store,
        url_ttl: settings.storage.signed_url_ttl(),
        settings: settings.http.clone(),
        tenants: Default::default(),
    };
    let router = agentd_http::router(AppState(Arc::new(app)));
    tracing::info!(%addr, "listening");
    let stop = tokio_util::sync::CancellationToken::new();
    // Small SSE writes go out at once: without TCP_NODELAY, Nagle plus delayed ACKs hold them ~40 ms.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let serve = axum::serve(listener, router).with_graceful_shutdown(stop.clone().cancelled_owned());
    let mut server = tokio::spawn(serve.into_future());
    tokio::select! {
        () = shutdown_signal() => {}
        res = &mut server => return Ok(res??),
    }
    // New connections stop now; running turns get SHUTDOWN_GRACE_SECONDS to finish and be saved.
    stop.cancel();
    if !turns.shutdown().await {
        tracing::warn!(
            running = turns.running(),
            "shutdown deadline passed with turns still running"
        );
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    db.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// The object store, ready (bucket created where that is ours to do, checked where it must exist).
async fn build_store(
    settings: &Settings,
    addr: std::net::SocketAddr,
) -> anyhow::Result<Arc<dyn agentd_storage::BlobStore>> {
    let mut cfg = settings.storage.clone();
    if cfg.public_base_url == agentd_storage::StorageConfig::default().public_base_url {
        cfg.public_base_url = format!("http://{addr}");
    }
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
    store
        .ensure_ready()
        .await
        .map_err(|e| anyhow::anyhow!("object store ({}) is not ready: {e}", cfg.provider))?;
    tracing::info!(provider = %cfg.provider, "object store ready");
    Ok(store)
}

async fn build_turns(
    settings: &Settings,
    db: &Db,
    agents: &agentd_agents::AgentRegistry,
    store: &Arc<dyn agentd_storage::BlobStore>,
) -> anyhow::Result<Turns> {
    let parts = agentd_core::TurnParts {
        db: db.clone(),
        agents: agents.clone(),
        store: store.clone(),
        images: settings.image.clone(),
        settings: settings.turns.clone(),
    };
    if settings.offline() {
        tracing::warn!(
            model = agentd_core::OFFLINE_LABEL,
            "OPENAI_API_KEY is not set: turns go to the BUILT-IN OFFLINE MODEL (canned text, generated test \
             images); set OPENAI_API_KEY for real answers"
        );
        return Ok(Turns::offline(parts).await?);
    }
    let (base, key) = (settings.openai.base_url.clone(), settings.openai.api_key.clone());
    let client =
        agentd_responses::ResponsesClient::new(agentd_core::client_config(&settings.turns, base, key))?;
    tracing::info!(base_url = %settings.openai.base_url, "upstream: the Responses API");
    Ok(Turns::new(parts, client))
}

#[expect(
    clippy::print_stdout,
    reason = "the zero-config banner is for the developer at the terminal"
)]
fn announce_dev_token(
    auth: &Authenticator,
    addr: std::net::SocketAddr,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    let demo = TenantId::parse("demo").ok_or_else(|| anyhow::anyhow!("demo tenant id"))?;
    let token = auth.mint(&demo, "dev", None, chrono::Duration::hours(24))?;
    tracing::warn!(secret_file = %path.display(), "no AUTH_JWT_SECRET or AUTH_JWT_PUBLIC_KEY_PATH: using a development signing secret");
    println!(
        "\nagentd is running on the development secret ({}).\nA token for tenant `demo`, valid 24 h:\n\n  \
         export AGENTD_TOKEN={token}\n  curl -s -H \"Authorization: Bearer $AGENTD_TOKEN\" http://{addr}/v1/agents\n",
        path.display()
    );
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
    tracing::info!("shutdown signal received: finishing in-flight requests");
}
