//! The bounds a service puts on its callers: the settings ([`ServeLimits`], flags with
//! environment fallbacks), their validated form ([`Bounds`]), and the request-level half of
//! enforcing them: body size, JSON nesting depth and the time to a response head. The
//! connection-level half (head size, header count, header-read and idle timeouts, the connection
//! cap) is in [`super::conn`].
//!
//! The body is never buffered here: it is wrapped, passed on, and checked as the handler reads it
//! (the MCP transport collects it itself, after authentication, so an anonymous caller cannot make
//! the service hold a megabyte per connection). When the wrapper refuses the body, the handler
//! sees a body error (the MCP transport answers that with a plain-text 500) and the response is
//! replaced here by the right one: 413 JSON, or 400 with a JSON-RPC error.

use std::{
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll, ready},
    time::Duration,
};

use axum::{
    Json,
    body::Body,
    extract::Request,
    http::{StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::{LengthLimitError, Limited};

use crate::config::ConfigError;

/// The MCP transport (rmcp) refuses bodies above 4 MiB itself, with a plain-text answer.
const MAX_BODY_LIMIT: usize = 4 * 1024 * 1024;
/// hyper reads a request head into a buffer of about 400 KB at most.
const MAX_HEADER_LIMIT: usize = 256 * 1024;
/// Timeouts below this would cut ordinary requests on a loaded machine (tests use 0.2-0.5 s).
const MIN_TIMEOUT: Duration = Duration::from_millis(50);
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// How much and how long a caller may take: every bound of the serving layer, as settings.
/// Flattened into each service's configuration; [`ServeLimits::validate`] turns them into
/// [`Bounds`].
#[derive(Debug, Clone, clap::Args)]
pub struct ServeLimits {
    /// Largest request body in bytes; a larger one is answered 413, whether its Content-Length
    /// says so up front or a chunked body grows past it.
    #[arg(long, env = "MAX_REQUEST_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_request_body_bytes: usize,

    /// Largest request head (request line and headers) in bytes; a larger one is answered 431.
    /// The default leaves room for a bearer token of the largest size the token check reads
    /// (16 KiB), so an oversized token is refused as a token, with 401.
    #[arg(long, env = "MAX_HEADER_BYTES", default_value_t = 32 * 1024)]
    pub max_header_bytes: usize,

    /// Most header fields in one request; more are answered 431.
    #[arg(long, env = "MAX_HEADERS", default_value_t = 64)]
    pub max_headers: usize,

    /// Deepest nesting of arrays and objects in a JSON request body; a deeper one is answered 400
    /// with a JSON-RPC error.
    #[arg(long, env = "MAX_JSON_DEPTH", default_value_t = 64)]
    pub max_json_depth: usize,

    /// Seconds (decimals allowed) a client has to send a complete request head, counted from
    /// connecting or, on a kept-alive connection, from the first byte of its next request; then
    /// it is answered 408 and the connection is closed.
    #[arg(long = "header-read-timeout-secs", env = "HEADER_READ_TIMEOUT_SECS", default_value = "10", value_name = "SECS", value_parser = seconds)]
    pub header_read_timeout: Duration,

    /// Seconds (decimals allowed) a kept-alive connection may wait for its next request before
    /// it is closed. The default is longer than the gateway keeps an idle upstream connection
    /// (60 s), so the gateway never reuses a connection the service is closing.
    #[arg(long = "idle-timeout-secs", env = "IDLE_TIMEOUT_SECS", default_value = "75", value_name = "SECS", value_parser = seconds)]
    pub idle_timeout: Duration,

    /// Connections served at once; more wait in the listen backlog until one closes.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    /// Seconds (decimals allowed) a request may take to produce its response head; then it is
    /// answered 503. An event stream is not cut once its head is sent. Default: 60 for
    /// tools-service, and AGENT_TIME_BUDGET_SECS + 60 (180) for agent-service, whose experts
    /// take that long.
    #[arg(long = "request-timeout-secs", env = "REQUEST_TIMEOUT_SECS", value_name = "SECS", value_parser = seconds)]
    pub request_timeout: Option<Duration>,
}

/// A number of seconds, decimals allowed (`10`, `0.3`), as a setting's value.
fn seconds(value: &str) -> Result<Duration, String> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| format!("{value:?} is not a number of seconds, e.g. 10 or 0.5"))
}

