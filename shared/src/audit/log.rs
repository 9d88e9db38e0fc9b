//! The handle services call once per tool call, [`AuditLog`]: it logs the event on the spot and
//! hands it to the one background task that stores events in batches and prunes the old ones.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::{Map, Value};
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

use super::{
    AuditError, AuditEvent, AuditStore, Outcome, SqliteAuditStore, is_restricted, redact::cut,
    redact_arguments,
};
use crate::auth::Identity;

/// Settings of an [`AuditLog`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    /// Events older than this are pruned; `None`: kept forever.
    pub retention: Option<Duration>,
    /// Events waiting for the writer before callers wait too.
    pub capacity: usize,
    /// Events per insert transaction, at most.
    pub batch: usize,
    /// How often old events are pruned (and once at start).
    pub prune_every: Duration,
    /// How long the writer keeps collecting after the first event of a batch before it stores
    /// the batch: one commit for the calls of this interval instead of one per call or two,
    /// which under load cost the service a third of its throughput on two cores. A flush or
    /// a full batch stores at once.
    pub linger: Duration,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            retention: Some(Duration::from_secs(90 * 24 * 3600)),
            capacity: 1024,
            batch: 256,
            prune_every: Duration::from_secs(3600),
            linger: Duration::from_millis(20),
        }
    }
}

/// The audit settings every service flattens into its configuration.
#[derive(Debug, Clone, clap::Args)]
pub struct AuditArgs {
    /// Days the audit trail of tool calls is kept in DB_PATH; older events are deleted at start
    /// and hourly. 0 keeps them forever.
    #[arg(long, env = "AUDIT_RETENTION_DAYS", default_value_t = 90)]
    pub audit_retention_days: u32,
}

impl AuditArgs {
    /// The retention, `None` for forever.
    pub fn retention(&self) -> Option<Duration> {
        (self.audit_retention_days > 0)
            .then(|| Duration::from_secs(u64::from(self.audit_retention_days) * 24 * 3600))
    }

    /// [`AuditSettings`] with this retention.
    pub fn settings(&self) -> AuditSettings {
        AuditSettings {
            retention: self.retention(),
            ..AuditSettings::default()
        }
    }
}

/// An event as one line of JSON, encoded when it is displayed.
struct JsonLine<'a>(&'a AuditEvent);

impl std::fmt::Display for JsonLine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match serde_json::to_string(self.0) {
            Ok(line) => f.write_str(&line),
            Err(error) => write!(f, "{{\"unencodable_audit_event\":{:?}}}", error.to_string()),
        }
    }
}

/// Longest tool name and request id kept: both are the caller's to choose (an unknown tool, an
/// `x-request-id` the caller sent).
const MAX_NAME_CHARS: usize = 128;

enum Message {
    /// Boxed: the channel's slots stay small.
    Event(Box<AuditEvent>),
    /// Answered once every event sent before it is stored.
    Flush(oneshot::Sender<()>),
    /// Store what is pending and stop.
    Close,
}

/// The audit trail of one service. Cheap to clone: clones share the writer.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

struct Inner {
    service: String,
    tx: mpsc::Sender<Message>,
    /// Taken by the first [`AuditLog::close`], which waits for it.
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("service", &self.inner.service)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Starts the writer task (on the current Tokio runtime) storing `service`'s events in
    /// `store`.
    pub fn start(
        service: impl Into<String>,
        store: Arc<dyn AuditStore>,
        settings: AuditSettings,
    ) -> AuditLog {
        let (tx, rx) = mpsc::channel(settings.capacity.max(1));
        let writer = tokio::spawn(write_events(store, rx, settings));
        AuditLog {
            inner: Arc::new(Inner {
                service: service.into(),
                tx,
                writer: Mutex::new(Some(writer)),
            }),
        }
    }

    /// The audit trail of `service` in the SQLite database at `db_path` (the service's own), with
    /// the settings of `args`: the table is created if needed and the writer started.
    pub async fn open_sqlite(
        service: &str,
        db_path: &Path,
        args: &AuditArgs,
    ) -> Result<AuditLog, AuditError> {
        let store = SqliteAuditStore::open(db_path).await?;
        Ok(AuditLog::start(service, Arc::new(store), args.settings()))
    }

