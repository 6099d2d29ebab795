//! A deadline on receiving each request body (`HTTP_BODY_TIMEOUT_SECONDS`), counted from when its headers
//! arrived: a client that trickles a body in byte by byte cannot hold a connection and a handler for long.
//! (Per-frame timeouts would not stop it: every byte resets them.) The body fails with an error past the
//! deadline; the extractors turn that into the contract's 400.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

struct Deadline {
    inner: Body,
    sleep: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("the request body took longer than {0:?} to arrive (HTTP_BODY_TIMEOUT_SECONDS)")]
struct TooSlow(Duration);

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(TooSlow(self.limit).into())));
        }
        Pin::new(&mut self.inner).poll_frame(cx).map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Puts the deadline on the request's body.
pub(crate) async fn limit_body_time(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    let req = req.map(|inner| {
        Body::new(Deadline {
            inner,
            sleep: Box::pin(tokio::time::sleep(limit)),
            limit,
        })
    });
    next.run(req).await
}
