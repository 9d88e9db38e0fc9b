//! The development OpenID Connect identity provider: an issuer on loopback that signs real
//! RS256 access tokens, so the services verify exactly what they would verify from Entra ID.
//!
//! An [`Idp`] holds the issuer URL, the audiences it issues for, the tenants and clients it
//! knows, and its signing keys. It mints tokens directly ([`Idp::mint`], for tests and
//! `devstack token`) and over HTTP ([`Idp::router`]):
//!
//! | route | what |
//! |---|---|
//! | `GET /.well-known/openid-configuration` | discovery: issuer, `jwks_uri`, `token_endpoint`, … |
//! | `GET /jwks` | the public keys: current first, then rotated-out ones not yet retired |
//! | `POST /token` | the grants below; the client's secret in the form or HTTP Basic, or a client assertion |
//! | `POST /rotate`, `POST /retire` | only with [`IdpConfig::allow_rotation`]; otherwise 404 |
//! | `GET /healthz` | alive |
//!
//! Tokens carry `iss`, `aud`, `sub`, `oid` (a UUID derived from `sub`), `tid`, `roles`, `azp`,
//! `iat`, `nbf`, `exp` and `jti`, in a header `{alg: RS256, typ: JWT, kid}`. One issuer serves
//! every tenant; the tenant is the `tid` claim, as in Entra's multi-tenant applications.
//!
//! Every token is for one resource (`aud`): MCP servers accept only tokens issued for
//! themselves. Each [`Client`] is registered for the resources it may target; a request for any
//! other is refused with `invalid_target` (RFC 8707 §2). The token endpoint's grants:
//!
//! - `client_credentials` (RFC 6749 §4.4): a token for the client itself (its tenant, roles and
//!   subject). The target is the RFC 8707 `resource` parameter, or Entra's
//!   `scope=<resource>/.default`, or both if they agree; with neither, the client's first
//!   resource.
//! - `urn:ietf:params:oauth:grant-type:token-exchange` (RFC 8693): a client that serves
//!   resources of its own ([`Client::subject_audiences`]: an agent service) trades the
//!   `subject_token` its caller sent it, a token for one of those resources, for a token for
//!   another resource (`audience`, `resource` or `scope=<resource>/.default`). The new token
//!   keeps the caller's `sub`, `oid`, `tid`, `roles` and `scp`, has `azp` = the exchanging
//!   client and `act: {"sub": <client>}`, with the subject token's own `act` nested inside it
//!   (RFC 8693 §4.1; refusing delegation chains is the resource servers' business), and expires
//!   no later than the subject token.
//! - `urn:ietf:params:oauth:grant-type:jwt-bearer` with `requested_token_use=on_behalf_of`:
//!   Entra's on-behalf-of flow (`assertion`, `scope=<resource>/.default`), issuing the same
//!   token as the exchange. Entra puts no `act` in on-behalf-of tokens; this IdP does, so the
//!   services can tell a delegated call from a direct one in development as with RFC 8693.
//!
//! A subject token is accepted only if this IdP signed it (RS256, with its current key or a
//! rotated-out key still published), its `iss` is this issuer, it has not expired (with no
//! clock leeway, since the IdP checks its own clock against its own timestamps), and one of its
//! `aud` values (a string or an array) is among the exchanging client's
//! [`Client::subject_audiences`]. Entra's on-behalf-of likewise takes only an assertion issued
//! for the middle-tier application itself: an agent exchanges the tokens its own callers sent
//! it, never a token a user got for some other service (`invalid_grant`). A client with no
//! subject audiences may not use either grant (`unauthorized_client`).
//!
//! A client proves who it is with its secret (`client_secret_basic` or `client_secret_post`),
//! or, if it has [`Client::federated_credentials`], without any secret: with a `client_assertion`
//! (RFC 7523 §2.2, `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`)
//! that is a token of a managed identity the client trusts, as Entra's workload identity
//! federation takes one. The IdP plays Entra on both sides: it signs the managed identity's tokens
//! (through [`crate::managed_identity`] in JWT mode) and verifies them as assertions: signed by
//! its own published keys, `iss` this issuer, valid now (no leeway), `sub` the subject and `aud`
//! the audience of one of the client's federated credentials. Anything else, and a request with
//! both a secret and an assertion, is `invalid_client` with a description that says what to fix.
//! Every successful authentication is recorded ([`Idp::authentications`]), so tests can tell
//! how a client proved itself.
//!
//! The default tenants, roles and clients are listed in [`defaults`]. For the attack tests,
//! [`Idp::claims`] + [`Idp::mint_with`] sign arbitrary claims and headers with the published key,
//! [`Idp::foreign_key_token`] signs with a key the JWKS never shows, [`Idp::rotate`] and
//! [`Idp::retire_old_keys`] rotate keys, [`Idp::set_jwks_available`] simulates an outage, and
//! [`forge`] builds unsigned and HMAC tokens.

