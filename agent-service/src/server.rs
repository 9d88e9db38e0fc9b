//! The MCP face of the service: the three `ask_*_expert` tools. A call finds (or starts) the
//! caller's conversation, opens a connection to the tools service with the caller's own token,
//! lets the expert work (with the model, or the offline planner when none is configured), relays
//! inner progress to the caller, records the turn and answers with structured content. Every
//! call, answered or refused, is one event of the audit trail ([`shared::audit`]).
//!
//! A change the expert wants made is not made in that call: the answer has status
//! `needs_confirmation` and a [`Confirmation`] whose one-time id is held in memory
//! ([`crate::memory::PendingActions`]), bound to the caller, the conversation, the expert, the
//! tool and its exact arguments. The same caller passing it back as `confirm` (with the
//! conversation's id, before it expires) has exactly that change made, once, and the expert goes
//! on from its result.

use std::{borrow::Cow, sync::Arc};
use tracing::Instrument;

use chrono::Utc;
use rmcp::{
    ErrorData as McpError, Peer, RoleServer, ServerHandler,
    handler::server::tool::{schema_for_output, schema_for_type},
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
        InitializeResult, JsonObject, ListToolsResult, PaginatedRequestParams,
        ProgressNotificationParam, ProgressToken, ServerCapabilities, Tool, ToolAnnotations,
    },
    service::RequestContext,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use shared::{
    audit::{AuditLog, Outcome},
    auth::{Identity, middleware::bearer},
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    agent::{self, Confirmed, Context, Limits, Status, ToolCallRecord, Work, writes},
    experts::{self, Domain, EXPERTS, Expert},
    memory::{
        ConfirmationId, ConversationId, ConversationStore, MemoryError, Owner, ProposedAction,
        SessionKey, StoredTurn, Turn as MemoryTurn,
    },
    model::{ChatModel, Message},
    planner,
    upstream::{BearerToken, Progress, ToolsClient},
};

/// What every request shares.
pub struct AppState {
    pub memory: Arc<dyn ConversationStore>,
    pub tools: ToolsClient,
    /// `None`: the offline planner answers.
    pub model: Option<Arc<dyn ChatModel>>,
    pub limits: Limits,
    /// Earlier turns given to the expert with a new question.
    pub history_turns: usize,
    /// MCP sessions are on: a question without `conversation_id` continues its session's
    /// conversation.
    pub sessions: bool,
    /// Where every expert call, allowed or refused, is recorded.
    pub audit: AuditLog,
}

/// The input of every expert tool.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ask {
    /// The question, in the person's words. May be omitted when `confirm` is given.
    #[serde(default)]
    pub question: Option<String>,
    /// Continue this conversation (from an earlier answer); omit to start a new one.
    #[serde(default)]
    pub conversation_id: Option<String>,
    /// Go ahead with the change an earlier answer of this expert asked you to confirm: the `id`
    /// of its `confirmation`, with that answer's `conversation_id`. Each id works once, and only
    /// for the person it was given to, before its `expires_at`.
    #[serde(default)]
    pub confirm: Option<String>,
}

/// A change the expert will make only once the person confirms it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Confirmation {
    /// Pass it back as `confirm`, with the same `conversation_id`, to have the change made.
    pub id: String,
    /// The change, in words.
    pub action: String,
    /// The tools service's tool that makes it.
    pub tool: String,
    /// The exact arguments it is called with.
    pub arguments: serde_json::Value,
    /// When the id stops working (RFC 3339); unconfirmed, nothing happens.
    pub expires_at: String,
}

/// The output of every expert tool.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct ExpertAnswer {
    pub domain: Domain,
    pub status: Status,
    pub answer: String,
    /// Pass it back to continue the conversation.
    pub conversation_id: Option<String>,
    /// The tools service calls the expert made for this answer.
    pub tool_calls: Vec<ToolCallRecord>,
    /// Why the answer is incomplete, when it is.
    pub error: Option<String>,
    /// With status `needs_confirmation`: the change waiting for the person's confirmation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmation: Option<Confirmation>,
}

/// Longest question accepted: a question, not a document.
pub const MAX_QUESTION_CHARS: usize = 4_000;

/// The MCP server handler; one per request (stateless transport), cheap to make.
#[derive(Clone)]
pub struct Experts {
    state: Arc<AppState>,
}

impl Experts {
    pub fn new(state: Arc<AppState>) -> Self {
        Experts { state }
    }

