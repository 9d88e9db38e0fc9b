//! The MCP face of the service: the tool catalogue and the `ServerHandler` that serves it.
//!
//! Tools are registered in one table ([`Catalog`]) rather than through the `#[tool]` macros, for
//! two reasons: argument errors must come back as tool errors (`isError: true`, so a model can
//! read them and retry) instead of JSON-RPC errors, and listing and calling must go through the
//! same table so that role-based filtering, when it comes, cannot make them disagree.
//!
//! Each entry pairs a tool description (name, description, input and output schemas derived
//! from the typed parameter and output structs, annotations) with a handler that parses the
//! arguments into the parameter type, runs the operation, and renders the output both as
//! structured content and as text ([`render`]). [`Catalog::call`] is that path, the one every
//! call takes.
//!
//! A tool lives in the file of its business area, which holds, for each of its tools, the
//! parameters, the operation, the output and its rendering, and the catalogue entry:
//! [`customers`], [`billing`], [`usage`], [`catalog`] (products and promotions), [`security`],
//! [`support`], [`knowledge`] and [`troubleshooting`]; what several areas use is in [`common`].
//! An operation is a function of the storage and its parameters that knows nothing about MCP or
//! HTTP, so every rule is testable directly. A parameter struct's `JsonSchema` is what clients
//! see as the tool's input schema, and unknown fields are refused so a typo is an error rather
//! than an ignored filter; an output's `JsonSchema` is the tool's output schema.
//!
//! Arguments are decoded from the exact JSON text the caller sent ([`raw`]), so money is read
//! digit for digit; every decoding and validation failure is a tool error. A handler that panics
//! anyway still answers: a JSON-RPC internal error naming the request id
//! ([`shared::mcp::answer_panics`]). Internal failures (storage, a panic) never show their
//! detail to the caller, only the request id to quote; the detail is in the log.
//!
//! Every call, allowed or refused (unknown tool, missing role), is one event of the audit trail
//! ([`shared::audit`]), with its caller, redacted arguments, outcome and duration.

pub mod billing;
pub mod catalog;
pub mod common;
pub mod customers;
pub mod dates;
pub mod error;
pub mod knowledge;
pub mod raw;
pub mod render;
pub mod security;
pub mod support;
pub mod troubleshooting;
pub mod usage;