pub mod defaults;
pub mod forge;
mod grants;
mod http;
mod keys;
mod server;

use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex, PoisonError, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use aws_lc_rs::digest;
use axum::Router;
use serde_json::{Map, Value, json};
use shared::config::Secret;

pub use self::keys::SigningKey;
pub use self::server::{RunningIdp, serve, spawn, spawn_on};
use crate::Error;

/// File name of the signing key inside the devstack data folder.
pub const KEY_FILE: &str = "idp-signing-key.pem";

/// `grant_type` of the OAuth 2.0 Token Exchange (RFC 8693 §2.1).
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// `grant_type` of Entra's on-behalf-of flow (the RFC 7523 JWT bearer grant with
/// `requested_token_use=on_behalf_of`).
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// A tenant the IdP issues tokens for: a short name people type, and the tid tokens carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub name: String,
    /// The `tid` claim, a UUID in lower case.
    pub tid: String,
}

impl Tenant {
    pub fn new(name: impl Into<String>, tid: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            tid: tid.into(),
        }
    }
}

/// A confidential client of the token endpoint and what its tokens say.
#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: String,
    pub client_secret: Secret,
    /// The tid of the tenant the client belongs to.
    pub tenant: String,
    pub roles: Vec<String>,
    /// The `sub` of its tokens.
    pub subject: String,
    /// The resources (audiences) it may get tokens for, each one of [`IdpConfig::audiences`];
    /// the first is the target when a request names none. At least one.
    pub resources: Vec<String>,
    /// The audiences of the subject tokens it may exchange (token exchange and on-behalf-of):
    /// the resources the client itself serves, e.g. an agent service's own resource URLs, each
    /// one of [`IdpConfig::audiences`]. A subject token is exchanged only if one of its `aud`
    /// values is among them. Empty: the client may not exchange at all, as every client people
    /// hold (only services acting for their callers exchange).
    pub subject_audiences: Vec<String>,
    /// The managed identities it trusts to stand in for its secret: a `client_assertion` that
    /// is one's token (signed by this IdP) authenticates the client. Empty: its secret only.
    pub federated_credentials: Vec<FederatedCredential>,
}

/// A federated identity credential of a client, as on an Entra app registration: tokens this
/// IdP issued to `subject` for `audience` authenticate the client (the issuer is always this
/// IdP, which issues the managed identities' tokens too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederatedCredential {
    /// The `sub` of the assertion: a managed identity's principal (object) id.
    pub subject: String,
    /// The `aud` of the assertion, [`defaults::ASSERTION_AUDIENCE`] as in Entra's public cloud.
    pub audience: String,
}

impl FederatedCredential {
    /// Trusts the managed identity `principal_id` with assertions for
    /// [`defaults::ASSERTION_AUDIENCE`].
    pub fn managed_identity(principal_id: &str) -> Self {
        Self {
            subject: principal_id.to_owned(),
            audience: defaults::ASSERTION_AUDIENCE.to_owned(),
        }
    }
}

/// How a client proved itself at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthMethod {
    /// Its secret in HTTP Basic.
    SecretBasic,
    /// Its secret in the form.
    SecretPost,
    /// A managed identity's token as `client_assertion`, no secret.
    Assertion,
}

/// One successful client authentication at the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authentication {
    pub client_id: String,
    pub method: ClientAuthMethod,
}

/// Where the IdP's first signing key comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A fresh key, gone with the process: tests.
    Generate,
    /// The key in this file, created (0600) if missing: what `devstack` and `devstack token`
    /// share, so a token printed by one verifies against the JWKS of the other.
    File(PathBuf),
    /// This key: several IdPs (say, a right and a wrong issuer) signing with one key.
    Key(Arc<SigningKey>),
}

