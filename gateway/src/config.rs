//! The gateway's configuration: one TOML file, read in two stages. [`RawConfig`] is exactly what
//! the file says (serde; an unknown key is an error, so a typo cannot silently fall back to a
//! default); [`Config::validate`] checks every value, fills in defaults and normalises URLs, or
//! fails with a [`ConfigError`] naming the key (`routes[1].prefix`). Nothing binds a port or
//! renders a policy from a configuration that did not pass.
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! public_base_url = "http://127.0.0.1:8080"   # used in metadata and WWW-Authenticate
//!
//! [auth]
//! issuer = "http://127.0.0.1:4444"            # OIDC discovery at <issuer>/.well-known/openid-configuration
//!
//! [[routes]]
//! name = "contoso"
//! prefix = "/contoso-mcp"                     # /contoso-mcp/mcp -> <upstream>/mcp
//! upstreams = ["127.0.0.1:8001", "127.0.0.1:8011"]
//! allowed_tenants = ["c0a7050c-0000-4000-8000-000000000001"]
//! audiences = ["http://127.0.0.1:8080/contoso-mcp/mcp"]  # optional; this is the default
//! rate_limit_per_minute = 600                 # per tenant on this route; optional
//!
//! [server]                                    # optional: bounds on every connection
//! header_read_timeout_ms = 10000
//! max_connections = 4096
//! ```
//!
//! | key | required | default | meaning |
//! |-----|----------|---------|---------|
//! | `listen` | yes | | IP address and port the proxy binds |
//! | `public_base_url` | yes | | http(s) URL clients reach the gateway at; a trailing `/` is dropped |
//! | `auth.issuer` | yes | | OIDC issuer whose tokens are accepted (a trailing `/` is dropped, as the services do) |
//! | `auth.leeway_secs` | no | 60 | clock skew tolerated on `exp`/`nbf` (APIM `clock-skew`), at most 300 |
//! | `routes[].name` | yes | | `[a-z0-9-]+`, unique; names the policy file and the APIM API |
//! | `routes[].prefix` | yes | | path prefix; only `<prefix>/mcp` is forwarded (as `/mcp`); see the prefix rules below |
//! | `routes[].upstreams` | yes | | backend `host:port` list (round robin), at least one |
//! | `routes[].allowed_tenants` | yes | | tenant ids (`tid`) admitted, lowercase UUIDs, at least one |
//! | `routes[].audiences` | no | `<public_base_url><prefix>/mcp` | `aud` values a token must carry one of to be accepted on this route, at least one, none shared with another route |
//! | `routes[].rate_limit_per_minute` | no | unlimited | calls per tenant per minute on this route (counted by each gateway, or by all replicas together in Redis: see below) |
//! | `routes[].connect_timeout_ms` | no | 3000 | connecting to an upstream, 1..=60000 |
//! | `routes[].read_timeout_ms` | no | 240000 | waiting for the upstream's response headers or its next bytes, 1..=240000 |
//! | `routes[].max_body_bytes` | no | 1048576 | larger request bodies get 413 |
//! | `routes[].health_check_path` | no | `/healthz` | upstream path probed by active health checks |
//! | `routes[].health_check_interval_ms` | no | 5000 | time between two probes of each upstream, 100..=300000 (local gateway only: API Management has no pool of its own here) |
//! | `routes[].apim_backend_url` | no | `http://<first upstream>` | the backend API Management forwards to (in Azure, the Container App's URL); scheme, host and port only |
//! | `server.header_read_timeout_ms` | no | 10000 | time a client has to send a whole request head, 1..=120000: from the connection's opening for its first request, from the first byte for later ones; past it 408 (or a plain close if nothing came) (local gateway only: API Management's front end applies its own) |
//! | `server.idle_timeout_ms` | no | 60000 | how long a keep-alive connection may wait, idle, for its next request before it is closed, 1..=3600000 (local gateway only: API Management closes idle client connections itself) |
//! | `server.max_connections` | no | 4096 | open client connections; past it a new connection is answered 503 with `Retry-After` and closed, 1..=1000000 (local gateway only: API Management scales and caps connections itself) |
//! | `server.max_header_bytes` | no | 32768 | size of a request head (request line and headers); larger: 431, 1024..=1048575 (pingora's own ceiling) (local gateway only: API Management has fixed limits of its own) |
//! | `server.max_headers` | no | 100 | header fields in a request head; more: 431, 1..=256 (pingora parses at most 256) (local gateway only, as above) |
//! | `server.upstream_idle_timeout_ms` | no | 30000 | how long an idle pooled connection to an upstream is kept for reuse, 1..=70000: it must end before the backend's own idle keep-alive timeout (75 s by default in our services), or the gateway would send a request on a connection the backend is closing (local gateway only: API Management pools its backend connections itself) |
//!
//! Settings of the running process rather than of the routes are `gateway run` flags, each with
//! an environment variable (`gateway run --help` lists them all); the first two decide where the
//! quotas are counted:
//!
//! | flag | variable | default | meaning |
//! |------|----------|---------|---------|
//! | `--rate-limit-redis-url` | `RATE_LIMIT_REDIS_URL` | unset: each gateway counts on its own | `redis://[[user]:password@]host[:port][/db]` (`rediss://` for TLS, verified against the system's CA store; Redis 5 or later): every replica given the same URL admits one quota together, with the same algorithm, and a malformed URL stops the start naming the setting; the log shows it with `***` for the user and password |
//! | `--rate-limit-redis-failure` | `RATE_LIMIT_REDIS_FAILURE` | `open` | while that Redis does not answer (a call waits for it [`REDIS_TIMEOUT`](crate::limits::REDIS_TIMEOUT) at most): `open` admits calls uncounted, `closed` refuses them with 503 `quota_unavailable` and `Retry-After`; the start and the end of an outage are logged once each |
//! | `--allow-plain-http-hosts` | `ALLOW_PLAIN_HTTP_HOSTS` | none | host names besides the loopback that `auth.issuer` and its keys may be reached at over plain `http://` (a private container network's `idp`); warned about at start |
//!
//! Prefix rules: starts with `/`, does not end with `/`, lowercase segments of `a-z 0-9 - . _ ~`
//! (no empty, `.` or `..` segment), not under `/.well-known` (the metadata lives there), and
//! unique at segment boundaries: `/contoso` and `/contoso-mcp` may coexist, `/contoso` and
//! `/contoso/x` may not, so a path never matches two routes.
//!
//! Audiences are per route (RFC 8707, MCP authorization): a route accepts only tokens issued for
//! itself, so a token a caller got for one route (another company's) cannot be replayed at
//! another. The default is the route's resource URL, the `resource` of its RFC 9728 metadata,
//! which is what an RFC 8707 client asks for. Microsoft Entra ID rejects `resource` and puts the
//! application ID URI (`api://...`) or the client id in `aud`, so a route deployed behind Entra
//! lists both: `audiences = ["https://<gateway>/contoso-mcp/mcp", "api://contoso-mcp"]`. An
//! audience listed on two routes is refused, since it would make a token for one good at the
//! other. The former `auth.audiences` is refused with a pointer to `routes[].audiences`.
//!
//! The `[server]` bounds apply to every client connection, whatever its route, because they are
//! decided before a request is routed (the head must be read first). A chunked request body is
//! counted as it arrives and refused with 413 once it passes the route's `max_body_bytes`; it is
//! held back from the upstream until it ends, so no byte of a body over the limit is forwarded
//! (see [`crate::proxy`]).
//!
//! The read timeout is capped at 240 s because API Management does not honour longer
//! `forward-request` timeouts (its load balancer drops idle connections after four minutes), and
//! the local gateway must not promise what production cannot keep. There is one issuer: the
//! shared verifier checks one, and a key the local proxy cannot honour would let the two edges
//! drift.