    fn tool(expert: &Expert) -> Tool {
        Tool::new_with_raw(
            expert.tool,
            Some(Cow::Borrowed(expert.description)),
            schema_for_type::<Ask>(),
        )
        .with_raw_output_schema(schema_for_output::<ExpertAnswer>())
        // An expert may take actions (payments, unlocks) when asked, within the caller's rights.
        .with_annotations(
            ToolAnnotations::new()
                .read_only(false)
                .destructive(false)
                .open_world(false),
        )
    }
}

const INSTRUCTIONS: &str = "Contoso's customer-service experts. Ask the billing, account or \
product expert a question in plain words; each looks things up with the Contoso tools on your \
behalf, with your permissions, and answers. Pass conversation_id back to continue a \
conversation.";

/// Who is asking, with what token, in which MCP session (if the client holds one).
struct Caller<'a> {
    identity: &'a Identity,
    token: Option<BearerToken>,
    session: Option<&'a str>,
}

fn caller(context: &RequestContext<RoleServer>) -> Option<Caller<'_>> {
    let parts = context.extensions.get::<axum::http::request::Parts>()?;
    Some(Caller {
        identity: parts.extensions.get::<Identity>()?,
        token: bearer(&parts.headers).ok().map(BearerToken::new),
        session: parts
            .headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok()),
    })
}

impl ServerHandler for Experts {
    fn get_info(&self) -> InitializeResult {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "contoso-agent-service",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(
            EXPERTS.into_iter().map(Experts::tool).collect(),
        ))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        experts::by_tool(name).map(Experts::tool)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let caller = caller(&context);
        // Every failure the caller sees names it (`crate::http::name_request`).
        let request_id = context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(shared::http::request_id)
            .map(str::to_owned);
        let request_id = request_id.as_deref();
        let expert = experts::by_tool(request.name.as_ref());
        // The turn's span, by the GenAI conventions for agents, covers the whole call, its audit
        // event included (so the event's log line carries the trace id). rmcp runs this in a task
        // of its own: the span's parent is the request's MCP span, found on the request.
        let agent = expert.map_or("-", |e| e.domain.as_str());
        let span = tracing::info_span!(
            "expert",
            otel.name = format!("invoke_agent {agent}"),
            otel.kind = "internal",
            otel.status_code = tracing::field::Empty,
            gen_ai.operation.name = "invoke_agent",
            gen_ai.agent.name = agent,
            gen_ai.conversation.id = tracing::field::Empty,
            tenant.id = caller.as_ref().map(|c| c.identity.tenant.as_str()),
            agent.turn.status = tracing::field::Empty,
            agent.turn.tool_calls = tracing::field::Empty,
        );
        if let Some(parts) = context.extensions.get::<axum::http::request::Parts>() {
            shared::telemetry::parent_of(&span, &parts.extensions);
        }
        self.answer_call(expert, request, caller, &context, request_id)
            .instrument(span)
            .await
    }
}

impl Experts {
    /// `call_tool`, in the turn's span.
    async fn answer_call(
        &self,
        expert: Option<&'static Expert>,
        request: CallToolRequestParams,
        caller: Option<Caller<'_>>,
        context: &RequestContext<RoleServer>,
        request_id: Option<&str>,
    ) -> Result<CallToolResponse, McpError> {
        let audit = self.state.audit.begin(
            request.name.as_ref(),
            caller.as_ref().map(|c| c.identity),
            request_id,
            request.arguments.as_ref(),
        );
        let Some(expert) = expert else {
            audit.finish(Outcome::refused("unknown_tool", None)).await;
            return Err(crate::http::name_request_in_error(
                McpError::invalid_params(format!("unknown tool {:?}", request.name), None),
                request_id,
            ));
        };
        let Some(caller) = caller else {
            // Unreachable behind the authentication middleware; refuse rather than assume.
            audit
                .finish(Outcome::refused("unauthenticated", None))
                .await;
            let refused = CallToolResult::error(vec![ContentBlock::text("not authenticated")]);
            return Ok(crate::http::name_request(refused.into(), request_id));
        };
        // A bug in an expert must still answer this request (rmcp runs it in a task of its own,
        // and a panic there would leave the caller waiting for its own timeout). Boxed: the
        // expert's turn is a large future, too large to move around on a debug build's stack.
        let answered = shared::mcp::answer_panics(
            request_id,
            Box::pin(self.answer(
                expert,
                caller,
                request.arguments.unwrap_or_default(),
                context,
            )),
        )
        .await;
        let (response, outcome) = match answered {
            Ok(answered) => answered,
            Err(internal) => {
                audit.finish(Outcome::tool_error("internal")).await;
                return Err(internal);
            }
        };
        audit.finish(outcome).await;
        Ok(crate::http::name_request(response, request_id))
    }
}

