//! The exact JSON text of a `tools/call`'s arguments, kept for the tools to decode from.
//!
//! rmcp parses every request body into a `serde_json::Value`, whose numbers are doubles: by the
//! time a tool runs, `5000.0000000000001` has become `5000.0` and money could not be read
//! exactly. (serde_json's `arbitrary_precision` would keep the digits, but it changes how
//! numbers deserialize everywhere, which breaks the untagged enums and flattened structs of
//! rmcp's JSON-RPC types.) So [`capture`], a middleware in front of `/mcp`, reads the body
//! first: for a `tools/call` it records the text of `params.arguments`, byte for byte, with the
//! JSON-RPC id it belongs to, as a [`RawArguments`] request extension; rmcp hands the HTTP
//! request's parts to the handler, which takes the text back with [`RawArguments::for_request`]
//! and decodes the tool's parameters from it (`Money` reads its number's digits).
//!
//! When there is no text (a body this middleware could not read as one JSON-RPC request, e.g.
//! one with a duplicated key, or a handler driven without HTTP), the tools decode from rmcp's
//! `Value`; see `crate::money` for what that fallback can and cannot tell apart.

use std::sync::Arc;

use axum::{
    body::{Body, Bytes},
    extract::Request,
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
};
use rmcp::model::RequestId;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The most this middleware buffers: rmcp's own limit on a request body (4 MiB), so nothing it
/// would have accepted is refused here. The shared serving layer's `MAX_REQUEST_BODY_BYTES`
/// (1 MiB by default, 4 MiB at most) bounds the body before this limit is reached.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The arguments' text of the `tools/call` an HTTP request carries.
#[derive(Debug, Clone)]
pub struct RawArguments {
    /// The JSON-RPC id of the request, so the text is only ever used for its own call.
    id: serde_json::Value,
    /// `params.arguments` as sent; `None` when absent or `null` (no arguments).
    text: Option<Arc<str>>,
}

impl RawArguments {
    /// The arguments' text of the JSON-RPC request `id`, if `parts` carry it: `Some(None)` when
    /// the call had no arguments, `None` when there is no text to decode from.
    pub fn for_request(
        parts: Option<&axum::http::request::Parts>,
        id: &RequestId,
    ) -> Option<Option<Arc<str>>> {
        let raw = parts?.extensions.get::<RawArguments>()?;
        let id = serde_json::to_value(id).ok()?;
        (raw.id == id).then(|| raw.text.clone())
    }
}

/// The part of a JSON-RPC request this middleware reads; the rest is rmcp's business.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    method: Option<std::borrow::Cow<'a, str>>,
    id: Option<serde_json::Value>,
    #[serde(borrow)]
    params: Option<Params<'a>>,
}

#[derive(Deserialize)]
struct Params<'a> {
    #[serde(borrow)]
    arguments: Option<&'a RawValue>,
}

/// Buffers a JSON `POST` body (at most [`MAX_BODY_BYTES`]), records the arguments' text of a
/// `tools/call`, and passes the same bytes on. It runs behind token verification (see
/// `shared::mcp::routes_with`), so only an authenticated caller's body is buffered here, as
/// rmcp would have buffered it anyway.
pub async fn capture(request: Request, next: Next) -> Response {
    if !shared::mcp::is_json_post(&request) {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let bytes: Bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(error) => {
            // The shared serving layer's bound (413) or depth limit (400) when it fired: that
            // layer replaces this answer with its own. Otherwise the client stopped sending.
            tracing::debug!(%error, "reading an MCP request body failed");
            return shared::http::error_response(
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
            )
            .into_response();
        }
    };
    // Not one JSON-RPC request (invalid JSON, a batch, a duplicated key...): rmcp answers it.
    if let Ok(envelope) = serde_json::from_slice::<Envelope>(&bytes)
        && envelope.method.as_deref() == Some("tools/call")
        && let Some(id) = envelope.id
    {
        let text = envelope
            .params
            .and_then(|p| p.arguments)
            .map(RawValue::get)
            .filter(|text| *text != "null")
            .map(Arc::<str>::from);
        parts.extensions.insert(RawArguments { id, text });
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
