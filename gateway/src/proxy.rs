//! The local edge: a pingora [`ProxyHttp`] that applies, per request and in this order, the rules
//! API Management applies in production (see [`crate::apim`]), and [`run`], which serves it on a
//! listener we bound, inside our own tokio runtime.
//!
//! 1. the RFC 9728 metadata of a route is answered here, without a token, at each of
//!    [`crate::routing::metadata_paths`];
//! 2. the route is found by its MCP endpoint, exactly `<prefix>/mcp` with any query
//!    ([`Config::route_for`]); any other path, under a prefix or not: 404, before any token check
//!    and without contacting an upstream. A method other than POST, GET or DELETE at the
//!    endpoint: 405 with `Allow`;
//! 3. the bearer token is verified by the shared [`JwtVerifier`] (built with the audiences of
//!    every route, no trusted actors: a delegated token is refused), then must have been issued
//!    for this route: its `aud` names one of the route's `audiences`. Missing, invalid or meant
//!    for another route: 401 with `WWW-Authenticate: Bearer resource_metadata="..."` (plus
//!    `error="invalid_token"` when a token was sent) and nothing more about what failed (the
//!    reason is logged at debug level);
//! 4. the token's `tid` must be on the route's allow-list; if not: 403, nothing forwarded;
//! 5. the tenant's calls on the route are counted ([`RateLimits`], in this process or in a Redis
//!    shared with the other replicas); over `rate_limit_per_minute`: 429 with `Retry-After`,
//!    nothing forwarded. With a shared store that does not answer, the call goes on uncounted, or
//!    (failing closed) gets 503 `quota_unavailable` with `Retry-After`;
//! 6. a body declared larger than the route's `max_body_bytes` gets 413, after the gateway read
//!    and discarded it for at most [`BODY_DRAIN_TIMEOUT`] so the client can read the answer. A
//!    chunked body (no declared length) is counted as it arrives and held back from the upstream
//!    until it ends, so it is never buffered past the limit and no byte of one over the limit
//!    is forwarded: past the limit, 413 and the upstream connection is dropped. (The upstream
//!    has seen the request head by then: pingora connects once the head is read, and a body it
//!    has read cannot be replayed, so refusing before connecting would mean buffering bodies
//!    before authentication, outside pingora). A body must have arrived in full within
//!    `server.body_read_timeout_ms` of its head, whether the client falls silent or trickles it:
//!    past that, 408 `request_timeout` and the connection is closed;
//! 7. the request goes to the route's next upstream (round robin, active health checks on
//!    `health_check_path`) as `/mcp` plus the query, the client's identity headers
//!    ([`SPOOFABLE_HEADERS`]) replaced by the gateway's, `Authorization` untouched and a W3C
//!    `traceparent` forwarded if well formed or else started here. Upstream failures are answered
//!    as JSON 502/503/504.
//!
//! Before any of this, [`crate::connection`] has read the request head within the `[server]`
//! bounds (header-read and idle timeouts, head size and field count, connection cap).
//!
//! Every refusal has the JSON body `{"error", "message", "request_id"}` of [`Refusal`], as in
//! API Management. One access-log line per request (route, tenant, status, upstream, duration,
//! request id; never the token).

