//! The HTTP client of the MCP connection, sending each request's trace context.
//!
//! rmcp's transport sends messages from a task of its own, outside the span of the call that
//! made them, so the call's context travels with the message instead: [`super::connection`]
//! puts a [`TraceParent`] on the request's extensions, and this client turns it into
//! `traceparent`/`tracestate` headers. Messages without one (the handshake, `tools/list`) carry
//! the context the connection was opened in: the expert's turn.

use std::{collections::HashMap, sync::Arc};

use futures::stream::BoxStream;
use reqwest::header::{HeaderName, HeaderValue};
use rmcp::{
    model::{ClientJsonRpcMessage, GetExtensions, JsonRpcMessage},
    transport::streamable_http_client::{
        StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
        StreamableHttpResponseLimits,
    },
};
use shared::telemetry::TraceParent;
use sse_stream::{Error as SseError, Sse};

/// `reqwest::Client` with the trace context of each message added to its headers.
#[derive(Clone)]
pub(super) struct TracedHttp {
    http: reqwest::Client,
    /// The headers of the connection's own context, for messages that carry none.
    fallback: Arc<HashMap<HeaderName, HeaderValue>>,
}

impl TracedHttp {
    /// Over `http`, in the context of the current span.
    pub(super) fn new(http: reqwest::Client) -> Self {
        let fallback = named(shared::telemetry::trace_headers(&tracing::Span::current())).collect();
        TracedHttp {
            http,
            fallback: Arc::new(fallback),
        }
    }

    fn with_trace(
        &self,
        message: &ClientJsonRpcMessage,
        mut headers: HashMap<HeaderName, HeaderValue>,
    ) -> HashMap<HeaderName, HeaderValue> {
        let parent = match message {
            JsonRpcMessage::Request(request) => {
                request.request.extensions().get::<TraceParent>().cloned()
            }
            _ => None,
        };
        match parent {
            Some(TraceParent(cx)) => {
                headers.extend(named(shared::telemetry::propagation::context_headers(&cx)));
            }
            None => headers.extend(
                self.fallback
                    .iter()
                    .map(|(name, value)| (name.clone(), value.clone())),
            ),
        }
        headers
    }
}

/// The entries of `headers` as rmcp's custom headers take them (one value per name: the W3C
/// headers have one each).
fn named(headers: reqwest::header::HeaderMap) -> impl Iterator<Item = (HeaderName, HeaderValue)> {
    headers
        .into_iter()
        .filter_map(|(name, value)| Some((name?, value)))
}

impl StreamableHttpClient for TracedHttp {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            StreamableHttpResponseLimits::default(),
        )
        .await
    }

    // The limits are the transport's: the wrapped client must still enforce them.
    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let headers = self.with_trace(&message, custom_headers);
        self.http
            .post_message_with_response_limits(
                uri,
                message,
                session_id,
                auth_header,
                headers,
                limits,
            )
            .await
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<Self::Error>> {
        self.http
            .delete_session(uri, session_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<Self::Error>> {
        self.http
            .get_stream(uri, session_id, last_event_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<Self::Error>> {
        self.http
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await
    }
}
