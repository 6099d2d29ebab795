-- The foreign keys a turn's own rows were checked against cost PostgreSQL a fifth of its CPU per text turn
-- (bench-relay, four interleaved pairs: 1.39 ms → 1.14 ms per turn, and 811 → 952 turns/s at N = 50). Each
-- check is a query that locks the parent row FOR KEY SHARE: every conversation and usage row the tenant's row
-- (shared by all of a tenant's turns at once), every conversation its user's, and both messages of a turn their
-- conversation's (which the turn's final statement then updates).
--
-- What the keys guarded is guarded where the rows are written: a turn's conversation, user and messages are
-- written by statements that insert them together or select the parent they belong to (`agentd_open_turn`,
-- `messages` inserts `SELECT … FROM conversations`, the finished turn's statement), tenants are provisioned by
-- authentication before anything of theirs is written and never deleted, and a conversation is deleted only
-- under its lease, with its messages, by the statements that delete it (`delete_conversation_leased`,
-- `abandon_turn`). SQLite (one process, no such contention) keeps its keys.
ALTER TABLE conversations DROP CONSTRAINT conversations_tenant_id_fkey;
ALTER TABLE conversations DROP CONSTRAINT conversations_tenant_id_user_id_fkey;
ALTER TABLE messages DROP CONSTRAINT messages_conversation_id_fkey;
ALTER TABLE usage_events DROP CONSTRAINT usage_events_tenant_id_fkey;
