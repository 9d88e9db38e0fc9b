//! The MCP client of the tools service.
//!
//! An agent reaches the tools service with its caller's authority: [`ToolsClient`] (one per
//! service: where the tools service is, how to get a token) opens a [`ToolsConnection`] per
//! agent request with the token its [`TokenSource`] gives for that caller (a delegated token
//! carrying the caller's tenant and roles), so the tools service applies them to every inner
//! `tools/list` and `tools/call`.
//!
//! - [`token`]: the token of inner calls, never shown in `Debug` or logs;
//! - [`exchange`]: that token obtained by exchanging the caller's (RFC 8693 or Entra
//!   on-behalf-of), so the caller's own token never leaves the agent service;
//! - [`connection`]: the tools a caller may use within an expert's subset, and calls whose
//!   outcome (result, tool error, JSON-RPC error) is a value for the agent loop;
//! - [`progress`]: inner progress relayed to the caller, in order.
//!
//! The connection speaks the 2026-07-28 protocol (`server/discover`, no session): one round trip
//! to connect, and cancelling a call closes its response stream, which the stateless tools
//! service takes as the cancellation of that request.

pub mod assertion;
pub mod connection;
pub mod exchange;
pub mod progress;
pub mod token;
mod traced;

use std::{sync::Arc, time::Duration};

use rmcp::{
    model::{ClientCapabilities, ClientConfig, Implementation, ProtocolVersion},
    service::{ClientInitializeError, ClientLifecycleMode, ClientServiceExt, ServiceError},
    transport::{
        StreamableHttpClientTransport,
        streamable_http_client::{StreamableHttpClientTransportConfig, StreamableHttpError},
    },
};

pub use connection::{CallOptions, ToolOutcome, ToolsConnection};
pub use progress::{Progress, ProgressSender};
pub use token::{BearerToken, PassThrough, TokenError, TokenSource};

use progress::{ProgressRoutes, RelayTransport};

/// Why the tools service could not be used.
///
/// `Display` is what a caller may read (an expert's answer shows it): what happened, in words,
/// never the tools service's URL nor the HTTP client's error text. [`UpstreamError::detail`] is
/// for the log and for start-up errors: it names the URL (so an operator knows which setting,
/// `MCP_SERVER_URI`, to look at) and the cause. Failures met while serving a request are logged
/// with their detail where they are made, inside the request's span (which carries its id).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// A configuration error, met at start-up only: its message names the setting's value.
    #[error("the tools service URL {url:?} is not usable: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("the customer-service tools cannot be reached right now")]
    Unreachable { url: String, reason: String },
    #[error(
        "the tools service refused the token of the inner calls (expired, or not for this service)"
    )]
    Unauthorized { url: String },
    #[error("the customer-service tools failed to answer")]
    Failed { url: String, reason: String },
    #[error("the call to {tool} was cancelled")]
    Cancelled { tool: String },
}

impl UpstreamError {
    /// For the log: what kind of failure, in one word.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::InvalidUrl { .. } => "invalid_url",
            UpstreamError::Token(_) => "no_token",
            UpstreamError::Unreachable { .. } => "unreachable",
            UpstreamError::Unauthorized { .. } => "unauthorized",
            UpstreamError::Failed { .. } => "failed",
            UpstreamError::Cancelled { .. } => "cancelled",
        }
    }

    /// For the log (never for a caller): the failure with the tools service's URL and its cause.
    pub fn detail(&self) -> String {
        match self {
            UpstreamError::InvalidUrl { .. }
            | UpstreamError::Token(_)
            | UpstreamError::Cancelled { .. } => self.to_string(),
            UpstreamError::Unreachable { url, reason } => {
                format!("the tools service at {url} is unreachable: {reason}")
            }
            UpstreamError::Unauthorized { url } => format!(
                "the tools service at {url} refused the token of the inner calls (expired, or \
                 not for this service)"
            ),
            UpstreamError::Failed { url, reason } => {
                format!("the tools service at {url} failed: {reason}")
            }
        }
    }

    /// Logs the detail of a failure met while serving (at WARN, in the current span, which
    /// names the request) and hands the error on.
    fn logged(self) -> Self {
        if !matches!(self, UpstreamError::Cancelled { .. }) {
            tracing::warn!(kind = self.kind(), detail = %self.detail(), "tools service call failed");
        }
        self
    }

    fn from_service(url: &str, error: ServiceError) -> Self {
        if error.is_authorization_required() || error.auth_challenge().is_some() {
            return UpstreamError::Unauthorized {
                url: url.to_owned(),
            }
            .logged();
        }
        let reason = match &error {
            // As in `from_connect`: the cause is what helps.
            ServiceError::TransportSend(transport) => chain(transport.error.as_ref()),
            error => chain(error),
        };
        UpstreamError::Failed {
            url: url.to_owned(),
            reason,
        }
        .logged()
    }

    fn from_connect(url: &str, error: ClientInitializeError) -> Self {
        if error.is_authorization_required() || error.auth_challenge().is_some() {
            return UpstreamError::Unauthorized {
                url: url.to_owned(),
            }
            .logged();
        }
        // The transport's own message names its (long) Rust type, and does not declare the
        // cause its source: start from the cause.
        let (cause, reason) = match &error {
            ClientInitializeError::TransportError { error, context } => {
                let cause = error.error.as_ref() as &(dyn std::error::Error + 'static);
                (cause, format!("{} ({context})", chain(cause)))
            }
            error => (error as &(dyn std::error::Error + 'static), chain(error)),
        };
        let error = if no_connection(cause) {
            UpstreamError::Unreachable {
                url: url.to_owned(),
                reason,
            }
        } else {
            UpstreamError::Failed {
                url: url.to_owned(),
                reason,
            }
        };
        error.logged()
    }
}

/// An error and its causes on one line (transport errors wrap the cause several levels deep).
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = next_cause(error);
    while let Some(current) = cause {
        let current_text = current.to_string();
        if !text.contains(&current_text) {
            text.push_str(": ");
            text.push_str(&current_text);
        }
        cause = next_cause(current);
    }
    text
}

/// The cause of `error`: its `source()`, or the HTTP client's error the transport wraps without
/// declaring it a source.
fn next_cause<'e>(
    error: &'e (dyn std::error::Error + 'static),
) -> Option<&'e (dyn std::error::Error + 'static)> {
    match error.downcast_ref::<StreamableHttpError<reqwest::Error>>() {
        Some(StreamableHttpError::Client(http)) => Some(http),
        _ => error.source(),
    }
}

