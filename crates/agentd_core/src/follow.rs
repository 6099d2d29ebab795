//! Reading a run's events: live from the turn task when this process runs it and the client keeps up, else
//! from the run event log — replayed after a given id, a page of chunks at a time (a reader never holds a whole
//! long run), then followed until the terminal event: from the notes of new chunks on the [`crate::bus`] while
//! they follow on from what the reader has, else from the rows. A run whose holder died (its lease expired
//! without a terminal event) is ended here with a terminal `error`, by whichever reader notices first, so no
//! stream hangs.

use crate::bus::Subscription;
use crate::context::Context;
use crate::event::{Sequenced, TurnEvent};
use crate::failure::{Code, Failure};
use crate::journal::{RunRef, chunk};
use crate::per_tenant::Held;
use agentd_db::TenantId;
use agentd_db::journal::{CHUNKS_PER_READ, ChunkNote, StoredChunk};
use futures_util::Stream;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How often at most a follower checks that a silent run's holder is still alive: every 2 s while its replica
/// polls the rows (listener down), after each 5 s wait for notes while it listens (so a dead holder is found
/// within 5 s of its lease's expiry, for 0.2 queries a second per idle reader).
const LIVENESS: Duration = Duration::from_secs(2);
/// How far past the log's last id the end of a run whose holder died is written. The holder's counter may have
/// run ahead of its log by any number of events its clients received — previews, which are never logged, and
/// what its journal had not written yet when it died — and a client resuming after one of those must still find
/// the end after its `Last-Event-ID`: no run gets 2^32 events ahead of its log.
const DEAD_END_GAP: i64 = 1 << 32;

/// Where the next events come from.
enum Source {
    Live(mpsc::Receiver<Sequenced>),
    Log,
    Done,
}

struct Follower {
    inner: Arc<Context>,
    tenant: TenantId,
    run_id: String,
    last: u64,
    /// The last id of the chunks read from the log so far (0: none): the log is read after it, so that a chunk
    /// that could not be read, or held nothing new, is not read again.
    read_to: u64,
    source: Source,
    queue: VecDeque<Sequenced>,
    /// Set while reading the log (a live reader never subscribes).
    sub: Option<Subscription>,
    /// The rows must be read: when a live reader turns to the log (a resuming one read them as it started),
    /// after a full page of them (the log is read a page at a time), a gap in the notes, a poll timeout or an
    /// error.
    rows_due: bool,
    /// When the run was last known alive (an event, or a look at its lease).
    checked: Instant,
    /// The bus's generation when the rows were last due: another means notes may have been missed.
    generation: u64,
    /// A resumed reader's place in its tenant's `RUN_READERS_PER_TENANT` (a turn's own stream has none).
    _reader: Option<Held>,
}

/// `run_not_found` for an id no run can have, before any query: runs are `run_` and 32 hex digits, and what is
/// checked is looser — `run_` and up to 64 letters, digits, `_` or `-` — but keeps out what the databases refuse
/// (a NUL in PostgreSQL's text was a 500) and ids of any length.
pub(crate) fn check_run_id(run_id: &str) -> Result<(), Failure> {
    let plausible = run_id.strip_prefix("run_").is_some_and(|h| {
        (1..=64).contains(&h.len())
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    });
    if plausible {
        return Ok(());
    }
    Err(Failure::new(
        Code::RunNotFound,
        format!("No run {run_id:?}; the id comes from the run.started event of a stream."),
    ))
}

/// The events of a run after id `after` (0: all): replay, then live until the terminal event; `None` when the
/// run has ended at or before `after`. `run_not_found` when this tenant has no such run.
pub(crate) async fn follow(
    ctx: &Arc<Context>,
    tenant: &TenantId,
    run_id: &str,
    after: u64,
) -> Result<Option<impl Stream<Item = Sequenced> + Send + use<>>, Failure> {
    check_run_id(run_id)?;
    let max = ctx.settings.run_readers_per_tenant;
    let Some(reader) = ctx.readers.take(tenant, max) else {
        return Err(Failure::new(
            Code::RateLimited,
            format!(
                "This tenant already has {max} run streams open on this server (RUN_READERS_PER_TENANT); close one first."
            ),
        )
        .retry_after(2));
    };
    // Ids are i64 in the log.
    let after = after.min(i64::MAX as u64);
    // Subscribed before the read, so that a chunk written after it is heard of; the generation too, so that
    // notes lost to a reconnect during the read are made up for.
    let generation = ctx.bus.generation();
    let sub = ctx.bus.subscribe(run_id);
    let found = ctx
        .db
        .scoped(tenant)
        .run_resume(run_id, after as i64, ctx.settings.lease())
        .await?;
    let Some((state, chunks)) = found else {
        return Err(Failure::new(
            Code::RunNotFound,
            format!("No run {run_id:?}; the id comes from the run.started event of a stream."),
        ));
    };
    // A reader already past a finished run's end gets nothing and the stream ends.
    if state.finished && state.last_id <= after as i64 {
        return Ok(None);
    }
    let mut f = Follower {
        inner: ctx.clone(),
        tenant: tenant.clone(),
        run_id: run_id.to_owned(),
        last: after,
        read_to: 0,
        source: Source::Log,
        queue: VecDeque::new(),
        sub: Some(sub),
        rows_due: false,
        checked: Instant::now(),
        generation,
        _reader: Some(reader),
    };
    f.queue_page(chunks);
    Ok(Some(stream(f)))
}

