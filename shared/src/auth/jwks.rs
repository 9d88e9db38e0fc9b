//! The issuer's signing keys: OIDC discovery, the JWKS cache and its refresh policy.
//!
//! Written over `jsonwebtoken`'s JWK types rather than with `jwks_client_rs`, which re-fetches
//! on every unknown `kid` (a flood of random kids would become a flood of fetches), has no
//! background refresh, and validates keys without an `alg` member as HS256 (Entra publishes its
//! keys without `alg`, so its tokens would be refused).
//!
//! Policy: keys are loaded at start and refreshed in the background; an unknown `kid` triggers
//! at most one fetch per [`Jwks::MIN_REFETCH`] (concurrent callers wait for the same fetch);
//! when a fetch fails (unreachable, too slow, too large, not JSON, no usable key), the last good
//! keys stay in use and the failure is logged.
//!
//! What the issuer serves is bounded ([`FetchLimits`]): a discovery document or key set is read
//! in chunks and given up on past [`MAX_DOCUMENT_BYTES`] (whatever `Content-Length` says) or
//! after [`FETCH_TIMEOUT`] for the whole fetch, body included, so a hostile or broken issuer
//! can neither fill memory nor hold a start-up or a refresh. Every URL fetched (the issuer, the
//! JWKS URI, the `jwks_uri` and `token_endpoint` a discovery document names) must be `https://`
//! unless its host is a loopback address ([`check_secure_url`]).

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock, RwLock},
    time::{Duration, Instant},
};

use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm, PublicKeyUse},
};
use serde::{Deserialize, de::DeserializeOwned};

use super::AuthError;

/// Largest discovery document or key set read; real ones are a few kilobytes.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Longest a fetch of one may take, connection to last byte.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Bounds on one fetch from the issuer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// The body is given up on once it is longer than this.
    pub max_bytes: usize,
    /// The whole fetch (connecting, headers, body) is given up on after this.
    pub timeout: Duration,
}

impl Default for FetchLimits {
    fn default() -> Self {
        FetchLimits {
            max_bytes: MAX_DOCUMENT_BYTES,
            timeout: FETCH_TIMEOUT,
        }
    }
}

/// Host names besides the loopback that plain `http://` may reach, set once at start from
/// `ALLOW_PLAIN_HTTP_HOSTS` ([`allow_plain_http_to`]); empty unless someone said so.
static PLAIN_HTTP_HOSTS: OnceLock<Vec<String>> = OnceLock::new();

/// Lets [`check_secure_url`] accept plain `http://` to `hosts` too: hosts of a private network
/// nobody else is on, such as a compose network's `idp`. Only the first call of a process counts:
/// the policy cannot change under a running service. Explicit, so [`warn_plain_http`] says so
/// loudly once logging is set up.
pub fn allow_plain_http_to(hosts: &[String]) {
    let hosts: Vec<String> = hosts
        .iter()
        .map(|host| host.trim().to_ascii_lowercase())
        .filter(|host| !host.is_empty())
        .collect();
    if !hosts.is_empty() {
        let _ = PLAIN_HTTP_HOSTS.set(hosts);
    }
}

/// Warns about the hosts [`allow_plain_http_to`] admitted, if any.
pub fn warn_plain_http() {
    if let Some(hosts) = PLAIN_HTTP_HOSTS.get() {
        tracing::warn!(
            hosts = %hosts.join(","),
            "ALLOW_PLAIN_HTTP_HOSTS: issuers, key sets and Cosmos DB at these hosts are reached \
             over plain http://, so anyone on their network can forge tokens or data. Only on a \
             private container network!"
        );
    }
}

/// Checks that `url` may carry keys or tokens: `https://`, or plain `http://` only to a loopback
/// host (`127.0.0.0/8`, `::1`, `localhost`), where nobody on the network can change what is
/// served, or to a host [`allow_plain_http_to`] named. The error says why, without naming a
/// setting (the caller knows which one it was).
pub fn check_secure_url(url: &str) -> Result<(), String> {
    check_url(url, PLAIN_HTTP_HOSTS.get().map_or(&[], Vec::as_slice))
}

