//! One streamed turn, timed from the moment the request is sent: through agentd (`POST /v1/chat/stream`,
//! contract events) or straight to the fake (`POST {fake}/responses`, wire events). Parses the SSE with
//! `sse-stream` and records the first event, the first text delta, the first image (agentd: `attachment`;
//! direct: the image item's `response.output_item.done`) and the terminal event. A message can carry a turn
//! tag ([`tagged`]): each turn then sends a number unique in the process, which the upstream request of that
//! turn carries too ([`find_tag`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use serde_json::{Value, json};
use sse_stream::SseByteStream;

/// Replaced in a request body, for every turn, by a number unique in the process.
pub const TURN_TAG: &str = "@TURN@";
const TAG_PREFIX: &[u8] = b"[bench-turn ";
static NEXT_TAG: AtomicU64 = AtomicU64::new(1);

/// `message` with a turn tag in front: `[bench-turn N] message`.
pub fn tagged(message: &str) -> String {
    format!("[bench-turn {TURN_TAG}] {message}")
}

/// The turn tag in a request body (agentd's upstream request carries the user's message verbatim); only a
/// complete one, `]` included.
pub fn find_tag(body: &[u8]) -> Option<u64> {
    let at = body.windows(TAG_PREFIX.len()).position(|w| w == TAG_PREFIX)? + TAG_PREFIX.len();
    let rest = body.get(at..)?;
    let len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if rest.get(len) != Some(&b']') {
        return None;
    }
    std::str::from_utf8(rest.get(..len)?).ok()?.parse().ok()
}

/// Where a turn goes, which decides the event names that mark its milestones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Agentd,
    Direct,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Self::Agentd => "agentd",
            Self::Direct => "direct",
        }
    }

    /// The first event of a stream.
    fn started(self) -> &'static str {
        match self {
            Self::Agentd => "run.started",
            Self::Direct => "response.created",
        }
    }

    /// A text delta.
    fn delta(self) -> &'static str {
        match self {
            Self::Agentd => "message.delta",
            Self::Direct => "response.output_text.delta",
        }
    }

    fn success(self) -> &'static str {
        match self {
            Self::Agentd => "run.completed",
            Self::Direct => "response.completed",
        }
    }

    fn failure(self, kind: &str) -> bool {
        match self {
            Self::Agentd => kind == "error",
            Self::Direct => matches!(kind, "error" | "response.failed" | "response.incomplete"),
        }
    }
}

/// A prepared request: URL, bearer token and JSON body.
#[derive(Debug, Clone)]
pub struct TurnRequest {
    pub target: Target,
    pub url: String,
    pub bearer: String,
    pub body: String,
}

/// The body of `POST /v1/chat/stream`.
pub fn agentd_body(agent: &str, message: &str) -> String {
    json!({ "agent": agent, "message": message }).to_string()
}

/// The body agentd would send upstream for the same turn (model, instructions, input, stream), with the
/// `image_generation` tool when `image` is set.
pub fn direct_body(message: &str, image: bool) -> String {
    let mut body = json!({
        "model": "gpt-5.5",
        "instructions": "You are a concise, friendly assistant. Answer in plain prose.",
        "input": [{ "role": "user", "content": [{ "type": "input_text", "text": message }] }],
        "stream": true,
        "store": true,
    });
    if image && let Some(map) = body.as_object_mut() {
        map.insert(
            "tools".to_owned(),
            json!([{ "type": "image_generation", "size": "1024x1024", "quality": "high",
                     "output_format": "png", "background": "auto", "partial_images": 2 }]),
        );
    }
    body.to_string()
}

/// Milestones of one successful turn, measured from just before the request was sent.
#[derive(Debug, Clone)]
pub struct TurnTiming {
    /// Just before the request was sent.
    pub sent: Instant,
    /// The turn tag sent (see [`tagged`]).
    pub tag: Option<u64>,
    /// First event (`run.started` / `response.created`).
    pub started: Option<Duration>,
    /// First text delta.
    pub first_delta: Option<Duration>,
    /// The terminal event.
    pub last: Duration,
    /// Events received, terminal included.
    pub events: u32,
    /// Bytes of SSE received.
    pub bytes: u64,
    /// `image.failed` events (agentd).
    pub images_failed: u32,
    /// `attachment` events (agentd).
    pub attachments: u32,
    /// The first final image: agentd's first `attachment`, or (direct) the first `response.output_item.done`
    /// carrying an `image_generation_call`.
    pub image_at: Option<Duration>,
    /// The first `attachment`'s `url` and `size_bytes` (agentd).
    pub attachment: Option<AttachmentRef>,
    /// Contract deviations seen on an otherwise good stream (agentd: `id:` not 1,2,3…, first event not
    /// `run.started`, `data:` not JSON).
    pub protocol_issues: u32,
}

/// Where a stored image can be downloaded, and how big agentd says it is.
#[derive(Debug, Clone)]
pub struct AttachmentRef {
    pub url: String,
    pub size_bytes: u64,
}

impl AttachmentRef {
    /// From the data of an `attachment` event: `{attachment: {url, size_bytes, …}}`.
    fn parse(data: Option<&str>) -> Option<Self> {
        let v: Value = serde_json::from_str(data?).ok()?;
        let a = v.get("attachment")?;
        Some(Self {
            url: a.get("url")?.as_str()?.to_owned(),
            size_bytes: a.get("size_bytes")?.as_u64()?,
        })
    }
}