use std::{
    net::{Ipv6Addr, SocketAddr},
    num::NonZeroU32,
    path::Path,
    time::Duration,
};

use serde::Deserialize;
use shared::auth::verifier::VerifierSettings;

use crate::{
    error::{ConfigError, Error},
    routing::resource_url,
};

pub const DEFAULT_LEEWAY_SECS: u64 = 60;
/// More skew than this means a broken clock, not drift; accepting it would stretch token lifetimes.
pub const MAX_LEEWAY_SECS: u64 = 300;
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 3_000;
pub const MAX_CONNECT_TIMEOUT_MS: u64 = 60_000;
/// As long as production allows: a tool call that streams nothing for a while must not be cut.
pub const DEFAULT_READ_TIMEOUT_MS: u64 = MAX_READ_TIMEOUT_MS;
/// API Management's practical ceiling for `forward-request` timeouts (see the module docs).
pub const MAX_READ_TIMEOUT_MS: u64 = 240_000;
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
pub const DEFAULT_HEALTH_CHECK_PATH: &str = "/healthz";
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// A client that needs longer than this to send a few kilobytes is holding a slot, not sending.
pub const MAX_HEADER_READ_TIMEOUT_MS: u64 = 120_000;
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 60_000;
pub const MAX_IDLE_TIMEOUT_MS: u64 = 3_600_000;
pub const DEFAULT_MAX_CONNECTIONS: u64 = 4_096;
pub const MAX_MAX_CONNECTIONS: u64 = 1_000_000;
pub const DEFAULT_MAX_HEADER_BYTES: u64 = 32 * 1024;
/// A head must hold at least a request line, a host and a bearer token.
pub const MIN_MAX_HEADER_BYTES: u64 = 1024;
/// Pingora refuses larger heads itself (with a bare 400).
pub const MAX_MAX_HEADER_BYTES: u64 = 1_048_575;
pub const DEFAULT_MAX_HEADERS: u64 = 100;
/// Pingora parses at most 256 header fields and answers a bare 400 past them.
pub const MAX_MAX_HEADERS: u64 = 256;
pub const DEFAULT_UPSTREAM_IDLE_TIMEOUT_MS: u64 = 30_000;
/// Below the services' own idle keep-alive timeout (75 s by default), with room for a clock tick:
/// a pooled connection must be dropped here before the backend closes it under a new request.
pub const MAX_UPSTREAM_IDLE_TIMEOUT_MS: u64 = 70_000;
/// An MCP request body is a few kilobytes; a client still sending one after this long is
/// holding a connection (here and upstream), not sending.
pub const DEFAULT_BODY_READ_TIMEOUT_MS: u64 = 30_000;
pub const MAX_BODY_READ_TIMEOUT_MS: u64 = 600_000;
pub const DEFAULT_HEALTH_CHECK_INTERVAL_MS: u64 = 5_000;
/// Probing more often than this is load, not information.
pub const MIN_HEALTH_CHECK_INTERVAL_MS: u64 = 100;
pub const MAX_HEALTH_CHECK_INTERVAL_MS: u64 = 300_000;
/// Where RFC 9728 protected-resource metadata lives; no route prefix may sit under it.
pub const WELL_KNOWN: &str = "/.well-known";

/// The configuration file as written; see the module docs for the keys.
///
/// Required keys are `Option`s here so that a missing one is reported by [`Config::validate`]
/// with its path and an example, rather than as serde's bare "missing field".
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<String>,
    pub public_base_url: Option<String>,
    pub auth: Option<RawAuth>,
    pub server: Option<RawServer>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
}

/// `[server]`: bounds on every client connection; each key is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub header_read_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub max_connections: Option<u64>,
    pub max_header_bytes: Option<u64>,
    pub max_headers: Option<u64>,
    pub upstream_idle_timeout_ms: Option<u64>,
    pub body_read_timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub issuer: Option<String>,
    pub leeway_secs: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: Option<String>,
    pub prefix: Option<String>,
    #[serde(default)]
    pub upstreams: Vec<String>,
    #[serde(default)]
    pub allowed_tenants: Vec<String>,
    /// `None`: the route's resource URL. `Some(vec![])` is refused (a route nobody can call).
    pub audiences: Option<Vec<String>>,
    pub rate_limit_per_minute: Option<u32>,
    pub connect_timeout_ms: Option<u64>,
    pub read_timeout_ms: Option<u64>,
    pub max_body_bytes: Option<u64>,
    pub health_check_path: Option<String>,
    pub health_check_interval_ms: Option<u64>,
    pub apim_backend_url: Option<String>,
}

/// A configuration every value of which has been checked; build it with [`Config::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub listen: SocketAddr,
    /// Without a trailing slash, so `<public_base_url><prefix>/mcp` is the resource URL.
    pub public_base_url: String,
    pub auth: AuthConfig,
    pub server: ServerConfig,
    /// In file order; no two match the same path (checked), so order never decides a match.
    pub routes: Vec<Route>,
}

/// Bounds on every client connection, and on the pool of upstream connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// How long a request head may take to arrive: a slow or half-sent head holds a connection
    /// slot and a task, so it is cut.
    pub header_read_timeout: Duration,
    /// How long a kept-alive connection may sit idle between two requests.
    pub idle_timeout: Duration,
    /// Open client connections at once: each costs a descriptor and a task.
    pub max_connections: usize,
    /// Size of a request head, request line included.
    pub max_header_bytes: usize,
    /// Header fields in a request head.
    pub max_headers: usize,
    /// How long an idle upstream connection stays in the pool: shorter than the backends' own
    /// keep-alive timeout, so the gateway never reuses a connection the backend is closing.
    pub upstream_idle_timeout: Duration,
    /// How long a request body may take to arrive in full, from the end of its head: a body
    /// trickled a byte at a time would otherwise hold a client and an upstream connection for
    /// as long as each read stays under the per-read timeout.
    pub body_read_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            header_read_timeout: Duration::from_millis(DEFAULT_HEADER_READ_TIMEOUT_MS),
            idle_timeout: Duration::from_millis(DEFAULT_IDLE_TIMEOUT_MS),
            max_connections: DEFAULT_MAX_CONNECTIONS as usize,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES as usize,
            max_headers: DEFAULT_MAX_HEADERS as usize,
            upstream_idle_timeout: Duration::from_millis(DEFAULT_UPSTREAM_IDLE_TIMEOUT_MS),
            body_read_timeout: Duration::from_millis(DEFAULT_BODY_READ_TIMEOUT_MS),
        }
    }
}

/// Whose tokens the gateway accepts, on every route; which audience a token needs is per route
/// ([`Route::audiences`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Without a trailing slash, as the services normalise it, so both edges compare `iss` alike.
    pub issuer: String,
    pub leeway: Duration,
}