    /// Starts timing a call of `tool` by `identity` (`None`: the call carried none). The
    /// arguments are redacted now, before the handler takes them.
    pub fn begin(
        &self,
        tool: &str,
        identity: Option<&Identity>,
        request_id: Option<&str>,
        arguments: Option<&Map<String, Value>>,
    ) -> AuditCall {
        AuditCall {
            pending: Some(Pending {
                log: self.clone(),
                started: Instant::now(),
                time: Utc::now().trunc_subsecs(6),
                request_id: request_id.map(|id| cut(id, MAX_NAME_CHARS)),
                tenant: identity.map(|i| i.tenant.clone()).unwrap_or_default(),
                subject: identity.map(|i| i.subject.clone()).unwrap_or_default(),
                client: identity.and_then(|i| i.client_id.clone()),
                actors: identity.map(|i| i.actors.clone()).unwrap_or_default(),
                tool: cut(tool, MAX_NAME_CHARS),
                arguments: arguments.map_or_else(|| Value::Object(Map::new()), redact_arguments),
            }),
        }
    }

    /// Logs `event` and queues it for storage, waiting while the queue is full.
    pub async fn record(&self, event: AuditEvent) {
        // Encoded only if the line is written (a filter may leave the target out).
        if is_restricted(&event.tool) {
            tracing::warn!(target: "audit", "{}", JsonLine(&event));
        } else {
            tracing::info!(target: "audit", "{}", JsonLine(&event));
        }
        if let Err(unsent) = self.inner.tx.send(Message::Event(Box::new(event))).await
            && let Message::Event(event) = unsent.0
        {
            tracing::error!(
                target: "audit",
                "audit log closed: this event was not stored: {}",
                JsonLine(&event)
            );
        }
    }

    /// Waits until every event recorded before this call is stored (or failed to be).
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.inner.tx.send(Message::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }

    /// Stores every pending event and stops the writer; call once the server has stopped.
    /// Events recorded afterwards are logged but not stored (and say so).
    pub async fn close(&self) {
        let writer = self
            .inner
            .writer
            .lock()
            .expect("the writer slot is never poisoned: nothing panics holding it")
            .take();
        if let Some(writer) = writer {
            let _ = self.inner.tx.send(Message::Close).await;
            if let Err(error) = writer.await {
                tracing::error!(target: "audit", %error, "the audit writer failed");
            }
        }
    }
}

/// A call being timed; [`AuditCall::finish`] records it. Dropped unfinished (the request's
/// future was dropped: the client went away, the server stopped), it records the call as
/// [`Outcome::Abandoned`], so no call goes unrecorded.
#[derive(Debug)]
pub struct AuditCall {
    pending: Option<Pending>,
}

#[derive(Debug)]
struct Pending {
    log: AuditLog,
    started: Instant,
    time: DateTime<Utc>,
    request_id: Option<String>,
    tenant: String,
    subject: String,
    client: Option<String>,
    actors: Vec<String>,
    tool: String,
    arguments: Value,
}

impl Pending {
    fn into_event(self, outcome: Outcome) -> (AuditLog, AuditEvent) {
        let event = AuditEvent {
            time: self.time,
            service: self.log.inner.service.clone(),
            request_id: self.request_id,
            tenant: self.tenant,
            subject: self.subject,
            client: self.client,
            actors: self.actors,
            tool: self.tool,
            arguments: self.arguments,
            outcome,
            duration_us: u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX),
        };
        (self.log, event)
    }
}

impl AuditCall {
    /// Records the call with its `outcome` and duration.
    pub async fn finish(mut self, outcome: Outcome) {
        if let Some(pending) = self.pending.take() {
            let (log, event) = pending.into_event(outcome);
            log.record(event).await;
        }
    }
}

impl Drop for AuditCall {
    fn drop(&mut self) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        let (log, event) = pending.into_event(Outcome::Abandoned);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { log.record(event).await });
            }
            Err(_) => tracing::error!(
                target: "audit",
                tool = %event.tool,
                tenant = %event.tenant,
                "a call was abandoned outside a runtime; its audit event was not stored"
            ),
        }
    }
}

/// Delays before retrying a failed insert; after the last, the batch is reported lost (its
/// events are still in the log).
const RETRY_DELAYS: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_secs(2),
];

