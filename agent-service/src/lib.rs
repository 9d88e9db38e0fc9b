//! The agent service: domain expert agents exposed as MCP tools (`ask_billing_expert`,
//! `ask_account_expert`, `ask_product_expert`). Each expert chains the tools service's tools over
//! MCP with the caller's own bearer token, so it can never do what its caller could not.
//!
//! - [`config`]: the settings, validated before any port is bound;
//! - [`server`] and [`http`]: the `ask_*_expert` MCP tools and the HTTP surface;
//! - [`experts`]: the three domain experts: tool name, instructions, tool subset;
//! - [`agent`]: one expert's turn with a model: tool calls in parallel with the caller's
//!   authority, errors fed back, a step limit and a time budget;
//! - [`memory`]: conversation turns, stored durably and keyed by tenant, subject and
//!   conversation id, so a restart or a second replica continues a conversation;
//! - [`model`]: the chat model the experts think with (Azure OpenAI or any OpenAI-compatible
//!   endpoint), chosen by settings; none means the offline planner;
//! - [`planner`]: the offline planner: with no model, recognises the intent and entities of a
//!   question, investigates through the same tools and writes a factual answer from the results;
//! - [`upstream`]: the MCP client of the tools service: the tools a caller may use, calls with
//!   the caller's token, progress relayed and cancellation passed on.

pub mod agent;
pub mod config;
pub mod experts;
pub mod http;
pub mod memory;
pub mod model;
pub mod planner;
pub mod server;
pub mod upstream;

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use shared::mcp::Sessions;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{Config, ValidConfig};

use crate::{
    memory::{ConversationStore, SqliteConversations},
    server::AppState,
    upstream::{PassThrough, ToolsClient},
};

/// How often expired conversations are deleted.
const SWEEP_EVERY: Duration = Duration::from_secs(10 * 60);
/// Connecting to the tools service; a call's own duration is bounded by the time budget.
const TOOLS_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the service on `listener` until `shutdown` completes.
pub async fn run(
    valid: ValidConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let ValidConfig {
        config,
        auth: plan,
        model,
        memory,
        limits,
    } = valid;
    // The issuer and the model client first: a configuration error creates no database.
    let mode = plan.build(reqwest::Client::new()).await?;
    let model = model.build().await?;
    match &model {
        Some(model) => tracing::info!(model = %model.describe(), "experts answer with a model"),
        None => tracing::warn!(
            "no model configured (AZURE_OPENAI_CHAT_DEPLOYMENT or OPENAI_BASE_URL): experts \
             answer with the offline planner"
        ),
    }
    let tools = ToolsClient::new(
        &config.mcp_server_uri,
        Arc::new(PassThrough),
        TOOLS_CONNECT_TIMEOUT,
    )
    .with_context(|| format!("MCP_SERVER_URI {:?}", config.mcp_server_uri))?;
    let sqlite = Arc::new(
        SqliteConversations::open(&config.db_path, memory)
            .await
            .with_context(|| {
                format!(
                    "opening the conversation memory at {} (DB_PATH)",
                    config.db_path.display()
                )
            })?,
    );
    let sessions = if config.mcp_sessions {
        tracing::info!(
            "MCP_SESSIONS=true: clients of protocol versions before 2026-07-28 get a session, \
             which stands in for conversation_id"
        );
        Sessions::Legacy(sqlite.clone())
    } else {
        Sessions::Stateless
    };
    let store: Arc<dyn ConversationStore> = sqlite;
    if config.allow_open_network && !matches!(mode, shared::auth::AuthMode::Jwt(_)) {
        tracing::warn!(addr = %config.bind_addr, "ALLOW_OPEN_NETWORK=true: experts are reachable from the network without verified tokens");
    }
    let auth = Arc::new(plan.authenticator(mode, listener.local_addr()));
    let stop_sweeping = CancellationToken::new();
    let sweeper = memory::spawn_sweeper(store.clone(), SWEEP_EVERY, stop_sweeping.clone());
    let state = Arc::new(AppState {
        memory: store,
        tools,
        model,
        limits,
        history_turns: config.history_turns,
        sessions: matches!(sessions, Sessions::Legacy(_)),
    });
    let service = http::router(state, auth, &config.host_guard, sessions);
    let served = shared::http::serve(listener, service.router, async move {
        shutdown.await;
        service.guard.trigger();
    })
    .await;
    stop_sweeping.cancel();
    let _ = sweeper.await;
    served?;
    Ok(())
}