/// One path prefix and where its traffic goes, and who may send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub name: String,
    /// Starts with `/`, never ends with one.
    pub prefix: String,
    /// `host:port`, in file order (round robin starts at the first).
    pub upstreams: Vec<String>,
    /// Lowercase tenant ids, in file order; never empty: a route must admit someone.
    pub allowed_tenants: Vec<String>,
    /// The `aud` values a token must carry one of here, in file order; never empty, and none is
    /// an audience of another route. Default: the route's resource URL.
    pub audiences: Vec<String>,
    /// Calls per tenant per minute on this route; `None` is unlimited.
    pub rate_limit_per_minute: Option<NonZeroU32>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub max_body_bytes: u64,
    pub health_check_path: String,
    pub health_check_interval: Duration,
    /// `scheme://host[:port]`, no path: API Management forwards the rest of the request path to
    /// the backend's root, exactly as the local proxy does with an upstream.
    pub apim_backend_url: String,
}

impl Route {
    /// Whether a token of tenant `tid` may use this route.
    pub fn admits(&self, tid: &str) -> bool {
        self.allowed_tenants.iter().any(|t| t == tid)
    }

    /// Whether the verified token was issued for this route: its `aud` names one of the route's
    /// audiences.
    pub fn accepts_audience_of(&self, identity: &shared::auth::Identity) -> bool {
        identity.issued_for_any(&self.audiences)
    }
}

impl Config {
    /// Settings for the shared JWT verifier, which every route shares. It accepts the audiences
    /// of every route and admits every tenant of the issuer on purpose: the audience and the
    /// tenant are checked per route after the token is verified ([`Route::accepts_audience_of`],
    /// [`Route::admits`]), so that a token for another route gets 401, a valid token of the
    /// wrong tenant 403, and one verifier serves all routes.
    pub fn verifier_settings(&self) -> VerifierSettings {
        let mut audiences: Vec<String> = Vec::new();
        for audience in self.routes.iter().flat_map(|r| &r.audiences) {
            if !audiences.contains(audience) {
                audiences.push(audience.clone());
            }
        }
        VerifierSettings {
            issuer: self.auth.issuer.clone(),
            audiences,
            allowed_tenants: None,
            leeway: self.auth.leeway,
            // Delegated tokens are for service-to-service calls inside the platform; none
            // comes through the public edge.
            trusted_actors: Default::default(),
        }
    }
}

impl RawConfig {
    /// Parses the TOML text; syntax errors give the line, and type errors and unknown keys the
    /// key's path (`routes[0].upstream: unknown field ...`).
    pub fn from_toml(text: &str) -> Result<RawConfig, ConfigError> {
        let deserializer = toml::Deserializer::parse(text)
            .map_err(|e| ConfigError::new("toml", located(text, &e)))?;
        serde_path_to_error::deserialize(deserializer).map_err(|e| {
            // The path names the key itself, also for an unknown one (`routes[0].upstream`).
            // The root has the path "."; call it what it is.
            let key = match e.path().to_string() {
                root if root == "." => "toml".to_owned(),
                // An empty key (`'' = 1`, unknown) has an empty path: name it as TOML spells it.
                empty if empty.is_empty() => "\"\"".to_owned(),
                path => path,
            };
            if key == "auth.audiences" {
                // The key this gateway used to have: say where it went rather than "unknown".
                return ConfigError::new(key, moved_audiences_message(text, e.inner()));
            }
            ConfigError::new(key, located(text, e.inner()))
        })
    }
}

/// Why `auth.audiences` is refused, with where it is in the file.
fn moved_audiences_message(text: &str, error: &toml::de::Error) -> String {
    let at = error
        .span()
        .map(|span| {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!(" (line {line})")
        })
        .unwrap_or_default();
    format!(
        "audiences are now per route{at}: a token is accepted only on the route it was issued \
         for. Remove auth.audiences and list each route's under its [[routes]] table as \
         routes[].audiences = [...]; without it a route accepts its resource URL \
         (<public_base_url><prefix>/mcp)"
    )
}

/// The message of a TOML error with its line and column, when it has a position.
fn located(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end();
    match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("{message} (line {line}, column {column})")
        }
        None => message.to_owned(),
    }
}

impl Config {
    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadConfig {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text).map_err(|error| Error::InvalidConfig {
            path: path.to_owned(),
            error,
        })
    }

    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Config::validate(RawConfig::from_toml(text)?)
    }

    /// Checks every value, fills in defaults and normalises; the first mistake is returned,
    /// named by its key path.
    pub fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
        let listen = required("listen", raw.listen, "listen = \"127.0.0.1:8080\"")?;
        let listen = listen.trim().parse::<SocketAddr>().map_err(|_| {
            ConfigError::new(
                "listen",
                format!("{listen:?} is not an IP address and port, e.g. \"127.0.0.1:8080\""),
            )
        })?;
        let public_base_url = required(
            "public_base_url",
            raw.public_base_url,
            "public_base_url = \"http://127.0.0.1:8080\"",
        )?;
        let public_base_url = http_url("public_base_url", &public_base_url)?;
        let auth = validate_auth(raw.auth.unwrap_or_default())?;
        let server = validate_server(raw.server.unwrap_or_default())?;

        if raw.routes.is_empty() {
            return Err(ConfigError::new(
                "routes",
                "no route: add at least one [[routes]] table (name, prefix, upstreams, allowed_tenants)",
            ));
        }
        let mut routes: Vec<Route> = Vec::with_capacity(raw.routes.len());
        for (i, raw_route) in raw.routes.into_iter().enumerate() {
            let route = validate_route(&format!("routes[{i}]"), raw_route, &public_base_url)?;
            for (j, other) in routes.iter().enumerate() {
                if other.name == route.name {
                    return Err(ConfigError::new(
                        format!("routes[{i}].name"),
                        format!("{:?} is already the name of routes[{j}]", route.name),
                    ));
                }
                if let Some(message) = overlap(&route.prefix, &other.prefix, j) {
                    return Err(ConfigError::new(format!("routes[{i}].prefix"), message));
                }
                if let Some(k) = route
                    .audiences
                    .iter()
                    .position(|a| other.audiences.contains(a))
                {
                    return Err(ConfigError::new(
                        format!("routes[{i}].audiences[{k}]"),
                        format!(
                            "{:?} is already an audience of routes[{j}]: a token issued for one \
                             route would be accepted on the other; give each route audiences of \
                             its own",
                            route.audiences[k]
                        ),
                    ));
                }
            }
            routes.push(route);
        }
        Ok(Config {
            listen,
            public_base_url,
            auth,
            server,
            routes,
        })
    }
}

