-- Kept in step with migrations/postgres: there, this version adds `agentd_open_turn`, which admits a turn on a
-- new conversation in one round trip. SQLite has no stored functions and needs none (one process, no network
-- between agentd and the database): `TurnTx::open_turn` runs the same steps in one transaction.
SELECT 1;
