//! The HTTP surface: MCP streamable HTTP at `/mcp`, liveness at `/healthz`, readiness at
//! `/readyz`, wrapped in the shared middleware.
//!
//! MCP runs stateless: no server-side session, every POST carries everything needed, so any
//! replica can answer any request. Simple calls are answered with `application/json`; calls
//! that send progress switch to an SSE stream so notifications arrive while the tool runs.
//! Behind token verification, `tools::raw::capture` keeps the exact text of each `tools/call`'s
//! arguments for the tools to decode from (exact money).

use std::sync::Arc;

use axum::{Router, extract::State, response::IntoResponse, routing::get};
use serde::Serialize;
use shared::{
    auth::{RolePolicy, middleware::Authenticator},
    config::HostGuardArgs,
    mcp::ShutdownGuard,
};

use crate::tools::{AppState, Catalog, ContosoTools};

/// The router and the guard that stops its streams.
pub struct Service {
    pub router: Router,
    pub guard: ShutdownGuard,
}

/// Everything the HTTP layer serves.
pub struct Parts {
    pub state: Arc<AppState>,
    pub auth: Arc<Authenticator>,
    pub policy: Arc<RolePolicy>,
}

pub fn router(parts: Parts, hosts: &HostGuardArgs) -> Service {
    let Parts {
        state,
        auth,
        policy,
    } = parts;
    let guard = ShutdownGuard::default();
    let catalog = Arc::new(Catalog::new());
    let mcp_state = state.clone();
    let mcp = shared::mcp::routes_with(
        move || ContosoTools::new(mcp_state.clone(), catalog.clone(), policy.clone()),
        auth.clone(),
        hosts,
        &guard,
        shared::mcp::Sessions::Stateless,
        // Behind token verification: the exact text of tool arguments, for exact money.
        |mcp| mcp.route_layer(axum::middleware::from_fn(crate::tools::raw::capture)),
    );
    let router = Router::new()
        .route("/healthz", get(shared::http::healthz))
        .route("/readyz", get(readyz))
        .with_state(Ready {
            state,
            auth: auth.clone(),
        })
        .merge(mcp);
    Service {
        router: shared::http::with_middleware(router),
        guard,
    }
}

#[derive(Serialize)]
struct Readiness {
    status: &'static str,
    store: &'static str,
    /// The database's name (a file name, a Cosmos database), never a path or an endpoint.
    database: String,
    search: &'static str,
    documents: usize,
    auth: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
}

#[derive(Clone)]
struct Ready {
    state: Arc<AppState>,
    auth: Arc<Authenticator>,
}

/// Ready when the store answers, the knowledge base is indexed and (for JWT) keys are loaded.
async fn readyz(State(Ready { state, auth }): State<Ready>) -> impl IntoResponse {
    let health = &state.storage.health;
    let store_ok = health.ping().await.is_ok();
    let keys_ok = auth.mode().ready();
    let ready = store_ok && keys_ok && !state.index.is_empty();
    let body = Readiness {
        status: if ready { "ready" } else { "not_ready" },
        store: health.backend(),
        database: health.database(),
        search: state.index.mode(),
        documents: state.index.len(),
        auth: auth.mode().describe(),
        error: if !store_ok {
            Some("store unreachable")
        } else if !keys_ok {
            Some("token signing keys not loaded")
        } else {
            None
        },
    };
    shared::http::readiness(ready, body)
}
