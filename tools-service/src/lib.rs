//! The Contoso tools service: an MCP server that exposes a telecom's customer-service
//! operations as typed tools over streamable HTTP.
//!
//! Layers, outermost first:
//! - [`http`]: the axum router (`/mcp`, `/healthz`, `/readyz`) and the MCP transport settings;
//! - [`tools`]: the tool catalogue, argument parsing, output rendering, and the operations;
//! - [`troubleshoot`]: the long-running diagnosis with progress and cancellation;
//! - [`search`]: knowledge-base ranking (BM25, optionally blended with embeddings);
//! - [`store`]: the storage trait and its SQLite backend; [`seed`]: the demo data set;
//! - [`domain`] and [`money`]: the entities and exact money they are made of.
//!
//! [`run`] wires them from a [`Config`] and serves until the shutdown future completes; [`cli`]
//! is what the binary does with its command line (serve, `--print-policy`, `audit`).

pub mod cli;
pub mod config;
pub mod domain;
pub mod http;
pub mod money;
pub mod search;
pub mod seed;
pub mod store;
pub mod tools;
pub mod troubleshoot;

use std::{future::Future, sync::Arc, time::Instant};

use anyhow::Context;
use shared::audit::AuditLog;
use tokio::net::TcpListener;

pub use config::{Config, ValidConfig};

use crate::{
    search::{AzureOpenAiEmbedder, Embedder, KnowledgeIndex},
    store::SeedData,
    tools::AppState,
};

/// Opens and seeds the store, builds the search index, and serves MCP on `listener` until
/// `shutdown` completes.
pub async fn run(
    valid: ValidConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let ValidConfig {
        config,
        auth: plan,
        bounds,
        storage,
    } = valid;
    // Reach the token issuer before touching the database: an unreachable issuer is a
    // configuration error, and nothing should be created or seeded for a service that won't run.
    let mode = plan
        .build(reqwest::Client::new(), &listener.local_addr())
        .await?;
    let storage = storage
        .open()
        .await
        .with_context(|| format!("opening {}", storage.describe()))?;
    tracing::info!(
        backend = storage.health.backend(),
        database = %storage.health.database(),
        "storage open"
    );
    seed_if_needed(storage.seeding.as_ref(), &config).await?;
    // The audit trail, in DB_PATH beside its data.
    let audit = AuditLog::open_sqlite("tools-service", &config.db_path, &config.audit).await?;
    let embedder: Option<Arc<dyn Embedder>> = match config.embedding()? {
        Some(deployment) => Some(Arc::new(AzureOpenAiEmbedder::new(&deployment)?)),
        None => None,
    };
    let index = KnowledgeIndex::build(storage.knowledge.as_ref(), embedder).await?;
    tracing::info!(
        documents = index.len(),
        mode = index.mode(),
        "knowledge base indexed"
    );
    let state = Arc::new(AppState {
        storage,
        index: Arc::new(index),
        troubleshoot_step: config.troubleshoot_step(),
        audit: audit.clone(),
    });
    if config.allow_open_network && !matches!(mode, shared::auth::AuthMode::Jwt(_)) {
        tracing::warn!(addr = %config.bind_addr, "ALLOW_OPEN_NETWORK=true: tools are reachable from the network without verified tokens");
    }
    let auth = Arc::new(plan.authenticator(mode, listener.local_addr()));
    let router = http::router(
        http::Parts {
            state,
            auth,
            policy: Arc::new(plan.policy),
        },
        &config.host_guard,
    );
    let served = shared::http::serve_with(listener, router.router, bounds, async move {
        shutdown.await;
        router.guard.trigger();
    })
    .await;
    // Every request has answered: store what the audit trail still holds.
    audit.close().await;
    served?;
    Ok(())
}

/// Seeds per `FORCE_SEED` / `SEED_ON_STARTUP`.
pub async fn seed_if_needed(store: &dyn SeedData, config: &Config) -> anyhow::Result<()> {
    let reason = if config.force_seed {
        "FORCE_SEED=true"
    } else if config.seed_on_startup && store.is_empty().await? {
        "empty database"
    } else {
        return Ok(());
    };
    seed_store(
        store,
        reason,
        config.seed_customer_count,
        config.seed_random,
    )
    .await
}

/// Replaces what `store` holds with `count` random customers from `rng_seed` and the scenario
/// customers, and logs what was written and how long it took.
pub async fn seed_store(
    store: &dyn SeedData,
    reason: &str,
    count: u32,
    rng_seed: u64,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let data = seed::generate(count, rng_seed, chrono::Utc::now());
    let generated_ms = started.elapsed().as_millis() as u64;
    store
        .replace_all(&data)
        .await
        .context("seeding the database")?;
    tracing::info!(
        reason,
        customers = data.customers.len(),
        rng_seed,
        subscriptions = data.subscriptions.len(),
        invoices = data.invoices.len(),
        usage_rows = data.usage.len(),
        generated_ms,
        duration_ms = started.elapsed().as_millis() as u64,
        "database seeded"
    );
    Ok(())
}
