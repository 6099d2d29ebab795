//! Fake OpenAI Responses API (`POST /v1/responses`, streamed and not) reproducing the real wire format:
//! §3.3 event order, one-line JSON, `event:` == `data.type`, contiguous `sequence_number` from 0, no
//! `[DONE]` by default, §4.1 error bodies, `x-request-id` and rate-limit headers on every answer, real PNG /
//! JPEG / WebP bytes. It serializes with the wire types of `agentd_responses`.
//!
//! This file owns the public handle ([`FakeUpstream`]), its configuration and the recorded requests.
//!
//! # Picking a scenario: the `#fake:` directive
//!
//! Put a directive in the **last user input text**; it runs from `#fake:` to the end of that line:
//!
//! ```text
//! #fake:<kind> [key=value | flag]...
//! kind:  text | image | moderation | error | flat-error | failed | incomplete | eof
//! keys:  images=N        image calls (kind image; default 1)
//!        partials=0..3   partial images per call (default: the tool's partial_images, else 0)
//!        big=MB          final image of ~MB decoded bytes (PNG: real pixels; JPEG/WebP: padding)
//!        big-other=MB    an unknown event `response.fake_blob` with an MB-long single line
//!        text=before|after|both|none   text position relative to images (default after)
//!        deltas=N        text deltas per message (default 4)
//!        text-kb=N       the text reply padded to N KB (1 KB = 1000 bytes)
//!        partial-mb=MB   partial images of about MB each
//!        eof-after=N     close the stream after N events, without a terminal event (kind eof: 4)
//!        fail=401|403|429|quota|500|503|locked|prev   pre-stream HTTP error instead of the turn
//!        times=K         fail only the first K requests carrying this exact directive
//!        retry-after=S   seconds for `retry-after` (429 defaults to 1; 503 has none unless set)
//!        delay=MS        silence before the first event;  gap=MS  silence between events
//!        stall=MS        one silence after `…generating` (image) or the first text delta
//!        chunk=BYTES     write size (default FakeConfig::chunk_size = 1460)
//! flags: generating      final image item has status "generating" with its full result
//!        unknown         unknown event types, an unknown output item and unknown fields
//!        no-tool-usage   omit `tool_usage` from the final response
//!        no-terminal     (error kinds) end right after the error event
//!        done            append `data: [DONE]` after the terminal event
//!        nul             a U+0000 in the text reply (a model can write one; PostgreSQL text cannot hold it)
//! ```
//!
//! Build it with [`Scenario`]: `format!("draw a cat {}", Scenario::image().partials(2).directive())`.
//! Without a directive: a request with an `image_generation` tool whose text mentions
//! draw/image/picture/paint/photo gets one image; anything else gets text only. A request with
//! `previous_response_id` is an edit: a different image and `action:"edit"`; in strict mode (default) the id
//! must have been issued by this instance, else 400 `previous_response_not_found`.
//!
//! # The offline model
//!
//! [`FakeConfig::offline`] is what `agentd` answers with when `OPENAI_API_KEY` is unset. There the directive
//! comes from an end user, so its values are clamped to [`DirectiveCaps`] (images no larger than the server's
//! image cap, at most 4 images, delays of a few seconds), and the instance keeps nothing per request: no
//! recorded requests, no set of issued response ids (any `previous_response_id` is accepted), at most
//! [`MAX_FAILURE_COUNTERS`] `times=K` counters. Generated images are memoised in one process-wide cache of
//! bounded size ([`images::CACHE_MAX_BYTES`]).

mod builder;
mod builders;
pub mod caps;
mod directive;
pub mod errors;
pub mod images;
pub mod scenario;
pub mod script;
mod server;
mod splice;
pub mod usage;
pub mod validate;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::task::JoinHandle;

pub use caps::DirectiveCaps;
pub use scenario::{Failure, Kind, Scenario, TextPlacement};

/// Most distinct `times=K` directives counted at once; beyond it the counts start over.
pub const MAX_FAILURE_COUNTERS: usize = 1024;

