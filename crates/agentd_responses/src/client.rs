//! [`ResponsesClient`]: the HTTP half. Sends `POST {base_url}/responses`, retries only before any body has
//! been read (408/409/429/5xx, connection failures), honours `retry-after`, and hands streams to
//! [`EventStream`].

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use rand::Rng;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap};
use tokio::time::Instant;

use crate::config::ClientConfig;
use crate::error::{ApiErrorBody, Error, TimeoutKind};
use crate::frame::Gate;
use crate::metrics;
use crate::request::CreateResponse;
use crate::response::ResponseObject;
use crate::stream::EventStream;

/// A non-streamed response and the upstream `x-request-id`.
#[derive(Debug, Clone)]
pub struct Completed {
    pub response: ResponseObject,
    pub request_id: Option<String>,
}

/// Client of the Responses API. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ResponsesClient {
    http: reqwest::Client,
    cfg: ClientConfig,
    url: String,
    /// Slots for streams buffering a large event ([`ClientConfig::large_events_at_once`]).
    large_events: std::sync::Arc<tokio::sync::Semaphore>,
}

/// Display of an error with its sources (reqwest's own text is terse).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        text.push_str(": ");
        text.push_str(&s.to_string());
        src = s.source();
    }
    text
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name)?.to_str().ok().map(str::to_owned)
}

/// `retry-after-ms` (milliseconds) wins over `retry-after` (seconds); HTTP dates are not honoured.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(ms) = header_str(headers, "retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let secs = header_str(headers, "retry-after")?.trim().parse::<f64>().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

impl ResponsesClient {
    /// Builds the client. Fails only on an unusable TLS/HTTP setup.
    pub fn new(cfg: ClientConfig) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .user_agent(cfg.user_agent.clone())
            .build()
            .map_err(|e| Error::Config(error_chain(&e)))?;
        let url = format!("{}/responses", cfg.base_url.trim_end_matches('/'));
        let large_events = std::sync::Arc::new(tokio::sync::Semaphore::new(cfg.large_events_at_once.max(1)));
        Ok(Self {
            http,
            cfg,
            url,
            large_events,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// Non-streaming create: sends `stream: false` and returns the whole response object.
    pub async fn create(&self, req: &CreateResponse) -> Result<Completed, Error> {
        let deadline = Instant::now() + self.cfg.total_timeout;
        let body = encode(req, false)?;
        let resp = self.send_with_retries(body, false, deadline).await?;
        let request_id = header_str(resp.headers(), "x-request-id");
        let bytes = read_capped(resp, deadline, self.cfg.max_event_bytes).await?;
        let response: ResponseObject =
            serde_json::from_slice(&bytes).map_err(|e| Error::Decode(format!("response body: {e}")))?;
        Ok(Completed { response, request_id })
    }

    /// Streaming create: sends `stream: true`; returns once the upstream answered 200 `text/event-stream`.
    pub async fn stream(&self, req: &CreateResponse) -> Result<EventStream, Error> {
        let deadline = Instant::now() + self.cfg.total_timeout;
        let body = encode(req, true)?;
        let resp = self.send_with_retries(body, true, deadline).await?;
        let request_id = header_str(resp.headers(), "x-request-id");
        let content_type = header_str(resp.headers(), CONTENT_TYPE.as_str()).unwrap_or_default();
        if !content_type
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("text/event-stream")
        {
            return Err(Error::InvalidContentType(content_type));
        }
        Ok(EventStream::new(
            Box::pin(resp.bytes_stream()),
            request_id,
            self.cfg.idle_timeout,
            deadline,
            self.cfg.max_event_bytes,
            Gate::new(self.large_events.clone(), self.cfg.stall_timeout),
        ))
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.cfg.retry_base;
        let exp = base
            .saturating_mul(1u32 << attempt.min(16))
            .min(base.saturating_mul(16));
        let jitter: f64 = rand::rng().random_range(0.0..0.25);
        exp.mul_f64(1.0 - jitter)
    }

    async fn send_with_retries(
        &self,
        body: Bytes,
        stream: bool,
        deadline: Instant,
    ) -> Result<reqwest::Response, Error> {
        let mut attempt: u32 = 0;
        loop {
            let sent = std::time::Instant::now();
            let answer = self.send_once(body.clone(), stream, deadline).await;
            metrics::request(answer.as_ref().map(|r| r.status().as_u16()), sent.elapsed());
            let err = match answer {
                Ok(resp) => return Ok(resp),
                Err(err) => err,
            };
            if attempt >= self.cfg.max_retries || !err.is_retryable() {
                return Err(err);
            }
            let server_delay = match &err {
                Error::Api { retry_after, .. } => retry_after.filter(|d| !d.is_zero()),
                _ => None,
            };
            let delay = match server_delay {
                Some(d) if d > self.cfg.max_retry_after => return Err(err),
                Some(d) => d,
                None => self.backoff(attempt),
            };
            if Instant::now() + delay >= deadline {
                return Err(err);
            }
            attempt += 1;
            metrics::retry(&err);
            tracing::warn!(
                upstream_request_id = err.request_id().unwrap_or("-"),
                status = err.status().unwrap_or(0),
                attempt,
                max_retries = self.cfg.max_retries,
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                error = %err,
                "retrying upstream request"
            );
            tokio::time::sleep(delay).await;
        }
    }

    async fn send_once(
        &self,
        body: Bytes,
        stream: bool,
        deadline: Instant,
    ) -> Result<reqwest::Response, Error> {
        let accept = if stream {
            "text/event-stream"
        } else {
            "application/json"
        };
        let mut rb = self
            .http
            .post(&self.url)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, accept)
            .body(body);
        if let Some(key) = &self.cfg.api_key {
            rb = rb.bearer_auth(key);
        }
        let resp = match tokio::time::timeout_at(deadline, rb.send()).await {
            Err(_) => return Err(Error::Timeout(TimeoutKind::Total)),
            Ok(Err(e)) if e.is_timeout() => return Err(Error::Timeout(TimeoutKind::Connect)),
            Ok(Err(e)) => return Err(Error::Connect(error_chain(&e))),
            Ok(Ok(resp)) => resp,
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let request_id = header_str(resp.headers(), "x-request-id");
        let retry_after = retry_after(resp.headers());
        let body = read_capped(resp, deadline, 1024 * 1024).await.unwrap_or_default();
        Err(Error::Api {
            status: status.as_u16(),
            error: Box::new(ApiErrorBody::from_body(&body)),
            request_id,
            retry_after,
        })
    }
}

fn encode(req: &CreateResponse, stream: bool) -> Result<Bytes, Error> {
    let result = if req.stream == Some(stream) {
        serde_json::to_vec(req)
    } else {
        let mut copy = req.clone();
        copy.stream = Some(stream);
        serde_json::to_vec(&copy)
    };
    result
        .map(Bytes::from)
        .map_err(|e| Error::Decode(format!("request body: {e}")))
}

async fn read_capped(resp: reqwest::Response, deadline: Instant, limit: usize) -> Result<Vec<u8>, Error> {
    let mut body = resp.bytes_stream();
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, body.next()).await {
            Err(_) => return Err(Error::Timeout(TimeoutKind::Total)),
            Ok(None) => return Ok(out),
            Ok(Some(Err(e))) => return Err(Error::Transport(error_chain(&e))),
            Ok(Some(Ok(chunk))) => {
                if out.len() + chunk.len() > limit {
                    return Err(Error::EventTooLarge { limit });
                }
                out.extend_from_slice(&chunk);
            }
        }
    }
}
