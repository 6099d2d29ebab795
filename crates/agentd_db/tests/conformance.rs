//! One repository conformance suite, run unchanged against PostgreSQL and SQLite: what one database accepts,
//! orders or refuses, the other must too — and no call crosses tenants.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use agentd_db::{AttachmentMeta, Db, NewMessage, Role, TenantId, TenantStatus};
use uuid::Uuid;

fn tid(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
}

/// Instantiates each case once per database.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod postgres { $( #[tokio::test] async fn $case() { let t = agentd_testkit::fresh_postgres().await; super::$case(&t.db).await; } )* }
        mod sqlite { $( #[tokio::test] async fn $case() { let t = agentd_testkit::fresh_sqlite().await; super::$case(&t.db).await; } )* }
    };
}

conformance!(
    tenants_are_provisioned_once_and_can_be_suspended,
    conversations_are_confined_to_their_tenant,
    messages_keep_attachment_metadata_in_order,
    pagination_is_newest_first_without_gaps_or_repeats,
    deleting_a_conversation_deletes_its_messages,
    last_response_id_is_kept_for_the_next_turn,
    messages_are_read_a_page_at_a_time_in_order,
    a_turn_reading_an_upload_holds_off_its_deletion,
);

/// Housekeeping deletes an unused upload in a transaction that locks it and then checks it is unused; a turn
/// that has read the upload holds it until it commits its reference (on PostgreSQL by the key-share lock of its
/// read, on SQLite by its write lock), and housekeeping then finds it in use. (A single `DELETE … NOT EXISTS`
/// went ahead on PostgreSQL, and took the just-committed reference with it.)
async fn a_turn_reading_an_upload_holds_off_its_deletion(db: &Db) {
    use agentd_db::{NewObject, ObjectKey};
    let tenant = tid("t");
    db.provision_tenant(&tenant).await.unwrap();
    let s = db.scoped(&tenant);
    let conv = s.create_conversation("u", "assistant", "uses it").await.unwrap();
    let upload = |id: Uuid| NewObject {
        id,
        object_key: ObjectKey::upload(&tenant, &id.simple().to_string(), "png").unwrap(),
        conversation_id: None,
        tool_call_id: None,
        kind: "upload",
        filename: "x.png".into(),
        mime_type: "image/png".into(),
        size_bytes: 3,
        sha256: String::new(),
    };
    let (id, unused) = (Uuid::now_v7(), Uuid::now_v7());
    for o in [id, unused] {
        s.insert_object(&upload(o)).await.unwrap();
    }
    // Any upload made before an hour from now counts as old enough.
    let before = agentd_db::now() + chrono::Duration::hours(1);
    let mut turn = s.begin().await.unwrap();
    assert_eq!(turn.objects(&[id]).await.unwrap().len(), 1);
    let sweeper = {
        let (db, tenant) = (db.clone(), tenant.clone());
        tokio::spawn(async move {
            let mut tx = db.scoped(&tenant).begin().await.unwrap();
            let unused = tx.lock_unused_upload(id, before).await.unwrap();
            if unused {
                tx.mark_deleted(id).await.unwrap();
                tx.commit().await.unwrap();
            }
            unused
        })
    };
    if matches!(db, Db::Postgres(_)) {
        // On the lock: not merely not there yet (arriving after the commit, it would find the upload used anyway).
        agentd_testkit::until_lock_waiters(db, 1, "housekeeping waits for the turn's lock").await;
    } else {
        // SQLite's wait for the write lock shows nowhere: a pause for the sweeper to reach it.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    assert!(!sweeper.is_finished(), "housekeeping waits for the turn");
    turn.reference_objects(conv.id, &[id]).await.unwrap();
    turn.commit().await.unwrap();
    assert!(!sweeper.await.unwrap(), "the upload is in use: kept");
    assert!(s.object(id).await.unwrap().is_some());
    // One no conversation uses goes; one too young stays.
    let mut tx = s.begin().await.unwrap();
    assert!(
        !tx.lock_unused_upload(unused, agentd_db::now() - chrono::Duration::hours(1))
            .await
            .unwrap()
    );
    assert!(tx.lock_unused_upload(unused, before).await.unwrap());
    tx.mark_deleted(unused).await.unwrap();
    tx.commit().await.unwrap();
    assert!(s.object(unused).await.unwrap().is_none(), "marked: not found");
    // Marked and still unused, it is listed again (its bytes may not have gone), and goes with its row.
    let listed = db.stale_uploads(before, 10).await.unwrap();
    assert_eq!(listed.iter().map(|o| o.id).collect::<Vec<_>>(), [unused]);
    s.delete_object(unused).await.unwrap();
    assert!(db.stale_uploads(before, 10).await.unwrap().is_empty());
}

/// Every message of a conversation, read two at a time (as the HTTP view reads them, in pages).
async fn all_messages(s: &agentd_db::Scoped<'_>, conversation: Uuid) -> Vec<agentd_db::Message> {
    let mut all: Vec<agentd_db::Message> = Vec::new();
    loop {
        let page = s
            .messages_after(
                conversation,
                all.last().map(|m| (m.created_at, m.id)),
                2,
                u64::MAX,
            )
            .await
            .unwrap();
        assert!(page.messages.len() <= 2);
        assert_eq!(page.more, page.messages.len() == 2);
        all.extend(page.messages);
        if !page.more {
            return all;
        }
    }
}

/// Pages follow on from their previous page's last message without gaps or repeats, in `(created_at, id)`
/// order — messages written in the same microsecond too — whether the count or the bytes end them, and another
/// tenant's page is empty.
async fn messages_are_read_a_page_at_a_time_in_order(db: &Db) {
    let tenant = tid("t");
    db.provision_tenant(&tenant).await.unwrap();
    let s = db.scoped(&tenant);
    let conv = s.create_conversation("u", "assistant", "paged").await.unwrap();
    // Three to an instant, the instants with 0, 3 and 6 digits of fraction (SQLite compares them as text).
    let base = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .to_utc();
    let instants = [0, 100_000, 100_001, 1_000_000].map(|us| base + chrono::Duration::microseconds(us));
    let mut written = Vec::new();
    for i in 0..11 {
        let mut m = NewMessage::new(Role::User, format!("m{i}"), vec![], None);
        m.created_at = instants[i / 3];
        written.push(s.append_message(conv.id, m).await.unwrap().unwrap());
    }
    written.sort_by_key(|m| (m.created_at, m.id));
    assert_eq!(all_messages(&s, conv.id).await, written);
    // (limit, bytes): "m0" … "m9" are 2 bytes, "m10" is 3.
    for (limit, bytes) in [
        (1, u64::MAX),
        (4, u64::MAX),
        (11, u64::MAX),
        (50, u64::MAX),
        (50, 1),
        (50, 5),
        (4, 7),
    ] {
        let mut read: Vec<agentd_db::Message> = Vec::new();
        let mut pages = Vec::new();
        loop {
            let after = read.last().map(|m| (m.created_at, m.id));
            let page = s.messages_after(conv.id, after, limit, bytes).await.unwrap();
            let m = &page.messages;
            assert!(
                !m.is_empty() || !page.more,
                "({limit}, {bytes}): an empty page says it is the last"
            );
            assert!(m.len() <= limit as usize);
            let before_last: usize = m.iter().rev().skip(1).map(|m| m.content.len()).sum();
            assert!((before_last as u64) < bytes.max(1), "({limit}, {bytes}): {m:?}");
            pages.push(m.len());
            read.extend(page.messages);
            if !page.more {
                break;
            }
        }
        assert_eq!(read, written, "pages of ({limit}, {bytes})");
        let expected: &[usize] = match (limit, bytes) {
            (50, 1) => &[1; 11],
            (50, 5) => &[3, 3, 3, 2],
            (4, 7) => &[4, 4, 3],
            _ => &[],
        };
        if !expected.is_empty() {
            assert_eq!(pages, expected, "({limit}, {bytes})");
        }
    }
    let other = tid("other");
    db.provision_tenant(&other).await.unwrap();
    assert!(
        db.scoped(&other)
            .messages_after(conv.id, None, 50, u64::MAX)
            .await
            .unwrap()
            .messages
            .is_empty()
    );
}

async fn tenants_are_provisioned_once_and_can_be_suspended(db: &Db) {
    assert_eq!(
        db.provision_tenant(&tid("acme")).await.unwrap(),
        TenantStatus::Active
    );
    assert_eq!(
        db.provision_tenant(&tid("acme")).await.unwrap(),
        TenantStatus::Active
    );
    db.set_tenant_status(&tid("acme"), TenantStatus::Suspended)
        .await
        .unwrap();
    assert_eq!(
        db.provision_tenant(&tid("acme")).await.unwrap(),
        TenantStatus::Suspended
    );
    db.set_tenant_status(&tid("acme"), TenantStatus::Active)
        .await
        .unwrap();
    assert_eq!(
        db.provision_tenant(&tid("acme")).await.unwrap(),
        TenantStatus::Active
    );
    db.set_tenant_status(&tid("later"), TenantStatus::Suspended)
        .await
        .unwrap();
    assert_eq!(
        db.provision_tenant(&tid("later")).await.unwrap(),
        TenantStatus::Suspended,
        "suspend before first use"
    );
}

async fn conversations_are_confined_to_their_tenant(db: &Db) {
    for t in ["a", "b"] {
        db.provision_tenant(&tid(t)).await.unwrap();
    }
    let (ta, tb) = (tid("a"), tid("b"));
    let (a, b) = (db.scoped(&ta), db.scoped(&tb));
    let conv = a.create_conversation("alice", "designer", "cats").await.unwrap();
    assert_eq!(a.conversation(conv.id).await.unwrap().unwrap(), conv);
    assert!(b.conversation(conv.id).await.unwrap().is_none());
    assert!(b.list_conversations(20, None).await.unwrap().items.is_empty());
    let msg = NewMessage::new(Role::User, "hi".into(), vec![], None);
    assert!(
        b.append_message(conv.id, msg.clone()).await.unwrap().is_none(),
        "no write into another tenant"
    );
    assert!(all_messages(&b, conv.id).await.is_empty());
    assert!(!b.delete_conversation(conv.id).await.unwrap());
    b.set_last_response(conv.id, Some("resp_evil")).await.unwrap();
    assert_eq!(
        a.conversation(conv.id).await.unwrap().unwrap().last_response_id,
        None
    );
    assert!(a.append_message(conv.id, msg).await.unwrap().is_some());
}

async fn messages_keep_attachment_metadata_in_order(db: &Db) {
    db.provision_tenant(&tid("t")).await.unwrap();
    let tenant = tid("t");
    let s = db.scoped(&tenant);
    let conv = s.create_conversation("u", "designer", "").await.unwrap();
    let att = AttachmentMeta {
        object_id: Uuid::now_v7(),
        object_key: agentd_db::ObjectKey::parse("tenants/t/conversations/c/o.png").unwrap(),
        filename: "image-ig_1.png".into(),
        mime_type: "image/png".into(),
        size_bytes: 1234,
        tool_call_id: Some("ig_1".into()),
    };
    let user = NewMessage::new(Role::User, "draw".into(), vec![], None);
    let bot = NewMessage::new(
        Role::Assistant,
        "here".into(),
        vec![att.clone()],
        Some("resp_1".into()),
    );
    let m1 = s.append_message(conv.id, user).await.unwrap().unwrap();
    let m2 = s.append_message(conv.id, bot).await.unwrap().unwrap();
    let all = all_messages(&s, conv.id).await;
    assert_eq!(all, vec![m1, m2.clone()]);
    assert_eq!(all[1].attachments, vec![att]);
    assert_eq!(
        (all[1].role, all[1].response_id.as_deref()),
        (Role::Assistant, Some("resp_1"))
    );
}

async fn pagination_is_newest_first_without_gaps_or_repeats(db: &Db) {
    db.provision_tenant(&tid("t")).await.unwrap();
    let tenant = tid("t");
    let s = db.scoped(&tenant);
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(
            s.create_conversation("u", "assistant", &format!("c{i}"))
                .await
                .unwrap()
                .id,
        );
    }
    // Touching the oldest makes it the newest.
    s.set_last_response(ids[0], None).await.unwrap();
    let expected: Vec<Uuid> = [ids[0]]
        .into_iter()
        .chain(ids[1..].iter().rev().copied())
        .collect();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = s.list_conversations(3, cursor).await.unwrap();
        assert!(page.items.len() <= 3);
        seen.extend(page.items.iter().map(|c| c.id));
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, expected);
}