fn validate_server(raw: RawServer) -> Result<ServerConfig, ConfigError> {
    let header_read_timeout = millis(
        "server.header_read_timeout_ms",
        raw.header_read_timeout_ms
            .unwrap_or(DEFAULT_HEADER_READ_TIMEOUT_MS),
        MAX_HEADER_READ_TIMEOUT_MS,
        " (a request head is a few kilobytes)",
    )?;
    let idle_timeout = millis(
        "server.idle_timeout_ms",
        raw.idle_timeout_ms.unwrap_or(DEFAULT_IDLE_TIMEOUT_MS),
        MAX_IDLE_TIMEOUT_MS,
        "",
    )?;
    let max_connections = within(
        "server.max_connections",
        raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
        1,
        MAX_MAX_CONNECTIONS,
        "connections",
    )?;
    let max_header_bytes = within(
        "server.max_header_bytes",
        raw.max_header_bytes.unwrap_or(DEFAULT_MAX_HEADER_BYTES),
        MIN_MAX_HEADER_BYTES,
        MAX_MAX_HEADER_BYTES,
        "bytes",
    )?;
    let max_headers = within(
        "server.max_headers",
        raw.max_headers.unwrap_or(DEFAULT_MAX_HEADERS),
        1,
        MAX_MAX_HEADERS,
        "header fields",
    )?;
    let upstream_idle_timeout = millis(
        "server.upstream_idle_timeout_ms",
        raw.upstream_idle_timeout_ms
            .unwrap_or(DEFAULT_UPSTREAM_IDLE_TIMEOUT_MS),
        MAX_UPSTREAM_IDLE_TIMEOUT_MS,
        " (pooled connections must close before the backends' 75 s idle timeout does)",
    )?;
    let body_read_timeout = millis(
        "server.body_read_timeout_ms",
        raw.body_read_timeout_ms
            .unwrap_or(DEFAULT_BODY_READ_TIMEOUT_MS),
        MAX_BODY_READ_TIMEOUT_MS,
        "",
    )?;
    Ok(ServerConfig {
        header_read_timeout,
        idle_timeout,
        max_connections,
        max_header_bytes,
        max_headers,
        upstream_idle_timeout,
        body_read_timeout,
    })
}

/// A count from `min` to `max`, as a `usize` (every bound fits one).
fn within(key: &str, value: u64, min: u64, max: u64, unit: &str) -> Result<usize, ConfigError> {
    if !(min..=max).contains(&value) {
        return Err(ConfigError::new(
            key,
            format!("{value} is out of range: give {unit} from {min} to {max}"),
        ));
    }
    usize::try_from(value).map_err(|_| ConfigError::new(key, format!("{value} is too large")))
}

fn required(key: &str, value: Option<String>, example: &str) -> Result<String, ConfigError> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
        Some(_) => Err(ConfigError::new(key, format!("empty; e.g. {example}"))),
        None => Err(ConfigError::new(key, format!("missing; e.g. {example}"))),
    }
}

fn validate_auth(raw: RawAuth) -> Result<AuthConfig, ConfigError> {
    let issuer = required(
        "auth.issuer",
        raw.issuer,
        "issuer = \"https://login.microsoftonline.com/<tenant id>/v2.0\" under [auth]",
    )?;
    let issuer = http_url("auth.issuer", &issuer)?;
    // Keys fetched over plain http:// from the network could be anyone's: refuse it here, where
    // the setting can be named, rather than at the first discovery.
    shared::auth::jwks::check_secure_url(&issuer)
        .map_err(|e| ConfigError::new("auth.issuer", e))?;
    let leeway_secs = raw.leeway_secs.unwrap_or(DEFAULT_LEEWAY_SECS);
    if leeway_secs > MAX_LEEWAY_SECS {
        return Err(ConfigError::new(
            "auth.leeway_secs",
            format!(
                "{leeway_secs} is more than {MAX_LEEWAY_SECS} seconds of clock skew; fix the clock instead"
            ),
        ));
    }
    Ok(AuthConfig {
        issuer,
        leeway: Duration::from_secs(leeway_secs),
    })
}

fn validate_route(key: &str, raw: RawRoute, public_base_url: &str) -> Result<Route, ConfigError> {
    let name = required(&format!("{key}.name"), raw.name, "name = \"contoso\"")?;
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(ConfigError::new(
            format!("{key}.name"),
            format!(
                "{name:?} may contain only lowercase letters, digits and \"-\" (it names the policy file and the API Management API)"
            ),
        ));
    }
    let prefix = required(
        &format!("{key}.prefix"),
        raw.prefix,
        "prefix = \"/contoso-mcp\"",
    )?;
    check_prefix(&format!("{key}.prefix"), &prefix)?;

    let upstreams = distinct_list(
        &format!("{key}.upstreams"),
        &raw.upstreams,
        "no upstream: list the backends as host:port, e.g. upstreams = [\"127.0.0.1:8001\"]",
        host_port,
    )?;
    let allowed_tenants = distinct_list(
        &format!("{key}.allowed_tenants"),
        &raw.allowed_tenants,
        "no tenant: a route that admits nobody would refuse every request; list the tenant ids (tid) allowed on this route",
        tenant_id,
    )?;
    let audiences = match raw.audiences {
        None => vec![resource_url(public_base_url, &prefix)],
        Some(audiences) => distinct_list(
            &format!("{key}.audiences"),
            &audiences,
            "no audience: a route that accepts no token would refuse every request; list the \
             audiences its tokens are issued for, or remove the key for the route's resource URL",
            audience,
        )?,
    };

    let rate_limit_per_minute = match raw.rate_limit_per_minute {
        None => None,
        Some(n) => Some(NonZeroU32::new(n).ok_or_else(|| {
            ConfigError::new(
                format!("{key}.rate_limit_per_minute"),
                "0 would refuse every call; give a positive number, or remove the key for no limit",
            )
        })?),
    };
    let connect_timeout = millis(
        &format!("{key}.connect_timeout_ms"),
        raw.connect_timeout_ms.unwrap_or(DEFAULT_CONNECT_TIMEOUT_MS),
        MAX_CONNECT_TIMEOUT_MS,
        "",
    )?;
    let read_timeout = millis(
        &format!("{key}.read_timeout_ms"),
        raw.read_timeout_ms.unwrap_or(DEFAULT_READ_TIMEOUT_MS),
        MAX_READ_TIMEOUT_MS,
        " (API Management does not honour longer forward-request timeouts)",
    )?;
    let max_body_bytes = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
    if max_body_bytes == 0 {
        return Err(ConfigError::new(
            format!("{key}.max_body_bytes"),
            "0 would refuse every request with a body; give a size in bytes (default 1048576)",
        ));
    }
    let health_check_path = raw
        .health_check_path
        .map(|p| p.trim().to_owned())
        .unwrap_or_else(|| DEFAULT_HEALTH_CHECK_PATH.to_owned());
    if !health_check_path.starts_with('/')
        || health_check_path
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
    {
        return Err(ConfigError::new(
            format!("{key}.health_check_path"),
            format!("{health_check_path:?} is not a path; e.g. \"/healthz\""),
        ));
    }
    let health_check_interval_ms = raw
        .health_check_interval_ms
        .unwrap_or(DEFAULT_HEALTH_CHECK_INTERVAL_MS);
    if !(MIN_HEALTH_CHECK_INTERVAL_MS..=MAX_HEALTH_CHECK_INTERVAL_MS)
        .contains(&health_check_interval_ms)
    {
        return Err(ConfigError::new(
            format!("{key}.health_check_interval_ms"),
            format!(
                "{health_check_interval_ms} is out of range: give milliseconds from \
                 {MIN_HEALTH_CHECK_INTERVAL_MS} to {MAX_HEALTH_CHECK_INTERVAL_MS}"
            ),
        ));
    }
    let health_check_interval = Duration::from_millis(health_check_interval_ms);
    let apim_backend_url = match raw.apim_backend_url {
        // `upstreams` is never empty (checked above).
        None => format!("http://{}", upstreams[0]),
        Some(url) => backend_url(&format!("{key}.apim_backend_url"), &url)?,
    };
    Ok(Route {
        name,
        prefix,
        upstreams,
        allowed_tenants,
        audiences,
        rate_limit_per_minute,
        connect_timeout,
        read_timeout,
        max_body_bytes,
        health_check_path,
        health_check_interval,
        apim_backend_url,
    })
}

