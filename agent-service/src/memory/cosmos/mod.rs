//! The Cosmos DB backend of conversation memory (NoSQL API, `azure_data_cosmos`, connected
//! through [`shared::cosmos`]): the same contract as SQLite, judged by the store's [`Clock`].
//!
//! # Containers and partitions
//! - `conversations`, partitioned on `/pk` = the owner ([`docs::owner_partition`]: a digest of
//!   the length-prefixed tenant and subject, so no two owners share a key): each conversation's
//!   head (owner, activity, which turns it keeps), its turns, its actions waiting for
//!   confirmation, and the link from an MCP session to the conversation it stands for. Every
//!   call names the owner, so each read is a point read or a query within the owner's
//!   partition, and each write that depends on what was read is a write conditioned on the
//!   head's ETag or a transactional batch in the partition.
//! - `sessions`, holding the MCP sessions' records. rmcp's `SessionStore` names a session by its
//!   id alone, so a session's handshake and owner live in a partition of the session's own
//!   (`session_<key>`): every load is a point read, with nothing to fan out over. What must be
//!   decided per owner, the per-owner cap and whether a session is the caller's, is one
//!   document in the owner's partition (`owner_<digest>`, the same key as above), the
//!   [`docs::Roster`], conditioned on its ETag: a session leaves the roster (ended, or pushed out
//!   by the cap) at once, for every replica.
//!
//! # Concurrency
//! Appends, holds, claims and bindings read what they decide on, then write conditioned on it
//! (If-Match, or a batch that creates a document whose id is taken by whoever came first); a
//! 412 or a 409 means someone else won, and the call reads and decides again, a bounded number
//! of times ([`Attempts`]). A turn is created in the same batch that moves the head's `last_seq`,
//! so no two appends take one seq; a confirmation is claimed by one conditional replace, so of
//! any number of racing claims (on any replicas) exactly one gets the action. Appends to one
//! conversation from one replica also queue on a local lock, as SQLite's write lock queues
//! them, so the conditional write contends only with other replicas.
//!
//! # Deletion and native TTL
//! The sweep ([`ConversationStore::sweep`], a cross-partition query run in the background)
//! forgets expired conversations; so does the per-owner cap, on the request path. Forgetting
//! is crash-safe and leaves nothing behind: first the head is marked `forgotten` (conditioned on
//! its ETag, so an append racing it fails and finds the conversation gone), then its turns,
//! actions and session link are deleted, then the head; a forgetting cut short is finished by
//! the next sweep, which also finds marked heads.
//!
//! Cosmos's own per-item TTL (the containers have `default_ttl = -1`: no default, each item may
//! set its `ttl`) is the backstop only where it is certain to outlive the document's logical
//! life, with an hour of margin for rounding and replicas' clocks:
//! - a held action lives a fixed `confirmation_ttl` from when it was held;
//! - a session handshake, a session's owner and an owner's roster live `ttl` from their last
//!   write (a roster's entries are all bound before it is written), and each write renews them.
//!
//! Conversation heads, turns and session links carry none. A conversation's life extends with
//! each turn, and each turn's with it: a turn is alive until `max_turns` later turns push it
//! out, or its conversation expires, so a TTL set when it is written could only be bounded by
//! `max_turns × ttl`, a bound that a longer TTL configured later would break; and a head or link
//! deleted by Cosmos would leave its turns behind with nothing left to find them. So these go
//! only with their conversation, in the order above. Storage stays bounded without the
//! sweeper too: the per-owner cap counts expired conversations (the least recently active, so
//! the first forgotten). Native TTLs are computed from the configuration in force when a
//! document is written: a document written under a shorter `ttl` may go at its old expiry.
//!
//! # Errors
//! The database's own words go to [`MemoryError::Backend`] (logged, never shown to callers).
//! `backend()` is `cosmos`, `database()` the database's name, never the endpoint.