fn check_url(url: &str, plain_http_hosts: &[String]) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let allowed = |url: &reqwest::Url| {
        url.host_str().is_some_and(|host| {
            plain_http_hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(host))
        })
    };
    match parsed.scheme() {
        "https" if parsed.host().is_some() => Ok(()),
        "http" if is_loopback_host(&parsed) || allowed(&parsed) => Ok(()),
        "http" => Err(format!(
            "{url:?} is plain http:// to a host that is not a loopback address; use https:// \
             (http:// is accepted only for 127.0.0.0/8, ::1, localhost and the hosts named in \
             ALLOW_PLAIN_HTTP_HOSTS)"
        )),
        _ => Err(format!("{url:?} is not an https:// URL")),
    }
}

/// The URL parser has already put the host in canonical form (`127.1` is `127.0.0.1`, an IPv6
/// address is bracketed).
fn is_loopback_host(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// GETs `url` as JSON within `limits`: the body read in chunks and refused once over
/// `limits.max_bytes`, the whole fetch refused after `limits.timeout`.
async fn get_json<T: DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
    limits: FetchLimits,
) -> Result<T, String> {
    let fetch = async {
        let mut response = http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("fetching {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("fetching {url}: HTTP {}", response.status()));
        }
        let too_large = || {
            format!(
                "reading {url}: the body is larger than {} bytes",
                limits.max_bytes
            )
        };
        // A declared length over the bound is refused at once; a smaller one is not trusted.
        if response
            .content_length()
            .is_some_and(|length| length > limits.max_bytes as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("reading {url}: {e}"))?
        {
            if body.len() + chunk.len() > limits.max_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| format!("reading {url}: {e}"))
    };
    match tokio::time::timeout(limits.timeout, fetch).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "fetching {url}: no complete answer within {:?}",
            limits.timeout
        )),
    }
}

/// One usable verification key.
#[derive(Clone)]
pub struct SigningKey {
    pub key: DecodingKey,
    /// The algorithm the issuer pinned for this key, if it published one.
    pub algorithm: Option<Algorithm>,
    /// The key family, to refuse a token whose `alg` does not fit the key (e.g. ES256 on RSA).
    pub family: KeyFamily,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    Rsa,
    Ec,
}

type KeyMap = HashMap<String, SigningKey>;

/// The signing keys of one issuer.
pub struct Jwks {
    uri: String,
    http: reqwest::Client,
    /// Bounds on every fetch of the key set.
    limits: FetchLimits,
    keys: RwLock<Arc<KeyMap>>,
    /// Serialises fetches and remembers when the last one started, for the rate limit.
    fetch: tokio::sync::Mutex<Option<Instant>>,
    fetches: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("uri", &self.uri)
            .field("keys", &self.key_count())
            .finish()
    }
}

/// What a service needs from an issuer's OIDC discovery document.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub jwks_uri: String,
    /// Where tokens are exchanged (the agent service's delegated tokens).
    #[serde(default)]
    pub token_endpoint: Option<String>,
}

/// Finds the JWKS URI of `issuer` by OIDC discovery, checking the document names the same issuer.
pub async fn discover(http: &reqwest::Client, issuer: &str) -> Result<String, String> {
    discover_document(http, issuer).await.map(|d| d.jwks_uri)
}

/// The discovery document of `issuer`, checked to name the same issuer, within the default
/// [`FetchLimits`].
pub async fn discover_document(http: &reqwest::Client, issuer: &str) -> Result<Discovery, String> {
    discover_document_within(http, issuer, FetchLimits::default()).await
}

