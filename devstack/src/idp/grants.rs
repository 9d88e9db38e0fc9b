//! The grants of the token endpoint and the tokens they issue: `client_credentials` (RFC 6749
//! §4.4), the token exchange (RFC 8693) and Entra's on-behalf-of flow; the one resource each
//! token is for (RFC 8707 `resource`, RFC 8693 `audience`, Entra's `scope=<resource>/.default`)
//! and whether the client may target it; and the checks that a token a client asks to exchange
//! is one this IdP signed and still honours, issued for a resource the client itself serves.

use jsonwebtoken::{Algorithm, Validation, errors::ErrorKind};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{
    Client, Idp, JWT_BEARER_GRANT, TOKEN_EXCHANGE_GRANT, TokenSpec,
    http::{OAuthError, Params},
};

/// RFC 8693 §3: an OAuth access token, whatever its format.
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// RFC 8693 §3: a JWT. Our access tokens are JWTs, so either name fits them.
const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const TOKEN_TYPES: [&str; 2] = [ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE];

/// The `grant_type`s the token endpoint serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Grant {
    ClientCredentials,
    TokenExchange,
    OnBehalfOf,
}

impl Grant {
    pub(super) const ALL: [Self; 3] = [
        Self::ClientCredentials,
        Self::TokenExchange,
        Self::OnBehalfOf,
    ];

    /// The `grant_type` value.
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::ClientCredentials => "client_credentials",
            Self::TokenExchange => TOKEN_EXCHANGE_GRANT,
            Self::OnBehalfOf => JWT_BEARER_GRANT,
        }
    }

    pub(super) fn parse(grant_type: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.name() == grant_type)
    }
}

/// A successful token response (RFC 6749 §5.1; `issued_token_type` per RFC 8693 §2.2.1).
#[derive(Debug, Serialize)]
pub(super) struct TokenResponse {
    access_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    issued_token_type: Option<&'static str>,
    token_type: &'static str,
    expires_in: u64,
}

/// Serves `grant` for the authenticated `client`.
pub(super) fn issue(
    idp: &Idp,
    client: &Client,
    grant: Grant,
    params: &Params,
) -> Result<TokenResponse, OAuthError> {
    match grant {
        Grant::ClientCredentials => client_credentials(idp, client, params),
        Grant::TokenExchange => token_exchange(idp, client, params),
        Grant::OnBehalfOf => on_behalf_of(idp, client, params),
    }
}

/// A token for the client itself: its tenant, roles and subject.
fn client_credentials(
    idp: &Idp,
    client: &Client,
    params: &Params,
) -> Result<TokenResponse, OAuthError> {
    let target = target(idp, client, params, TargetRules::CLIENT_CREDENTIALS)?;
    let lifetime = idp.inner.token_lifetime;
    let access_token = idp.mint(&TokenSpec {
        tenant: client.tenant.clone(),
        roles: client.roles.clone(),
        subject: client.subject.clone(),
        audience: Some(target.to_owned()),
        lifetime,
        client_id: Some(client.client_id.clone()),
        ..TokenSpec::default()
    });
    tracing::info!(
        client_id = %client.client_id,
        tid = %client.tenant,
        audience = target,
        "token issued"
    );
    Ok(TokenResponse {
        access_token,
        issued_token_type: None,
        token_type: "Bearer",
        expires_in: lifetime.as_secs(),
    })
}

/// RFC 8693: the caller's token (`subject_token`) for a token for another resource.
fn token_exchange(
    idp: &Idp,
    client: &Client,
    params: &Params,
) -> Result<TokenResponse, OAuthError> {
    may_exchange(client, Grant::TokenExchange)?;
    let subject_token = params.one("subject_token")?.ok_or_else(|| {
        OAuthError::InvalidRequest(
            "subject_token is missing: send the access token your caller presented".into(),
        )
    })?;
    let supported = || format!("{ACCESS_TOKEN_TYPE} or {JWT_TOKEN_TYPE}");
    match params.one("subject_token_type")? {
        Some(kind) if TOKEN_TYPES.contains(&kind) => {}
        None => {
            return Err(OAuthError::InvalidRequest(format!(
                "subject_token_type is missing; use {}",
                supported()
            )));
        }
        Some(other) => {
            return Err(OAuthError::InvalidRequest(format!(
                "subject_token_type {other:?} is not supported; use {}",
                supported()
            )));
        }
    }
    if let Some(requested) = params.one("requested_token_type")?
        && !TOKEN_TYPES.contains(&requested)
    {
        return Err(OAuthError::InvalidRequest(format!(
            "requested_token_type {requested:?} is not supported: this IdP issues access \
             tokens ({})",
            supported()
        )));
    }
    if params.one("actor_token")?.is_some() {
        return Err(OAuthError::InvalidRequest(
            "actor_token is not supported: the authenticated client is the actor".into(),
        ));
    }
    let target = target(idp, client, params, TargetRules::TOKEN_EXCHANGE)?;
    let (access_token, expires_in) = delegate(idp, client, subject_token, target)?;
    Ok(TokenResponse {
        access_token,
        issued_token_type: Some(ACCESS_TOKEN_TYPE),
        token_type: "Bearer",
        expires_in,
    })
}