mod docs;
mod pending;
mod sessions;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use azure_data_cosmos::{
    FeedScope, TransactionalBatch,
    clients::ContainerClient,
    models::{
        CompositeIndex, CompositeIndexOrder, CompositeIndexProperty, ContainerProperties,
        IndexingMode, IndexingPolicy, TimeToLive,
    },
    options::{BatchReplaceOptions, ItemWriteOptions, Precondition},
};
use futures::{StreamExt, TryStreamExt, stream};
use serde::de::DeserializeOwned;
use serde_json::Value;
use shared::cosmos::{
    Attempts, CosmosConfig, CosmosFailure, Database, WriteQueues, Written, commit, failed, query,
    read, sql,
};

use self::docs::*;
use super::*;

const CONVERSATIONS: &str = "conversations";
const SESSIONS: &str = "sessions";
/// Beyond the logical life, what a native TTL adds: rounding to seconds, replicas' clocks.
const TTL_MARGIN_SECS: u64 = 60 * 60;
/// Deletions in flight at once when a conversation is forgotten or the sweep deletes.
const PARALLEL: usize = 16;
/// Old turns an append deletes in its batch, at most (a batch holds 100 operations); more are
/// left only after `max_turns` was lowered, hidden from `history`, and go with later appends.
const MAX_DROPS: i64 = 90;
/// Conversations beyond the cap forgotten per query while evicting.
const EVICT_PAGE: i64 = 100;
/// The owner's roster is one document (at most 2 MiB): this many sessions fit with room.
pub const MAX_SESSIONS_PER_OWNER: u32 = 10_000;
/// Local locks that queue one replica's appends to one conversation (by hash).
const APPEND_LOCKS: usize = 64;

/// Conversation memory in a Cosmos DB database. Cloning shares the client.
#[derive(Clone)]
pub struct CosmosConversations {
    database: Database,
    conversations: ContainerClient,
    sessions: ContainerClient,
    config: MemoryConfig,
    /// Injected so tests can expire conversations without waiting.
    clock: Arc<dyn Clock>,
    /// Queue this replica's appends to one conversation (see the module docs).
    appending: WriteQueues,
}

impl fmt::Debug for CosmosConversations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CosmosConversations")
            .field("database", &self.database.name())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl From<CosmosFailure> for MemoryError {
    fn from(failure: CosmosFailure) -> Self {
        MemoryError::Backend(failure.to_string())
    }
}

/// The conversations container's indexing: everything, and the composite index the per-owner
/// cap's `ORDER BY c.last_active_at DESC, c.created_at DESC` needs.
fn conversation_indexing() -> IndexingPolicy {
    let by = |order: CompositeIndexOrder| {
        CompositeIndex::default()
            .with_property(CompositeIndexProperty::new(
                "/last_active_at",
                order.clone(),
            ))
            .with_property(CompositeIndexProperty::new("/created_at", order))
    };
    let mut policy = IndexingPolicy::default()
        .with_indexing_mode(IndexingMode::Consistent)
        .with_included_path("/*")
        .with_composite_index(by(CompositeIndexOrder::Descending))
        .with_composite_index(by(CompositeIndexOrder::Ascending));
    policy.automatic = true;
    policy
}

/// The native TTL of a document whose logical life is `life` from its write; `None` (never)
/// past what Cosmos takes (a 32-bit number of seconds).
fn native_ttl(life: Duration) -> Option<i64> {
    let seconds = life
        .as_secs()
        .saturating_add(u64::from(life.subsec_nanos() > 0))
        .saturating_add(TTL_MARGIN_SECS);
    i64::try_from(seconds)
        .ok()
        .filter(|s| *s <= i64::from(i32::MAX))
}

/// A batch in the head's partition that writes `head` if it is unchanged since it was read,
/// then creates `doc`. The head comes first: a writer that came first makes it fail (412), and
/// nothing else of the batch is applied.
fn with_head<T: serde::Serialize>(
    head: &Head,
    unchanged: Precondition,
    doc: &T,
    operation: &'static str,
) -> Result<TransactionalBatch, CosmosFailure> {
    TransactionalBatch::new(head.pk.clone())
        .replace_item(
            head.id.clone(),
            head,
            Some(BatchReplaceOptions::default().with_precondition(unchanged)),
        )
        .and_then(|batch| batch.create_item(doc))
        .map_err(failed(operation))
}