/// [`discover_document`] within `limits`. The issuer and the URLs the document names must pass
/// [`check_secure_url`].
pub async fn discover_document_within(
    http: &reqwest::Client,
    issuer: &str,
    limits: FetchLimits,
) -> Result<Discovery, String> {
    check_secure_url(issuer).map_err(|e| format!("the issuer {e}"))?;
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let doc: Discovery = get_json(http, &url, limits).await?;
    if doc.issuer.trim_end_matches('/') != issuer.trim_end_matches('/') {
        return Err(format!(
            "{url} names issuer {:?}, expected {issuer:?}",
            doc.issuer
        ));
    }
    check_secure_url(&doc.jwks_uri).map_err(|e| format!("{url} names jwks_uri {e}"))?;
    if let Some(endpoint) = &doc.token_endpoint {
        check_secure_url(endpoint).map_err(|e| format!("{url} names token_endpoint {e}"))?;
    }
    Ok(doc)
}

impl Jwks {
    /// Smallest interval between two fetches triggered by unknown key ids.
    pub const MIN_REFETCH: Duration = Duration::from_secs(10);
    /// Interval of the background refresh.
    pub const REFRESH: Duration = Duration::from_secs(300);

    /// The key set at `uri`, fetched within the default [`FetchLimits`]. `uri` is not checked
    /// here: configuration checks it ([`check_secure_url`]) where it can name the setting.
    pub fn new(http: reqwest::Client, uri: String) -> Self {
        Self::with_limits(http, uri, FetchLimits::default())
    }

    /// [`Jwks::new`] with other bounds on each fetch (tests use short ones).
    pub fn with_limits(http: reqwest::Client, uri: String, limits: FetchLimits) -> Self {
        Jwks {
            uri,
            http,
            limits,
            keys: RwLock::new(Arc::new(HashMap::new())),
            fetch: tokio::sync::Mutex::new(None),
            fetches: Default::default(),
        }
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    pub fn key_count(&self) -> usize {
        self.snapshot().len()
    }

    /// How many fetches were attempted (for tests of the rate limit and for `/readyz`).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn snapshot(&self) -> Arc<KeyMap> {
        self.keys.read().map(|k| k.clone()).unwrap_or_default()
    }

    /// Fetches the key set now and replaces the cached keys; on failure the old keys stay.
    ///
    /// Scheduled refreshes (start-up, background) do not count against the re-fetch limit,
    /// which only bounds fetches that callers can trigger with unknown key ids.
    pub async fn refresh(&self) -> Result<usize, String> {
        let _serialised = self.fetch.lock().await;
        self.fetch_and_store().await
    }

    async fn fetch_and_store(&self) -> Result<usize, String> {
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stored = self.fetch_keys().await;
        let outcome = if stored.is_ok() { "ok" } else { "failed" };
        crate::telemetry::metrics::serving()
            .jwks_refreshes
            .add(1, &[opentelemetry::KeyValue::new("outcome", outcome)]);
        stored
    }

    async fn fetch_keys(&self) -> Result<usize, String> {
        let set: JwkSet = get_json(&self.http, &self.uri, self.limits).await?;
        let keys = parse(set);
        if keys.is_empty() {
            return Err(format!("{} holds no usable signing key", self.uri));
        }
        let count = keys.len();
        if let Ok(mut slot) = self.keys.write() {
            *slot = Arc::new(keys);
        }
        Ok(count)
    }

    /// The key with this id, fetching the key set once more if it is unknown and the last fetch
    /// is older than [`Self::MIN_REFETCH`].
    pub async fn key(&self, kid: &str) -> Result<SigningKey, AuthError> {
        if let Some(key) = self.snapshot().get(kid) {
            return Ok(key.clone());
        }
        {
            let mut last = self.fetch.lock().await;
            // Another caller may have fetched while we waited for the lock.
            if let Some(key) = self.snapshot().get(kid) {
                return Ok(key.clone());
            }
            let due = last.is_none_or(|at| at.elapsed() >= Self::MIN_REFETCH);
            if due {
                *last = Some(Instant::now());
                if let Err(error) = self.fetch_and_store().await {
                    tracing::warn!(%error, "JWKS re-fetch for an unknown key id failed; keeping the cached keys");
                }
            }
        }
        match self.snapshot().get(kid) {
            Some(key) => Ok(key.clone()),
            None if self.key_count() == 0 => Err(AuthError::KeysUnavailable),
            None => Err(AuthError::UnknownKid(kid.chars().take(64).collect())),
        }
    }

