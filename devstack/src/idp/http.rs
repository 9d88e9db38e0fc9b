//! The identity provider's routes: discovery, JWKS, the `client_credentials` token endpoint
//! with its RFC 6749 §5.2 error answers, and the test-only rotation routes.

use axum::{
    Form, Json, Router,
    extract::{State, rejection::FormRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::http::error_response;

use super::{Client, Idp, TokenSpec, keys::secrets_match};

pub(super) fn router(idp: Idp) -> Router {
    let mut router = Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/token", post(token))
        .route("/healthz", get(shared::http::healthz));
    if idp.inner.allow_rotation {
        router = router
            .route("/rotate", post(rotate))
            .route("/retire", post(retire));
    }
    shared::http::with_middleware(router.with_state(idp))
}

async fn discovery(State(idp): State<Idp>) -> Json<serde_json::Value> {
    Json(idp.discovery())
}

async fn jwks(State(idp): State<Idp>) -> Response {
    match idp.answer_jwks_fetch() {
        Some(jwks) => Json(jwks).into_response(),
        None => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "JWKS switched off (Idp::set_jwks_available)",
        )
        .into_response(),
    }
}

/// `POST /rotate`: a fresh current key; answers `{"kid": NEW}`.
async fn rotate(State(idp): State<Idp>) -> Response {
    // Key generation takes milliseconds of CPU: off the async workers.
    match tokio::task::spawn_blocking(move || idp.rotate()).await {
        Ok(Ok(kid)) => {
            tracing::info!(%kid, "signing key rotated");
            Json(json!({ "kid": kid })).into_response()
        }
        failed => {
            tracing::error!(?failed, "key rotation failed");
            error_response(StatusCode::INTERNAL_SERVER_ERROR, "key rotation failed").into_response()
        }
    }
}

/// `POST /retire`: stop publishing rotated-out keys; answers `{"retired": COUNT}`.
async fn retire(State(idp): State<Idp>) -> Json<serde_json::Value> {
    Json(json!({ "retired": idp.retire_old_keys() }))
}

/// The form of a token request (RFC 6749 §4.4.2, client secret per §2.3.1).
#[derive(Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Serialize)]
struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
}

async fn token(
    State(idp): State<Idp>,
    headers: HeaderMap,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Response {
    match issue(&idp, &headers, form) {
        Ok(issued) => no_store(Json(issued).into_response()),
        Err(error) => error.into_response(),
    }
}

fn issue(
    idp: &Idp,
    headers: &HeaderMap,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Result<TokenResponse, OAuthError> {
    let Form(form) = form.map_err(|rejection| OAuthError::InvalidRequest(rejection.body_text()))?;
    match form.grant_type.as_deref() {
        None => return Err(OAuthError::InvalidRequest("grant_type is missing".into())),
        Some("client_credentials") => {}
        Some(other) => {
            return Err(OAuthError::UnsupportedGrantType(format!(
                "grant_type {other:?} is not supported; use client_credentials"
            )));
        }
    }
    let client = authenticate(idp, headers, &form)?;
    let audience = audience_for(idp, form.scope.as_deref())?;
    let lifetime = idp.inner.token_lifetime;
    let access_token = idp.mint(&TokenSpec {
        tenant: client.tenant.clone(),
        roles: client.roles.clone(),
        subject: client.subject.clone(),
        audience: Some(audience.to_owned()),
        lifetime,
        client_id: Some(client.client_id.clone()),
        ..TokenSpec::default()
    });
    tracing::info!(client_id = %client.client_id, tid = %client.tenant, audience, "token issued");
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: lifetime.as_secs(),
    })
}

/// The client named by HTTP Basic or by the form, if its secret is right. Using both at once
/// is refused, as RFC 6749 §2.3 requires.
fn authenticate<'a>(
    idp: &'a Idp,
    headers: &HeaderMap,
    form: &TokenForm,
) -> Result<&'a Client, OAuthError> {
    let basic = basic_credentials(headers)?;
    let (id, secret) = match (basic, &form.client_id, &form.client_secret) {
        (Some(_), _, Some(_)) => {
            return Err(OAuthError::InvalidRequest(
                "client credentials in both the Authorization header and the body".into(),
            ));
        }
        (Some((id, secret)), _, None) => (id, secret),
        (None, Some(id), Some(secret)) => (id.clone(), secret.clone()),
        (None, _, _) => {
            return Err(OAuthError::InvalidClient(
                "no client credentials (client_id and client_secret, or HTTP Basic)".into(),
            ));
        }
    };
    idp.clients()
        .iter()
        .find(|c| c.client_id == id)
        .filter(|c| secrets_match(&secret, c.client_secret.expose()))
        .ok_or_else(|| OAuthError::InvalidClient("unknown client or wrong secret".into()))
}

