//! The SQLite backend of conversation memory (`sqlx`, bundled SQLite), the default; the only
//! place memory's SQL lives.
//!
//! Replicas of the service may open the same database file, opened as every service opens its
//! SQLite file ([`shared::sqlite`]): WAL mode lets readers run beside the writer, and every
//! write here is a `BEGIN IMMEDIATE` transaction that takes the write lock
//! before it reads, with a busy timeout, so concurrent appends queue instead of failing or
//! overwriting each other. Ownership and expiry are checked in the same statement that claims a
//! turn's sequence number, so no turn lands in a conversation that is not the caller's or has
//! just expired.

use std::{path::Path, sync::Arc};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rmcp::transport::streamable_http_server::session::store::{
    SessionState, SessionStore, SessionStoreError,
};
use sqlx::{Row, Sqlite, SqlitePool, migrate::Migrator, query::Query, sqlite::SqliteArguments};

use super::*;

/// Connections in the pool. SQLite serialises writers anyway; a few readers cover two cores.
const POOL_SIZE: u32 = 4;
/// The schema, from `agent-service/migrations/`.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations");
/// Conversations deleted per sweep transaction, so a large sweep never holds the write lock
/// for long.
const SWEEP_BATCH: i64 = 500;

/// Conversation memory in one SQLite file. Cloning shares the pool.
#[derive(Debug, Clone)]
pub struct SqliteConversations {
    pool: SqlitePool,
    config: MemoryConfig,
    /// Injected so tests can expire conversations without waiting.
    clock: Arc<dyn Clock>,
}

impl SqliteConversations {
    /// Opens (creating if needed) the database file, brings its schema up to date, and reads
    /// the time from the system clock.
    pub async fn open(path: &Path, config: MemoryConfig) -> MemoryResult<Self> {
        Self::open_with_clock(path, config, Arc::new(SystemClock)).await
    }

    /// [`SqliteConversations::open`] with a chosen clock.
    pub async fn open_with_clock(
        path: &Path,
        config: MemoryConfig,
        clock: Arc<dyn Clock>,
    ) -> MemoryResult<Self> {
        config.validate()?;
        let pool = shared::sqlite::open_file(path, POOL_SIZE, &MIGRATOR)
            .await
            .map_err(backend)?;
        Ok(SqliteConversations {
            pool,
            config,
            clock,
        })
    }

    fn now_millis(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }

    /// Conversations last active at or before this instant are expired.
    fn expiry_cutoff(&self, now: i64) -> i64 {
        now.saturating_sub(self.config.ttl_millis())
    }
}

fn backend(error: impl std::fmt::Display) -> MemoryError {
    MemoryError::Backend(error.to_string())
}

impl From<sqlx::Error> for MemoryError {
    fn from(error: sqlx::Error) -> Self {
        backend(error)
    }
}

/// The condition that a conversation is `owner`'s and live. Its parameters are bound by
/// [`bind_owned_and_live`], after any the statement binds before it.
macro_rules! owned_and_live {
    () => {
        "id = ? AND tenant = ? AND subject = ? AND last_active_at > ?"
    };
}
fn bind_owned_and_live<'q>(
    query: Query<'q, Sqlite, SqliteArguments>,
    id: &ConversationId,
    owner: &Owner,
    expiry_cutoff: i64,
) -> Query<'q, Sqlite, SqliteArguments> {
    query
        .bind(id.as_str())
        .bind(&owner.tenant)
        .bind(&owner.subject)
        .bind(expiry_cutoff)
}

fn from_millis(millis: i64) -> MemoryResult<DateTime<Utc>> {
    DateTime::from_timestamp_millis(millis)
        .ok_or_else(|| MemoryError::Backend(format!("timestamp {millis} is out of range")))
}