/// Entra's on-behalf-of flow: the jwt-bearer grant with `requested_token_use=on_behalf_of`,
/// the caller's token as `assertion` and the target as `scope=<resource>/.default`.
fn on_behalf_of(idp: &Idp, client: &Client, params: &Params) -> Result<TokenResponse, OAuthError> {
    may_exchange(client, Grant::OnBehalfOf)?;
    let assertion = params.one("assertion")?.ok_or_else(|| {
        OAuthError::InvalidRequest(
            "assertion is missing: send the access token your caller presented".into(),
        )
    })?;
    match params.one("requested_token_use")? {
        Some("on_behalf_of") => {}
        None => {
            return Err(OAuthError::InvalidRequest(
                "requested_token_use is missing; this IdP serves the jwt-bearer grant only as \
                 on-behalf-of: requested_token_use=on_behalf_of"
                    .into(),
            ));
        }
        Some(other) => {
            return Err(OAuthError::InvalidRequest(format!(
                "requested_token_use {other:?} is not supported; use on_behalf_of"
            )));
        }
    }
    let target = target(idp, client, params, TargetRules::ON_BEHALF_OF)?;
    let (access_token, expires_in) = delegate(idp, client, assertion, target)?;
    Ok(TokenResponse {
        access_token,
        issued_token_type: None,
        token_type: "Bearer",
        expires_in,
    })
}

/// Only clients registered as services acting for their callers (with resources of their own,
/// [`Client::subject_audiences`]) exchange tokens: anyone holding a user-facing client's secret
/// must not turn a token into one for another resource.
fn may_exchange(client: &Client, grant: Grant) -> Result<(), OAuthError> {
    if client.subject_audiences.is_empty() {
        Err(OAuthError::UnauthorizedClient(format!(
            "client {} may not use grant_type {}: only clients registered to exchange tokens \
             (services acting for their callers, registered with the resources they serve) may",
            client.client_id,
            grant.name()
        )))
    } else {
        Ok(())
    }
}

/// Entra's rule for on-behalf-of, applied to both grants: the subject token must have been
/// issued for the exchanging client itself, i.e. one of its `aud` values (a string or an array
/// of strings) is a resource the client serves ([`Client::subject_audiences`]). Otherwise an
/// agent could trade any token it got hold of, say one a user got for another service.
fn sent_to(client: &Client, subject: &Map<String, Value>) -> Result<(), OAuthError> {
    let audiences: Vec<&str> = match subject.get("aud") {
        None | Some(Value::Null) => {
            return Err(OAuthError::InvalidGrant(
                "the subject token has no aud claim: it was issued for no resource, so not for \
                 one this client serves"
                    .into(),
            ));
        }
        Some(Value::String(aud)) => vec![aud.as_str()],
        Some(Value::Array(auds)) => auds
            .iter()
            .map(Value::as_str)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                OAuthError::InvalidGrant(
                    "the subject token's aud values are not all strings".into(),
                )
            })?,
        Some(_) => {
            return Err(OAuthError::InvalidGrant(
                "the subject token's aud is neither a string nor a list of strings".into(),
            ));
        }
    };
    if audiences
        .iter()
        .any(|aud| client.subject_audiences.iter().any(|served| served == aud))
    {
        return Ok(());
    }
    let issued_for = match audiences.as_slice() {
        [] => "no resource".to_owned(),
        [one] => (*one).to_owned(),
        several => several.join(", "),
    };
    Err(OAuthError::InvalidGrant(format!(
        "the subject token was issued for {issued_for}, not for a resource this client serves \
         ({}): an agent exchanges only the tokens its own callers sent it",
        client.subject_audiences.join(", ")
    )))
}

