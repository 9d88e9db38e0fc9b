//! One expert's turn with a model: model -> tool calls (in parallel when the model asks for
//! several) -> MCP calls to the tools service with the caller's authority -> model, until it
//! answers, asks the person something, or runs out of steps or time.
//!
//! Tool errors, refusals and malformed arguments go back to the model as tool results, so it can
//! correct itself or explain; they never end the turn. The model is offered only the tools its
//! caller may call within the expert's subset, and a call to anything else is refused here
//! without reaching the tools service.

use std::{collections::HashSet, future::Future, time::Duration};

use futures::future::join_all;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::{
    experts::{COMMON_RULES, Expert},
    model::{ChatModel, Message, Reply, ToolCall, ToolSpec},
    upstream::{CallOptions, ProgressSender, ToolOutcome, ToolsConnection, UpstreamError},
};

/// The tool the model calls when it needs something only the person can tell it; the turn
/// ends with status `needs_input` and the model's question as the answer.
pub const REQUEST_INPUT_TOOL: &str = "request_input";

/// A tool result longer than this is cut before it goes back to the model: one huge listing
/// must not crowd the whole conversation out of the context window.
pub const MAX_TOOL_RESULT_CHARS: usize = 16_000;

/// How far one turn may go.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Model requests per turn.
    pub max_steps: usize,
    /// Wall time of the whole turn, tool calls included.
    pub time_budget: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_steps: 8,
            time_budget: Duration::from_secs(120),
        }
    }
}

/// How a turn ended, and each tool call made: the same types the memory stores.
pub use crate::memory::{ToolCallRecord, TurnStatus as Status};

/// The outcome of one turn.
#[derive(Debug, Clone)]
pub struct Turn {
    pub status: Status,
    pub answer: String,
    pub tool_calls: Vec<ToolCallRecord>,
    pub error: Option<String>,
    /// Model requests made.
    pub steps: usize,
}

/// What an expert works with, model or not: the caller's connection to the tools service,
/// where inner progress goes, and the outer request's cancellation.
pub struct Work<'a> {
    pub tools: &'a ToolsConnection,
    pub progress: Option<ProgressSender>,
    /// Cancelling it (the outer request was cancelled) cancels the inner calls and ends the turn.
    pub cancel: CancellationToken,
}

/// How bounded work ended.
pub enum Ended<T> {
    Finished(T),
    /// The outer request was cancelled.
    Cancelled,
    /// The time budget ran out; the inner calls still running were cancelled.
    OutOfTime,
}

impl Work<'_> {
    /// Runs `work` until it finishes, the outer request is cancelled, or `budget` runs out.
    pub async fn bounded<T>(&self, budget: Duration, work: impl Future<Output = T>) -> Ended<T> {
        tokio::select! {
            ended = tokio::time::timeout(budget, work) => match ended {
                Ok(value) => Ended::Finished(value),
                Err(_) => {
                    // Inner calls still running are abandoned with the future; tell the tools
                    // service.
                    self.cancel.cancel();
                    Ended::OutOfTime
                }
            },
            () = self.cancel.cancelled() => Ended::Cancelled,
        }
    }
}

/// What a model-driven turn runs against: the model and the work.
pub struct Context<'a> {
    pub model: &'a dyn ChatModel,
    pub work: Work<'a>,
}

/// Runs one turn of `expert` on `question`, after `history` (earlier turns of the conversation,
/// as model messages).
pub async fn run(
    ctx: &Context<'_>,
    expert: &Expert,
    history: &[Message],
    question: &str,
    limits: Limits,
) -> Turn {
    let mut calls = Vec::new();
    let mut steps = 0;
    let work = turn(
        ctx, expert, history, question, limits, &mut calls, &mut steps,
    );
    let error = match ctx.work.bounded(limits.time_budget, work).await {
        Ended::Finished(Ok((status, answer))) => {
            return Turn {
                status,
                answer,
                tool_calls: calls,
                error: None,
                steps,
            };
        }
        Ended::Finished(Err(error)) => error,
        Ended::Cancelled => TurnError::Cancelled,
        Ended::OutOfTime => TurnError::OutOfTime(limits.time_budget),
    };
    Turn {
        status: Status::Error,
        answer: error.answer(),
        tool_calls: calls,
        error: Some(error.to_string()),
        steps,
    }
}

#[derive(Debug, thiserror::Error)]
enum TurnError {
    #[error("the expert could not list its tools: {0}")]
    Tools(UpstreamError),
    #[error("{0}")]
    Model(crate::model::ModelError),
    #[error("the expert did not finish within {0} steps")]
    OutOfSteps(usize),
    #[error("the expert did not finish within {0:?}")]
    OutOfTime(Duration),
    #[error("the request was cancelled")]
    Cancelled,
}

impl TurnError {
    /// What the person reads when the turn fails.
    fn answer(&self) -> String {
        match self {
            TurnError::Tools(_) | TurnError::Model(_) => {
                "I could not work on your question because a service I depend on failed. \
                 Please try again in a moment."
                    .to_owned()
            }
            TurnError::OutOfSteps(_) | TurnError::OutOfTime(_) => {
                "I could not finish looking into this. Please ask a narrower question.".to_owned()
            }
            TurnError::Cancelled => "The request was cancelled.".to_owned(),
        }
    }
}