/// A list that must not be empty, whose items each pass `check` (which may normalise them), and
/// that names no item twice; errors name the item's index (`routes[0].upstreams[1]`).
fn distinct_list(
    key: &str,
    values: &[String],
    when_empty: &str,
    check: impl Fn(&str, &str) -> Result<String, ConfigError>,
) -> Result<Vec<String>, ConfigError> {
    if values.is_empty() {
        return Err(ConfigError::new(key, when_empty));
    }
    let mut items: Vec<String> = Vec::with_capacity(values.len());
    for (i, value) in values.iter().enumerate() {
        let item_key = format!("{key}[{i}]");
        let item = check(&item_key, value)?;
        if items.contains(&item) {
            return Err(ConfigError::new(
                item_key,
                format!("{item:?} is listed twice"),
            ));
        }
        items.push(item);
    }
    Ok(items)
}

fn audience(key: &str, value: &str) -> Result<String, ConfigError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ConfigError::new(key, "empty audience"));
    }
    if value.chars().any(char::is_control) {
        return Err(ConfigError::new(
            key,
            format!("{value:?} contains a control character"),
        ));
    }
    Ok(value.to_owned())
}

fn check_prefix(key: &str, prefix: &str) -> Result<(), ConfigError> {
    let fail = |message: String| Err(ConfigError::new(key, message));
    if prefix == "/" {
        return fail(
            "\"/\" would send every path to this route; give it a prefix of its own, e.g. \"/contoso-mcp\"".into(),
        );
    }
    let Some(path) = prefix.strip_prefix('/') else {
        return fail(format!("{prefix:?} must start with \"/\""));
    };
    if prefix.ends_with('/') {
        return fail(format!("{prefix:?} must not end with \"/\""));
    }
    for segment in path.split('/') {
        if segment.is_empty() {
            return fail(format!("{prefix:?} has an empty segment (\"//\")"));
        }
        if segment == "." || segment == ".." {
            return fail(format!("{prefix:?} has a {segment:?} segment"));
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._~".contains(&b))
        {
            return fail(format!(
                "{prefix:?} may contain only lowercase letters, digits and - . _ ~ between its slashes"
            ));
        }
    }
    if prefix == WELL_KNOWN || prefix.starts_with(&format!("{WELL_KNOWN}/")) {
        return fail(format!(
            "{prefix:?} is under {WELL_KNOWN}, where the gateway serves each route's OAuth metadata"
        ));
    }
    Ok(())
}

/// Why two prefixes cannot coexist (`other` is `routes[j].prefix`), or `None` when they can:
/// equal, or one a whole-segment prefix of the other, so a path could match both.
fn overlap(prefix: &str, other: &str, j: usize) -> Option<String> {
    let under = |inner: &str, outer: &str| {
        inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.starts_with('/'))
    };
    if prefix == other {
        Some(format!("{prefix:?} is already the prefix of routes[{j}]"))
    } else if under(prefix, other) {
        Some(format!(
            "{prefix:?} lies under routes[{j}].prefix {other:?}; a path cannot belong to two routes"
        ))
    } else if under(other, prefix) {
        Some(format!(
            "{prefix:?} contains routes[{j}].prefix {other:?}; a path cannot belong to two routes"
        ))
    } else {
        None
    }
}

/// `host:port` with a DNS name, an IPv4 address or a bracketed IPv6 address, and a port above 0.
fn host_port(key: &str, value: &str) -> Result<String, ConfigError> {
    let value = value.trim();
    let bad = |why: &str| {
        Err(ConfigError::new(
            key,
            format!("{value:?} {why}; give host:port, e.g. \"127.0.0.1:8001\""),
        ))
    };
    if value.contains("://") {
        return bad("is a URL, not host:port (upstreams are spoken to in plain HTTP)");
    }
    let (host_ok, port) = if let Some(rest) = value.strip_prefix('[') {
        match rest.split_once("]:") {
            Some((ip, port)) => (ip.parse::<Ipv6Addr>().is_ok(), port),
            None => return bad("is not host:port"),
        }
    } else {
        match value.rsplit_once(':') {
            Some((host, port)) => (
                !host.is_empty()
                    && host
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'),
                port,
            ),
            None => return bad("has no port"),
        }
    };
    if !host_ok {
        return bad("does not start with a valid host name or IP address");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(value.to_owned()),
        _ => bad("does not end with a port from 1 to 65535"),
    }
}

/// A tenant id as Entra writes it in `tid`: a lowercase UUID. Lowercase is required rather than
/// folded, so the comparison with the token's claim is a plain, visible string equality.
fn tenant_id(key: &str, value: &str) -> Result<String, ConfigError> {
    let value = value.trim();
    let uuid_shape = value.len() == 36
        && value.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    if !uuid_shape {
        return Err(ConfigError::new(
            key,
            format!(
                "{value:?} is not a tenant id (tid): expected a UUID such as \"c0a7050c-0000-4000-8000-000000000001\""
            ),
        ));
    }
    if value.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ConfigError::new(
            key,
            format!(
                "{value:?}: write tenant ids in lowercase, as tokens carry them ({:?})",
                value.to_ascii_lowercase()
            ),
        ));
    }
    Ok(value.to_owned())
}

fn millis(key: &str, value: u64, max: u64, why_max: &str) -> Result<Duration, ConfigError> {
    if value == 0 || value > max {
        return Err(ConfigError::new(
            key,
            format!("{value} is out of range: give milliseconds from 1 to {max}{why_max}"),
        ));
    }
    Ok(Duration::from_millis(value))
}

/// An http(s) URL with a host, without query or fragment; trailing slashes are dropped.
fn http_url(key: &str, value: &str) -> Result<String, ConfigError> {
    let value = value.trim();
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"));
    let Some(rest) = rest else {
        return Err(ConfigError::new(
            key,
            format!("{value:?} is not an http:// or https:// URL"),
        ));
    };
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err(ConfigError::new(key, format!("{value:?} has no host")));
    }
    if value
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
    {
        return Err(ConfigError::new(
            key,
            format!("{value:?} must not contain spaces, control characters, a query or a fragment"),
        ));
    }
    Ok(value.trim_end_matches('/').to_owned())
}