/// Counts the bytes flowing through the SSE decoder.
fn counted(
    resp: reqwest::Response,
    total: Arc<AtomicU64>,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, reqwest::Error>> {
    resp.bytes_stream().inspect(move |chunk| {
        if let Ok(c) = chunk {
            total.fetch_add(c.len() as u64, Ordering::Relaxed);
        }
    })
}

/// Runs one turn within `limit`; `Err` carries a short reason for the report.
pub async fn run_turn(
    client: &reqwest::Client,
    req: &TurnRequest,
    limit: Duration,
) -> Result<TurnTiming, String> {
    let t0 = Instant::now();
    match tokio::time::timeout(limit, stream_turn(client, req, t0)).await {
        Ok(r) => r,
        Err(_) => Err(format!("timed out after {} s", limit.as_secs())),
    }
}

async fn stream_turn(client: &reqwest::Client, req: &TurnRequest, t0: Instant) -> Result<TurnTiming, String> {
    let (body, tag) = if req.body.contains(TURN_TAG) {
        let n = NEXT_TAG.fetch_add(1, Ordering::Relaxed);
        (req.body.replace(TURN_TAG, &n.to_string()), Some(n))
    } else {
        (req.body.clone(), None)
    };
    let resp = client
        .post(&req.url)
        .bearer_auth(&req.bearer)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .body(body)
        .send()
        .await
        .map_err(|e| format!("request failed: {}", chain(&e)))?;
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        return Err(format!("HTTP {status}: {}", clip(&text, 160)));
    }
    let ctype = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if !ctype.starts_with("text/event-stream") {
        return Err(format!(
            "HTTP {status} with content-type {ctype:?}, not text/event-stream"
        ));
    }
    let total = Arc::new(AtomicU64::new(0));
    let mut sse = SseByteStream::new(counted(resp, Arc::clone(&total)));
    let mut t = TurnTiming {
        sent: t0,
        tag,
        started: None,
        first_delta: None,
        last: Duration::ZERO,
        events: 0,
        bytes: 0,
        images_failed: 0,
        attachments: 0,
        image_at: None,
        attachment: None,
        protocol_issues: 0,
    };
    while let Some(item) = sse.next().await {
        let ev = item.map_err(|e| format!("stream broke after {} events: {e}", t.events))?;
        let Some(kind) = ev.event.as_deref() else {
            continue; // comment / keep-alive block, or a bare `data:` (e.g. `[DONE]`)
        };
        let at = t0.elapsed();
        t.events += 1;
        if req.target == Target::Agentd {
            check_contract(&mut t, kind, &ev);
        }
        if kind == req.target.started() && t.started.is_none() {
            t.started = Some(at);
        } else if kind == req.target.delta() && t.first_delta.is_none() {
            t.first_delta = Some(at);
        } else if kind == "image.failed" {
            t.images_failed += 1;
        } else if kind == "attachment" {
            t.attachments += 1;
            if t.image_at.is_none() {
                t.image_at = Some(at);
                t.attachment = AttachmentRef::parse(ev.data.as_deref());
            }
        } else if kind == "response.output_item.done"
            && req.target == Target::Direct
            && t.image_at.is_none()
            && ev
                .data
                .as_deref()
                .is_some_and(|d| d.contains("\"image_generation_call\""))
        {
            t.image_at = Some(at);
        } else if kind == req.target.success() {
            t.last = at;
            t.bytes = total.load(Ordering::Relaxed);
            return Ok(t);
        } else if req.target.failure(kind) {
            return Err(format!("terminal `{kind}`: {}", error_text(ev.data.as_deref())));
        }
    }
    Err(format!(
        "stream ended after {} events without a terminal event",
        t.events
    ))
}

/// Every agentd event has `id:` 1, 2, 3…, `run.started` first, and one-line JSON data.
fn check_contract(t: &mut TurnTiming, kind: &str, ev: &sse_stream::Sse) {
    let id_ok = ev.id.as_deref().and_then(|s| s.parse::<u32>().ok()) == Some(t.events);
    let first_ok = t.events != 1 || kind == "run.started";
    let data_ok = ev
        .data
        .as_deref()
        .is_some_and(|d| !d.contains('\n') && serde_json::from_str::<Value>(d).is_ok());
    if !(id_ok && first_ok && data_ok) {
        t.protocol_issues += 1;
    }
}

/// `code: message` of an error payload (agentd `{code,message}`, wire `{error:{code,message}}` or flat).
fn error_text(data: Option<&str>) -> String {
    let Some(v) = data.and_then(|d| serde_json::from_str::<Value>(d).ok()) else {
        return clip(data.unwrap_or(""), 160);
    };
    let e = v
        .get("error")
        .or_else(|| v.get("response").and_then(|r| r.get("error")))
        .unwrap_or(&v);
    let field = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
    clip(&format!("{}: {}", field("code"), field("message")), 160)
}

/// An error with its sources, on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

/// At most `n` characters, on one line.
pub fn clip(s: &str, n: usize) -> String {
    let one: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if one.chars().count() <= n {
        one
    } else {
        format!("{}…", one.chars().take(n).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tagged_message_is_found_in_a_json_body() {
        let msg = tagged("draw #fake:image").replace(TURN_TAG, "4711");
        let body = direct_body(&msg, true);
        assert_eq!(find_tag(body.as_bytes()), Some(4711));
        assert_eq!(find_tag(b"no tag here"), None);
        assert_eq!(find_tag(b"[bench-turn ]"), None);
        assert_eq!(
            find_tag(b"x [bench-turn 12"),
            None,
            "cut before the end of the number"
        );
        assert_eq!(find_tag(b"x [bench-turn 123] y"), Some(123));
    }
}
