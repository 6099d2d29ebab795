//! Prometheus metrics for `agentd serve`: the process-wide recorder (installed once, here in the binary, so
//! tests that build several applications in one process never race for it), histogram buckets by unit, and
//! `GET /metrics` on a listener of its own (`METRICS_ADDR`), never on the public port. The crates record
//! through the `metrics` facade (`agentd_core::metrics`, `agentd_responses::metrics`, `agentd_http`); gauges of
//! the present — database pool, running turns — are sampled here at each scrape.

use agentd_http::AppState;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const DB_POOL_CONNECTIONS: &str = "agentd_db_pool_connections";
pub const TURNS_RUNNING: &str = "agentd_turns_running";

const SECONDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];
const BYTES: &[f64] = &[
    16_384.0,
    65_536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
];
const USD: &[f64] = &[0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0];

/// Binds `METRICS_ADDR`, naming it when that fails (a port in use stops startup).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on METRICS_ADDR={addr}: {e} (set another METRICS_ADDR, or leave it empty to turn metrics off)"))
}

/// Installs the Prometheus recorder for this process and registers every metric's help text.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)?
        .set_buckets_for_metric(Matcher::Suffix("_bytes".into()), BYTES)?
        .set_buckets_for_metric(Matcher::Suffix("_usd".into()), USD)?
        .install_recorder()?;
    agentd_core::metrics::describe();
    agentd_responses::metrics::describe();
    agentd_http::describe_metrics();
    metrics::describe_gauge!(
        DB_POOL_CONNECTIONS,
        "Database pool connections by state (in_use, idle), sampled at each scrape."
    );
    metrics::describe_gauge!(
        TURNS_RUNNING,
        "Turns running in this process now, sampled at each scrape."
    );
    Ok(handle)
}

#[derive(Clone)]
struct Scrape {
    handle: PrometheusHandle,
    app: AppState,
}

/// Serves `GET /metrics` on `listener` until `stop`, and drains histogram samples every few seconds even when
/// nobody scrapes (the recorder keeps them until then).
pub fn serve(listener: TcpListener, handle: PrometheusHandle, app: AppState, stop: CancellationToken) {
    let upkeep = handle.clone();
    let until = stop.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                () = until.cancelled() => return,
                _ = every.tick() => upkeep.run_upkeep(),
            }
        }
    });
    // The same server loop as the API's, with its timeouts: a scraper that stalls cannot hold connections.
    let timeouts = agentd::server::ConnTimeouts::of(&app.settings);
    let router = axum::Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .fallback(not_found)
        .with_state(Scrape { handle, app });
    tokio::spawn(agentd::server::serve(listener, router, timeouts, stop));
}

async fn scrape(State(s): State<Scrape>) -> impl IntoResponse {
    let (open, idle) = s.app.db.pool_connections();
    let idle = u32::try_from(idle).unwrap_or(u32::MAX);
    metrics::gauge!(DB_POOL_CONNECTIONS, "state" => "in_use").set(f64::from(open.saturating_sub(idle)));
    metrics::gauge!(DB_POOL_CONNECTIONS, "state" => "idle").set(f64::from(idle));
    metrics::gauge!(TURNS_RUNNING).set(s.app.turns.running() as f64);
    s.handle.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        s.handle.render(),
    )
}

async fn not_found() -> impl IntoResponse {
    let body = serde_json::json!({"error": {"code": "not_found",
        "message": "This listener (METRICS_ADDR) serves only GET /metrics."}});
    (StatusCode::NOT_FOUND, axum::Json(body))
}
