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
use utoipa::ToSchema;
use uuid::Uuid;

/// The multipart body of `POST /v1/uploads` (read field by field; declared for the OpenAPI document).
#[derive(ToSchema)]
#[allow(dead_code, reason = "describes a multipart body the handler reads by hand")]
pub struct UploadForm {
    /// The image: PNG, JPEG or WebP, under UPLOAD_MAX_MB. The only field: any other is refused (400).
    #[schema(value_type = String, content_media_type = "application/octet-stream")]
    file: Vec<u8>,
}

/// `Attachment`: an image with a fresh time-limited URL.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Attachment)]
pub struct AttachmentView {
    /// The attachment's id (`attachments[].object_id` of a chat request, for an upload).
    pub object_id: Uuid,
    /// e.g. `image-ig_123.png`.
    pub filename: String,
    /// Read from the image bytes, not from what the model API claimed.
    pub mime_type: String,
    pub size_bytes: i64,
    /// A time-limited download URL that needs no bearer token, minted on every read. Null (and logged) when
    /// the store cannot sign a URL right now.
    #[schema(required = true)]
    pub url: Option<String>,
    /// When `url` stops working.
    #[schema(required = true)]
    pub url_expires_at: Option<DateTime<Utc>>,
    /// The image call that made it; null for an upload.
    #[schema(required = true)]
    pub tool_call_id: Option<String>,
}

/// `Message`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Message)]
pub struct MessageView {
    pub id: Uuid,
    pub role: Role,
    /// The text.
    pub content: String,
    pub created_at: DateTime<Utc>,
    /// Images: the user's inputs, or those the assistant made.
    pub attachments: Vec<AttachmentView>,
}

/// The body of `POST /v1/chat` and the data of `run.completed`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = TurnResult)]
pub struct TurnResultView {
    pub conversation_id: Uuid,
    /// The model API's response id (null if it gave none).
    #[schema(required = true)]
    pub response_id: Option<String>,
    /// The model that answered (the offline model announces itself here).
    pub model: String,
    pub status: TurnStatus,
    /// The assistant's message, as saved.
    pub message: MessageView,
    pub usage: Usage,
}

/// The data of `attachment`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttachmentEventView {
    /// The stored image, with a fresh URL.
    pub attachment: AttachmentView,
}

/// A conversation in a list.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Conversation)]
pub struct ConversationView {
    pub id: Uuid,
    /// The agent's key.
    pub agent: String,
    /// From the first message.
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
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ConversationPage)]
pub struct ConversationPageView {
    /// Most recently updated first.
    pub data: Vec<ConversationView>,
    /// Pass as `cursor` for the next page; null on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// The turn running on a conversation, for a client that lost its stream.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ActiveRun)]
pub struct ActiveRunView {
    /// `GET /v1/runs/{run_id}/events` follows it.
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
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ConversationDetail)]
pub struct ConversationDetailView {
    #[serde(flatten)]
    pub conversation: ConversationView,
    /// The turn running now, else null.
    #[schema(required = true)]
    pub active_run: Option<ActiveRunView>,
    /// Oldest first, with fresh attachment URLs.
    pub messages: Vec<MessageView>,
}

/// `Agent`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Agent)]
pub struct AgentView<'a> {
    /// The agent's key, e.g. `designer`.
    pub key: &'a str,
    pub display_name: &'a str,
    pub description: &'a str,
    /// The model that answers: the agent's, or `agentd-offline` while the built-in offline model answers every
    /// agent (no `OPENAI_API_KEY`), as its turns report.
    pub model: &'a str,
    /// The tools it may use, e.g. `image_generation`.
    pub tool_keys: &'a [String],
    pub tools: AgentTools<'a>,
    /// Whether a new conversation without `agent` uses this one.
    pub default: bool,
}

/// An agent's effective tool configuration.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentTools<'a> {
    /// The image tool exactly as sent upstream (IMAGE_* defaults merged with the agent's overrides, before
    /// per-request adjustments such as `partial_images: 0` on non-streaming turns); absent without it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = agentd_agents::ImageToolConfig, required = false)]
    pub image_generation: Option<&'a agentd_agents::ImageToolConfig>,
}

impl<'a> AgentView<'a> {
    /// `a`'s view, with `model` the model its turns report ([`agentd_core::Turns::model_of`]).
    pub fn of(a: &'a Agent, model: &'a str) -> Self {
        Self {
            key: &a.key,
            display_name: &a.display_name,
            description: &a.description,
            model,
            tool_keys: &a.tool_keys,
            tools: AgentTools {
                image_generation: a.image.as_ref(),
            },
            default: a.default,
        }
    }
}

/// `GET /v1/agents`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AgentList)]
pub struct AgentListView<'a> {
    /// By key.
    pub data: Vec<AgentView<'a>>,
}

/// One day of `GET /v1/usage`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = UsageDay)]
pub struct UsageDayView {
    /// The day (UTC).
    pub day: chrono::NaiveDate,
    pub turns: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub image: UsageImagesView,
}

/// Image generation on one day.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = UsageImages)]
pub struct UsageImagesView {
    pub images: i64,
    pub output_tokens: i64,
    /// Estimated from the published image output token prices.
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
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = UsageReport)]
pub struct UsageView {
    /// Days with activity, oldest first.
    pub data: Vec<UsageDayView>,
    pub total: UsageTotalView,
}

/// Sums over the days.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = UsageTotal)]
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
