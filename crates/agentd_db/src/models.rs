//! Row types shared by both databases.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Whether a tenant may use the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    Active,
    Suspended,
}

impl TenantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Active => "active",
            TenantStatus::Suspended => "suspended",
        }
    }

    pub(crate) fn parse(s: &str) -> Self {
        if s == "active" {
            TenantStatus::Active
        } else {
            TenantStatus::Suspended
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Conversation {
    pub id: Uuid,
    pub tenant_id: String,
    pub user_id: String,
    pub agent: String,
    pub title: String,
    pub last_response_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The run holding the lease, if any (it may have expired: see [`Conversation::active_run`]).
    pub active_run_id: Option<String>,
    /// The lease's last heartbeat.
    pub active_run_at: Option<DateTime<Utc>>,
    pub active_run_started_at: Option<DateTime<Utc>>,
}

/// A turn running on a conversation now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveRun {
    pub run_id: String,
    pub started_at: DateTime<Utc>,
}

impl Conversation {
    /// The running turn, if its lease is younger than `lease` (a lease whose holder died is not a run).
    pub fn active_run(&self, lease: chrono::Duration) -> Option<ActiveRun> {
        let heartbeat = self.active_run_at?;
        (heartbeat >= crate::now() - lease).then(|| ActiveRun {
            run_id: self.active_run_id.clone().unwrap_or_default(),
            started_at: self.active_run_started_at.unwrap_or(heartbeat),
        })
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// What a message records about one attachment: metadata only. URLs are minted on every read, never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentMeta {
    pub object_id: Uuid,
    /// Where the bytes are; never shown to clients (they get a URL minted from it on every read).
    pub object_key: agentd_ids::ObjectKey,
    pub filename: String,
    pub mime_type: String,
    pub size_bytes: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub role: Role,
    pub content: String,
    pub attachments: Vec<AttachmentMeta>,
    pub response_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
pub(crate) struct MessageRow {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub role: String,
    pub content: String,
    pub attachments: sqlx::types::Json<Vec<AttachmentMeta>>,
    pub response_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl NewMessage {
    /// A message written now with a fresh id.
    pub fn new(
        role: Role,
        content: String,
        attachments: Vec<AttachmentMeta>,
        response_id: Option<String>,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            created_at: crate::now(),
            role,
            content,
            attachments,
            response_id,
        }
    }

    /// The message as it reads once saved in `conversation`.
    pub fn saved_in(&self, conversation: Uuid) -> Message {
        Message {
            id: self.id,
            conversation_id: conversation,
            role: self.role,
            content: self.content.clone(),
            attachments: self.attachments.clone(),
            response_id: self.response_id.clone(),
            created_at: self.created_at,
        }
    }
}

impl From<MessageRow> for Message {
    fn from(r: MessageRow) -> Self {
        Message {
            id: r.id,
            conversation_id: r.conversation_id,
            role: if r.role == "user" {
                Role::User
            } else {
                Role::Assistant
            },
            content: r.content,
            attachments: r.attachments.0,
            response_id: r.response_id,
            created_at: r.created_at,
        }
    }
}

/// A message to append. The id and time are chosen by the caller, so the saved message is known before the
/// transaction that writes it (and can be part of what that transaction records).
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub role: Role,
    pub content: String,
    pub attachments: Vec<AttachmentMeta>,
    pub response_id: Option<String>,
}
