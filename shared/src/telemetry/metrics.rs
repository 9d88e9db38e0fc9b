//! The metrics every service records, named and labelled by the OpenTelemetry semantic
//! conventions where they define one, and the Prometheus scrape endpoint.
//!
//! Instruments come from the global meter provider, which [`super::init`] sets when a reader is
//! configured (OTLP export or `METRICS_BIND_ADDR`); before that, and in tests that do not call
//! it, they are the no-op ones and recording costs nothing. Each instrument is made on first
//! use, after `init`. Labels never carry a token, an argument value or a customer's data:
//! tenant ids, route names, method and tool names, outcomes.

use std::{net::SocketAddr, sync::LazyLock};

use axum::{Router, http::header, response::IntoResponse, routing::get};
use opentelemetry::{
    KeyValue,
    metrics::{Counter, Histogram, Meter},
};

use crate::config::ConfigError;

/// The bucket bounds, in seconds, the semantic conventions advise for request durations.
const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The meter every instrument of the platform is made from.
pub fn meter() -> Meter {
    opentelemetry::global::meter("mcp-platform")
}

/// A histogram of durations in seconds, with the request-duration buckets.
pub fn seconds(name: &'static str, description: &'static str) -> Histogram<f64> {
    meter()
        .f64_histogram(name)
        .with_unit("s")
        .with_description(description)
        .with_boundaries(DURATION_BUCKETS.to_vec())
        .build()
}

/// A counter of events.
pub fn counter(name: &'static str, description: &'static str) -> Counter<u64> {
    meter()
        .u64_counter(name)
        .with_description(description)
        .build()
}

/// The instruments of the serving layer and of token verification, shared by every service.
pub struct Serving {
    /// `http.server.request.duration`: method, route, status, tenant.
    pub request_duration: Histogram<f64>,
    /// `mcp.server.operation.duration`: MCP method, tool, tenant, outcome.
    pub mcp_operation_duration: Histogram<f64>,
    /// `auth.refusals`: why a request was refused (`missing_token`, `expired`, `forbidden`...).
    pub refusals: Counter<u64>,
    /// `auth.jwks.refreshes`: each fetch of an issuer's signing keys, by outcome.
    pub jwks_refreshes: Counter<u64>,
}

/// The serving layer's instruments, made on first use.
pub fn serving() -> &'static Serving {
    static SERVING: LazyLock<Serving> = LazyLock::new(|| Serving {
        request_duration: seconds(
            "http.server.request.duration",
            "Duration of HTTP server requests, to the response head",
        ),
        mcp_operation_duration: seconds(
            "mcp.server.operation.duration",
            "Duration of MCP requests as the server handles them",
        ),
        refusals: counter(
            "auth.refusals",
            "Requests refused before reaching a handler, by reason",
        ),
        jwks_refreshes: counter(
            "auth.jwks.refreshes",
            "Fetches of an issuer's signing keys (JWKS), by outcome",
        ),
    });
    &SERVING
}

/// `error.type` for an outcome: absent on success, as the conventions ask.
pub fn outcome(error: Option<&'static str>) -> Option<KeyValue> {
    error.map(|kind| KeyValue::new("error.type", kind))
}

/// Binds `addr` now (a taken port fails the start, not the first scrape) and serves
/// `GET /metrics` there in the Prometheus text format, within the serving layer's bounds.
pub(super) fn serve_prometheus(
    addr: SocketAddr,
    registry: prometheus::Registry,
) -> Result<SocketAddr, ConfigError> {
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
        .map_err(|e| {
            ConfigError::new("METRICS_BIND_ADDR", format!("cannot listen on {addr}: {e}"))
        })?;
    let bound = listener
        .local_addr()
        .map_err(|e| ConfigError::new("METRICS_BIND_ADDR", e.to_string()))?;
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|e| ConfigError::new("METRICS_BIND_ADDR", e.to_string()))?;
    let router = Router::new().route(
        "/metrics",
        get(move || {
            let registry = registry.clone();
            async move { scrape(&registry) }
        }),
    );
    tokio::spawn(async move {
        let serving = crate::http::serve_unannounced(
            listener,
            router,
            crate::http::Bounds::default(),
            std::future::pending(),
        );
        if let Err(error) = serving.await {
            tracing::error!(%error, "the metrics endpoint stopped");
        }
    });
    Ok(bound)
}

fn scrape(registry: &prometheus::Registry) -> impl IntoResponse + use<> {
    use prometheus::Encoder;
    let encoder = prometheus::TextEncoder::new();
    let mut body = Vec::new();
    match encoder.encode(&registry.gather(), &mut body) {
        Ok(()) => (
            [(header::CONTENT_TYPE, encoder.format_type().to_owned())],
            body,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "encoding the metrics failed");
            crate::http::error_response(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "the metrics could not be encoded",
            )
            .into_response()
        }
    }
}
