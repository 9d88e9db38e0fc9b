//! The identity provider's routes: discovery, JWKS, the token endpoint (reading the form,
//! authenticating the client, handing the request to its grant in [`super::grants`]) with its
//! error answers, and the test-only rotation routes.

use axum::{
    Json, Router,
    body::Bytes,
    extract::{State, rejection::BytesRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::json;
use shared::http::error_response;

use super::{
    Client, ClientAuthMethod, Idp,
    grants::{self, Grant, TokenResponse},
    keys::secrets_match,
};

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

async fn token(
    State(idp): State<Idp>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match issue(&idp, &headers, body) {
        Ok(issued) => no_store(Json(issued).into_response()),
        Err(error) => error.into_response(),
    }
}

fn issue(
    idp: &Idp,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<TokenResponse, OAuthError> {
    let params = Params::from_body(headers, body)?;
    let grant = match params.one("grant_type")? {
        None => return Err(OAuthError::InvalidRequest("grant_type is missing".into())),
        Some(name) => Grant::parse(name).ok_or_else(|| {
            OAuthError::UnsupportedGrantType(format!(
                "grant_type {name:?} is not supported; use one of {}",
                Grant::ALL.map(Grant::name).join(", ")
            ))
        })?,
    };
    let client = authenticate(idp, headers, &params)?;
    grants::issue(idp, client, grant, &params)
}

/// The parameters of a form body in their order, repeated ones kept: RFC 8707 and RFC 8693
/// let `resource` and `audience` repeat, which a struct-shaped form extractor cannot show.
/// Parameters without a value are dropped, as RFC 6749 §3.2 says to treat them as omitted.
#[derive(Debug)]
pub(super) struct Params(Vec<(String, String)>);

impl Params {
    /// Reads an `application/x-www-form-urlencoded` body (RFC 6749 §4.4.2 and friends).
    fn from_body(
        headers: &HeaderMap,
        body: Result<Bytes, BytesRejection>,
    ) -> Result<Self, OAuthError> {
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| {
                mime.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !is_form {
            return Err(OAuthError::InvalidRequest(
                "the request body must be a form (Content-Type: application/x-www-form-urlencoded)"
                    .into(),
            ));
        }
        let body = body.map_err(|rejection| OAuthError::InvalidRequest(rejection.body_text()))?;
        Self::parse(&body)
    }

    pub(super) fn parse(body: &[u8]) -> Result<Self, OAuthError> {
        let malformed =
            || OAuthError::InvalidRequest("the form body is not valid form encoding".into());
        let text = std::str::from_utf8(body).map_err(|_| malformed())?;
        let mut fields = Vec::new();
        for pair in text.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = form_urldecode(name).ok_or_else(malformed)?;
            let value = form_urldecode(value).ok_or_else(malformed)?;
            if !value.is_empty() {
                fields.push((name, value));
            }
        }
        Ok(Self(fields))
    }

    /// Every value of `name`, in order.
    pub(super) fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value of a parameter that may be sent at most once (RFC 6749 §3.2).
    pub(super) fn one(&self, name: &str) -> Result<Option<&str>, OAuthError> {
        match self.all(name).as_slice() {
            [] => Ok(None),
            [value] => Ok(Some(value)),
            _ => Err(OAuthError::InvalidRequest(format!(
                "{name} is given more than once; send each parameter once"
            ))),
        }
    }
}

/// The client named by HTTP Basic or by the form, if its secret is right, or by `client_id`
/// with a `client_assertion` that one of its federated credentials trusts
/// ([`grants::verify_client_assertion`]). Using two ways at once is refused, as RFC 6749 §2.3
/// requires. The way that succeeded is recorded ([`Idp::authentications`]).
fn authenticate<'a>(
    idp: &'a Idp,
    headers: &HeaderMap,
    params: &Params,
) -> Result<&'a Client, OAuthError> {
    let basic = basic_credentials(headers)?;
    let assertion_type = params.one("client_assertion_type")?;
    let assertion = params.one("client_assertion")?;
    if assertion.is_some() || assertion_type.is_some() {
        if basic.is_some() || params.one("client_secret")?.is_some() {
            return Err(OAuthError::InvalidClient(
                "both a client secret and a client assertion: authenticate with one of them".into(),
            ));
        }
        let client = assertion_client(idp, params, assertion_type, assertion)?;
        idp.record_authentication(client, ClientAuthMethod::Assertion);
        return Ok(client);
    }
    let (id, secret, method) = match (
        basic,
        params.one("client_id")?,
        params.one("client_secret")?,
    ) {
        (Some(_), _, Some(_)) => {
            return Err(OAuthError::InvalidRequest(
                "client credentials in both the Authorization header and the body".into(),
            ));
        }
        (Some((id, secret)), _, None) => (id, secret, ClientAuthMethod::SecretBasic),
        (None, Some(id), Some(secret)) => (
            id.to_owned(),
            secret.to_owned(),
            ClientAuthMethod::SecretPost,
        ),
        (None, _, _) => {
            return Err(OAuthError::InvalidClient(
                "no client credentials (client_id and client_secret, or HTTP Basic)".into(),
            ));
        }
    };
    let client = idp
        .client(&id)
        .filter(|c| secrets_match(&secret, c.client_secret.expose()))
        .ok_or_else(|| OAuthError::InvalidClient("unknown client or wrong secret".into()))?;
    idp.record_authentication(client, method);
    Ok(client)
}

/// The client a `client_assertion` authenticates: Entra's form, with the `client_id` it is for
/// (the assertion's `sub` is the managed identity, not the client) and the RFC 7523 type.
fn assertion_client<'a>(
    idp: &'a Idp,
    params: &Params,
    assertion_type: Option<&str>,
    assertion: Option<&str>,
) -> Result<&'a Client, OAuthError> {
    let jwt_bearer = grants::JWT_BEARER_ASSERTION;
    match assertion_type {
        Some(kind) if kind == jwt_bearer => {}
        Some(other) => {
            return Err(OAuthError::InvalidClient(format!(
                "client_assertion_type {other:?} is not supported: send \
                 client_assertion_type={jwt_bearer} with a JWT as client_assertion"
            )));
        }
        None => {
            return Err(OAuthError::InvalidClient(format!(
                "client_assertion_type is missing: send client_assertion_type={jwt_bearer} \
                 with the client_assertion"
            )));
        }
    }
    let assertion = assertion.ok_or_else(|| {
        OAuthError::InvalidClient(
            "client_assertion is missing: send the managed identity's token as client_assertion"
                .into(),
        )
    })?;
    let id = params.one("client_id")?.ok_or_else(|| {
        OAuthError::InvalidClient(
            "client_id is missing: with a client assertion, name the client it authenticates"
                .into(),
        )
    })?;
    let client = idp.client(id).ok_or_else(|| {
        OAuthError::InvalidClient(format!("client {id:?} is not registered at this IdP"))
    })?;
    grants::verify_client_assertion(idp, client, assertion)?;
    Ok(client)
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

