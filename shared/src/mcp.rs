//! Serving an MCP server over streamable HTTP the way every service of the platform does:
//! stateless by default (no server-side session, so any replica answers any request), JSON
//! answers for plain calls and SSE when progress is sent, `Host`/`Origin` checked, the bearer
//! token verified before the MCP layer sees a request, RFC 9728 metadata beside it, and open
//! streams ended at shutdown. [`Sessions::Legacy`] serves clients that expect a session; each
//! session belongs to the tenant and subject that initialized it ([`SessionOwners`]), and is
//! unknown (404) to anyone else; the sessions live in memory are bounded ([`live`]).
//! [`answer_panics`] makes sure a handler that panics still answers its request; a malformed
//! JSON-RPC message is answered with a JSON-RPC error before the transport sees it (`envelope`).

mod envelope;
pub mod live;
mod observe;

pub use envelope::is_json_post;

use std::{future::Future, panic::AssertUnwindSafe, sync::Arc, time::Duration};

use async_trait::async_trait;
use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use futures::FutureExt;
use rmcp::{
    ErrorData as McpError, ServerHandler,
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService,
        session::{never::NeverSessionManager, store::SessionStore},
    },
};
use tokio_util::sync::CancellationToken;

use self::live::{LiveBounds, LiveSessions};
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
    /// stateless).
    Legacy(LegacySessions),
}

/// Legacy sessions: each one's handshake and owner are recorded in `store`, and a bounded
/// number of them are live in memory. A session closed in memory (idle, or pushed out by newer
/// ones) is taken over from the store, by another replica or by this one after a restart,
/// without the client initializing again.
#[derive(Clone)]
pub struct LegacySessions {
    pub store: Arc<dyn LegacySessionStore>,
    pub live: LiveBounds,
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
    routes_with(server, auth, hosts, guard, sessions, |mcp| mcp)
}

/// [`routes`], with `inner` wrapping `/mcp` inside token verification: the middleware it adds
/// (with `route_layer`) sees only authenticated requests, with their `Identity`, before the MCP
/// transport does. The tools service reads the exact text of tool arguments there.
pub fn routes_with<S, F>(
    server: F,
    auth: Arc<Authenticator>,
    hosts: &HostGuardArgs,
    guard: &ShutdownGuard,
    sessions: Sessions,
    inner: impl FnOnce(Router) -> Router,
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
        Sessions::Legacy(LegacySessions { store, live }) => {
            config.session_store = Some(store.clone().as_session_store());
            let live = Arc::new(LiveSessions::new(live)).observed();
            Router::new()
                .route_service(
                    "/mcp",
                    StreamableHttpService::new(factory, live.clone(), config),
                )
                // Inside the authentication layer: the caller is known when it runs.
                .route_layer(axum::middleware::from_fn_with_state(
                    SessionGuard {
                        owners: store,
                        live,
                    },
                    guard_session,
                ))
        }
    };
    inner(mcp)
        // Behind authentication: an unauthenticated caller learns nothing about the message.
        .route_layer(axum::middleware::from_fn(envelope::check_envelope))
        .route_layer(axum::middleware::from_fn_with_state(
            auth.clone(),
            authenticate,
        ))
        .merge(metadata_routes(auth))
}

/// What [`guard_session`] consults: the owners in the store, and the sessions live here.
#[derive(Clone)]
struct SessionGuard {
    owners: Arc<dyn LegacySessionStore>,
    live: Arc<LiveSessions>,
}