async fn deleting_a_conversation_deletes_its_messages(db: &Db) {
    db.provision_tenant(&tid("t")).await.unwrap();
    let tenant = tid("t");
    let s = db.scoped(&tenant);
    let conv = s.create_conversation("u", "assistant", "").await.unwrap();
    let m = NewMessage::new(Role::User, "x".into(), vec![], None);
    s.append_message(conv.id, m).await.unwrap().unwrap();
    assert!(s.delete_conversation(conv.id).await.unwrap());
    assert!(s.conversation(conv.id).await.unwrap().is_none());
    assert!(all_messages(&s, conv.id).await.is_empty());
    assert!(!s.delete_conversation(conv.id).await.unwrap());
}

async fn last_response_id_is_kept_for_the_next_turn(db: &Db) {
    db.provision_tenant(&tid("t")).await.unwrap();
    let tenant = tid("t");
    let s = db.scoped(&tenant);
    let conv = s.create_conversation("u", "designer", "").await.unwrap();
    s.set_last_response(conv.id, Some("resp_1")).await.unwrap();
    s.set_last_response(conv.id, None).await.unwrap();
    let c = s.conversation(conv.id).await.unwrap().unwrap();
    assert_eq!(c.last_response_id.as_deref(), Some("resp_1"));
    assert!(c.updated_at >= conv.updated_at);
}

