//! Who is waiting for which run: readers of a run's events park here and are woken when a chunk of it is
//! written — by this process's writers directly, and on PostgreSQL by every replica's writes through
//! `LISTEN agentd_run_events`. A note says which logged event the chunk follows and, when the chunk was small
//! enough for a notification, carries its events: a reader that holds everything up to there takes them from
//! here without a query. A reader that finds a gap, or a note without events, reads the rows; a missed
//! notification costs it at most its poll interval — half a second while this replica is not listening, a few
//! seconds while it is (a writer whose notification failed logs it; a dead run's end is announced only by
//! the reader that wrote it, to its own replica) — and every reader reads the rows again when the listener
//! comes back, or reconnected after a lost connection ([`RunBus::generation`]).

use agentd_db::Db;
use agentd_db::journal::{ChunkNote, Heard};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Notes kept per followed run; a reader further behind reads the rows.
const RECENT: usize = 64;
/// How long a reader waits for a note before it looks again: while notes may be missed, and while they are heard.
const POLL_DEAF: Duration = Duration::from_millis(500);
const POLL_LISTENING: Duration = Duration::from_secs(5);

/// The registry of runs being followed. Cheap to clone.
#[derive(Clone)]
pub struct RunBus(Arc<Mutex<HashMap<String, Slot>>>, Arc<Hearing>);

/// Whether every write is heard: always in one process (SQLite), on PostgreSQL while the listener is connected.
struct Hearing {
    listening: AtomicBool,
    /// Bumped whenever the listener (re)connects: what was written before may not have been heard.
    generation: AtomicU64,
}

impl Default for RunBus {
    fn default() -> Self {
        let hearing = Hearing {
            listening: AtomicBool::new(true),
            generation: AtomicU64::new(0),
        };
        Self(Arc::default(), Arc::new(hearing))
    }
}

/// A followed run: the highest last id heard of, and the latest notes, oldest first.
struct Slot {
    tip: watch::Sender<i64>,
    recent: VecDeque<Arc<ChunkNote>>,
}

/// A reader's interest in one run; wakes on every new chunk.
pub struct Subscription {
    bus: RunBus,
    run: String,
    /// `None` only while being dropped.
    rx: Option<watch::Receiver<i64>>,
}

impl RunBus {
    /// Starts listening for other replicas' writes (PostgreSQL only; SQLite has one process).
    pub(crate) fn listen(&self, db: &Db) {
        if !matches!(db, Db::Postgres(_)) {
            return;
        }
        let (bus, db) = (self.clone(), db.clone());
        bus.hearing(false);
        tokio::spawn(async move {
            loop {
                match db.listen_run_events().await {
                    Ok(Some(mut listener)) => {
                        bus.hearing(true);
                        loop {
                            match listener.recv().await {
                                Ok(Heard::Note(note)) => bus.published(note),
                                Ok(Heard::Reconnected) => {
                                    tracing::warn!(
                                        "run event notifications reconnected; readers read the rows once"
                                    );
                                    bus.hearing(true);
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "run event notifications interrupted; readers poll meanwhile");
                                    bus.hearing(false);
                                    break;
                                }
                            }
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for run events; readers poll meanwhile");
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    /// The listener came (back) or went: readers' poll interval changes, and on its return every reader reads
    /// the rows once (notes of what was written meanwhile were lost). All readers are woken to see it.
    fn hearing(&self, listening: bool) {
        let h = &self.1;
        if listening {
            h.generation.fetch_add(1, Ordering::SeqCst);
        }
        h.listening.store(listening, Ordering::SeqCst);
        let map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for slot in map.values() {
            slot.tip.send_modify(|_| {});
        }
    }

    /// Every write is heard now (one process, or PostgreSQL's listener connected).
    pub(crate) fn listening(&self) -> bool {
        self.1.listening.load(Ordering::SeqCst)
    }

    /// How long a reader waits for a note before it looks again (the rows while deaf, the run's state else).
    pub(crate) fn poll_interval(&self) -> Duration {
        if self.listening() {
            POLL_LISTENING
        } else {
            POLL_DEAF
        }
    }

    /// Changes when notes may have been missed: a reader that saw another value reads the rows.
    pub(crate) fn generation(&self) -> u64 {
        self.1.generation.load(Ordering::SeqCst)
    }

    /// Follows `run`.
    pub fn subscribe(&self, run: &str) -> Subscription {
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = map.entry(run.to_owned()).or_insert_with(|| Slot {
            tip: watch::channel(0).0,
            recent: VecDeque::new(),
        });
        Subscription {
            bus: self.clone(),
            run: run.to_owned(),
            rx: Some(slot.tip.subscribe()),
        }
    }

    /// A chunk of a run was written (heard once from this process and once through PostgreSQL: the second is
    /// dropped unless it brings the events the first lacked, as is any note older than the last one heard).
    pub fn published(&self, note: ChunkNote) {
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(slot) = map.get_mut(&note.run_id) else {
            return;
        };
        let last = note.last_id;
        let tip = *slot.tip.borrow();
        if last == tip && note.events.is_some() {
            // The same chunk heard again, this time with its events (PostgreSQL's note of a large chunk carries
            // none and may come first): keep this one, and wake the readers to take it.
            if let Some(kept) = slot
                .recent
                .iter_mut()
                .rev()
                .find(|n| n.last_id == last && n.events.is_none())
            {
                *kept = Arc::new(note);
                slot.tip.send_replace(last);
            }
            return;
        }
        if last <= tip {
            return;
        }
        if slot.recent.len() == RECENT {
            slot.recent.pop_front();
        }
        slot.recent.push_back(Arc::new(note));
        slot.tip.send_replace(last);
    }
}

impl Subscription {
    /// Waits until something new was published for the run (`true`), or `timeout` passed (`false`).
    pub async fn changed(&mut self, timeout: Duration) -> bool {
        let Some(rx) = self.rx.as_mut() else {
            return false;
        };
        matches!(tokio::time::timeout(timeout, rx.changed()).await, Ok(Ok(())))
    }

    /// The kept notes of chunks ending after id `after`, oldest first.
    pub fn notes_after(&self, after: i64) -> Vec<Arc<ChunkNote>> {
        let map = self
            .bus
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(&self.run).map_or_else(Vec::new, |slot| {
            slot.recent
                .iter()
                .filter(|n| n.last_id > after)
                .cloned()
                .collect()
        })
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut map = self
            .bus
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Our receiver goes under the lock, so that of two readers leaving at once the second sees the first gone.
        self.rx = None;
        if map
            .get(&self.run)
            .is_some_and(|slot| slot.tip.receiver_count() == 0)
        {
            map.remove(&self.run);
        }
    }
}