use std::{borrow::Cow, collections::HashMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use futures::future::BoxFuture;
use rmcp::{
    ErrorData as McpError, Peer, RoleServer, ServerHandler,
    handler::server::tool::{schema_for_output, schema_for_type},
    model::{
        CacheScope, CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock,
        Implementation, InitializeResult, JsonObject, ListToolsResult, PaginatedRequestParams,
        ProgressNotificationParam, ProgressToken, ServerCapabilities, Tool, ToolAnnotations,
    },
    service::RequestContext,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use shared::{
    audit::{AuditLog, Outcome},
    auth::{Identity, RolePolicy},
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use error::ToolError;
use render::Render;

use crate::{search::KnowledgeIndex, store::Storage, troubleshoot};

/// What every tool call can reach.
pub struct AppState {
    pub storage: Storage,
    pub index: Arc<KnowledgeIndex>,
    /// Duration of each of the nine `trouble_shoot_device` steps.
    pub troubleshoot_step: Duration,
    /// Where every call, allowed or refused, is recorded.
    pub audit: AuditLog,
}

/// What a handler learns about the request besides its arguments.
pub struct CallContext {
    /// Who is calling: writes that record their author (`unlock_account`) name them.
    pub identity: Identity,
    /// Set when the caller sent a progress token.
    pub progress: Option<McpProgress>,
    /// Cancelled when the caller cancels the request or disconnects.
    pub cancel: CancellationToken,
}

/// Sends MCP progress notifications for one request.
pub struct McpProgress {
    peer: Peer<RoleServer>,
    token: ProgressToken,
}

#[async_trait]
impl troubleshoot::ProgressSink for McpProgress {
    async fn report(&self, progress: u32, total: u32, message: String) {
        let param = ProgressNotificationParam::new(self.token.clone(), f64::from(progress))
            .with_total(f64::from(total))
            .with_message(message);
        if let Err(error) = self.peer.notify_progress(param).await {
            tracing::debug!(%error, "progress notification not delivered");
        }
    }
}

/// A call's arguments, as a handler decodes them.
#[derive(Debug, Clone)]
pub enum Arguments {
    /// The exact JSON text of the arguments object, as sent ([`raw`]): what every `tools/call`
    /// over HTTP decodes from.
    Text(Arc<str>),
    /// Already parsed by rmcp, numbers as doubles: only where no text exists (see [`raw`]).
    Value(JsonObject),
}

type Handler = Arc<
    dyn Fn(
            Arc<AppState>,
            Arguments,
            CallContext,
        ) -> BoxFuture<'static, Result<CallToolResult, ToolError>>
        + Send
        + Sync,
>;

struct Entry {
    tool: Tool,
    handler: Handler,
}

/// Tools that take no argument still refuse unknown ones.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

/// Parses arguments, naming the offending field (`amount: invalid type ...`) so the caller
/// knows what to fix. The same message comes from either form of the arguments.
fn parse<A: DeserializeOwned>(args: Arguments) -> Result<A, ToolError> {
    match args {
        Arguments::Text(text) => {
            let mut json = serde_json::Deserializer::from_str(&text);
            let args = serde_path_to_error::deserialize(&mut json).map_err(describe)?;
            // Text from rmcp's body is one JSON value; text from elsewhere may trail on.
            json.end().map_err(|e| {
                ToolError::invalid(format!("invalid arguments: {}", without_position(e)))
            })?;
            Ok(args)
        }
        Arguments::Value(object) => {
            serde_path_to_error::deserialize(serde_json::Value::Object(object)).map_err(describe)
        }
    }
}

fn describe(error: serde_path_to_error::Error<serde_json::Error>) -> ToolError {
    let path = error.path().to_string();
    let message = without_position(error.into_inner());
    if path == "." {
        ToolError::invalid(format!("invalid arguments: {message}"))
    } else {
        ToolError::invalid(format!("invalid arguments: {path}: {message}"))
    }
}

/// A serde_json error without its " at line L column C" (the arguments are one short object,
/// and the field path says where the fault is), and with the values it quotes shortened: serde
/// repeats a wrong string in full (`invalid type: string "xxx...", expected u32`), and a caller
/// who sent a megabyte needs the type, not the megabyte back.
fn without_position(error: serde_json::Error) -> String {
    let message = error.to_string();
    let message = if error.line() == 0 {
        message
    } else {
        let position = format!(" at line {} column {}", error.line(), error.column());
        message
            .strip_suffix(&position)
            .map_or_else(|| message.clone(), str::to_owned)
    };
    shorten_quoted(&message)
}

/// `message` with each `"quoted"` run longer than a few dozen characters cut to its start, and
/// at most 500 characters in all.
fn shorten_quoted(message: &str) -> String {
    const MAX_QUOTED_CHARS: usize = 40;
    const MAX_MESSAGE_CHARS: usize = 500;
    let mut out = String::with_capacity(message.len().min(MAX_MESSAGE_CHARS + 8));
    let mut quoted: Option<usize> = None;
    for c in message.chars() {
        match (quoted, c) {
            (None, '"') => {
                quoted = Some(0);
                out.push(c);
            }
            (Some(_), '"') => {
                quoted = None;
                out.push(c);
            }
            (Some(n), _) => {
                if n < MAX_QUOTED_CHARS {
                    out.push(c);
                } else if n == MAX_QUOTED_CHARS {
                    out.push_str("...");
                }
                quoted = Some(n + 1);
            }
            (None, _) => out.push(c),
        }
    }
    if out.chars().nth(MAX_MESSAGE_CHARS).is_some() {
        out = out.chars().take(MAX_MESSAGE_CHARS).collect();
        out.push_str("...");
    }
    out
}

fn success<O: Serialize + Render>(output: &O) -> Result<CallToolResult, ToolError> {
    let value = serde_json::to_value(output).map_err(|error| {
        tracing::error!(%error, "serialising a tool result failed");
        ToolError::Internal
    })?;
    let mut result = CallToolResult::structured(value);
    result.content = vec![ContentBlock::text(output.render())];
    Ok(result)
}

fn read_only() -> ToolAnnotations {
    ToolAnnotations::new()
        .read_only(true)
        .destructive(false)
        .idempotent(true)
        .open_world(false)
}

fn writes(idempotent: bool) -> ToolAnnotations {
    ToolAnnotations::new()
        .read_only(false)
        .destructive(false)
        .idempotent(idempotent)
        .open_world(false)
}

fn entry<A, O, F, Fut>(
    name: &'static str,
    description: &'static str,
    annotations: ToolAnnotations,
    run: F,
) -> Entry
where
    A: DeserializeOwned + JsonSchema + Send + 'static,
    O: Serialize + JsonSchema + Render + 'static,
    F: Fn(Arc<AppState>, A, CallContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, ToolError>> + Send + 'static,
{
    let run = Arc::new(run);
    let handler: Handler = Arc::new(move |state, args, ctx| {
        let run = run.clone();
        Box::pin(async move {
            let args = parse::<A>(args)?;
            let output = run(state, args, ctx).await?;
            success(&output)
        })
    });
    let tool = Tool::new_with_raw(
        name,
        Some(Cow::Borrowed(description)),
        schema_for_type::<A>(),
    )
    .with_raw_output_schema(schema_for_output::<O>())
    .with_annotations(annotations);
    Entry { tool, handler }
}

/// An entry whose operation needs only the storage: `name(storage, params)`.
macro_rules! store_tool {
    ($name:literal, $description:literal, $annotations:expr, $params:ty, $op:path) => {
        $crate::tools::entry(
            $name,
            $description,
            $annotations,
            |s, a: $params, _| async move { $op(&s.storage, a).await },
        )
    };
}
use store_tool;

/// The order of `tools/list`, which clients and tests see: the order the tools were added in,
/// across the areas.
const LISTED: [&str; 19] = [
    "get_all_customers",
    "get_customer_detail",
    "get_subscription_detail",
    "get_invoice_payments",
    "pay_invoice",
    "get_data_usage",
    "get_promotions",
    "get_eligible_promotions",
    "search_knowledge_base",
    "get_security_logs",
    "get_customer_orders",
    "get_support_tickets",
    "create_support_ticket",
    "get_products",
    "get_product_detail",
    "update_subscription",
    "unlock_account",
    "get_billing_summary",
    "trouble_shoot_device",
];

/// The table of tools, built once per process.
pub struct Catalog {
    entries: Vec<Entry>,
    by_name: HashMap<String, usize>,
}

impl Catalog {
    pub fn new() -> Self {
        let mut entries: Vec<Entry> = [
            customers::entries(),
            billing::entries(),
            usage::entries(),
            catalog::entries(),
            security::entries(),
            support::entries(),
            knowledge::entries(),
            troubleshooting::entries(),
        ]
        .into_iter()
        .flatten()
        .collect();
        entries.sort_by_key(|e| LISTED.iter().position(|&name| e.tool.name == name));
        assert!(
            entries.iter().map(|e| e.tool.name.as_ref()).eq(LISTED),
            "LISTED names every tool the areas register, each once"
        );
        let by_name = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.tool.name.to_string(), i))
            .collect();
        Catalog { entries, by_name }
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.tool.name.as_ref())
    }

    fn get(&self, name: &str) -> Option<&Entry> {
        self.by_name.get(name).map(|&i| &self.entries[i])
    }

    /// Decodes and validates `arguments` for the tool `name`, runs it and renders its result:
    /// the path of every `tools/call` once the caller is authorised
    /// ([`ContosoTools::call_tool`] wraps it with the audit and panic capture), and the path the
    /// fuzz target `tool_arguments` drives. Any input gives a result or a [`ToolError`]; an
    /// unknown name is a `NotFound` error (over MCP it never gets here: it is a protocol error).
    pub async fn call(
        &self,
        name: &str,
        state: Arc<AppState>,
        arguments: Arguments,
        ctx: CallContext,
    ) -> Result<CallToolResult, ToolError> {
        let Some(entry) = self.get(name) else {
            return Err(ToolError::NotFound(format!(
                "unknown tool {:?}",
                crate::money::echo(name)
            )));
        };
        (entry.handler)(state, arguments, ctx).await
    }
}

impl Default for Catalog {
    fn default() -> Self {
        Self::new()
    }
}

/// One MCP server instance (cheap: created per request in stateless mode).
#[derive(Clone)]
pub struct ContosoTools {
    state: Arc<AppState>,
    catalog: Arc<Catalog>,
    policy: Arc<RolePolicy>,
}

impl ContosoTools {
    pub fn new(state: Arc<AppState>, catalog: Arc<Catalog>, policy: Arc<RolePolicy>) -> Self {
        ContosoTools {
            state,
            catalog,
            policy,
        }
    }

    /// The tools `identity` may call: the one list both `tools/list` and `tools/call` consult.
    pub fn visible_tools(&self, identity: &Identity) -> Vec<Tool> {
        self.catalog
            .entries
            .iter()
            .filter(|e| self.policy.check(identity, &e.tool.name).is_ok())
            .map(|e| e.tool.clone())
            .collect()
    }
}

/// The caller the authentication middleware established for this HTTP request.
fn caller(context: &RequestContext<RoleServer>) -> Option<&Identity> {
    context
        .extensions
        .get::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Identity>())
}

