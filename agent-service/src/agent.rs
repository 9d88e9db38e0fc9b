//! One expert's turn with a model: model -> tool calls (in parallel when the model asks for
//! several, at most [`Limits::max_parallel_calls`] in flight and [`Limits::max_calls_per_turn`]
//! in all) -> MCP calls to the tools service with the caller's authority -> model, until it
//! answers, asks the person something, wants a change made, or runs out of steps or time.
//!
//! Tool errors, refusals and malformed arguments go back to the model as tool results, so it can
//! correct itself or explain; they never end the turn. The model is offered only the tools its
//! caller may call within the expert's subset, and a call to anything else is refused here
//! without reaching the tools service. Every result reaches the model fenced and labelled as
//! untrusted data ([`untrusted`]).
//!
//! A write ([`writes::is_write`]) is never made in the turn the model asks for it: the turn ends
//! with status `needs_confirmation` and the write, described in words, as [`Turn::pending`]. Once
//! the person confirms it, [`resume`] makes exactly that call and lets the model carry on from
//! its result.

pub mod untrusted;
pub mod writes;

use std::{collections::HashMap, future::Future, time::Duration};

use futures::{StreamExt, stream};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::{
    experts::{COMMON_RULES, Expert},
    memory::pending::canonical,
    model::{ChatModel, Message, Reply, ToolCall, ToolSpec},
    upstream::{CallOptions, ProgressSender, ToolOutcome, ToolsConnection, UpstreamError},
};

use untrusted::Kind;

/// The tool the model calls when it needs something only the person can tell it; the turn
/// ends with status `needs_input` and the model's question as the answer.
pub const REQUEST_INPUT_TOOL: &str = "request_input";

pub use untrusted::MAX_RESULT_CHARS as MAX_TOOL_RESULT_CHARS;

/// How far one turn may go.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Model requests per turn.
    pub max_steps: usize,
    /// Wall time of the whole turn, tool calls included.
    pub time_budget: Duration,
    /// Inner tool calls in flight at once: a model asking for hundreds of calls at once must
    /// not open hundreds of requests to the tools service.
    pub max_parallel_calls: usize,
    /// Inner tool calls per turn; the model is told the calls past it were not run.
    pub max_calls_per_turn: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_steps: 8,
            time_budget: Duration::from_secs(120),
            max_parallel_calls: 4,
            max_calls_per_turn: 24,
        }
    }
}

/// A write the expert wants made, held back until the person confirms it.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingWrite {
    pub tool: String,
    pub arguments: Map<String, Value>,
    /// The action in words ([`writes::describe`]).
    pub action: String,
}

impl PendingWrite {
    pub fn new(tool: &str, arguments: Map<String, Value>) -> Self {
        PendingWrite {
            action: writes::describe(tool, &arguments),
            tool: tool.to_owned(),
            arguments,
        }
    }

    /// What the turn answers while the write waits; the server adds how to confirm it.
    pub fn question(&self) -> String {
        format!(
            "I need your confirmation before I make this change: {}. Nothing has been done yet.",
            self.action
        )
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
    /// With status `needs_confirmation`: the write waiting for the person's confirmation.
    pub pending: Option<PendingWrite>,
}

impl Turn {
    /// A turn that ended before any work: `status`, `answer`, and why (for `error`).
    pub fn ended(status: Status, answer: impl Into<String>, error: Option<String>) -> Turn {
        Turn {
            status,
            answer: answer.into(),
            tool_calls: Vec::new(),
            error,
            steps: 0,
            pending: None,
        }
    }
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
    let mut progress = Progress::default();
    let work = async {
        let offered = Offered::list(ctx, expert).await?;
        let mut messages = opening(expert, history, question);
        drive(ctx, &offered, &mut messages, limits, &mut progress).await
    };
    let ended = ctx.work.bounded(limits.time_budget, work).await;
    finish(ended, limits, progress)
}

/// A write the person confirmed, to be made now.
#[derive(Debug, Clone)]
pub struct Confirmed<'a> {
    pub tool: &'a str,
    pub arguments: &'a Map<String, Value>,
    /// The words the person confirmed.
    pub action: &'a str,
    /// What the person said with the confirmation, if anything.
    pub question: Option<&'a str>,
}