    /// Refreshes every [`Self::REFRESH`] (every 10 s while no key is loaded) until dropped.
    pub fn spawn_refresh(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let jwks = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let wait = match jwks.upgrade() {
                    Some(j) if j.key_count() > 0 => Self::REFRESH,
                    Some(_) => Self::MIN_REFETCH,
                    None => return,
                };
                tokio::time::sleep(wait).await;
                let Some(j) = jwks.upgrade() else { return };
                match j.refresh().await {
                    Ok(count) => tracing::debug!(count, "JWKS refreshed"),
                    Err(error) => {
                        tracing::warn!(%error, "JWKS refresh failed; keeping the cached keys")
                    }
                }
            }
        })
    }
}

/// Keeps the signature keys this verifier can use; skips encryption keys, keys without `kid`
/// and key types it does not accept.
fn parse(set: JwkSet) -> KeyMap {
    let mut keys = HashMap::new();
    for jwk in set.keys {
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        let family = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => KeyFamily::Rsa,
            AlgorithmParameters::EllipticCurve(_) => KeyFamily::Ec,
            _ => continue,
        };
        let algorithm = match jwk.common.key_algorithm {
            None => None,
            Some(KeyAlgorithm::RS256) => Some(Algorithm::RS256),
            Some(KeyAlgorithm::PS256) => Some(Algorithm::PS256),
            Some(KeyAlgorithm::ES256) => Some(Algorithm::ES256),
            // A key pinned to an algorithm we do not accept cannot verify anything we accept.
            Some(_) => continue,
        };
        match DecodingKey::from_jwk(&jwk) {
            Ok(key) => {
                keys.insert(
                    kid,
                    SigningKey {
                        key,
                        algorithm,
                        family,
                    },
                );
            }
            Err(error) => tracing::warn!(%error, kid, "skipping an unusable JWKS key"),
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    #[test]
    fn plain_http_reaches_only_the_loopback_and_the_hosts_named() {
        let named = ["idp".to_owned(), "Cosmos".to_owned()];
        for url in [
            "http://idp:4444",
            "http://IDP:4444/jwks",
            "http://cosmos:8081/",
            "http://127.0.0.1:4444",
        ] {
            super::check_url(url, &named).unwrap_or_else(|e| panic!("{url}: {e}"));
        }
        for url in [
            "http://idp.example.com",
            "http://idp2:4444",
            "http://10.0.0.5",
        ] {
            let error = super::check_url(url, &named).expect_err(url);
            assert!(error.contains("ALLOW_PLAIN_HTTP_HOSTS"), "{error}");
        }
        super::check_url("http://idp:4444", &[]).expect_err("not named, not allowed");
    }

    /// Production issuers (Entra ID, any real OIDC provider) publish their keys over HTTPS: the
    /// HTTP client must speak TLS. A server that accepts and says nothing shows which: a client
    /// without TLS gives up on the scheme, one with TLS sends a ClientHello and waits for the
    /// handshake.
    #[tokio::test]
    async fn the_http_client_speaks_tls() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut first = [0u8; 1];
            socket.read_exact(&mut first).await.expect("a first byte");
            first[0]
        });
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(2))
            .build()
            .expect("client");
        let error = client
            .get(format!("https://{addr}/.well-known/openid-configuration"))
            .send()
            .await
            .expect_err("the server never answers");
        let first = tokio::time::timeout(std::time::Duration::from_secs(2), server)
            .await
            .unwrap_or_else(|_| panic!("the client never connected: {error:?}"))
            .expect("server task");
        // 0x16: a TLS handshake record.
        assert_eq!(first, 0x16, "not a TLS ClientHello; client error {error:?}");
    }
}