const INSTRUCTIONS: &str = "Contoso telecom customer-service tools. Look customers up with \
get_customer_detail (or page through get_all_customers), then drill into subscriptions, \
invoices, usage, orders, tickets and security logs. search_knowledge_base holds the policies \
(refunds, roaming, overage, late fees, SLA credits). Writes: pay_invoice, update_subscription, \
create_support_ticket, unlock_account. trouble_shoot_device is long-running and reports progress.";

impl ServerHandler for ContosoTools {
    fn get_info(&self) -> InitializeResult {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "contoso-tools-service",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let tools = caller(&context)
            .map(|identity| self.visible_tools(identity))
            .unwrap_or_default();
        // The list depends on the caller's roles: no cache may share it between callers.
        Ok(ListToolsResult::with_all_items(tools)
            .with_ttl_ms(0)
            .with_cache_scope(CacheScope::Private))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.catalog.get(name).map(|e| e.tool.clone())
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let request_id = context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(shared::http::request_id)
            .map(str::to_owned);
        // The tool's span covers the whole call, its audit event included, so that the event's
        // log line carries the trace id. rmcp runs this in a task of its own: the span's parent
        // is the request's MCP span, found on the request.
        let name = request.name.to_string();
        let span = tracing::info_span!(
            "tool",
            otel.name = name,
            otel.kind = "internal",
            otel.status_code = tracing::field::Empty,
            gen_ai.tool.name = name,
            error.r#type = tracing::field::Empty,
        );
        if let Some(parts) = context.extensions.get::<axum::http::request::Parts>() {
            shared::telemetry::parent_of(&span, &parts.extensions);
        }
        // The handler is wrapped on its own (below, so the audit records the failure); this
        // covers the rest of the call.
        shared::mcp::answer_panics(
            request_id.as_deref(),
            self.answer_call(request, context, request_id.as_deref()),
        )
        .instrument(span)
        .await
        .and_then(|answer| answer)
    }
}

