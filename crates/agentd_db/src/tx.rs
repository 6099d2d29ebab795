//! A transaction on either database, bound to one tenant: [`TurnTx`]. The admission of a turn runs in one of
//! these, and so does the finished turn on SQLite (on PostgreSQL it is one statement: `finish_pg`); the
//! statements they are made of live with their tables (`limits`, `idempotency`, `turns`, …) as `impl TurnTx`
//! blocks.

use crate::{Db, DbError, Scoped, TenantId};
use sqlx::{Postgres, Sqlite, Transaction};

pub(crate) enum AnyTx {
    Postgres(Transaction<'static, Postgres>),
    Sqlite(Transaction<'static, Sqlite>),
}

/// An open transaction on one tenant's data. Dropped without [`TurnTx::commit`], it rolls back.
pub struct TurnTx {
    pub(crate) tx: AnyTx,
    pub(crate) tenant: TenantId,
    /// Statements run so far (for logs and tests).
    pub(crate) statements: u32,
}

/// Runs `$body` with `$conn` bound to the transaction's connection (`&mut PgConnection` or
/// `&mut SqliteConnection`), counting the statement.
macro_rules! with_tx {
    ($tx:expr, |$conn:ident| $body:expr) => {{
        $tx.statements += 1;
        match &mut $tx.tx {
            $crate::tx::AnyTx::Postgres(t) => {
                let $conn = &mut **t;
                $body
            }
            $crate::tx::AnyTx::Sqlite(t) => {
                let $conn = &mut **t;
                $body
            }
        }
    }};
}
pub(crate) use with_tx;

impl Scoped<'_> {
    /// Opens a transaction on this tenant's data. On SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`), so a transaction that reads before it writes cannot fail to upgrade.
    pub async fn begin(&self) -> Result<TurnTx, DbError> {
        let tx = match self.db {
            Db::Postgres(p) => AnyTx::Postgres(p.begin().await?),
            Db::Sqlite(p) => AnyTx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
        };
        Ok(TurnTx {
            tx,
            tenant: self.tenant.clone(),
            statements: 0,
        })
    }
}

impl TurnTx {
    pub async fn commit(self) -> Result<(), DbError> {
        match self.tx {
            AnyTx::Postgres(t) => t.commit().await?,
            AnyTx::Sqlite(t) => t.commit().await?,
        }
        Ok(())
    }

    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// Statements run in this transaction so far.
    pub fn statements(&self) -> u32 {
        self.statements
    }
}
