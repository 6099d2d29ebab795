//! The body of `GET /v1/conversations/{id}`, written a page of messages at a time: a conversation grows by two
//! messages a turn for as long as its users chat, and reading it whole (rows, views and the JSON text, each
//! the size of the conversation) let a few requests for a long one take the process's memory. Each page is
//! read when the client has taken the one before (the body is pulled as the connection drains), so a request
//! holds one page — at most 32 messages, those before its last under 1 MiB together — and a pooled connection only
//! while that page is read; a tenant has at most twice `READS_PER_TENANT` bodies being sent at once. The JSON is
//! the same `ConversationDetail` a single `Json` would have written.

use crate::AppState;
use crate::views::{ActiveRunView, ConversationView};
use agentd_core::SendingPermit;
use agentd_db::{Message, MessagePage, TenantId};
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::VecDeque;
use tracing::Instrument as _;
use uuid::Uuid;

/// Messages read and written at a time, at most.
pub(super) const MESSAGES_PER_READ: u32 = 32;
/// Bytes of content of a page's messages before its last, at most (a page is at most this and one message; a
/// reply may be `CHAT_MAX_REPLY_MB`): 32 of the longest messages would be over a hundred MB.
pub(super) const BYTES_PER_READ: u64 = 1024 * 1024;

/// The fields before `messages`, in the order `ConversationDetail` has them.
#[derive(Serialize)]
pub(super) struct Head {
    #[serde(flatten)]
    pub conversation: ConversationView,
    pub active_run: Option<ActiveRunView>,
}

/// Where the body stands: the messages read and not yet written, and where the next page starts.
struct Pages {
    state: AppState,
    tenant: TenantId,
    conversation: Uuid,
    /// Read and not yet written, oldest first (the first page is read before the response starts, so that a
    /// failure to read it is an error response, not a cut-off body).
    ready: VecDeque<Message>,
    /// The last page read was full: there may be more after its last message.
    more: bool,
    /// The last message read: the next page follows it.
    last: Option<(DateTime<Utc>, Uuid)>,
    /// Whether a message was written (the next one is preceded by a comma).
    wrote: bool,
    /// The request's span, for the error of a page that cannot be read.
    span: tracing::Span,
    /// The tenant's place among its bodies being sent, until this one is written or dropped.
    _sending: SendingPermit,
}

/// The response: `head`, then `first` and the pages after it, as one JSON object, one message per chunk.
pub(super) fn respond(
    state: AppState,
    tenant: TenantId,
    conversation: Uuid,
    head: &Head,
    first: MessagePage,
    sending: SendingPermit,
) -> Response {
    let mut opening = serde_json::to_vec(head).unwrap_or_default();
    // `{…}` → `{…,"messages":[`: the head is an object of named fields, so it ends with its `}`.
    opening.pop();
    opening.extend_from_slice(br#","messages":["#);
    let mut pages = Pages {
        state,
        tenant,
        conversation,
        ready: VecDeque::new(),
        more: false,
        last: None,
        wrote: false,
        span: tracing::Span::current(),
        _sending: sending,
    };
    pages.take(first);
    let rest = futures_util::stream::unfold(Some(pages), |pages| async move {
        let mut p = pages?;
        // Polled by the connection, outside the request: its span, so that what a page logs names the request.
        let span = p.span.clone();
        match p.next_chunk().instrument(span).await {
            Ok(Some(chunk)) => Some((Ok(chunk), Some(p))),
            Ok(None) => Some((Ok(Bytes::from_static(b"]}")), None)),
            Err(Cut::Unreadable(e)) => {
                p.span.in_scope(|| {
                    tracing::error!(conversation_id = %p.conversation, error = %e,
                        "a page of the conversation could not be read; its response is cut off");
                });
                Some((Err(std::io::Error::other("conversation page unreadable")), None))
            }
            Err(Cut::Busy(e)) => {
                p.span.in_scope(|| {
                    tracing::info!(conversation_id = %p.conversation, error = %e,
                        "the tenant's reads kept every place for reads busy; the response is cut off");
                });
                Some((Err(std::io::Error::other("conversation page refused")), None))
            }
            Err(Cut::Deleted) => {
                p.span.in_scope(|| {
                    tracing::info!(conversation_id = %p.conversation,
                        "the conversation was deleted while it was read; its response is cut off");
                });
                Some((Err(std::io::Error::other("conversation deleted")), None))
            }
        }
    });
    let opening = futures_util::stream::once(async move { Ok(Bytes::from(opening)) });
    let mut res = Body::from_stream(futures_util::StreamExt::chain(opening, rest)).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

/// Why a body ends before its last message: the client's read then fails, as it must not take what it has
/// for the whole conversation.
enum Cut {
    /// A page or the conversation's row could not be read (logged as an error).
    Unreadable(String),
    /// The tenant's other reads held its places for reads (`READS_PER_TENANT`) for longer than a page may wait:
    /// the tenant's own doing, not a fault (logged at INFO).
    Busy(String),
    /// The conversation was deleted between two pages: the ones after were gone with it.
    Deleted,
}

impl Pages {
    fn take(&mut self, page: MessagePage) {
        self.more = page.more;
        let last = page.messages.last().map(|m| (m.created_at, m.id));
        self.last = last.or(self.last);
        self.ready.extend(page.messages);
    }

    /// The next message as a JSON array element; `None` after the last. Each page is read in one of the
    /// tenant's places for reads (`READS_PER_TENANT`), taken for the read only: a client that takes the body
    /// slowly holds none. A page after the first that ends the conversation is followed by a look at its row:
    /// a conversation deleted after the first page took its later messages with it, and would otherwise end
    /// as valid JSON short of them.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, Cut> {
        if self.ready.is_empty() && self.more {
            let _reading = self
                .state
                .turns
                .reading(&self.tenant)
                .await
                .map_err(|f| Cut::Busy(f.message))?;
            let page = self
                .state
                .db
                .scoped(&self.tenant)
                .messages_after(self.conversation, self.last, MESSAGES_PER_READ, BYTES_PER_READ)
                .await
                .map_err(|e| Cut::Unreadable(e.to_string()))?;
            self.take(page);
            if !self.more
                && self
                    .state
                    .db
                    .scoped(&self.tenant)
                    .conversation(self.conversation)
                    .await
                    .map_err(|e| Cut::Unreadable(e.to_string()))?
                    .is_none()
            {
                return Err(Cut::Deleted);
            }
        }
        let Some(m) = self.ready.pop_front() else {
            return Ok(None);
        };
        let view = self.state.urls.message(&m).await;
        drop(m);
        let mut out = Vec::with_capacity(view.content.len() + 512);
        if std::mem::replace(&mut self.wrote, true) {
            out.push(b',');
        }
        // A view of plain fields and strings always serializes.
        serde_json::to_writer(&mut out, &view).unwrap_or_default();
        Ok(Some(Bytes::from(out)))
    }
}