/// The events of a turn this process just started: from its task while the client keeps up, then from the log.
pub(crate) fn live(
    ctx: &Arc<Context>,
    tenant: &TenantId,
    run_id: &str,
    rx: mpsc::Receiver<Sequenced>,
) -> impl Stream<Item = Sequenced> + Send + use<> {
    stream(Follower {
        inner: ctx.clone(),
        tenant: tenant.clone(),
        run_id: run_id.to_owned(),
        last: 0,
        read_to: 0,
        source: Source::Live(rx),
        queue: VecDeque::new(),
        sub: None,
        rows_due: true,
        checked: Instant::now(),
        generation: ctx.bus.generation(),
        _reader: None,
    })
}

fn stream(f: Follower) -> impl Stream<Item = Sequenced> + Send {
    futures_util::stream::unfold(f, |mut f| async move {
        let ev = f.next().await?;
        Some((ev, f))
    })
}

impl Follower {
    async fn next(&mut self) -> Option<Sequenced> {
        loop {
            if let Some(ev) = self.queue.pop_front() {
                return Some(self.pass(ev));
            }
            match &mut self.source {
                Source::Done => return None,
                Source::Live(rx) => match rx.recv().await {
                    Some(ev) => return Some(self.pass(ev)),
                    // The turn ended, or cut this client loose: the log has the rest.
                    None => self.source = Source::Log,
                },
                Source::Log => self.read_log().await,
            }
        }
    }

    /// Where the log is read after: past the events handed out and the chunks already read.
    fn read_after(&self) -> u64 {
        self.last.max(self.read_to)
    }

    /// Hands out an event; the terminal one ends the stream.
    fn pass(&mut self, ev: Sequenced) -> Sequenced {
        self.last = self.last.max(ev.id);
        self.checked = Instant::now();
        if ev.event.is_terminal() {
            self.source = Source::Done;
            self.queue.clear();
        }
        ev
    }

