//! One caller's connection to the tools service: the tools the caller may use, and calls made
//! with the caller's authority, their progress relayed and their cancellation passed on.

use std::{sync::Arc, time::Instant};

use opentelemetry::KeyValue;
use rmcp::{
    RoleClient,
    model::{
        CallToolRequestParams, CallToolResult, CancelledNotificationParam, ClientConfig,
        ClientRequest, JsonObject, Request, RequestId, ServerResult, Tool,
    },
    service::{Peer, PeerRequestOptions, RunningService, ServiceError},
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{
    UpstreamError,
    progress::{ProgressRoutes, ProgressSender},
};

/// What a tool call came to, when the tools service answered it. Refusals and failures are
/// values, for the agent loop to show the model; only a failure to reach the tools service is an
/// [`UpstreamError`].
#[derive(Debug, Clone, PartialEq)]
pub enum ToolOutcome {
    /// The tool did its work: its structured result (for tools with an output schema) and its
    /// text rendering.
    Done {
        structured: Option<Value>,
        text: String,
    },
    /// The tool reported an error (`isError`): bad input, something that does not exist, or a
    /// role the caller lacks ("not allowed: ..."). Nothing was changed.
    ToolError { message: String },
    /// The tools service refused the request itself (JSON-RPC error), e.g. an unknown tool or
    /// arguments that do not match the schema.
    Rejected { code: i32, message: String },
}

impl ToolOutcome {
    pub fn is_done(&self) -> bool {
        matches!(self, ToolOutcome::Done { .. })
    }

    /// For the log: `ok`, `tool_error` or `rejected`.
    pub fn kind(&self) -> &'static str {
        match self {
            ToolOutcome::Done { .. } => "ok",
            ToolOutcome::ToolError { .. } => "tool_error",
            ToolOutcome::Rejected { .. } => "rejected",
        }
    }

    fn from_result(result: CallToolResult) -> Self {
        let text = result
            .content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.as_str()))
            .collect::<Vec<_>>()
            .join("\n");
        if result.is_error == Some(true) {
            ToolOutcome::ToolError { message: text }
        } else {
            ToolOutcome::Done {
                structured: result.structured_content,
                text,
            }
        }
    }
}

/// How one call is made, besides its tool and arguments. `Default`: no progress wanted, never
/// cancelled (dropping the call's future still cancels it).
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// Receives the tool's progress reports, in order, while it runs.
    pub progress: Option<ProgressSender>,
    /// Cancelling it cancels the inner call: the tools service is told to stop.
    pub cancel: Option<CancellationToken>,
}

impl CallOptions {
    pub fn progress(mut self, sender: ProgressSender) -> Self {
        self.progress = Some(sender);
        self
    }

    pub fn cancel(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }
}

/// A connection to the tools service on behalf of one caller, for one agent request. Calls take
/// `&self`, so several may run at once.
pub struct ToolsConnection {
    pub(super) service: RunningService<RoleClient, ClientConfig>,
    pub(super) routes: Arc<ProgressRoutes>,
    pub(super) url: Arc<str>,
    /// Ties the inner calls in the log to the conversation that made them.
    pub(super) conversation_id: Arc<str>,
}

impl std::fmt::Debug for ToolsConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolsConnection")
            .field("url", &self.url)
            .field("conversation_id", &self.conversation_id)
            .finish_non_exhaustive()
    }
}

impl ToolsConnection {
    /// Every tool the caller may call: the tools service lists only those its roles allow.
    pub async fn tools(&self) -> Result<Vec<Tool>, UpstreamError> {
        self.service
            .peer()
            .list_all_tools()
            .await
            .map_err(|e| self.service_error(e))
    }

    /// The tools the caller may call that are also in `allowed` (an expert's subset), in the
    /// tools service's order: what the agent may offer its model.
    pub async fn tools_within(&self, allowed: &[&str]) -> Result<Vec<Tool>, UpstreamError> {
        let visible = self.tools().await?;
        let visible_count = visible.len();
        let offered = within(visible, allowed);
        tracing::debug!(
            conversation_id = %self.conversation_id,
            visible = visible_count,
            offered = offered.len(),
            "inner tools listed"
        );
        Ok(offered)
    }

    /// Calls `tool` with `arguments` and waits for its outcome. Logged at info with the tool,
    /// the duration, the outcome and the conversation id; the arguments (which can hold personal
    /// data) only at debug.
    pub async fn call(
        &self,
        tool: &str,
        arguments: JsonObject,
        options: CallOptions,
    ) -> Result<ToolOutcome, UpstreamError> {
        tracing::debug!(
            tool,
            conversation_id = %self.conversation_id,
            arguments = %serde_json::Value::Object(arguments.clone()),
            "inner tool call arguments"
        );
        // A client span by the MCP conventions; the tools service continues its trace.
        let span = tracing::info_span!(
            "tool call",
            otel.name = format!("tools/call {tool}"),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            mcp.method.name = "tools/call",
            gen_ai.tool.name = tool,
            gen_ai.operation.name = "execute_tool",
            error.r#type = tracing::field::Empty,
        );
        let started = Instant::now();
        let result = self
            .run_call(tool, arguments, options, &span)
            .instrument(span.clone())
            .await;
        let elapsed = started.elapsed();
        let duration_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let outcome = match &result {
            Ok(outcome) => outcome.kind(),
            Err(error) => error.kind(),
        };
        let mut labels = vec![
            KeyValue::new("mcp.method.name", "tools/call"),
            KeyValue::new("gen_ai.tool.name", tool.to_owned()),
        ];
        if outcome != "ok" {
            span.record("error.type", outcome);
            labels.push(KeyValue::new("error.type", outcome));
            if result.is_err() {
                span.record("otel.status_code", "ERROR");
            }
        }
        crate::metrics::metrics()
            .tool_call_duration
            .record(elapsed.as_secs_f64(), &labels);
        tracing::info!(
            tool,
            conversation_id = %self.conversation_id,
            duration_us,
            outcome,
            "inner tool call"
        );
        result
    }

