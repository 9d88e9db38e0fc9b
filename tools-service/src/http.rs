//! The HTTP surface: MCP streamable HTTP at `/mcp`, liveness at `/healthz`, readiness at
//! `/readyz`, wrapped in the shared middleware.
//!
//! MCP runs stateless: no server-side session, every POST carries everything needed, so any
//! replica can answer any request. Simple calls are answered with `application/json`; calls
//! that send progress switch to an SSE stream so notifications arrive while the tool runs.

use std::{sync::Arc, time::Duration};

use axum::{Json, Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::never::NeverSessionManager,
};
use serde::Serialize;
use shared::config::HostGuardArgs;
use tokio_util::sync::CancellationToken;

use crate::tools::{AppState, Catalog, ContosoTools};

/// Ends open MCP streams when the server shuts down, so graceful shutdown does not wait for a
/// 45-second diagnosis to finish.
#[derive(Debug, Clone, Default)]
pub struct ShutdownGuard(CancellationToken);

impl ShutdownGuard {
    pub fn trigger(&self) {
        self.0.cancel();
    }
}

/// The router and the guard that stops its streams.
pub struct Service {
    pub router: Router,
    pub guard: ShutdownGuard,
}

pub fn router(state: Arc<AppState>, hosts: &HostGuardArgs) -> Service {
    let guard = ShutdownGuard::default();
    let catalog = Arc::new(Catalog::new());
    let mut config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(Some(Duration::from_secs(15)))
        .with_cancellation_token(guard.0.clone())
        .with_allowed_origins(hosts.allowed_origins.clone());
    config = if hosts.allowed_hosts.iter().any(|h| h == "*") {
        config.disable_allowed_hosts()
    } else {
        config.with_allowed_hosts(hosts.allowed_hosts.clone())
    };
    let mcp_state = state.clone();
    let mcp = StreamableHttpService::new(
        move || Ok(ContosoTools::new(mcp_state.clone(), catalog.clone())),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    let router = Router::new()
        .route_service("/mcp", mcp)
        .route("/healthz", get(shared::http::healthz))
        .route("/readyz", get(readyz))
        .with_state(state);
    Service {
        router: shared::http::with_middleware(router),
        guard,
    }
}

#[derive(Serialize)]
struct Readiness {
    status: &'static str,
    store: &'static str,
    search: &'static str,
    documents: usize,
    auth: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
}

/// Ready when the store answers and the knowledge base is indexed.
async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let store_ok = state.store.ping().await.is_ok();
    let ready = store_ok && !state.index.is_empty();
    let body = Readiness {
        status: if ready { "ready" } else { "not_ready" },
        store: state.store.backend(),
        search: state.index.mode(),
        documents: state.index.len(),
        auth: "disabled (not implemented yet): development only",
        error: (!store_ok).then_some("store unreachable"),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}
