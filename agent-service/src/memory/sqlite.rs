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
use shared::{
    auth::Identity,
    mcp::{LegacySessionStore, SessionOwners},
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
    /// The database's file name, for `/readyz` (never its path).
    name: String,
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
        let name = path.file_name().map_or_else(
            || "agent.db".to_owned(),
            |n| n.to_string_lossy().into_owned(),
        );
        Ok(SqliteConversations {
            pool,
            name,
            config,
            clock,
        })
    }

    fn now_millis(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }

    /// Forgets `owner`'s least recently active conversations beyond the per-owner cap, inside
    /// the transaction that just added one.
    async fn evict_beyond_cap(
        &self,
        tx: &mut sqlx::Transaction<'_, Sqlite>,
        owner: &Owner,
    ) -> MemoryResult<()> {
        let evicted = sqlx::query(
            "DELETE FROM conversations WHERE id IN \
             (SELECT id FROM conversations WHERE tenant = ? AND subject = ? \
              ORDER BY last_active_at DESC, created_at DESC LIMIT -1 OFFSET ?)",
        )
        .bind(&owner.tenant)
        .bind(&owner.subject)
        .bind(i64::from(self.config.max_conversations_per_owner))
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if evicted > 0 {
            tracing::info!(tenant = %owner.tenant, evicted, "oldest conversations forgotten: the owner is at the cap");
        }
        Ok(())
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "INSERT INTO conversations (id, tenant, subject, created_at, last_active_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(id.as_str())
        .bind(&owner.tenant)
        .bind(&owner.subject)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        self.evict_beyond_cap(&mut tx, owner).await?;
        tx.commit().await?;
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
        self.evict_beyond_cap(&mut tx, owner).await?;
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
        // Few rows (one per legacy client session), so one statement each.
        sqlx::query("DELETE FROM mcp_sessions WHERE stored_at <= ?")
            .bind(cutoff)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM mcp_session_owners WHERE bound_at <= ?")
            .bind(cutoff)
            .execute(&self.pool)
            .await?;
        Ok(deleted)
    }

    async fn ping(&self) -> MemoryResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn database(&self) -> String {
        self.name.clone()
    }
}

/// Actions waiting for confirmation, in the same file as their conversations and deleted with
/// them.
#[async_trait]
impl PendingActions for SqliteConversations {
    async fn hold(
        &self,
        owner: &Owner,
        conversation: &ConversationId,
        action: &ProposedAction,
    ) -> MemoryResult<HeldAction> {
        let id = ConfirmationId::generate()?;
        let now = self.now_millis();
        let expires_at = now.saturating_add(self.config.confirmation_ttl_millis());
        let arguments = pending::canonical(&serde_json::Value::Object(action.arguments.clone()));
        let binding = pending::binding(owner, conversation, action);
        // Held only in a live conversation of the owner's, checked in the same statement.
        let insert = sqlx::query(concat!(
            "INSERT INTO pending_actions (confirmation_key, conversation_id, tenant, subject, \
             domain, tool, arguments, action, binding, created_at, expires_at) \
             SELECT ?, id, tenant, subject, ?, ?, ?, ?, ?, ?, ? FROM conversations WHERE ",
            owned_and_live!()
        ))
        .bind(id.key())
        .bind(&action.domain)
        .bind(&action.tool)
        .bind(arguments)
        .bind(&action.action)
        .bind(binding)
        .bind(now)
        .bind(expires_at);
        let held = bind_owned_and_live(insert, conversation, owner, self.expiry_cutoff(now))
            .execute(&self.pool)
            .await?
            .rows_affected();
        if held == 0 {
            return Err(MemoryError::UnknownConversation);
        }
        Ok(HeldAction {
            id,
            expires_at: from_millis(expires_at)?,
        })
    }

