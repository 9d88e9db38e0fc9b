//! Tool argument decoding, validation and the handlers behind them, for all 19 tools of the tools
//! service: the first byte of an input picks the tool (and whether the arguments arrive as text,
//! as over HTTP, or as an already-parsed `serde_json::Value`, the fallback), the rest is the
//! arguments' JSON text. Every input goes through `Catalog::call`, the same function
//! `tools/call` runs once the caller is authorised, against a seeded SQLite store built once in a
//! temporary directory.
//!
//! Checks, besides no panic: the answer is a result or a tool error, never an internal error (a
//! storage or SQL failure that some argument provoked), and an error message is short (it never
//! echoes a megabyte back).
#![no_main]

use std::{
    collections::BTreeSet,
    sync::{Arc, OnceLock},
    time::Duration,
};

use libfuzzer_sys::fuzz_target;
use shared::{
    audit::{AuditArgs, AuditLog},
    auth::Identity,
};
use tokio_util::sync::CancellationToken;
use tools_service::{
    search::KnowledgeIndex,
    seed,
    store::{SeedData, Storage, sqlite::SqliteStore},
    tools::{AppState, Arguments, CallContext, Catalog, ToolError},
};

/// What every input shares: the runtime, the seeded service state, the catalogue.
struct Harness {
    runtime: tokio::runtime::Runtime,
    state: Arc<AppState>,
    catalog: Catalog,
    names: Vec<String>,
    /// Kept so the database outlives every input.
    _dir: tempfile::TempDir,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a Tokio runtime");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let db = dir.path().join("contoso.db");
        let state = runtime.block_on(async {
            let store = SqliteStore::open(&db).await.expect("open the store");
            // The nine scenario customers and a few random ones, as the tests seed.
            let data = seed::generate(20, 42, chrono::Utc::now());
            store.replace_all(&data).await.expect("seed the store");
            let storage = Storage::of(store);
            let index = KnowledgeIndex::build(storage.knowledge.as_ref(), None)
                .await
                .expect("index the knowledge base");
            let audit = AuditLog::open_sqlite(
                "tools-service",
                &db,
                &AuditArgs {
                    audit_retention_days: 0,
                },
            )
            .await
            .expect("open the audit trail");
            Arc::new(AppState {
                storage,
                index: Arc::new(index),
                // The diagnosis's nine steps take no time here.
                troubleshoot_step: Duration::ZERO,
                audit,
            })
        });
        let catalog = Catalog::new();
        let names: Vec<String> = catalog.names().map(str::to_owned).collect();
        assert_eq!(names.len(), 19, "every tool is fuzzed");
        Harness {
            runtime,
            state,
            catalog,
            names,
            _dir: dir,
        }
    })
}

fn identity() -> Identity {
    Identity {
        subject: "fuzz".into(),
        object_id: None,
        tenant: "contoso".into(),
        roles: BTreeSet::from(["security".to_owned()]),
        scopes: BTreeSet::new(),
        client_id: None,
        expires_at: i64::MAX,
        audiences: Vec::new(),
        actors: Vec::new(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, text)) = data.split_first() else {
        return;
    };
    // Arguments reach a tool as JSON text: always UTF-8.
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let h = harness();
    let name = &h.names[usize::from(selector) % h.names.len()];
    let arguments = if selector >= 128 {
        // The fallback: rmcp's parsed object (only objects reach a handler that way).
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(object)) => Arguments::Value(object),
            _ => return,
        }
    } else {
        Arguments::Text(Arc::from(text))
    };
    let ctx = CallContext {
        identity: identity(),
        progress: None,
        cancel: CancellationToken::new(),
    };
    let answer = h
        .runtime
        .block_on(h.catalog.call(name, h.state.clone(), arguments, ctx));
    if let Err(error) = answer {
        assert!(
            !matches!(error, ToolError::Internal),
            "{name}({text:?}) failed internally"
        );
        let message = error.for_caller(Some("fuzz"));
        assert!(
            message.len() < 2000,
            "{name}: a {}-byte error message",
            message.len()
        );
    }
});
