//! W3C trace context (`traceparent`, `tracestate`) in and out of every service.
//!
//! In: the HTTP layer continues the caller's trace on its request span ([`continue_trace`]) and
//! leaves that span's context on the request ([`TraceParent`]), because MCP handlers run in tasks
//! of their own, outside the request's span: they start their spans from it ([`parent_of`]).
//! Out: a client puts its span's context on the request it sends ([`trace_headers`]).
//!
//! A context that is not well formed is ignored (the request starts a new trace); nothing but
//! the two W3C headers is read or written.

use axum::http::{Extensions, HeaderMap};
use opentelemetry::{Context, propagation::TextMapPropagator, trace::TraceContextExt};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The context of the span a request is served in, on the request's extensions.
#[derive(Debug, Clone)]
pub struct TraceParent(pub Context);

impl TraceParent {
    /// The context of `span`, to make children of it elsewhere.
    pub fn of(span: &Span) -> Self {
        TraceParent(span.context())
    }
}

/// Makes `span` (just created, not yet entered) a child of the trace context in `headers`, when
/// they carry a valid one.
pub fn continue_trace(span: &Span, headers: &HeaderMap) {
    let cx = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if cx.span().span_context().is_valid() {
        // Fails only without the OpenTelemetry layer (a test without `init`): nothing to join.
        let _ = span.set_parent(cx);
    }
}

/// Makes `span` a child of the request span recorded in `extensions`: a request's, such as
/// those of the `http::request::Parts` rmcp hands a handler.
pub fn parent_of(span: &Span, extensions: &Extensions) {
    if let Some(TraceParent(cx)) = extensions.get::<TraceParent>() {
        let _ = span.set_parent(cx.clone());
    }
}

/// The headers that carry `span`'s trace context to the next service (none when there is no
/// trace, as in a test without `init`).
pub fn trace_headers(span: &Span) -> HeaderMap {
    context_headers(&span.context())
}

/// The headers that carry the trace context `cx` (none when it holds no valid span).
pub fn context_headers(cx: &Context) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(cx, &mut HeaderInjector(&mut headers));
    }
    headers
}