    async fn run_call(
        &self,
        tool: &str,
        arguments: JsonObject,
        options: CallOptions,
        span: &tracing::Span,
    ) -> Result<ToolOutcome, UpstreamError> {
        let peer = self.service.peer();
        let mut call =
            Request::new(CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments));
        // Read by the transport's HTTP client (`super::traced`), which sends from another task.
        call.extensions
            .insert(shared::telemetry::TraceParent::of(span));
        let request = ClientRequest::CallToolRequest(call);
        let handle = peer
            .send_cancellable_request(request, PeerRequestOptions::no_options())
            .await
            .map_err(|e| self.service_error(e))?;
        // Held until the call ends, however it ends.
        let _route =
            self.routes
                .register(handle.progress_token.clone(), tool.into(), options.progress);
        let mut abandoned = CancelOnDrop {
            peer: peer.clone(),
            id: Some(handle.id.clone()),
        };
        let cancel = options.cancel.unwrap_or_default();
        let response = tokio::select! {
            response = handle.await_response() => response,
            () = cancel.cancelled() => {
                abandoned.cancel("the caller cancelled the request").await;
                return Err(UpstreamError::Cancelled { tool: tool.to_owned() });
            }
        };
        abandoned.disarm();
        match response {
            Ok(ServerResult::CallToolResult(result)) => Ok(ToolOutcome::from_result(result)),
            Ok(other) => Err(UpstreamError::Failed {
                url: self.url.to_string(),
                reason: format!("unexpected answer to tools/call {tool}: {other:?}"),
            }
            .logged()),
            Err(ServiceError::McpError(error)) => Ok(ToolOutcome::Rejected {
                code: error.code.0,
                message: error.message.into_owned(),
            }),
            Err(error) => Err(self.service_error(error)),
        }
    }

    fn service_error(&self, error: ServiceError) -> UpstreamError {
        UpstreamError::from_service(&self.url, error)
    }
}

/// The tools of `visible` whose name is in `allowed`.
fn within(mut visible: Vec<Tool>, allowed: &[&str]) -> Vec<Tool> {
    visible.retain(|tool| allowed.contains(&tool.name.as_ref()));
    visible
}

/// Tells the tools service to stop a call whose caller stopped waiting: on request, or when the
/// call's future is dropped before its answer.
struct CancelOnDrop {
    peer: Peer<RoleClient>,
    /// `None` once the call ended or was cancelled.
    id: Option<RequestId>,
}

impl CancelOnDrop {
    fn disarm(&mut self) {
        self.id = None;
    }

    async fn cancel(&mut self, reason: &str) {
        if let Some(id) = self.id.take() {
            send_cancel(&self.peer, id, reason).await;
        }
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else { return };
        // Drop cannot wait: the notification goes out from a task of its own, if there is still
        // a runtime to run it (there is none when the whole process is going down).
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let peer = self.peer.clone();
            runtime.spawn(async move {
                send_cancel(&peer, id, "the caller stopped waiting").await;
            });
        }
    }
}

async fn send_cancel(peer: &Peer<RoleClient>, id: RequestId, reason: &str) {
    let param = CancelledNotificationParam::new(Some(id), Some(reason.to_owned()));
    if let Err(error) = peer.notify_cancelled(param).await {
        tracing::debug!(%error, "cancellation of an inner call not delivered");
    }
}

#[cfg(test)]
mod tests {
    use rmcp::model::{ContentBlock, Tool};

    use super::*;

    fn tool(name: &'static str) -> Tool {
        Tool::new(name, "a tool", Arc::new(JsonObject::new()))
    }

    #[test]
    fn within_keeps_the_allowed_tools_in_the_services_order() {
        let visible = vec![tool("a"), tool("b"), tool("c")];
        let names: Vec<_> = within(visible, &["c", "a", "not-visible"])
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["a", "c"]);
    }

    #[test]
    fn an_is_error_result_is_a_tool_error_with_its_text() {
        let outcome = ToolOutcome::from_result(CallToolResult::error(vec![ContentBlock::text(
            "not allowed: unlock_account needs role security",
        )]));
        assert_eq!(
            outcome,
            ToolOutcome::ToolError {
                message: "not allowed: unlock_account needs role security".into()
            }
        );
        assert_eq!(outcome.kind(), "tool_error");
    }
}
