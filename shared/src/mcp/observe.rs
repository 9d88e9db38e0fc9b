//! The span and the duration metric of each MCP request, named by the OpenTelemetry semantic
//! conventions for MCP: `{mcp.method.name} {target}` (`tools/call get_customer_detail`), a
//! server span inside the HTTP request's, with the method, the tool, the JSON-RPC id, the
//! session and protocol version, and the tenant. Never the arguments.
//!
//! The span lasts until the answer has been sent (an SSE stream with progress included), and
//! its context goes on the request, where handlers (run by rmcp in tasks of their own) find
//! their parent ([`crate::telemetry::parent_of`]).

use std::time::Instant;

use axum::{
    body::{Body, Bytes},
    extract::Request,
    http::request::Parts,
    middleware::Next,
    response::Response,
};
use opentelemetry::KeyValue;
use tracing::{Instrument, Span, field};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::envelope::Operation;
use crate::{auth::Identity, telemetry::TraceParent};

/// Serves the request `parts` + `body` (an MCP request described by `operation`) in its span.
pub(super) async fn operation(
    operation: Operation,
    mut parts: Parts,
    body: Bytes,
    next: Next,
) -> Response {
    let started = Instant::now();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let tenant = parts
        .extensions
        .get::<Identity>()
        .map(|identity| identity.tenant.clone());
    let name = match &operation.tool {
        Some(tool) => format!("{} {tool}", operation.method),
        None => operation.method.clone(),
    };
    let span = tracing::info_span!(
        "mcp",
        otel.name = name,
        otel.kind = "server",
        otel.status_code = field::Empty,
        mcp.method.name = operation.method,
        gen_ai.tool.name = operation.tool.as_deref(),
        gen_ai.operation.name = operation.tool.as_ref().map(|_| "execute_tool"),
        jsonrpc.request.id = operation.id,
        mcp.session.id = header(super::SESSION_HEADER),
        mcp.protocol.version = header("mcp-protocol-version"),
        tenant.id = tenant.as_deref(),
    );
    parts.extensions.insert(TraceParent(span.context()));
    let response = next
        .run(Request::from_parts(parts, Body::from(body)))
        .instrument(span.clone())
        .await;
    let status = response.status();
    let mut labels = vec![KeyValue::new("mcp.method.name", operation.method)];
    if let Some(tool) = operation.tool {
        labels.push(KeyValue::new("gen_ai.tool.name", tool));
    }
    if let Some(tenant) = tenant {
        labels.push(KeyValue::new("tenant.id", tenant));
    }
    if status.is_client_error() || status.is_server_error() {
        span.record("otel.status_code", "ERROR");
        labels.push(KeyValue::new("error.type", status.as_u16().to_string()));
    }
    let end = End {
        started,
        labels,
        _span: span,
    };
    crate::http::hold(response, end)
}

/// Records the operation's duration, and ends its span, when the answer has been sent (or the
/// client went away).
struct End {
    started: Instant,
    labels: Vec<KeyValue>,
    _span: Span,
}

impl Drop for End {
    fn drop(&mut self) {
        crate::telemetry::metrics::serving()
            .mcp_operation_duration
            .record(self.started.elapsed().as_secs_f64(), &self.labels);
    }
}
