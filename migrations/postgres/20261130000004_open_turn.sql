-- A turn on a new conversation is admitted in one round trip: `agentd_open_turn` takes the tenant's rate cell
-- (CHAT_RATE_LIMIT_PER_MINUTE), counts its live runs (CHAT_STREAM_CONCURRENT_LIMIT) and writes the user (on
-- first sight), the conversation leased by the run, the run's first event and, when given, the user message.
-- Called on its own it is one statement and commits by itself: admission needs no BEGIN and COMMIT.
--
-- Why a function and not one statement of CTEs: the live-run count must see every admission that committed
-- while this one waited for the tenant's rate cell, and a statement reads one snapshot, taken before the wait.
-- In a (volatile) function each statement takes a new snapshot under READ COMMITTED (PostgreSQL's default, which
-- agentd relies on), so the count after the row lock is exact.
--
-- Inside: the cell, locked and read; then one statement of CTEs that counts live runs and, under the limit,
-- writes the rest and charges the cell. A refusal writes nothing and charges nothing (the user row is written
-- only with the conversation); a tenant's very first turn, refused by the count, leaves its cell created and
-- uncharged. Outcome: 'opened'; 'rate' with the cell's theoretical arrival time and the instant it
-- was read at (o_tat, o_now: µs since the epoch; the caller computes retry-after from them); 'too_many'.
-- The cell's clock is the later of p_now_us and the database's clock once the cell is locked, so a caller that
-- waited for a connection or the lock does not arrive in the past (with replicas' clocks and the database's in
-- step; a replica whose clock runs ahead by d can still be ahead of the next admission by d).
-- p_rate_interval NULL: no rate limit (and then only the conversation insert's own guard counts live runs).
CREATE FUNCTION agentd_open_turn(
    p_tenant TEXT, p_conversation UUID, p_run TEXT, p_now TIMESTAMPTZ, p_cutoff TIMESTAMPTZ, p_limit BIGINT,
    p_user TEXT, p_agent TEXT, p_title TEXT,
    p_first_id BIGINT, p_last_id BIGINT, p_events TEXT, p_terminal BOOLEAN,
    p_message_id UUID, p_role TEXT, p_content TEXT, p_attachments JSONB, p_response_id TEXT,
    p_message_at TIMESTAMPTZ,
    p_now_us BIGINT, p_rate_interval BIGINT, p_rate_tolerance BIGINT,
    OUT o_outcome TEXT, OUT o_tat BIGINT, OUT o_now BIGINT)
LANGUAGE plpgsql AS $fn$
DECLARE
    v_opened BIGINT;
BEGIN
    IF p_rate_interval IS NOT NULL THEN
        -- The cell's row lock orders this tenant's admissions across replicas until the statement commits.
        SELECT r.tat_us INTO o_tat FROM tenant_rate r WHERE r.tenant_id = p_tenant FOR UPDATE;
        IF NOT FOUND THEN
            INSERT INTO tenant_rate (tenant_id, tat_us, admitted) VALUES (p_tenant, 0, 1)
                ON CONFLICT (tenant_id) DO NOTHING;
            SELECT r.tat_us INTO o_tat FROM tenant_rate r WHERE r.tenant_id = p_tenant FOR UPDATE;
        END IF;
        o_now := GREATEST(p_now_us, (extract(epoch FROM clock_timestamp()) * 1000000)::BIGINT);
        IF o_tat - o_now > p_rate_tolerance THEN
            o_outcome := 'rate';
            RETURN;
        END IF;
    END IF;
    -- A statement after the lock: its snapshot (and so the live-run count) sees every admission before this one.
    WITH live AS (
        SELECT COUNT(*) < p_limit AS under FROM conversations c
        WHERE c.tenant_id = p_tenant AND c.active_run_id IS NOT NULL AND c.active_run_at >= p_cutoff),
    us AS (
        INSERT INTO users (tenant_id, id, created_at) SELECT p_tenant, p_user, p_now FROM live WHERE under
        ON CONFLICT DO NOTHING),
    cv AS (
        INSERT INTO conversations (id, tenant_id, user_id, agent, title, created_at, updated_at,
                                   active_run_id, active_run_at, active_run_started_at)
        SELECT p_conversation, p_tenant, p_user, p_agent, p_title, p_now, p_now, p_run, p_now, p_now
        FROM live WHERE under RETURNING id),
    ev AS (
        INSERT INTO run_events (run_id, first_id, last_id, tenant_id, conversation_id, events, terminal,
                                created_at)
        SELECT p_run, p_first_id, p_last_id, p_tenant, id, p_events, p_terminal, p_now FROM cv
        ON CONFLICT DO NOTHING),
    msg AS (
        INSERT INTO messages (id, tenant_id, conversation_id, role, content, attachments, response_id,
                              created_at)
        SELECT p_message_id, p_tenant, id, p_role, p_content, p_attachments, p_response_id, p_message_at
        FROM cv WHERE p_message_id IS NOT NULL),
    rt AS (
        UPDATE tenant_rate SET tat_us = GREATEST(o_tat, o_now) + p_rate_interval, admitted = 1
        WHERE tenant_id = p_tenant AND p_rate_interval IS NOT NULL AND EXISTS (SELECT 1 FROM cv))
    SELECT COUNT(*) INTO v_opened FROM cv;
    IF v_opened = 0 THEN
        o_outcome := 'too_many';
        o_tat := NULL;
        o_now := NULL;
        RETURN;
    END IF;
    o_tat := GREATEST(o_tat, o_now) + p_rate_interval;
    o_outcome := 'opened';
END
$fn$;
