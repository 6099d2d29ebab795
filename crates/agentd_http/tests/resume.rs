//! `GET /v1/runs/{run_id}/events` at the edges of a run's life, over HTTP on PostgreSQL: a run that vanishes
//! under its readers (its turn given back when the upstream refused it) ends their streams, a run whose holder
//! died ends past every id its clients may have seen, a run logged in many chunks is read a page at a time, and
//! a tenant's open readers are capped. No stream is left open.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use agentd_testkit::TestApp;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_run_given_back_before_the_upstream_accepted_it_ends_its_readers() {
    let app = TestApp::postgres().await;
    let tok = app.token("acme", "u1", None);
    let first = app
        .chat_json(&tok, json!({"agent": "assistant", "message": "hi"}))
        .await;
    let conversation = first["conversation_id"].as_str().unwrap().to_owned();
    // Refused with 503 three times (two retries three seconds apart): admitted, visible, then given back.
    let refused = app.spawn_chat(
        &tok,
        json!({"agent": "assistant", "conversation_id": conversation,
               "message": "x #fake:text fail=503 retry-after=3"}),
    );
    let run_id = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let c: serde_json::Value = app
                .http
                .get(app.url(&format!("/v1/conversations/{conversation}")))
                .bearer_auth(&tok)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if let Some(run) = c["active_run"]["run_id"].as_str() {
                return run.to_owned();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the refused turn's run is shown while it is retried");
    let reader = {
        let (app_url, tok, run_id) = (app.url(""), tok.clone(), run_id.clone());
        let http = app.http.clone();
        tokio::spawn(async move {
            let res = http
                .get(format!("{app_url}/v1/runs/{run_id}/events"))
                .bearer_auth(&tok)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            tokio::time::timeout(Duration::from_secs(30), res.text())
                .await
                .expect("the reader's stream ends once the run is gone")
                .unwrap()
        })
    };
    assert_eq!(refused.await.unwrap(), 503, "the sender gets the refusal");
    let events = agentd_testkit::parse_sse(&reader.await.unwrap());
    let last = events.last().expect("at least the end");
    assert_eq!(last.event, "error", "{events:?}");
    assert_eq!(last.data["code"], "run_not_found", "{events:?}");
    // And a reader arriving now is told there is no such run.
    let late = app.run_events(&tok, &run_id, None).await;
    assert_eq!(late.status(), 404);
}

/// A run whose holder died is ended by whichever reader notices, and the end's id must be past every id the
/// holder may have sent: its clients received previews (never logged) and events its journal had not written
/// when it died. A client resuming after such an id must still get the end — an empty stream makes a browser
/// `EventSource` reconnect forever. Here the holder's death is staged: a finished run loses its end from the
/// log and its conversation a stale lease; one reader ends it, then one that had seen further resumes. The
/// readers are served by a second replica that started listening after the holder's notification of its end
/// was sent: a reader of the holder's own replica may still hear it (with its events) after the staging, and
/// rightly follow it to the true end.
#[tokio::test]
async fn the_end_of_a_run_whose_holder_died_is_past_every_id_it_sent() {
    let holder = TestApp::postgres().await;
    let agentd_db::Db::Postgres(pool) = &holder.db.db else {
        panic!("postgres")
    };
    let mut heard = sqlx::postgres::PgListener::connect_with(pool).await.unwrap();
    heard.listen(agentd_db::journal::CHANNEL).await.unwrap();
    let tok = holder.token("acme", "u1", None);
    let s = holder
        .stream(
            &tok,
            json!({"agent": "assistant", "message": "hi #fake:text deltas=3"}),
        )
        .await;
    let run_id = s.first("run.started")["run_id"].as_str().unwrap().to_owned();
    let end_id = s.events.last().unwrap().id.unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let note = heard.recv().await.unwrap();
            let mut fields = note.payload().split(' ');
            if fields.next() == Some(run_id.as_str()) && fields.nth(1) == Some(&end_id.to_string()) {
                break;
            }
        }
    })
    .await
    .expect("the holder announces its end");
    let app = TestApp::builder(holder.db.replica().await).start().await;
    sqlx::query("DELETE FROM run_events WHERE run_id = $1 AND terminal")
        .bind(&run_id)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE conversations SET active_run_id = $1, active_run_at = now() - interval '1 hour', \
         active_run_started_at = now() - interval '1 hour' WHERE tenant_id = 'acme'",
    )
    .bind(&run_id)
    .execute(pool)
    .await
    .unwrap();

    let first = app.resume(&tok, &run_id, None).await;
    let end = first.last().unwrap();
    assert_eq!(end.event, "error", "{first:?}");
    assert_eq!(end.data["code"], "unavailable");
    assert_eq!(first.len(), s.events.len(), "the logged events, then the end");
    // A client that had received up to what would have been the end (and a few previews more).
    for seen in [end_id, end_id + 5] {
        let again = app.resume(&tok, &run_id, Some(seen)).await;
        assert_eq!(again.len(), 1, "after {seen}: {again:?}");
        assert_eq!((again[0].event.as_str(), again[0].id), ("error", end.id));
        assert!(end.id.unwrap() > seen);
    }
    assert!(
        app.resume(&tok, &run_id, end.id).await.is_empty(),
        "the end's own id: nothing after it"
    );
}