/// Validated [`ServeLimits`]: what [`super::serve_with`] enforces.
#[derive(Debug, Clone)]
pub struct Bounds {
    pub max_request_body_bytes: usize,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_json_depth: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub request_timeout: Duration,
}

impl Default for Bounds {
    /// The documented defaults, with a 60 s request timeout: what a server without settings of
    /// its own (the devstack identity provider) is served with.
    fn default() -> Self {
        Self {
            max_request_body_bytes: 1024 * 1024,
            max_header_bytes: 32 * 1024,
            max_headers: 64,
            max_json_depth: 64,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            max_connections: 1024,
            request_timeout: Duration::from_secs(60),
        }
    }
}

fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    variable: &'static str,
    value: T,
    low: T,
    high: T,
    unit: &str,
) -> Result<T, ConfigError> {
    if value < low || value > high {
        return Err(ConfigError::new(
            variable,
            format!("{value} is out of range: give {low} to {high}{unit}"),
        ));
    }
    Ok(value)
}

impl ServeLimits {
    /// Checks every bound; `default_request_timeout` is the service's own default for
    /// REQUEST_TIMEOUT_SECS.
    pub fn validate(&self, default_request_timeout: Duration) -> Result<Bounds, ConfigError> {
        let time = |variable, value: Duration| {
            if value < MIN_TIMEOUT || value > MAX_TIMEOUT {
                return Err(ConfigError::new(
                    variable,
                    format!(
                        "{} s is out of range: give {} to {} seconds",
                        value.as_secs_f64(),
                        MIN_TIMEOUT.as_secs_f64(),
                        MAX_TIMEOUT.as_secs()
                    ),
                ));
            }
            Ok(value)
        };
        Ok(Bounds {
            max_request_body_bytes: in_range(
                "MAX_REQUEST_BODY_BYTES",
                self.max_request_body_bytes,
                1024,
                MAX_BODY_LIMIT,
                " bytes (the MCP transport refuses more than 4 MiB itself)",
            )?,
            max_header_bytes: in_range(
                "MAX_HEADER_BYTES",
                self.max_header_bytes,
                1024,
                MAX_HEADER_LIMIT,
                " bytes",
            )?,
            max_headers: in_range("MAX_HEADERS", self.max_headers, 8, 1000, "")?,
            max_json_depth: in_range("MAX_JSON_DEPTH", self.max_json_depth, 2, 128, "")?,
            header_read_timeout: time("HEADER_READ_TIMEOUT_SECS", self.header_read_timeout)?,
            idle_timeout: time("IDLE_TIMEOUT_SECS", self.idle_timeout)?,
            max_connections: in_range("MAX_CONNECTIONS", self.max_connections, 1, 1_000_000, "")?,
            request_timeout: time(
                "REQUEST_TIMEOUT_SECS",
                self.request_timeout.unwrap_or(default_request_timeout),
            )?,
        })
    }
}

/// The bounds [`super::serve_with`] put on the request (as an extension, so the service's own
/// middleware, which runs these layers inside its access log, needs no settings of its own); a
/// router driven without it (a unit test through `oneshot`) is not bounded here.
fn bounds_of(request: &Request) -> Option<Arc<Bounds>> {
    request.extensions().get::<Arc<Bounds>>().cloned()
}

/// Answers 503 when the inner service has not produced a response head within
/// `bounds.request_timeout`. Hand-written over a `tokio::time::timeout` because tower-http's
/// `TimeoutLayer` answers with an empty body, and every refusal here is the one JSON shape.
/// Only the head is timed: a streamed body (an SSE response) runs on once its head is out.
pub(super) async fn request_timeout(request: Request, next: Next) -> Response {
    let Some(bounds) = bounds_of(&request) else {
        return next.run(request).await;
    };
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    match tokio::time::timeout(bounds.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(
                %method,
                path,
                limit_secs = bounds.request_timeout.as_secs(),
                "request timed out (REQUEST_TIMEOUT_SECS)"
            );
            super::error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!(
                    "the request took longer than {} s to answer; try again later",
                    bounds.request_timeout.as_secs()
                ),
            )
            .into_response()
        }
    }
}

