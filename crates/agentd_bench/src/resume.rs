//! The clients of `bench-resume`: runs started on one agentd replica whose stream is dropped at random moments
//! and resumed on a random other replica with `Last-Event-ID` (`GET /v1/runs/{run_id}/events`), until the
//! terminal event. Every received event except previews is kept (id, name, data without URLs) and checked
//! against a full replay of the finished run from yet another replica: lost, duplicated, different. An
//! observed run is never dropped; instead two followers read it from the start, one on the replica running it
//! and one on another, and each event's arrival on the three streams is compared.

use std::pin::Pin;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{Stream, StreamExt};
use rand::Rng;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use serde_json::Value;
use sse_stream::Sse;

use crate::resume_check::{Seen, is_terminal, seen, tally};
use crate::resume_latency::{Latency, journal_times, latency};
use crate::turns::{chain, clip};

/// An open event stream.
type Events = Pin<Box<dyn Stream<Item = Result<Sse, sse_stream::Error>> + Send>>;

/// What every run of the phase shares.
pub struct Setup {
    pub client: reqwest::Client,
    /// The replicas' base URLs.
    pub replicas: Vec<String>,
    /// How long a connection lives before it is dropped (ms, uniform).
    pub lifetime_ms: (u64, u64),
    /// Pause before reconnecting (ms, uniform).
    pub reconnect_ms: (u64, u64),
    /// Limit of one run, resumes and replay included.
    pub run_timeout: Duration,
    /// The shared database, to read when the journal wrote an observed run's events (`created_at`).
    pub log_db: Option<sqlx::PgPool>,
    /// The same moment on both clocks, to compare arrivals with `created_at`.
    pub anchor: (Instant, SystemTime),
}

impl Setup {
    /// Seconds since the epoch at `t`.
    pub(crate) fn epoch(&self, t: Instant) -> f64 {
        let (i, s) = self.anchor;
        let base = s.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        if t >= i {
            base + (t - i).as_secs_f64()
        } else {
            base - (i - t).as_secs_f64()
        }
    }
}

/// What one run showed.
#[derive(Debug, Default, Clone)]
pub struct RunCheck {
    /// Events of the full replay.
    pub replayed: usize,
    /// Replayed events never received.
    pub lost: usize,
    /// Extra receptions of an id.
    pub duplicated: usize,
    /// Received events whose name or data differ from the replay's (or that the replay does not have).
    pub different: usize,
    /// Resumed connections that answered.
    pub resumes: usize,
    /// Resume attempts that did not answer with a stream (retried).
    pub resume_errors: usize,
    /// Connections that ended without the terminal event and were not dropped by the client.
    pub broken: usize,
    /// The terminal event's name.
    pub terminal: String,
    /// Observed runs: per event id seen live and by both followers.
    pub latency: Option<Latency>,
}

fn random_in((lo, hi): (u64, u64)) -> Duration {
    Duration::from_millis(if hi > lo {
        rand::rng().random_range(lo..=hi)
    } else {
        lo
    })
}

/// A replica other than `not` (any when there is one).
fn other_replica(n: usize, not: usize) -> usize {
    if n < 2 {
        return 0;
    }
    (not + rand::rng().random_range(1..n)) % n
}

/// Opens a stream: `POST /v1/chat/stream` with `body`, or `GET /v1/runs/{run}/events` after `last`.
async fn open(rb: reqwest::RequestBuilder) -> Result<Events, String> {
    let resp = rb
        .send()
        .await
        .map_err(|e| format!("request failed: {}", chain(&e)))?;
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        return Err(format!("HTTP {status}: {}", clip(&text, 160)));
    }
    Ok(Box::pin(sse_stream::SseByteStream::new(resp.bytes_stream())))
}

fn post(s: &Setup, replica: usize, bearer: &str, body: &str) -> reqwest::RequestBuilder {
    s.client
        .post(format!("{}/v1/chat/stream", s.replicas[replica]))
        .bearer_auth(bearer)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .body(body.to_owned())
}

fn get(s: &Setup, replica: usize, bearer: &str, run: &str, last: Option<u64>) -> reqwest::RequestBuilder {
    let rb = s
        .client
        .get(format!("{}/v1/runs/{run}/events", s.replicas[replica]))
        .bearer_auth(bearer);
    match last {
        Some(id) => rb.header("last-event-id", id.to_string()),
        None => rb,
    }
}

/// The next named event (keep-alives skipped); `Ok(None)` at the end of the stream.
async fn next(ev: &mut Events) -> Result<Option<(Sse, Instant)>, String> {
    while let Some(item) = ev.next().await {
        let sse = item.map_err(|e| format!("stream broke: {e}"))?;
        if sse.event.is_some() {
            return Ok(Some((sse, Instant::now())));
        }
    }
    Ok(None)
}

/// Reads `ev` until its first event, `run.started`; returns it with the run id.
async fn started(ev: &mut Events) -> Result<(Seen, Instant, String), String> {
    let (sse, at) = next(ev).await?.ok_or("the stream ended before run.started")?;
    let first = seen(&sse)?.ok_or("a preview before run.started")?;
    let run = first
        .data
        .get("run_id")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("first event `{}` has no run_id", first.name))?
        .to_owned();
    Ok((first, at, run))
}