#[async_trait]
impl ConversationStore for SqliteConversations {
    async fn create(&self, owner: &Owner) -> MemoryResult<ConversationId> {
        let id = ConversationId::generate()?;
        let now = self.now_millis();
        sqlx::query(
            "INSERT INTO conversations (id, tenant, subject, created_at, last_active_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(id.as_str())
        .bind(&owner.tenant)
        .bind(&owner.subject)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    async fn append(
        &self,
        owner: &Owner,
        id: &ConversationId,
        turn: &Turn,
    ) -> MemoryResult<StoredTurn> {
        let body = serde_json::to_string(turn).map_err(backend)?;
        if body.len() > self.config.max_turn_bytes {
            return Err(MemoryError::TurnTooLarge {
                bytes: body.len(),
                limit: self.config.max_turn_bytes,
            });
        }
        let now = self.now_millis();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let claim = sqlx::query(concat!(
            "UPDATE conversations SET last_seq = last_seq + 1, last_active_at = ? WHERE ",
            owned_and_live!(),
            " RETURNING last_seq"
        ))
        .bind(now);
        let seq: i64 = bind_owned_and_live(claim, id, owner, self.expiry_cutoff(now))
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(MemoryError::UnknownConversation)?
            .try_get("last_seq")?;
        sqlx::query(
            "INSERT INTO turns (conversation_id, seq, recorded_at, body) VALUES (?, ?, ?, ?)",
        )
        .bind(id.as_str())
        .bind(seq)
        .bind(now)
        .bind(&body)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM turns WHERE conversation_id = ? AND seq <= ?")
            .bind(id.as_str())
            .bind(seq - i64::from(self.config.max_turns))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(StoredTurn {
            seq: u64::try_from(seq).map_err(backend)?,
            recorded_at: from_millis(now)?,
            turn: turn.clone(),
        })
    }

    async fn history(
        &self,
        owner: &Owner,
        id: &ConversationId,
        last: Option<usize>,
    ) -> MemoryResult<Vec<StoredTurn>> {
        let now = self.now_millis();
        // One read transaction: the ownership check and the turns see the same snapshot.
        let mut tx = self.pool.begin().await?;
        let check = sqlx::query(concat!(
            "SELECT 1 FROM conversations WHERE ",
            owned_and_live!()
        ));
        bind_owned_and_live(check, id, owner, self.expiry_cutoff(now))
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(MemoryError::UnknownConversation)?;
        // SQLite reads a negative LIMIT as "no limit".
        let limit = last.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        let rows = sqlx::query(
            "SELECT seq, recorded_at, body FROM turns WHERE conversation_id = ? \
             ORDER BY seq DESC LIMIT ?",
        )
        .bind(id.as_str())
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut turns = rows
            .iter()
            .map(|row| {
                let body: String = row.try_get("body")?;
                Ok(StoredTurn {
                    seq: u64::try_from(row.try_get::<i64, _>("seq")?).map_err(backend)?,
                    recorded_at: from_millis(row.try_get("recorded_at")?)?,
                    turn: serde_json::from_str(&body).map_err(backend)?,
                })
            })
            .collect::<MemoryResult<Vec<_>>>()?;
        turns.reverse();
        Ok(turns)
    }

    async fn for_session(
        &self,
        owner: &Owner,
        session: &SessionKey,
    ) -> MemoryResult<ConversationId> {
        let now = self.now_millis();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let found = sqlx::query(
            "SELECT id, last_active_at FROM conversations \
             WHERE tenant = ? AND subject = ? AND session_key = ?",
        )
        .bind(&owner.tenant)
        .bind(&owner.subject)
        .bind(session.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = found {
            let id: String = row.try_get("id")?;
            if row.try_get::<i64, _>("last_active_at")? > self.expiry_cutoff(now) {
                tx.commit().await?;
                return ConversationId::parse(&id);
            }
            // Expired: the session starts afresh rather than reviving old turns.
            sqlx::query("DELETE FROM conversations WHERE id = ?")
                .bind(&id)
                .execute(&mut *tx)
                .await?;
        }
        let id = ConversationId::generate()?;
        sqlx::query(
            "INSERT INTO conversations \
             (id, tenant, subject, session_key, created_at, last_active_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(id.as_str())
        .bind(&owner.tenant)
        .bind(&owner.subject)
        .bind(session.as_str())
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn sweep(&self) -> MemoryResult<u64> {
        let cutoff = self.expiry_cutoff(self.now_millis());
        let mut deleted = 0;
        loop {
            // Turns go with their conversation (ON DELETE CASCADE).
            let batch = sqlx::query(
                "DELETE FROM conversations WHERE id IN \
                 (SELECT id FROM conversations WHERE last_active_at <= ? LIMIT ?)",
            )
            .bind(cutoff)
            .bind(SWEEP_BATCH)
            .execute(&self.pool)
            .await?
            .rows_affected();
            deleted += batch;
            if batch < SWEEP_BATCH.unsigned_abs() {
                break;
            }
        }
        // Few rows (one per legacy client session), so one statement.
        sqlx::query("DELETE FROM mcp_sessions WHERE stored_at <= ?")
            .bind(cutoff)
            .execute(&self.pool)
            .await?;
        Ok(deleted)
    }

    async fn ping(&self) -> MemoryResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// The handshakes of MCP sessions (`MCP_SESSIONS=true`), in the same file and with the same
/// lifetime as conversations: a session whose handshake is older than the TTL is unknown, and
/// its client initializes again (the specification's answer to an expired session).
#[async_trait]
impl SessionStore for SqliteConversations {
    async fn load(&self, session_id: &str) -> Result<Option<SessionState>, SessionStoreError> {
        let key = SessionKey::of_session(session_id)?;
        let cutoff = self.expiry_cutoff(self.now_millis());
        let state: Option<String> = sqlx::query_scalar(
            "SELECT state FROM mcp_sessions WHERE session_key = ? AND stored_at > ?",
        )
        .bind(key.as_str())
        .bind(cutoff)
        .fetch_optional(&self.pool)
        .await?;
        Ok(state.map(|s| serde_json::from_str(&s)).transpose()?)
    }

    async fn store(&self, session_id: &str, state: &SessionState) -> Result<(), SessionStoreError> {
        let key = SessionKey::of_session(session_id)?;
        sqlx::query(
            "INSERT INTO mcp_sessions (session_key, state, stored_at) VALUES (?, ?, ?) \
             ON CONFLICT (session_key) DO UPDATE SET state = excluded.state, \
             stored_at = excluded.stored_at",
        )
        .bind(key.as_str())
        .bind(serde_json::to_string(state)?)
        .bind(self.now_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete(&self, session_id: &str) -> Result<(), SessionStoreError> {
        let key = SessionKey::of_session(session_id)?;
        sqlx::query("DELETE FROM mcp_sessions WHERE session_key = ?")
            .bind(key.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