/// The errors of the token endpoint (RFC 6749 §5.2, RFC 8707 §2, RFC 8693 §2.2.2), each with
/// a description for people. Descriptions never carry a token.
#[derive(Debug)]
pub(super) enum OAuthError {
    InvalidRequest(String),
    InvalidClient(String),
    UnsupportedGrantType(String),
    InvalidScope(String),
    /// The subject token or assertion is not one this IdP signed, no longer valid, or not
    /// issued for a resource the exchanging client serves.
    InvalidGrant(String),
    /// A resource or audience the client may not get a token for, or more than one.
    InvalidTarget(String),
    /// An authenticated client using a grant it is not allowed to use.
    UnauthorizedClient(String),
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let (status, error, description) = match self {
            Self::InvalidRequest(d) => (StatusCode::BAD_REQUEST, "invalid_request", d),
            Self::InvalidClient(d) => (StatusCode::UNAUTHORIZED, "invalid_client", d),
            Self::UnsupportedGrantType(d) => (StatusCode::BAD_REQUEST, "unsupported_grant_type", d),
            Self::InvalidScope(d) => (StatusCode::BAD_REQUEST, "invalid_scope", d),
            Self::InvalidGrant(d) => (StatusCode::BAD_REQUEST, "invalid_grant", d),
            Self::InvalidTarget(d) => (StatusCode::BAD_REQUEST, "invalid_target", d),
            Self::UnauthorizedClient(d) => (StatusCode::BAD_REQUEST, "unauthorized_client", d),
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

    fn agent_idp() -> Idp {
        let audience = vec![crate::idp::defaults::AUDIENCE.to_owned()];
        let mut clients = crate::idp::defaults::clients_for(&audience);
        clients.push(crate::idp::defaults::agent_client(
            crate::idp::defaults::AGENT_CLIENT_ID,
            &audience,
            &audience,
        ));
        Idp::new(crate::idp::IdpConfig {
            clients,
            ..crate::idp::IdpConfig::default()
        })
        .expect("idp")
    }

    /// A token of the agent's managed identity for the assertion audience, form-encoded.
    fn identity_token(idp: &Idp) -> String {
        use crate::idp::{TokenSpec, defaults};
        idp.mint(&TokenSpec {
            audience: Some(defaults::ASSERTION_AUDIENCE.to_owned()),
            ..TokenSpec::new(
                defaults::CONTOSO,
                Vec::<String>::new(),
                defaults::AGENT_PRINCIPAL_ID,
            )
        })
    }

    fn assertion_form(assertion: &str, extra: &str) -> Params {
        Params::parse(
            format!(
                "client_id=contoso-agent&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3A\
                 client-assertion-type%3Ajwt-bearer&client_assertion={assertion}{extra}"
            )
            .as_bytes(),
        )
        .expect("form")
    }

    fn invalid_client(result: Result<&Client, OAuthError>) -> String {
        match result {
            Err(OAuthError::InvalidClient(description)) => description,
            other => panic!("expected invalid_client, got {other:?}"),
        }
    }

    #[test]
    fn a_client_assertion_authenticates_without_a_secret_and_is_recorded() {
        let idp = agent_idp();
        let headers = HeaderMap::new();
        let client = authenticate(&idp, &headers, &assertion_form(&identity_token(&idp), ""))
            .expect("authenticated");
        assert_eq!(client.client_id, "contoso-agent");
        let secret = Params::parse(b"client_id=contoso-query&client_secret=contoso-query-secret")
            .expect("form");
        authenticate(&idp, &headers, &secret).expect("secrets still work");
        let methods: Vec<_> = idp
            .authentications()
            .into_iter()
            .map(|a| (a.client_id, a.method))
            .collect();
        assert_eq!(
            methods,
            [
                ("contoso-agent".to_owned(), ClientAuthMethod::Assertion),
                ("contoso-query".to_owned(), ClientAuthMethod::SecretPost),
            ]
        );
    }

    #[test]
    fn assertions_sent_wrongly_are_refused_as_invalid_client() {
        let idp = agent_idp();
        let token = identity_token(&idp);
        let headers = HeaderMap::new();
        let both = invalid_client(authenticate(
            &idp,
            &headers,
            &assertion_form(&token, "&client_secret=contoso-agent-secret"),
        ));
        assert!(
            both.contains("both a client secret and a client assertion"),
            "{both}"
        );
        let mut basic = HeaderMap::new();
        basic.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!(
                "Basic {}",
                STANDARD.encode("contoso-agent:contoso-agent-secret")
            ))
            .expect("header"),
        );
        let both = invalid_client(authenticate(&idp, &basic, &assertion_form(&token, "")));
        assert!(
            both.contains("both a client secret and a client assertion"),
            "{both}"
        );

