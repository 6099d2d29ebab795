-- CHAT_STREAM_CONCURRENT_LIMIT without CHAT_RATE_LIMIT_PER_MINUTE: `agentd_open_turn` took the tenant's rate cell
-- only for the rate limit, so with the rate limit off concurrent admissions each counted live runs in a snapshot
-- that could not see the others, and all of them passed (up to a pool's worth per replica). Now a concurrency
-- limit alone takes the cell's row lock too (an upsert that changes nothing), so the count after it is exact.
-- p_limit = i64::MAX means no concurrency limit: then nothing is locked.
CREATE OR REPLACE FUNCTION agentd_open_turn(
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
    ELSIF p_limit < 9223372036854775807 THEN
        -- No rate limit, but a concurrency limit: the cell's row lock still orders the count.
        INSERT INTO tenant_rate (tenant_id, tat_us, admitted) VALUES (p_tenant, 0, 1)
            ON CONFLICT (tenant_id) DO UPDATE SET admitted = tenant_rate.admitted;
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
