//! Measures what the audit trail costs a tool call: on the request path (`begin` + `finish`:
//! redacting the arguments, timing, queueing the event; with and without the JSON log line
//! written), and how many events per second the writer stores in SQLite (one transaction per
//! batch) before callers would feel backpressure.
//!
//! Run: `cargo run --release -p shared --features audit --example audit_bench`
#![allow(clippy::print_stdout)] // printing the report is this program's job

use std::{
    collections::BTreeSet,
    io,
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use shared::{
    audit::{
        AuditError, AuditEvent, AuditFilter, AuditLog, AuditSettings, AuditStore, Outcome,
        SqliteAuditStore,
    },
    auth::Identity,
};

/// Stores nothing: isolates what the caller pays from what the database does.
struct Discard;

#[async_trait]
impl AuditStore for Discard {
    async fn append(&self, _events: &[AuditEvent]) -> Result<(), AuditError> {
        Ok(())
    }
    async fn query(&self, _filter: &AuditFilter) -> Result<Vec<AuditEvent>, AuditError> {
        Ok(Vec::new())
    }
    async fn prune(&self, _older_than: DateTime<Utc>) -> Result<u64, AuditError> {
        Ok(0)
    }
}

fn identity() -> Identity {
    Identity {
        subject: "alice".into(),
        object_id: None,
        tenant: "c0a7050c-0000-4000-8000-000000000001".into(),
        roles: BTreeSet::from(["billing".to_owned()]),
        scopes: BTreeSet::new(),
        client_id: Some("contoso-agent".into()),
        expires_at: i64::MAX,
        audiences: Vec::new(),
        actors: vec!["contoso-agent".into()],
    }
}

fn arguments() -> Map<String, Value> {
    match json!({"customer_id": 251, "category": "billing", "subject": "My bill",
                 "description": "It is twice the usual amount"})
    {
        Value::Object(map) => map,
        _ => unreachable!("an object literal"),
    }
}

/// Audits `calls` calls from `tasks` concurrent callers; returns the mean time a call spent in
/// `begin` + `finish`, and the wall time until every event was stored.
async fn drive(log: &AuditLog, calls: usize, tasks: usize) -> (Duration, Duration) {
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let log = log.clone();
        handles.push(tokio::spawn(async move {
            let identity = identity();
            let args = arguments();
            let mut spent = Duration::ZERO;
            for _ in 0..calls / tasks {
                let begun = Instant::now();
                let call = log.begin(
                    "create_support_ticket",
                    Some(&identity),
                    Some("a4c65b98-d6b2-4637-ab27-09123da91252"),
                    Some(&args),
                );
                call.finish(Outcome::Ok).await;
                spent += begun.elapsed();
            }
            spent
        }));
    }
    let mut spent = Duration::ZERO;
    for handle in handles {
        spent += handle.await.expect("caller task");
    }
    log.flush().await;
    (spent / calls as u32, started.elapsed())
}

fn settings() -> AuditSettings {
    AuditSettings {
        retention: None,
        ..AuditSettings::default()
    }
}

#[tokio::main]
async fn main() {
    const CALLS: usize = 200_000;
    const TASKS: usize = 16;

    let discard = AuditLog::start("bench", Arc::new(Discard), settings());
    drive(&discard, 10_000, 1).await; // warm-up
    let (per_call, _) = drive(&discard, CALLS, 1).await;
    println!("request path, log line filtered out: {per_call:?} per call");

    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteAuditStore::open(&dir.path().join("audit.db"))
        .await
        .expect("database");
    let sqlite = AuditLog::start("bench", Arc::new(store.clone()), settings());
    let (per_call, wall) = drive(&sqlite, CALLS, TASKS).await;
    println!(
        "SQLite writer: {:.0} events/s stored ({CALLS} calls from {TASKS} tasks in {wall:?}; \
         {per_call:?} per call, backpressure included)",
        CALLS as f64 / wall.as_secs_f64()
    );
    sqlite.close().await;

    // The JSON line written (to a sink), as at the default log level.
    tracing_subscriber::fmt()
        .with_writer(io::sink)
        .with_env_filter("info")
        .init();
    let (per_call, _) = drive(&discard, CALLS, 1).await;
    println!("request path, log line written: {per_call:?} per call");
    discard.close().await;
}
