//! The in-memory half of legacy MCP sessions, bounded.
//!
//! rmcp's `LocalSessionManager` keeps one worker task per session until the session has been
//! idle for its keep-alive (5 minutes by default) and has no cap: a client that initializes and
//! walks away, again and again, grows the service by every abandoned session for five minutes.
//! Here the live sessions are a cache in front of the session store, which stays the record:
//! at most `max_live` are in memory, the least recently used goes first, an idle one is closed
//! after `idle`, and a session closed either way is restored from the store (by any replica)
//! the next time its client uses it, without the client initializing again.

use std::{num::NonZeroUsize, sync::Mutex, time::Duration};

use futures::Stream;
use lru::LruCache;
use rmcp::{
    model::{ClientJsonRpcMessage, ServerJsonRpcMessage},
    transport::{
        WorkerTransport,
        common::server_side_http::{ServerSseMessage, SessionId},
        streamable_http_server::session::{
            RestoreOutcome, SessionManager,
            local::{LocalSessionManager, LocalSessionManagerError, LocalSessionWorker},
        },
    },
};

/// How many legacy sessions a service keeps in memory, and for how long an idle one stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveBounds {
    /// Sessions kept in memory at once; one more closes the least recently used.
    pub max_live: NonZeroUsize,
    /// A session with no request for this long is closed in memory.
    pub idle: Duration,
}

impl Default for LiveBounds {
    fn default() -> Self {
        Self {
            max_live: NonZeroUsize::new(1_000).unwrap_or(NonZeroUsize::MIN),
            idle: Duration::from_secs(120),
        }
    }
}

/// rmcp's local session manager with a cap on live sessions (least recently used out first)
/// and a shorter idle close. Each session's recency is updated by every message of its client.
#[derive(Debug)]
pub struct LiveSessions {
    inner: LocalSessionManager,
    /// The live sessions, most recently used last. A std lock: never held across an await.
    recent: Mutex<LruCache<SessionId, ()>>,
}

impl LiveSessions {
    pub fn new(bounds: LiveBounds) -> Self {
        let mut inner = LocalSessionManager::default();
        inner.session_config.keep_alive = Some(bounds.idle);
        Self {
            inner,
            recent: Mutex::new(LruCache::new(bounds.max_live)),
        }
    }

    /// How many sessions are live in memory.
    pub fn live(&self) -> usize {
        self.with_recent(|recent| recent.len())
    }

    /// Closes `id` in memory, if it is live. The store keeps its handshake: whether the session
    /// may go on is the store's decision, not this cache's.
    pub async fn close(&self, id: &str) {
        let id = SessionId::from(id);
        self.with_recent(|recent| recent.pop(&id));
        if let Err(error) = self.inner.close_session(&id).await {
            tracing::warn!(%error, "closing an MCP session in memory failed");
        }
    }

    /// Records `id` as live and most recently used; closes whichever session that pushes out.
    async fn admit(&self, id: &SessionId) {
        let pushed_out = self
            .with_recent(|recent| recent.push(id.clone(), ()))
            .map(|(old, ())| old)
            .filter(|old| old != id);
        if let Some(old) = pushed_out {
            tracing::debug!(
                "the least recently used MCP session leaves memory: the cap is reached"
            );
            if let Err(error) = self.inner.close_session(&old).await {
                tracing::warn!(%error, "closing an MCP session in memory failed");
            }
        }
    }

    fn touch(&self, id: &SessionId) {
        self.with_recent(|recent| recent.promote(id));
    }

    fn with_recent<T>(&self, f: impl FnOnce(&mut LruCache<SessionId, ()>) -> T) -> T {
        // A panic while holding this lock leaves the cache consistent (each operation is one
        // call into it), so a poisoned lock is still good to use.
        let mut recent = self
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut recent)
    }
}

impl SessionManager for LiveSessions {
    type Error = LocalSessionManagerError;
    type Transport = WorkerTransport<LocalSessionWorker>;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        let (id, transport) = self.inner.create_session().await?;
        self.admit(&id).await;
        Ok((id, transport))
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        self.touch(id);
        self.inner.initialize_session(id, message).await
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        self.inner.has_session(id).await
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        self.with_recent(|recent| recent.pop(id));
        self.inner.close_session(id).await
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.touch(id);
        SessionManager::create_stream(&self.inner, id, message).await
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        self.touch(id);
        self.inner.accept_message(id, message).await
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.touch(id);
        SessionManager::create_standalone_stream(&self.inner, id).await
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.touch(id);
        SessionManager::resume(&self.inner, id, last_event_id).await
    }

    async fn restore_session(
        &self,
        id: SessionId,
    ) -> Result<RestoreOutcome<Self::Transport>, Self::Error> {
        let outcome = self.inner.restore_session(id.clone()).await?;
        if matches!(outcome, RestoreOutcome::Restored(_)) {
            self.admit(&id).await;
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounded(max_live: usize) -> LiveSessions {
        LiveSessions::new(LiveBounds {
            max_live: NonZeroUsize::new(max_live).unwrap_or(NonZeroUsize::MIN),
            idle: Duration::from_secs(60),
        })
    }

    #[tokio::test]
    async fn the_least_recently_used_session_leaves_memory_at_the_cap() {
        let sessions = bounded(2);
        let (first, _t1) = sessions.create_session().await.expect("in memory");
        let (second, _t2) = sessions.create_session().await.expect("in memory");
        // The first is used again, so the second is now the least recently used.
        sessions.touch(&first);
        let (third, _t3) = sessions.create_session().await.expect("in memory");
        assert_eq!(sessions.live(), 2);
        assert!(sessions.has_session(&first).await.expect("in memory"));
        assert!(!sessions.has_session(&second).await.expect("in memory"));
        assert!(sessions.has_session(&third).await.expect("in memory"));
    }

    #[tokio::test]
    async fn a_closed_session_is_no_longer_counted_and_can_be_restored() {
        let sessions = bounded(4);
        let (id, _transport) = sessions.create_session().await.expect("in memory");
        sessions.close(&id).await;
        assert_eq!(sessions.live(), 0);
        assert!(!sessions.has_session(&id).await.expect("in memory"));
        let outcome = sessions
            .restore_session(id.clone())
            .await
            .expect("in memory");
        assert!(matches!(outcome, RestoreOutcome::Restored(_)));
        assert_eq!(sessions.live(), 1);
        assert!(sessions.has_session(&id).await.expect("in memory"));
    }
}
