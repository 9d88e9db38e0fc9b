//! The HTTP surface: MCP at `/mcp` (streamable HTTP behind token verification, from
//! `shared::mcp`; stateless unless `MCP_SESSIONS`), liveness at `/healthz`, readiness at
//! `/readyz`, and what a caller sees of a failure: words and the request id
//! ([`name_request`]), the internal detail being in the log under that id.

use std::sync::Arc;

use axum::{Router, extract::State, response::IntoResponse, routing::get};
use rmcp::{
    ErrorData as McpError,
    model::{CallToolResponse, ContentBlock},
};
use serde::Serialize;
use serde_json::Value;
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

/// What `/readyz` says. Anyone who reaches the service may read it, so it names component
/// states and mode names only: no address, path, client id or error text.
#[derive(Serialize)]
struct Readiness {
    status: &'static str,
    /// The kind of model the experts use ("Azure OpenAI (managed identity)",
    /// "OpenAI-compatible"), or `offline planner (no model configured)`.
    model: String,
    /// `ok` or `unreachable`.
    memory: &'static str,
    /// The memory's backend (`sqlite`, `cosmos`) and its database's name (never a path).
    memory_backend: &'static str,
    database: String,
    /// `ok`, `not_loaded` (JWT without keys yet), or `not_used` (a development mode).
    signing_keys: &'static str,
    /// Always `not_probed`: see [`readyz`].
    tools_service: &'static str,
    /// How inner calls are authorized: `token_exchange`, `entra_on_behalf_of` or `passthrough`.
    inner_calls: &'static str,
    auth: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
}

/// Ready when the memory answers and (for JWT) keys are loaded. The tools service is not
/// probed: it is another service with its own readiness, and an expert that cannot reach it
/// says so in its answer. Why the memory failed goes to the log.
async fn readyz(State(Ready { state, auth }): State<Ready>) -> impl IntoResponse {
    let memory_ok = match state.memory.ping().await {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(%error, "readiness: the conversation memory does not answer");
            false
        }
    };
    let jwt = matches!(auth.mode(), shared::auth::AuthMode::Jwt(_));
    let keys_ok = auth.mode().ready();
    let ready = memory_ok && keys_ok;
    let body = Readiness {
        status: if ready { "ready" } else { "not_ready" },
        model: match &state.model {
            Some(model) => model.mode(),
            None => crate::model::config::OFFLINE.to_owned(),
        },
        memory: if memory_ok { "ok" } else { "unreachable" },
        memory_backend: state.memory.backend(),
        database: state.memory.database(),
        signing_keys: match (jwt, keys_ok) {
            (false, _) => "not_used",
            (true, true) => "ok",
            (true, false) => "not_loaded",
        },
        tools_service: "not_probed",
        inner_calls: state.tools.authorization_mode(),
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

/// `message` followed by the request's id, which is how a caller names the request to an
/// operator, who finds the internal detail in the log under that id.
pub fn naming_request(message: &str, request_id: Option<&str>) -> String {
    match request_id {
        Some(id) => format!("{message} (request id {id})"),
        None => message.to_owned(),
    }
}

/// Names the request id in every failure `response` shows its caller: the text of a tool error,
/// and the `error` of an answer's structured content (an [`crate::server::ExpertAnswer`]).
/// Successful content is left as it is.
pub fn name_request(response: CallToolResponse, request_id: Option<&str>) -> CallToolResponse {
    let Some(id) = request_id else {
        return response;
    };
    let mut result = match response {
        CallToolResponse::Complete(result) => result,
        other => return other,
    };
    if result.is_error == Some(true) {
        for block in &mut result.content {
            if let Some(text) = block.as_text() {
                *block = ContentBlock::text(naming_request(&text.text, Some(id)));
            }
        }
    }
    if let Some(Value::Object(structured)) = &mut result.structured_content
        && let Some(Value::String(error)) = structured.get_mut("error")
    {
        *error = naming_request(error, Some(id));
    }
    CallToolResponse::Complete(result)
}

/// [`naming_request`] for a JSON-RPC error's message.
pub fn name_request_in_error(mut error: McpError, request_id: Option<&str>) -> McpError {
    error.message = naming_request(&error.message, request_id).into();
    error
}
