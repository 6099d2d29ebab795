//! The JSON shapes of `api-v1.md`, as types: every response body and SSE payload the API sends is one of these
//! (or a core payload that already has the contract's shape). Download URLs are minted by [`Urls`], on every
//! read, and never stored.

use agentd_agents::Agent;
use agentd_core::{TurnResult, TurnStatus, Usage};
use agentd_db::{ActiveRun, AttachmentMeta, Conversation, DailyUsage, Message, Role};
use agentd_storage::{BlobStore, UrlOptions};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::sync::Arc;
use uuid::Uuid;

/// `Attachment`: an image with a fresh time-limited URL.
#[derive(Debug, Serialize)]
pub struct AttachmentView {
    pub object_id: Uuid,
    pub filename: String,
    pub mime_type: String,
    pub size_bytes: i64,
    /// Null (and logged) when the store cannot sign a URL right now.
    pub url: Option<String>,
    pub url_expires_at: Option<DateTime<Utc>>,
    pub tool_call_id: Option<String>,
}

/// `Message`.
#[derive(Debug, Serialize)]
pub struct MessageView {
    pub id: Uuid,
    pub role: Role,
    pub content: String,
    pub created_at: DateTime<Utc>,
    pub attachments: Vec<AttachmentView>,
}

/// The body of `POST /v1/chat` and the data of `run.completed`.
#[derive(Debug, Serialize)]
pub struct TurnResultView {
    pub conversation_id: Uuid,
    pub response_id: Option<String>,
    pub model: String,
    pub status: TurnStatus,
    pub message: MessageView,
    pub usage: Usage,
}

/// The data of `attachment`.
#[derive(Debug, Serialize)]
pub struct AttachmentEventView {
    pub attachment: AttachmentView,
}

/// A conversation in a list.
#[derive(Debug, Serialize)]
pub struct ConversationView {
    pub id: Uuid,
    pub agent: String,
    pub title: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Conversation> for ConversationView {
    fn from(c: &Conversation) -> Self {
        Self {
            id: c.id,
            agent: c.agent.clone(),
            title: c.title.clone(),
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// `GET /v1/conversations`.
#[derive(Debug, Serialize)]
pub struct ConversationPageView {
    pub data: Vec<ConversationView>,
    pub next_cursor: Option<String>,
}

/// The turn running on a conversation, for a client that lost its stream.
#[derive(Debug, Serialize)]
pub struct ActiveRunView {
    pub run_id: String,
    pub started_at: DateTime<Utc>,
}

impl From<ActiveRun> for ActiveRunView {
    fn from(r: ActiveRun) -> Self {
        Self {
            run_id: r.run_id,
            started_at: r.started_at,
        }
    }
}

/// `GET /v1/conversations/{id}`.
#[derive(Debug, Serialize)]
pub struct ConversationDetailView {
    #[serde(flatten)]
    pub conversation: ConversationView,
    pub active_run: Option<ActiveRunView>,
    pub messages: Vec<MessageView>,
}

/// `Agent`.
#[derive(Debug, Serialize)]
pub struct AgentView<'a> {
    pub key: &'a str,
    pub display_name: &'a str,
    pub description: &'a str,
    pub model: &'a str,
    pub tool_keys: &'a [String],
    pub tools: AgentTools<'a>,
    pub default: bool,
}

/// An agent's effective tool configuration.
#[derive(Debug, Serialize)]
pub struct AgentTools<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_generation: Option<&'a agentd_agents::ImageToolConfig>,
}

impl<'a> From<&'a Agent> for AgentView<'a> {
    fn from(a: &'a Agent) -> Self {
        Self {
            key: &a.key,
            display_name: &a.display_name,
            description: &a.description,
            model: &a.model,
            tool_keys: &a.tool_keys,
            tools: AgentTools {
                image_generation: a.image.as_ref(),
            },
            default: a.default,
        }
    }
}

/// `GET /v1/agents`.
#[derive(Debug, Serialize)]
pub struct AgentListView<'a> {
    pub data: Vec<AgentView<'a>>,
}

