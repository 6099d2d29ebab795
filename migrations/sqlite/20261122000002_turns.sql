-- One running turn per conversation, across replicas: a lease on the conversation row.
ALTER TABLE conversations ADD COLUMN active_run_id TEXT;
ALTER TABLE conversations ADD COLUMN active_run_at TEXT;
