//! The HTTP surface: MCP at `/mcp` (streamable HTTP behind token verification, from
//! `shared::mcp`; stateless unless `MCP_SESSIONS`), liveness at `/healthz`, readiness at
//! `/readyz`.

use std::sync::Arc;

use axum::{Router, extract::State, response::IntoResponse, routing::get};
use serde::Serialize;
use shared::{
    auth::middleware::Authenticator,
    config::HostGuardArgs,
    mcp::{Sessions, ShutdownGuard},
};

use crate::server::{AppState, Experts};

/// The router and the guard that ends its streams at shutdown.
pub struct Service {
    pub router: Router,
    pub guard: ShutdownGuard,
}

pub fn router(
    state: Arc<AppState>,
    auth: Arc<Authenticator>,
    hosts: &HostGuardArgs,
    sessions: Sessions,
) -> Service {
    let guard = ShutdownGuard::default();
    let mcp_state = state.clone();
    let mcp = shared::mcp::routes(
        move || Experts::new(mcp_state.clone()),
        auth.clone(),
        hosts,
        &guard,
        sessions,
    );
    let router = Router::new()
        .route("/healthz", get(shared::http::healthz))
        .route("/readyz", get(readyz))
        .with_state(Ready { state, auth })
        .merge(mcp);
    Service {
        router: shared::http::with_middleware(router),
        guard,
    }
}

#[derive(Clone)]
struct Ready {
    state: Arc<AppState>,
    auth: Arc<Authenticator>,
}

#[derive(Serialize)]
struct Readiness {
    status: &'static str,
    /// The model the experts use, or `offline planner (no model configured)`.
    model: String,
    memory: &'static str,
    tools_service: String,
    /// How inner calls are authorized: delegated tokens, or (development) passthrough.
    inner_calls: String,
    auth: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
}

/// Ready when the memory answers and (for JWT) keys are loaded. The tools service is not
/// probed: it is another service with its own readiness, and an expert that cannot reach it
/// says so in its answer.
async fn readyz(State(Ready { state, auth }): State<Ready>) -> impl IntoResponse {
    let memory_ok = state.memory.ping().await.is_ok();
    let keys_ok = auth.mode().ready();
    let ready = memory_ok && keys_ok;
    let body = Readiness {
        status: if ready { "ready" } else { "not_ready" },
        model: match &state.model {
            Some(model) => model.describe(),
            None => crate::model::config::OFFLINE.to_owned(),
        },
        memory: if memory_ok { "sqlite" } else { "unreachable" },
        tools_service: state.tools.url().to_owned(),
        inner_calls: state.tools.authorization(),
        auth: auth.mode().describe(),
        error: if !memory_ok {
            Some("conversation memory unreachable")
        } else if !keys_ok {
            Some("token signing keys not loaded")
        } else {
            None
        },
    };
    shared::http::readiness(ready, body)
}
