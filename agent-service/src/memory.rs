//! Conversation memory: what an expert was asked and answered, so a caller can continue a
//! conversation after a restart or on another replica.
//!
//! A conversation belongs to one owner, the token's tenant (`tid`) and subject (`sub`), and is
//! named by an unguessable [`ConversationId`]. Every read and write names the owner as well as
//! the id, and a conversation that is someone else's, expired or never existed gives the same
//! [`MemoryError::UnknownConversation`], so an id reveals nothing to anyone but its owner.
//!
//! A turn is one question to an expert and its outcome ([`Turn`]). The store keeps the most
//! recent [`MemoryConfig::max_turns`] turns of a conversation (older ones are dropped as new ones
//! arrive) and refuses a turn larger than [`MemoryConfig::max_turn_bytes`].
//!
//! A conversation expires [`MemoryConfig::ttl`] after its last activity (its creation or its
//! latest turn; reading does not count). An expired conversation is treated as unknown at once;
//! [`ConversationStore::sweep`], run periodically by [`spawn_sweeper`], deletes its rows.
//!
//! A write an expert decided on waits for its owner's confirmation in the same store
//! ([`PendingActions`], see [`pending`]), bound to the conversation, and expires after
//! [`MemoryConfig::confirmation_ttl`].
//!
//! Storage sits behind [`ConversationStore`] and, for MCP sessions, [`LegacySessionStore`];
//! [`Memory`] is both from one backend, opened by [`Memory::open_sqlite`] ([`sqlite`], the
//! default) or [`Memory::open_cosmos`] (`cosmos`, Cosmos DB partitioned by owner, with
//! `USE_COSMOSDB`), as [`MemoryStorage`] says. Both are held to one contract
//! (`tests/memory.rs`): every call names the owner, and nothing joins across conversations.

#[cfg(feature = "cosmos")]
pub mod cosmos;
mod id;
pub mod pending;
pub mod sqlite;

use std::{fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rmcp::transport::streamable_http_server::session::store::{SessionState, SessionStoreError};
use serde::{Deserialize, Serialize};
use shared::mcp::LegacySessionStore;
use tokio_util::sync::CancellationToken;

#[cfg(feature = "cosmos")]
pub use cosmos::CosmosConversations;
pub use id::{ConfirmationId, ConversationId, SessionKey};
pub use pending::{HeldAction, PendingActions, ProposedAction};
pub use sqlite::SqliteConversations;

/// Why a memory call did not succeed. Every variant but [`MemoryError::Backend`] is the caller's
/// to fix, and its message says how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemoryError {
    #[error("conversation_id is malformed: expected {expected}")]
    MalformedId { expected: String },
    #[error("the MCP session id is malformed: expected {expected}")]
    MalformedSession { expected: String },
    /// Deliberately the same for an id that never existed, has expired, or is another caller's.
    #[error(
        "no conversation with this conversation_id is open for you (it may have expired); \
         omit conversation_id to start a new conversation"
    )]
    UnknownConversation,
    #[error("confirm is malformed: expected {expected}")]
    MalformedConfirmation { expected: String },
    /// Deliberately the same for an id that never existed, has expired, is another caller's, or
    /// belongs to another conversation or expert.
    #[error(
        "no action with this confirmation id is waiting for your confirmation with this expert in \
         this conversation (it may have expired); nothing was done. Ask the expert again to get a \
         new confirmation id"
    )]
    UnknownConfirmation,
    #[error("this confirmation id was already used: its action ran once and will not run again")]
    ConfirmationUsed,
    /// The held action no longer matches the words and arguments it was held with.
    #[error(
        "the action held under this confirmation id no longer matches what you were asked to \
         confirm, so it was not run; ask the expert again"
    )]
    ActionAltered,
    #[error("the turn is {bytes} bytes once encoded, over the limit of {limit} bytes")]
    TurnTooLarge { bytes: usize, limit: usize },
    #[error("invalid memory configuration: {0}")]
    InvalidConfig(String),
    /// The database failed; details are logged, not shown to callers.
    #[error("conversation storage error: {0}")]
    Backend(String),
}