#[tokio::test]
async fn postgres_is_not_migrated_behind_the_operators_back() {
    let t = agentd_testkit::fresh_postgres_unmigrated().await;
    let pending = t.db.pending_migrations().await.unwrap();
    assert!(pending > 0);
    let err = t.db.prepare(&t.settings).await.unwrap_err().to_string();
    assert!(err.contains("run `agentd migrate`"), "{err}");
    let auto = agentd_db::DbSettings {
        auto_migrate: Some(true),
        ..t.settings.clone()
    };
    t.db.prepare(&auto).await.unwrap();
    assert_eq!(t.db.pending_migrations().await.unwrap(), 0);
}

#[tokio::test]
async fn sqlite_migrates_itself_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let settings = agentd_db::DbSettings {
        url: format!("sqlite://{}/nested/dir/a.sqlite", dir.path().display()),
        ..Default::default()
    };
    let db = Db::connect(&settings).await.unwrap();
    db.prepare(&settings).await.unwrap();
    assert_eq!(db.pending_migrations().await.unwrap(), 0);
    assert_eq!(
        db.provision_tenant(&tid("t")).await.unwrap(),
        TenantStatus::Active
    );
}

mod turns {
    use super::*;
    use agentd_db::journal::EventChunk;
    use agentd_db::turns::{Finished, FinishedTurn, Lease, NewConversation};
    use agentd_db::{IdempotencyState, NewObject, NewUsage, ObjectKey, OpenTurn, Opening, RateDecision};
    use chrono::Duration;
    use serde_json::json;