/// A deletion that found nothing to delete did what it was asked.
fn deleted(
    result: azure_data_cosmos::Result<azure_data_cosmos::models::ItemResponse>,
    operation: &'static str,
) -> Result<bool, CosmosFailure> {
    match result {
        Ok(_) => Ok(true),
        Err(e) if e.status().is_not_found() => Ok(false),
        Err(e) => Err(failed(operation)(e)),
    }
}

fn from_millis(millis: i64) -> MemoryResult<DateTime<Utc>> {
    DateTime::from_timestamp_millis(millis)
        .ok_or_else(|| MemoryError::Backend(format!("timestamp {millis} is out of range")))
}

impl CosmosConversations {
    /// The containers the memory keeps its documents in, as they are created: what a
    /// deployment provisions for a service that authenticates with an Entra identity. Both
    /// allow per-item TTL (`default_ttl = -1`).
    pub fn containers() -> [ContainerProperties; 2] {
        [
            ContainerProperties::new(CONVERSATIONS, "/pk".into())
                .with_indexing_policy(conversation_indexing())
                .with_default_ttl(TimeToLive::NoDefault),
            ContainerProperties::new(SESSIONS, "/pk".into())
                .with_default_ttl(TimeToLive::NoDefault),
        ]
    }

    /// Connects, creates the database and its containers when missing (with a key), and
    /// reads the time from the system clock.
    pub async fn open(cosmos: &CosmosConfig, config: MemoryConfig) -> MemoryResult<Self> {
        Self::open_with_clock(cosmos, config, Arc::new(SystemClock)).await
    }

    /// [`CosmosConversations::open`] with a chosen clock.
    pub async fn open_with_clock(
        cosmos: &CosmosConfig,
        config: MemoryConfig,
        clock: Arc<dyn Clock>,
    ) -> MemoryResult<Self> {
        config.validate()?;
        if config.max_sessions_per_owner > MAX_SESSIONS_PER_OWNER {
            return Err(MemoryError::InvalidConfig(format!(
                "max_sessions_per_owner is at most {MAX_SESSIONS_PER_OWNER} on Cosmos DB (one \
                 document lists an owner's sessions)"
            )));
        }
        let database = Database::open(cosmos).await?;
        let [conversations, sessions] = Self::containers();
        let conversations = database.container(conversations).await?;
        let sessions = database.container(sessions).await?;
        Ok(CosmosConversations {
            database,
            conversations,
            sessions,
            config,
            clock,
            appending: WriteQueues::new(APPEND_LOCKS),
        })
    }

    fn now_millis(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }

    /// Conversations (and sessions) last active at or before this instant are expired.
    fn expiry_cutoff(&self, now: i64) -> i64 {
        now.saturating_sub(self.config.ttl_millis())
    }

    /// The head of `owner`'s conversation `id`, whatever its state, and the condition that it
    /// is unchanged.
    async fn head(&self, owner: &Owner, id: &str) -> MemoryResult<Option<(Head, Precondition)>> {
        let found = read::<Head>(
            &self.conversations,
            &owner_partition(owner),
            id,
            "read conversation",
        )
        .await?;
        Ok(found.filter(|(head, _)| head.kind == CONVERSATION && head.owned_by(owner)))
    }

    /// The head of one of `owner`'s live conversations; unknown otherwise.
    async fn live_head(
        &self,
        owner: &Owner,
        id: &ConversationId,
        now: i64,
    ) -> MemoryResult<(Head, Precondition)> {
        self.head(owner, id.as_str())
            .await?
            .filter(|(head, _)| self.is_live(head, now))
            .ok_or(MemoryError::UnknownConversation)
    }

    fn is_live(&self, head: &Head, now: i64) -> bool {
        !head.forgotten && head.last_active_at > self.expiry_cutoff(now)
    }

