//! Where audit events are kept: the [`AuditStore`] trait (SQLite today, Cosmos DB later) and
//! its SQLite implementation, a table of its own in the service's database.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool, migrate::Migrator};

use super::AuditEvent;

/// Why the audit trail could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("no database at {} (DB_PATH)", path.display())]
    NoDatabase { path: PathBuf },
    #[error("opening the audit trail in {} (DB_PATH): {source}", path.display())]
    Open {
        path: PathBuf,
        source: crate::sqlite::OpenError,
    },
    #[error("audit storage: {0}")]
    Backend(#[from] sqlx::Error),
    #[error("an audit event could not be encoded or decoded: {0}")]
    Encoding(#[from] serde_json::Error),
    #[error("writing the events: {0}")]
    Output(#[from] std::io::Error),
}

/// Which stored events to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only this tenant's events; `None`: every tenant's.
    pub tenant: Option<String>,
    /// Only events at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// At most this many, the newest.
    pub limit: u32,
}

/// Where audit events are kept. Implementations are shared by every request of a service.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Stores `events` in one transaction: all or none.
    async fn append(&self, events: &[AuditEvent]) -> Result<(), AuditError>;
    /// The newest `filter.limit` events matching `filter`, oldest first.
    async fn query(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>, AuditError>;
    /// Deletes the events older than `older_than`; returns how many.
    async fn prune(&self, older_than: DateTime<Utc>) -> Result<u64, AuditError>;
}

/// Connections of the audit trail's own pool: one writer task, and a reader now and then.
const POOL_SIZE: u32 = 2;
/// Rows per `INSERT` statement (six parameters each, far below SQLite's limit of 32766).
const ROWS_PER_INSERT: usize = 128;
/// Events deleted per prune transaction, so pruning never holds the write lock for long.
const PRUNE_BATCH: i64 = 1000;

/// The table and its indexes, created by this module in whatever database the service keeps:
/// not a migration of the service, whose numbering is its own.
const SCHEMA: &str = "\
CREATE TABLE IF NOT EXISTS audit_events (
    id INTEGER PRIMARY KEY,
    time_us INTEGER NOT NULL,
    tenant TEXT NOT NULL,
    subject TEXT NOT NULL,
    tool TEXT NOT NULL,
    outcome TEXT NOT NULL,
    event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_events_by_tenant_time ON audit_events (tenant, time_us);
CREATE INDEX IF NOT EXISTS audit_events_by_time ON audit_events (time_us);
";

/// The audit trail in a SQLite database, table `audit_events`: the columns searched on, and the
/// event itself as JSON. Cloning shares the pool.
#[derive(Debug, Clone)]
pub struct SqliteAuditStore {
    pool: SqlitePool,
}

/// The audit trail brings its own table, not migrations: it opens a service's database without
/// applying or checking the service's migrations (`ignore_missing`: those applied are not ours).
pub(super) fn no_migrations() -> Migrator {
    let mut migrator = Migrator::with_migrations(Vec::new());
    migrator.set_ignore_missing(true);
    migrator
}

impl SqliteAuditStore {
    /// Opens the database file at `path` (creating it if needed) with a small pool of its own,
    /// so audit writes never wait for a connection a tool call holds, and creates the table.
    pub async fn open(path: &Path) -> Result<Self, AuditError> {
        let pool = crate::sqlite::open_file(path, POOL_SIZE, &no_migrations())
            .await
            .map_err(|source| AuditError::Open {
                path: path.to_owned(),
                source,
            })?;
        Self::new(pool).await
    }

    /// [`SqliteAuditStore::open`] for a database that must already exist (the `audit`
    /// subcommand reads a service's database; it does not create one).
    pub async fn open_existing(path: &Path) -> Result<Self, AuditError> {
        if !path.is_file() {
            return Err(AuditError::NoDatabase {
                path: path.to_owned(),
            });
        }
        Self::open(path).await
    }

    /// On a pool the caller opened (a test's in-memory database); creates the table if needed.
    pub async fn new(pool: SqlitePool) -> Result<Self, AuditError> {
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        Ok(SqliteAuditStore { pool })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

fn micros(time: DateTime<Utc>) -> i64 {
    time.timestamp_micros()
}

#[async_trait]
impl AuditStore for SqliteAuditStore {
    async fn append(&self, events: &[AuditEvent]) -> Result<(), AuditError> {
        if events.is_empty() {
            return Ok(());
        }
        let encoded = events
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<Vec<String>, _>>()?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        // Many rows per statement: each statement is a round trip to the connection's thread.
        for (events, encoded) in events
            .chunks(ROWS_PER_INSERT)
            .zip(encoded.chunks(ROWS_PER_INSERT))
        {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO audit_events (time_us, tenant, subject, tool, outcome, event) ",
            );
            insert.push_values(events.iter().zip(encoded), |mut row, (event, json)| {
                row.push_bind(micros(event.time))
                    .push_bind(&event.tenant)
                    .push_bind(&event.subject)
                    .push_bind(&event.tool)
                    .push_bind(event.outcome.label())
                    .push_bind(json);
            });
            insert.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn query(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>, AuditError> {
        let since = filter.since.map_or(i64::MIN, micros);
        let rows = match &filter.tenant {
            Some(tenant) => {
                sqlx::query(
                    "SELECT event FROM audit_events WHERE tenant = ? AND time_us >= ? \
                     ORDER BY time_us DESC, id DESC LIMIT ?",
                )
                .bind(tenant)
                .bind(since)
                .bind(filter.limit)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(
                    "SELECT event FROM audit_events WHERE time_us >= ? \
                     ORDER BY time_us DESC, id DESC LIMIT ?",
                )
                .bind(since)
                .bind(filter.limit)
                .fetch_all(&self.pool)
                .await?
            }
        };
        let mut events = rows
            .iter()
            .map(|row| {
                let text: String = row.try_get("event")?;
                Ok(serde_json::from_str(&text)?)
            })
            .collect::<Result<Vec<AuditEvent>, AuditError>>()?;
        events.reverse();
        Ok(events)
    }

    async fn prune(&self, older_than: DateTime<Utc>) -> Result<u64, AuditError> {
        let mut deleted = 0;
        loop {
            let done = sqlx::query(
                "DELETE FROM audit_events WHERE id IN \
                 (SELECT id FROM audit_events WHERE time_us < ? LIMIT ?)",
            )
            .bind(micros(older_than))
            .bind(PRUNE_BATCH)
            .execute(&self.pool)
            .await?
            .rows_affected();
            deleted += done;
            if done < PRUNE_BATCH as u64 {
                return Ok(deleted);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{
        Outcome,
        testing::{event, memory_store},
    };

    #[tokio::test]
    async fn queries_select_a_tenant_since_a_time_newest_last() {
        let store = memory_store().await;
        store
            .append(&[
                event("t1", "2026-05-10T10:00:00Z", Outcome::Ok),
                event("t2", "2026-05-10T11:00:00Z", Outcome::Ok),
                event(
                    "t1",
                    "2026-05-10T12:00:00Z",
                    Outcome::tool_error("conflict"),
                ),
                event("t1", "2026-05-10T13:00:00Z", Outcome::Ok),
            ])
            .await
            .expect("append");
        let since = |s: &str| Some(DateTime::parse_from_rfc3339(s).expect("time").to_utc());
        let times = |events: Vec<AuditEvent>| {
            events
                .iter()
                .map(|e| format!("{} {}", e.tenant, e.time.format("%H")))
                .collect::<Vec<_>>()
        };
        let t1 = store
            .query(&AuditFilter {
                tenant: Some("t1".into()),
                since: since("2026-05-10T11:00:00Z"),
                limit: 10,
            })
            .await
            .expect("query");
        assert_eq!(times(t1), ["t1 12", "t1 13"]);
        let newest = store
            .query(&AuditFilter {
                tenant: None,
                since: None,
                limit: 2,
            })
            .await
            .expect("query");
        assert_eq!(times(newest), ["t1 12", "t1 13"]);
    }

    #[tokio::test]
    async fn pruning_removes_only_events_older_than_the_cutoff() {
        let store = memory_store().await;
        let old: Vec<AuditEvent> = (0..2500)
            .map(|_| event("t1", "2026-01-01T00:00:00Z", Outcome::Ok))
            .collect();
        store.append(&old).await.expect("append old");
        store
            .append(&[event("t1", "2026-05-01T00:00:00Z", Outcome::Ok)])
            .await
            .expect("append new");
        let cutoff = DateTime::parse_from_rfc3339("2026-02-01T00:00:00Z")
            .expect("time")
            .to_utc();
        assert_eq!(store.prune(cutoff).await.expect("prune"), 2500);
        assert_eq!(store.prune(cutoff).await.expect("prune again"), 0);
        let left = store
            .query(&AuditFilter {
                tenant: None,
                since: None,
                limit: 100,
            })
            .await
            .expect("query");
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].time.to_rfc3339(), "2026-05-01T00:00:00+00:00");
    }
}