    macro_rules! both {
        ($($case:ident),*) => {
            mod pg { $( #[tokio::test] async fn $case() { super::$case(&agentd_testkit::fresh_postgres().await.db).await; } )* }
            mod lite { $( #[tokio::test] async fn $case() { super::$case(&agentd_testkit::fresh_sqlite().await.db).await; } )* }
        };
    }
    both!(
        one_run_per_conversation,
        idempotency_keys,
        expired_runs_are_purged_whole,
        appended_chunks_are_reported_only_when_written,
        a_finished_turn_writes_everything_once_or_says_what_it_could_not,
        a_new_conversation_opens_with_its_limits_first_event_and_message_or_not_at_all,
        racing_openings_admit_exactly_the_concurrent_limit
    );

    async fn appended_chunks_are_reported_only_when_written(db: &Db) {
        let t = tid("t");
        db.provision_tenant(&t).await.unwrap();
        let chunk = |first: i64, terminal: bool| EventChunk {
            run_id: "r".to_owned(),
            tenant: t.clone(),
            conversation_id: Uuid::now_v7(),
            first_id: first,
            last_id: first,
            events: "[]".to_owned(),
            terminal,
            prev_id: first - 1,
        };
        let w = db
            .append_chunks(&[chunk(1, false), chunk(2, true)])
            .await
            .unwrap();
        assert_eq!(w, vec![("r".to_owned(), 1), ("r".to_owned(), 2)]);
        assert!(
            db.append_chunks(&[chunk(1, false)]).await.unwrap().is_empty(),
            "a repeat"
        );
        assert!(
            db.append_chunks(&[chunk(3, true)]).await.unwrap().is_empty(),
            "a second end"
        );
    }

    async fn expired_runs_are_purged_whole(db: &Db) {
        let t = tid("t");
        db.provision_tenant(&t).await.unwrap();
        let chunk = |run: &str, id: i64| EventChunk {
            run_id: run.to_owned(),
            tenant: t.clone(),
            conversation_id: Uuid::now_v7(),
            first_id: id,
            last_id: id,
            events: "[]".to_owned(),
            terminal: false,
            prev_id: id - 1,
        };
        db.append_chunks(&[chunk("old", 1), chunk("old", 2), chunk("straddles", 1)])
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let cutoff = agentd_db::now();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        db.append_chunks(&[chunk("straddles", 2)]).await.unwrap();
        assert_eq!(db.purge_run_events(cutoff).await.unwrap(), 2);
        let s = db.scoped(&t);
        assert!(s.run_chunks_after("old", 0).await.unwrap().is_empty());
        assert_eq!(
            s.run_chunks_after("straddles", 0).await.unwrap().len(),
            2,
            "a run still being written keeps its first chunks"
        );
        // Once its last chunk has expired too, it goes whole.
        assert_eq!(db.purge_run_events(agentd_db::now()).await.unwrap(), 2);
        assert!(s.run_chunks_after("straddles", 0).await.unwrap().is_empty());
    }

    async fn one_run_per_conversation(db: &Db) {
        db.provision_tenant(&tid("t")).await.unwrap();
        db.provision_tenant(&tid("u")).await.unwrap();
        let tenant = tid("t");
        let s = db.scoped(&tenant);
        let conv = s.create_conversation("u", "assistant", "").await.unwrap();
        assert!(matches!(
            s.try_lease(conv.id, "r1", Duration::minutes(15)).await.unwrap(),
            Lease::Taken { .. }
        ));
        assert!(
            !matches!(
                s.try_lease(conv.id, "r2", Duration::minutes(15)).await.unwrap(),
                Lease::Taken { .. }
            ),
            "busy"
        );
        assert!(
            !matches!(
                db.scoped(&tid("u"))
                    .try_lease(conv.id, "r3", Duration::minutes(15))
                    .await
                    .unwrap(),
                Lease::Taken { .. }
            ),
            "not u's"
        );
        s.release_lease(conv.id, "r2").await.unwrap();
        assert!(
            !matches!(
                s.try_lease(conv.id, "r2", Duration::minutes(15)).await.unwrap(),
                Lease::Taken { .. }
            ),
            "only the holder unlocks"
        );
        assert!(
            matches!(
                s.try_lease(conv.id, "r4", Duration::zero() - Duration::seconds(1))
                    .await
                    .unwrap(),
                Lease::Taken { .. }
            ),
            "stale lease"
        );
        s.release_lease(conv.id, "r4").await.unwrap();
        assert!(matches!(
            s.try_lease(conv.id, "r5", Duration::minutes(15)).await.unwrap(),
            Lease::Taken { .. }
        ));
    }

    async fn idempotency_keys(db: &Db) {
        db.provision_tenant(&tid("t")).await.unwrap();
        db.provision_tenant(&tid("u")).await.unwrap();
        let tenant = tid("t");
        let s = db.scoped(&tenant);
        assert_eq!(
            s.claim_idempotency("k", "h1").await.unwrap(),
            IdempotencyState::Claimed
        );
        assert_eq!(
            s.claim_idempotency("k", "h1").await.unwrap(),
            IdempotencyState::Running
        );
        assert_eq!(
            s.claim_idempotency("k", "h2").await.unwrap(),
            IdempotencyState::Mismatch
        );
        assert_eq!(
            db.scoped(&tid("u")).claim_idempotency("k", "h2").await.unwrap(),
            IdempotencyState::Claimed,
            "per tenant"
        );
        s.finish_idempotency("k", &json!({"ok": 1})).await.unwrap();
        assert!(matches!(
            s.claim_idempotency("k", "h1").await.unwrap(),
            IdempotencyState::Done { result, run_id: Some(_) } if result == json!({"ok": 1})
        ));
        assert_eq!(
            s.claim_idempotency("k2", "h").await.unwrap(),
            IdempotencyState::Claimed
        );
        s.release_idempotency("k2").await.unwrap();
        assert_eq!(
            s.claim_idempotency("k2", "h").await.unwrap(),
            IdempotencyState::Claimed,
            "a failed first try frees the key"
        );
    }

    /// A finished turn writes the reply and the image it shows, usage, the conversation's next response and its
    /// lease release, the idempotency result and the terminal event, together — PostgreSQL in one statement,
    /// SQLite in one transaction — and says what it could not write when the conversation or the lease is gone.
    async fn a_finished_turn_writes_everything_once_or_says_what_it_could_not(db: &Db) {
        let t = tid("t");
        db.provision_tenant(&t).await.unwrap();
        let s = db.scoped(&t);
        let lease = Duration::minutes(15);
        let conv = s.create_conversation("u", "assistant", "").await.unwrap();
        assert!(matches!(
            s.try_lease(conv.id, "r1", lease).await.unwrap(),
            Lease::Taken { .. }
        ));
        let mut tx = s.begin().await.unwrap();
        assert_eq!(
            tx.claim_idempotency("k", "h", "r1", lease).await.unwrap(),
            IdempotencyState::Claimed
        );
        tx.commit().await.unwrap();
        let image = Uuid::now_v7();
        let key =
            ObjectKey::in_conversation(&t, &conv.id.to_string(), &image.simple().to_string(), "png").unwrap();
        s.insert_object(&NewObject {
            id: image,
            object_key: key,
            conversation_id: Some(conv.id),
            tool_call_id: Some("ig_1".to_owned()),
            kind: "generated",
            filename: "a.png".to_owned(),
            mime_type: "image/png".to_owned(),
            size_bytes: 3,
            sha256: "00".to_owned(),
        })
        .await
        .unwrap();
        let reply = NewMessage::new(
            Role::Assistant,
            "done".to_owned(),
            vec![],
            Some("resp_1".to_owned()),
        );
        let usage = NewUsage {
            conversation_id: Some(conv.id),
            response_id: Some("resp_1".to_owned()),
            input_tokens: 5,
            output_tokens: 7,
            images: 1,
            image_output_tokens: 100,
            image_cost_usd: 0.04,
        };
        let end = EventChunk {
            run_id: "r1".to_owned(),
            tenant: t.clone(),
            conversation_id: conv.id,
            first_id: 9,
            last_id: 9,
            events: "[]".to_owned(),
            terminal: true,
            prev_id: 8,
        };
        let result = json!({"reply": "done"});
        let f = FinishedTurn {
            conversation: conv.id,
            run_id: "r1",
            assistant: Some(&reply),
            object_ids: &[image],
            usage: &usage,
            usage_id: Uuid::now_v7(),
            response_id: Some("resp_1"),
            idempotency: Some(("k", Some(&result))),
            events: Some(&end),
        };
        let all = Finished {
            message_saved: true,
            lease_released: true,
            terminal_logged: true,
        };
        assert_eq!(s.finish_turn(&f).await.unwrap(), all);
        // Saved again, as after a commit whose answer was lost: nothing is written twice, and the reply and the
        // end are reported as saved (the lease was given back by the first try).
        let again = Finished {
            lease_released: false,
            ..all
        };
        assert_eq!(s.finish_turn(&f).await.unwrap(), again);
        let messages = all_messages(&s, conv.id).await;
        assert_eq!(messages.len(), 1);
        assert_eq!(
            (
                messages[0].id,
                messages[0].content.as_str(),
                messages[0].response_id.as_deref()
            ),
            (reply.id, "done", Some("resp_1"))
        );
        assert_eq!(s.object(image).await.unwrap().unwrap().message_id, Some(reply.id));
        let c = s.conversation(conv.id).await.unwrap().unwrap();
        assert_eq!(c.last_response_id.as_deref(), Some("resp_1"));
        assert_eq!(c.active_run_id, None, "the lease is given back");
        let days = s.usage_by_day(conv.created_at.date_naive()).await.unwrap();
        let d = &days[0];
        assert_eq!(
            (
                days.len(),
                d.turns,
                d.input_tokens,
                d.output_tokens,
                d.images,
                d.image_output_tokens
            ),
            (1, 1, 5, 7, 1, 100)
        );
        assert!(matches!(
            s.claim_idempotency("k", "h").await.unwrap(),
            IdempotencyState::Done { result: r, run_id: Some(run) } if r == result && run == "r1"
        ));
        let chunks = s.run_chunks_after("r1", 0).await.unwrap();
        assert_eq!(chunks.len(), 1);
        assert!(chunks[0].terminal);

        // A second end for the run (as a reader that found it dead would write) is not logged; a lease taken over
        // by another run is not released by this one.
        assert!(matches!(
            s.try_lease(conv.id, "r2", lease).await.unwrap(),
            Lease::Taken { .. }
        ));
        let late = NewMessage::new(Role::Assistant, "late".to_owned(), vec![], None);
        let f = FinishedTurn {
            conversation: conv.id,
            run_id: "r1",
            assistant: Some(&late),
            object_ids: &[],
            usage: &NewUsage::default(),
            usage_id: Uuid::now_v7(),
            response_id: None,
            idempotency: None,
            events: Some(&EventChunk {
                first_id: 10,
                last_id: 10,
                prev_id: 9,
                ..end.clone()
            }),
        };
        let partial = Finished {
            message_saved: true,
            lease_released: false,
            terminal_logged: false,
        };
        assert_eq!(s.finish_turn(&f).await.unwrap(), partial);
        let c = s.conversation(conv.id).await.unwrap().unwrap();
        assert_eq!(
            (c.active_run_id.as_deref(), c.last_response_id.as_deref()),
            (Some("r2"), Some("resp_1"))
        );

        // The conversation is gone: no reply is saved, a failed turn frees its idempotency key.
        let gone = s.create_conversation("u", "assistant", "").await.unwrap();
        let mut tx = s.begin().await.unwrap();
        assert_eq!(
            tx.claim_idempotency("k3", "h", "r3", lease).await.unwrap(),
            IdempotencyState::Claimed
        );
        tx.commit().await.unwrap();
        assert!(s.delete_conversation(gone.id).await.unwrap());
        let f = FinishedTurn {
            conversation: gone.id,
            run_id: "r3",
            assistant: Some(&late),
            object_ids: &[image],
            usage: &NewUsage::default(),
            usage_id: Uuid::now_v7(),
            response_id: None,
            idempotency: Some(("k3", None)),
            events: None,
        };
        let nothing = Finished {
            message_saved: false,
            lease_released: false,
            terminal_logged: false,
        };
        assert_eq!(s.finish_turn(&f).await.unwrap(), nothing);
        assert_eq!(
            s.object(image).await.unwrap().unwrap().message_id,
            Some(reply.id),
            "images are linked only to a saved reply"
        );
        assert_eq!(
            s.claim_idempotency("k3", "h").await.unwrap(),
            IdempotencyState::Claimed
        );
        let days = s.usage_by_day(conv.created_at.date_naive()).await.unwrap();
        assert_eq!(
            days.iter().map(|d| d.turns).sum::<i64>(),
            3,
            "one usage row per finished turn"
        );
        let ends: Vec<i64> = s
            .run_chunks_after("r1", 0)
            .await
            .unwrap()
            .iter()
            .map(|c| c.first_id)
            .collect();
        assert_eq!(ends, vec![9], "one end per run");
    }

    /// A turn on a new conversation opens it leased, with its limits, the run's first event and the user message
    /// — on PostgreSQL one statement, alone or in a transaction — or, refused by either limit, writes nothing
    /// and charges nothing.
    async fn a_new_conversation_opens_with_its_limits_first_event_and_message_or_not_at_all(db: &Db) {
        let t = tid("t");
        db.provision_tenant(&t).await.unwrap();
        let s = db.scoped(&t);
        let minutes = Duration::minutes(15);
        let first = |run: &str, conversation_id: Uuid| EventChunk {
            run_id: run.to_owned(),
            tenant: t.clone(),
            conversation_id,
            first_id: 1,
            last_id: 1,
            events: format!(r#"[{{"id":1,"run":"{run}"}}]"#),
            terminal: false,
            prev_id: 0,
        };
        let (ids, firsts): (Vec<Uuid>, Vec<EventChunk>) = (0..5)
            .map(|k| {
                let id = Uuid::now_v7();
                (id, first(&format!("r{k}"), id))
            })
            .unzip();
        let runs: Vec<String> = (0..5).map(|k| format!("r{k}")).collect();
        let messages: Vec<NewMessage> = (0..5)
            .map(|k| NewMessage::new(Role::User, format!("hi {k}"), vec![], None))
            .collect();
        // An hour ahead, so that the cell's clock (the later of this and the database's) is this one.
        let t0 = chrono::Utc::now().timestamp_micros() + 3_600_000_000;
        // Two turns a minute (a burst of two), one at a time.
        let turn = |k: usize, lease: Duration, now_us: i64, message: bool| OpenTurn {
            conv: NewConversation {
                id: ids[k],
                user: "new-user",
                agent: "assistant",
                title: "hi",
            },
            run: &runs[k],
            lease,
            concurrent: 1,
            rate_per_minute: 2,
            now_us,
            first: &firsts[k],
            message: message.then_some(&messages[k]),
        };
        let (s, ids, runs) = (&s, &ids, &runs);
        let nothing_of = |k: usize| async move {
            assert!(
                s.conversation(ids[k]).await.unwrap().is_none(),
                "no conversation {k}"
            );
            assert!(all_messages(s, ids[k]).await.is_empty(), "no message {k}");
            assert!(
                s.run_chunks_after(&runs[k], 0).await.unwrap().is_empty(),
                "no event {k}"
            );
        };

        assert_eq!(
            s.open_turn(&turn(0, minutes, t0, true)).await.unwrap(),
            Opening::Opened
        );
        let c = s.conversation(ids[0]).await.unwrap().unwrap();
        assert_eq!(
            (c.user_id.as_str(), c.title.as_str(), c.active_run_id.as_deref()),
            ("new-user", "hi", Some("r0"))
        );
        let ms = all_messages(s, ids[0]).await;
        assert_eq!(ms.iter().map(|m| m.id).collect::<Vec<_>>(), vec![messages[0].id]);
        let logged = s.run_chunks_after("r0", 0).await.unwrap();
        assert_eq!(logged.len(), 1);
        assert_eq!(logged[0].events, firsts[0].events);

        // r0 runs and the limit is one: refused, nothing written — and nothing charged, or r2 would be refused.
        assert_eq!(
            s.open_turn(&turn(1, minutes, t0, true)).await.unwrap(),
            Opening::TooMany
        );
        nothing_of(1).await;
        // With a lease so short that r0's has expired, the second turn of the burst is admitted, in a
        // transaction, without its message (a turn with attachments writes that later).
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let short = Duration::milliseconds(5);
        let mut tx = s.begin().await.unwrap();
        assert_eq!(
            tx.open_turn(&turn(2, short, t0, false)).await.unwrap(),
            Opening::Opened
        );
        tx.commit().await.unwrap();
        assert!(all_messages(s, ids[2]).await.is_empty());
        assert_eq!(s.run_chunks_after("r2", 0).await.unwrap().len(), 1);

        // The burst is spent: refused for the next 30 s, with nothing written.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let refused = s.open_turn(&turn(3, short, t0, true)).await.unwrap();
        assert_eq!(
            refused,
            Opening::Refused(RateDecision::Refused {
                retry_after: 30,
                until_us: t0 + 30_000_000
            })
        );
        nothing_of(3).await;
        // Half a minute later there is room for one more.
        let later = t0 + 30_000_000;
        assert_eq!(
            s.open_turn(&turn(3, short, later, true)).await.unwrap(),
            Opening::Opened
        );
        assert_eq!(all_messages(s, ids[3]).await.len(), 1);
        // Both limits at once (r3 is live under a long lease, and the burst is spent): the rate answers, on both
        // databases, and nothing is written.
        assert!(matches!(
            s.open_turn(&turn(4, minutes, later, true)).await.unwrap(),
            Opening::Refused(RateDecision::Refused { .. })
        ));
        nothing_of(4).await;
    }

    /// Openings racing for a tenant's last slot: exactly one wins. Each counts the live runs after taking the rate
    /// cell, so it sees the winner's lease — the reason the PostgreSQL opening is a function, not one statement.
    async fn racing_openings_admit_exactly_the_concurrent_limit(db: &Db) {
        let t = tid("t");
        db.provision_tenant(&t).await.unwrap();
        let s = db.scoped(&t);
        let n = 8;
        let ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
        let runs: Vec<String> = (0..n).map(|k| format!("race{k}")).collect();
        let firsts: Vec<EventChunk> = (0..n)
            .map(|k| EventChunk {
                run_id: runs[k].clone(),
                tenant: t.clone(),
                conversation_id: ids[k],
                first_id: 1,
                last_id: 1,
                events: "[]".to_owned(),
                terminal: false,
                prev_id: 0,
            })
            .collect();
        let turns: Vec<OpenTurn<'_>> = (0..n)
            .map(|k| OpenTurn {
                conv: NewConversation {
                    id: ids[k],
                    user: "u",
                    agent: "assistant",
                    title: "race",
                },
                run: &runs[k],
                lease: Duration::minutes(15),
                concurrent: 1,
                rate_per_minute: 1000,
                now_us: chrono::Utc::now().timestamp_micros(),
                first: &firsts[k],
                message: None,
            })
            .collect();
        let outcomes = futures_util::future::join_all(turns.iter().map(|o| s.open_turn(o))).await;
        let opened = outcomes
            .iter()
            .filter(|o| matches!(o, Ok(Opening::Opened)))
            .count();
        assert_eq!(opened, 1, "{outcomes:?}");
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, Ok(Opening::Opened | Opening::TooMany))),
            "{outcomes:?}"
        );
    }
}

/// PostgreSQL tells every replica about each chunk written: which event it follows and, when small, its events.
#[tokio::test]
async fn written_chunks_are_announced_with_their_events_when_small() {
    let t = agentd_testkit::fresh_postgres().await;
    let db = &t.db;
    let tenant = tid("t");
    db.provision_tenant(&tenant).await.unwrap();
    let mut listener = db.listen_run_events().await.unwrap().expect("PostgreSQL listens");
    let chunk =
        |run: &str, prev: i64, first: i64, last: i64, events: String| agentd_db::journal::EventChunk {
            run_id: run.to_owned(),
            tenant: tenant.clone(),
            conversation_id: Uuid::now_v7(),
            first_id: first,
            last_id: last,
            events,
            terminal: false,
            prev_id: prev,
        };
    let small = format!("[{{\"id\":3,\"text\":\"{}\"}}]", "é".repeat(100));
    let big = format!("[{{\"id\":9,\"text\":\"{}\"}}]", "x".repeat(7000));
    let first = chunk("a", 1, 3, 5, small.clone());
    let written = db
        .append_chunks(&[first.clone(), chunk("b", 4, 9, 9, big)])
        .await
        .unwrap();
    assert_eq!(written, vec![("a".to_owned(), 3), ("b".to_owned(), 9)]);
    // Written again (a retried batch): nothing new, nothing announced, nothing reported written.
    assert!(db.append_chunks(&[first]).await.unwrap().is_empty());
    // In a turn's transaction: written silently, announced apart after the commit.
    let tail = chunk("a", 5, 7, 7, "[]".to_owned());
    let mut tx = db.scoped(&tenant).begin().await.unwrap();
    assert!(tx.append_chunk(&tail).await.unwrap());
    assert!(!tx.append_chunk(&tail).await.unwrap(), "already there");
    tx.commit().await.unwrap();
    db.announce(std::slice::from_ref(&tail)).await.unwrap();
    // A run has one terminal chunk: a second (the run was ended as dead meanwhile) is not written.
    let mut end = chunk("c", 1, 2, 2, "[]".to_owned());
    end.terminal = true;
    let mut other_end = chunk("c", 1, 3, 3, "[]".to_owned());
    other_end.terminal = true;
    assert_eq!(db.append_chunks(&[end]).await.unwrap().len(), 1);
    assert!(db.append_chunks(&[other_end]).await.unwrap().is_empty());

    let mut notes = Vec::new();
    for _ in 0..4 {
        let heard = tokio::time::timeout(std::time::Duration::from_secs(5), listener.recv())
            .await
            .expect("a notification within 5 s")
            .unwrap();
        let agentd_db::journal::Heard::Note(n) = heard else {
            panic!("{heard:?}")
        };
        notes.push((n.run_id, n.prev_id, n.last_id, n.events));
    }
    notes.sort();
    assert_eq!(
        notes,
        vec![
            ("a".to_owned(), 1, 5, Some(small)),
            ("a".to_owned(), 5, 7, Some("[]".to_owned())),
            ("b".to_owned(), 4, 9, None),
            ("c".to_owned(), 1, 2, Some("[]".to_owned())),
        ],
        "a chunk over 7000 bytes is announced without its events"
    );
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(300), listener.recv())
            .await
            .is_err(),
        "the duplicate writes announced nothing"
    );
}