/// How to build an [`Idp`]. `Default` gives the development setup: default tenants, clients and
/// audience, a generated key, no HTTP rotation, `alg` published on keys.
#[derive(Debug, Clone)]
pub struct IdpConfig {
    /// The `iss` of tokens, which is also the base of the endpoint URLs. `None`: the bound
    /// address (`http://127.0.0.1:PORT`) when served by [`spawn`] or [`serve`], and
    /// [`defaults::ISSUER`] for an [`Idp::new`] that serves nothing.
    pub issuer: Option<String>,
    /// Audiences (resources) the token endpoint issues for; the first is the default of
    /// [`Idp::mint`]. Every client's [`Client::resources`] and [`Client::subject_audiences`]
    /// must be among them.
    pub audiences: Vec<String>,
    pub tenants: Vec<Tenant>,
    pub clients: Vec<Client>,
    pub key: KeySource,
    /// Lifetime of tokens from the token endpoint.
    pub token_lifetime: Duration,
    /// Serve `POST /rotate` and `POST /retire` (tests of a stack in another process).
    pub allow_rotation: bool,
    /// Put `alg: RS256` on published keys. Entra ID leaves it out, so verifier tests turn
    /// this off to check they cope.
    pub publish_key_alg: bool,
}

impl Default for IdpConfig {
    fn default() -> Self {
        Self {
            issuer: None,
            audiences: vec![defaults::AUDIENCE.to_owned()],
            tenants: defaults::tenants(),
            clients: defaults::clients(),
            key: KeySource::Generate,
            token_lifetime: Duration::from_secs(3600),
            allow_rotation: false,
            publish_key_alg: true,
        }
    }
}

/// What a minted token says. `Default`: tenant `contoso`, no roles, subject `alice`, the IdP's
/// first audience, one hour, `azp` `devstack-cli`.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    /// The `tid` (use [`Idp::tenant_id`] to resolve a name).
    pub tenant: String,
    pub roles: Vec<String>,
    pub subject: String,
    /// `None`: the IdP's first audience.
    pub audience: Option<String>,
    pub lifetime: Duration,
    /// The `azp`; `None`: [`defaults::CLI_CLIENT_ID`].
    pub client_id: Option<String>,
    /// Claims added last, so one named like a standard claim replaces it.
    pub extra: Map<String, Value>,
}

impl Default for TokenSpec {
    fn default() -> Self {
        Self {
            tenant: defaults::CONTOSO.to_owned(),
            roles: Vec::new(),
            subject: defaults::SUBJECT.to_owned(),
            audience: None,
            lifetime: Duration::from_secs(3600),
            client_id: None,
            extra: Map::new(),
        }
    }
}

impl TokenSpec {
    /// A spec for `subject` in tenant `tid` with `roles`, other fields as in `Default`.
    pub fn new<R: Into<String>>(
        tid: &str,
        roles: impl IntoIterator<Item = R>,
        subject: &str,
    ) -> Self {
        Self {
            tenant: tid.to_owned(),
            roles: roles.into_iter().map(Into::into).collect(),
            subject: subject.to_owned(),
            ..Self::default()
        }
    }
}

/// The identity provider. Cheap to clone: clones share keys, switches and counters.
#[derive(Debug, Clone)]
pub struct Idp {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    issuer: String,
    audiences: Vec<String>,
    tenants: Vec<Tenant>,
    clients: Vec<Client>,
    token_lifetime: Duration,
    allow_rotation: bool,
    publish_key_alg: bool,
    keys: RwLock<KeyRing>,
    /// Made on first use: most IdPs never sign a forged token, and key generation costs time.
    foreign: Mutex<Option<Arc<SigningKey>>>,
    /// Off: `/jwks` answers 503, to test a verifier whose issuer is unreachable.
    jwks_available: AtomicBool,
    /// Every `/jwks` request, answered or not, so tests can assert a verifier's refetch limits.
    jwks_fetches: AtomicU64,
    /// Every client authentication that succeeded, so tests can assert a client used no secret.
    authentications: Mutex<Vec<Authentication>>,
}

/// The key that signs, and older keys still published so tokens they signed keep verifying.
#[derive(Debug)]
struct KeyRing {
    current: Arc<SigningKey>,
    previous: Vec<Arc<SigningKey>>,
}