impl Experts {
    /// An authenticated call of `expert`: the response, and the outcome the audit trail records.
    async fn answer(
        &self,
        expert: &Expert,
        caller: Caller<'_>,
        arguments: JsonObject,
        context: &RequestContext<RoleServer>,
    ) -> (CallToolResponse, Outcome) {
        let invalid = |message: String| {
            (
                tool_error(message),
                Outcome::tool_error("invalid_arguments"),
            )
        };
        let Caller {
            identity,
            token,
            session,
        } = caller;
        let ask: Ask = match serde_json::from_value(serde_json::Value::Object(arguments)) {
            Ok(ask) => ask,
            Err(e) => return invalid(format!("invalid arguments: {e}")),
        };
        let question = ask.question.as_deref().map(str::trim);
        if question.is_some_and(|q| q.chars().count() > MAX_QUESTION_CHARS) {
            return invalid(format!(
                "invalid arguments: question is longer than {MAX_QUESTION_CHARS} characters"
            ));
        }
        let question = question.filter(|q| !q.is_empty());
        let request = match (ask.confirm.as_deref().map(str::trim), question) {
            (Some(confirm), said) => match ConfirmationId::parse(confirm) {
                Ok(id) => Request::Confirm { id, said },
                Err(e) => return invalid(format!("invalid arguments: {e}")),
            },
            (None, Some(question)) => Request::Question(question),
            (None, None) => return invalid("invalid arguments: question is empty".to_owned()),
        };
        let owner = Owner::from(identity);
        let progress = context
            .meta
            .get_progress_token()
            .map(|token| relay(context.peer.clone(), token));
        // The turn's span, opened by `call_tool`.
        let span = tracing::Span::current();
        let answer = self
            .ask(
                expert,
                &owner,
                token,
                request,
                match (ask.conversation_id.as_deref(), session) {
                    (Some(id), _) => Continue::Conversation(id),
                    // Only a session this service issued (rmcp refuses unknown ones).
                    (None, Some(session)) if self.state.sessions => Continue::Session(session),
                    (None, _) => Continue::New,
                },
                progress.as_ref().map(|(tx, _)| tx.clone()),
                context.ct.clone(),
            )
            .await;
        record_turn(&span, expert, &identity.tenant, &answer);
        // Every inner report is relayed before the answer goes out.
        if let Some((tx, relayed)) = progress {
            drop(tx);
            let _ = relayed.await;
        }
        match answer {
            Ok(answer) => {
                let outcome = match answer.status {
                    Status::Error => Outcome::tool_error("expert_error"),
                    _ => Outcome::Ok,
                };
                (success(&answer), outcome)
            }
            Err(Unanswered { message, outcome }) => (tool_error(message), outcome),
        }
    }
}

/// The turn's outcome on its span and in the `agent.turns` metrics.
fn record_turn(
    span: &tracing::Span,
    expert: &Expert,
    tenant: &str,
    answer: &Result<ExpertAnswer, Unanswered>,
) {
    let (status, calls) = match answer {
        Ok(answer) => (answer.status.as_str(), answer.tool_calls.len()),
        Err(_) => ("unanswered", 0),
    };
    if let Ok(ExpertAnswer {
        conversation_id: Some(id),
        ..
    }) = answer
    {
        span.record("gen_ai.conversation.id", id.as_str());
    }
    span.record("agent.turn.status", status);
    span.record("agent.turn.tool_calls", calls);
    if matches!(status, "error" | "unanswered") {
        span.record("otel.status_code", "ERROR");
    }
    let labels = [
        opentelemetry::KeyValue::new("gen_ai.agent.name", expert.domain.as_str()),
        opentelemetry::KeyValue::new("tenant.id", tenant.to_owned()),
        opentelemetry::KeyValue::new("agent.turn.status", status),
    ];
    let metrics = crate::metrics::metrics();
    metrics.turns.add(1, &labels);
    metrics
        .turn_tool_calls
        .record(u64::try_from(calls).unwrap_or(u64::MAX), &labels);
}

