-- agentd schema, SQLite dialect of migrations/postgres (uuid → BLOB, timestamptz → TEXT, jsonb → TEXT): keep them in step.
-- Every table that holds tenant data carries tenant_id, and every query filters on it.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,                 -- the JWT tenant_id claim
    status      TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE users (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id          TEXT NOT NULL,                    -- the JWT sub claim
    created_at  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE conversations (
    id                    BLOB PRIMARY KEY,
    tenant_id             TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id               TEXT NOT NULL,
    agent                 TEXT NOT NULL,
    title                 TEXT NOT NULL DEFAULT '',
    last_response_id      TEXT,                   -- previous_response_id of the next turn
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX conversations_tenant_recent ON conversations (tenant_id, updated_at DESC, id DESC);

CREATE TABLE messages (
    id               BLOB PRIMARY KEY,
    tenant_id        TEXT NOT NULL,
    conversation_id  BLOB NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role             TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content          TEXT NOT NULL,
    attachments      TEXT NOT NULL DEFAULT '[]', -- metadata only: never bytes, never base64, never URLs
    response_id      TEXT,
    created_at       TEXT NOT NULL
);
CREATE INDEX messages_conversation ON messages (tenant_id, conversation_id, created_at, id);

CREATE TABLE stored_objects (
    id               BLOB PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    object_key       TEXT NOT NULL UNIQUE,
    conversation_id  BLOB REFERENCES conversations (id) ON DELETE SET NULL,
    message_id       BLOB REFERENCES messages (id) ON DELETE SET NULL,
    tool_call_id     TEXT,
    kind             TEXT NOT NULL CHECK (kind IN ('generated', 'upload')),
    filename         TEXT NOT NULL,
    mime_type        TEXT NOT NULL,
    size_bytes       INTEGER NOT NULL CHECK (size_bytes >= 0),
    sha256           TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    deleted_at       TEXT
);
CREATE INDEX stored_objects_tenant ON stored_objects (tenant_id, conversation_id);
-- One stored object per generated image of a conversation, however often the upstream repeats it.
CREATE UNIQUE INDEX stored_objects_one_per_call ON stored_objects (tenant_id, conversation_id, tool_call_id)
    WHERE tool_call_id IS NOT NULL;

CREATE TABLE usage_events (
    id                   BLOB PRIMARY KEY,
    tenant_id            TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    conversation_id      BLOB,
    response_id          TEXT,
    day                  TEXT NOT NULL,
    input_tokens         INTEGER NOT NULL DEFAULT 0,
    output_tokens        INTEGER NOT NULL DEFAULT 0,
    images               INTEGER NOT NULL DEFAULT 0,
    image_output_tokens  INTEGER NOT NULL DEFAULT 0,
    image_cost_usd       REAL NOT NULL DEFAULT 0,
    created_at           TEXT NOT NULL
);
CREATE INDEX usage_events_tenant_day ON usage_events (tenant_id, day);

CREATE TABLE idempotency_keys (
    tenant_id      TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key            TEXT NOT NULL,
    request_hash   TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('running', 'done')),
    response_json  TEXT,
    created_at     TEXT NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