async fn turn(
    ctx: &Context<'_>,
    expert: &Expert,
    history: &[Message],
    question: &str,
    limits: Limits,
    calls: &mut Vec<ToolCallRecord>,
    steps: &mut usize,
) -> Result<(Status, String), TurnError> {
    let offered = ctx
        .work
        .tools
        .tools_within(expert.tools)
        .await
        .map_err(TurnError::Tools)?;
    let mut specs: Vec<ToolSpec> = offered
        .iter()
        .map(|tool| ToolSpec {
            name: tool.name.to_string(),
            description: tool.description.as_deref().unwrap_or_default().to_owned(),
            parameters: Value::Object((*tool.input_schema).clone()),
        })
        .collect();
    let available: HashSet<String> = specs.iter().map(|s| s.name.clone()).collect();
    specs.push(request_input_spec());

    let mut messages = Vec::with_capacity(history.len() + 4);
    messages.push(Message::System(format!(
        "{COMMON_RULES}\n\n{}",
        expert.instructions
    )));
    messages.extend_from_slice(history);
    messages.push(Message::User(question.to_owned()));

    while *steps < limits.max_steps {
        *steps += 1;
        let Reply { text, tool_calls } = ctx
            .model
            .complete(&messages, &specs)
            .await
            .map_err(TurnError::Model)?;
        if let Some(ask) = tool_calls.iter().find(|c| c.name == REQUEST_INPUT_TOOL) {
            let question = serde_json::from_str::<Value>(&ask.arguments)
                .ok()
                .and_then(|v| v["question"].as_str().map(str::to_owned))
                .or(text)
                .unwrap_or_else(|| "Could you tell me more?".to_owned());
            return Ok((Status::NeedsInput, question));
        }
        if tool_calls.is_empty() {
            return Ok((Status::Done, text.unwrap_or_default()));
        }
        let results = join_all(
            tool_calls
                .iter()
                .map(|call| execute(&ctx.work, &available, call)),
        )
        .await;
        messages.push(Message::Assistant {
            text,
            tool_calls: tool_calls.clone(),
        });
        for (call, (record, content)) in tool_calls.iter().zip(results) {
            if matches!(&record.error, Some(e) if e == CANCELLED) {
                return Err(TurnError::Cancelled);
            }
            calls.push(record);
            messages.push(Message::Tool {
                call_id: call.id.clone(),
                content,
            });
        }
    }
    Err(TurnError::OutOfSteps(limits.max_steps))
}

const CANCELLED: &str = "cancelled";

fn request_input_spec() -> ToolSpec {
    ToolSpec {
        name: REQUEST_INPUT_TOOL.to_owned(),
        description: "Ask the person a question when you need information only they can give \
                      (for example which customer, invoice or device they mean). Ends your turn."
            .to_owned(),
        parameters: json!({
            "type": "object",
            "properties": {"question": {"type": "string", "description": "The question to ask."}},
            "required": ["question"],
            "additionalProperties": false
        }),
    }
}

/// Runs one call the model asked for; returns its record and the text the model gets back.
async fn execute(
    ctx: &Work<'_>,
    available: &HashSet<String>,
    call: &ToolCall,
) -> (ToolCallRecord, String) {
    let parsed = serde_json::from_str::<Value>(&call.arguments);
    let arguments = parsed
        .as_ref()
        .cloned()
        .unwrap_or_else(|_| Value::String(call.arguments.clone()));
    let failed = |error: String| {
        let record = ToolCallRecord {
            name: call.name.clone(),
            arguments: arguments.clone(),
            ok: false,
            error: Some(error.clone()),
        };
        (record, format!("ERROR: {error}"))
    };
    if !available.contains(&call.name) {
        return failed(format!(
            "the tool {:?} is not available to you for this person; do not call it again",
            call.name
        ));
    }
    let object = match parsed {
        Ok(Value::Object(object)) => object,
        Ok(_) => return failed("the arguments must be a JSON object".to_owned()),
        Err(e) => return failed(format!("the arguments are not valid JSON: {e}")),
    };
    let mut options = CallOptions::default().cancel(ctx.cancel.child_token());
    if let Some(progress) = &ctx.progress {
        options = options.progress(progress.clone());
    }
    match ctx.tools.call(&call.name, object, options).await {
        Ok(ToolOutcome::Done { structured, text }) => {
            let content = match structured {
                Some(structured) => structured.to_string(),
                None => text,
            };
            let record = ToolCallRecord {
                name: call.name.clone(),
                arguments,
                ok: true,
                error: None,
            };
            (record, truncate(content))
        }
        Ok(ToolOutcome::ToolError { message }) => failed(message),
        Ok(ToolOutcome::Rejected { message, .. }) => failed(message),
        Err(UpstreamError::Cancelled { .. }) => failed(CANCELLED.to_owned()),
        Err(error) => failed(error.to_string()),
    }
}

fn truncate(mut content: String) -> String {
    if content.len() > MAX_TOOL_RESULT_CHARS {
        let mut end = MAX_TOOL_RESULT_CHARS;
        while !content.is_char_boundary(end) {
            end -= 1;
        }
        content.truncate(end);
        content.push_str(" ...[cut: the result was too long]");
    }
    content
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_results_are_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_TOOL_RESULT_CHARS);
        let cut = truncate(long);
        assert!(cut.ends_with("[cut: the result was too long]"));
        assert!(cut.len() < MAX_TOOL_RESULT_CHARS + 64);
        assert_eq!(truncate("short".to_owned()), "short");
    }
}
