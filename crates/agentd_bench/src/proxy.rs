//! The timing proxy between agentd and the fake upstream: a pass-through HTTP server on its own runtime that
//! forwards every request unchanged and streams the answer back unchanged, noting the moment it hands agentd
//! the last byte of an image's `response.output_item.done` — keyed by the turn tag the request carries
//! ([`crate::turns::tagged`]). The client's `attachment` arrival minus that moment is how long agentd took
//! from the upstream's final image to the client's attachment, measured without reading agentd's logs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use crate::sse_scan::Scanner;
use crate::turns;

struct Shared {
    upstream: String,
    client: reqwest::Client,
    /// Turn tag → when the image's `output_item.done` was handed on.
    marks: Mutex<HashMap<u64, Instant>>,
    requests: AtomicU64,
    failures: AtomicU64,
}

/// A running proxy; stops with its runtime on drop.
pub struct TimingProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    rt: Option<tokio::runtime::Runtime>,
}

fn hop_by_hop(name: &HeaderName) -> bool {
    [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
        header::HOST,
        header::CONTENT_LENGTH,
        header::PROXY_AUTHORIZATION,
    ]
    .contains(name)
        || name.as_str() == "keep-alive"
}

impl TimingProxy {
    /// Starts forwarding to `upstream_origin` (`http://host:port`, no path).
    pub fn start(upstream_origin: &str) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("timing-proxy")
            .enable_all()
            .build()?;
        let shared = Arc::new(Shared {
            upstream: upstream_origin.trim_end_matches('/').to_owned(),
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(256)
                .connect_timeout(Duration::from_secs(5))
                .build()?,
            marks: Mutex::new(HashMap::new()),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        });
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(Arc::clone(&shared));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .context("the timing proxy cannot bind a loopback port")?;
        let addr = listener.local_addr()?;
        rt.spawn(async move {
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            shared,
            rt: Some(rt),
        })
    }

    /// The base URL to give agentd as `OPENAI_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// When the image `output_item.done` of turn `tag` was handed to agentd.
    pub fn item_done(&self, tag: u64) -> Option<Instant> {
        self.shared
            .marks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&tag)
            .copied()
    }

    /// Requests forwarded, and those that could not be.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.shared.requests.load(Ordering::Relaxed),
            self.shared.failures.load(Ordering::Relaxed),
        )
    }
}

impl Drop for TimingProxy {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn bad_gateway(shared: &Shared, what: String) -> Response {
    shared.failures.fetch_add(1, Ordering::Relaxed);
    (StatusCode::BAD_GATEWAY, format!("timing proxy: {what}")).into_response()
}

async fn forward(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, 64 << 20).await {
        Ok(b) => b,
        Err(e) => return bad_gateway(&shared, format!("reading the request: {e}")),
    };
    let tag = turns::find_tag(&bytes);
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut rb = shared
        .client
        .request(parts.method, format!("{}{path}", shared.upstream))
        .body(bytes);
    for (k, v) in &parts.headers {
        if !hop_by_hop(k) {
            rb = rb.header(k, v);
        }
    }
    let resp = match rb.send().await {
        Ok(r) => r,
        Err(e) => return bad_gateway(&shared, turns::chain(&e)),
    };
    let mut out = Response::builder().status(resp.status());
    for (k, v) in resp.headers() {
        if !hop_by_hop(k) {
            out = out.header(k, v);
        }
    }
    let mut scanner = Scanner::default();
    let marks = Arc::clone(&shared);
    let stream = resp.bytes_stream().map(move |chunk| {
        if let (Ok(c), Some(tag)) = (&chunk, tag) {
            scanner.feed(c, |ev| {
                if ev.is_image_item_done() {
                    marks
                        .marks
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .entry(tag)
                        .or_insert_with(Instant::now);
                }
            });
        }
        chunk
    });
    match out.body(Body::from_stream(stream)) {
        Ok(r) => r,
        Err(e) => bad_gateway(&shared, format!("building the answer: {e}")),
    }
}