/// The APIM backend: `scheme://host[:port]` only. A path would make API Management send
/// `/base/mcp` where the local gateway sends `/mcp`.
fn backend_url(key: &str, value: &str) -> Result<String, ConfigError> {
    let url = http_url(key, value)?;
    let after_scheme = url.split_once("://").map_or("", |(_, rest)| rest);
    if after_scheme.contains('/') {
        return Err(ConfigError::new(
            key,
            format!(
                "{url:?} has a path; give scheme://host[:port] only: the backend receives the request path \
                 after the route prefix, as upstreams do locally"
            ),
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTOSO: &str = "c0a7050c-0000-4000-8000-000000000001";
    const FABRIKAM: &str = "fab1ca70-0000-4000-8000-000000000002";

    fn base() -> String {
        format!(
            r#"
listen = "127.0.0.1:8080"
public_base_url = "http://127.0.0.1:8080/"

[auth]
issuer = "http://127.0.0.1:4444/"

[[routes]]
name = "contoso"
prefix = "/contoso-mcp"
upstreams = ["127.0.0.1:8001", "127.0.0.1:8011"]
allowed_tenants = ["{CONTOSO}"]
audiences = ["https://gw.example.com/contoso-mcp/mcp", "api://contoso-mcp"]
rate_limit_per_minute = 600

[[routes]]
name = "fabrikam"
prefix = "/fabrikam-mcp"
upstreams = ["127.0.0.1:8002"]
allowed_tenants = ["{FABRIKAM}"]
"#
        )
    }

    /// The base configuration with `from` replaced by `to` (which must occur).
    fn with(from: &str, to: &str) -> String {
        let text = base();
        assert!(text.contains(from), "the base config has no {from:?}");
        text.replacen(from, to, 1)
    }

    fn error(text: &str) -> ConfigError {
        Config::from_toml(text).expect_err("the configuration should be refused")
    }

    fn assert_error(text: &str, key: &str, fragment: &str) {
        let e = error(text);
        assert_eq!(e.key, key, "wrong key in {e}");
        assert!(
            e.message.contains(fragment),
            "{e} does not mention {fragment:?}"
        );
    }

    #[test]
    fn the_base_config_is_valid_and_defaults_are_filled_in() {
        let config = Config::from_toml(&base()).expect("valid");
        assert_eq!(config.listen, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(config.public_base_url, "http://127.0.0.1:8080");
        assert_eq!(config.auth.issuer, "http://127.0.0.1:4444");
        assert_eq!(config.auth.leeway, Duration::from_secs(60));
        let contoso = &config.routes[0];
        assert_eq!(
            contoso.rate_limit_per_minute.map(NonZeroU32::get),
            Some(600)
        );
        assert_eq!(contoso.connect_timeout, Duration::from_millis(3_000));
        assert_eq!(contoso.read_timeout, Duration::from_millis(240_000));
        assert_eq!(contoso.max_body_bytes, 1_048_576);
        assert_eq!(contoso.health_check_path, "/healthz");
        assert_eq!(contoso.apim_backend_url, "http://127.0.0.1:8001");
        assert!(contoso.admits(CONTOSO));
        assert!(!contoso.admits(FABRIKAM));
        assert_eq!(config.routes[1].rate_limit_per_minute, None);
    }

    #[test]
    fn optional_keys_are_read() {
        let text = with(
            "rate_limit_per_minute = 600",
            r#"rate_limit_per_minute = 600
connect_timeout_ms = 500
read_timeout_ms = 30000
max_body_bytes = 2048
health_check_path = "/readyz"
health_check_interval_ms = 250
apim_backend_url = "https://contoso-tools.example.azurecontainerapps.io/""#,
        )
        .replacen("[auth]", "[auth]\nleeway_secs = 5", 1);
        let config = Config::from_toml(&text).expect("valid");
        let route = &config.routes[0];
        assert_eq!(route.connect_timeout, Duration::from_millis(500));
        assert_eq!(route.read_timeout, Duration::from_secs(30));
        assert_eq!(route.max_body_bytes, 2048);
        assert_eq!(route.health_check_path, "/readyz");
        assert_eq!(route.health_check_interval, Duration::from_millis(250));
        assert_eq!(
            route.apim_backend_url,
            "https://contoso-tools.example.azurecontainerapps.io"
        );
        assert_eq!(config.auth.leeway, Duration::from_secs(5));
    }

    #[test]
    fn unknown_keys_are_named() {
        assert_error(
            &with(
                "upstreams = [\"127.0.0.1:8002\"]",
                "upstream = [\"127.0.0.1:8002\"]",
            ),
            "routes[1].upstream",
            "unknown field `upstream`",
        );
        assert_error(
            &with(
                "upstreams = [\"127.0.0.1:8001\", \"127.0.0.1:8011\"]",
                "upstream = \"x\"",
            ),
            "routes[0].upstream",
            "unknown field",
        );
        assert_error(&format!("lisen = 1\n{}", base()), "lisen", "unknown field");
        assert_error(
            &with("[auth]", "[auth]\naudience = \"x\""),
            "auth.audience",
            "unknown field",
        );
    }

    #[test]
    fn wrong_types_and_syntax_are_located() {
        assert_error(
            &with(
                "rate_limit_per_minute = 600",
                "rate_limit_per_minute = \"600\"",
            ),
            "routes[0].rate_limit_per_minute",
            "line",
        );
        assert_error(
            &with("rate_limit_per_minute = 600", "rate_limit_per_minute = -1"),
            "routes[0].rate_limit_per_minute",
            "",
        );
        let e = error("listen = ");
        assert_eq!(e.key, "toml");
        assert!(e.message.contains("line 1"), "{e}");
    }

    #[test]
    fn required_keys_are_named_when_missing() {
        assert_error(
            &with("listen = \"127.0.0.1:8080\"", ""),
            "listen",
            "missing",
        );
        assert_error(
            &with("public_base_url = \"http://127.0.0.1:8080/\"", ""),
            "public_base_url",
            "missing",
        );
        assert_error(
            &with("issuer = \"http://127.0.0.1:4444/\"", ""),
            "auth.issuer",
            "missing",
        );
        assert_error(
            &with("name = \"fabrikam\"", ""),
            "routes[1].name",
            "missing",
        );
        assert_error(
            &with("prefix = \"/fabrikam-mcp\"", ""),
            "routes[1].prefix",
            "missing",
        );
    }

    #[test]
    fn listen_must_be_a_socket_address() {
        assert_error(
            &with("\"127.0.0.1:8080\"", "\"localhost:8080\""),
            "listen",
            "not an IP address and port",
        );
    }

    #[test]
    fn urls_must_be_http() {
        assert_error(
            &with("\"http://127.0.0.1:8080/\"", "\"127.0.0.1:8080\""),
            "public_base_url",
            "not an http",
        );
        assert_error(
            &with("\"http://127.0.0.1:8080/\"", "\"https://\""),
            "public_base_url",
            "no host",
        );
        assert_error(
            &with("\"http://127.0.0.1:8080/\"", "\"http://gw/?x=1\""),
            "public_base_url",
            "query",
        );
        assert_error(
            &with("\"http://127.0.0.1:4444/\"", "\"ftp://idp\""),
            "auth.issuer",
            "not an http",
        );
        // Found by the fuzzer: an unknown key spelled as the empty string is still named.
        let e = Config::from_toml("''='&'").expect_err("refused");
        assert_eq!(e.key, "\"\"");
        assert_error(
            &with("\"http://127.0.0.1:4444/\"", "\"http://idp.example.com\""),
            "auth.issuer",
            "not a loopback address",
        );
        let config = Config::from_toml(&with(
            "\"http://127.0.0.1:8080/\"",
            "\"https://gw.example.com/base//\"",
        ))
        .expect("valid");
        assert_eq!(config.public_base_url, "https://gw.example.com/base");
    }

    #[test]
    fn audiences_are_per_route_and_default_to_the_resource_url() {
        let config = Config::from_toml(&base()).expect("valid");
        assert_eq!(
            config.routes[0].audiences,
            [
                "https://gw.example.com/contoso-mcp/mcp",
                "api://contoso-mcp"
            ]
        );
        // No key: the route's resource URL, with the base URL normalised.
        assert_eq!(
            config.routes[1].audiences,
            ["http://127.0.0.1:8080/fabrikam-mcp/mcp"]
        );
        assert_eq!(
            config.routes[1].audiences,
            [config.resource_url(&config.routes[1])]
        );
    }

    #[test]
    fn route_audiences_are_checked_like_audiences() {
        let audiences =
            "audiences = [\"https://gw.example.com/contoso-mcp/mcp\", \"api://contoso-mcp\"]";
        assert_error(
            &with(audiences, "audiences = []"),
            "routes[0].audiences",
            "no audience",
        );
        assert_error(
            &with(audiences, "audiences = [\"api://a\", \" \"]"),
            "routes[0].audiences[1]",
            "empty",
        );
        assert_error(
            &with(audiences, "audiences = [\"api://a\\u0001\"]"),
            "routes[0].audiences[0]",
            "control character",
        );
        assert_error(
            &with(audiences, "audiences = [\"api://a\", \" api://a \"]"),
            "routes[0].audiences[1]",
            "twice",
        );
        assert_error(
            &with(audiences, "audiences = \"api://a\""),
            "routes[0].audiences",
            "",
        );
        let trimmed =
            Config::from_toml(&with(audiences, "audiences = [\" api://a \"]")).expect("valid");
        assert_eq!(trimmed.routes[0].audiences, ["api://a"]);
    }

    #[test]
    fn no_audience_is_shared_by_two_routes() {
        // Fabrikam's default is its resource URL; listing it on Contoso would let a token for
        // Fabrikam in at Contoso.
        let e = error(&with(
            "\"api://contoso-mcp\"]",
            "\"api://contoso-mcp\", \"http://127.0.0.1:8080/fabrikam-mcp/mcp\"]",
        ));
        assert_eq!(e.key, "routes[1].audiences[0]", "{e}");
        assert!(
            e.message.contains("already an audience of routes[0]"),
            "{e}"
        );
        let e = error(&with(
            &format!("allowed_tenants = [\"{FABRIKAM}\"]"),
            &format!(
                "allowed_tenants = [\"{FABRIKAM}\"]\naudiences = [\"api://fabrikam\", \"api://contoso-mcp\"]"
            ),
        ));
        assert_eq!(e.key, "routes[1].audiences[1]", "{e}");
        assert!(e.message.contains("accepted on the other"), "{e}");
    }

    #[test]
    fn auth_audiences_is_refused_with_where_they_went() {
        let e = error(&with(
            "[auth]",
            "[auth]\naudiences = [\"api://contoso-mcp\"]",
        ));
        assert_eq!(e.key, "auth.audiences", "{e}");
        for fragment in [
            "now per route",
            "routes[].audiences",
            "<public_base_url><prefix>/mcp",
            "line 6",
        ] {
            assert!(e.message.contains(fragment), "{e} lacks {fragment:?}");
        }
        // Also an empty list: silently ignoring it would be as wrong.
        let e = error(&with("[auth]", "[auth]\naudiences = []"));
        assert_eq!(e.key, "auth.audiences", "{e}");
        assert!(e.message.contains("now per route"), "{e}");
    }

    #[test]
    fn leeway_is_bounded() {
        assert_error(
            &with("[auth]", "[auth]\nleeway_secs = 3600"),
            "auth.leeway_secs",
            "clock skew",
        );
    }

    #[test]
    fn at_least_one_route() {
        let text = base();
        let only_header = &text[..text.find("[[routes]]").expect("routes")];
        assert_error(only_header, "routes", "at least one");
    }

    #[test]
    fn route_names_are_unique_and_plain() {
        assert_error(
            &with("name = \"fabrikam\"", "name = \"contoso\""),
            "routes[1].name",
            "already the name of routes[0]",
        );
        for bad in ["Fabrikam", "fab rikam", "fab_rikam", "fabrikam/x"] {
            assert_error(
                &with("name = \"fabrikam\"", &format!("name = {bad:?}")),
                "routes[1].name",
                "lowercase letters, digits",
            );
        }
    }

    #[test]
    fn prefixes_are_well_formed() {
        let cases = [
            ("contoso-mcp", "must start with \"/\""),
            ("/contoso-mcp/", "must not end with \"/\""),
            ("/", "every path"),
            ("/a//b", "empty segment"),
            ("/a/../b", "\"..\" segment"),
            ("/a/./b", "\".\" segment"),
            ("/Contoso", "lowercase"),
            ("/a b", "lowercase"),
            ("/a?b", "lowercase"),
            ("/.well-known", "OAuth metadata"),
            ("/.well-known/x", "OAuth metadata"),
        ];
        for (prefix, fragment) in cases {
            assert_error(
                &with("\"/fabrikam-mcp\"", &format!("{prefix:?}")),
                "routes[1].prefix",
                fragment,
            );
        }
        let e = error(&with("\"/fabrikam-mcp\"", "\"/contoso-mcp/\""));
        assert_eq!(
            e.to_string(),
            r#"routes[1].prefix: "/contoso-mcp/" must not end with "/""#
        );
    }

    #[test]
    fn prefixes_may_share_characters_but_not_segments() {
        let ok = with("\"/fabrikam-mcp\"", "\"/contoso-mcp-eu\"");
        Config::from_toml(&ok).expect("/contoso-mcp and /contoso-mcp-eu coexist");
        let ok = with("\"/fabrikam-mcp\"", "\"/contoso\"");
        Config::from_toml(&ok).expect("/contoso and /contoso-mcp coexist");
        assert_error(
            &with("\"/fabrikam-mcp\"", "\"/contoso-mcp\""),
            "routes[1].prefix",
            "already the prefix of routes[0]",
        );
        assert_error(
            &with("\"/fabrikam-mcp\"", "\"/contoso-mcp/x\""),
            "routes[1].prefix",
            "lies under routes[0].prefix",
        );
        let outer_second = with("\"/contoso-mcp\"", "\"/shared/contoso\"").replacen(
            "\"/fabrikam-mcp\"",
            "\"/shared\"",
            1,
        );
        assert_error(
            &outer_second,
            "routes[1].prefix",
            "contains routes[0].prefix",
        );
    }

    #[test]
    fn upstreams_are_host_port() {
        assert_error(
            &with("upstreams = [\"127.0.0.1:8002\"]", "upstreams = []"),
            "routes[1].upstreams",
            "no upstream",
        );
        let cases = [
            ("127.0.0.1", "no port"),
            ("127.0.0.1:0", "port from 1 to 65535"),
            ("127.0.0.1:70000", "port from 1 to 65535"),
            ("127.0.0.1:http", "port from 1 to 65535"),
            (":8002", "host name"),
            ("http://127.0.0.1:8002", "is a URL"),
            ("back end:8002", "host name"),
            ("[::1]", "not host:port"),
            ("[zz]:8002", "host name"),
        ];
        for (upstream, fragment) in cases {
            assert_error(
                &with(
                    "\"127.0.0.1:8002\"",
                    &format!("\"127.0.0.1:9\", {upstream:?}"),
                ),
                "routes[1].upstreams[1]",
                fragment,
            );
        }
        assert_error(
            &with("\"127.0.0.1:8002\"", "\"a:1\", \"a:1\""),
            "routes[1].upstreams[1]",
            "twice",
        );
        let ok = with(
            "\"127.0.0.1:8002\"",
            "\"[::1]:8002\", \"fabrikam-tools.internal:80\"",
        );
        let config = Config::from_toml(&ok).expect("valid");
        assert_eq!(config.routes[1].apim_backend_url, "http://[::1]:8002");
    }

    #[test]
    fn a_route_must_admit_someone() {
        let e = error(&with(
            &format!("allowed_tenants = [\"{FABRIKAM}\"]"),
            "allowed_tenants = []",
        ));
        assert_eq!(e.key, "routes[1].allowed_tenants");
        assert!(e.message.contains("admits nobody"), "{e}");
        let e = error(&with(&format!("allowed_tenants = [\"{FABRIKAM}\"]"), ""));
        assert_eq!(e.key, "routes[1].allowed_tenants");
    }

    #[test]
    fn tenants_are_lowercase_uuids_listed_once() {
        let swap = |tenants: &str| with(&format!("[\"{FABRIKAM}\"]"), tenants);
        assert_error(
            &swap(&format!("[\"{FABRIKAM}\", \"fabrikam\"]")),
            "routes[1].allowed_tenants[1]",
            "not a tenant id",
        );
        assert_error(
            &swap("[\"fab1ca70-0000-4000-8000-00000000000\"]"),
            "routes[1].allowed_tenants[0]",
            "not a tenant id",
        );
        assert_error(
            &swap("[\"fab1ca70x0000-4000-8000-000000000002\"]"),
            "routes[1].allowed_tenants[0]",
            "not a tenant id",
        );
        assert_error(
            &swap("[\"FAB1CA70-0000-4000-8000-000000000002\"]"),
            "routes[1].allowed_tenants[0]",
            "lowercase",
        );
        assert_error(
            &swap(&format!("[\"{FABRIKAM}\", \"{FABRIKAM}\"]")),
            "routes[1].allowed_tenants[1]",
            "twice",
        );
    }

    #[test]
    fn rate_limit_must_be_positive() {
        assert_error(
            &with("rate_limit_per_minute = 600", "rate_limit_per_minute = 0"),
            "routes[0].rate_limit_per_minute",
            "positive",
        );
    }

    #[test]
    fn timeouts_body_limit_and_health_path_are_checked() {
        let route0 = |extra: &str| {
            with(
                "rate_limit_per_minute = 600",
                &format!("rate_limit_per_minute = 600\n{extra}"),
            )
        };
        assert_error(
            &route0("read_timeout_ms = 240001"),
            "routes[0].read_timeout_ms",
            "API Management",
        );
        for interval in ["99", "300001"] {
            assert_error(
                &route0(&format!("health_check_interval_ms = {interval}")),
                "routes[0].health_check_interval_ms",
                "from 100 to 300000",
            );
        }
        assert_error(
            &route0("read_timeout_ms = 0"),
            "routes[0].read_timeout_ms",
            "out of range",
        );
        assert_error(
            &route0("connect_timeout_ms = 0"),
            "routes[0].connect_timeout_ms",
            "out of range",
        );
        assert_error(
            &route0("max_body_bytes = 0"),
            "routes[0].max_body_bytes",
            "bytes",
        );
        assert_error(
            &route0("health_check_path = \"healthz\""),
            "routes[0].health_check_path",
            "not a path",
        );
    }

    #[test]
    fn server_bounds_have_defaults() {
        let config = Config::from_toml(&base()).expect("valid");
        assert_eq!(config.server, ServerConfig::default());
        assert_eq!(config.server.header_read_timeout, Duration::from_secs(10));
        assert_eq!(config.server.idle_timeout, Duration::from_secs(60));
        assert_eq!(config.server.max_connections, 4096);
        assert_eq!(config.server.max_header_bytes, 32 * 1024);
        assert_eq!(config.server.max_headers, 100);
        assert_eq!(config.server.upstream_idle_timeout, Duration::from_secs(30));
        assert_eq!(config.server.body_read_timeout, Duration::from_secs(30));
    }

    #[test]
    fn server_bounds_are_read() {
        let text = with(
            "[auth]",
            "[server]\nheader_read_timeout_ms = 300\nidle_timeout_ms = 400\nmax_connections = 2\n\
             max_header_bytes = 4096\nmax_headers = 20\nupstream_idle_timeout_ms = 5000\n\
             body_read_timeout_ms = 700\n[auth]",
        );
        let server = Config::from_toml(&text).expect("valid").server;
        assert_eq!(
            server,
            ServerConfig {
                header_read_timeout: Duration::from_millis(300),
                idle_timeout: Duration::from_millis(400),
                max_connections: 2,
                max_header_bytes: 4096,
                max_headers: 20,
                upstream_idle_timeout: Duration::from_secs(5),
                body_read_timeout: Duration::from_millis(700),
            }
        );
    }

    #[test]
    fn server_bounds_are_checked_and_named() {
        let server = |line: &str| with("[auth]", &format!("[server]\n{line}\n[auth]"));
        assert_error(
            &server("max_conections = 10"),
            "server.max_conections",
            "unknown field",
        );
        let cases = [
            ("header_read_timeout_ms = 0", "from 1 to 120000"),
            ("header_read_timeout_ms = 120001", "from 1 to 120000"),
            ("idle_timeout_ms = 0", "from 1 to 3600000"),
            ("max_connections = 0", "connections from 1 to 1000000"),
            ("max_header_bytes = 100", "bytes from 1024 to 1048575"),
            ("max_header_bytes = 2000000", "bytes from 1024 to 1048575"),
            ("max_headers = 0", "header fields from 1 to 256"),
            ("max_headers = 300", "header fields from 1 to 256"),
            ("upstream_idle_timeout_ms = 80000", "75 s"),
            ("body_read_timeout_ms = 0", "from 1 to 600000"),
        ];
        for (line, fragment) in cases {
            let key = format!("server.{}", line.split(' ').next().expect("a key"));
            assert_error(&server(line), &key, fragment);
        }
        assert_error(&server("max_headers = \"many\""), "server.max_headers", "");
    }

    #[test]
    fn apim_backend_url_has_no_path() {
        let route0 = |url: &str| {
            with(
                "rate_limit_per_minute = 600",
                &format!("apim_backend_url = {url:?}"),
            )
        };
        assert_error(
            &route0("https://tools.example.com/mcp"),
            "routes[0].apim_backend_url",
            "has a path",
        );
        assert_error(
            &route0("tools.example.com"),
            "routes[0].apim_backend_url",
            "not an http",
        );
    }

    #[test]
    fn verifier_settings_admit_every_route_and_tenant_of_the_issuer_and_no_actor() {
        let config = Config::from_toml(&base()).expect("valid");
        let settings = config.verifier_settings();
        assert_eq!(settings.issuer, "http://127.0.0.1:4444");
        assert_eq!(
            settings.audiences,
            [
                "https://gw.example.com/contoso-mcp/mcp",
                "api://contoso-mcp",
                "http://127.0.0.1:8080/fabrikam-mcp/mcp"
            ]
        );
        assert_eq!(settings.allowed_tenants, None);
        assert_eq!(settings.leeway, Duration::from_secs(60));
        assert!(settings.trusted_actors.is_empty());
    }
}