/// Why a question was not put to the expert, and how the audit trail records it.
struct Unanswered {
    message: String,
    outcome: Outcome,
}

impl Unanswered {
    fn from_memory(error: MemoryError) -> Self {
        let outcome = match &error {
            // Never existed, expired, or another person's: alike to the caller, not to an audit.
            MemoryError::UnknownConversation => Outcome::refused("conversation_not_open", None),
            // Likewise for confirmation ids; a replay or an altered action is worth its own.
            MemoryError::UnknownConfirmation => Outcome::refused("confirmation_not_open", None),
            MemoryError::ConfirmationUsed => Outcome::refused("confirmation_used", None),
            MemoryError::ActionAltered => Outcome::refused("confirmation_altered", None),
            MemoryError::Backend(_) => Outcome::tool_error("memory"),
            _ => Outcome::tool_error("invalid_arguments"),
        };
        let message = match &error {
            // The database's words are for the log.
            MemoryError::Backend(_) => {
                tracing::error!(%error, "reading the conversation failed");
                "the conversation could not be read; try again".to_owned()
            }
            _ => error.to_string(),
        };
        Unanswered { message, outcome }
    }

    /// Memory failed; `message` says so without the details.
    fn memory(message: &str) -> Self {
        Unanswered {
            message: message.to_owned(),
            outcome: Outcome::tool_error("memory"),
        }
    }
}

/// What the caller asks of the expert.
enum Request<'a> {
    /// A question.
    Question(&'a str),
    /// Go ahead with the change held under `id`; `said`: what the person added, if anything.
    Confirm {
        id: ConfirmationId,
        said: Option<&'a str>,
    },
}

/// What the expert works on in a turn.
enum Task<'a> {
    Question(&'a str),
    /// The change the person confirmed, claimed from memory.
    Confirmed {
        action: &'a ProposedAction,
        said: Option<&'a str>,
    },
}