    /// Fills the queue from the log, waiting for new events (or ending a dead run) when there are none.
    async fn read_log(&mut self) {
        let mut sub = match self.sub.take() {
            Some(s) => s,
            None => self.inner.bus.subscribe(&self.run_id),
        };
        loop {
            if self.rows_due {
                self.rows_due = false;
                match self.fetch().await {
                    Ok(true) => break,
                    // A full page of chunks that could not be read: the next page.
                    Ok(false) if self.rows_due => continue,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(run_id = %self.run_id, error = %e, "cannot read the run log; retrying");
                        self.rows_due = true;
                    }
                }
            }
            if self.checked.elapsed() >= LIVENESS {
                self.checked = Instant::now();
                // The run's state also says whether the log holds events this reader has not heard of.
                self.rows_due = self.end_if_dead().await.unwrap_or_else(|e| {
                    tracing::warn!(run_id = %self.run_id, error = %e, "cannot check the run's holder");
                    true
                });
                if !self.queue.is_empty() || matches!(self.source, Source::Done) {
                    break;
                }
                continue;
            }
            let bus = &self.inner.bus;
            let woken = sub.changed(bus.poll_interval()).await;
            let generation = bus.generation();
            let missed = std::mem::replace(&mut self.generation, generation) != generation;
            // While every write is heard, a silent wait reads no rows: the liveness check that follows does.
            let deaf = !woken && !bus.listening();
            match self.take_notes(&sub) {
                Ok(gap) => self.rows_due |= gap || missed || deaf,
                Err(e) => {
                    tracing::warn!(run_id = %self.run_id, error = %e, "unreadable run event note; reading the log");
                    self.rows_due = true;
                }
            }
            if !self.queue.is_empty() {
                break;
            }
        }
        self.sub = Some(sub);
    }

    /// Queues the events of notes that follow on from what this reader has, in order; `true` when a note did
    /// not (a gap, or a chunk too large for a notification): the rows must be read.
    fn take_notes(&mut self, sub: &Subscription) -> Result<bool, Failure> {
        // Past a skipped chunk too: its note (if kept) is as unreadable as its row.
        let mut have = self.read_after() as i64;
        for note in sub.notes_after(have) {
            let Some(events) = note.events.as_deref().filter(|_| note.prev_id <= have) else {
                return Ok(true);
            };
            let events: Vec<Sequenced> = serde_json::from_str(events).map_err(Failure::internal)?;
            self.queue
                .extend(events.into_iter().filter(|e| e.id as i64 > have));
            have = note.last_id;
        }
        Ok(false)
    }

    /// Queues logged events after `last` (and after the chunks read so far), a page of them; `true` when there were
    /// any.
    async fn fetch(&mut self) -> Result<bool, Failure> {
        let chunks = self
            .inner
            .db
            .scoped(&self.tenant)
            .run_chunks_after(&self.run_id, self.read_after() as i64)
            .await?;
        Ok(self.queue_page(chunks))
    }

    /// Queues a page of chunks read from the log; a full page leaves the rows due for the next one. `true` when
    /// it held events.
    fn queue_page(&mut self, chunks: Vec<StoredChunk>) -> bool {
        self.rows_due |= chunks.len() >= CHUNKS_PER_READ;
        self.queue_chunks(chunks)
    }

    /// Queues the events after `last` of chunks read from the log, in order; `true` when there were any.
    ///
    /// A chunk that cannot be read (written by a newer agentd during a rolling deploy, or damaged) is skipped
    /// with an error logged and not fetched again: retrying would loop for as long as the reader stays, and a
    /// resume would fail as a whole. If it held the run's terminal event, a terminal `error` takes its place,
    /// so the stream still ends with one.
    fn queue_chunks(&mut self, chunks: Vec<StoredChunk>) -> bool {
        for c in chunks {
            let last_id = u64::try_from(c.last_id).unwrap_or_default();
            self.read_to = self.read_to.max(last_id);
            match serde_json::from_str::<Vec<Sequenced>>(&c.events) {
                Ok(events) => self.queue.extend(events.into_iter().filter(|e| e.id > self.last)),
                Err(e) => {
                    tracing::error!(run_id = %self.run_id, first_id = c.first_id, last_id = c.last_id,
                        error = %e, "a run log chunk cannot be read; its events are skipped");
                    if c.terminal && last_id > self.last {
                        let f = Failure::new(
                            Code::Internal,
                            "The end of this run cannot be read back; the conversation shows how the turn ended.",
                        );
                        self.queue.push_back(Sequenced {
                            id: last_id,
                            event: TurnEvent::failed(&f),
                        });
                    }
                }
            }
        }
        self.queue.make_contiguous().sort_by_key(|e| e.id);
        // Chunks never overlap; should two ever hold the same event, it goes out once.
        let mut seen = self.last;
        self.queue.retain(|e| std::mem::replace(&mut seen, e.id) < e.id);
        !self.queue.is_empty()
    }

    /// A run with no live holder and no terminal event will never end by itself: end it. `true` when the log
    /// holds events after this reader's (the rows are due).
    async fn end_if_dead(&mut self) -> Result<bool, Failure> {
        let lease = self.inner.settings.lease();
        let scoped = self.inner.db.scoped(&self.tenant);
        let Some(state) = scoped.run_state(&self.run_id, lease).await? else {
            // Gone: its turn was given back before the upstream accepted it (the request that sent it got the
            // error), or its conversation was deleted. Nothing more will be written.
            let f = Failure::new(
                Code::RunNotFound,
                "This run no longer exists: its turn did not start (the request that sent it got the error), \
                 or its conversation was deleted.",
            );
            self.queue.push_back(Sequenced {
                id: self.read_after() + 1,
                event: TurnEvent::failed(&f),
            });
            return Ok(false);
        };
        let behind = state.last_id > self.read_after() as i64;
        if state.finished && state.last_id <= self.read_after() as i64 {
            // A reader that asked for events after the end: there are none to wait for.
            self.source = Source::Done;
            return Ok(false);
        }
        if state.live || state.finished {
            return Ok(behind);
        }
        let f = Failure::new(
            Code::Unavailable,
            "The server running this turn stopped before it finished; send the message again.",
        )
        .retryable(true);
        // From the log's last id only: a reader's own position is whatever its client claimed.
        let id = state.last_id.saturating_add(DEAD_END_GAP);
        let ev = Sequenced {
            id: id as u64,
            event: TurnEvent::failed(&f),
        };
        let json = serde_json::to_string(&ev).map_err(Failure::internal)?;
        let run = RunRef {
            run_id: self.run_id.as_str().into(),
            tenant: self.tenant.clone(),
            conversation_id: state.conversation_id,
        };
        let end = chunk(&run, state.last_id, id, id, &[&json], true);
        if scoped.end_dead_run(&end, lease).await? {
            tracing::warn!(run_id = %self.run_id, "run ended: its holder's lease expired without a terminal event");
            self.inner.bus.published(ChunkNote::of(&end));
        }
        Ok(true)
    }
}