/// One run whose stream is dropped and resumed on other replicas until it ends, then checked; bounded by
/// the setup's run timeout.
pub async fn dropped_run(s: &Setup, bearer: &str, body: &str) -> Result<RunCheck, String> {
    tokio::time::timeout(s.run_timeout, dropped_run_inner(s, bearer, body))
        .await
        .map_err(|_| format!("run not finished within {} s", s.run_timeout.as_secs()))?
}

async fn dropped_run_inner(s: &Setup, bearer: &str, body: &str) -> Result<RunCheck, String> {
    let mut replica = rand::rng().random_range(0..s.replicas.len());
    let mut ev = open(post(s, replica, bearer, body)).await?;
    let (first, _, run) = started(&mut ev).await?;
    let (mut got, mut last) = (vec![first], 1);
    let mut check = RunCheck::default();
    loop {
        let until = tokio::time::Instant::now() + random_in(s.lifetime_ms);
        let ended = loop {
            match tokio::time::timeout_at(until, next(&mut ev)).await {
                Err(_) => break false, // the client drops the connection
                Ok(Ok(Some((sse, _)))) => {
                    let name = sse.event.clone().unwrap_or_default();
                    if let Some(id) = sse.id.as_deref().and_then(|i| i.parse().ok()) {
                        last = id;
                    }
                    if let Some(e) = seen(&sse)? {
                        got.push(e);
                    }
                    if is_terminal(&name) {
                        check.terminal = name;
                        break true;
                    }
                }
                Ok(Ok(None) | Err(_)) => {
                    check.broken += 1;
                    break false;
                }
            }
        };
        drop(ev);
        if ended {
            break;
        }
        loop {
            tokio::time::sleep(random_in(s.reconnect_ms)).await;
            replica = other_replica(s.replicas.len(), replica);
            match open(get(s, replica, bearer, &run, Some(last))).await {
                Ok(e) => {
                    ev = e;
                    check.resumes += 1;
                    break;
                }
                Err(_) => check.resume_errors += 1,
            }
        }
    }
    compare(s, bearer, &run, replica, &got, &mut check).await?;
    Ok(check)
}

/// Reads a whole stream; each event with its arrival. Previews skipped.
async fn read_all(mut ev: Events) -> Result<Vec<(Seen, Instant)>, String> {
    let mut out = Vec::new();
    while let Some((sse, at)) = next(&mut ev).await? {
        let name = sse.event.clone().unwrap_or_default();
        if let Some(e) = seen(&sse)? {
            out.push((e, at));
        }
        if is_terminal(&name) {
            return Ok(out);
        }
    }
    Err(format!(
        "stream ended after {} events without a terminal event",
        out.len()
    ))
}

/// Replays the finished run whole on a replica other than `last_replica` and checks `got` against it.
async fn compare(
    s: &Setup,
    bearer: &str,
    run: &str,
    last_replica: usize,
    got: &[Seen],
    check: &mut RunCheck,
) -> Result<(), String> {
    let r = other_replica(s.replicas.len(), last_replica);
    let replay = read_all(open(get(s, r, bearer, run, None)).await?)
        .await
        .map_err(|e| format!("full replay: {e}"))?;
    let replay: Vec<Seen> = replay.into_iter().map(|(e, _)| e).collect();
    let t = tally(got, &replay);
    (check.replayed, check.lost, check.duplicated, check.different) =
        (t.replayed, t.lost, t.duplicated, t.different);
    Ok(())
}

/// One observed run: the original stream is read to the end, and two followers (on the running replica and
/// on another) read the run from its first event on; then the same check as a dropped run.
pub async fn observed_run(s: &Setup, bearer: &str, body: &str) -> Result<RunCheck, String> {
    tokio::time::timeout(s.run_timeout, observed_run_inner(s, bearer, body))
        .await
        .map_err(|_| format!("run not finished within {} s", s.run_timeout.as_secs()))?
}

async fn observed_run_inner(s: &Setup, bearer: &str, body: &str) -> Result<RunCheck, String> {
    let own = rand::rng().random_range(0..s.replicas.len());
    let other = other_replica(s.replicas.len(), own);
    let mut ev = open(post(s, own, bearer, body)).await?;
    let (first, at, run) = started(&mut ev).await?;
    let run_id = run.as_str();
    let follow = |r: usize| async move {
        let ev = open(get(s, r, bearer, run_id, Some(1))).await?;
        let connected = Instant::now();
        Ok::<_, String>((connected, read_all(ev).await?))
    };
    let (live, on_own, on_other) = tokio::join!(read_all(ev), follow(own), follow(other));
    let mut live = live?;
    live.insert(0, (first, at));
    let ((own_at, on_own), (other_at, on_other)) = (on_own?, on_other?);
    let got: Vec<Seen> = live.iter().map(|(e, _)| e.clone()).collect();
    let mut check = RunCheck {
        terminal: got.last().map(|e| e.name.clone()).unwrap_or_default(),
        ..RunCheck::default()
    };
    compare(s, bearer, &run, own, &got, &mut check).await?;
    let mut l = latency(&live, own_at.max(other_at), &on_own, &on_other);
    if let Some(db) = &s.log_db {
        journal_times(s, db, &run, &live, own_at.max(other_at), &on_own, &mut l).await;
    }
    check.latency = Some(l);
    Ok(check)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_replica_is_never_the_same() {
        for not in 0..3 {
            for _ in 0..50 {
                assert_ne!(other_replica(3, not), not);
            }
        }
        assert_eq!(other_replica(1, 0), 0);
    }
}