use std::{
    hash::{BuildHasher, RandomState},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::Method;
use pingora::{
    ErrorType,
    apps::ServerApp,
    http::{RequestHeader, ResponseHeader},
    lb::{LoadBalancer, health_check::HttpHealthCheck, selection::RoundRobin},
    prelude::{Error, HttpPeer, Result},
    proxy::{FailToProxy, HttpProxy, ProxyHttp, Session, http_proxy},
    server::configuration::ServerConf,
    services::background::BackgroundService,
    upstreams::peer::Peer,
};
use shared::auth::{
    AuthError,
    jwks::{self, Jwks},
    middleware::bearer,
    verifier::JwtVerifier,
};
use tokio::{net::TcpListener, sync::watch, task::JoinSet};
use tracing::{Span, field};

use crate::{
    config::{Config, Route},
    connection::Edge,
    limits::{QuotaStore, RateLimits, retry_after_secs},
    policy::{FORWARDED_FOR_HEADER, REQUEST_ID_HEADER, Refusal, SPOOFABLE_HEADERS, TENANT_HEADER},
    routing::MCP_METHODS,
};

/// The W3C trace context header.
const TRACEPARENT_HEADER: &str = "traceparent";
const TRACESTATE_HEADER: &str = "tracestate";

/// How long in-flight requests may run on after shutdown before they are cut.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the body of a request refused with 413 is read and discarded before answering.
pub const BODY_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// A route's pool and the texts answered for it, built once.
struct RouteState {
    lb: Arc<LoadBalancer<RoundRobin>>,
    metadata: Bytes,
    challenge: String,
    invalid_token_challenge: String,
}

/// The proxy: the validated configuration, one `RouteState` per route (same index), and the
/// verifier every route shares.
pub struct Gateway {
    config: Arc<Config>,
    routes: Vec<RouteState>,
    verifier: Arc<JwtVerifier>,
    limits: RateLimits,
    /// Shared with [`Edge`], whose refusals carry request ids too.
    ids: Arc<RequestIds>,
}

/// Per-request state, filled in phase by phase.
pub struct Ctx {
    start: Instant,
    request_id: String,
    /// Index into the configuration's routes, once matched.
    route: Option<usize>,
    /// The upstream path (`/mcp` and the query), from [`Config::route_for`].
    upstream_path: String,
    /// The verified `tid`.
    tenant: Option<String>,
    upstream: Option<String>,
    /// Upstreams this request could not connect to; a retry skips them.
    failed: Vec<String>,
    /// Body bytes seen so far, against the route's limit for bodies without `Content-Length`.
    body_bytes: u64,
    /// A chunked body, held back until it ends (`None`: the body is streamed as it comes, its
    /// declared length being within the limit already).
    held_body: Option<BytesMut>,
    /// When the body must have arrived in full (`None`: no body is expected).
    body_by: Option<Instant>,
    /// The request's span (continuing the caller's trace); it ends with the request.
    span: Span,
    /// Why the gateway refused the request itself, for the `gateway.refusals` metric: the
    /// refusal's code, or for a 401 the verification's reason (`expired`...).
    refused: Option<&'static str>,
    /// A liveness probe of the gateway itself ([`LIVENESS_PATH`]): logged at DEBUG, not traced
    /// or measured, since a container engine sends one every few seconds.
    probe: bool,
}

/// The gateway's own liveness probe, answered before any route: a container's `HEALTHCHECK`
/// and Container Apps' probes ask it. Not under any route's prefix (a prefix's only public path
/// is `<prefix>/mcp`), so it hides nothing.
pub const LIVENESS_PATH: &str = "/healthz";

impl Gateway {
    /// Builds the pools (health checks not started: see [`run`]) and the texts of each route.
    pub fn new(
        config: Arc<Config>,
        verifier: Arc<JwtVerifier>,
        limits: RateLimits,
    ) -> anyhow::Result<Self> {
        let routes = config
            .routes
            .iter()
            .enumerate()
            .map(|(i, route)| {
                let metadata = config.protected_resource(route);
                let metadata_url = config.metadata_url(route);
                Ok(RouteState {
                    lb: Arc::new(pool(route).with_context(|| format!("routes[{i}].upstreams"))?),
                    metadata: Bytes::from(serde_json::to_vec(&metadata)?),
                    challenge: format!("Bearer resource_metadata=\"{metadata_url}\""),
                    invalid_token_challenge: format!(
                        "Bearer resource_metadata=\"{metadata_url}\", error=\"invalid_token\""
                    ),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Gateway {
            limits,
            config,
            routes,
            verifier,
            ids: Arc::new(RequestIds::default()),
        })
    }

    /// The index of `route`, one of the configuration's own.
    fn index_of(&self, route: &Route) -> Option<usize> {
        self.config
            .routes
            .iter()
            .position(|r| std::ptr::eq(r, route))
    }

    fn route(&self, ctx: &Ctx) -> Option<(&Route, &RouteState)> {
        let i = ctx.route?;
        Some((self.config.routes.get(i)?, self.routes.get(i)?))
    }
}

/// A round-robin pool over the route's upstreams, probed with `GET <health_check_path>`.
fn pool(route: &Route) -> anyhow::Result<LoadBalancer<RoundRobin>> {
    let mut lb =
        LoadBalancer::<RoundRobin>::try_from_iter(route.upstreams.iter().map(String::as_str))
            .context("resolving the upstream addresses")?;
    let mut check = HttpHealthCheck::new("localhost", false);
    check.req = RequestHeader::build("GET", route.health_check_path.as_bytes(), None)?;
    check.req.insert_header("host", "localhost")?;
    check.peer_template.options.connection_timeout = Some(route.connect_timeout);
    check.peer_template.options.read_timeout = Some(Duration::from_secs(2));
    lb.set_health_check(Box::new(check));
    lb.health_check_frequency = Some(route.health_check_interval);
    lb.parallel_health_check = true;
    Ok(lb)
}

/// Request ids shaped like random (v4) UUIDs: a per-process random key hashed with a counter.
#[derive(Default)]
pub(crate) struct RequestIds {
    seed: RandomState,
    next: AtomicU64,
}

impl RequestIds {
    /// A new trace for a request that came without one: the trace id is the request id (so
    /// logs and traces join on one value), the parent id derived from it, and the sampled flag
    /// set so the backends record what the gateway starts.
    fn traceparent(&self, request_id: &str) -> String {
        let trace: String = request_id.chars().filter(|c| *c != '-').collect();
        let parent = self.seed.hash_one((request_id, 2u8)).max(1);
        format!("00-{trace}-{parent:016x}-01")
    }

    pub(crate) fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let hi = self.seed.hash_one((n, 0u8));
        let lo = self.seed.hash_one((n, 1u8));
        let v = (u128::from(hi) << 64) | u128::from(lo);
        // version 4, variant 10
        let v = (v & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
        let s = format!("{v:032x}");
        format!(
            "{}-{}-{}-{}-{}",
            &s[0..8],
            &s[8..12],
            &s[12..16],
            &s[16..20],
            &s[20..32]
        )
    }
}

/// A W3C trace context `traceparent` the gateway can forward as is: version `00` (or a later
/// version, read as `00` as the specification asks), non-zero trace and parent ids, lowercase hex.
fn is_traceparent(value: &str) -> bool {
    let hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
    let mut parts = value.split('-');
    let (Some(version), Some(trace), Some(parent), Some(flags)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let rest_ok = match version {
        "00" => parts.next().is_none(),
        _ => true,
    };
    version.len() == 2
        && hex(version)
        && version != "ff"
        && trace.len() == 32
        && hex(trace)
        && nonzero(trace)
        && parent.len() == 16
        && hex(parent)
        && nonzero(parent)
        && flags.len() == 2
        && hex(flags)
        && rest_ok
}

pub(crate) fn refusal_body(refusal: Refusal, request_id: &str) -> Bytes {
    error_body(refusal.code(), refusal.message(), request_id)
}

fn error_body(code: &str, message: &str, request_id: &str) -> Bytes {
    let body = serde_json::json!({ "error": code, "message": message, "request_id": request_id });
    Bytes::from(body.to_string())
}

/// Answers from the gateway itself; `Ok(true)` tells pingora the response is sent.
async fn respond(
    session: &mut Session,
    status: u16,
    body: Bytes,
    request_id: &str,
    extra: &[(&'static str, &str)],
) -> Result<bool> {
    let mut resp = ResponseHeader::build(status, Some(3 + extra.len()))?;
    resp.insert_header("content-type", "application/json")?;
    resp.insert_header("content-length", body.len().to_string())?;
    resp.insert_header(REQUEST_ID_HEADER, request_id)?;
    for (name, value) in extra {
        resp.insert_header(*name, *value)?;
    }
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await?;
    Ok(true)
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            start: Instant::now(),
            request_id: self.ids.next(),
            route: None,
            upstream_path: String::new(),
            tenant: None,
            upstream: None,
            failed: Vec::new(),
            body_bytes: 0,
            held_body: None,
            body_by: None,
            span: Span::none(),
            refused: None,
            probe: false,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let head = session.req_header();
        if head.uri.path() == LIVENESS_PATH && matches!(head.method, Method::GET | Method::HEAD) {
            ctx.probe = true;
            let body = Bytes::from_static(br#"{"status":"ok"}"#);
            return respond(session, 200, body, &ctx.request_id, &[]).await;
        }
        ctx.span = request_span(session.req_header(), &ctx.request_id);
        let path_and_query = session
            .req_header()
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        if let Some(route) = self.config.metadata_route_for(&path_and_query) {
            let i = self.index_of(route);
            ctx.route = i;
            if let Some(state) = i.and_then(|i| self.routes.get(i)) {
                let body = state.metadata.clone();
                return respond(session, 200, body, &ctx.request_id, &[]).await;
            }
        }
        let Some((route, upstream_path)) = self.config.route_for(&path_and_query) else {
            // Health, readiness and whatever else a backend serves stay inside: only the MCP
            // endpoint of a route is public.
            ctx.route = self
                .config
                .route_under(&path_and_query)
                .and_then(|route| self.index_of(route));
            let body = error_body(
                "not_found",
                "There is no service at this path.",
                &ctx.request_id,
            );
            return respond(session, 404, body, &ctx.request_id, &[]).await;
        };
        let Some(index) = self.index_of(route) else {
            return Err(Error::explain(ErrorType::InternalError, "route index"));
        };
        ctx.route = Some(index);
        ctx.span.record(
            "otel.name",
            format!("{} {}", session.req_header().method, route.name),
        );
        ctx.span.record("gateway.route", route.name.as_str());
        if !MCP_METHODS.contains(&session.req_header().method.as_str()) {
            let body = error_body(
                "method_not_allowed",
                "This endpoint accepts POST, GET and DELETE only.",
                &ctx.request_id,
            );
            let allow = MCP_METHODS.join(", ");
            return respond(session, 405, body, &ctx.request_id, &[("allow", &allow)]).await;
        }
        ctx.upstream_path = upstream_path;
        let Some(state) = self.routes.get(index) else {
            return Err(Error::explain(ErrorType::InternalError, "route state"));
        };

        let verified = match bearer(&session.req_header().headers) {
            Err(AuthError::MissingToken) => {
                ctx.refused = Some(AuthError::MissingToken.reason());
                Err(&state.challenge)
            }
            Err(error) => {
                ctx.refused = Some(error.reason());
                Err(&state.invalid_token_challenge)
            }
            Ok(token) => match self.verifier.verify(token).await {
                // Verified, but for another resource (another route, another company): the
                // same 401 as any invalid token, so nothing tells a caller which routes exist.
                Ok(identity) if !route.accepts_audience_of(&identity) => {
                    let error = AuthError::WrongAudience;
                    tracing::debug!(
                        target: "gateway::access",
                        route = %route.name,
                        reason = %error,
                        token_audiences = ?identity.audiences,
                        route_audiences = ?route.audiences,
                        "token refused"
                    );
                    ctx.refused = Some(error.reason());
                    Err(&state.invalid_token_challenge)
                }
                Ok(identity) => Ok(identity),
                Err(error) => {
                    tracing::debug!(target: "gateway::access", route = %route.name, reason = %error, "token refused");
                    ctx.refused = Some(error.reason());
                    Err(&state.invalid_token_challenge)
                }
            },
        };
        let identity = match verified {
            Ok(identity) => identity,
            Err(challenge) => {
                let refusal = Refusal::InvalidToken;
                let body = refusal_body(refusal, &ctx.request_id);
                return respond(
                    session,
                    refusal.status(),
                    body,
                    &ctx.request_id,
                    &[("www-authenticate", challenge.as_str())],
                )
                .await;
            }
        };
        ctx.tenant = Some(identity.tenant.clone());
        ctx.span.record("tenant.id", identity.tenant.as_str());
        if !route.admits(&identity.tenant) {
            let refusal = Refusal::TenantNotAllowed;
            ctx.refused = Some(refusal.code());
            let body = refusal_body(refusal, &ctx.request_id);
            return respond(session, refusal.status(), body, &ctx.request_id, &[]).await;
        }
        if let Err(refused) = self.limits.check(index, &identity.tenant).await {
            let refusal = refused.refusal;
            ctx.refused = Some(refusal.code());
            let body = refusal_body(refusal, &ctx.request_id);
            let retry_after = retry_after_secs(refused.wait).to_string();
            return respond(
                session,
                refusal.status(),
                body,
                &ctx.request_id,
                &[("retry-after", retry_after.as_str())],
            )
            .await;
        }

        let declared = session
            .req_header()
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|len| len > route.max_body_bytes) {
            // Read (and discard) what the client is sending for a moment first: a client still
            // writing its body when the connection closes sees a broken pipe, not the 413.
            let _ = tokio::time::timeout(BODY_DRAIN_TIMEOUT, session.drain_request_body()).await;
            let refusal = Refusal::BodyTooLarge;
            ctx.refused = Some(refusal.code());
            let body = refusal_body(refusal, &ctx.request_id);
            return respond(session, refusal.status(), body, &ctx.request_id, &[]).await;
        }
        if declared.is_none()
            && session
                .req_header()
                .headers
                .contains_key(http::header::TRANSFER_ENCODING)
        {
            ctx.held_body = Some(BytesMut::new());
        }
        if declared.is_some_and(|len| len > 0) || ctx.held_body.is_some() {
            // Each read of the body is bounded by what is left of the whole body's time, so a
            // silent client and a trickling one are cut at the same deadline.
            let timeout = self.config.server.body_read_timeout;
            ctx.body_by = Some(Instant::now() + timeout);
            session.set_read_timeout(Some(timeout));
        }
        Ok(false)
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let (Some(by), false) = (ctx.body_by, end_of_stream) {
            let left = by.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::explain(
                    ErrorType::HTTPStatus(Refusal::RequestTimeout.status()),
                    "request body still arriving at the body read timeout",
                ));
            }
            session.set_read_timeout(Some(left));
        }
        if let (Some(chunk), Some((route, _))) = (body.as_ref(), self.route(ctx)) {
            ctx.body_bytes += chunk.len() as u64;
            if ctx.body_bytes > route.max_body_bytes {
                return Err(Error::explain(
                    ErrorType::HTTPStatus(Refusal::BodyTooLarge.status()),
                    "request body over the route's limit",
                ));
            }
        }
        if let Some(held) = ctx.held_body.as_mut() {
            if let Some(chunk) = body.take() {
                held.extend_from_slice(&chunk);
            }
            // An empty chunk is not written upstream (it would end the body there); the whole
            // body goes once the client has sent all of it, within the limit.
            *body = Some(if end_of_stream {
                std::mem::take(held).freeze()
            } else {
                Bytes::new()
            });
        }
        Ok(())
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let Some((route, state)) = self.route(ctx) else {
            return Err(Error::explain(ErrorType::InternalError, "no route matched"));
        };
        let backend = state
            .lb
            .select_with(b"", 256, |backend, healthy| {
                healthy && !ctx.failed.contains(&backend.addr.to_string())
            })
            .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(503), "no healthy upstream"))?;
        ctx.upstream = Some(backend.addr.to_string());
        let mut peer = HttpPeer::new(backend, false, String::new());
        peer.options.connection_timeout = Some(route.connect_timeout);
        peer.options.total_connection_timeout = Some(route.connect_timeout);
        // The longest silence between two reads: a tool call that streams nothing for a while
        // is cut only after the route's read timeout (pingora's default is no limit at all).
        peer.options.read_timeout = Some(route.read_timeout);
        peer.options.write_timeout = Some(route.read_timeout);
        // Pooled connections are dropped before the backend's own idle timeout closes them, so a
        // request is never sent on a connection the backend is closing.
        peer.options.idle_timeout = Some(self.config.server.upstream_idle_timeout);
        Ok(Box::new(peer))
    }

    /// Passive health: an upstream that refuses the connection is skipped and the request
    /// tried on the next one (nothing was sent yet, so any method is safe to retry), until every
    /// upstream of the route has failed once. Active checks take it out of the pool for others.
    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let upstream = peer.address().to_string();
        tracing::warn!(target: "gateway::access", %upstream, error = %e, "upstream refused the connection");
        ctx.failed.push(upstream);
        let others_left = self
            .route(ctx)
            .is_some_and(|(route, _)| ctx.failed.len() < route.upstreams.len());
        if others_left {
            e.set_retry(true);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let uri = ctx
            .upstream_path
            .parse::<http::Uri>()
            .map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "upstream path", e))?;
        req.set_uri(uri);
        for name in SPOOFABLE_HEADERS {
            req.remove_header(name);
        }
        req.remove_header(REQUEST_ID_HEADER);
        if let Some(tenant) = &ctx.tenant {
            req.insert_header(TENANT_HEADER, tenant.as_str())?;
        }
        if let Some(addr) = session.client_addr().and_then(|a| a.as_inet()) {
            req.insert_header(FORWARDED_FOR_HEADER, addr.ip().to_string())?;
        }
        req.insert_header("x-forwarded-proto", "http")?;
        req.insert_header(REQUEST_ID_HEADER, ctx.request_id.as_str())?;
        // The backend's spans are children of this request's; its `tracestate` is the caller's.
        let ours = shared::telemetry::trace_headers(&ctx.span);
        if !ours.is_empty() {
            req.remove_header(TRACESTATE_HEADER);
            for (name, value) in &ours {
                req.insert_header(name.clone(), value.clone())?;
            }
            return Ok(());
        }
        // Without OpenTelemetry (a library user that did not call `shared::telemetry::init`):
        // the caller's trace context is passed on, or one is started.
        let forwarded = req
            .headers
            .get(TRACEPARENT_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_traceparent);
        if !forwarded {
            req.insert_header(TRACEPARENT_HEADER, self.ids.traceparent(&ctx.request_id))?;
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        resp.insert_header(REQUEST_ID_HEADER, ctx.request_id.as_str())?;
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let refusal = match e.etype() {
            ErrorType::HTTPStatus(413) => Some(Refusal::BodyTooLarge),
            // The client's body did not arrive in time (a silent client times out on a read).
            ErrorType::HTTPStatus(408) => Some(Refusal::RequestTimeout),
            ErrorType::ReadTimedout if e.esource() == &pingora::ErrorSource::Downstream => {
                Some(Refusal::RequestTimeout)
            }
            ErrorType::HTTPStatus(503) if ctx.failed.is_empty() => None,
            // Every upstream refused the connection, the last one just now.
            ErrorType::HTTPStatus(503) => Some(Refusal::UpstreamUnavailable),
            ErrorType::ReadTimedout | ErrorType::ConnectTimedout | ErrorType::WriteTimedout => {
                Some(Refusal::UpstreamTimeout)
            }
            _ if e.esource() == &pingora::ErrorSource::Upstream => {
                Some(Refusal::UpstreamUnavailable)
            }
            // The client went away: nobody to answer.
            ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed => {
                return FailToProxy {
                    error_code: 0,
                    can_reuse_downstream: false,
                };
            }
            _ => Some(Refusal::EdgeError),
        };
        ctx.refused = ctx.refused.or(refusal.map(Refusal::code));
        let (status, body) = match refusal {
            Some(refusal) => (refusal.status(), refusal_body(refusal, &ctx.request_id)),
            // No healthy upstream: the same words as an unreachable one, with 503.
            None => (
                503,
                refusal_body(Refusal::UpstreamUnavailable, &ctx.request_id),
            ),
        };
        // A response already under way cannot be replaced; the connection is closed instead.
        if session.response_written().is_none() {
            if refusal == Some(Refusal::BodyTooLarge) {
                // The client may still be sending the rest: read it for a moment, or the close
                // resets the connection before the client reads the 413.
                let _ =
                    tokio::time::timeout(BODY_DRAIN_TIMEOUT, session.drain_request_body()).await;
            }
            // The connection is not reused after this (below): say so (`Connection: close`), or
            // a client may send its next request on a socket that is about to close.
            session.set_keepalive(None);
            let _ = respond(session, status, body, &ctx.request_id, &[]).await;
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, error: Option<&Error>, ctx: &mut Ctx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        if ctx.probe {
            tracing::debug!(target: "gateway::access", status, "liveness probe");
            return;
        }
        let route = self.route(ctx).map_or("-", |(r, _)| r.name.as_str());
        let elapsed = ctx.start.elapsed();
        let method = session.req_header().method.as_str();
        ctx.span.record("http.response.status_code", status);
        if status >= 500 || status == 0 {
            ctx.span.record("otel.status_code", "ERROR");
        }
        ctx.span.in_scope(|| {
            tracing::info!(
                target: "gateway::access",
                route,
                tenant = ctx.tenant.as_deref().unwrap_or("-"),
                status,
                upstream = ctx.upstream.as_deref().unwrap_or("-"),
                duration_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
                request_id = %ctx.request_id,
                error = error.map(|e| e.etype().as_str()),
                "{} {}",
                method,
                session.req_header().uri.path(),
            );
        });
        crate::metrics::request_served(
            method,
            route,
            status,
            ctx.tenant.as_deref(),
            ctx.refused,
            elapsed,
        );
    }
}

/// The span of one request at the gateway: a server span continuing the caller's trace, named
/// `METHOD route` once the route is known. Never the query string or a header's value.
fn request_span(head: &RequestHeader, request_id: &str) -> Span {
    let span = tracing::info_span!(
        target: "gateway",
        "request",
        otel.name = head.method.as_str(),
        otel.kind = "server",
        otel.status_code = field::Empty,
        http.request.method = head.method.as_str(),
        url.path = head.uri.path(),
        gateway.route = field::Empty,
        tenant.id = field::Empty,
        http.response.status_code = field::Empty,
        request_id,
    );
    shared::telemetry::continue_trace(&span, &head.headers);
    span
}

/// Builds the verifier (OIDC discovery and the first key load), then serves the gateway on
/// `listener` until `shutdown` completes; in-flight requests then get [`DRAIN_TIMEOUT`] to finish.
/// Each gateway counts its tenants' calls on its own: [`run_with`] shares them.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_with(config, &QuotaStore::Local, listener, shutdown).await
}

/// [`run`], with the quotas kept in `quotas` (shared by every replica using the same Redis).
pub async fn run_with(
    config: Config,
    quotas: &QuotaStore,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let config = Arc::new(config);
    ensure_descriptors(config.server.max_connections);
    let verifier = Arc::new(verifier(&config).await?);
    let limits = RateLimits::start(&config, quotas).await?;
    let gateway = Gateway::new(config.clone(), verifier.clone(), limits)?;

    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    // Health checks and key refresh live as long as the accept loop (dropped at the end).
    let mut background = JoinSet::new();
    for state in &gateway.routes {
        let (lb, stopped) = (state.lb.clone(), stopped.clone());
        background.spawn(async move { lb.start(stopped).await });
    }
    let refresh = verifier.jwks().spawn_refresh();

    let ids = gateway.ids.clone();
    let proxy: Arc<HttpProxy<Gateway>> =
        Arc::new(http_proxy(&Arc::new(ServerConf::default()), gateway));
    let edge = Arc::new(Edge::new(proxy.clone(), ids, config.server.clone()));
    let addr = listener.local_addr().context("reading the bound address")?;
    tracing::info!("listening on http://{addr}");

    let mut connections = JoinSet::new();
    let mut accept_stop = stopped.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let tcp = match accepted {
                    Ok((tcp, _)) => tcp,
                    Err(error) => {
                        // Out of file descriptors and the like: pause rather than spin.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if let Some(connection) = edge.admit(tcp, &stopped) {
                    connections.spawn(connection);
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = stopping(&mut accept_stop) => break,
        }
    }
    drop(listener);
    // Wakes the keep-alive connections waiting for their next request, so they close now
    // instead of holding the drain open; requests under way run on.
    proxy.cleanup().await;
    tracing::info!(
        in_flight = connections.len(),
        "shutting down: no new connections"
    );
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            cut = connections.len(),
            "connections still open after the drain timeout were closed"
        );
        connections.shutdown().await;
    }
    refresh.abort();
    background.shutdown().await;
    Ok(())
}

