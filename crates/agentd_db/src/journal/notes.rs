//! The notification side of the run event log: the payload of `NOTIFY agentd_run_events` (a chunk's place in
//! its run and, when small enough, its events) and [`RunListener`], which hears every replica's writes.

use super::{CHANNEL, ChunkNote, EventChunk};
use crate::{Db, DbError};

/// Events up to this many bytes travel inside their notification (PostgreSQL refuses payloads of 8000 bytes).
const NOTE_EVENTS_MAX: usize = 7000;

/// New-event notifications from every replica (PostgreSQL `LISTEN agentd_run_events`).
pub struct RunListener(sqlx::postgres::PgListener);

impl Db {
    /// Listens for run events written by any replica; `None` on SQLite (one process: nothing to hear).
    pub async fn listen_run_events(&self) -> Result<Option<RunListener>, DbError> {
        let Db::Postgres(pool) = self else {
            return Ok(None);
        };
        let mut l = sqlx::postgres::PgListener::connect_with(pool).await?;
        l.listen(CHANNEL).await?;
        Ok(Some(RunListener(l)))
    }
}

/// What the listener heard.
#[derive(Debug)]
pub enum Heard {
    Note(ChunkNote),
    /// The connection was lost and has been made again (listening again): notifications sent meanwhile are
    /// gone, so whoever waits for them must read the rows.
    Reconnected,
}

impl RunListener {
    /// The next notification, or word that some were lost. An `Err` means it could not reconnect.
    pub async fn recv(&mut self) -> Result<Heard, DbError> {
        loop {
            // `try_recv`, not `recv`: `recv` reconnects without a word, and readers would not know to look.
            match self.0.try_recv().await? {
                None => return Ok(Heard::Reconnected),
                Some(n) => {
                    if let Some(note) = ChunkNote::parse(n.payload()) {
                        return Ok(Heard::Note(note));
                    }
                }
            }
        }
    }
}

impl ChunkNote {
    /// Reads `<run_id> <prev_id> <last_id>[ <events>]`.
    fn parse(payload: &str) -> Option<Self> {
        let mut parts = payload.splitn(4, ' ');
        let run_id = parts.next()?.to_owned();
        let prev_id = parts.next()?.parse().ok()?;
        let last_id = parts.next()?.parse().ok()?;
        let events = parts.next().map(str::to_owned);
        Some(Self {
            run_id,
            prev_id,
            last_id,
            events,
        })
    }

    /// The notification payload of a chunk: `<run_id> <prev_id> <last_id>`, then ` <events>` when they are at
    /// most [`NOTE_EVENTS_MAX`] bytes ([`Self::parse`] reads it back).
    pub(super) fn payload(c: &EventChunk) -> String {
        let mut p = format!("{} {} {}", c.run_id, c.prev_id, c.last_id);
        if c.events.len() <= NOTE_EVENTS_MAX {
            p.push(' ');
            p.push_str(&c.events);
        }
        p
    }

    /// The note of a chunk this process wrote itself (its events whatever their size).
    pub fn of(c: &EventChunk) -> Self {
        Self::from(c.clone())
    }
}

impl From<EventChunk> for ChunkNote {
    /// The note of a chunk this process wrote itself, taking its events whatever their size.
    fn from(c: EventChunk) -> Self {
        Self {
            run_id: c.run_id,
            prev_id: c.prev_id,
            last_id: c.last_id,
            events: Some(c.events),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ChunkNote;

    #[test]
    fn notes_are_read_with_and_without_their_events() {
        let n = ChunkNote::parse(r#"run_1 4 7 [{"id":6,"event":"x"}, {"id":7}]"#).unwrap();
        assert_eq!((n.run_id.as_str(), n.prev_id, n.last_id), ("run_1", 4, 7));
        assert_eq!(n.events.as_deref(), Some(r#"[{"id":6,"event":"x"}, {"id":7}]"#));
        let n = ChunkNote::parse("run_1 0 1").unwrap();
        assert_eq!((n.prev_id, n.last_id, n.events), (0, 1, None));
        assert_eq!(ChunkNote::parse("run_1 7"), None);
        assert_eq!(ChunkNote::parse("run_1 x 7"), None);
    }
}