/// Each open reader holds a task, its run's replay and a look at the database now and then: a tenant may have
/// `RUN_READERS_PER_TENANT` open on a replica, and one more is `429 rate_limited` — its own count, not another
/// tenant's — until one closes.
#[tokio::test]
async fn a_tenant_may_open_only_so_many_readers_at_once() {
    let app = TestApp::builder(agentd_testkit::fresh_postgres().await)
        .turns(|t| t.run_readers_per_tenant = 2)
        .start()
        .await;
    let tok = app.token("acme", "u1", None);
    let (original, started) = app
        .stream_started(
            &tok,
            json!({"agent": "assistant", "message": "hi #fake:text deltas=40 gap=100"}),
        )
        .await;
    let run_id = started["run_id"].as_str().unwrap().to_owned();
    let open = |tok: String| {
        let (app, run_id) = (&app, &run_id);
        async move { app.run_events(&tok, run_id, None).await }
    };
    let first = open(tok.clone()).await;
    let second = open(tok.clone()).await;
    assert_eq!((first.status().as_u16(), second.status().as_u16()), (200, 200));
    let third = open(tok.clone()).await;
    assert_eq!(third.status(), 429);
    assert!(third.headers().contains_key("retry-after"));
    let body: serde_json::Value = third.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("RUN_READERS_PER_TENANT"),
        "{body}"
    );
    // Another tenant is judged on its own count: told there is no such run, not refused.
    let other = open(app.token("otherco", "u1", None)).await;
    assert_eq!(other.status(), 404);
    // A reader that leaves gives its place back (noticed at the next event written to it).
    drop(first);
    let again = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let res = open(tok.clone()).await;
            if res.status() == 200 {
                return res;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("a place is given back when a reader leaves");
    let (a, b) = tokio::join!(second.text(), again.text());
    for events in [a.unwrap(), b.unwrap()] {
        let events = agentd_testkit::parse_sse(&events);
        assert_eq!(events.last().map(|e| e.event.as_str()), Some("run.completed"));
    }
    drop(original);
}

