//! The HTTP server loop: accepts connections and serves the router over HTTP/1.1 with `TCP_NODELAY` (small SSE
//! writes go out at once), two timers and graceful shutdown:
//! - a header read timeout (`HTTP_HEADER_TIMEOUT_SECONDS`): a client that sends a header byte every few seconds,
//!   or sits idle on a kept-alive connection, is cut off;
//! - a write timeout (`HTTP_WRITE_TIMEOUT_SECONDS`): a response whose bytes the client has stopped taking (the
//!   socket full, no write going through for that long; on Linux the socket holds at most 128 KiB unsent, so a
//!   write goes through whenever the client took 64 KiB) is cut off, so that readers who read nothing — of a
//!   signed download link, which needs no token, or a stream — cannot pile up connections without end; such a
//!   connection is reset, so the kernel lets go of what it still held for that client at once;
//! - when `stop` fires the listener closes and open connections finish their requests.
//!
//! `axum::serve` sets no timer, so it can time out neither; this is the few lines it would otherwise be.

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_io_timeout::TimeoutWriter;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// Unsent bytes a connection's socket holds at most (`TCP_NOTSENT_LOWAT`, Linux).
#[cfg(target_os = "linux")]
const NOT_SENT_LOW_WATER: u32 = 128 * 1024;

/// How long a connection may wait on its client.
#[derive(Debug, Clone, Copy)]
pub struct ConnTimeouts {
    /// For a request's headers (and on an idle kept-alive connection).
    pub header: Duration,
    /// For a write to go through: the client takes no bytes of a response for this long.
    pub write: Duration,
}

impl ConnTimeouts {
    /// From `HTTP_HEADER_TIMEOUT_SECONDS` and `HTTP_WRITE_TIMEOUT_SECONDS`.
    pub fn of(settings: &agentd_http::HttpSettings) -> Self {
        Self {
            header: Duration::from_secs(settings.header_timeout_seconds.max(1)),
            write: Duration::from_secs(settings.write_timeout_seconds.max(1)),
        }
    }
}

/// Serves `router` on `listener` until `stop` fires, then waits for open connections to finish.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    timeouts: ConnTimeouts,
    stop: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        // At most this much unsent in the kernel per connection (beside what is in flight): a client that stops
        // reading holds that, not a send buffer of megabytes, and each write that goes through means it took
        // at least half of it — which is what the write timeout waits for.
        #[cfg(target_os = "linux")]
        let _ = socket2::SockRef::from(&tcp).set_tcp_notsent_lowat(NOT_SENT_LOW_WATER);
        let service = TowerToHyperService::new(router.clone().map_request(
            move |req: hyper::Request<hyper::body::Incoming>| {
                let mut req = req.map(axum::body::Body::new);
                req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                req
            },
        ));
        // The countdown starts when a write cannot go through (the socket's buffers are full) and ends when one
        // does: a slow reader that keeps reading is never cut off.
        let io = ResetOnTimeout::new(tcp, timeouts.write);
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(timeouts.header)
            .serve_connection(TokioIo::new(io), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The connection's socket behind its write timer, closed with a reset (`SO_LINGER` 0) once the timer fires: a
/// plain close would leave the kernel holding what the client never took (up to [`NOT_SENT_LOW_WATER`] and what is
/// in flight), retrying it to a client that reads nothing for a minute or more after the connection is gone.
struct ResetOnTimeout(Pin<Box<TimeoutWriter<TcpStream>>>);

impl ResetOnTimeout {
    fn new(tcp: TcpStream, timeout: Duration) -> Self {
        let mut io = TimeoutWriter::new(tcp);
        io.set_timeout(Some(timeout));
        Self(Box::pin(io))
    }

    /// Passes `r` on, and when it is the write timer's error, sets the socket to reset when it is closed.
    fn cut_on_timeout<T>(&self, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if let Poll::Ready(Err(e)) = &r
            && e.kind() == io::ErrorKind::TimedOut
        {
            let _ = socket2::SockRef::from(self.0.get_ref()).set_linger(Some(Duration::ZERO));
        }
        r
    }
}

impl AsyncRead for ResetOnTimeout {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.0.as_mut().poll_read(cx, buf)
    }
}

impl AsyncWrite for ResetOnTimeout {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = self.0.as_mut().poll_write(cx, buf);
        self.cut_on_timeout(r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = self.0.as_mut().poll_write_vectored(cx, bufs);
        self.cut_on_timeout(r)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = self.0.as_mut().poll_flush(cx);
        self.cut_on_timeout(r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = self.0.as_mut().poll_shutdown(cx);
        self.cut_on_timeout(r)
    }
}
