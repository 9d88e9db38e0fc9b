//! Authentication and authorization shared by every service (and, later, the gateway).
//!
//! - [`config`]: the settings (`AUTH_ISSUER`, `MCP_API_AUDIENCE`, `ALLOWED_TENANTS`, the
//!   development modes) and their validation into an [`AuthMode`];
//! - [`jwks`]: issuer discovery and the signing-key cache (refreshed in the background,
//!   re-fetched on an unknown `kid` at a bounded rate, last good keys kept);
//! - [`verifier`]: JWT verification into a typed [`Identity`], with a short-lived cache of
//!   verified tokens;
//! - [`policy`]: which roles may use which tool;
//! - [`middleware`]: the axum layer that authenticates each request once at the edge of a
//!   service, and the RFC 9728 protected-resource metadata.
//!
//! Nothing below the HTTP layer looks at headers: handlers receive an [`Identity`].

pub mod config;
pub mod jwks;
pub mod middleware;
pub mod policy;
pub mod verifier;

use std::collections::BTreeSet;

pub use config::{AuthArgs, AuthMode};
pub use policy::RolePolicy;
pub use verifier::JwtVerifier;

/// Who is calling, as established by the token (or by a development mode).
///
/// Holds claims only, never the token itself, so it can be logged at debug level safely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Subject (`sub`): the user or application the token was issued to.
    pub subject: String,
    /// Object id (`oid`) in the tenant's directory, when the issuer provides one.
    pub object_id: Option<String>,
    /// Tenant (`tid`): the customer organisation.
    pub tenant: String,
    /// Application roles (`roles`), e.g. `query`, `billing`, `security`.
    pub roles: BTreeSet<String>,
    /// Delegated scopes (`scp`, space separated in the token).
    pub scopes: BTreeSet<String>,
    /// The client application (`azp`, or `appid` in Entra v1 tokens).
    pub client_id: Option<String>,
    /// Expiry (`exp`), seconds since the Unix epoch.
    pub expires_at: i64,
    /// The audiences the token was issued for (`aud`), so a server fronting several resources
    /// (the gateway's routes) can tell which one the token is bound to.
    pub audiences: Vec<String>,
    /// The delegation chain (`act`, RFC 8693 §4.1), the current actor first: empty for a token a
    /// person or application got for itself, `["contoso-agent"]` for one an agent obtained by
    /// token exchange on the subject's behalf.
    pub actors: Vec<String>,
}

impl Identity {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.contains(role)
    }

    /// Whether the token was issued for one of `audiences`.
    pub fn issued_for_any(&self, audiences: &[String]) -> bool {
        self.audiences.iter().any(|a| audiences.contains(a))
    }

    /// Whether an agent (rather than the subject itself) presented the token.
    pub fn is_delegated(&self) -> bool {
        !self.actors.is_empty()
    }
}

/// Why a request was not authenticated or not admitted. Callers see only the HTTP status and a
/// generic message; the variant goes to the log at debug level.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    MissingToken,
    #[error("malformed Authorization header")]
    MalformedHeader,
    #[error("token longer than the limit")]
    TooLarge,
    #[error("token is not a well-formed JWT: {0}")]
    Malformed(String),
    #[error("algorithm {0} is not accepted")]
    AlgorithmNotAllowed(String),
    #[error("token has no key id")]
    MissingKid,
    #[error("no signing key with id {0}")]
    UnknownKid(String),
    #[error("signing keys are not available")]
    KeysUnavailable,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("token has no tenant (tid)")]
    MissingTenant,
    /// A delegated token (`act`) presented by an actor this service does not trust.
    #[error("actor {0} is not trusted to act for others here")]
    UntrustedActor(String),
    /// A delegated token whose actor itself acted for someone else (`act.act`).
    #[error("delegation deeper than one level")]
    DelegationTooDeep,
    /// A token for another resource than the one it was presented to (the gateway's routes).
    #[error("token was not issued for this resource")]
    WrongAudience,
    /// A valid token of a tenant this service does not admit: 403, not 401.
    #[error("tenant {0} is not allowed")]
    TenantNotAllowed(String),
}

impl AuthError {
    /// The refusal's reason in one word, for metrics (`auth.refusals`) and span attributes;
    /// never the token or its claims.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "missing_token",
            AuthError::MalformedHeader => "malformed_header",
            AuthError::TooLarge => "token_too_large",
            AuthError::Malformed(_) => "malformed_token",
            AuthError::AlgorithmNotAllowed(_) => "algorithm_not_allowed",
            AuthError::MissingKid => "missing_kid",
            AuthError::UnknownKid(_) => "unknown_kid",
            AuthError::KeysUnavailable => "keys_unavailable",
            AuthError::Invalid(_) => "invalid_token",
            AuthError::MissingTenant => "missing_tenant",
            AuthError::UntrustedActor(_) => "untrusted_actor",
            AuthError::DelegationTooDeep => "delegation_too_deep",
            AuthError::WrongAudience => "wrong_audience",
            AuthError::TenantNotAllowed(_) => "tenant_not_allowed",
        }
    }

    /// True when the caller is authenticated but not admitted (HTTP 403).
    pub fn is_forbidden(&self) -> bool {
        matches!(self, AuthError::TenantNotAllowed(_))
    }
}
