//! Authentication at the edge of a service: an axum middleware that turns the bearer token into
//! an [`Identity`] in the request's extensions (or answers 401/403), and the OAuth 2.0 Protected
//! Resource Metadata (RFC 9728) that tells clients where to get a token.
//!
//! Refusals say as little as possible: 401 with `WWW-Authenticate: Bearer resource_metadata=...`
//! (plus `error="invalid_token"` when a token was sent) and a fixed JSON body naming the request
//! id. Which check failed goes to the log at debug level only.

use std::{collections::BTreeSet, sync::Arc};

use axum::{
    Json, Router,
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Serialize;

use super::{AuthError, AuthMode, Identity, verifier::unverified_identity};

/// Where the MCP endpoint lives, relative to the public base URL.
pub const MCP_PATH: &str = "/mcp";

/// RFC 9728 metadata of the protected MCP endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct ProtectedResource {
    pub resource: String,
    pub authorization_servers: Vec<String>,
    pub scopes_supported: Vec<String>,
    pub bearer_methods_supported: Vec<String>,
}

/// Everything the middleware needs, shared by all requests.
#[derive(Debug)]
pub struct Authenticator {
    mode: AuthMode,
    metadata: ProtectedResource,
    challenge: HeaderValue,
    invalid_token_challenge: HeaderValue,
}

impl Authenticator {
    /// `public_base_url` is the service's URL as clients see it (no trailing slash).
    pub fn new(mode: AuthMode, public_base_url: &str, scopes: Vec<String>) -> Self {
        let issuer = match &mode {
            AuthMode::Jwt(v) => vec![v.settings().issuer.clone()],
            _ => Vec::new(),
        };
        let metadata_url =
            format!("{public_base_url}/.well-known/oauth-protected-resource{MCP_PATH}");
        let challenge = format!("Bearer resource_metadata=\"{metadata_url}\"");
        let invalid =
            format!("Bearer resource_metadata=\"{metadata_url}\", error=\"invalid_token\"");
        Authenticator {
            mode,
            metadata: ProtectedResource {
                resource: format!("{public_base_url}{MCP_PATH}"),
                authorization_servers: issuer,
                scopes_supported: scopes,
                bearer_methods_supported: vec!["header".into()],
            },
            challenge: HeaderValue::from_str(&challenge)
                .unwrap_or(HeaderValue::from_static("Bearer")),
            invalid_token_challenge: HeaderValue::from_str(&invalid)
                .unwrap_or(HeaderValue::from_static("Bearer")),
        }
    }

    pub fn mode(&self) -> &AuthMode {
        &self.mode
    }

    pub fn metadata(&self) -> &ProtectedResource {
        &self.metadata
    }

    /// Authenticates one request from its `Authorization` headers.
    pub async fn identify(&self, headers: &axum::http::HeaderMap) -> Result<Identity, AuthError> {
        if let AuthMode::Disabled { roles } = &self.mode {
            return Ok(anonymous(roles));
        }
        let token = bearer(headers)?;
        match &self.mode {
            AuthMode::Jwt(verifier) => verifier.verify(token).await,
            AuthMode::Passthrough { default_roles } => unverified_identity(token, default_roles),
            AuthMode::Disabled { roles } => Ok(anonymous(roles)),
        }
    }

    /// The refusal of a request (with id `request_id`, named in the body so the caller can
    /// quote it; which check failed is logged under it).
    fn refuse(&self, error: &AuthError, request_id: Option<String>) -> Response {
        tracing::debug!(reason = %error, request_id, "request refused by authentication");
        if error.is_forbidden() {
            let body = ErrorBody {
                error: "forbidden",
                error_description: "this tenant is not allowed to use this service",
                request_id,
            };
            return (StatusCode::FORBIDDEN, Json(body)).into_response();
        }
        let token_sent = !matches!(error, AuthError::MissingToken);
        let body = ErrorBody {
            error: if token_sent {
                "invalid_token"
            } else {
                "unauthorized"
            },
            error_description: "a valid bearer token is required",
            request_id,
        };
        let challenge = if token_sent {
            &self.invalid_token_challenge
        } else {
            &self.challenge
        };
        let mut response = (StatusCode::UNAUTHORIZED, Json(body)).into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge.clone());
        response
    }
}