        let saml = Params::parse(
            format!(
                "client_id=contoso-agent&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3A\
                 client-assertion-type%3Asaml2-bearer&client_assertion={token}"
            )
            .as_bytes(),
        )
        .expect("form");
        let description = invalid_client(authenticate(&idp, &headers, &saml));
        assert!(
            description.contains("saml2-bearer\" is not supported")
                && description.contains(grants::JWT_BEARER_ASSERTION),
            "{description}"
        );
        let untyped =
            Params::parse(format!("client_id=contoso-agent&client_assertion={token}").as_bytes())
                .expect("form");
        let description = invalid_client(authenticate(&idp, &headers, &untyped));
        assert!(
            description.contains("client_assertion_type is missing"),
            "{description}"
        );

        let anonymous = Params::parse(
            format!(
                "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3A\
                 client-assertion-type%3Ajwt-bearer&client_assertion={token}"
            )
            .as_bytes(),
        )
        .expect("form");
        let description = invalid_client(authenticate(&idp, &headers, &anonymous));
        assert!(
            description.contains("client_id is missing"),
            "{description}"
        );
        // A client without federated credentials (a person's client).
        let description = invalid_client(authenticate(
            &idp,
            &headers,
            &Params::parse(
                format!(
                    "client_id=contoso-query&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth\
                     %3Aclient-assertion-type%3Ajwt-bearer&client_assertion={token}"
                )
                .as_bytes(),
            )
            .expect("form"),
        ));
        assert!(
            description.contains("no federated credentials"),
            "{description}"
        );
        assert!(
            idp.authentications().is_empty(),
            "nothing was authenticated"
        );
    }

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
    fn form_bodies_keep_repeated_parameters_and_drop_empty_ones() {
        let params =
            Params::parse(b"resource=a&scope=&resource=b%2Fc&grant_type=x+y&&flag").expect("form");
        assert_eq!(params.all("resource"), ["a", "b/c"]);
        assert!(matches!(
            params.one("resource"),
            Err(OAuthError::InvalidRequest(_))
        ));
        assert_eq!(params.one("grant_type").expect("once"), Some("x y"));
        assert_eq!(
            params.one("scope").expect("empty"),
            None,
            "empty means omitted"
        );
        assert_eq!(params.one("flag").expect("no value"), None);
        assert!(matches!(
            Params::parse(b"a=%zz"),
            Err(OAuthError::InvalidRequest(_))
        ));
        assert!(matches!(
            Params::parse(b"a=\xff"),
            Err(OAuthError::InvalidRequest(_))
        ));
    }

    #[test]
    fn only_form_bodies_are_read() {
        let mut headers = HeaderMap::new();
        let body = || Ok(Bytes::from_static(b"grant_type=client_credentials"));
        assert!(matches!(
            Params::from_body(&headers, body()),
            Err(OAuthError::InvalidRequest(_))
        ));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/X-WWW-Form-Urlencoded; charset=utf-8"),
        );
        let params = Params::from_body(&headers, body()).expect("form");
        assert_eq!(
            params.one("grant_type").expect("once"),
            Some("client_credentials")
        );
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        assert!(matches!(
            Params::from_body(&headers, body()),
            Err(OAuthError::InvalidRequest(_))
        ));
    }
}