/// One day of `GET /v1/usage`.
#[derive(Debug, Serialize)]
pub struct UsageDayView {
    pub day: chrono::NaiveDate,
    pub turns: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub image: UsageImagesView,
}

#[derive(Debug, Serialize)]
pub struct UsageImagesView {
    pub images: i64,
    pub output_tokens: i64,
    pub estimated_cost_usd: f64,
}

impl From<&DailyUsage> for UsageDayView {
    fn from(r: &DailyUsage) -> Self {
        Self {
            day: r.day,
            turns: r.turns,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            image: UsageImagesView {
                images: r.images,
                output_tokens: r.image_output_tokens,
                estimated_cost_usd: r.image_cost_usd,
            },
        }
    }
}

/// `GET /v1/usage`. Totals are numbers with a fraction, as they always were (sums over days).
#[derive(Debug, Serialize)]
pub struct UsageView {
    pub data: Vec<UsageDayView>,
    pub total: UsageTotalView,
}

#[derive(Debug, Serialize)]
pub struct UsageTotalView {
    pub turns: f64,
    pub images: f64,
    pub image_output_tokens: f64,
    pub estimated_cost_usd: f64,
}

impl UsageView {
    pub fn of(rows: &[DailyUsage]) -> Self {
        let total = |f: fn(&DailyUsage) -> f64| rows.iter().map(f).sum::<f64>();
        Self {
            data: rows.iter().map(UsageDayView::from).collect(),
            total: UsageTotalView {
                turns: total(|r| r.turns as f64),
                images: total(|r| r.images as f64),
                image_output_tokens: total(|r| r.image_output_tokens as f64),
                estimated_cost_usd: total(|r| r.image_cost_usd),
            },
        }
    }
}

/// The one place download URLs are made: presigned by the store where it can, else signed by agentd.
pub struct Urls {
    store: Arc<dyn BlobStore>,
    ttl: std::time::Duration,
}

impl Urls {
    pub fn new(store: Arc<dyn BlobStore>, ttl: std::time::Duration) -> Self {
        Self { store, ttl }
    }

    /// A download URL for `key`, with the file name and type hints of an attachment when given.
    pub async fn signed(
        &self,
        key: &agentd_storage::ObjectKey,
        hints: Option<(&str, &str)>,
    ) -> agentd_storage::Result<agentd_storage::SignedUrl> {
        let mut options = UrlOptions::new(self.ttl);
        if let Some((filename, mime_type)) = hints {
            options = options.with_filename(filename).with_content_type(mime_type);
        }
        self.store.signed_url(key, &options).await
    }

    /// An attachment with a fresh time-limited URL (null, and logged, if the store cannot sign one now).
    pub async fn attachment(&self, a: &AttachmentMeta) -> AttachmentView {
        let signed = self
            .signed(&a.object_key, Some((&a.filename, &a.mime_type)))
            .await;
        let (url, url_expires_at) = match signed {
            Ok(s) => (Some(s.url), Some(s.expires_at)),
            Err(e) => {
                tracing::warn!(object_id = %a.object_id, error = %e, "attachment.presign_failed");
                (None, None)
            }
        };
        AttachmentView {
            object_id: a.object_id,
            filename: a.filename.clone(),
            mime_type: a.mime_type.clone(),
            size_bytes: a.size_bytes,
            url,
            url_expires_at,
            tool_call_id: a.tool_call_id.clone(),
        }
    }

    pub async fn message(&self, m: &Message) -> MessageView {
        let mut attachments = Vec::with_capacity(m.attachments.len());
        for a in &m.attachments {
            attachments.push(self.attachment(a).await);
        }
        MessageView {
            id: m.id,
            role: m.role,
            content: m.content.clone(),
            created_at: m.created_at,
            attachments,
        }
    }

    pub async fn result(&self, r: &TurnResult) -> TurnResultView {
        TurnResultView {
            conversation_id: r.conversation_id,
            response_id: r.response_id.clone(),
            model: r.model.clone(),
            status: r.status,
            message: self.message(&r.message).await,
            usage: r.usage.clone(),
        }
    }
}