impl ContosoTools {
    async fn answer_call(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
        request_id: Option<&str>,
    ) -> Result<CallToolResponse, McpError> {
        let name = request.name.as_ref();
        let parts = context.extensions.get::<axum::http::request::Parts>();
        let identity = caller(&context);
        let audit = self
            .state
            .audit
            .begin(name, identity, request_id, request.arguments.as_ref());
        if self.catalog.get(name).is_none() {
            audit.finish(Outcome::refused("unknown_tool", None)).await;
            return Err(McpError::invalid_params(
                format!("unknown tool {:?}", crate::money::echo(name)),
                None,
            ));
        }
        let Some(identity) = identity else {
            // Unreachable behind the authentication middleware; refuse rather than assume.
            audit
                .finish(Outcome::refused("unauthenticated", None))
                .await;
            return Ok(CallToolResult::error(vec![ContentBlock::text("not authenticated")]).into());
        };
        if let Err(missing) = self.policy.check(identity, name) {
            audit
                .finish(Outcome::refused("missing_role", Some(missing.to_string())))
                .await;
            return Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                "not allowed: {missing}"
            ))])
            .into());
        }
        let ctx = CallContext {
            identity: identity.clone(),
            progress: context.meta.get_progress_token().map(|token| McpProgress {
                peer: context.peer.clone(),
                token,
            }),
            cancel: context.ct.clone(),
        };
        let arguments = match raw::RawArguments::for_request(parts, &context.id) {
            Some(text) => Arguments::Text(text.unwrap_or_else(|| Arc::from("{}"))),
            None => Arguments::Value(request.arguments.clone().unwrap_or_default()),
        };
        // The tool's span, opened by `call_tool`.
        let span = tracing::Span::current();
        let outcome = shared::mcp::answer_panics(
            request_id,
            self.catalog.call(name, self.state.clone(), arguments, ctx),
        )
        .await;
        let result = match outcome {
            Ok(Ok(result)) => {
                audit.finish(Outcome::Ok).await;
                result
            }
            Ok(Err(error)) => {
                span.record("error.type", error.kind());
                if matches!(error, ToolError::Internal | ToolError::Busy) {
                    span.record("otel.status_code", "ERROR");
                }
                audit.finish(Outcome::tool_error(error.kind())).await;
                CallToolResult::error(vec![ContentBlock::text(error.for_caller(request_id))])
            }
            Err(panicked) => {
                audit.finish(Outcome::tool_error("internal")).await;
                return Err(panicked);
            }
        };
        Ok(result.into())
    }
}
