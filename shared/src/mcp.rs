//! Serving an MCP server over streamable HTTP the way every service of the platform does:
//! stateless (no server-side session, so any replica answers any request), JSON answers for
//! plain calls and SSE when progress is sent, `Host`/`Origin` checked, the bearer token verified
//! before the MCP layer sees a request, RFC 9728 metadata beside it, and open streams ended at
//! shutdown.

use std::{sync::Arc, time::Duration};

use axum::Router;
use rmcp::{
    ServerHandler,
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::never::NeverSessionManager,
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

/// `/mcp` (behind token verification) and the OAuth protected-resource metadata routes.
/// `server` makes the handler of each request.
pub fn routes<S, F>(
    server: F,
    auth: Arc<Authenticator>,
    hosts: &HostGuardArgs,
    guard: &ShutdownGuard,
) -> Router
where
    S: ServerHandler + Send + 'static,
    F: Fn() -> S + Send + Sync + 'static,
{
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
    let mcp = StreamableHttpService::new(
        move || Ok(server()),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    Router::new()
        .route_service("/mcp", mcp)
        .route_layer(axum::middleware::from_fn_with_state(
            auth.clone(),
            authenticate,
        ))
        .merge(metadata_routes(auth))
}