/// Refuses a body over `bounds.max_request_body_bytes` (413) or a JSON body nested deeper than
/// `bounds.max_json_depth` (400, JSON-RPC error), as the handler reads it.
pub(super) async fn guard_body(request: Request, next: Next) -> Response {
    let Some(bounds) = bounds_of(&request) else {
        return next.run(request).await;
    };
    let max = bounds.max_request_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > max as u64) {
        return refuse(Refusal::TooLarge, &bounds, request.uri().path());
    }
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_json_media_type);
    let path = request.uri().path().to_owned();
    let refusal = Arc::new(OnceLock::new());
    let request = request.map(|body| {
        Body::new(GuardedBody {
            inner: Limited::new(body, max),
            depth: is_json.then(|| DepthScanner::new(bounds.max_json_depth)),
            refusal: refusal.clone(),
        })
    });
    let response = next.run(request).await;
    match refusal.get() {
        // The handler saw a body error and answered as it does (rmcp: a plain-text 500).
        Some(&reason) => refuse(reason, &bounds, &path),
        None => response,
    }
}

fn is_json_media_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence
            .rsplit_once('+')
            .is_some_and(|(_, suffix)| suffix.eq_ignore_ascii_case("json"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    TooLarge,
    TooDeep,
}

fn refuse(reason: Refusal, bounds: &Bounds, path: &str) -> Response {
    match reason {
        Refusal::TooLarge => {
            tracing::warn!(
                path,
                limit = bounds.max_request_body_bytes,
                "request refused: body too large (MAX_REQUEST_BODY_BYTES)"
            );
            super::error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "the request body is larger than the limit of {} bytes",
                    bounds.max_request_body_bytes
                ),
            )
            .into_response()
        }
        Refusal::TooDeep => {
            tracing::warn!(
                path,
                limit = bounds.max_json_depth,
                "request refused: JSON nested too deeply (MAX_JSON_DEPTH)"
            );
            // The request's id is unknown: the body was not read to the end, let alone parsed.
            let body = serde_json::json!({
                "jsonrpc": "2.0",
                "id": null,
                "error": {
                    "code": -32600,
                    "message": format!(
                        "invalid request: the JSON body nests arrays and objects deeper than \
                         the limit of {} levels",
                        bounds.max_json_depth
                    ),
                },
            });
            (StatusCode::BAD_REQUEST, Json(body)).into_response()
        }
    }
}

/// A request body that stops with an error, and records why, once it has grown past the size
/// limit (`Limited`) or, for JSON, nested past the depth limit.
struct GuardedBody {
    inner: Limited<Body>,
    depth: Option<DepthScanner>,
    refusal: Arc<OnceLock<Refusal>>,
}