/// `Authorization: Basic base64(urlencode(id):urlencode(secret))`, if present (RFC 6749
/// §2.3.1 form-encodes both before joining them).
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = || OAuthError::InvalidClient("malformed HTTP Basic credentials".into());
    let encoded = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .ok_or_else(malformed)?;
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
    Ok(Some((
        form_urldecode(id).ok_or_else(malformed)?,
        form_urldecode(secret).ok_or_else(malformed)?,
    )))
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space, `%XX` a byte).
fn form_urldecode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        rest = tail;
        match byte {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(rest.get(..2)?).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
                rest = &rest[2..];
            }
            _ => bytes.push(byte),
        }
    }
    String::from_utf8(bytes).ok()
}

/// The audience a `scope` asks for: `<audience>/.default`, as Entra requires for
/// `client_credentials`; no scope means the first audience.
fn audience_for<'a>(idp: &'a Idp, scope: Option<&str>) -> Result<&'a str, OAuthError> {
    let audiences = idp.audiences();
    let Some(scope) = scope.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(&audiences[0]);
    };
    let invalid = || {
        OAuthError::InvalidScope(format!(
            "scope {scope:?} is not one of {}",
            audiences
                .iter()
                .map(|a| format!("{a}/.default"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    };
    let requested = scope.strip_suffix("/.default").ok_or_else(invalid)?;
    audiences
        .iter()
        .find(|a| *a == requested)
        .map(String::as_str)
        .ok_or_else(invalid)
}

/// The errors of the token endpoint, RFC 6749 §5.2, each with a description for people.
#[derive(Debug)]
enum OAuthError {
    InvalidRequest(String),
    InvalidClient(String),
    UnsupportedGrantType(String),
    InvalidScope(String),
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let (status, error, description) = match self {
            Self::InvalidRequest(d) => (StatusCode::BAD_REQUEST, "invalid_request", d),
            Self::InvalidClient(d) => (StatusCode::UNAUTHORIZED, "invalid_client", d),
            Self::UnsupportedGrantType(d) => (StatusCode::BAD_REQUEST, "unsupported_grant_type", d),
            Self::InvalidScope(d) => (StatusCode::BAD_REQUEST, "invalid_scope", d),
        };
        tracing::info!(error, description, "token request refused");
        let mut response = (
            status,
            Json(json!({ "error": error, "error_description": description })),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            // §5.2: a 401 names the authentication scheme the client should use.
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Basic realm="devstack""#),
            );
        }
        no_store(response)
    }
}

/// Token responses must not be cached (RFC 6749 §5.1).
fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idp::IdpConfig;

    #[test]
    fn form_urldecoding() {
        assert_eq!(form_urldecode("a+b%3Ac%25").as_deref(), Some("a b:c%"));
        assert_eq!(form_urldecode("plain").as_deref(), Some("plain"));
        assert_eq!(form_urldecode("bad%2"), None);
        assert_eq!(form_urldecode("bad%zz"), None);
    }

    #[test]
    fn basic_credentials_are_decoded() {
        let mut headers = HeaderMap::new();
        assert!(matches!(basic_credentials(&headers), Ok(None)));
        let encoded = STANDARD.encode("my%20client:p%3Ass");
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {encoded}")).expect("header"),
        );
        let (id, secret) = basic_credentials(&headers)
            .expect("well formed")
            .expect("present");
        assert_eq!((id.as_str(), secret.as_str()), ("my client", "p:ss"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert!(matches!(
            basic_credentials(&headers),
            Err(OAuthError::InvalidClient(_))
        ));
    }

    #[test]
    fn scopes_select_a_configured_audience() {
        let idp = Idp::new(IdpConfig {
            audiences: vec!["api://contoso-mcp".into(), "api://agents".into()],
            ..IdpConfig::default()
        })
        .expect("idp");
        assert_eq!(audience_for(&idp, None).ok(), Some("api://contoso-mcp"));
        assert_eq!(
            audience_for(&idp, Some(" ")).ok(),
            Some("api://contoso-mcp")
        );
        assert_eq!(
            audience_for(&idp, Some("api://agents/.default")).ok(),
            Some("api://agents")
        );
        for refused in [
            "api://agents",
            "api://other/.default",
            "api://agents/.default api://contoso-mcp/.default",
        ] {
            assert!(
                matches!(
                    audience_for(&idp, Some(refused)),
                    Err(OAuthError::InvalidScope(_))
                ),
                "{refused}"
            );
        }
    }
}
