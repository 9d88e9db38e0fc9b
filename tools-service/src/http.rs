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

use shared::auth::{
    RolePolicy,
    middleware::{Authenticator, authenticate, metadata_routes},
};

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
        move || {
            Ok(ContosoTools::new(
                mcp_state.clone(),
                catalog.clone(),
                policy.clone(),
            ))
        },
        Arc::new(NeverSessionManager::default()),
        config,
    );
    let protected =
        Router::new()
            .route_service("/mcp", mcp)
            .route_layer(axum::middleware::from_fn_with_state(
                auth.clone(),
                authenticate,
            ));
    let router = Router::new()
        .route("/healthz", get(shared::http::healthz))
        .route("/readyz", get(readyz))
        .with_state(Ready {
            state,
            auth: auth.clone(),
        })
        .merge(protected)
        .merge(metadata_routes(auth));
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

#[derive(Clone)]
struct Ready {
    state: Arc<AppState>,
    auth: Arc<Authenticator>,
}

/// Ready when the store answers, the knowledge base is indexed and (for JWT) keys are loaded.
async fn readyz(State(Ready { state, auth }): State<Ready>) -> impl IntoResponse {
    let store_ok = state.store.ping().await.is_ok();
    let keys_ok = auth.mode().ready();
    let ready = store_ok && keys_ok && !state.index.is_empty();
    let body = Readiness {
        status: if ready { "ready" } else { "not_ready" },
        store: state.store.backend(),
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
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}