/// The writer task: takes what is queued, up to a batch, and stores it in one transaction;
/// prunes on a timer.
async fn write_events(
    store: Arc<dyn AuditStore>,
    mut rx: mpsc::Receiver<Message>,
    settings: AuditSettings,
) {
    // Pruned once before anything else, then on the timer; events queue meanwhile.
    if let Some(retention) = settings.retention {
        prune_older_than(store.as_ref(), retention).await;
    }
    let every = settings.prune_every.max(Duration::from_secs(1));
    let mut prune = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let batch_size = settings.batch.max(1);
    let mut batch = Vec::with_capacity(batch_size);
    let mut acks = Vec::new();
    loop {
        tokio::select! {
            biased;
            message = rx.recv() => {
                let Some(message) = message else { break };
                let mut closing = take(message, &mut batch, &mut acks);
                // Let the calls of the next moments queue up, without waking this task for
                // each (a wake per event costs the callers' cores), unless someone waits.
                if !closing && acks.is_empty() && !batch.is_empty() {
                    tokio::time::sleep(settings.linger).await;
                }
                while !closing && batch.len() < batch_size {
                    match rx.try_recv() {
                        Ok(message) => closing = take(message, &mut batch, &mut acks),
                        Err(_) => break,
                    }
                }
                store_batch(store.as_ref(), &mut batch).await;
                for ack in acks.drain(..) {
                    let _ = ack.send(());
                }
                if closing {
                    // Refuse new events, then store those already queued.
                    rx.close();
                    while let Some(message) = rx.recv().await {
                        let _ = take(message, &mut batch, &mut acks);
                        if batch.len() >= batch_size {
                            store_batch(store.as_ref(), &mut batch).await;
                        }
                    }
                    store_batch(store.as_ref(), &mut batch).await;
                    for ack in acks.drain(..) {
                        let _ = ack.send(());
                    }
                    break;
                }
            }
            _ = prune.tick(), if settings.retention.is_some() => {
                if let Some(retention) = settings.retention {
                    prune_older_than(store.as_ref(), retention).await;
                }
            }
        }
    }
}

/// Adds `message` to the batch or the acknowledgements; true for [`Message::Close`].
fn take(
    message: Message,
    batch: &mut Vec<AuditEvent>,
    acks: &mut Vec<oneshot::Sender<()>>,
) -> bool {
    match message {
        Message::Event(event) => batch.push(*event),
        Message::Flush(ack) => acks.push(ack),
        Message::Close => return true,
    }
    false
}

async fn store_batch(store: &dyn AuditStore, batch: &mut Vec<AuditEvent>) {
    if batch.is_empty() {
        return;
    }
    let mut delays = RETRY_DELAYS.iter();
    loop {
        match store.append(batch).await {
            Ok(()) => break,
            Err(error) => match delays.next() {
                Some(delay) => {
                    tracing::warn!(target: "audit", %error, events = batch.len(), "storing audit events failed; retrying");
                    tokio::time::sleep(*delay).await;
                }
                None => {
                    tracing::error!(target: "audit", %error, events = batch.len(), "audit events could not be stored; they are in this log only");
                    break;
                }
            },
        }
    }
    batch.clear();
}

