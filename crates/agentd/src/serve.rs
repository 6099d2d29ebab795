//! `agentd serve`: raises its open-files limit, binds (`BIND_ADDR`, and `METRICS_ADDR` for [`crate::metrics`]),
//! builds the application ([`crate::AppBuilder`]), announces itself (with a ready token when running on the
//! development secret), and shuts down in order on SIGINT/SIGTERM: readiness and new turns answer 503 at once
//! while the listener stays open, running turns get `SHUTDOWN_GRACE_SECONDS` (those still running then are saved
//! as they stand), and only then do the listener and the database pool close.

use agentd::AppBuilder;
use agentd_config::Settings;
use std::time::Duration;

pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    crate::telemetry::init(&settings.log);
    tracing::info!(config = %settings.redacted(), "starting agentd");
    raise_open_files_limit();
    let listener = tokio::net::TcpListener::bind(settings.http.bind_addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on BIND_ADDR={}: {e}", settings.http.bind_addr))?;
    let addr = listener.local_addr()?;
    // Bound before anything else starts, so that a port in use stops startup naming METRICS_ADDR.
    let metrics = match settings.metrics_addr.addr() {
        Some(at) => Some((crate::metrics::bind(at).await?, crate::metrics::install()?)),
        None => None,
    };
    let app = AppBuilder::new(settings).build(addr).await?;
    if let Some((path, token)) = &app.dev_token {
        let key = app.state.playground.dev_key().unwrap_or_default();
        announce_dev_token(token, addr, path, key);
    }
    let turns = app.state.turns.clone();
    let db = app.state.db.clone();
    let stop = tokio_util::sync::CancellationToken::new();
    match metrics {
        Some((listener, handle)) => {
            let metrics_addr = listener.local_addr()?;
            crate::metrics::serve(listener, handle, app.state.clone(), stop.clone());
            tracing::info!(%metrics_addr, "metrics: GET http://{metrics_addr}/metrics");
        }
        None => tracing::info!("metrics off (METRICS_ADDR is empty)"),
    }
    tracing::info!(%addr, "listening");
    let timeouts = agentd::server::ConnTimeouts::of(&app.state.settings);
    let mut server = tokio::spawn(agentd::server::serve(
        listener,
        app.router,
        timeouts,
        stop.clone(),
    ));
    tokio::select! {
        () = shutdown_signal() => {}
        res = &mut server => return Ok(res?),
    }
    // The listener stays open through the grace: /readyz says 503 so balancers stop sending, new turns get 503.
    if !turns.shutdown().await {
        tracing::warn!("shutdown grace ended with turns running: they were saved as they stood");
    }
    stop.cancel();
    if tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .is_err()
    {
        tracing::warn!("open connections did not close within 10 s; stopping anyway");
    }
    db.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Every connection is a file descriptor, and the usual soft limit (1024 under systemd and recent container
/// runtimes) would let a thousand idle clients stop every other from being accepted: the soft limit goes up to
/// the hard one, as Go programs do by themselves. A hard limit that is still low is worth a warning.
fn raise_open_files_limit() {
    const LOW: u64 = 4096;
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) if n < LOW => tracing::warn!(
            open_files = n,
            "the open-files limit allows only {n} connections, files and sockets at once; raise its hard limit \
             (`ulimit -Hn`, LimitNOFILE= in a systemd unit, --ulimit nofile= in docker run)"
        ),
        Ok(n) => tracing::debug!(open_files = n, "open-files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-files limit"),
    }
}

#[expect(
    clippy::print_stdout,
    reason = "the zero-config banner is for the developer at the terminal"
)]
fn announce_dev_token(token: &str, addr: std::net::SocketAddr, path: &std::path::Path, key: &str) {
    tracing::warn!(secret_file = %path.display(), "no AUTH_JWT_SECRET or AUTH_JWT_PUBLIC_KEY_PATH: using a development signing secret");
    println!(
        "\nagentd is running on the development secret ({}).\nA token for tenant `demo`, valid 24 h:\n\n  \
         export AGENTD_TOKEN={token}\n  curl -s -H \"Authorization: Bearer $AGENTD_TOKEN\" http://{addr}/v1/agents\n  \
         playground: http://{addr}/#key={key}\n",
        path.display()
    );
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
