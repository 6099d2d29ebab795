//! The run event log writer. A turn hands every event but previews to [`Journal::record`] and goes on; one
//! writer task per process drains the queue and writes whatever accumulated in one statement (one row per
//! run per batch), then wakes the run's readers. The relay waits only when the queue is full.
//! [`Journal::flush`] returns once everything recorded before it is written — the turn calls it before its
//! final transaction writes the terminal event, so a resumed stream never sees the end before the middle.

mod notes;

use crate::bus::RunBus;
use crate::event::Sequenced;
use agentd_db::journal::{ChunkNote, EventChunk};
use agentd_db::{Db, TenantId};
use notes::Notes;
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Which run an event belongs to.
#[derive(Debug, Clone)]
pub(crate) struct RunRef {
    pub run_id: Arc<str>,
    pub tenant: TenantId,
    pub conversation_id: Uuid,
}

enum Entry {
    Event {
        run: RunRef,
        /// The run's logged event before this one.
        prev: i64,
        id: i64,
        json: String,
    },
    Flush(oneshot::Sender<()>),
    /// A chunk written in a turn's own transaction, for the other replicas' readers.
    Announce(EventChunk),
}

/// Events queued at most before `record` waits for the writer.
const QUEUE: usize = 8192;
/// Events written at most per statement.
const BATCH: usize = 2048;
/// Bytes of events a chunk holds at most (one larger event is a chunk by itself): readers read the log a page of
/// chunks at a time (`agentd_db::journal::CHUNKS_PER_READ`), so this bounds what a page holds.
const CHUNK_BYTES: usize = 64 * 1024;

/// The process's run event log writer. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Journal {
    tx: mpsc::Sender<Entry>,
}

impl Journal {
    pub(crate) fn start(db: Db, bus: RunBus) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_loop(db, bus, rx));
        Self { tx }
    }

    /// Queues one event of `run` for the log; `prev` is the id of the run's event logged before it.
    pub(crate) async fn record(&self, run: &RunRef, prev: u64, ev: &Sequenced) {
        let json = match serde_json::to_string(ev) {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(error = %e, run_id = %run.run_id, id = ev.id, "cannot serialize a run event");
                return;
            }
        };
        let entry = Entry::Event {
            run: run.clone(),
            prev: prev as i64,
            id: ev.id as i64,
            json,
        };
        let _ = self.tx.send(entry).await;
    }

    /// Tells the other replicas' readers about a chunk written in a turn's transaction (its terminal event).
    pub(crate) async fn announce(&self, chunk: EventChunk) {
        let _ = self.tx.send(Entry::Announce(chunk)).await;
    }

    /// Returns once every event recorded before this call is written (or given up on).
    pub(crate) async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Entry::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }
}

/// Serialized events as one chunk row; `prev_id` is the run's logged event before them.
pub(crate) fn chunk(
    run: &RunRef,
    prev_id: i64,
    first_id: i64,
    last_id: i64,
    events: &[&str],
    terminal: bool,
) -> EventChunk {
    let mut json = String::with_capacity(events.iter().map(|e| e.len() + 1).sum::<usize>() + 2);
    json.push('[');
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        json.push_str(e);
    }
    json.push(']');
    EventChunk {
        run_id: run.run_id.to_string(),
        tenant: run.tenant.clone(),
        conversation_id: run.conversation_id,
        first_id,
        last_id,
        events: json,
        terminal,
        prev_id,
    }
}

/// A run's events in the batch being gathered.
struct Open {
    run: RunRef,
    prev: i64,
    first: i64,
    last: i64,
    /// The events' bytes.
    bytes: usize,
    events: Vec<String>,
}

/// A batch of entries, sorted out: the flushes to acknowledge once it is written, the chunks to announce, and
/// the events as chunks — one per run, or consecutive ones of at most [`CHUNK_BYTES`].
struct Sorted {
    acks: Vec<oneshot::Sender<()>>,
    announce: Vec<EventChunk>,
    chunks: Vec<EventChunk>,
}

fn sort_out(batch: impl Iterator<Item = Entry>) -> Sorted {
    let (mut acks, mut announce) = (Vec::new(), Vec::new());
    let mut open: Vec<Open> = Vec::new();
    for entry in batch {
        match entry {
            Entry::Flush(ack) => acks.push(ack),
            Entry::Announce(c) => announce.push(c),
            // A run's ids only grow (previews leave gaps, which chunks may span).
            Entry::Event { run, prev, id, json } => {
                let at = open.iter().rposition(|o| o.run.run_id == run.run_id);
                match at.map(|i| &mut open[i]) {
                    Some(o) if o.bytes + json.len() <= CHUNK_BYTES => {
                        o.last = id;
                        o.bytes += json.len();
                        o.events.push(json);
                    }
                    // Full: the next chunk follows on from it.
                    full => {
                        let prev = full.map_or(prev, |o| o.last);
                        open.push(Open {
                            run,
                            prev,
                            first: id,
                            last: id,
                            bytes: json.len(),
                            events: vec![json],
                        });
                    }
                }
            }
        }
    }
    let chunks = open
        .iter()
        .map(|o| {
            let refs: Vec<&str> = o.events.iter().map(String::as_str).collect();
            chunk(&o.run, o.prev, o.first, o.last, &refs, false)
        })
        .collect();
    Sorted {
        acks,
        announce,
        chunks,
    }
}

