//! JWT verification: signature with the issuer's keys, algorithm allow-list, `iss`, `aud`,
//! `exp`/`nbf` with leeway, tenant; the result is a typed [`Identity`].
//!
//! Verified tokens are remembered until their expiry (at most [`JwtVerifier::CACHE_TTL`]) so a
//! client calling in a loop pays for one signature check, not one per call. The cache is keyed
//! by the whole token text, so any change to a token is a miss and gets verified in full.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use jsonwebtoken::{Algorithm, Validation, decode, decode_header};
use serde::Deserialize;

use super::{
    AuthError, Identity,
    jwks::{Jwks, KeyFamily},
};

/// Algorithms a token may be signed with. Never `none`, never HS* (a shared secret would let
/// anyone holding the public key forge tokens if it were accepted as one).
pub const ALLOWED_ALGORITHMS: [Algorithm; 3] =
    [Algorithm::RS256, Algorithm::ES256, Algorithm::PS256];

/// Longest token accepted; Entra tokens with many groups stay well below.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// What a token must say to be accepted.
#[derive(Debug, Clone)]
pub struct VerifierSettings {
    pub issuer: String,
    /// Accepted `aud` values; a token must name at least one.
    pub audiences: Vec<String>,
    /// Tenants admitted; `None` admits every tenant the issuer signs for.
    pub allowed_tenants: Option<BTreeSet<String>>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// Client ids allowed to present tokens on someone else's behalf (`act.sub`); a delegated
    /// token of any other actor, or one delegated twice (`act.act`), is refused. Empty: no
    /// delegated token is accepted.
    pub trusted_actors: BTreeSet<String>,
}

/// `aud`: one string or an array of them (RFC 7519 §4.1.3).
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn into_vec(self) -> Vec<String> {
        match self {
            Audience::One(a) => vec![a],
            Audience::Many(a) => a,
        }
    }
}

/// `act` (RFC 8693 §4.1): who presents the token, and whom that actor acted for, nested.
#[derive(Deserialize)]
struct Actor {
    sub: Option<String>,
    act: Option<Box<Actor>>,
}

impl Actor {
    /// The chain, current actor first.
    fn chain(self) -> Vec<String> {
        let mut chain = Vec::new();
        let mut next = Some(Box::new(self));
        while let Some(actor) = next {
            chain.push(actor.sub.unwrap_or_default());
            next = actor.act;
        }
        chain
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    oid: Option<String>,
    tid: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    scp: Option<String>,
    azp: Option<String>,
    appid: Option<String>,
    exp: i64,
    aud: Option<Audience>,
    act: Option<Actor>,
}

impl Claims {
    fn into_identity(self) -> Result<Identity, AuthError> {
        let tenant = self
            .tid
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::MissingTenant)?;
        let subject = self
            .sub
            .filter(|s| !s.is_empty())
            .ok_or_else(|| AuthError::Invalid("no subject (sub)".into()))?;
        Ok(Identity {
            subject,
            object_id: self.oid,
            tenant,
            roles: self.roles.into_iter().collect(),
            scopes: self
                .scp
                .iter()
                .flat_map(|s| s.split(' '))
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            client_id: self.azp.or(self.appid),
            expires_at: self.exp,
            audiences: self.aud.map(Audience::into_vec).unwrap_or_default(),
            actors: self.act.map(Actor::chain).unwrap_or_default(),
        })
    }
}

/// Refuses a delegated token unless one trusted actor presents it for its subject.
fn check_actors(actors: &[String], trusted: &BTreeSet<String>) -> Result<(), AuthError> {
    match actors {
        [] => Ok(()),
        [actor] if !actor.is_empty() && trusted.contains(actor) => Ok(()),
        [actor] => Err(AuthError::UntrustedActor(actor.clone())),
        _ => Err(AuthError::DelegationTooDeep),
    }
}

struct Cached {
    identity: Identity,
    /// Unix seconds after which the entry is not used.
    until: i64,
}

/// Verifies bearer tokens of one issuer.
pub struct JwtVerifier {
    settings: VerifierSettings,
    jwks: Arc<Jwks>,
    cache: Mutex<HashMap<String, Cached>>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("settings", &self.settings)
            .field("jwks", &self.jwks)
            .finish()
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl JwtVerifier {
    /// Longest a verified token is trusted without checking it again.
    pub const CACHE_TTL: Duration = Duration::from_secs(300);
    /// Entries kept at most; beyond, expired ones are dropped, then all.
    const CACHE_MAX: usize = 10_000;

    pub fn new(settings: VerifierSettings, jwks: Arc<Jwks>) -> Self {
        JwtVerifier {
            settings,
            jwks,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn settings(&self) -> &VerifierSettings {
        &self.settings
    }

    pub fn jwks(&self) -> &Arc<Jwks> {
        &self.jwks
    }

    /// Verifies a token (the text after `Bearer `).
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TooLarge);
        }
        if let Some(identity) = self.cached(token) {
            return Ok(identity);
        }
        let identity = self.verify_uncached(token).await?;
        self.remember(token, &identity);
        Ok(identity)
    }