    /// Every document of a query within one partition (or, for the sweep, across all).
    async fn list<T: DeserializeOwned + Send + 'static>(
        &self,
        container: &ContainerClient,
        text: &str,
        parameters: &[(&str, Value)],
        scope: FeedScope,
        operation: &'static str,
    ) -> MemoryResult<Vec<T>> {
        Ok(query(container, sql(text, parameters)?, scope, operation).await?)
    }

    /// Deletes documents, any already gone; how many this call deleted.
    async fn delete_all(
        &self,
        container: &ContainerClient,
        keys: Vec<Key>,
        operation: &'static str,
    ) -> MemoryResult<u64> {
        let gone: Vec<bool> = stream::iter(keys.into_iter().map(|key| async move {
            deleted(
                container.delete_item(key.pk, &key.id, None).await,
                operation,
            )
        }))
        .buffer_unordered(PARALLEL)
        .try_collect()
        .await?;
        Ok(gone.into_iter().filter(|g| *g).count() as u64)
    }

    /// Forgets a conversation and everything of it (see the module docs); false if it changed
    /// since `unchanged` was read (it is someone else's to decide now) or another caller
    /// finished first.
    async fn forget(&self, mut head: Head, unchanged: Precondition) -> MemoryResult<bool> {
        if !head.forgotten {
            head.forgotten = true;
            let options = ItemWriteOptions::default().with_precondition(unchanged);
            match self
                .conversations
                .replace_item(head.pk.clone(), &head.id, &head, Some(options))
                .await
            {
                Ok(_) => {}
                Err(e) if e.status().is_precondition_failed() || e.status().is_not_found() => {
                    return Ok(false);
                }
                Err(e) => return Err(failed("forget conversation")(e).into()),
            }
        }
        let children: Vec<Key> = self
            .list(
                &self.conversations,
                "SELECT c.id, c.pk FROM c WHERE c.pk = @pk AND c.conversation_id = @id",
                &[
                    ("@pk", head.pk.clone().into()),
                    ("@id", head.id.clone().into()),
                ],
                FeedScope::partition(head.pk.clone()),
                "list a conversation's documents",
            )
            .await?;
        self.delete_all(&self.conversations, children, "forget conversation")
            .await?;
        Ok(deleted(
            self.conversations
                .delete_item(head.pk, &head.id, None)
                .await,
            "forget conversation",
        )?)
    }

    /// Forgets `owner`'s least recently active conversations beyond the per-owner cap.
    async fn evict_beyond_cap(&self, owner: &Owner) -> MemoryResult<()> {
        let pk = owner_partition(owner);
        let mut evicted = 0;
        loop {
            let beyond: Vec<Versioned<Head>> = self
                .list(
                    &self.conversations,
                    "SELECT * FROM c WHERE c.pk = @pk AND c.type = @type AND c.forgotten = false \
                     ORDER BY c.last_active_at DESC, c.created_at DESC \
                     OFFSET @cap LIMIT @page",
                    &[
                        ("@pk", pk.clone().into()),
                        ("@type", CONVERSATION.into()),
                        ("@cap", self.config.max_conversations_per_owner.into()),
                        ("@page", EVICT_PAGE.into()),
                    ],
                    FeedScope::partition(pk.clone()),
                    "find conversations beyond the cap",
                )
                .await?;
            let found = beyond.len();
            for Versioned { doc, etag } in beyond {
                if self.forget(doc, Precondition::if_match(etag)).await? {
                    evicted += 1;
                }
            }
            if found < EVICT_PAGE as usize {
                break;
            }
        }
        if evicted > 0 {
            tracing::info!(tenant = %owner.tenant, evicted, "oldest conversations forgotten: the owner is at the cap");
        }
        Ok(())
    }

    /// Creates a conversation (with its session link, if any) in one batch.
    async fn create_head(
        &self,
        head: &Head,
        link: Option<(SessionLink, Option<Precondition>)>,
    ) -> MemoryResult<Written> {
        let mut batch = TransactionalBatch::new(head.pk.clone());
        if let Some((link, unchanged)) = link {
            batch = match unchanged {
                // Re-pointing a session's link: conditioned on the link as read.
                Some(unchanged) => batch.replace_item(
                    link.id.clone(),
                    &link,
                    Some(BatchReplaceOptions::default().with_precondition(unchanged)),
                ),
                // The first link: whoever creates it first wins (409 for the others).
                None => batch.create_item(&link),
            }
            .map_err(failed("link a session"))?;
        }
        let batch = batch
            .create_item(head)
            .map_err(failed("create conversation"))?;
        Ok(commit(&self.conversations, batch, "create conversation").await?)
    }
}