/// The token for `target` that `client` gets for the caller of `subject_token`: the caller's
/// identity, the client as the actor, expiring no later than the subject token. Returns the
/// token and the seconds it is valid for.
fn delegate(
    idp: &Idp,
    client: &Client,
    subject_token: &str,
    target: &str,
) -> Result<(String, u64), OAuthError> {
    let subject = verify_subject(idp, subject_token)?;
    sent_to(client, &subject)?;
    let text = |name: &str| subject.get(name).and_then(Value::as_str);
    let sub = text("sub").ok_or_else(|| {
        OAuthError::InvalidGrant("the subject token's sub is not a string".into())
    })?;
    let tid = text("tid").ok_or_else(|| {
        OAuthError::InvalidGrant("the subject token has no tid: it names no tenant".into())
    })?;
    let roles = match subject.get("roles") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(roles)) => roles
            .iter()
            .map(|r| r.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                OAuthError::InvalidGrant("the subject token's roles are not all strings".into())
            })?,
        Some(_) => {
            return Err(OAuthError::InvalidGrant(
                "the subject token's roles are not a list".into(),
            ));
        }
    };
    // Checked by the verification, which requires a numeric exp.
    let subject_exp = subject.get("exp").and_then(Value::as_i64).ok_or_else(|| {
        OAuthError::InvalidGrant("the subject token's exp is not an integer".into())
    })?;
    let now = chrono::Utc::now().timestamp();
    let remaining = u64::try_from(subject_exp.saturating_sub(now))
        .ok()
        .filter(|secs| *secs > 0)
        .ok_or_else(expired)?;

    // RFC 8693 §4.1: the current actor outermost, the earlier chain nested inside it.
    let mut act = json!({ "sub": client.client_id });
    if let Some(previous) = subject.get("act") {
        act["act"] = previous.clone();
    }
    let mut extra = Map::from_iter([("act".to_owned(), act)]);
    for name in ["oid", "scp"] {
        if let Some(value) = subject.get(name) {
            extra.insert(name.to_owned(), value.clone());
        }
    }
    let lifetime = idp.inner.token_lifetime.as_secs().min(remaining);
    let mut claims = idp.claims(&TokenSpec {
        tenant: tid.to_owned(),
        roles,
        subject: sub.to_owned(),
        audience: Some(target.to_owned()),
        lifetime: std::time::Duration::from_secs(lifetime),
        client_id: Some(client.client_id.clone()),
        extra,
    });
    // `claims` reads the clock again: if a second ticked, clamp to the subject's exp.
    let iat = claims["iat"].as_i64().unwrap_or(now);
    let exp = claims["exp"]
        .as_i64()
        .map_or(subject_exp, |exp| exp.min(subject_exp));
    claims["exp"] = exp.into();
    let key = idp.signing_key();
    let token = key.sign(&key.header(), &claims);
    tracing::info!(
        client_id = %client.client_id,
        subject = sub,
        tid,
        target,
        "token exchanged"
    );
    Ok((token, u64::try_from(exp.saturating_sub(iat)).unwrap_or(0)))
}

/// A token this IdP signed that a client presents, and how to refuse it: a subject token is
/// the caller's (`invalid_grant`), a client assertion the client's own proof (`invalid_client`).
struct Presented {
    /// What the descriptions call it.
    what: &'static str,
    refuse: fn(String) -> OAuthError,
    /// What to do about an expired one.
    renew: &'static str,
}

const SUBJECT_TOKEN: Presented = Presented {
    what: "the subject token",
    refuse: OAuthError::InvalidGrant,
    renew: "the caller needs a fresh token",
};

const CLIENT_ASSERTION: Presented = Presented {
    what: "the client assertion",
    refuse: OAuthError::InvalidClient,
    renew: "get a fresh token from the managed identity",
};

impl Presented {
    fn refused(&self, problem: impl std::fmt::Display) -> OAuthError {
        (self.refuse)(format!("{} {problem}", self.what))
    }

    fn expired(&self) -> OAuthError {
        self.refused(format_args!(
            "has expired (no clock leeway): {}",
            self.renew
        ))
    }
}

fn expired() -> OAuthError {
    SUBJECT_TOKEN.expired()
}

fn verify_subject(idp: &Idp, token: &str) -> Result<Map<String, Value>, OAuthError> {
    verify_own(idp, token, &SUBJECT_TOKEN)
}

