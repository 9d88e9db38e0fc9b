//! Serving an MCP server over streamable HTTP the way every service of the platform does:
//! stateless by default (no server-side session, so any replica answers any request), JSON
//! answers for plain calls and SSE when progress is sent, `Host`/`Origin` checked, the bearer
//! token verified before the MCP layer sees a request, RFC 9728 metadata beside it, and open
//! streams ended at shutdown. [`Sessions::Legacy`] serves clients that expect a session; each
//! session belongs to the tenant and subject that initialized it ([`SessionOwners`]), and is
//! unknown (404) to anyone else.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use rmcp::{
    ServerHandler,
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService,
        session::{local::LocalSessionManager, never::NeverSessionManager, store::SessionStore},
    },
};
use tokio_util::sync::CancellationToken;

use crate::{
    auth::{
        Identity,
        middleware::{Authenticator, authenticate, metadata_routes},
    },
    config::HostGuardArgs,
};

/// The header that names a session (MCP streamable HTTP, protocol versions before 2026-07-28).
pub const SESSION_HEADER: &str = "mcp-session-id";

/// Ends open MCP streams when the server shuts down, so graceful shutdown does not wait for a
/// long tool call to finish.
#[derive(Debug, Clone, Default)]
pub struct ShutdownGuard(CancellationToken);

impl ShutdownGuard {
    pub fn trigger(&self) {
        self.0.cancel();
    }
}

/// Whether `/mcp` keeps sessions.
#[derive(Clone, Default)]
pub enum Sessions {
    /// No session: any replica answers any request, nothing is kept between requests.
    #[default]
    Stateless,
    /// An `Mcp-Session-Id` for each client of a protocol version before 2026-07-28 that
    /// initializes (those versions have sessions; 2026-07-28 has none, and its clients stay
    /// stateless). The session lives in memory (closed after 5 idle minutes) and its handshake is
    /// recorded in `store`, so another replica, or this one after a restart or an idle close,
    /// takes the session over without the client initializing again.
    Legacy(Arc<dyn LegacySessionStore>),
}

/// Who may use each MCP session: the tenant and subject whose token initialized it.
///
/// Recorded beside the session's handshake so that every replica enforces it. Implementations
/// cap the sessions one owner holds (evicting the oldest), so no caller can fill the store.
#[async_trait]
pub trait SessionOwners: Send + Sync {
    /// Records that `owner` initialized `session_id`.
    async fn bind(&self, session_id: &str, owner: &Identity) -> Result<(), String>;
    /// Whether `caller` owns `session_id`; false for an unknown or expired session.
    async fn owned_by(&self, session_id: &str, caller: &Identity) -> Result<bool, String>;
    /// Forgets the owner of an ended session.
    async fn forget(&self, session_id: &str) -> Result<(), String>;
}

/// What a service keeps of its legacy sessions: the handshakes (so any replica takes a session
/// over) and their owners.
pub trait LegacySessionStore: SessionStore + SessionOwners {
    /// The same store as rmcp's `SessionStore`, which the transport takes.
    fn as_session_store(self: Arc<Self>) -> Arc<dyn SessionStore>;
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Sessions::Stateless => "Stateless",
            Sessions::Legacy(_) => "Legacy",
        })
    }
}

/// `/mcp` (behind token verification) and the OAuth protected-resource metadata routes.
/// `server` makes the handler of each request (of each session, with sessions).
pub fn routes<S, F>(
    server: F,
    auth: Arc<Authenticator>,
    hosts: &HostGuardArgs,
    guard: &ShutdownGuard,
    sessions: Sessions,
) -> Router
where
    S: ServerHandler + Send + 'static,
    F: Fn() -> S + Send + Sync + 'static,
{
    let mut config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(matches!(sessions, Sessions::Legacy(_)))
        .with_json_response(true)
        .with_sse_keep_alive(Some(Duration::from_secs(15)))
        .with_cancellation_token(guard.0.clone())
        .with_allowed_origins(hosts.allowed_origins.clone());
    config = if hosts.allowed_hosts.iter().any(|h| h == "*") {
        config.disable_allowed_hosts()
    } else {
        config.with_allowed_hosts(hosts.allowed_hosts.clone())
    };
    let factory = move || Ok(server());
    let mcp = match sessions {
        Sessions::Stateless => Router::new().route_service(
            "/mcp",
            StreamableHttpService::new(factory, Arc::new(NeverSessionManager::default()), config),
        ),
        Sessions::Legacy(store) => {
            config.session_store = Some(store.clone().as_session_store());
            Router::new()
                .route_service(
                    "/mcp",
                    StreamableHttpService::new(
                        factory,
                        Arc::new(LocalSessionManager::default()),
                        config,
                    ),
                )
                // Inside the authentication layer: the caller is known when it runs.
                .route_layer(axum::middleware::from_fn_with_state(
                    store as Arc<dyn LegacySessionStore>,
                    guard_session,
                ))
        }
    };
    mcp.route_layer(axum::middleware::from_fn_with_state(
        auth.clone(),
        authenticate,
    ))
    .merge(metadata_routes(auth))
}

/// Lets a request that names a session through only when its caller owns the session, and
/// records the owner of each session an `initialize` creates. Someone else's session gets the
/// same 404 as an unknown one, so its existence is not revealed, and the owner's session is
/// untouched.
async fn guard_session(
    State(owners): State<Arc<dyn LegacySessionStore>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(caller) = request.extensions().get::<Identity>().cloned() else {
        // Unreachable behind the authentication layer; refuse rather than assume.
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let named = request
        .headers()
        .get(SESSION_HEADER)
        .map(|value| value.to_str().map(str::to_owned));
    match named {
        None => {
            let response = next.run(request).await;
            let created = response
                .headers()
                .get(SESSION_HEADER)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            if let Some(session_id) = created
                && let Err(error) = owners.bind(&session_id, &caller).await
            {
                tracing::error!(%error, "recording the owner of a new MCP session failed");
                // A session nobody owns would be unusable: say so now, not at the next call.
                return service_unavailable();
            }
            response
        }
        Some(Err(_)) => session_not_found(),
        Some(Ok(session_id)) => match owners.owned_by(&session_id, &caller).await {
            Ok(true) => {
                let ending = request.method() == Method::DELETE;
                let response = next.run(request).await;
                if ending
                    && response.status().is_success()
                    && let Err(error) = owners.forget(&session_id).await
                {
                    tracing::warn!(%error, "forgetting the owner of an ended MCP session failed");
                }
                response
            }
            Ok(false) => {
                tracing::info!(tenant = %caller.tenant, "MCP session not found for this caller");
                session_not_found()
            }
            Err(error) => {
                tracing::error!(%error, "looking up the owner of an MCP session failed");
                service_unavailable()
            }
        },
    }
}

/// The transport's own answer to an unknown session, word for word.
fn session_not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Body::from("Not Found: Session not found"),
    )
        .into_response()
}

fn service_unavailable() -> Response {
    crate::http::error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "the session store is unavailable; try again",
    )
    .into_response()
}