impl Idp {
    /// Builds the IdP, loading or creating its key; refuses contradictory settings.
    pub fn new(config: IdpConfig) -> Result<Self, Error> {
        let issuer = config.issuer.unwrap_or_else(|| defaults::ISSUER.to_owned());
        validate(
            &issuer,
            &config.audiences,
            &config.tenants,
            &config.clients,
            config.token_lifetime,
        )?;
        let key = match config.key {
            KeySource::Generate => Arc::new(SigningKey::generate()?),
            KeySource::File(path) => Arc::new(SigningKey::load_or_create(&path)?),
            KeySource::Key(key) => key,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                issuer,
                audiences: config.audiences,
                tenants: config.tenants,
                clients: config.clients,
                token_lifetime: config.token_lifetime,
                allow_rotation: config.allow_rotation,
                publish_key_alg: config.publish_key_alg,
                keys: RwLock::new(KeyRing {
                    current: key,
                    previous: Vec::new(),
                }),
                foreign: Mutex::new(None),
                jwks_available: AtomicBool::new(true),
                jwks_fetches: AtomicU64::new(0),
                authentications: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The `iss` of its tokens, and the base URL of its endpoints.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The audiences the token endpoint issues for; the first is the default.
    pub fn audiences(&self) -> &[String] {
        &self.inner.audiences
    }

    pub fn tenants(&self) -> &[Tenant] {
        &self.inner.tenants
    }

    pub fn clients(&self) -> &[Client] {
        &self.inner.clients
    }

    /// The client with this id, if configured.
    pub fn client(&self, client_id: &str) -> Option<&Client> {
        self.clients().iter().find(|c| c.client_id == client_id)
    }

    /// The tid for a tenant name (`contoso`, any case) or a tid. Any UUID is accepted, known or
    /// not, so tests can mint tokens for a tenant no route allows.
    pub fn tenant_id(&self, name_or_tid: &str) -> Result<String, Error> {
        if let Some(tenant) = self
            .tenants()
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(name_or_tid))
        {
            return Ok(tenant.tid.clone());
        }
        if is_uuid(name_or_tid) {
            return Ok(name_or_tid.to_ascii_lowercase());
        }
        Err(Error::UnknownTenant {
            given: name_or_tid.to_owned(),
            known: self
                .tenants()
                .iter()
                .map(|t| format!("{} ({})", t.name, t.tid))
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Signs a token as `spec` says, with the current key.
    pub fn mint(&self, spec: &TokenSpec) -> String {
        let key = self.signing_key();
        key.sign(&key.header(), &self.claims(spec))
    }

    /// The claims [`Idp::mint`] would sign for `spec` (fresh `iat`, `exp` and `jti`): edit them
    /// and sign with [`Idp::mint_with`] to make a token that is wrong in one chosen way.
    pub fn claims(&self, spec: &TokenSpec) -> Value {
        let now = chrono::Utc::now().timestamp();
        let lifetime = i64::try_from(spec.lifetime.as_secs()).unwrap_or(i64::MAX);
        let mut claims = json!({
            "iss": self.issuer(),
            "aud": spec.audience.as_deref().unwrap_or(&self.inner.audiences[0]),
            "sub": spec.subject,
            "oid": object_id(&spec.subject),
            "tid": spec.tenant,
            "roles": spec.roles,
            "azp": spec.client_id.as_deref().unwrap_or(defaults::CLI_CLIENT_ID),
            "iat": now,
            "nbf": now,
            "exp": now.saturating_add(lifetime),
            "jti": uuid_v4(),
        });
        for (name, value) in &spec.extra {
            claims[name] = value.clone();
        }
        claims
    }

    /// The header of an honest token: `{alg: RS256, typ: JWT, kid: <current kid>}`.
    pub fn header(&self) -> Value {
        self.signing_key().header()
    }

    /// Signs any `claims` under any `header` with the current (published) key, RS256. The
    /// header is taken as given: `{"alg": "RS512", ...}` or a missing `kid` make tokens whose
    /// signature is genuine but whose header a verifier must not trust.
    pub fn mint_with(&self, header: &Value, claims: &Value) -> String {
        self.signing_key().sign(header, claims)
    }

    /// A key that signs but is never published. Made on first call, then the same one.
    pub fn foreign_key(&self) -> Result<Arc<SigningKey>, Error> {
        let mut foreign = self
            .inner
            .foreign
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(key) = foreign.as_ref() {
            return Ok(key.clone());
        }
        let key = Arc::new(SigningKey::generate()?);
        *foreign = Some(key.clone());
        Ok(key)
    }

    /// A token as [`Idp::mint`] makes it, claiming the current `kid`, but signed by
    /// [`Idp::foreign_key`]: a well-formed signature that must not verify. (For an unknown
    /// `kid` instead, sign with `foreign_key()?.sign(&foreign_key()?.header(), ..)`.)
    pub fn foreign_key_token(&self, spec: &TokenSpec) -> Result<String, Error> {
        Ok(self.foreign_key()?.sign(&self.header(), &self.claims(spec)))
    }

    /// The `kid` new tokens carry.
    pub fn current_kid(&self) -> String {
        self.signing_key().kid().to_owned()
    }

    /// Makes a fresh key current and keeps publishing the previous ones, so tokens signed before
    /// the rotation still verify. Returns the new `kid`. Works whatever
    /// [`IdpConfig::allow_rotation`] says (that governs only `POST /rotate`). The new key lives
    /// in memory only: the key file keeps the key the IdP started with.
    pub fn rotate(&self) -> Result<String, Error> {
        let key = Arc::new(SigningKey::generate()?);
        let kid = key.kid().to_owned();
        let mut ring = self
            .inner
            .keys
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let previous = std::mem::replace(&mut ring.current, key);
        ring.previous.insert(0, previous);
        Ok(kid)
    }

    /// Stops publishing every key but the current one; tokens they signed stop verifying.
    /// Returns how many keys were dropped.
    pub fn retire_old_keys(&self) -> usize {
        let mut ring = self
            .inner
            .keys
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut ring.previous).len()
    }

    /// The JWKS document: `{"keys": [current, previous...]}`.
    pub fn jwks(&self) -> Value {
        let ring = self
            .inner
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let with_alg = self.inner.publish_key_alg;
        let keys: Vec<Value> = std::iter::once(&ring.current)
            .chain(&ring.previous)
            .map(|key| key.jwk(with_alg))
            .collect();
        json!({ "keys": keys })
    }

    /// The OpenID discovery document.
    pub fn discovery(&self) -> Value {
        let base = self.issuer().trim_end_matches('/');
        json!({
            "issuer": self.issuer(),
            "jwks_uri": format!("{base}/jwks"),
            "token_endpoint": format!("{base}/token"),
            "response_types_supported": ["token"],
            "grant_types_supported": [
                "client_credentials",
                TOKEN_EXCHANGE_GRANT,
                JWT_BEARER_GRANT,
            ],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "subject_types_supported": ["public"],
        })
    }

    /// Off: `GET /jwks` answers 503 until switched on again (the issuer-unreachable test).
    pub fn set_jwks_available(&self, available: bool) {
        self.inner.jwks_available.store(available, Ordering::SeqCst);
    }

    /// How many times `GET /jwks` was requested, including requests answered 503.
    pub fn jwks_fetches(&self) -> u64 {
        self.inner.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Every successful client authentication at the token endpoint so far, in order.
    pub fn authentications(&self) -> Vec<Authentication> {
        self.inner
            .authentications
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn record_authentication(&self, client: &Client, method: ClientAuthMethod) {
        self.inner
            .authentications
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Authentication {
                client_id: client.client_id.clone(),
                method,
            });
    }

    /// Counts a `GET /jwks` and returns what to answer: the JWKS, or `None` while switched off.
    fn answer_jwks_fetch(&self) -> Option<Value> {
        self.inner.jwks_fetches.fetch_add(1, Ordering::SeqCst);
        self.inner
            .jwks_available
            .load(Ordering::SeqCst)
            .then(|| self.jwks())
    }

    /// The HTTP surface (routes in the module docs), wrapped in the shared middleware.
    pub fn router(&self) -> Router {
        http::router(self.clone())
    }

    /// The key that signs now (its public half is the first in the JWKS).
    pub fn signing_key(&self) -> Arc<SigningKey> {
        self.inner
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .current
            .clone()
    }

    /// The keys the JWKS publishes, current first: the ones a token this IdP signed may be
    /// verified with.
    fn published_keys(&self) -> Vec<Arc<SigningKey>> {
        let ring = self
            .inner
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        std::iter::once(&ring.current)
            .chain(&ring.previous)
            .cloned()
            .collect()
    }
}

fn validate(
    issuer: &str,
    audiences: &[String],
    tenants: &[Tenant],
    clients: &[Client],
    token_lifetime: Duration,
) -> Result<(), Error> {
    let fail = |message: String| Err(Error::InvalidConfig(message));
    if !(issuer.starts_with("http://") || issuer.starts_with("https://")) {
        return fail(format!("issuer {issuer:?} is not an http(s) URL"));
    }
    if audiences.is_empty() {
        return fail("at least one audience is needed".into());
    }
    if token_lifetime.is_zero() {
        return fail("token lifetime is zero".into());
    }
    for (i, tenant) in tenants.iter().enumerate() {
        if !is_uuid(&tenant.tid) || tenant.tid != tenant.tid.to_ascii_lowercase() {
            return fail(format!(
                "tenant {}: tid {:?} is not a lower-case UUID",
                tenant.name, tenant.tid
            ));
        }
        if tenants[..i].iter().any(|t| t.name == tenant.name) {
            return fail(format!("tenant {} is listed twice", tenant.name));
        }
    }
    for (i, client) in clients.iter().enumerate() {
        if !tenants.iter().any(|t| t.tid == client.tenant) {
            return fail(format!(
                "client {}: tenant {} is not configured",
                client.client_id, client.tenant
            ));
        }
        if clients[..i].iter().any(|c| c.client_id == client.client_id) {
            return fail(format!("client {} is listed twice", client.client_id));
        }
        if client.resources.is_empty() {
            return fail(format!(
                "client {} has no resources: list at least one resource (audience) it may \
                 get tokens for",
                client.client_id
            ));
        }
        if let Some(unknown) = client.resources.iter().find(|r| !audiences.contains(r)) {
            return fail(format!(
                "client {}: resource {unknown:?} is not one of the IdP's audiences ({}); add it \
                 to the audiences or remove it from the client",
                client.client_id,
                audiences.join(", ")
            ));
        }
        if let Some(unknown) = client
            .subject_audiences
            .iter()
            .find(|a| !audiences.contains(a))
        {
            return fail(format!(
                "client {}: subject audience {unknown:?} is not one of the IdP's audiences ({}); \
                 add it to the audiences or remove it from the client",
                client.client_id,
                audiences.join(", ")
            ));
        }
        if let Some(blank) = client
            .federated_credentials
            .iter()
            .find(|c| c.subject.trim().is_empty() || c.audience.trim().is_empty())
        {
            return fail(format!(
                "client {}: federated credential {blank:?} needs a subject (the managed \
                 identity's principal id) and an audience",
                client.client_id
            ));
        }
    }
    Ok(())
}

/// `oid`: a name-based (version 5) UUID of the subject, so the same `sub` always has the same
/// object id, in every process, as a user has in Entra.
fn object_id(subject: &str) -> String {
    /// Namespace of devstack subjects (a random UUID, fixed once).
    const NAMESPACE: [u8; 16] = [
        0x5c, 0x1e, 0x3b, 0x8a, 0x7d, 0x42, 0x4f, 0x0e, 0x9b, 0x61, 0x2a, 0xd4, 0x0c, 0x8e, 0x57,
        0x13,
    ];
    let mut context = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    context.update(&NAMESPACE);
    context.update(subject.as_bytes());
    let hash = context.finish();
    let mut bytes = [0; 16];
    bytes.copy_from_slice(&hash.as_ref()[..16]);
    format_uuid(bytes, 5)
}

/// `jti`: a random (version 4) UUID.
fn uuid_v4() -> String {
    let mut bytes = [0; 16];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random source works");
    format_uuid(bytes, 4)
}

/// Sets the version and RFC 9562 variant bits and formats `8-4-4-4-12`.
fn format_uuid(mut bytes: [u8; 16], version: u8) -> String {
    bytes[6] = (bytes[6] & 0x0f) | (version << 4);
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

    use super::*;

    fn part(token: &str, index: usize) -> Value {
        let segment = token.split('.').nth(index).expect("segment");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).expect("base64url")).expect("json")
    }

    #[test]
    fn minted_claims_are_as_specified() {
        let idp = Idp::new(IdpConfig::default()).expect("idp");
        let spec = TokenSpec {
            audience: Some("api://other".into()),
            lifetime: Duration::from_secs(600),
            client_id: Some("contoso-query".into()),
            extra: Map::from_iter([("scp".to_owned(), json!("x"))]),
            ..TokenSpec::new(defaults::FABRIKAM, ["query", "billing"], "bob")
        };
        let token = idp.mint(&spec);
        let header = part(&token, 0);
        assert_eq!(
            header,
            json!({"alg": "RS256", "typ": "JWT", "kid": idp.current_kid()})
        );
        let claims = part(&token, 1);
        assert_eq!(claims["iss"], defaults::ISSUER);
        assert_eq!(claims["aud"], "api://other");
        assert_eq!(claims["sub"], "bob");
        assert_eq!(claims["tid"], defaults::FABRIKAM);
        assert_eq!(claims["roles"], json!(["query", "billing"]));
        assert_eq!(claims["azp"], "contoso-query");
        assert_eq!(claims["scp"], "x");
        let iat = claims["iat"].as_i64().expect("iat");
        assert_eq!(claims["nbf"], iat);
        assert_eq!(claims["exp"], iat + 600);
        assert!(is_uuid(claims["jti"].as_str().expect("jti")));
        assert_ne!(claims["jti"], part(&idp.mint(&spec), 1)["jti"]);
    }

    #[test]
    fn defaults_give_the_first_audience_and_the_cli_azp() {
        let idp = Idp::new(IdpConfig::default()).expect("idp");
        let claims = idp.claims(&TokenSpec::default());
        assert_eq!(claims["aud"], defaults::AUDIENCE);
        assert_eq!(claims["azp"], defaults::CLI_CLIENT_ID);
        assert_eq!(claims["tid"], defaults::CONTOSO);
        assert_eq!(claims["roles"], json!([]));
    }

    #[test]
    fn oid_is_a_stable_v5_uuid_per_subject() {
        let alice = object_id("alice");
        assert_eq!(alice, object_id("alice"));
        assert_ne!(alice, object_id("bob"));
        assert!(is_uuid(&alice));
        assert_eq!(&alice[14..15], "5");
        assert!(matches!(&alice[19..20], "8" | "9" | "a" | "b"));
        let jti = uuid_v4();
        assert_eq!(&jti[14..15], "4");
    }

    #[test]
    fn tenants_resolve_by_name_or_tid_and_unknown_names_list_the_known() {
        let idp = Idp::new(IdpConfig::default()).expect("idp");
        assert_eq!(idp.tenant_id("contoso").expect("name"), defaults::CONTOSO);
        assert_eq!(idp.tenant_id("Fabrikam").expect("name"), defaults::FABRIKAM);
        let unknown_tid = "00000000-0000-4000-8000-0000000000AA";
        assert_eq!(
            idp.tenant_id(unknown_tid).expect("any uuid"),
            unknown_tid.to_ascii_lowercase()
        );
        let error = idp.tenant_id("initech").expect_err("unknown");
        let message = error.to_string();
        for name in [
            "initech",
            "contoso",
            "fabrikam",
            "northwind",
            defaults::CONTOSO,
        ] {
            assert!(message.contains(name), "{message}");
        }
    }

    #[test]
    fn default_clients_cover_every_tenant_and_role() {
        let clients = defaults::clients();
        assert_eq!(
            clients.len(),
            4 * 3 + 1,
            "a client per tenant and role, and admin"
        );
        let billing = clients
            .iter()
            .find(|c| c.client_id == "fabrikam-billing")
            .expect("fabrikam-billing");
        assert_eq!(billing.client_secret.expose(), "fabrikam-billing-secret");
        assert_eq!(billing.tenant, defaults::FABRIKAM);
        assert_eq!(billing.roles, ["billing"]);
        let admin = clients
            .iter()
            .find(|c| c.client_id == "contoso-admin")
            .expect("admin");
        assert_eq!(admin.roles, defaults::ROLES);
        assert!(
            clients
                .iter()
                .all(|c| c.resources == [defaults::AUDIENCE] && c.subject_audiences.is_empty()),
            "registered for the default audience, none may exchange"
        );

        let resources = vec!["http://a/mcp".to_owned(), "http://b/mcp".to_owned()];
        let clients = defaults::clients_for(&resources);
        assert_eq!(clients.len(), 4 * 3 + 1);
        assert!(
            clients
                .iter()
                .all(|c| c.resources == resources && c.subject_audiences.is_empty())
        );
    }

    #[test]
    fn the_agent_client_exchanges_what_it_serves_for_its_targets() {
        let serves = vec!["http://agents/mcp".to_owned()];
        let targets = vec!["http://tools/mcp".to_owned()];
        let agent = defaults::agent_client(defaults::AGENT_CLIENT_ID, &serves, &targets);
        assert_eq!(agent.client_id, "contoso-agent");
        assert_eq!(agent.client_secret.expose(), "contoso-agent-secret");
        assert_eq!(agent.tenant, defaults::CONTOSO);
        assert!(agent.roles.is_empty());
        assert_eq!(agent.subject, "contoso-agent");
        assert_eq!(agent.resources, targets);
        assert_eq!(agent.subject_audiences, serves);
        assert_eq!(
            agent.federated_credentials,
            [FederatedCredential {
                subject: defaults::AGENT_PRINCIPAL_ID.to_owned(),
                audience: "api://AzureADTokenExchange".to_owned(),
            }],
            "it also trusts the development managed identity, instead of its secret"
        );
        assert!(
            defaults::clients()
                .iter()
                .all(|c| c.federated_credentials.is_empty()),
            "people's clients authenticate with their secrets only"
        );
    }

    #[test]
    fn contradictory_settings_are_refused() {
        let refused = |config: IdpConfig, words: &str| {
            let message = Idp::new(config).expect_err("refused").to_string();
            assert!(message.contains(words), "{message}");
        };
        refused(
            IdpConfig {
                issuer: Some("127.0.0.1:4444".into()),
                ..IdpConfig::default()
            },
            "not an http(s) URL",
        );
        refused(
            IdpConfig {
                audiences: vec![],
                ..IdpConfig::default()
            },
            "audience",
        );
        refused(
            IdpConfig {
                tenants: vec![Tenant::new("contoso", "contoso")],
                ..IdpConfig::default()
            },
            "not a lower-case UUID",
        );
        refused(
            IdpConfig {
                tenants: vec![Tenant::new("fabrikam", defaults::FABRIKAM)],
                ..IdpConfig::default()
            },
            "client contoso-query: tenant c0a7050c",
        );
        refused(
            IdpConfig {
                clients: defaults::clients_for(&[]),
                ..IdpConfig::default()
            },
            "client contoso-query has no resources",
        );
        refused(
            IdpConfig {
                clients: vec![defaults::agent_client(
                    defaults::AGENT_CLIENT_ID,
                    &[defaults::AUDIENCE.to_owned()],
                    &["api://tools".to_owned()],
                )],
                ..IdpConfig::default()
            },
            "client contoso-agent: resource \"api://tools\" is not one of the IdP's audiences \
             (api://contoso-mcp)",
        );
        refused(
            IdpConfig {
                clients: vec![defaults::agent_client(
                    defaults::AGENT_CLIENT_ID,
                    &["api://agents".to_owned()],
                    &[defaults::AUDIENCE.to_owned()],
                )],
                ..IdpConfig::default()
            },
            "client contoso-agent: subject audience \"api://agents\" is not one of the IdP's \
             audiences (api://contoso-mcp)",
        );
        let mut blank = defaults::agent_client(
            defaults::AGENT_CLIENT_ID,
            &[defaults::AUDIENCE.to_owned()],
            &[defaults::AUDIENCE.to_owned()],
        );
        blank.federated_credentials[0].subject = " ".into();
        refused(
            IdpConfig {
                clients: vec![blank],
                ..IdpConfig::default()
            },
            "needs a subject (the managed identity's principal id) and an audience",
        );
        // The default clients are registered for the default audience, so a config naming
        // other audiences registers its clients for them.
        refused(
            IdpConfig {
                audiences: vec!["api://other".into()],
                ..IdpConfig::default()
            },
            "resource \"api://contoso-mcp\"",
        );
        let resources = vec!["api://other".to_owned(), "api://tools".to_owned()];
        let mut clients = defaults::clients_for(&resources);
        clients.push(defaults::agent_client(
            defaults::AGENT_CLIENT_ID,
            &resources[..1],
            &resources[1..],
        ));
        // No subject audiences is valid: a client that may not exchange.
        clients.push(defaults::agent_client("idle-agent", &[], &resources[1..]));
        Idp::new(IdpConfig {
            audiences: resources,
            clients,
            ..IdpConfig::default()
        })
        .expect("clients registered for known resources");
    }

    #[test]
    fn rotation_keeps_old_keys_published_until_retired() {
        let idp = Idp::new(IdpConfig::default()).expect("idp");
        let first = idp.current_kid();
        let second = idp.rotate().expect("rotate");
        assert_ne!(first, second);
        assert_eq!(idp.current_kid(), second);
        let kids = |idp: &Idp| -> Vec<String> {
            idp.jwks()["keys"]
                .as_array()
                .expect("keys")
                .iter()
                .map(|k| k["kid"].as_str().expect("kid").to_owned())
                .collect()
        };
        assert_eq!(kids(&idp), [second.clone(), first]);
        assert_eq!(idp.retire_old_keys(), 1);
        assert_eq!(kids(&idp), [second]);
    }
}