/// The claims of `token` if this IdP signed it (RS256, a key its JWKS publishes), it is from
/// this issuer, and it is valid now. No leeway: the IdP compares its own clock with the times
/// it wrote itself. The token's `aud` is checked by the caller afterwards ([`sent_to`],
/// [`verify_client_assertion`]), not here: which audiences fit depends on the client.
fn verify_own(
    idp: &Idp,
    token: &str,
    presented: &Presented,
) -> Result<Map<String, Value>, OAuthError> {
    let not_ours = || presented.refused("was not signed by this IdP's published keys");
    // `alg: none` is no `Algorithm`: such tokens fail here, as malformed.
    let header = jsonwebtoken::decode_header(token).map_err(|_| {
        presented.refused("is malformed: not a signed JWT (header.claims.signature)")
    })?;
    if header.alg != Algorithm::RS256 {
        return Err(presented.refused(format_args!(
            "is signed with {:?}; this IdP signs, and accepts, only RS256",
            header.alg
        )));
    }
    let kid = header.kid.ok_or_else(not_ours)?;
    let key = idp
        .published_keys()
        .into_iter()
        .find(|key| key.kid() == kid)
        .ok_or_else(not_ours)?;
    let decoding_key = key.decoding_key().map_err(|error| {
        tracing::error!(%error, "a published key is unusable for verification");
        not_ours()
    })?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[idp.issuer()]);
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    validation.validate_aud = false;
    // Off by default in `jsonwebtoken`; a token not valid yet is not valid.
    validation.validate_nbf = true;
    validation.leeway = 0;
    jsonwebtoken::decode::<Map<String, Value>>(token, &decoding_key, &validation)
        .map(|data| data.claims)
        .map_err(|error| match error.kind() {
            ErrorKind::InvalidSignature => not_ours(),
            ErrorKind::ExpiredSignature => presented.expired(),
            ErrorKind::ImmatureSignature => {
                presented.refused("is not valid yet (nbf is in the future)")
            }
            ErrorKind::InvalidIssuer => presented.refused(format_args!(
                "was issued by another issuer; this IdP is {}",
                idp.issuer()
            )),
            ErrorKind::MissingRequiredClaim(claim) => {
                presented.refused(format_args!("has no {claim} claim"))
            }
            other => presented.refused(format_args!("is malformed: {other:?}")),
        })
}

