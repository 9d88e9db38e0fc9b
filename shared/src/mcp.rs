//! Serving an MCP server over streamable HTTP the way every service of the platform does:
//! stateless by default (no server-side session, so any replica answers any request), JSON
//! answers for plain calls and SSE when progress is sent, `Host`/`Origin` checked, the bearer
//! token verified before the MCP layer sees a request, RFC 9728 metadata beside it, and open
//! streams ended at shutdown. [`Sessions::Legacy`] serves clients that expect a session.

use std::{sync::Arc, time::Duration};

use axum::Router;
use rmcp::{
    ServerHandler,
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService,
        session::{local::LocalSessionManager, never::NeverSessionManager, store::SessionStore},
    },
};
use tokio_util::sync::CancellationToken;

use crate::{
    auth::middleware::{Authenticator, authenticate, metadata_routes},
    config::HostGuardArgs,
};

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
    Legacy(Arc<dyn SessionStore>),
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
            config.session_store = Some(store);
            Router::new().route_service(
                "/mcp",
                StreamableHttpService::new(
                    factory,
                    Arc::new(LocalSessionManager::default()),
                    config,
                ),
            )
        }
    };
    mcp.route_layer(axum::middleware::from_fn_with_state(
        auth.clone(),
        authenticate,
    ))
    .merge(metadata_routes(auth))
}