    async fn claim(
        &self,
        owner: &Owner,
        conversation: &ConversationId,
        domain: &str,
        id: &ConfirmationId,
    ) -> MemoryResult<ProposedAction> {
        let now = self.now_millis();
        // One statement: SQLite runs writers one at a time, so of concurrent claims exactly one
        // finds `used_at` still empty.
        let claimed = sqlx::query(
            "UPDATE pending_actions SET used_at = ? \
             WHERE confirmation_key = ? AND tenant = ? AND subject = ? AND conversation_id = ? \
             AND domain = ? AND used_at IS NULL AND expires_at > ? \
             RETURNING tool, arguments, action, binding",
        )
        .bind(now)
        .bind(id.key())
        .bind(&owner.tenant)
        .bind(&owner.subject)
        .bind(conversation.as_str())
        .bind(domain)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = claimed else {
            // Only the owner, in the same conversation with the same expert, learns it was used.
            let used: Option<Option<i64>> = sqlx::query_scalar(
                "SELECT used_at FROM pending_actions WHERE confirmation_key = ? AND tenant = ? \
                 AND subject = ? AND conversation_id = ? AND domain = ?",
            )
            .bind(id.key())
            .bind(&owner.tenant)
            .bind(&owner.subject)
            .bind(conversation.as_str())
            .bind(domain)
            .fetch_optional(&self.pool)
            .await?;
            return Err(match used {
                Some(Some(_)) => MemoryError::ConfirmationUsed,
                _ => MemoryError::UnknownConfirmation,
            });
        };
        let tool: String = row.try_get("tool")?;
        let arguments: String = row.try_get("arguments")?;
        let Ok(serde_json::Value::Object(arguments)) = serde_json::from_str(&arguments) else {
            tracing::error!(%tool, "a held action's arguments are not a JSON object; refused");
            return Err(MemoryError::ActionAltered);
        };
        let action = ProposedAction {
            domain: domain.to_owned(),
            tool,
            arguments,
            action: row.try_get("action")?,
        };
        let stored: String = row.try_get("binding")?;
        if stored != pending::binding(owner, conversation, &action) {
            tracing::error!(tool = %action.tool, "a held action no longer matches its binding; refused");
            return Err(MemoryError::ActionAltered);
        }
        Ok(action)
    }

    async fn sweep_actions(&self) -> MemoryResult<u64> {
        let deleted = sqlx::query("DELETE FROM pending_actions WHERE expires_at <= ?")
            .bind(self.now_millis())
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(deleted)
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
        let json = bounded_handshake(state, self.config.max_handshake_bytes)?;
        sqlx::query(
            "INSERT INTO mcp_sessions (session_key, state, stored_at) VALUES (?, ?, ?) \
             ON CONFLICT (session_key) DO UPDATE SET state = excluded.state, \
             stored_at = excluded.stored_at",
        )
        .bind(key.as_str())
        .bind(json)
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

fn owner_error(error: impl std::fmt::Display) -> String {
    error.to_string()
}

/// The owners of MCP sessions, beside their handshakes, expiring with them.
#[async_trait]
impl SessionOwners for SqliteConversations {
    async fn bind(&self, session_id: &str, owner: &Identity) -> Result<(), String> {
        let key = SessionKey::of_session(session_id).map_err(owner_error)?;
        let now = self.now_millis();
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(owner_error)?;
        sqlx::query(
            "INSERT INTO mcp_session_owners (session_key, tenant, subject, bound_at) \
             VALUES (?, ?, ?, ?)",
        )
        .bind(key.as_str())
        .bind(&owner.tenant)
        .bind(&owner.subject)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(owner_error)?;
        // The owner's oldest sessions beyond the cap end: their handshakes go too, so no replica
        // can take them over.
        let evicted: Vec<String> = sqlx::query_scalar(
            "DELETE FROM mcp_session_owners WHERE session_key IN \
             (SELECT session_key FROM mcp_session_owners WHERE tenant = ? AND subject = ? \
              ORDER BY bound_at DESC LIMIT -1 OFFSET ?) RETURNING session_key",
        )
        .bind(&owner.tenant)
        .bind(&owner.subject)
        .bind(i64::from(self.config.max_sessions_per_owner))
        .fetch_all(&mut *tx)
        .await
        .map_err(owner_error)?;
        for session_key in &evicted {
            sqlx::query("DELETE FROM mcp_sessions WHERE session_key = ?")
                .bind(session_key)
                .execute(&mut *tx)
                .await
                .map_err(owner_error)?;
        }
        tx.commit().await.map_err(owner_error)?;
        if !evicted.is_empty() {
            tracing::info!(tenant = %owner.tenant, evicted = evicted.len(), "oldest MCP sessions ended: the owner is at the cap");
        }
        Ok(())
    }

    async fn owned_by(&self, session_id: &str, caller: &Identity) -> Result<bool, String> {
        let Ok(key) = SessionKey::of_session(session_id) else {
            // Not even a well-formed id: unknown to everyone.
            return Ok(false);
        };
        let cutoff = self.expiry_cutoff(self.now_millis());
        let owned: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM mcp_session_owners \
             WHERE session_key = ? AND tenant = ? AND subject = ? AND bound_at > ?",
        )
        .bind(key.as_str())
        .bind(&caller.tenant)
        .bind(&caller.subject)
        .bind(cutoff)
        .fetch_optional(&self.pool)
        .await
        .map_err(owner_error)?;
        Ok(owned.is_some())
    }

    async fn forget(&self, session_id: &str) -> Result<(), String> {
        let key = SessionKey::of_session(session_id).map_err(owner_error)?;
        sqlx::query("DELETE FROM mcp_session_owners WHERE session_key = ?")
            .bind(key.as_str())
            .execute(&self.pool)
            .await
            .map_err(owner_error)?;
        Ok(())
    }
}

impl LegacySessionStore for SqliteConversations {
    fn as_session_store(self: Arc<Self>) -> Arc<dyn SessionStore> {
        self
    }
}