/// RFC 7523 §2.2: the `client_assertion_type` of a JWT client assertion.
pub(super) const JWT_BEARER_ASSERTION: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Whether `assertion` authenticates `client`, as Entra checks a managed identity's token
/// against an app registration's federated identity credentials: this IdP signed it and it is
/// valid now ([`verify_own`]), and its `sub` and `aud` are those of one of the client's
/// [`Client::federated_credentials`]. Every refusal is `invalid_client`.
pub(super) fn verify_client_assertion(
    idp: &Idp,
    client: &Client,
    assertion: &str,
) -> Result<(), OAuthError> {
    if client.federated_credentials.is_empty() {
        return Err(OAuthError::InvalidClient(format!(
            "client {} has no federated credentials, so no client assertion authenticates it: \
             send its client_secret",
            client.client_id
        )));
    }
    let claims = verify_own(idp, assertion, &CLIENT_ASSERTION)?;
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .ok_or_else(|| CLIENT_ASSERTION.refused("has a sub that is not a string"))?;
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(aud)) => vec![aud.as_str()],
        Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let trusted: Vec<&super::FederatedCredential> = client
        .federated_credentials
        .iter()
        .filter(|credential| credential.subject == sub)
        .collect();
    if trusted.is_empty() {
        return Err(CLIENT_ASSERTION.refused(format_args!(
            "is for the subject {sub:?}, which no federated credential of client {} names \
             (it trusts {}): add a federated credential for that managed identity's principal \
             id, or use the identity the client trusts",
            client.client_id,
            client
                .federated_credentials
                .iter()
                .map(|c| c.subject.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if trusted
        .iter()
        .any(|credential| audiences.contains(&credential.audience.as_str()))
    {
        return Ok(());
    }
    let expected: Vec<&str> = trusted.iter().map(|c| c.audience.as_str()).collect();
    Err(CLIENT_ASSERTION.refused(format_args!(
        "is for the audience {}, not {}: ask the managed identity for a token for {}",
        if audiences.is_empty() {
            "(none)".to_owned()
        } else {
            audiences.join(", ")
        },
        expected.join(" or "),
        expected[0]
    )))
}

/// Where a grant takes its target from.
#[derive(Debug, Clone, Copy)]
struct TargetRules {
    /// RFC 8693's `audience` parameter names a target (the exchange).
    audience: bool,
    /// `scope=<resource>/.default` is required (on-behalf-of, as in Entra).
    scope_required: bool,
}

impl TargetRules {
    const CLIENT_CREDENTIALS: Self = Self {
        audience: false,
        scope_required: false,
    };
    const TOKEN_EXCHANGE: Self = Self {
        audience: true,
        scope_required: false,
    };
    const ON_BEHALF_OF: Self = Self {
        audience: false,
        scope_required: true,
    };
}

/// The one resource the token is for: what `resource`, `audience` (if the grant takes it) and
/// `scope=<resource>/.default` name, which must agree; with none of them, the client's first
/// resource. It must be one the client is registered for (RFC 8707 §2: `invalid_target`).
fn target<'c>(
    idp: &Idp,
    client: &'c Client,
    params: &Params,
    rules: TargetRules,
) -> Result<&'c str, OAuthError> {
    let mut named: Vec<(&str, &str)> = Vec::new();
    if let Some(resource) = single_target(params, "resource")? {
        if !is_absolute_uri(resource) {
            return Err(OAuthError::InvalidTarget(format!(
                "resource {resource:?} is not an absolute URI without a fragment (RFC 8707 §2)"
            )));
        }
        named.push(("resource", resource));
    }
    if rules.audience
        && let Some(audience) = single_target(params, "audience")?
    {
        named.push(("audience", audience));
    }
    match scope_target(idp, params.one("scope")?)? {
        Some(resource) => named.push(("scope", resource)),
        None if rules.scope_required => {
            return Err(OAuthError::InvalidRequest(format!(
                "scope is missing: ask for <resource>/.default, e.g. {}",
                may_target(client, "/.default")
            )));
        }
        None => {}
    }
    let Some(&(first, requested)) = named.first() else {
        return client.resources.first().map(String::as_str).ok_or_else(|| {
            OAuthError::InvalidTarget(format!(
                "client {} is registered for no resource",
                client.client_id
            ))
        });
    };
    if let Some((other, different)) = named.iter().find(|(_, r)| *r != requested) {
        return Err(OAuthError::InvalidTarget(format!(
            "{first} {requested:?} and {other} {different:?} name different resources; a token \
             is for one"
        )));
    }
    client
        .resources
        .iter()
        .find(|r| *r == requested)
        .map(String::as_str)
        .ok_or_else(|| {
            OAuthError::InvalidTarget(format!(
                "client {} may not get tokens for {requested:?}; it may target {}",
                client.client_id,
                may_target(client, "")
            ))
        })
}

/// The value of `resource` or `audience`. RFC 8707 and RFC 8693 let them repeat, to ask for a
/// token for several resources; this IdP's tokens are each for one, so a repeat is
/// `invalid_target`, not the `invalid_request` of other repeated parameters.
fn single_target<'p>(params: &'p Params, parameter: &str) -> Result<Option<&'p str>, OAuthError> {
    match params.all(parameter).as_slice() {
        [] => Ok(None),
        [value] => Ok(Some(*value)),
        values => Err(OAuthError::InvalidTarget(format!(
            "{parameter} is given {} times; this IdP issues a token for one resource per request",
            values.len()
        ))),
    }
}

/// The resource a `scope` names: `<resource>/.default`, as Entra requires for
/// `client_credentials` and on-behalf-of, for a resource this IdP knows. No scope: `None`.
fn scope_target<'p>(idp: &Idp, scope: Option<&'p str>) -> Result<Option<&'p str>, OAuthError> {
    let Some(scope) = scope.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let audiences = idp.audiences();
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
    if audiences.iter().any(|a| a == requested) {
        Ok(Some(requested))
    } else {
        Err(invalid())
    }
}