/// Continues a conversation whose last turn ended `needs_confirmation`, the person having
/// confirmed `confirmed`: makes exactly that call (still only if the caller may), gives the model
/// its result, and goes on as [`run`] does.
pub async fn resume(
    ctx: &Context<'_>,
    expert: &Expert,
    history: &[Message],
    confirmed: Confirmed<'_>,
    limits: Limits,
) -> Turn {
    let mut progress = Progress::default();
    let work = async {
        let offered = Offered::list(ctx, expert).await?;
        let said = confirmed.question.map_or_else(
            || format!("Yes, go ahead: {}.", confirmed.action),
            str::to_owned,
        );
        let mut messages = opening(expert, history, &said);
        let call = ToolCall {
            id: "call_confirmed".to_owned(),
            name: confirmed.tool.to_owned(),
            arguments: canonical(&Value::Object(confirmed.arguments.clone())),
        };
        progress.asked += 1;
        let (record, content) = execute(&ctx.work, &offered, &call, Gate::Confirmed).await;
        if cancelled(&record) {
            return Err(TurnError::Cancelled);
        }
        progress.calls.push(record);
        messages.push(Message::Assistant {
            text: None,
            tool_calls: vec![call.clone()],
        });
        messages.push(Message::Tool {
            call_id: call.id,
            content,
        });
        drive(ctx, &offered, &mut messages, limits, &mut progress).await
    };
    let ended = ctx.work.bounded(limits.time_budget, work).await;
    finish(ended, limits, progress)
}

/// What a turn has done so far; kept outside the bounded work so a turn cut short still reports
/// the calls it made.
#[derive(Default)]
struct Progress {
    calls: Vec<ToolCallRecord>,
    steps: usize,
    /// Calls the model asked for that counted against [`Limits::max_calls_per_turn`].
    asked: usize,
}

/// How the model's part of a turn ended.
enum Outcome {
    Answered(Status, String),
    Paused(PendingWrite),
}