#[async_trait]
impl ConversationStore for CosmosConversations {
    async fn create(&self, owner: &Owner) -> MemoryResult<ConversationId> {
        let id = ConversationId::generate()?;
        let head = Head::new(&id, owner, None, self.now_millis());
        self.conversations
            .create_item(head.pk.clone(), &head.id, &head, None)
            .await
            .map_err(failed("create conversation"))?;
        self.evict_beyond_cap(owner).await?;
        Ok(id)
    }

    async fn append(
        &self,
        owner: &Owner,
        id: &ConversationId,
        turn: &Turn,
    ) -> MemoryResult<StoredTurn> {
        let body = serde_json::to_string(turn).map_err(|e| MemoryError::Backend(e.to_string()))?;
        if body.len() > self.config.max_turn_bytes {
            return Err(MemoryError::TurnTooLarge {
                bytes: body.len(),
                limit: self.config.max_turn_bytes,
            });
        }
        let _queued = self.appending.enter(id.as_str()).await;
        let mut attempts = Attempts::new("append a turn");
        loop {
            attempts.next().await?;
            let now = self.now_millis();
            let (mut head, unchanged) = self.live_head(owner, id, now).await?;
            let seq = head.last_seq + 1;
            let keep_from = head
                .first_seq
                .max(seq - i64::from(self.config.max_turns) + 1);
            let drop_to = keep_from.min(head.first_seq + MAX_DROPS);
            let dropped: Vec<String> = (head.first_seq..drop_to)
                .map(|old| turn_id(&head.id, old))
                .collect();
            head.first_seq = drop_to;
            head.last_seq = seq;
            head.last_active_at = now;
            let doc = TurnDoc {
                id: turn_id(&head.id, seq),
                pk: head.pk.clone(),
                kind: TURN.to_owned(),
                conversation_id: head.id.clone(),
                seq,
                recorded_at: now,
                body: body.clone(),
            };
            let batch = with_head(&head, unchanged, &doc, "append a turn")?;
            let batch = dropped
                .into_iter()
                .fold(batch, |batch, old| batch.delete_item(old, None));
            match commit(&self.conversations, batch, "append a turn").await? {
                Written::Done => {
                    return Ok(StoredTurn {
                        seq: u64::try_from(seq).map_err(|e| MemoryError::Backend(e.to_string()))?,
                        recorded_at: from_millis(now)?,
                        turn: turn.clone(),
                    });
                }
                Written::Stale | Written::Exists => continue,
            }
        }
    }

    async fn history(
        &self,
        owner: &Owner,
        id: &ConversationId,
        last: Option<usize>,
    ) -> MemoryResult<Vec<StoredTurn>> {
        let now = self.now_millis();
        let (head, _) = self.live_head(owner, id, now).await?;
        let mut from = head
            .first_seq
            .max(head.last_seq - i64::from(self.config.max_turns) + 1);
        if let Some(last) = last {
            let last = i64::try_from(last).unwrap_or(i64::MAX);
            from = from.max(head.last_seq.saturating_sub(last).saturating_add(1));
        }
        if from > head.last_seq {
            return Ok(Vec::new());
        }
        // Up to the head's last seq: a turn appended since the head was read is not in this
        // snapshot, as in SQLite's read transaction.
        let mut turns: Vec<TurnDoc> = self
            .list(
                &self.conversations,
                "SELECT * FROM c WHERE c.pk = @pk AND c.type = @type \
                 AND c.conversation_id = @id AND c.seq >= @from AND c.seq <= @to",
                &[
                    ("@pk", head.pk.clone().into()),
                    ("@type", TURN.into()),
                    ("@id", head.id.clone().into()),
                    ("@from", from.into()),
                    ("@to", head.last_seq.into()),
                ],
                FeedScope::partition(head.pk.clone()),
                "read turns",
            )
            .await?;
        turns.sort_by_key(|t| t.seq);
        turns
            .into_iter()
            .map(|t| {
                Ok(StoredTurn {
                    seq: u64::try_from(t.seq).map_err(|e| MemoryError::Backend(e.to_string()))?,
                    recorded_at: from_millis(t.recorded_at)?,
                    turn: serde_json::from_str(&t.body)
                        .map_err(|e| MemoryError::Backend(e.to_string()))?,
                })
            })
            .collect()
    }