async fn prune_older_than(store: &dyn AuditStore, retention: Duration) {
    let Some(cutoff) = chrono::Duration::from_std(retention)
        .ok()
        .and_then(|age| Utc::now().checked_sub_signed(age))
    else {
        return; // a retention longer than the calendar: nothing is that old
    };
    match store.prune(cutoff).await {
        Ok(0) => {}
        Ok(deleted) => {
            tracing::info!(target: "audit", deleted, before = %cutoff, "old audit events pruned")
        }
        Err(error) => tracing::warn!(target: "audit", %error, "pruning audit events failed"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::audit::{
        AuditFilter,
        testing::{event, identity, memory_store, object},
    };

    #[tokio::test]
    async fn the_log_stores_every_event_and_prunes_at_start() {
        let store = Arc::new(memory_store().await);
        // An event far older than the retention, there before the service starts.
        store
            .append(&[event("t1", "2000-01-01T00:00:00Z", Outcome::Ok)])
            .await
            .expect("append");
        let log = AuditLog::start(
            "tools-service",
            store.clone(),
            AuditSettings {
                capacity: 4, // smaller than the calls: senders wait, nothing is dropped
                batch: 3,
                ..AuditSettings::default()
            },
        );
        let alice = identity("t1", &["contoso-agent"]);
        let mut calls = Vec::new();
        for i in 0..50 {
            let log = log.clone();
            let alice = alice.clone();
            calls.push(tokio::spawn(async move {
                let args = object(json!({"invoice_id": i, "note": "secret plan"}));
                let call = log.begin("pay_invoice", Some(&alice), Some("req"), Some(&args));
                call.finish(Outcome::Ok).await;
            }));
        }
        for call in calls {
            call.await.expect("call");
        }
        log.close().await;
        let stored = store
            .query(&AuditFilter {
                tenant: Some("t1".into()),
                since: None,
                limit: 1000,
            })
            .await
            .expect("query");
        assert_eq!(stored.len(), 50, "every event stored, the old one pruned");
        let first = &stored[0];
        assert_eq!(first.service, "tools-service");
        assert_eq!(first.subject, "alice");
        assert_eq!(first.client.as_deref(), Some("contoso-billing"));
        assert_eq!(first.actors, ["contoso-agent"]);
        assert_eq!(first.request_id.as_deref(), Some("req"));
        assert_eq!(first.arguments["note"], "<11 chars>");
        // After close, an event is logged but not stored, and nothing hangs.
        log.begin("get_products", None, None, None)
            .finish(Outcome::refused("unauthenticated", None))
            .await;
        log.flush().await;
    }

    #[tokio::test]
    async fn flush_waits_for_the_events_before_it() {
        let store = Arc::new(memory_store().await);
        let log = AuditLog::start(
            "agent-service",
            store.clone(),
            AuditSettings {
                retention: None,
                ..AuditSettings::default()
            },
        );
        for _ in 0..10 {
            log.begin("ask_billing_expert", None, None, None)
                .finish(Outcome::tool_error("invalid_arguments"))
                .await;
        }
        log.flush().await;
        let stored = store
            .query(&AuditFilter {
                tenant: Some(String::new()),
                since: None,
                limit: 100,
            })
            .await
            .expect("query");
        assert_eq!(stored.len(), 10);
        log.close().await;
        log.close().await; // a second close is harmless
    }

    #[tokio::test]
    async fn a_call_dropped_unfinished_is_recorded_as_abandoned() {
        let store = Arc::new(memory_store().await);
        let log = AuditLog::start("tools-service", store.clone(), AuditSettings::default());
        let alice = identity("t1", &[]);
        drop(log.begin("pay_invoice", Some(&alice), None, None));
        // The drop spawned the recording; give it a turn, then flush behind it.
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        log.close().await;
        let stored = store
            .query(&AuditFilter {
                tenant: Some("t1".into()),
                since: None,
                limit: 10,
            })
            .await
            .expect("query");
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].outcome, Outcome::Abandoned);
    }

    #[tokio::test]
    async fn names_the_caller_chooses_are_cut() {
        let store = Arc::new(memory_store().await);
        let log = AuditLog::start("tools-service", store.clone(), AuditSettings::default());
        let long = "x".repeat(10_000);
        log.begin(&long, None, Some(&long), None)
            .finish(Outcome::refused("unknown_tool", None))
            .await;
        log.close().await;
        let stored = store
            .query(&AuditFilter {
                tenant: None,
                since: None,
                limit: 10,
            })
            .await
            .expect("query");
        assert_eq!(stored[0].tool.chars().count(), MAX_NAME_CHARS + 1);
        assert_eq!(
            stored[0].request_id.as_deref().map(|id| id.chars().count()),
            Some(MAX_NAME_CHARS + 1)
        );
    }

    #[test]
    fn retention_zero_keeps_forever() {
        let args = |days| AuditArgs {
            audit_retention_days: days,
        };
        assert_eq!(args(0).retention(), None);
        assert_eq!(args(90).retention(), Some(Duration::from_secs(90 * 86_400)));
        assert_eq!(args(u32::MAX).settings().retention.map(|_| ()), Some(()));
    }
}