    /// Verifies without looking at or filling the cache (for measuring the full cost).
    pub async fn verify_uncached(&self, token: &str) -> Result<Identity, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TooLarge);
        }
        let header = decode_header(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
        if !ALLOWED_ALGORITHMS.contains(&header.alg) {
            return Err(AuthError::AlgorithmNotAllowed(format!("{:?}", header.alg)));
        }
        let kid = header.kid.ok_or(AuthError::MissingKid)?;
        let key = self.jwks.key(&kid).await?;
        let family_fits = match header.alg {
            Algorithm::ES256 => key.family == KeyFamily::Ec,
            _ => key.family == KeyFamily::Rsa,
        };
        if !family_fits || key.algorithm.is_some_and(|pinned| pinned != header.alg) {
            return Err(AuthError::AlgorithmNotAllowed(format!(
                "{:?} for key {kid}",
                header.alg
            )));
        }
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&self.settings.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = self.settings.leeway.as_secs();
        let data = decode::<Claims>(token, &key.key, &validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let identity = data.claims.into_identity()?;
        check_actors(&identity.actors, &self.settings.trusted_actors)?;
        if let Some(allowed) = &self.settings.allowed_tenants
            && !allowed.contains(&identity.tenant)
        {
            return Err(AuthError::TenantNotAllowed(identity.tenant));
        }
        Ok(identity)
    }

    fn cached(&self, token: &str) -> Option<Identity> {
        let cache = self.cache.lock().ok()?;
        let entry = cache.get(token)?;
        (now() < entry.until).then(|| entry.identity.clone())
    }

    fn remember(&self, token: &str, identity: &Identity) {
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        let now = now();
        if cache.len() >= Self::CACHE_MAX {
            cache.retain(|_, entry| entry.until > now);
            if cache.len() >= Self::CACHE_MAX {
                cache.clear();
            }
        }
        let until = identity
            .expires_at
            .min(now + Self::CACHE_TTL.as_secs() as i64);
        cache.insert(
            token.to_owned(),
            Cached {
                identity: identity.clone(),
                until,
            },
        );
    }
}

/// Reads claims without checking the signature: only for `USE_PASSTHROUGH_AUTH`, a development
/// mode that trusts whatever a well-formed token says.
pub fn unverified_identity(
    token: &str,
    default_roles: &BTreeSet<String>,
) -> Result<Identity, AuthError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::TooLarge);
    }
    #[derive(Deserialize)]
    struct Loose {
        sub: Option<String>,
        tid: Option<String>,
        #[serde(default)]
        roles: Vec<String>,
        exp: Option<i64>,
        aud: Option<Audience>,
        act: Option<Actor>,
    }
    let claims: Loose = jsonwebtoken::dangerous::insecure_decode_claims(token)
        .map_err(|e| AuthError::Malformed(e.to_string()))?;
    let roles: BTreeSet<String> = if claims.roles.is_empty() {
        default_roles.clone()
    } else {
        claims.roles.into_iter().collect()
    };
    Ok(Identity {
        subject: claims.sub.unwrap_or_else(|| "passthrough".into()),
        object_id: None,
        tenant: claims.tid.unwrap_or_else(|| "passthrough".into()),
        roles,
        scopes: BTreeSet::new(),
        client_id: None,
        expires_at: claims.exp.unwrap_or(i64::MAX),
        audiences: claims.aud.map(Audience::into_vec).unwrap_or_default(),
        actors: claims.act.map(Actor::chain).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(json: &str) -> Vec<String> {
        serde_json::from_str::<Actor>(json).expect("act").chain()
    }

    #[test]
    fn actor_chains_are_read_outermost_first() {
        assert_eq!(chain(r#"{"sub":"agent"}"#), ["agent"]);
        assert_eq!(
            chain(r#"{"sub":"outer","act":{"sub":"inner"}}"#),
            ["outer", "inner"]
        );
    }

    #[test]
    fn only_one_trusted_actor_is_accepted() {
        let trusted = BTreeSet::from(["contoso-agent".to_owned()]);
        assert_eq!(check_actors(&[], &trusted), Ok(()));
        assert_eq!(check_actors(&["contoso-agent".into()], &trusted), Ok(()));
        assert_eq!(
            check_actors(&["mallory".into()], &trusted),
            Err(AuthError::UntrustedActor("mallory".into()))
        );
        assert_eq!(
            check_actors(&["contoso-agent".into()], &BTreeSet::new()),
            Err(AuthError::UntrustedActor("contoso-agent".into()))
        );
        assert_eq!(
            check_actors(&["contoso-agent".into(), "contoso-agent".into()], &trusted),
            Err(AuthError::DelegationTooDeep)
        );
        assert_eq!(
            check_actors(&[String::new()], &trusted),
            Err(AuthError::UntrustedActor(String::new()))
        );
    }
}