/// Which conversation a question belongs to.
enum Continue<'a> {
    /// The `conversation_id` the caller passed.
    Conversation(&'a str),
    /// The conversation of the caller's MCP session (no `conversation_id` passed).
    Session(&'a str),
    New,
}

impl Experts {
    /// One question to `expert`. `Err`: the question was not put (a conversation id the caller
    /// must fix, memory failing); everything else, failures included, is an answer with a
    /// status.
    #[allow(clippy::too_many_arguments)]
    async fn ask(
        &self,
        expert: &Expert,
        owner: &Owner,
        token: Option<BearerToken>,
        request: Request<'_>,
        conversation: Continue<'_>,
        progress: Option<mpsc::UnboundedSender<Progress>>,
        cancel: CancellationToken,
    ) -> Result<ExpertAnswer, Unanswered> {
        let state = &self.state;
        let asked_at = Utc::now();
        if matches!(request, Request::Confirm { .. }) && matches!(conversation, Continue::New) {
            return Err(Unanswered {
                message: "invalid arguments: confirm needs the conversation_id of the answer \
                          that asked for the confirmation"
                    .to_owned(),
                outcome: Outcome::tool_error("invalid_arguments"),
            });
        }
        let existing = match conversation {
            Continue::Conversation(given) => {
                Some(ConversationId::parse(given).map_err(Unanswered::from_memory)?)
            }
            Continue::Session(session) => {
                let key = SessionKey::of_session(session).map_err(Unanswered::from_memory)?;
                Some(state.memory.for_session(owner, &key).await.map_err(|e| {
                    tracing::error!(error = %e, "finding the session's conversation failed");
                    Unanswered::memory("the conversation could not be found or started; try again")
                })?)
            }
            Continue::New => None,
        };
        let (id, history) = match existing {
            Some(id) => {
                let history = state
                    .memory
                    .history(owner, &id, Some(state.history_turns))
                    .await
                    .map_err(Unanswered::from_memory)?;
                (id, history)
            }
            None => {
                let id = state.memory.create(owner).await.map_err(|e| {
                    tracing::error!(error = %e, "starting a conversation failed");
                    Unanswered::memory("the conversation could not be started; try again")
                })?;
                crate::metrics::metrics().conversations.add(
                    1,
                    &[
                        opentelemetry::KeyValue::new("gen_ai.agent.name", expert.domain.as_str()),
                        opentelemetry::KeyValue::new("tenant.id", owner.tenant.clone()),
                    ],
                );
                (id, Vec::new())
            }
        };
        let (turn, question) = match (token, &request) {
            (None, _) => (
                agent::Turn::ended(
                    Status::Error,
                    "The expert needs your access token to look things up for you.",
                    Some("no bearer token was sent".to_owned()),
                ),
                None,
            ),
            (Some(token), Request::Question(question)) => {
                let task = Task::Question(question);
                let turn = self
                    .think(expert, &token, &id, &history, task, progress, cancel)
                    .await;
                (turn, Some((*question).to_owned()))
            }
            (Some(token), Request::Confirm { id: confirm, said }) => {
                let action = self.claim(expert, owner, &id, confirm).await?;
                let task = Task::Confirmed {
                    action: &action,
                    said: *said,
                };
                let turn = self
                    .think(expert, &token, &id, &history, task, progress, cancel)
                    .await;
                let said =
                    said.map_or_else(|| format!("Confirm: {}", action.action), str::to_owned);
                (turn, Some(said))
            }
        };
        let question = question.unwrap_or_else(|| match &request {
            Request::Question(question) => (*question).to_owned(),
            Request::Confirm { said, .. } => said.unwrap_or("Confirm").to_owned(),
        });
        let (turn, confirmation) = self.hold(expert, owner, &id, turn).await;
        let record = MemoryTurn {
            domain: expert.domain.as_str().to_owned(),
            question,
            answer: turn.answer.clone(),
            status: turn.status,
            tool_calls: turn.tool_calls.clone(),
            error: turn.error.clone(),
            asked_at,
        };
        let mut error = turn.error;
        if let Err(e) = state.memory.append(owner, &id, &record).await {
            tracing::warn!(conversation_id = %id.as_str(), error = %e, "the turn was not remembered");
            error.get_or_insert_with(|| "this answer was not remembered".to_owned());
        }
        let answer = match &confirmation {
            // How to confirm goes to the caller, not into the conversation the model reads.
            Some(confirmation) => format!(
                "{}\n\nTo go ahead, call {} again with confirm \"{}\" and this \
                 conversation_id before {}. To cancel, do nothing: it then expires.",
                turn.answer, expert.tool, confirmation.id, confirmation.expires_at
            ),
            None => turn.answer,
        };
        Ok(ExpertAnswer {
            domain: expert.domain,
            status: turn.status,
            answer,
            conversation_id: Some(id.as_str().to_owned()),
            tool_calls: turn.tool_calls,
            error,
            confirmation,
        })
    }

    /// Claims the change held under `confirm` for `owner` in conversation `id` with `expert`,
    /// once, and checks it is still the change the person was shown.
    async fn claim(
        &self,
        expert: &Expert,
        owner: &Owner,
        id: &ConversationId,
        confirm: &ConfirmationId,
    ) -> Result<ProposedAction, Unanswered> {
        let action = self
            .state
            .memory
            .claim(owner, id, expert.domain.as_str(), confirm)
            .await
            .map_err(Unanswered::from_memory)?;
        if writes::describe(&action.tool, &action.arguments) != action.action {
            tracing::error!(tool = %action.tool, "a held action's words do not describe its arguments; refused");
            return Err(Unanswered::from_memory(MemoryError::ActionAltered));
        }
        tracing::info!(conversation_id = %id.as_str(), tool = %action.tool, "confirmed change claimed");
        Ok(action)
    }

    /// Holds the change a `needs_confirmation` turn wants made, for the person to confirm; the
    /// turn, and the confirmation to show. A change that cannot be held is not made either: the
    /// turn becomes an error saying so.
    async fn hold(
        &self,
        expert: &Expert,
        owner: &Owner,
        id: &ConversationId,
        mut turn: agent::Turn,
    ) -> (agent::Turn, Option<Confirmation>) {
        let Some(pending) = turn.pending.take() else {
            return (turn, None);
        };
        let proposed = ProposedAction {
            domain: expert.domain.as_str().to_owned(),
            tool: pending.tool,
            arguments: pending.arguments,
            action: pending.action,
        };
        match self.state.memory.hold(owner, id, &proposed).await {
            Ok(held) => {
                let confirmation = Confirmation {
                    id: held.id.as_str().to_owned(),
                    action: proposed.action,
                    tool: proposed.tool,
                    arguments: serde_json::Value::Object(proposed.arguments),
                    expires_at: held
                        .expires_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                };
                (turn, Some(confirmation))
            }
            Err(error) => {
                tracing::error!(conversation_id = %id.as_str(), %error, "holding a change for confirmation failed");
                turn.status = Status::Error;
                turn.answer = format!(
                    "I wanted to ask you to confirm this change, but could not keep it for your \
                     confirmation, so nothing was done: {}. Please ask again in a moment.",
                    proposed.action
                );
                turn.error = Some("the change could not be held for confirmation".to_owned());
                (turn, None)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn think(
        &self,
        expert: &Expert,
        token: &BearerToken,
        id: &ConversationId,
        history: &[StoredTurn],
        task: Task<'_>,
        progress: Option<mpsc::UnboundedSender<Progress>>,
        cancel: CancellationToken,
    ) -> agent::Turn {
        let state = &self.state;
        let connection = match state.tools.connect(token, id.as_str()).await {
            Ok(connection) => connection,
            Err(e) => {
                tracing::warn!(conversation_id = %id.as_str(), error = %e, "tools service unavailable");
                return agent::Turn {
                    status: Status::Error,
                    answer: "I cannot reach the customer-service tools right now. Please try \
                             again in a moment."
                        .to_owned(),
                    tool_calls: Vec::new(),
                    error: Some(e.to_string()),
                    steps: 0,
                    pending: None,
                };
            }
        };
        let history = as_messages(history);
        let work = Work {
            tools: &connection,
            progress,
            cancel,
        };
        let limits = state.limits;
        match (&state.model, task) {
            (Some(model), task) => {
                let ctx = Context {
                    model: model.as_ref(),
                    work,
                };
                match task {
                    Task::Question(question) => {
                        agent::run(&ctx, expert, &history, question, limits).await
                    }
                    Task::Confirmed { action, said } => {
                        let confirmed = confirmed(action, said);
                        agent::resume(&ctx, expert, &history, confirmed, limits).await
                    }
                }
            }
            (None, Task::Question(question)) => {
                planner::answer(&work, expert, &history, question, limits).await
            }
            (None, Task::Confirmed { action, said }) => {
                planner::confirmed(&work, expert, confirmed(action, said), limits).await
            }
        }
    }
}

fn confirmed<'a>(action: &'a ProposedAction, said: Option<&'a str>) -> Confirmed<'a> {
    Confirmed {
        tool: &action.tool,
        arguments: &action.arguments,
        action: &action.action,
        question: said,
    }
}

/// Earlier turns as the model sees them: the question, then the answer.
fn as_messages(history: &[StoredTurn]) -> Vec<Message> {
    history
        .iter()
        .flat_map(|stored| {
            [
                Message::User(stored.turn.question.clone()),
                Message::Assistant {
                    text: Some(stored.turn.answer.clone()),
                    tool_calls: Vec::new(),
                },
            ]
        })
        .collect()
}

/// Relays inner progress to the caller as progress of its own request: one step per inner
/// report (inner calls may run in parallel, so their own counters would not be monotonic),
/// the message naming the tool. Returns the sender and the task, which ends once every sender
/// is gone and every report is sent.
fn relay(
    peer: Peer<RoleServer>,
    token: ProgressToken,
) -> (mpsc::UnboundedSender<Progress>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Progress>();
    let task = tokio::spawn(async move {
        let mut step = 0u32;
        while let Some(report) = rx.recv().await {
            step += 1;
            let message = match &report.message {
                Some(message) => format!("{}: {message}", report.tool),
                None => format!("{}: {}", report.tool, report.progress),
            };
            let param = ProgressNotificationParam::new(token.clone(), f64::from(step))
                .with_message(message);
            if let Err(error) = peer.notify_progress(param).await {
                tracing::debug!(%error, "progress notification not delivered");
            }
        }
    });
    (tx, task)
}

fn success(answer: &ExpertAnswer) -> CallToolResponse {
    match serde_json::to_value(answer) {
        Ok(value) => {
            let mut result = CallToolResult::structured(value);
            result.content = vec![ContentBlock::text(answer.answer.clone())];
            result.into()
        }
        Err(error) => {
            tracing::error!(%error, "serialising an answer failed");
            tool_error("internal error".to_owned())
        }
    }
}

fn tool_error(message: String) -> CallToolResponse {
    CallToolResult::error(vec![ContentBlock::text(message)]).into()
}