#[derive(Serialize)]
struct ErrorBody {
    error: &'static str,
    error_description: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

fn anonymous(roles: &BTreeSet<String>) -> Identity {
    Identity {
        subject: "anonymous".into(),
        object_id: None,
        tenant: "development".into(),
        roles: roles.clone(),
        scopes: BTreeSet::new(),
        client_id: None,
        expires_at: i64::MAX,
        audiences: Vec::new(),
        actors: Vec::new(),
    }
}

/// The token of the single `Authorization: Bearer <token>` header (used by the gateway too).
pub fn bearer(headers: &axum::http::HeaderMap) -> Result<&str, AuthError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(AuthError::MissingToken);
    };
    if values.next().is_some() {
        return Err(AuthError::MalformedHeader);
    }
    let value = value.to_str().map_err(|_| AuthError::MalformedHeader)?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        // Another scheme (Basic, ...) carries no bearer token: the challenge then has no error
        // code (RFC 6750 §3.1).
        return Err(AuthError::MissingToken);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::MalformedHeader);
    }
    Ok(token)
}

/// The middleware: put it on the protected routes only (`route_layer`), so health checks and
/// the metadata stay public.
pub async fn authenticate(
    State(auth): State<Arc<Authenticator>>,
    mut request: Request,
    next: Next,
) -> Response {
    match auth.identify(request.headers()).await {
        Ok(identity) => {
            let tenant = identity.tenant.clone();
            tracing::Span::current().record("tenant.id", tenant.as_str());
            request.extensions_mut().insert(identity);
            let mut response = next.run(request).await;
            response
                .extensions_mut()
                .insert(crate::http::ServedTenant(tenant));
            response
        }
        Err(error) => {
            crate::telemetry::metrics::serving().refusals.add(
                1,
                &[
                    opentelemetry::KeyValue::new("reason", error.reason()),
                    opentelemetry::KeyValue::new(
                        "http.response.status_code",
                        if error.is_forbidden() { 403 } else { 401 },
                    ),
                ],
            );
            let request_id = request
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            auth.refuse(&error, request_id)
        }
    }
}

/// The RFC 9728 metadata at the three paths clients look for it.
pub fn metadata_routes(auth: Arc<Authenticator>) -> Router {
    let handler = move || {
        let auth = auth.clone();
        async move { Json(auth.metadata.clone()) }
    };
    Router::new()
        .route(
            "/.well-known/oauth-protected-resource",
            get(handler.clone()),
        )
        .route(
            &format!("/.well-known/oauth-protected-resource{MCP_PATH}"),
            get(handler.clone()),
        )
        .route(
            &format!("{MCP_PATH}/.well-known/oauth-protected-resource"),
            get(handler),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(
                header::AUTHORIZATION,
                HeaderValue::from_str(v).expect("header"),
            );
        }
        map
    }

    #[test]
    fn bearer_parsing_refuses_everything_but_one_bearer_token() {
        assert_eq!(bearer(&headers(&["Bearer abc"])), Ok("abc"));
        assert_eq!(bearer(&headers(&["bearer abc"])), Ok("abc"));
        assert_eq!(bearer(&headers(&[])), Err(AuthError::MissingToken));
        assert_eq!(
            bearer(&headers(&["Basic abc"])),
            Err(AuthError::MissingToken)
        );
        assert_eq!(bearer(&headers(&["Basic"])), Err(AuthError::MissingToken));
        assert_eq!(
            bearer(&headers(&["Bearer "])),
            Err(AuthError::MalformedHeader)
        );
        assert_eq!(
            bearer(&headers(&["Bearer"])),
            Err(AuthError::MalformedHeader)
        );
        assert_eq!(
            bearer(&headers(&["Bearer a", "Bearer b"])),
            Err(AuthError::MalformedHeader)
        );
    }
}