/// A listener whose connection is cut says so once it has reconnected (notifications sent meanwhile are gone, so
/// the readers must read the rows), then hears the next write: sqlx's `recv` would have reconnected silently.
#[tokio::test]
async fn a_listener_whose_connection_was_cut_says_it_reconnected() {
    let t = agentd_testkit::fresh_postgres().await;
    let db = &t.db;
    let tenant = tid("t");
    db.provision_tenant(&tenant).await.unwrap();
    let mut listener = db.listen_run_events().await.unwrap().expect("PostgreSQL listens");
    let Db::Postgres(pool) = db else {
        panic!("postgres")
    };
    let cut: i64 = sqlx::query_scalar(
        "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(cut, 1, "the listener's connection");
    let ten = std::time::Duration::from_secs(10);
    let heard = tokio::time::timeout(ten, listener.recv())
        .await
        .expect("word within 10 s")
        .unwrap();
    assert!(
        matches!(heard, agentd_db::journal::Heard::Reconnected),
        "{heard:?}"
    );
    let chunk = agentd_db::journal::EventChunk {
        run_id: "r".to_owned(),
        tenant: tenant.clone(),
        conversation_id: Uuid::now_v7(),
        first_id: 1,
        last_id: 1,
        events: "[]".to_owned(),
        terminal: false,
        prev_id: 0,
    };
    db.append_chunks(&[chunk]).await.unwrap();
    let heard = tokio::time::timeout(ten, listener.recv())
        .await
        .expect("a note within 10 s")
        .unwrap();
    assert!(
        matches!(&heard, agentd_db::journal::Heard::Note(n) if n.run_id == "r"),
        "{heard:?}"
    );
}
