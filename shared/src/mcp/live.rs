//! The in-memory half of legacy MCP sessions, bounded.
//!
//! rmcp's `LocalSessionManager` keeps one worker task per session until the session has been
//! idle for its keep-alive (5 minutes by default) and has no cap: a client that initializes and
//! walks away, again and again, grows the service by every abandoned session for five minutes.
//! Here the live sessions are a cache in front of the session store, which stays the record:
//! at most `max_live` are in memory, the least recently used goes first, an idle one is closed
//! after `idle`, and a session closed either way is restored from the store (by any replica)
//! the next time its client uses it, without the client initializing again.
//!
//! rmcp routes a request's answer and progress by its JSON-RPC id within the session, so a
//! request sent under the id of one still running takes over the routing of the first: the
//! first one's answer goes to the second's stream, and the first's stream is never completed
//! and stays in the session's memory for as long as the session lives. Clients that send
//! every request with `id: 1` and drop a stream before its end exist, so here a request whose
//! id is still running in its session is answered with an invalid-request error instead, and
//! each request's stream is drained to its end even when its client has gone, which is how a
//! request is known to have finished.

use std::{
    collections::HashSet,
    num::NonZeroUsize,
    sync::{Arc, LazyLock, Mutex, Weak},
    time::Duration,
};

use futures::{SinkExt, Stream, StreamExt};
use lru::LruCache;
use rmcp::{
    model::{ClientJsonRpcMessage, ErrorData, JsonRpcMessage, RequestId, ServerJsonRpcMessage},
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
    /// The requests still running, by session and JSON-RPC id.
    running: Arc<Mutex<HashSet<(SessionId, RequestId)>>>,
}

/// Every live-session cache of this process (devstack runs several services in one), summed
/// into one gauge when metrics are read; a dropped cache leaves the sum.
static OBSERVED: Mutex<Vec<Weak<LiveSessions>>> = Mutex::new(Vec::new());

/// `mcp.server.sessions.live`, read on each export or scrape rather than updated on each change,
/// so admitting and closing sessions cost nothing more.
static LIVE_GAUGE: LazyLock<opentelemetry::metrics::ObservableUpDownCounter<i64>> =
    LazyLock::new(|| {
        crate::telemetry::metrics::meter()
            .i64_observable_up_down_counter("mcp.server.sessions.live")
            .with_unit("{session}")
            .with_description("Legacy MCP sessions live in memory")
            .with_callback(|observer| {
                let mut caches = lock(&OBSERVED);
                caches.retain(|cache| cache.strong_count() > 0);
                let live: usize = caches
                    .iter()
                    .filter_map(Weak::upgrade)
                    .map(|cache| cache.live())
                    .sum();
                observer.observe(i64::try_from(live).unwrap_or(i64::MAX), &[]);
            })
            .build()
    });

/// Messages of one request's stream waiting for its client to read them; rmcp's own
/// per-request buffer is as small.
const STREAM_BUFFER: usize = 16;

/// Locks `mutex`, whose every operation is one call into it, so a panic while holding it
/// leaves it consistent and a poisoned lock is still good to use.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl LiveSessions {
    pub fn new(bounds: LiveBounds) -> Self {
        let mut inner = LocalSessionManager::default();
        inner.session_config.keep_alive = Some(bounds.idle);
        Self {
            inner,
            recent: Mutex::new(LruCache::new(bounds.max_live)),
            running: Arc::default(),
        }
    }

    /// How many sessions are live in memory.
    pub fn live(&self) -> usize {
        self.with_recent(|recent| recent.len())
    }

    /// Counts this cache's sessions in the `mcp.server.sessions.live` gauge for as long as it
    /// exists. Called after telemetry is initialised (the gauge is made on first use).
    pub fn observed(self: Arc<Self>) -> Arc<Self> {
        LazyLock::force(&LIVE_GAUGE);
        lock(&OBSERVED).push(Arc::downgrade(&self));
        self
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
        f(&mut lock(&self.recent))
    }
}

/// Whether `event` is the answer (result or error) to request `id`.
fn answers(event: &ServerSseMessage, id: &RequestId) -> bool {
    match event.message.as_deref() {
        Some(JsonRpcMessage::Response(response)) => &response.id == id,
        Some(JsonRpcMessage::Error(error)) => error.id.as_ref() == Some(id),
        _ => false,
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
        let (mut tx, rx) = futures::channel::mpsc::channel(STREAM_BUFFER);
        let key = match &message {
            JsonRpcMessage::Request(request) => Some((id.clone(), request.id.clone())),
            _ => None,
        };
        if let Some(key) = &key
            && !lock(&self.running).insert(key.clone())
        {
            tracing::info!(
                "refused an MCP request under the id of one still running in its session"
            );
            let error = ErrorData::invalid_request(
                format!(
                    "request id {} is still in use by an unfinished request of this session; \
                     send each request with an id of its own",
                    key.1
                ),
                None,
            );
            let answer = ServerJsonRpcMessage::error(error, Some(key.1.clone()));
            // The receiver is ours, so the send cannot fail; the stream ends after it.
            let _ = tx.try_send(ServerSseMessage::from_message(answer));
            return Ok(rx);
        }
        let inner = match SessionManager::create_stream(&self.inner, id, message).await {
            Ok(inner) => inner,
            Err(error) => {
                if let Some(key) = &key {
                    lock(&self.running).remove(key);
                }
                return Err(error);
            }
        };
        // The id is free again as soon as its answer passes, before the client can have seen
        // it (a client that sends every request as `id: 1` sends the next only then); the
        // stream is read to its end (rmcp ends it after the answer, or when the session
        // closes) even after the client has gone.
        let running = self.running.clone();
        let mut key = key;
        tokio::spawn(async move {
            let release = |key: &mut Option<(SessionId, RequestId)>| {
                if let Some(key) = key.take() {
                    lock(&running).remove(&key);
                }
            };
            let mut inner = std::pin::pin!(inner);
            let mut client = Some(tx);
            while let Some(event) = inner.next().await {
                if key.as_ref().is_some_and(|(_, id)| answers(&event, id)) {
                    release(&mut key);
                }
                if let Some(to) = &mut client
                    && to.send(event).await.is_err()
                {
                    client = None;
                }
            }
            release(&mut key);
        });
        Ok(rx)
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
