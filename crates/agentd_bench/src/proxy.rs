//! The timing proxy between agentd and the fake upstream: a TCP relay on its own runtime that passes every
//! byte through unchanged, as it is read (one upstream connection per agentd connection), and watches on the
//! side. Upstream requests are scanned for the turn tag ([`crate::turns::tagged`]); responses are de-chunked
//! ([`crate::deframe`]) and scanned for SSE events ([`crate::sse_scan`]); when the bytes that end an image's
//! `response.output_item.done` have been written to agentd's socket, the moment is noted under the tag. The
//! client's `attachment` arrival minus that moment is how long agentd took from the upstream's final image
//! to the client's attachment, measured without reading agentd's logs.
//!
//! A relay and not an HTTP proxy on purpose: re-framing the stream (one write per upstream chunk, later)
//! changed how agentd received it and raised agentd's CPU per image turn by half.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

use crate::deframe::{Deframer, Part};
use crate::sse_scan::Scanner;
use crate::turns;

/// Bytes of a request kept between reads, so that a tag split across two reads is still found.
const CARRY: usize = 40;

struct Shared {
    upstream: SocketAddr,
    /// Turn tag → when the image's `output_item.done` was handed on.
    marks: Mutex<HashMap<u64, Instant>>,
    connections: AtomicU64,
    failures: AtomicU64,
}

/// A running proxy; stops with its runtime on drop.
pub struct TimingProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    rt: Option<tokio::runtime::Runtime>,
}

impl TimingProxy {
    /// Starts relaying to `upstream_origin` (`http://host:port`, no path).
    pub fn start(upstream_origin: &str) -> Result<Self> {
        let upstream: SocketAddr = upstream_origin
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .with_context(|| format!("the timing proxy needs http://IP:PORT, not {upstream_origin}"))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("timing-proxy")
            .enable_all()
            .build()?;
        let shared = Arc::new(Shared {
            upstream,
            marks: Mutex::new(HashMap::new()),
            connections: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        });
        let listener = rt
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .context("the timing proxy cannot bind a loopback port")?;
        let addr = listener.local_addr()?;
        let s = Arc::clone(&shared);
        rt.spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let s = Arc::clone(&s);
                tokio::spawn(async move {
                    s.connections.fetch_add(1, Ordering::Relaxed);
                    if relay(&s, down).await.is_err() {
                        s.failures.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
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

    /// Connections relayed, and those that could not be (upstream unreachable).
    pub fn counts(&self) -> (u64, u64) {
        (
            self.shared.connections.load(Ordering::Relaxed),
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

/// Relays one agentd connection to a new upstream connection until either side closes.
async fn relay(shared: &Arc<Shared>, down: TcpStream) -> std::io::Result<()> {
    let up = TcpStream::connect(shared.upstream).await?;
    let _ = down.set_nodelay(true);
    let _ = up.set_nodelay(true);
    let (down_r, down_w) = down.into_split();
    let (up_r, up_w) = up.into_split();
    // The tag of the request in flight (0: none); HTTP/1.1 without pipelining, so responses follow requests.
    let tag = Arc::new(AtomicU64::new(0));
    let requests = requests(down_r, up_w, Arc::clone(&tag));
    let responses = responses(up_r, down_w, tag, Arc::clone(shared));
    let _ = tokio::join!(requests, responses);
    Ok(())
}

/// agentd → upstream: passes bytes on and notes the turn tag each request carries.
async fn requests(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    tag: Arc<AtomicU64>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut window: Vec<u8> = Vec::with_capacity(64 * 1024 + CARRY);
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        let read = buf.get(..n).unwrap_or_default();
        window.extend_from_slice(read);
        if let Some(t) = turns::find_tag(&window) {
            tag.store(t, Ordering::Relaxed);
            window.clear();
        } else {
            let keep = window.len().saturating_sub(CARRY);
            window.drain(..keep);
        }
        to.write_all(read).await?;
    }
}

/// upstream → agentd: passes bytes on; notes when an image's `output_item.done` has been written.
async fn responses(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    tag: Arc<AtomicU64>,
    shared: Arc<Shared>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut deframer = Deframer::default();
    let mut scanner = Scanner::default();
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        let read = buf.get(..n).unwrap_or_default();
        let (mut image_done, mut ended) = (false, false);
        deframer.feed(read, &mut |part| match part {
            Part::Body(b) => scanner.feed(b, |ev| image_done |= ev.is_image_item_done()),
            Part::End => ended = true,
        });
        let t = tag.load(Ordering::Relaxed);
        if ended {
            // Before the last bytes go out: agentd may send its next request as soon as it has them.
            scanner = Scanner::default();
            tag.store(0, Ordering::Relaxed);
        }
        to.write_all(read).await?;
        if image_done && t != 0 {
            shared
                .marks
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(t)
                .or_insert_with(Instant::now);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::harness::Fake;
    use crate::turns::{TURN_TAG, direct_body, tagged};

    /// Streams one turn through `base` and returns the SSE event names.
    async fn turn(client: &reqwest::Client, base: &str, message: &str) -> Vec<String> {
        let resp = client
            .post(format!("{base}/responses"))
            .bearer_auth("test")
            .header("content-type", "application/json")
            .body(direct_body(message, true))
            .send()
            .await;
        let text = match resp {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(e) => panic!("request failed: {e}"),
        };
        text.lines()
            .filter_map(|l| l.strip_prefix("event: ").map(str::to_owned))
            .collect()
    }

    #[test]
    fn relays_streams_unchanged_and_marks_tagged_image_items_only() {
        let fake = Fake::start(Duration::ZERO).unwrap_or_else(|e| panic!("{e:#}"));
        let proxy = TimingProxy::start(&fake.origin()).unwrap_or_else(|e| panic!("{e:#}"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let image = tagged("draw #fake:image partials=1");
        rt.block_on(async {
            // One client: the second and third turns reuse the first one's connection to the proxy.
            let client = reqwest::Client::new();
            let direct = turn(&client, &fake.base_url(), &image.replace(TURN_TAG, "1")).await;
            let relayed = turn(&client, &proxy.base_url(), &image.replace(TURN_TAG, "2")).await;
            assert_eq!(relayed, direct);
            assert_eq!(relayed.last().map(String::as_str), Some("response.completed"));
            assert!(relayed.iter().any(|e| e == "response.output_item.done"));
            let text = turn(&client, &proxy.base_url(), "hello #fake:text").await;
            assert_eq!(text.last().map(String::as_str), Some("response.completed"));
            turn(&client, &proxy.base_url(), &image.replace(TURN_TAG, "3")).await;
        });
        // A mark is taken right after the relay's write returns, which can be after the client has read it.
        for _ in 0..200 {
            if proxy.item_done(3).is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let (two, three) = (proxy.item_done(2), proxy.item_done(3));
        assert!(two.is_some() && three.is_some(), "{two:?} {three:?}");
        assert!(two < three);
        assert_eq!(proxy.item_done(1), None, "turn 1 went to the fake directly");
        assert_eq!(proxy.counts(), (1, 0));
    }
}