/// Configuration of a fake instance.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// Where to listen; port 0 picks a free port.
    pub addr: SocketAddr,
    /// Reject `previous_response_id`s this instance did not issue (lenient mode accepts any).
    pub strict_previous_response: bool,
    /// Reported `model` instead of echoing the request's (for the offline model).
    pub model_override: Option<String>,
    /// Answer 401 to requests without `Authorization: Bearer …`.
    pub require_auth: bool,
    /// Delay between every two events of every stream (latency benchmarks).
    pub event_delay: Duration,
    /// Size of each body write; events are split across writes.
    pub chunk_size: usize,
    /// Append `data: [DONE]` to every stream (some gateways do).
    pub send_done: bool,
    /// Clamp directive values (the offline model); `None`: every value as asked (the test server).
    pub caps: Option<DirectiveCaps>,
    /// Keep every request for [`FakeUpstream::requests`] (tests); off for the offline model.
    pub record_requests: bool,
    /// Silence before each partial image, as a real image model paces them: the offline model's previews then
    /// appear one after another instead of all at once.
    pub image_pace: Duration,
    /// Build image turns on threads of their own, one per core ([`builders`]), not on the async worker that
    /// took the request: a test server, a benchmark's fake or the offline model then holds no other stream up
    /// behind an image. (It was off for the offline model while agentd's heap used transparent huge pages, with
    /// which it raised agentd's RSS growth over 15 image turns of 3 MB under load to 20–57 MB against 6–13 MB;
    /// without them, on and off alike grew −13–+17 MB.)
    pub build_images_apart: bool,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            strict_previous_response: true,
            model_override: None,
            require_auth: true,
            event_delay: Duration::ZERO,
            chunk_size: 1460,
            send_done: false,
            caps: None,
            record_requests: true,
            image_pace: Duration::ZERO,
            build_images_apart: true,
        }
    }
}

impl FakeConfig {
    /// Settings for the built-in offline model: any `previous_response_id`, a model label, directive values
    /// clamped (images at most `max_image_bytes`), nothing kept per request.
    pub fn offline(model_label: impl Into<String>, max_image_bytes: u64) -> Self {
        Self {
            strict_previous_response: false,
            model_override: Some(model_label.into()),
            caps: Some(DirectiveCaps::offline(max_image_bytes)),
            record_requests: false,
            image_pace: Duration::from_millis(150),
            ..Self::default()
        }
    }
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Header names are lower-case.
    pub headers: Vec<(String, String)>,
    /// Parsed JSON body (`Null` when it was not JSON).
    pub body: Value,
}

impl RecordedRequest {
    /// First value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub(crate) struct Shared {
    pub(crate) cfg: FakeConfig,
    requests: Mutex<Vec<RecordedRequest>>,
    issued: Mutex<HashSet<String>>,
    failures: Mutex<HashMap<String, u32>>,
    /// Where image turns are built, with [`FakeConfig::build_images_apart`].
    pub(crate) builders: Option<builders::Builders>,
}

impl Shared {
    pub(crate) fn record(&self, r: RecordedRequest) {
        if let Ok(mut v) = self.requests.lock() {
            v.push(r);
        }
    }

    /// Remembers an issued response id; only strict mode ever asks, so lenient mode keeps none.
    pub(crate) fn issue(&self, id: &str) {
        if !self.cfg.strict_previous_response {
            return;
        }
        if let Ok(mut s) = self.issued.lock() {
            s.insert(id.to_owned());
        }
    }

    pub(crate) fn is_issued(&self, id: &str) -> bool {
        self.issued.lock().map(|s| s.contains(id)).unwrap_or(false)
    }

    /// Counts a failing directive; `true` while the count is within `times` (always when `None`).
    pub(crate) fn should_fail(&self, directive: &str, times: Option<u32>) -> bool {
        let Ok(mut map) = self.failures.lock() else {
            return true;
        };
        if map.len() >= MAX_FAILURE_COUNTERS && !map.contains_key(directive) {
            map.clear();
        }
        let n = map.entry(directive.to_owned()).or_insert(0);
        *n += 1;
        times.is_none_or(|k| *n <= k)
    }
}

/// A running fake; aborted on drop.
pub struct FakeUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FakeUpstream {
    /// Binds and starts serving in the background.
    pub async fn start(cfg: FakeConfig) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(cfg.addr).await?;
        let addr = listener.local_addr()?;
        let builders = cfg.build_images_apart.then(builders::Builders::start);
        let shared = Arc::new(Shared {
            cfg,
            requests: Mutex::new(Vec::new()),
            issued: Mutex::new(HashSet::new()),
            failures: Mutex::new(HashMap::new()),
            builders,
        });
        let app = server::router(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(
                axum::serve::ListenerExt::tap_io(listener, |tcp| {
                    let _ = tcp.set_nodelay(true);
                }),
                app,
            )
            .await
            {
                tracing::error!(error = %e, "fake upstream stopped");
            }
        });
        Ok(Self { addr, shared, task })
    }

    /// `http://127.0.0.1:PORT/v1`
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, in order (including rejected ones).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Marks a response id as issued (for strict `previous_response_id` checks).
    pub fn issue_response_id(&self, id: &str) {
        self.shared.issue(id);
    }

    /// Stops serving (open connections are dropped).
    pub fn shutdown(self) {
        self.task.abort();
    }

    /// Serves until the task ends (used by the binary).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