/// Whether `error` comes from not reaching the service at all (refused, unresolvable, timed
/// out), as opposed to an answer that was not the one expected (a 403, a broken handshake).
fn no_connection(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(current) = cause {
        if let Some(http) = current.downcast_ref::<reqwest::Error>()
            && (http.is_connect() || http.is_timeout())
        {
            return true;
        }
        cause = next_cause(current);
    }
    false
}

/// How the agent service reaches the tools service; shared by every request.
#[derive(Debug, Clone)]
pub struct ToolsClient {
    /// The tools service's MCP endpoint (`MCP_SERVER_URI`).
    url: Arc<str>,
    /// One HTTP client for every connection, so they share a connection pool.
    http: reqwest::Client,
    tokens: Arc<dyn TokenSource>,
    /// Bounds connecting (TCP and the MCP handshake), so an unreachable or silent tools service
    /// fails an agent request promptly instead of holding it.
    connect_timeout: Duration,
}

impl ToolsClient {
    /// A client of the tools service at `url`, with tokens from `tokens`, giving up on a
    /// connection attempt after `connect_timeout`.
    pub fn new(
        url: &str,
        tokens: Arc<dyn TokenSource>,
        connect_timeout: Duration,
    ) -> Result<Self, UpstreamError> {
        let invalid = |reason: String| UpstreamError::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        let parsed = reqwest::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https".into()));
        }
        // No overall timeout: a call streams for as long as its tool runs (a diagnosis takes
        // most of a minute); the agent's own time budget cancels it.
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .build()
            .map_err(|e| invalid(format!("HTTP client: {e}")))?;
        Ok(ToolsClient {
            url: url.into(),
            http,
            tokens,
            connect_timeout,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// How inner calls are authorized (see [`TokenSource::describe`]), for the log.
    pub fn authorization(&self) -> String {
        self.tokens.describe()
    }

    /// The name of that mode alone (see [`TokenSource::mode`]), for `/readyz`.
    pub fn authorization_mode(&self) -> &'static str {
        self.tokens.mode()
    }

    /// Connects on behalf of the caller who sent `caller`, for the conversation
    /// `conversation_id` (which the log of every inner call carries).
    pub async fn connect(
        &self,
        caller: &BearerToken,
        conversation_id: &str,
    ) -> Result<ToolsConnection, UpstreamError> {
        let token = self
            .tokens
            .token_for(caller)
            .await
            .map_err(|e| UpstreamError::from(e).logged())?;
        let routes = Arc::new(ProgressRoutes::default());
        let config = StreamableHttpClientTransportConfig::with_uri(self.url.clone())
            .auth_header(token.expose());
        let transport = RelayTransport::new(
            StreamableHttpClientTransport::with_client(
                traced::TracedHttp::new(self.http.clone()),
                config,
            ),
            routes.clone(),
        );
        let handshake = client_info().serve_with_lifecycle(
            transport,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        );
        let service = match tokio::time::timeout(self.connect_timeout, handshake).await {
            Ok(Ok(service)) => service,
            Ok(Err(error)) => return Err(UpstreamError::from_connect(&self.url, error)),
            Err(_) => {
                return Err(UpstreamError::Unreachable {
                    url: self.url.to_string(),
                    reason: format!("no answer within {:?}", self.connect_timeout),
                }
                .logged());
            }
        };
        Ok(ToolsConnection {
            service,
            routes,
            url: self.url.clone(),
            conversation_id: conversation_id.into(),
        })
    }
}

/// Who the agent service says it is to the tools service. It handles no server requests
/// (sampling, elicitation): inner tools cannot ask the end user anything through it.
fn client_info() -> ClientConfig {
    ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("contoso-agent-service", env!("CARGO_PKG_VERSION")),
    )
}