pub type MemoryResult<T> = Result<T, MemoryError>;

/// Who a conversation belongs to: the verified token's tenant and subject.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner {
    /// Tenant (`tid`); the partition key of a document backend.
    pub tenant: String,
    /// Subject (`sub`) within the tenant.
    pub subject: String,
}

impl From<&shared::auth::Identity> for Owner {
    fn from(identity: &shared::auth::Identity) -> Self {
        Owner {
            tenant: identity.tenant.clone(),
            subject: identity.subject.clone(),
        }
    }
}

/// How an expert's turn ended; the same values as the `status` of the expert tools' output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TurnStatus {
    Done,
    NeedsInput,
    /// The expert wants to make a change (a write) and waits for the person to confirm it.
    NeedsConfirmation,
    Error,
}

impl TurnStatus {
    /// The serialized name, for traces and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            TurnStatus::Done => "done",
            TurnStatus::NeedsInput => "needs_input",
            TurnStatus::NeedsConfirmation => "needs_confirmation",
            TurnStatus::Error => "error",
        }
    }
}

/// One tool call an expert made while answering, as reported to the caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ToolCallRecord {
    pub name: String,
    pub arguments: serde_json::Value,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One question to an expert and its outcome: what the expert records after answering.
///
/// Stored as one JSON document, so fields added later (with `#[serde(default)]`) need no
/// schema migration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    /// The expert's domain (`billing`, `account`, `product`).
    pub domain: String,
    pub question: String,
    pub answer: String,
    pub status: TurnStatus,
    #[serde(default)]
    pub tool_calls: Vec<ToolCallRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the question arrived; the store adds when the turn was recorded.
    pub asked_at: DateTime<Utc>,
}

/// A turn as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTurn {
    /// Position in the conversation, from 1, in the order turns were appended.
    pub seq: u64,
    /// When the store accepted the turn (by the store's clock).
    pub recorded_at: DateTime<Utc>,
    pub turn: Turn,
}

/// Limits and lifetime of conversations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryConfig {
    /// A conversation with no new turn for this long is expired.
    pub ttl: Duration,
    /// Turns kept per conversation; appending beyond drops the oldest.
    pub max_turns: u32,
    /// The largest turn accepted, measured as its JSON encoding.
    pub max_turn_bytes: usize,
    /// Conversations one owner (tenant and subject) keeps; starting one more forgets their
    /// least recently active.
    pub max_conversations_per_owner: u32,
    /// Live MCP sessions one owner holds; initializing one more ends their oldest.
    pub max_sessions_per_owner: u32,
    /// The largest session handshake recorded, as JSON; a bigger one is recorded without the
    /// client's `experimental` capabilities, and refused if still too big.
    pub max_handshake_bytes: usize,
    /// How long a write an expert proposed waits for its owner's confirmation.
    pub confirmation_ttl: Duration,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            ttl: Duration::from_secs(24 * 60 * 60),
            max_turns: 100,
            max_turn_bytes: 64 * 1024,
            max_conversations_per_owner: 1_000,
            max_sessions_per_owner: 32,
            max_handshake_bytes: 16 * 1024,
            confirmation_ttl: Duration::from_secs(300),
        }
    }
}

impl MemoryConfig {
    /// Refuses limits that would make the store useless or overflow its arithmetic.
    pub fn validate(&self) -> MemoryResult<()> {
        let invalid = |why: &str| Err(MemoryError::InvalidConfig(why.into()));
        if self.ttl.is_zero() || self.ttl_millis() >= i64::MAX / 4 {
            return invalid("ttl must be positive and below a few million years");
        }
        if self.max_turns == 0 {
            return invalid("max_turns must be at least 1");
        }
        if self.max_conversations_per_owner == 0 || self.max_sessions_per_owner == 0 {
            return invalid("the per-owner caps must be at least 1");
        }
        if self.max_handshake_bytes < 1024 {
            return invalid("max_handshake_bytes must be at least 1024");
        }
        if self.max_turn_bytes == 0 {
            return invalid("max_turn_bytes must be at least 1");
        }
        if self.confirmation_ttl.is_zero() || self.confirmation_ttl > Duration::from_secs(86_400) {
            return invalid("confirmation_ttl must be positive and at most a day");
        }
        Ok(())
    }