/// The client's resources, each followed by `suffix`, for an error description.
fn may_target(client: &Client, suffix: &str) -> String {
    client
        .resources
        .iter()
        .map(|r| format!("{r}{suffix}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// RFC 3986 §4.3 absolute URI (`scheme ":" ...`, no fragment), as RFC 8707 requires of a
/// `resource`.
fn is_absolute_uri(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && !text.contains('#')
        && !text.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idp::{IdpConfig, defaults};

    fn params(body: &str) -> Params {
        Params::parse(body.as_bytes()).expect("form")
    }

    fn two_resources() -> (Idp, Client) {
        let resources = vec![
            "api://contoso-mcp".to_owned(),
            "http://agents/mcp".to_owned(),
        ];
        let idp = Idp::new(IdpConfig {
            audiences: [resources.clone(), vec!["http://other/mcp".to_owned()]].concat(),
            clients: defaults::clients_for(&resources),
            ..IdpConfig::default()
        })
        .expect("idp");
        let client = idp.client("contoso-query").expect("client").clone();
        (idp, client)
    }

    #[test]
    fn the_target_is_what_resource_and_scope_agree_on_or_the_first_resource() {
        let (idp, client) = two_resources();
        let target =
            |body: &str, rules| target(&idp, &client, &params(body), rules).map(str::to_owned);
        let cc = TargetRules::CLIENT_CREDENTIALS;
        assert_eq!(target("", cc).ok().as_deref(), Some("api://contoso-mcp"));
        assert_eq!(
            target("scope=+", cc).ok().as_deref(),
            Some("api://contoso-mcp")
        );
        for body in [
            "resource=http%3A%2F%2Fagents%2Fmcp",
            "scope=http%3A%2F%2Fagents%2Fmcp%2F.default",
            "resource=http%3A%2F%2Fagents%2Fmcp&scope=http%3A%2F%2Fagents%2Fmcp%2F.default",
        ] {
            assert_eq!(
                target(body, cc).ok().as_deref(),
                Some("http://agents/mcp"),
                "{body}"
            );
        }
        // `audience` counts for the exchange only.
        assert_eq!(
            target("audience=http%3A%2F%2Fagents%2Fmcp", cc)
                .ok()
                .as_deref(),
            Some("api://contoso-mcp")
        );
        assert_eq!(
            target(
                "audience=http%3A%2F%2Fagents%2Fmcp",
                TargetRules::TOKEN_EXCHANGE
            )
            .ok()
            .as_deref(),
            Some("http://agents/mcp")
        );
    }

    #[test]
    fn targets_are_refused_with_the_right_error() {
        let (idp, client) = two_resources();
        let refusal = |body: &str, rules| target(&idp, &client, &params(body), rules).err();
        let cc = TargetRules::CLIENT_CREDENTIALS;
        for body in [
            // Known to the IdP, not registered for this client.
            "resource=http%3A%2F%2Fother%2Fmcp",
            "scope=http%3A%2F%2Fother%2Fmcp%2F.default",
            // Unknown to the IdP.
            "resource=api%3A%2F%2Felsewhere",
            "resource=api%3A%2F%2Fcontoso-mcp&scope=http%3A%2F%2Fagents%2Fmcp%2F.default",
            "resource=api%3A%2F%2Fcontoso-mcp&resource=http%3A%2F%2Fagents%2Fmcp",
            "resource=not-a-uri",
            "resource=api%3A%2F%2Fcontoso-mcp%23fragment",
        ] {
            assert!(
                matches!(refusal(body, cc), Some(OAuthError::InvalidTarget(_))),
                "{body}"
            );
        }
        for body in [
            "scope=api%3A%2F%2Felsewhere%2F.default",
            "scope=api%3A%2F%2Fcontoso-mcp",
            "scope=api%3A%2F%2Fcontoso-mcp%2F.default+http%3A%2F%2Fagents%2Fmcp%2F.default",
        ] {
            assert!(
                matches!(refusal(body, cc), Some(OAuthError::InvalidScope(_))),
                "{body}"
            );
        }
        assert!(matches!(
            refusal(
                "audience=api%3A%2F%2Fcontoso-mcp&resource=http%3A%2F%2Fagents%2Fmcp",
                TargetRules::TOKEN_EXCHANGE
            ),
            Some(OAuthError::InvalidTarget(_))
        ));
        assert!(matches!(
            refusal(
                "resource=api%3A%2F%2Fcontoso-mcp",
                TargetRules::ON_BEHALF_OF
            ),
            Some(OAuthError::InvalidRequest(_))
        ));
        let Some(OAuthError::InvalidTarget(description)) =
            refusal("resource=http%3A%2F%2Fother%2Fmcp", cc)
        else {
            panic!("invalid_target");
        };
        assert!(
            description.contains("contoso-query")
                && description.contains("api://contoso-mcp, http://agents/mcp"),
            "{description}"
        );
    }

    #[test]
    fn a_subject_token_must_be_for_a_resource_the_client_serves() {
        let agent = defaults::agent_client(
            "agent",
            &["http://agents/mcp".to_owned(), "api://agents".to_owned()],
            &["http://tools/mcp".to_owned()],
        );
        let claims = |aud: Option<Value>| {
            let mut claims = json!({"sub": "alice"});
            if let Some(aud) = aud {
                claims["aud"] = aud;
            }
            claims.as_object().expect("object").clone()
        };
        for accepted in [
            json!("http://agents/mcp"),
            json!("api://agents"),
            json!(["http://other/mcp", "api://agents"]),
        ] {
            assert!(
                sent_to(&agent, &claims(Some(accepted.clone()))).is_ok(),
                "{accepted}"
            );
        }
        for refused in [
            None,
            Some(Value::Null),
            Some(json!("http://tools/mcp")),
            Some(json!("http://agents/mcp/")),
            Some(json!([])),
            Some(json!(["http://other/mcp", "http://tools/mcp"])),
            Some(json!(["http://agents/mcp", 7])),
            Some(json!(7)),
            Some(json!({"aud": "http://agents/mcp"})),
        ] {
            assert!(
                matches!(
                    sent_to(&agent, &claims(refused.clone())),
                    Err(OAuthError::InvalidGrant(_))
                ),
                "{refused:?}"
            );
        }
        let Err(OAuthError::InvalidGrant(description)) = sent_to(
            &agent,
            &claims(Some(json!(["http://a/mcp", "http://b/mcp"]))),
        ) else {
            panic!("invalid_grant");
        };
        assert_eq!(
            description,
            "the subject token was issued for http://a/mcp, http://b/mcp, not for a resource \
             this client serves (http://agents/mcp, api://agents): an agent exchanges only the \
             tokens its own callers sent it"
        );
    }

    #[test]
    fn only_clients_serving_resources_may_exchange() {
        let targets = ["http://tools/mcp".to_owned()];
        let agent = defaults::agent_client("agent", &["http://agents/mcp".to_owned()], &targets);
        let idle = defaults::agent_client("idle", &[], &targets);
        for grant in [Grant::TokenExchange, Grant::OnBehalfOf] {
            assert!(may_exchange(&agent, grant).is_ok());
            assert!(matches!(
                may_exchange(&idle, grant),
                Err(OAuthError::UnauthorizedClient(_))
            ));
        }
    }

    /// An IdP whose agent client trusts [`defaults::AGENT_PRINCIPAL_ID`], and that client.
    fn federated() -> (Idp, Client) {
        let audience = vec![defaults::AUDIENCE.to_owned()];
        let idp = Idp::new(IdpConfig {
            clients: vec![defaults::agent_client(
                defaults::AGENT_CLIENT_ID,
                &audience,
                &audience,
            )],
            ..IdpConfig::default()
        })
        .expect("idp");
        let client = idp
            .client(defaults::AGENT_CLIENT_ID)
            .expect("agent")
            .clone();
        (idp, client)
    }

    /// The claims of a managed identity's token, as the stand-in endpoint mints them.
    fn identity_claims(idp: &Idp, subject: &str, audience: &str) -> Value {
        idp.claims(&TokenSpec {
            audience: Some(audience.to_owned()),
            ..TokenSpec::new(defaults::CONTOSO, Vec::<String>::new(), subject)
        })
    }

    fn refusal(idp: &Idp, client: &Client, assertion: &str) -> String {
        match verify_client_assertion(idp, client, assertion) {
            Err(OAuthError::InvalidClient(description)) => description,
            other => panic!("expected invalid_client, got {other:?}"),
        }
    }

    #[test]
    fn a_token_of_a_federated_identity_for_the_assertion_audience_authenticates_its_client() {
        let (idp, client) = federated();
        let mut claims = identity_claims(
            &idp,
            defaults::AGENT_PRINCIPAL_ID,
            defaults::ASSERTION_AUDIENCE,
        );
        let assertion = idp.mint_with(&idp.header(), &claims);
        verify_client_assertion(&idp, &client, &assertion).expect("trusted");
        claims["aud"] = json!(["api://other", defaults::ASSERTION_AUDIENCE]);
        let listed = idp.mint_with(&idp.header(), &claims);
        verify_client_assertion(&idp, &client, &listed).expect("one of its audiences");
        // Signed before a rotation, by a key still published.
        idp.rotate().expect("rotate");
        verify_client_assertion(&idp, &client, &assertion).expect("rotated-out key");
    }

    #[test]
    fn assertions_for_another_audience_or_subject_are_refused_saying_which() {
        let (idp, client) = federated();
        let other_audience = idp.mint(&TokenSpec {
            audience: Some(defaults::AUDIENCE.to_owned()),
            ..TokenSpec::new(
                defaults::CONTOSO,
                Vec::<String>::new(),
                defaults::AGENT_PRINCIPAL_ID,
            )
        });
        assert_eq!(
            refusal(&idp, &client, &other_audience),
            "the client assertion is for the audience api://contoso-mcp, not \
             api://AzureADTokenExchange: ask the managed identity for a token for \
             api://AzureADTokenExchange"
        );
        let mut no_audience = identity_claims(&idp, defaults::AGENT_PRINCIPAL_ID, "x");
        no_audience.as_object_mut().expect("object").remove("aud");
        let description = refusal(&idp, &client, &idp.mint_with(&idp.header(), &no_audience));
        assert!(description.contains("audience (none)"), "{description}");

        let stranger = "0badc0de-0000-4000-8000-000000000000";
        let other_subject = idp.mint_with(
            &idp.header(),
            &identity_claims(&idp, stranger, defaults::ASSERTION_AUDIENCE),
        );
        assert_eq!(
            refusal(&idp, &client, &other_subject),
            format!(
                "the client assertion is for the subject \"{stranger}\", which no federated \
                 credential of client contoso-agent names (it trusts {}): add a federated \
                 credential for that managed identity's principal id, or use the identity the \
                 client trusts",
                defaults::AGENT_PRINCIPAL_ID
            )
        );

        // A client without federated credentials takes no assertion at all.
        let secret_only = idp.client(defaults::AGENT_CLIENT_ID).map(|c| Client {
            federated_credentials: Vec::new(),
            ..c.clone()
        });
        let valid = idp.mint_with(
            &idp.header(),
            &identity_claims(
                &idp,
                defaults::AGENT_PRINCIPAL_ID,
                defaults::ASSERTION_AUDIENCE,
            ),
        );
        let description = refusal(&idp, &secret_only.expect("client"), &valid);
        assert!(
            description.contains("has no federated credentials"),
            "{description}"
        );
    }

    #[test]
    fn assertions_not_signed_here_or_not_valid_now_are_refused() {
        let (idp, client) = federated();
        let claims = identity_claims(
            &idp,
            defaults::AGENT_PRINCIPAL_ID,
            defaults::ASSERTION_AUDIENCE,
        );
        let foreign = idp.foreign_key().expect("key").sign(&idp.header(), &claims);
        let mut expired = claims.clone();
        expired["exp"] = json!(chrono::Utc::now().timestamp() - 1);
        let mut early = claims.clone();
        early["nbf"] = json!(chrono::Utc::now().timestamp() + 600);
        let mut other_issuer = claims.clone();
        other_issuer["iss"] = json!("http://127.0.0.1:4445");
        let mut hs256_header = idp.header();
        hs256_header["alg"] = json!("HS256");
        for (assertion, expected) in [
            (foreign, "was not signed by this IdP's published keys"),
            (
                idp.mint_with(&idp.header(), &expired),
                "has expired (no clock leeway): get a fresh token from the managed identity",
            ),
            (idp.mint_with(&idp.header(), &early), "is not valid yet"),
            (
                idp.mint_with(&idp.header(), &other_issuer),
                "was issued by another issuer",
            ),
            (
                crate::idp::forge::unsigned(&claims),
                "is malformed: not a signed JWT",
            ),
            (
                crate::idp::forge::hs256(&hs256_header, &claims, b"secret"),
                "is signed with HS256",
            ),
            ("not-a-jwt".to_owned(), "is malformed"),
        ] {
            let description = refusal(&idp, &client, &assertion);
            assert!(
                description.starts_with("the client assertion ") && description.contains(expected),
                "{expected}: {description}"
            );
        }
    }

    #[test]
    fn absolute_uris() {
        for uri in [
            "api://contoso-mcp",
            "http://127.0.0.1:8080/x/mcp",
            "urn:x:y",
        ] {
            assert!(is_absolute_uri(uri), "{uri}");
        }
        for text in [
            "",
            "contoso-mcp",
            "/mcp",
            "1http://x",
            "http:",
            "http://x#f",
            "a b:c",
        ] {
            assert!(!is_absolute_uri(text), "{text}");
        }
    }

    #[test]
    fn grant_types_round_trip() {
        for grant in Grant::ALL {
            assert_eq!(Grant::parse(grant.name()), Some(grant));
        }
        assert_eq!(Grant::parse("password"), None);
    }
}