async fn write_loop(db: Db, bus: RunBus, mut rx: mpsc::Receiver<Entry>) {
    let mut batch = Vec::with_capacity(64);
    let mut notes = Notes::default();
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let Sorted {
            acks,
            announce,
            chunks,
        } = sort_out(batch.drain(..));
        // Already committed: announced first, not after this batch's write (and, while notifications are
        // refused, the probe of whether they go through again).
        if !announce.is_empty() {
            notes.sent(db.announce(&announce).await, announce.len());
        }
        if !chunks.is_empty() {
            for c in write_chunks(&db, &mut notes, chunks).await {
                bus.published(ChunkNote::from(c));
            }
        }
        for ack in acks {
            let _ = ack.send(());
        }
    }
}

/// Writes a batch's chunks — with their notifications in the same statement, or, while PostgreSQL refuses
/// those, without them and announced apart — and returns the ones written: not a chunk already there, nor a
/// second end of a run ended as dead meanwhile (its log keeps the end it has). Logs the ones lost.
async fn write_chunks(db: &Db, notes: &mut Notes, chunks: Vec<EventChunk>) -> Vec<EventChunk> {
    let mut announced = None;
    if !notes.refused {
        match db.append_chunks(&chunks).await {
            Ok(w) => announced = Some(w),
            Err(e) if e.is_notify_queue_full() => notes.refuse(&e),
            Err(e) => tracing::warn!(error = %e, "could not write run events; trying again"),
        }
    }
    let quiet = match announced {
        Some(_) => None,
        None => crate::retry::retrying("write run events", || db.append_chunks_unannounced(&chunks)).await,
    };
    let Some(written) = announced.as_ref().or(quiet.as_ref()) else {
        for c in &chunks {
            tracing::error!(run_id = %c.run_id, first_id = c.first_id, last_id = c.last_id,
                "run events lost: a resumed stream will miss them");
        }
        return Vec::new();
    };
    let written: HashSet<(&str, i64)> = written.iter().map(|(r, f)| (r.as_str(), *f)).collect();
    let kept: Vec<EventChunk> = chunks
        .into_iter()
        .filter(|c| written.contains(&(c.run_id.as_str(), c.first_id)))
        .collect();
    if quiet.is_some() && !kept.is_empty() {
        notes.sent(db.announce(&kept).await, kept.len());
    }
    kept
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;
    use crate::event::{MessageDelta, TurnEvent};

    fn delta(id: u64) -> Sequenced {
        Sequenced {
            id,
            event: TurnEvent::Delta(MessageDelta { delta: "x".into() }),
        }
    }

    /// A run's events in one batch are one chunk up to CHUNK_BYTES, then consecutive chunks, each following on
    /// from the one before; one event larger than that is a chunk by itself. Another run's are its own.
    #[test]
    fn a_batch_becomes_a_chunk_per_run_of_at_most_chunk_bytes() {
        let run = |id: &str| RunRef {
            run_id: id.into(),
            tenant: TenantId::parse("t").unwrap(),
            conversation_id: Uuid::nil(),
        };
        let event = |r: &str, prev: i64, id: i64, bytes: usize| Entry::Event {
            run: run(r),
            prev,
            id,
            json: "x".repeat(bytes),
        };
        let quarter = CHUNK_BYTES / 4;
        let mut batch = vec![event("b", 0, 1, 10)];
        batch.extend((1..=9).map(|id| event("a", id - 1, id, quarter)));
        batch.push(event("a", 9, 11, 2 * CHUNK_BYTES)); // 10 was a preview
        batch.push(event("a", 11, 12, 10));
        batch.push(event("b", 1, 2, 10));
        let sorted = sort_out(batch.into_iter());
        let spans: Vec<(&str, i64, i64, i64)> = sorted
            .chunks
            .iter()
            .map(|c| (c.run_id.as_str(), c.prev_id, c.first_id, c.last_id))
            .collect();
        assert_eq!(
            spans,
            vec![
                ("b", 0, 1, 2),
                ("a", 0, 1, 4),
                ("a", 4, 5, 8),
                ("a", 8, 9, 9),
                ("a", 9, 11, 11),
                ("a", 11, 12, 12),
            ]
        );
        assert!(
            sorted
                .chunks
                .iter()
                .all(|c| c.events.len() <= CHUNK_BYTES + 16 || c.first_id == c.last_id)
        );
    }

    #[tokio::test]
    async fn only_chunks_that_were_written_are_published() {
        let (db, tenant) = crate::test_db().await;
        let bus = RunBus::default();
        let journal = Journal::start(db.clone(), bus.clone());
        let run = RunRef {
            run_id: "r".into(),
            tenant,
            conversation_id: Uuid::now_v7(),
        };
        let sub = bus.subscribe("r");
        // A reader found the run's holder dead and ended it at id 2…
        db.append_chunks(&[chunk(&run, 1, 2, 2, &["{}"], true)])
            .await
            .unwrap();
        // …before the holder's event 2 reached the log: not written, so its readers are not told of it.
        journal.record(&run, 1, &delta(2)).await;
        journal.flush().await;
        assert!(sub.notes_after(0).is_empty(), "{:?}", sub.notes_after(0));
        // A chunk that is written is published, with its events.
        journal.record(&run, 2, &delta(3)).await;
        journal.flush().await;
        let notes = sub.notes_after(0);
        assert_eq!(notes.len(), 1);
        assert_eq!((notes[0].prev_id, notes[0].last_id), (2, 3));
        assert!(
            notes[0]
                .events
                .as_deref()
                .is_some_and(|e| e.contains(r#""id":3"#))
        );
    }
}