    fn ttl_millis(&self) -> i64 {
        i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX)
    }

    fn confirmation_ttl_millis(&self) -> i64 {
        // Validated to be at most a day.
        i64::try_from(self.confirmation_ttl.as_millis()).unwrap_or(i64::MAX)
    }
}

/// Where the store reads the time, so tests can move it.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Durable conversation memory. Every call that names a conversation also names its owner.
/// The actions waiting for confirmation live beside the conversations they belong to.
#[async_trait]
pub trait ConversationStore: PendingActions + Send + Sync + fmt::Debug {
    /// Starts a conversation for `owner` and returns its fresh id.
    async fn create(&self, owner: &Owner) -> MemoryResult<ConversationId>;

    /// Appends a turn to one of `owner`'s live conversations and counts as activity.
    async fn append(
        &self,
        owner: &Owner,
        id: &ConversationId,
        turn: &Turn,
    ) -> MemoryResult<StoredTurn>;

    /// The turns of one of `owner`'s live conversations, oldest first; with `last`, only the
    /// most recent `last` of them. Also the way to check a conversation may be continued.
    async fn history(
        &self,
        owner: &Owner,
        id: &ConversationId,
        last: Option<usize>,
    ) -> MemoryResult<Vec<StoredTurn>>;

    /// The live conversation bound to an MCP session for `owner`, created on first use: the
    /// stand-in for `conversation_id` for clients that hold a session but send no id.
    async fn for_session(
        &self,
        owner: &Owner,
        session: &SessionKey,
    ) -> MemoryResult<ConversationId>;

    /// Deletes expired conversations and their turns; returns how many conversations went.
    async fn sweep(&self) -> MemoryResult<u64>;

    /// Whether the backend answers (for `/readyz`).
    async fn ping(&self) -> MemoryResult<()>;

    /// The backend's name (`sqlite`, `cosmos`), for `/readyz` and logs.
    fn backend(&self) -> &'static str;

    /// The database, as an operator names it (a file name, a Cosmos database name); never a
    /// path or an endpoint, since `/readyz` shows it.
    fn database(&self) -> String;
}

/// The conversations and the MCP sessions' records, from one backend.
#[derive(Clone)]
pub struct Memory {
    pub conversations: Arc<dyn ConversationStore>,
    pub sessions: Arc<dyn LegacySessionStore>,
}

impl Memory {
    /// Both concerns served by one backend.
    pub fn of<B: ConversationStore + LegacySessionStore + 'static>(backend: B) -> Self {
        let backend = Arc::new(backend);
        Memory {
            conversations: backend.clone(),
            sessions: backend,
        }
    }

    /// The SQLite backend in the file at `path`.
    pub async fn open_sqlite(path: &std::path::Path, config: MemoryConfig) -> MemoryResult<Self> {
        Ok(Memory::of(SqliteConversations::open(path, config).await?))
    }

    /// The Cosmos DB backend in the database `cosmos` names (created with its containers when
    /// missing).
    #[cfg(feature = "cosmos")]
    pub async fn open_cosmos(
        cosmos: &shared::cosmos::CosmosConfig,
        config: MemoryConfig,
    ) -> MemoryResult<Self> {
        Ok(Memory::of(CosmosConversations::open(cosmos, config).await?))
    }

    /// The backend `storage` names.
    pub async fn open(storage: &MemoryStorage, config: MemoryConfig) -> MemoryResult<Self> {
        match storage {
            MemoryStorage::Sqlite { path } => Memory::open_sqlite(path, config).await,
            #[cfg(feature = "cosmos")]
            MemoryStorage::Cosmos(cosmos) => Memory::open_cosmos(cosmos, config).await,
        }
    }
}

