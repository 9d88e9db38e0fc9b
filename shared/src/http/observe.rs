//! The observing middleware of every service: one span per request (continuing the caller's
//! trace), one access-log line with status and duration, and the request-duration metric.
//!
//! Health and readiness probes (`/healthz`, `/readyz`) get a DEBUG span and log line and no
//! metric: orchestrators call them every few seconds, and at INFO they drowned the log. The
//! access log records the path but never the query string or headers, so tokens and customer
//! data in them stay out of logs and traces.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use axum::{
    body::{Body, Bytes},
    extract::{MatchedPath, Request},
    middleware::Next,
    response::Response,
};
use opentelemetry::KeyValue;
use tracing::{Instrument, field};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::REQUEST_ID;
use crate::telemetry::{self, TraceParent};

/// The tenant a request was served for, left on the response by authentication so that the
/// request's metric carries it.
#[derive(Debug, Clone)]
pub struct ServedTenant(pub String);

/// Whether `path` is a probe's.
fn is_probe(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz")
}

pub(super) async fn observe(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned());
    let path = request.uri().path().to_owned();
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let probe = is_probe(&path);
    let span = if probe {
        tracing::debug_span!("probe", %method, path, request_id)
    } else {
        let name = match &route {
            Some(route) => format!("{method} {route}"),
            None => method.to_string(),
        };
        tracing::info_span!(
            "http",
            otel.name = name,
            otel.kind = "server",
            otel.status_code = field::Empty,
            http.request.method = %method,
            url.path = path,
            http.route = route.as_deref(),
            http.response.status_code = field::Empty,
            tenant.id = field::Empty,
            request_id,
        )
    };
    telemetry::continue_trace(&span, request.headers());
    request.extensions_mut().insert(TraceParent(span.context()));
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    let duration_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    let tenant = response.extensions_mut().remove::<ServedTenant>();
    span.in_scope(|| {
        if probe {
            tracing::debug!(status, duration_us, "request");
        } else {
            tracing::info!(status, duration_us, "request");
        }
    });
    if !probe {
        span.record("http.response.status_code", status);
        if status >= 500 {
            span.record("otel.status_code", "ERROR");
        }
        let mut labels = vec![
            KeyValue::new("http.request.method", method.to_string()),
            KeyValue::new("http.response.status_code", i64::from(status)),
        ];
        if let Some(route) = route {
            labels.push(KeyValue::new("http.route", route));
        }
        if let Some(ServedTenant(tenant)) = tenant {
            labels.push(KeyValue::new("tenant.id", tenant));
        }
        telemetry::metrics::serving()
            .request_duration
            .record(elapsed.as_secs_f64(), &labels);
    }
    // The span ends when the body has been sent (or dropped): a streamed answer is part of it.
    hold(response, span)
}

/// Keeps `guard` (a span, a metric to record) alive until `response`'s body has been sent or
/// dropped. The body's size is kept, so a `Content-Length` answer stays one.
pub(crate) fn hold<G: Send + Unpin + 'static>(response: Response, guard: G) -> Response {
    response.map(|body| {
        Body::new(Held {
            body,
            _guard: guard,
        })
    })
}

struct Held<G> {
    body: Body,
    _guard: G,
}

impl<G: Send + Unpin + 'static> http_body::Body for Held<G> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        // `Body` is `Unpin` (boxed), and so is the guard.
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