/// A reader holds one page of a run's log at a time (`CHUNKS_PER_READ` chunks), yet a run logged in many more
/// chunks replays whole — every event once, in order — to a reader that joins while it runs (pages, then
/// live), and after it ended, from the start and from its middle. (Without reading the next page at once, each
/// page after the first waited for the reader's liveness check: seconds a page.)
#[tokio::test]
async fn a_run_logged_in_many_chunks_is_replayed_a_page_at_a_time() {
    use agentd_db::journal::CHUNKS_PER_READ;
    let app = TestApp::postgres().await;
    let tok = app.token("acme", "u1", None);
    let (original, started) = app
        .stream_started(
            &tok,
            json!({"agent": "assistant", "message": "hi #fake:text deltas=400 gap=10 text-kb=2"}),
        )
        .await;
    let run_id = started["run_id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let joined = app.resume(&tok, &run_id, None).await;
    let rest = agentd_testkit::parse_sse(&original.text().await.unwrap());
    let end = rest.last().unwrap();
    assert_eq!(end.event, "run.completed");
    let end = end.id.unwrap();
    let agentd_db::Db::Postgres(pool) = &app.db.db else {
        panic!("postgres")
    };
    let chunks: i64 = sqlx::query_scalar("SELECT count(*) FROM run_events WHERE run_id = $1")
        .bind(&run_id)
        .fetch_one(pool)
        .await
        .unwrap();
    assert!(
        chunks > 2 * CHUNKS_PER_READ as i64,
        "the run is logged in {chunks} chunks, more than two pages"
    );
    let ids =
        |events: &[agentd_testkit::SseEvent]| -> Vec<u64> { events.iter().map(|e| e.id.unwrap()).collect() };
    // A text run sends no previews: its ids are 1, 2, … up to the end.
    assert_eq!(ids(&joined), (1..=end).collect::<Vec<_>>(), "joined while it ran");
    assert_eq!(
        ids(&app.resume(&tok, &run_id, None).await),
        (1..=end).collect::<Vec<_>>()
    );
    let middle = end / 2;
    assert_eq!(
        ids(&app.resume(&tok, &run_id, Some(middle)).await),
        (middle + 1..=end).collect::<Vec<_>>()
    );
    let text: String = joined
        .iter()
        .filter(|e| e.event == "message.delta")
        .map(|e| e.data["delta"].as_str().unwrap())
        .collect();
    assert_eq!(
        joined.last().unwrap().data["message"]["content"].as_str(),
        Some(text.as_str())
    );
}

/// PostgreSQL refuses every notification while its queue is full (a listener anywhere stopped reading: 8 GB
/// of them) and fails the statement that sent one. The run log is still written — without the notifications —
/// and a reader on another replica still gets every event and the end, from its look at the run every 5 s.
/// Here the refusal is staged by a `pg_notify` that raises the queue-full error, ahead of PostgreSQL's on the
/// search path. Before, each batch failed three times and its events were logged as lost.
#[tokio::test]
async fn run_events_are_written_while_postgresql_refuses_notifications() {
    let db = agentd_testkit::fresh_postgres().await;
    let agentd_db::Db::Postgres(pool) = &db.db else {
        panic!("postgres")
    };
    let name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(pool)
        .await
        .unwrap();
    sqlx::query(
        "CREATE FUNCTION public.pg_notify(text, text) RETURNS void LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'too many notifications in the NOTIFY queue' USING ERRCODE = '54000'; END $$",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {name} SET search_path = public, pg_catalog"
    )))
    .execute(pool)
    .await
    .unwrap();
    // Both replicas connect afresh, with that search path.
    let (a, b) = (db.replica().await, db.replica().await);
    let agentd_db::Db::Postgres(seen_by_a) = &a.db else {
        panic!("postgres")
    };
    let refused = sqlx::query("SELECT pg_notify('agentd_run_events', 'x')::text")
        .execute(seen_by_a)
        .await
        .expect_err("a notification is refused");
    assert!(
        refused.to_string().contains("too many notifications"),
        "{refused}"
    );
    let running = TestApp::builder(a).start().await;
    let other = TestApp::builder(b).start().await;
    let tok = running.token("acme", "u1", None);
    let (original, started) = running
        .stream_started(
            &tok,
            json!({"agent": "assistant", "message": "hi #fake:text deltas=20 gap=50"}),
        )
        .await;
    let run_id = started["run_id"].as_str().unwrap().to_owned();
    let res = other.run_events(&tok, &run_id, None).await;
    assert_eq!(res.status(), 200);
    let followed = tokio::time::timeout(Duration::from_secs(20), res.text())
        .await
        .expect("the reader on the other replica gets the end")
        .unwrap();
    let followed = agentd_testkit::parse_sse(&followed);
    let original = agentd_testkit::parse_sse(&original.text().await.unwrap());
    let ids = |evs: &[agentd_testkit::SseEvent]| {
        evs.iter()
            .map(|e| (e.id.unwrap(), e.event.clone()))
            .collect::<Vec<_>>()
    };
    let mut sent = vec![(1, "run.started".to_owned())];
    sent.extend(ids(&original));
    assert_eq!(ids(&followed), sent, "every event, once, in order");
    assert_eq!(followed.last().unwrap().event, "run.completed");
    assert!(followed.iter().filter(|e| e.event == "message.delta").count() >= 10);
}

/// A client that resumes a running turn from past its end (a `Last-Event-ID` the run never reaches) gets what
/// it would get once the run has finished: a stream that ends with no event — not an `internal` error
/// invented for a turn that completed, logged as a server fault.
#[tokio::test]
async fn a_resume_from_past_the_end_of_a_running_turn_ends_with_no_event() {
    let app = TestApp::postgres().await;
    let tok = app.token("acme", "u1", None);
    let (original, started) = app
        .stream_started(
            &tok,
            json!({"agent": "assistant", "message": "hi #fake:text deltas=20 gap=50"}),
        )
        .await;
    let run_id = started["run_id"].as_str().unwrap().to_owned();
    let past = app.resume(&tok, &run_id, Some(1_000_000)).await;
    let rest = agentd_testkit::parse_sse(&original.text().await.unwrap());
    assert_eq!(rest.last().unwrap().event, "run.completed");
    assert!(past.is_empty(), "{past:?}");
    assert!(app.resume(&tok, &run_id, Some(1_000_000)).await.is_empty());
}

/// A run id that no run can have — a NUL (which PostgreSQL's text refuses: it was a 500), a long or an odd one —
/// is `404 run_not_found`, as an unknown well-formed one is, before any query.
#[tokio::test]
async fn a_run_id_no_run_can_have_is_not_found() {
    let app = TestApp::postgres().await;
    let tok = app.token("acme", "u1", None);
    let long = format!("run_{}", "a".repeat(100));
    for id in [
        "run_0123456789abcdef0123456789abcdef",
        "%00",
        "run_%00",
        "run_a%20b",
        long.as_str(),
    ] {
        let res = app.get(&format!("/v1/runs/{id}/events"), &tok).await;
        assert_eq!(res.status(), 404, "{id}");
        let v: serde_json::Value = res.json().await.unwrap();
        assert_eq!(v["error"]["code"], "run_not_found", "{id}: {v}");
    }
}