/// Where the memory is kept, as configured (`DB_PATH`, or `USE_COSMOSDB` and its settings).
#[derive(Debug, Clone)]
pub enum MemoryStorage {
    Sqlite {
        path: std::path::PathBuf,
    },
    #[cfg(feature = "cosmos")]
    Cosmos(shared::cosmos::CosmosConfig),
}

impl MemoryStorage {
    /// Where the memory is, in the words of its settings, for an operator's error message.
    pub fn describe(&self) -> String {
        match self {
            MemoryStorage::Sqlite { path } => {
                format!("the SQLite database at {} (DB_PATH)", path.display())
            }
            #[cfg(feature = "cosmos")]
            MemoryStorage::Cosmos(cosmos) => cosmos.describe(),
        }
    }
}

impl fmt::Debug for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Memory")
            .field("backend", &self.conversations.backend())
            .field("database", &self.conversations.database())
            .finish()
    }
}

/// Runs [`ConversationStore::sweep`] and [`PendingActions::sweep_actions`] every `every` until `shutdown` is cancelled. Replicas may
/// all run one: deleting what is already gone is harmless.
pub fn spawn_sweeper(
    store: Arc<dyn ConversationStore>,
    every: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticks.tick() => {
                    match store.sweep().await {
                        Ok(0) => {}
                        Ok(deleted) => tracing::info!(deleted, "memory: expired conversations swept"),
                        Err(error) => tracing::warn!(%error, "memory: sweeping expired conversations failed"),
                    }
                    match store.sweep_actions().await {
                        Ok(0) => {}
                        Ok(deleted) => tracing::info!(deleted, "memory: unconfirmed actions swept"),
                        Err(error) => tracing::warn!(%error, "memory: sweeping unconfirmed actions failed"),
                    }
                }
            }
        }
    })
}

/// The handshake as recorded: whole when it fits in `max_bytes`; else without the client's
/// `experimental` capabilities (which the experts never read); refused if still too big, so a
/// client cannot make every replica store megabytes per session.
fn bounded_handshake(state: &SessionState, max_bytes: usize) -> Result<String, SessionStoreError> {
    let json = serde_json::to_string(state)?;
    if json.len() <= max_bytes {
        return Ok(json);
    }
    let mut trimmed = state.clone();
    trimmed.initialize_params.capabilities.experimental = None;
    let json = serde_json::to_string(&trimmed)?;
    if json.len() <= max_bytes {
        return Ok(json);
    }
    Err(format!(
        "the session handshake is {} bytes, above the limit of {max_bytes}",
        json.len()
    )
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake(experimental_bytes: usize, name_bytes: usize) -> SessionState {
        let params = serde_json::json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {"experimental": {"blob": {"data": "x".repeat(experimental_bytes)}}},
            "clientInfo": {"name": "n".repeat(name_bytes), "version": "1.0"}
        });
        SessionState::new(serde_json::from_value(params).expect("initialize parameters"))
    }

    #[test]
    fn a_handshake_is_recorded_whole_trimmed_or_not_at_all() {
        let small = bounded_handshake(&handshake(10, 10), 16 * 1024).expect("fits");
        assert!(small.contains("xxxxxxxxxx"), "{small}");
        // Megabytes of experimental capabilities are dropped, the rest kept.
        let trimmed = bounded_handshake(&handshake(3_500_000, 10), 16 * 1024).expect("trimmed");
        assert!(trimmed.len() < 1024, "{} bytes", trimmed.len());
        assert!(!trimmed.contains("xxxx"), "{trimmed}");
        assert!(trimmed.contains("2025-11-25"), "{trimmed}");
        // Too big even without them: refused.
        let error = bounded_handshake(&handshake(0, 20_000), 16 * 1024).expect_err("too big");
        assert!(error.to_string().contains("above the limit"), "{error}");
    }
}
