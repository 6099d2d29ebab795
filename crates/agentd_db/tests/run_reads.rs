//! What a resuming reader reads of a run, on PostgreSQL and SQLite alike: its state (the log and the lease
//! holding it, either of which may be missing) and its chunks after an id — in one statement, confined to the
//! tenant, a page at a time.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use agentd_db::journal::{EventChunk, RunState};
use agentd_db::turns::Lease;
use agentd_db::{Db, TenantId};
use chrono::Duration;
use uuid::Uuid;

macro_rules! both {
    ($($case:ident),*) => {
        mod pg { $( #[tokio::test] async fn $case() { super::$case(&agentd_testkit::fresh_postgres().await.db).await; } )* }
        mod lite { $( #[tokio::test] async fn $case() { super::$case(&agentd_testkit::fresh_sqlite().await.db).await; } )* }
    };
}

both!(
    a_run_is_read_with_its_lease_and_the_chunks_after_an_id,
    a_long_run_is_read_a_page_at_a_time
);

fn chunk(
    tenant: &TenantId,
    conversation: Uuid,
    prev: i64,
    first: i64,
    last: i64,
    terminal: bool,
) -> EventChunk {
    EventChunk {
        run_id: "r1".to_owned(),
        tenant: tenant.clone(),
        conversation_id: conversation,
        first_id: first,
        last_id: last,
        events: format!(r#"[{{"id":{first}}},{{"id":{last}}}]"#),
        terminal,
        prev_id: prev,
    }
}

async fn a_run_is_read_with_its_lease_and_the_chunks_after_an_id(db: &Db) {
    let (t, u) = (TenantId::parse("t").unwrap(), TenantId::parse("u").unwrap());
    db.provision_tenant(&t).await.unwrap();
    db.provision_tenant(&u).await.unwrap();
    let s = db.scoped(&t);
    let minutes = Duration::minutes(15);
    assert_eq!(s.run_state("r1", minutes).await.unwrap(), None);
    assert_eq!(s.run_resume("r1", 0, minutes).await.unwrap(), None);

    // Leased, nothing logged yet.
    let conv = s.create_conversation("a", "assistant", "").await.unwrap();
    assert!(matches!(
        s.try_lease(conv.id, "r1", minutes).await.unwrap(),
        Lease::Taken { .. }
    ));
    let live = |last_id: i64, finished: bool| RunState {
        conversation_id: conv.id,
        live: true,
        last_id,
        finished,
    };
    assert_eq!(s.run_state("r1", minutes).await.unwrap(), Some(live(0, false)));
    assert_eq!(
        s.run_resume("r1", 0, minutes).await.unwrap(),
        Some((live(0, false), vec![]))
    );

    // Two chunks (a preview's id 3 between them is never logged): the chunks ending after the id, in order.
    db.append_chunks(&[
        chunk(&t, conv.id, 0, 1, 2, false),
        chunk(&t, conv.id, 2, 4, 6, false),
    ])
    .await
    .unwrap();
    let (state, chunks) = s.run_resume("r1", 0, minutes).await.unwrap().unwrap();
    assert_eq!(state, live(6, false));
    let spans: Vec<(i64, i64, bool)> = chunks
        .iter()
        .map(|c| (c.first_id, c.last_id, c.terminal))
        .collect();
    assert_eq!(spans, vec![(1, 2, false), (4, 6, false)]);
    assert_eq!(chunks[1].events, r#"[{"id":4},{"id":6}]"#);
    let (_, chunks) = s.run_resume("r1", 2, minutes).await.unwrap().unwrap();
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].first_id, 4);
    let (state, chunks) = s.run_resume("r1", 6, minutes).await.unwrap().unwrap();
    assert_eq!((state, chunks.len()), (live(6, false), 0));

    // Another tenant has no such run, whatever it knows the id of.
    assert_eq!(db.scoped(&u).run_state("r1", minutes).await.unwrap(), None);
    assert_eq!(db.scoped(&u).run_resume("r1", 0, minutes).await.unwrap(), None);

    // A lease older than the lease time is not live; the terminal chunk finishes the run.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let short = Duration::milliseconds(5);
    assert_eq!(
        s.run_state("r1", short).await.unwrap().map(|st| st.live),
        Some(false)
    );
    db.append_chunks(&[chunk(&t, conv.id, 6, 7, 7, true)])
        .await
        .unwrap();
    let (state, chunks) = s.run_resume("r1", 6, minutes).await.unwrap().unwrap();
    assert_eq!(state, live(7, true));
    assert_eq!((chunks.len(), chunks[0].terminal), (1, true));
    assert_eq!(s.run_state("r1", minutes).await.unwrap(), Some(live(7, true)));
    // The usual finished run: logged to its end, its lease given back.
    s.release_lease(conv.id, "r1").await.unwrap();
    let done = RunState {
        live: false,
        ..live(7, true)
    };
    assert_eq!(s.run_state("r1", minutes).await.unwrap(), Some(done.clone()));
    assert_eq!(
        s.run_resume("r1", 0, minutes)
            .await
            .unwrap()
            .map(|(st, c)| (st, c.len())),
        Some((done, 3))
    );
}

/// However long a run's log, one read holds at most `CHUNKS_PER_READ` chunks of it (a reply of
/// `CHAT_MAX_REPLY_MB` may be thousands); the next page is read after the last id of the one before.
async fn a_long_run_is_read_a_page_at_a_time(db: &Db) {
    use agentd_db::journal::CHUNKS_PER_READ;
    let t = TenantId::parse("t").unwrap();
    db.provision_tenant(&t).await.unwrap();
    let s = db.scoped(&t);
    let conv = s.create_conversation("a", "assistant", "").await.unwrap();
    let n = 2 * CHUNKS_PER_READ as i64 + 5;
    let chunks: Vec<_> = (1..=n).map(|i| chunk(&t, conv.id, i - 1, i, i, i == n)).collect();
    db.append_chunks(&chunks).await.unwrap();
    let minutes = Duration::minutes(15);
    let (state, first) = s.run_resume("r1", 0, minutes).await.unwrap().unwrap();
    assert_eq!(
        (state.last_id, state.finished),
        (n, true),
        "the state is the whole run's"
    );
    let mut read: Vec<i64> = first.iter().map(|c| c.last_id).collect();
    assert_eq!(read, (1..=CHUNKS_PER_READ as i64).collect::<Vec<_>>());
    let mut pages = 1;
    loop {
        let page = s.run_chunks_after("r1", *read.last().unwrap()).await.unwrap();
        assert!(page.len() <= CHUNKS_PER_READ);
        read.extend(page.iter().map(|c| c.last_id));
        pages += 1;
        if page.len() < CHUNKS_PER_READ {
            break;
        }
    }
    assert_eq!(read, (1..=n).collect::<Vec<_>>(), "every chunk once, in order");
    assert_eq!(pages, 3);
    let (_, tail) = s.run_resume("r1", n - 2, minutes).await.unwrap().unwrap();
    assert_eq!(tail.len(), 2, "a resume near the end reads only the end");
}
