-- Runs that hold across replicas and crashes: a heartbeat lease, shared per-tenant limits, the run event log,
-- idempotency keys that know their run, and which conversations use which uploads.

-- `active_run_at` is the lease's last heartbeat; `active_run_started_at` when the run began (shown to clients).
ALTER TABLE conversations ADD COLUMN active_run_started_at TIMESTAMPTZ;
-- Live leases of a tenant are counted at every admission (CHAT_STREAM_CONCURRENT_LIMIT).
CREATE INDEX conversations_live_runs ON conversations (tenant_id, active_run_at) WHERE active_run_id IS NOT NULL;

-- The run that claimed a key: a claim whose run's lease expired is free again.
ALTER TABLE idempotency_keys ADD COLUMN run_id TEXT;
-- The conversation whose turn the key replays: deleted with it.
ALTER TABLE idempotency_keys ADD COLUMN conversation_id UUID;
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
CREATE INDEX idempotency_keys_conversation ON idempotency_keys (tenant_id, conversation_id);

-- CHAT_RATE_LIMIT_PER_MINUTE across replicas: one GCRA cell per tenant. `tat_us` is the theoretical arrival time
-- (microseconds since the epoch); `admitted` the decision of the last request (1/0), returned with it.
CREATE TABLE tenant_rate (
    tenant_id  TEXT PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    tat_us     BIGINT NOT NULL,
    admitted   INTEGER NOT NULL
);

-- Every event of a run except image previews, with the id the stream gave it, so a stream can be resumed from
-- any replica. Events are written in chunks: one row holds the run's consecutive events first_id..=last_id as a
-- JSON array of {"id","event","data"} (one row per run per batch, not per event). Attachment events hold
-- metadata only (URLs are minted on replay). Purged after RUN_EVENTS_RETENTION_HOURS.
CREATE TABLE run_events (
    run_id           TEXT NOT NULL,
    first_id         BIGINT NOT NULL,
    last_id          BIGINT NOT NULL,
    tenant_id        TEXT NOT NULL,
    conversation_id  UUID NOT NULL,
    events           TEXT NOT NULL,
    terminal         BOOLEAN NOT NULL DEFAULT FALSE,
    created_at       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (run_id, first_id)
);
-- Exactly one terminal event per run, whoever writes it (the run, or a replica that found its holder dead).
CREATE UNIQUE INDEX run_events_one_terminal ON run_events (run_id) WHERE terminal;
CREATE INDEX run_events_created ON run_events (created_at);
CREATE INDEX run_events_conversation ON run_events (tenant_id, conversation_id);

-- Uploads a conversation's messages use: deleting a conversation removes the uploads no other one references.
CREATE TABLE object_refs (
    tenant_id        TEXT NOT NULL,
    object_id        UUID NOT NULL REFERENCES stored_objects (id) ON DELETE CASCADE,
    conversation_id  UUID NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    PRIMARY KEY (object_id, conversation_id)
);
CREATE INDEX object_refs_conversation ON object_refs (tenant_id, conversation_id);