#[derive(Debug, thiserror::Error)]
#[error("the JSON body is nested too deeply")]
struct TooDeep;

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let (Some(scanner), Some(data)) = (this.depth.as_mut(), frame.data_ref())
                    && !scanner.feed(data)
                {
                    let _ = this.refusal.set(Refusal::TooDeep);
                    return Poll::Ready(Some(Err(TooDeep.into())));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(error)) => {
                if error.downcast_ref::<LengthLimitError>().is_some() {
                    let _ = this.refusal.set(Refusal::TooLarge);
                }
                Poll::Ready(Some(Err(error)))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Tracks how deeply the arrays and objects of a JSON text nest, chunk by chunk.
///
/// Written here rather than left to the parser: serde_json stops at a fixed depth of 128 that
/// cannot be configured, and says so with a parse error the MCP transport turns into a 415
/// "fail to deserialize"; this answers a clear JSON-RPC error at a depth the operator chooses,
/// before the body is even complete. It only counts brackets outside strings; whether the text
/// is valid JSON is still the parser's to say.
#[derive(Debug)]
pub(crate) struct DepthScanner {
    max: usize,
    depth: usize,
    in_string: bool,
    escaped: bool,
}

impl DepthScanner {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            depth: 0,
            in_string: false,
            escaped: false,
        }
    }

    /// Feeds the next bytes; false once the nesting went deeper than the limit.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> bool {
        for &byte in bytes {
            if self.in_string {
                // Multi-byte UTF-8 sequences never contain ASCII bytes, so bytewise is exact.
                match (self.escaped, byte) {
                    (true, _) => self.escaped = false,
                    (false, b'\\') => self.escaped = true,
                    (false, b'"') => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match byte {
                b'"' => self.in_string = true,
                b'[' | b'{' => {
                    self.depth += 1;
                    if self.depth > self.max {
                        return false;
                    }
                }
                b']' | b'}' => self.depth = self.depth.saturating_sub(1),
                _ => {}
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn the_scanner_counts_nesting_outside_strings_only() {
        assert!(DepthScanner::new(3).feed(nested(3).as_bytes()));
        assert!(!DepthScanner::new(3).feed(nested(4).as_bytes()));
        // Brackets inside strings, escaped quotes included, do not count.
        let text = r#"{"a":"[[[[\"[[[[","b":[{"c":"}}}}"}]}"#;
        assert!(DepthScanner::new(3).feed(text.as_bytes()));
        assert!(!DepthScanner::new(2).feed(text.as_bytes()));
        // Siblings do not add up.
        assert!(DepthScanner::new(2).feed(br#"[[1],[2],{"a":3},[]]"#));
    }

    #[test]
    fn the_scanner_keeps_its_state_across_chunks() {
        let text = format!(r#"{{"s":"a\"[[[[","x":{}}}"#, nested(3));
        for split in 0..text.len() {
            let (a, b) = text.as_bytes().split_at(split);
            let mut scanner = DepthScanner::new(4);
            assert!(scanner.feed(a) && scanner.feed(b), "split at {split}");
            let mut strict = DepthScanner::new(3);
            assert!(!(strict.feed(a) && strict.feed(b)), "split at {split}");
        }
    }

    #[test]
    fn json_media_types_are_recognised() {
        assert!(is_json_media_type("application/json"));
        assert!(is_json_media_type("Application/JSON; charset=utf-8"));
        assert!(is_json_media_type("application/merge-patch+json"));
        assert!(!is_json_media_type("application/x-www-form-urlencoded"));
        assert!(!is_json_media_type("text/plain"));
    }

    #[derive(clap::Parser)]
    struct ServeLimitsCli {
        #[command(flatten)]
        limits: ServeLimits,
    }

    fn parse(args: &[&str]) -> ServeLimits {
        <ServeLimitsCli as clap::Parser>::try_parse_from(
            std::iter::once("t").chain(args.iter().copied()),
        )
        .expect("flags parse")
        .limits
    }

    #[test]
    fn defaults_validate_and_bad_values_name_their_setting() {
        let bounds = parse(&[])
            .validate(Duration::from_secs(60))
            .expect("defaults are valid");
        let default = Bounds::default();
        assert_eq!(bounds.max_request_body_bytes, 1024 * 1024);
        assert_eq!(
            bounds.max_request_body_bytes,
            default.max_request_body_bytes
        );
        assert_eq!(bounds.max_header_bytes, default.max_header_bytes);
        assert_eq!(bounds.max_headers, default.max_headers);
        assert_eq!(bounds.max_json_depth, default.max_json_depth);
        assert_eq!(bounds.header_read_timeout, default.header_read_timeout);
        assert_eq!(bounds.idle_timeout, default.idle_timeout);
        assert_eq!(bounds.max_connections, default.max_connections);
        assert_eq!(bounds.request_timeout, default.request_timeout);
        let given = parse(&["--request-timeout-secs", "5"])
            .validate(Duration::from_secs(60))
            .expect("valid");
        assert_eq!(given.request_timeout, Duration::from_secs(5));
        let short = parse(&["--header-read-timeout-secs", "0.3"])
            .validate(Duration::from_secs(60))
            .expect("valid");
        assert_eq!(short.header_read_timeout, Duration::from_millis(300));
        assert!(
            <ServeLimitsCli as clap::Parser>::try_parse_from(["t", "--idle-timeout-secs", "soon"])
                .is_err()
        );
        let refused = |args: &[&str]| {
            parse(args)
                .validate(Duration::from_secs(60))
                .expect_err("refused")
                .variable
        };
        assert_eq!(
            refused(&["--max-request-body-bytes", "8388608"]),
            "MAX_REQUEST_BODY_BYTES"
        );
        assert_eq!(refused(&["--max-header-bytes", "100"]), "MAX_HEADER_BYTES");
        assert_eq!(refused(&["--max-headers", "0"]), "MAX_HEADERS");
        assert_eq!(refused(&["--max-json-depth", "1000"]), "MAX_JSON_DEPTH");
        assert_eq!(
            refused(&["--header-read-timeout-secs", "0"]),
            "HEADER_READ_TIMEOUT_SECS"
        );
        assert_eq!(refused(&["--idle-timeout-secs", "0"]), "IDLE_TIMEOUT_SECS");
        assert_eq!(refused(&["--max-connections", "0"]), "MAX_CONNECTIONS");
        assert_eq!(
            refused(&["--request-timeout-secs", "0"]),
            "REQUEST_TIMEOUT_SECS"
        );
    }
}