/// Descriptors beyond the connections' own: listener, health checks, logs, the key refresh.
const FD_HEADROOM: u64 = 64;

/// Raises the open-file soft limit to the hard limit if `server.max_connections` would not fit
/// under it (each client connection may hold an upstream connection too), or warns: past the
/// limit `accept` fails and clients wait in the backlog instead of getting the cap's 503.
fn ensure_descriptors(max_connections: usize) {
    let wanted = 2 * max_connections as u64 + FD_HEADROOM;
    match rlimit::increase_nofile_limit(wanted) {
        Ok(limit) if limit >= wanted => {}
        Ok(limit) => tracing::warn!(
            open_files = limit,
            wanted,
            "the open-file limit is below twice server.max_connections plus headroom; lower \
             server.max_connections or raise the limit (ulimit -n)"
        ),
        Err(error) => tracing::warn!(%error, wanted, "cannot read or raise the open-file limit"),
    }
}

/// Completes once shutdown is signalled (or its sender is gone).
async fn stopping(stopped: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it here, not across an await.
    let _ = stopped.wait_for(|s| *s).await.map(|_| ());
}

/// The shared verifier for `auth`: discovery and a first key load, or an error naming the key.
async fn verifier(config: &Config) -> anyhow::Result<JwtVerifier> {
    let issuer = &config.auth.issuer;
    let http = reqwest::Client::new();
    let uri = jwks::discover(&http, issuer)
        .await
        .map_err(|e| anyhow::anyhow!("auth.issuer {issuer:?} is not reachable: {e}"))?;
    let keys = Arc::new(Jwks::new(http, uri));
    keys.refresh()
        .await
        .map_err(|e| anyhow::anyhow!("auth.issuer {issuer:?}: loading its signing keys: {e}"))?;
    Ok(JwtVerifier::new(config.verifier_settings(), keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn started_traces_are_valid_and_reuse_the_request_id() {
        let ids = RequestIds::default();
        let request_id = ids.next();
        let started = ids.traceparent(&request_id);
        assert!(is_traceparent(&started), "{started}");
        assert_eq!(&started[3..35], request_id.replace('-', ""));
        assert!(started.ends_with("-01"));
    }

    #[test]
    fn only_well_formed_traceparents_are_forwarded() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(is_traceparent(good));
        // A later version may carry more fields.
        assert!(is_traceparent(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"
        ));
        for bad in [
            "",
            "garbage",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        ] {
            assert!(!is_traceparent(bad), "{bad}");
        }
    }

    #[test]
    fn request_ids_look_like_v4_uuids_and_differ() {
        let ids = RequestIds::default();
        let (a, b) = (ids.next(), ids.next());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'), "{a}");
        assert!(
            matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'),
            "{a}"
        );
    }
}
