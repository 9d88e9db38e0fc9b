//! The agent service: domain expert agents exposed as MCP tools (`ask_billing_expert`,
//! `ask_account_expert`, `ask_product_expert`). Each expert chains the tools service's tools over
//! MCP with the caller's own bearer token, so it can never do what its caller could not.
//!
//! - [`config`]: the settings, validated before any port is bound; [`cli`]: what the binary
//!   does with its command line (serve, `--print-policy`, `audit`);
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
//!   the caller's token, progress relayed and cancellation passed on, each call a client span
//!   whose trace context the tools service continues;
//! - `metrics`: model calls and tokens, inner tool calls and expert turns (OpenTelemetry).

pub mod agent;
pub mod cli;
pub mod config;
pub mod experts;
pub mod http;
pub mod memory;
mod metrics;
pub mod model;
pub mod planner;
pub mod server;
pub mod upstream;

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use shared::{
    audit::AuditLog,
    mcp::{LegacySessions, Sessions},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{Config, Delegation, ValidConfig};

use crate::{
    memory::Memory,
    server::AppState,
    upstream::{
        PassThrough, TokenSource, ToolsClient,
        assertion::ClientAssertion,
        exchange::{ClientCredential, ExchangeSettings, TokenExchange},
    },
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
        delegation,
        model,
        memory,
        storage,
        limits,
        bounds,
        live_sessions,
    } = valid;
    // The issuer and the model client first: a configuration error creates no database.
    let http = reqwest::Client::new();
    let mode = plan.build(http.clone(), &listener.local_addr()).await?;
    let model = model.build().await?;
    match &model {
        Some(model) => tracing::info!(model = %model.describe(), "experts answer with a model"),
        None => tracing::warn!(
            "no model configured (AZURE_OPENAI_CHAT_DEPLOYMENT or OPENAI_BASE_URL): experts \
             answer with the offline planner"
        ),
    }
    let tokens = token_source(&delegation, &mode, http.clone()).await?;
    let tools = ToolsClient::new(&config.mcp_server_uri, tokens, TOOLS_CONNECT_TIMEOUT)
        .with_context(|| format!("MCP_SERVER_URI {:?}", config.mcp_server_uri))?;
    let Memory {
        conversations: store,
        sessions: session_store,
    } = Memory::open(&storage, memory)
        .await
        .with_context(|| format!("opening the conversation memory in {}", storage.describe()))?;
    tracing::info!(
        backend = store.backend(),
        database = %store.database(),
        "conversation memory open"
    );
    let sessions = if config.mcp_sessions {
        tracing::info!(
            "MCP_SESSIONS=true: clients of protocol versions before 2026-07-28 get a session, \
             which stands in for conversation_id"
        );
        Sessions::Legacy(LegacySessions {
            store: session_store,
            live: live_sessions,
        })
    } else {
        Sessions::Stateless
    };
    // The audit trail, in DB_PATH (beside the conversations, unless they are in Cosmos DB).
    let audit = AuditLog::open_sqlite("agent-service", &config.db_path, &config.audit).await?;
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
        audit: audit.clone(),
    });
    let service = http::router(state, auth, &config.host_guard, sessions);
    let served = shared::http::serve_with(listener, service.router, bounds, async move {
        shutdown.await;
        service.guard.trigger();
    })
    .await;
    stop_sweeping.cancel();
    let _ = sweeper.await;
    // Every request has answered: store what the audit trail still holds.
    audit.close().await;
    served?;
    Ok(())
}

/// The token source of the inner calls: a token exchange at the issuer's token endpoint (found
/// by discovery), or the caller's own token when `TOKEN_EXCHANGE=passthrough` says so.
async fn token_source(
    delegation: &Delegation,
    mode: &shared::auth::AuthMode,
    http: reqwest::Client,
) -> anyhow::Result<Arc<dyn TokenSource>> {
    let Delegation::Exchange {
        grant,
        client_id,
        client_secret,
        client_auth,
        assertion,
        audience,
    } = delegation
    else {
        tracing::warn!(
            "TOKEN_EXCHANGE=passthrough: callers' own tokens are sent on to the tools service, \
             which the MCP authorization specification forbids. Development only!"
        );
        return Ok(Arc::new(PassThrough));
    };
    let shared::auth::AuthMode::Jwt(verifier) = mode else {
        anyhow::bail!("TOKEN_EXCHANGE needs verified tokens (AUTH_ISSUER)");
    };
    let issuer = &verifier.settings().issuer;
    let discovery = shared::auth::jwks::discover_document(&http, issuer)
        .await
        .map_err(|e| anyhow::anyhow!("finding the token endpoint (AUTH_ISSUER): {e}"))?;
    let token_endpoint = discovery.token_endpoint.ok_or_else(|| {
        anyhow::anyhow!(
            "the issuer {issuer} names no token_endpoint in its discovery document, so callers' \
             tokens cannot be exchanged (TOKEN_EXCHANGE)"
        )
    })?;
    tracing::info!(grant = ?grant, client_id, client_auth = ?client_auth, audience, %token_endpoint, "inner calls use delegated tokens");
    let assertion = assertion
        .as_ref()
        .map(ClientAssertion::new)
        .transpose()
        .map_err(|e| {
            anyhow::anyhow!(
                "setting up the client assertion (AGENT_CLIENT_AUTH=managed_identity): {e}"
            )
        })?;
    let credential = ClientCredential::new(*client_auth, client_secret.clone(), assertion)
        .context("the agent's client credential does not match AGENT_CLIENT_AUTH")?;
    Ok(Arc::new(TokenExchange::new(
        ExchangeSettings {
            grant: *grant,
            token_endpoint,
            client_id: client_id.clone(),
            credential,
            audience: audience.clone(),
        },
        http,
    )))
}