    async fn for_session(
        &self,
        owner: &Owner,
        session: &SessionKey,
    ) -> MemoryResult<ConversationId> {
        let pk = owner_partition(owner);
        let mut attempts = Attempts::new("bind a session");
        loop {
            attempts.next().await?;
            let now = self.now_millis();
            let found = read::<SessionLink>(
                &self.conversations,
                &pk,
                &link_id(session),
                "read a session's conversation",
            )
            .await?;
            let mut replaced = None;
            let unchanged = match found {
                Some((link, unchanged)) => {
                    if let Some((head, head_unchanged)) =
                        self.head(owner, &link.conversation_id).await?
                    {
                        if self.is_live(&head, now) {
                            return ConversationId::parse(&head.id);
                        }
                        replaced = Some((head, head_unchanged));
                    }
                    // Expired, forgotten or gone: the session starts afresh rather than
                    // reviving old turns.
                    Some(unchanged)
                }
                None => None,
            };
            let id = ConversationId::generate()?;
            let head = Head::new(&id, owner, Some(session), now);
            let link = SessionLink {
                id: link_id(session),
                pk: pk.clone(),
                kind: SESSION_LINK.to_owned(),
                conversation_id: head.id.clone(),
            };
            match self.create_head(&head, Some((link, unchanged))).await? {
                Written::Done => {}
                // Another replica linked the session first: use what it linked.
                Written::Stale | Written::Exists => continue,
            }
            if let Some((old, old_unchanged)) = replaced
                && let Err(error) = self.forget(old, old_unchanged).await
            {
                // Expired already, so unknown to everyone; the sweep deletes it.
                tracing::warn!(%error, "memory: forgetting a session's expired conversation failed");
            }
            self.evict_beyond_cap(owner).await?;
            return Ok(id);
        }
    }

    async fn sweep(&self) -> MemoryResult<u64> {
        let cutoff = self.expiry_cutoff(self.now_millis());
        let expired: Vec<Versioned<Head>> = self
            .list(
                &self.conversations,
                "SELECT * FROM c WHERE c.type = @type \
                 AND (c.last_active_at <= @cutoff OR c.forgotten = true)",
                &[("@type", CONVERSATION.into()), ("@cutoff", cutoff.into())],
                FeedScope::full_container(),
                "find expired conversations",
            )
            .await?;
        let mut swept = 0;
        for Versioned { doc, etag } in expired {
            if self.forget(doc, Precondition::if_match(etag)).await? {
                swept += 1;
            }
        }
        self.sweep_sessions(cutoff).await?;
        Ok(swept)
    }

    async fn ping(&self) -> MemoryResult<()> {
        Ok(self.database.ping().await?)
    }

    fn backend(&self) -> &'static str {
        "cosmos"
    }

    fn database(&self) -> String {
        self.database.name().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_ttls_outlive_the_logical_life_and_fit_cosmos() {
        assert_eq!(native_ttl(Duration::from_secs(300)), Some(300 + 3600));
        assert_eq!(native_ttl(Duration::from_millis(1500)), Some(2 + 3600));
        assert_eq!(native_ttl(Duration::from_secs(u64::from(u32::MAX))), None);
    }
}