/// Lets a request that names a session through only when its caller owns the session, and
/// records the owner of each session an `initialize` creates. Someone else's session gets the
/// same 404 as an unknown one, so its existence is not revealed, and the owner's session is
/// untouched.
async fn guard_session(
    State(SessionGuard { owners, live }): State<SessionGuard>,
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
            // Sessions the store ends for this owner's cap are refused from now on (not owned)
            // and leave memory when they idle out or are pushed out.
            if let Some(session_id) = created
                && let Err(error) = owners.bind(&session_id, &caller).await
            {
                tracing::error!(%error, "recording the owner of a new MCP session failed");
                // A session nobody owns would be unusable: say so now, not at the next call.
                live.close(&session_id).await;
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

/// Runs one MCP handler's `future` so that a panic inside it still answers the request.
///
/// rmcp runs each request's handler in a task of its own; a panic there ends the task, no
/// response is ever written, and the client waits for its own timeout. Wrapped here, a panic
/// becomes `McpError::internal_error("internal error (request <X-Request-Id>)")`, which rmcp
/// sends as the JSON-RPC error of the request (it carries the JSON-RPC id itself), and is logged
/// once at ERROR with the request id and the panic message. The message never reaches the caller:
/// it may name internals.
///
/// `AssertUnwindSafe` is sound here because nothing observes the future's state after the panic:
/// it is dropped at once, unpolled. What it shared with other requests lives in the service's
/// `Arc`ed state, which is either read-only (the tool catalogue, the search index) or kept
/// consistent by its own machinery (a database transaction not committed is rolled back when
/// the pool gets its connection back; tokio locks do not poison, and a poisoned std lock is
/// reported by the next user rather than read half-written).
///
/// `request_id` is the `X-Request-Id` of the HTTP request (see [`crate::http::request_id`]).
/// A handler that itself returns `Result<T, McpError>` flattens the two with
/// `answer_panics(id, handler).await.and_then(|answer| answer)`.
pub async fn answer_panics<F: Future>(
    request_id: Option<&str>,
    future: F,
) -> Result<F::Output, McpError> {
    match AssertUnwindSafe(future).catch_unwind().await {
        Ok(output) => Ok(output),
        Err(panic) => {
            let request_id = request_id.unwrap_or("-");
            let message = panic_message(panic.as_ref());
            tracing::error!(request_id, panic = message, "MCP handler panicked");
            Err(McpError::internal_error(
                format!("internal error (request {request_id})"),
                None,
            ))
        }
    }
}

/// The text a panic was raised with (`panic!("...")` gives a `&str` or a `String`).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(a panic without a message)")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use rmcp::{
        RoleServer,
        model::{
            CallToolRequestParams, CallToolResult, ContentBlock, InitializeResult, ListToolsResult,
            PaginatedRequestParams, ServerCapabilities, Tool,
        },
        service::RequestContext,
    };
    use serde_json::{Value, json};

    use super::*;
    use crate::auth::AuthMode;

    /// A server with two tools: `boom` panics, `echo` answers.
    #[derive(Clone)]
    struct Panicky;

    impl ServerHandler for Panicky {
        fn get_info(&self) -> InitializeResult {
            InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
        }

        async fn list_tools(
            &self,
            _request: Option<PaginatedRequestParams>,
            _context: RequestContext<RoleServer>,
        ) -> Result<ListToolsResult, McpError> {
            let schema = Arc::new(serde_json::Map::from_iter([(
                "type".to_owned(),
                json!("object"),
            )]));
            Ok(ListToolsResult::with_all_items(vec![
                Tool::new("boom", "panics", schema.clone()),
                Tool::new("echo", "answers", schema),
            ]))
        }

        async fn call_tool(
            &self,
            request: CallToolRequestParams,
            context: RequestContext<RoleServer>,
        ) -> Result<rmcp::model::CallToolResponse, McpError> {
            let request_id = context
                .extensions
                .get::<axum::http::request::Parts>()
                .and_then(crate::http::request_id)
                .map(str::to_owned);
            let name = request.name.to_string();
            answer_panics(request_id.as_deref(), async move {
                if name == "boom" {
                    panic!("a bug in the tool");
                }
                Ok(CallToolResult::success(vec![ContentBlock::text("still here")]).into())
            })
            .await
            .and_then(|answer| answer)
        }
    }

    async fn spawn() -> std::net::SocketAddr {
        let auth = Arc::new(Authenticator::new(
            AuthMode::Disabled {
                roles: BTreeSet::new(),
            },
            "http://127.0.0.1",
            Vec::new(),
        ));
        let hosts = HostGuardArgs {
            allowed_hosts: vec!["*".to_owned()],
            allowed_origins: Vec::new(),
        };
        let router = routes(
            || Panicky,
            auth,
            &hosts,
            &ShutdownGuard::default(),
            Sessions::Stateless,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("bound address");
        tokio::spawn(crate::http::serve(
            listener,
            crate::http::with_middleware(router),
            std::future::pending(),
        ));
        addr
    }

    async fn call(addr: std::net::SocketAddr, id: u32, tool: &str) -> Value {
        let body = json!({
            "jsonrpc": "2.0",
            "id": id,
            "method": "tools/call",
            "params": {"name": tool, "arguments": {}},
        });
        let response = reqwest::Client::new()
            .post(format!("http://{addr}/mcp"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .header("x-request-id", format!("req-{id}"))
            .body(body.to_string())
            .send();
        // A panic that is not answered leaves the request waiting: bound it.
        tokio::time::timeout(Duration::from_secs(10), async {
            response
                .await
                .expect("request")
                .json::<Value>()
                .await
                .expect("a JSON-RPC answer")
        })
        .await
        .expect("the request is answered promptly")
    }

    #[tokio::test]
    async fn a_panicking_tool_answers_a_json_rpc_error_with_its_id_and_the_server_goes_on() {
        let addr = spawn().await;
        let answer = call(addr, 41, "boom").await;
        assert_eq!(answer["id"], 41, "{answer}");
        assert_eq!(answer["error"]["code"], -32603, "internal error: {answer}");
        assert_eq!(
            answer["error"]["message"],
            "internal error (request req-41)"
        );
        assert!(
            !answer.to_string().contains("a bug in the tool"),
            "the panic message stays in the log: {answer}"
        );
        let answer = call(addr, 42, "echo").await;
        assert_eq!(answer["id"], 42, "{answer}");
        assert_eq!(answer["result"]["content"][0]["text"], "still here");
        // And the panicking tool again: the first panic broke nothing.
        let answer = call(addr, 43, "boom").await;
        assert_eq!(
            answer["error"]["message"],
            "internal error (request req-43)"
        );
    }

    #[tokio::test]
    async fn a_future_that_does_not_panic_passes_its_output_through() {
        assert_eq!(answer_panics(None, async { 7 }).await.ok(), Some(7));
        let panicking = async { panic!("{}", String::from("owned")) };
        let error: McpError = answer_panics::<_>(None, panicking)
            .await
            .expect_err("a panic");
        assert_eq!(error.message, "internal error (request -)");
    }
}