fn finish(ended: Ended<Result<Outcome, TurnError>>, limits: Limits, progress: Progress) -> Turn {
    let Progress { calls, steps, .. } = progress;
    let error = match ended {
        Ended::Finished(Ok(Outcome::Answered(status, answer))) => {
            return Turn {
                status,
                answer,
                tool_calls: calls,
                error: None,
                steps,
                pending: None,
            };
        }
        Ended::Finished(Ok(Outcome::Paused(pending))) => {
            return Turn {
                status: Status::NeedsConfirmation,
                answer: pending.question(),
                tool_calls: calls,
                error: None,
                steps,
                pending: Some(pending),
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
        pending: None,
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

/// The tools on offer to the model this turn, and which of them are writes.
struct Offered {
    specs: Vec<ToolSpec>,
    /// Tool name -> whether it is a write.
    available: HashMap<String, bool>,
}

impl Offered {
    async fn list(ctx: &Context<'_>, expert: &Expert) -> Result<Offered, TurnError> {
        let tools = ctx
            .work
            .tools
            .tools_within(expert.tools)
            .await
            .map_err(TurnError::Tools)?;
        let available = tools
            .iter()
            .map(|tool| (tool.name.to_string(), writes::is_write(tool)))
            .collect();
        let mut specs: Vec<ToolSpec> = tools
            .iter()
            .map(|tool| ToolSpec {
                name: tool.name.to_string(),
                description: tool.description.as_deref().unwrap_or_default().to_owned(),
                parameters: Value::Object((*tool.input_schema).clone()),
            })
            .collect();
        specs.push(request_input_spec());
        Ok(Offered { specs, available })
    }

    /// The call as a write to hold for confirmation, if it is one the caller may make with
    /// arguments that are an object (anything else is refused as any call would be).
    fn write(&self, call: &ToolCall) -> Option<PendingWrite> {
        if self.available.get(&call.name) != Some(&true) {
            return None;
        }
        match serde_json::from_str::<Value>(&call.arguments) {
            Ok(Value::Object(arguments)) => Some(PendingWrite::new(&call.name, arguments)),
            _ => None,
        }
    }
}

/// The system prompt, the earlier turns and what the person just said.
fn opening(expert: &Expert, history: &[Message], said: &str) -> Vec<Message> {
    let mut messages = Vec::with_capacity(history.len() + 4);
    messages.push(Message::System(format!(
        "{COMMON_RULES}\n\n{}",
        expert.instructions
    )));
    messages.extend_from_slice(history);
    messages.push(Message::User(said.to_owned()));
    messages
}

/// The loop: model, calls, model, ... until the model answers, asks, or wants a write.
async fn drive(
    ctx: &Context<'_>,
    offered: &Offered,
    messages: &mut Vec<Message>,
    limits: Limits,
    progress: &mut Progress,
) -> Result<Outcome, TurnError> {
    while progress.steps < limits.max_steps {
        progress.steps += 1;
        let Reply { text, tool_calls } = ctx
            .model
            .complete(messages, &offered.specs)
            .await
            .map_err(TurnError::Model)?;
        if let Some(ask) = tool_calls.iter().find(|c| c.name == REQUEST_INPUT_TOOL) {
            let question = serde_json::from_str::<Value>(&ask.arguments)
                .ok()
                .and_then(|v| v["question"].as_str().map(str::to_owned))
                .or(text)
                .unwrap_or_else(|| "Could you tell me more?".to_owned());
            return Ok(Outcome::Answered(Status::NeedsInput, question));
        }
        if tool_calls.is_empty() {
            return Ok(Outcome::Answered(Status::Done, text.unwrap_or_default()));
        }
        let room = limits.max_calls_per_turn.saturating_sub(progress.asked);
        let (within, beyond) = tool_calls.split_at(room.min(tool_calls.len()));
        // The first write the model asks for ends the turn unmade; the calls asked beside it
        // are not made either (the model asks again once it has the write's result).
        if let Some(pending) = within.iter().find_map(|call| offered.write(call)) {
            return Ok(Outcome::Paused(pending));
        }
        progress.asked += within.len();
        // Made into a list first: a lazy `map` in the stream trips the compiler's proof that the
        // turn's future is `Send` (rust-lang/rust#102211).
        let pending: Vec<_> = within
            .iter()
            .map(|call| execute(&ctx.work, offered, call, Gate::Unconfirmed))
            .collect();
        let results: Vec<(ToolCallRecord, String)> = stream::iter(pending)
            .buffered(limits.max_parallel_calls.max(1))
            .collect()
            .await;
        if !beyond.is_empty() {
            tracing::info!(
                asked = tool_calls.len(),
                run = within.len(),
                limit = limits.max_calls_per_turn,
                "tool calls past the per-turn limit were not run"
            );
        }
        messages.push(Message::Assistant {
            text,
            tool_calls: tool_calls.clone(),
        });
        for (call, (record, content)) in within.iter().zip(results) {
            if cancelled(&record) {
                return Err(TurnError::Cancelled);
            }
            progress.calls.push(record);
            messages.push(Message::Tool {
                call_id: call.id.clone(),
                content,
            });
        }
        for call in beyond {
            messages.push(Message::Tool {
                call_id: call.id.clone(),
                content: format!(
                    "ERROR: not run: at most {} tool calls per question",
                    limits.max_calls_per_turn
                ),
            });
        }
    }
    Err(TurnError::OutOfSteps(limits.max_steps))
}

const CANCELLED: &str = "cancelled";

fn cancelled(record: &ToolCallRecord) -> bool {
    matches!(&record.error, Some(e) if e == CANCELLED)
}

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

/// Whether a call may be a write: only once the person confirmed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    Unconfirmed,
    Confirmed,
}

/// Runs one call; returns its record and the text the model gets back: a result fenced as
/// untrusted data, or `ERROR: ...` for a refusal of this service's own.
async fn execute(
    ctx: &Work<'_>,
    offered: &Offered,
    call: &ToolCall,
    gate: Gate,
) -> (ToolCallRecord, String) {
    let parsed = serde_json::from_str::<Value>(&call.arguments);
    let arguments = parsed
        .as_ref()
        .cloned()
        .unwrap_or_else(|_| Value::String(call.arguments.clone()));
    let record = |error: Option<String>| ToolCallRecord {
        name: call.name.clone(),
        arguments: arguments.clone(),
        ok: error.is_none(),
        error,
    };
    let refused = |error: String| (record(Some(error.clone())), format!("ERROR: {error}"));
    let Some(&write) = offered.available.get(&call.name) else {
        return refused(format!(
            "the tool {:?} is not available to you for this person; do not call it again",
            call.name
        ));
    };
    let object = match parsed {
        Ok(Value::Object(object)) => object,
        Ok(_) => return refused("the arguments must be a JSON object".to_owned()),
        Err(e) => return refused(format!("the arguments are not valid JSON: {e}")),
    };
    if write && gate == Gate::Unconfirmed {
        // The loop holds writes back before they get here; never make one unconfirmed.
        return refused(format!(
            "not run: {} changes something and needs the person's confirmation",
            call.name
        ));
    }
    let mut options = CallOptions::default().cancel(ctx.cancel.child_token());
    if let Some(progress) = &ctx.progress {
        options = options.progress(progress.clone());
    }
    let fenced = |content: &str, kind, error| untrusted::fence(&call.name, content, kind, error);
    match ctx.tools.call(&call.name, object, options).await {
        Ok(ToolOutcome::Done { structured, text }) => {
            let content = match structured {
                Some(structured) => fenced(&structured.to_string(), Kind::Json, false),
                None => fenced(&text, Kind::Text, false),
            };
            (record(None), content)
        }
        Ok(ToolOutcome::ToolError { message } | ToolOutcome::Rejected { message, .. }) => {
            let content = fenced(&message, Kind::Text, true);
            (record(Some(message)), content)
        }
        Err(UpstreamError::Cancelled { .. }) => refused(CANCELLED.to_owned()),
        Err(error) => refused(error.to_string()),
    }
}
