//! Where a turn's events go: each gets the next stream id, every one but previews is recorded in the run event
//! log, and each is offered to the live client without ever blocking the turn. A client that stops reading
//! first loses previews; when its queue is full it is cut loose and its stream continues from the log (so a
//! slow reader still gets every event and the true terminal one, never a false `error`).

use crate::event::{Sequenced, TurnEvent};
use crate::journal::{Journal, RunRef};
use crate::metrics::TurnMeter;
use tokio::sync::mpsc;

/// Events a live client may have queued; beyond it the client reads from the log instead.
pub(crate) const LIVE_QUEUE: usize = 256;
/// Previews are offered only while the client's queue holds fewer events than this.
const PREVIEW_BACKLOG: usize = 4;

pub(crate) struct Sink {
    pub run: RunRef,
    next_id: u64,
    /// The last id recorded in the run log (`run.started`, written by admission, is 1).
    logged: u64,
    live: Option<mpsc::Sender<Sequenced>>,
    journal: Journal,
    /// The turn's metrics (its first event is timed here).
    pub meter: TurnMeter,
}

impl Sink {
    pub(crate) fn new(
        run: RunRef,
        live: mpsc::Sender<Sequenced>,
        journal: Journal,
        meter: TurnMeter,
    ) -> Self {
        Self {
            run,
            next_id: 1,
            logged: 1,
            live: Some(live),
            journal,
            meter,
        }
    }

    /// Emits a non-terminal event.
    pub(crate) async fn emit(&mut self, event: TurnEvent) {
        let ev = self.sequence(event);
        self.meter.event(&ev.event);
        if !ev.event.is_preview() {
            self.journal.record(&self.run, self.logged, &ev).await;
            self.logged = ev.id;
        }
        self.deliver(ev);
    }

    /// Delivers an event that is already in the run log (`run.started`, written by admission).
    pub(crate) fn emit_logged(&mut self, event: TurnEvent) {
        let ev = self.sequence(event);
        self.deliver(ev);
    }

    /// Gives the next id to `event` (the terminal one, which the final transaction records).
    pub(crate) fn sequence(&mut self, event: TurnEvent) -> Sequenced {
        let id = self.next_id;
        self.next_id += 1;
        Sequenced { id, event }
    }

    /// Offers an event to the live client, if it still keeps up.
    pub(crate) fn deliver(&mut self, ev: Sequenced) {
        let Some(tx) = &self.live else { return };
        if ev.event.is_preview() && tx.max_capacity() - tx.capacity() >= PREVIEW_BACKLOG {
            return;
        }
        if let Err(e) = tx.try_send(ev) {
            if matches!(e, mpsc::error::TrySendError::Full(_)) {
                tracing::info!(run_id = %self.run.run_id, "client is not keeping up; its stream continues from the run log");
            }
            self.live = None;
        }
    }

    /// The last id recorded in the run log so far.
    pub(crate) fn logged(&self) -> u64 {
        self.logged
    }

    pub(crate) fn journal(&self) -> &Journal {
        &self.journal
    }
}
