//! The soak's clients and what they send through the gateway: the kinds of request, the mix each
//! client cycles through, and what counts as a proper answer to each.
//!
//! A proper answer is what a well-behaved service gives: a result for a good request, a refusal
//! (4xx, a JSON-RPC error, a tool error) for a bad one, the server closing a connection that
//! misbehaves. Anything else is an error of that kind: a 5xx, a hang past the request time-out, a
//! connection dropped without an answer, a bad request accepted, a misbehaving connection still
//! open at the soak's limit. A 429 (the gateway's per-tenant rate limit) is neither: it is
//! counted apart. The soak reports what it sees; it assumes no particular bound or default.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use reqwest::{StatusCode, header::CONTENT_TYPE};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::{
    raw::{self, Held, RawTarget},
    stack::ChildStack,
};
use crate::{idp::defaults, load};

/// What a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A read-only tool call.
    Tool,
    /// A question to an expert (the offline planner answers).
    Expert,
    /// A call with a `progressToken`, its event stream dropped after the first progress event.
    Progress,
    /// A legacy MCP session initialized and then abandoned.
    Session,
    /// Garbage JSON, wrong arguments, bad tokens.
    BadInput,
    /// A body of [`OVERSIZED_BYTES`].
    Oversized,
    /// A raw connection that sends half a request head and waits.
    Slow,
    /// A raw connection left idle after one request.
    Idle,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Tool,
        Kind::Expert,
        Kind::Progress,
        Kind::Session,
        Kind::BadInput,
        Kind::Oversized,
        Kind::Slow,
        Kind::Idle,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Kind::Tool => "tool",
            Kind::Expert => "expert",
            Kind::Progress => "progress",
            Kind::Session => "session",
            Kind::BadInput => "bad input",
            Kind::Oversized => "oversized",
            Kind::Slow => "slow",
            Kind::Idle => "idle",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What each client cycles through (each from its own offset): mostly ordinary calls, some
/// hostile ones. Slow and idle connections are held in the background, at most as many at once
/// as there are clients.
const MIX: [Kind; 20] = [
    Kind::Tool,
    Kind::Expert,
    Kind::BadInput,
    Kind::Tool,
    Kind::Session,
    Kind::Progress,
    Kind::Tool,
    Kind::Slow,
    Kind::Expert,
    Kind::BadInput,
    Kind::Tool,
    Kind::Oversized,
    Kind::Tool,
    Kind::Idle,
    Kind::Session,
    Kind::Expert,
    Kind::Tool,
    Kind::BadInput,
    Kind::Progress,
    Kind::Tool,
];

/// The oversized body: twice the 1 MiB a service is expected to accept.
pub const OVERSIZED_BYTES: usize = 2 * 1024 * 1024;

/// The protocol version of a legacy client, which gets a session when it initializes.
const LEGACY_PROTOCOL: &str = "2025-11-25";

/// Distinct people per tenant: sessions are capped per person, so a few suffice to show it.
const SUBJECTS: usize = 4;

/// How one request ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Ok,
    /// 429: the gateway's rate limit.
    Limited,
    Error(String),
}

/// Counts of what every client did, read by the sampler.
#[derive(Debug, Default)]
pub struct Tally {
    done: [AtomicU64; 8],
    errors: [AtomicU64; 8],
    limited: AtomicU64,
    /// Errors by kind and description, for the summary.
    messages: Mutex<BTreeMap<(Kind, String), u64>>,
    /// Seconds after which the server closed each held connection, by kind.
    closed_after: Mutex<BTreeMap<Kind, Vec<f64>>>,
}

/// Distinct error descriptions kept; more are counted under one line.
const MAX_MESSAGES: usize = 200;

/// The counters at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    pub done: [u64; 8],
    pub errors: [u64; 8],
    pub limited: u64,
}

impl Counts {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Counts) -> Counts {
        let minus = |a: [u64; 8], b: [u64; 8]| std::array::from_fn(|i| a[i].saturating_sub(b[i]));
        Counts {
            done: minus(self.done, earlier.done),
            errors: minus(self.errors, earlier.errors),
            limited: self.limited.saturating_sub(earlier.limited),
        }
    }
}

impl Tally {
    pub fn record(&self, kind: Kind, outcome: Outcome) {
        self.done[kind.index()].fetch_add(1, Ordering::Relaxed);
        match outcome {
            Outcome::Ok => {}
            Outcome::Limited => {
                self.limited.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Error(message) => {
                self.errors[kind.index()].fetch_add(1, Ordering::Relaxed);
                let mut messages = self.messages.lock().unwrap_or_else(PoisonError::into_inner);
                let key = if messages.len() < MAX_MESSAGES
                    || messages.contains_key(&(kind, message.clone()))
                {
                    (kind, message)
                } else {
                    (kind, "(other errors)".to_owned())
                };
                *messages.entry(key).or_default() += 1;
            }
        }
    }

    fn record_held(&self, kind: Kind, held: Held, hold: Duration) {
        let outcome = match held {
            Held::Closed(after) => {
                self.closed_after
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entry(kind)
                    .or_default()
                    .push(after.as_secs_f64());
                Outcome::Ok
            }
            Held::StillOpen => Outcome::Error(format!(
                "still open after the soak's limit of {} s",
                hold.as_secs()
            )),
            Held::Failed(why) => Outcome::Error(why),
        };
        self.record(kind, outcome);
    }

    pub fn counts(&self) -> Counts {
        let load = |a: &[AtomicU64; 8]| std::array::from_fn(|i| a[i].load(Ordering::Relaxed));
        Counts {
            done: load(&self.done),
            errors: load(&self.errors),
            limited: self.limited.load(Ordering::Relaxed),
        }
    }

    /// Every error description with its count, by kind.
    pub fn messages(&self) -> Vec<(Kind, String, u64)> {
        let messages = self.messages.lock().unwrap_or_else(PoisonError::into_inner);
        messages
            .iter()
            .map(|((kind, message), n)| (*kind, message.clone(), *n))
            .collect()
    }

    /// After how many seconds the server closed the held connections of `kind`.
    pub fn closed_after(&self, kind: Kind) -> Vec<f64> {
        let closed = self
            .closed_after
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        closed.get(&kind).cloned().unwrap_or_default()
    }
}

/// Someone allowed on a route: its URL and their token.
#[derive(Debug, Clone)]
struct Caller {
    url: String,
    path: String,
    token: String,
}

/// A client's own legacy session on the experts' route. With `MCP_SESSIONS=true` a client of
/// protocol 2025-11-25 must initialize before it asks anything, so every request of a client to
/// the experts goes inside its own session (as its own person, so the sessions that other
/// requests open and abandon never evict it); opened on first use and again after a 404.
#[derive(Debug)]
struct Own {
    caller: Caller,
    session: Option<String>,
}

impl Own {
    /// A POST of `body` in the session, opening one first if there is none.
    async fn post(
        &mut self,
        http: &reqwest::Client,
        body: impl Into<reqwest::Body>,
    ) -> Result<reqwest::RequestBuilder, Outcome> {
        let id = match &self.session {
            Some(id) => id.clone(),
            None => {
                let id = open_session(http, &self.caller).await?;
                self.session = Some(id.clone());
                id
            }
        };
        Ok(in_session(http, &self.caller, &id, body))
    }

    /// Sends `request`; a 404 means the session has ended, and the next request opens another.
    async fn send(
        &mut self,
        request: Result<reqwest::RequestBuilder, Outcome>,
    ) -> Result<reqwest::Response, Outcome> {
        let response = request?
            .send()
            .await
            .map_err(|e| Outcome::Error(describe(&e)))?;
        if response.status() == StatusCode::NOT_FOUND {
            self.session = None;
        }
        Ok(response)
    }
}

/// A POST of `body` within session `id`, as a legacy client sends it.
fn in_session(
    http: &reqwest::Client,
    caller: &Caller,
    id: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::RequestBuilder {
    load::mcp_post(http, &caller.url, Some(&caller.token), body)
        .header("mcp-protocol-version", LEGACY_PROTOCOL)
        .header("mcp-session-id", id)
}

/// Everything the clients send to, made once from the running stack.
#[derive(Debug)]
pub struct Targets {
    /// One per tools route, admitted tenant and subject.
    tools: Vec<Caller>,
    /// One per admitted tenant and subject of the experts' route.
    experts: Vec<Caller>,
    /// One per client, for its own session on the experts' route.
    own: Vec<Caller>,
    gateway_addr: String,
    /// Tokens that must be refused: (what is wrong, token), for the first tools route.
    wrong_tokens: Vec<(&'static str, Option<String>)>,
    /// The oversized bodies: a tool call and an expert question.
    oversized_tool: Bytes,
    oversized_expert: Bytes,
}

impl Targets {
    /// Tokens valid for `lifetime`, for every route of `stack`.
    pub fn new(stack: &ChildStack, clients: usize, lifetime: Duration) -> anyhow::Result<Targets> {
        let mut tools = Vec::new();
        let mut experts = Vec::new();
        for route in &stack.routes {
            for tenant in route.tenants {
                for subject in 0..SUBJECTS {
                    let caller = Caller {
                        url: route.url.clone(),
                        path: route.path.clone(),
                        token: stack.token(route, tenant, &format!("soak-{subject}"), lifetime),
                    };
                    if route.name == crate::topology::CONTOSO_AGENTS.name {
                        experts.push(caller);
                    } else {
                        tools.push(caller);
                    }
                }
            }
        }
        anyhow::ensure!(
            !tools.is_empty() && !experts.is_empty(),
            "the stack has no tools route or no experts' route that admits a tenant"
        );
        let contoso = stack.route(crate::topology::CONTOSO.name)?;
        let agents = stack.route(crate::topology::CONTOSO_AGENTS.name)?;
        let own = (0..clients)
            .map(|id| Caller {
                url: agents.url.clone(),
                path: agents.path.clone(),
                token: stack.token(
                    agents,
                    agents.tenants[id % agents.tenants.len()],
                    &format!("soak-client-{id}"),
                    lifetime,
                ),
            })
            .collect();
        let wrong_tokens = vec![
            ("no token", None),
            ("not a JWT", Some("not-a-jwt".to_owned())),
            ("expired", Some(stack.expired_token(contoso))),
            (
                "for another route",
                Some(stack.token(agents, defaults::CONTOSO, "soak-0", lifetime)),
            ),
            (
                "a tenant the route does not admit",
                Some(stack.token(contoso, defaults::WOODGROVE, "soak-0", lifetime)),
            ),
        ];
        let filler = "a".repeat(OVERSIZED_BYTES);
        let oversized_tool = call_body("search_knowledge_base", json!({ "query": filler }), None);
        let oversized_expert = call_body("ask_billing_expert", json!({ "question": filler }), None);
        Ok(Targets {
            tools,
            experts,
            own,
            gateway_addr: stack.gateway_addr.clone(),
            wrong_tokens,
            oversized_tool: Bytes::from(oversized_tool),
            oversized_expert: Bytes::from(oversized_expert),
        })
    }
}

/// A `tools/call` request body, under an id of its own: within a session a request may not
/// reuse the id of one still running (the services refuse it), and the legacy clients' requests
/// go in their sessions.
fn call_body(name: &str, arguments: Value, progress_token: Option<String>) -> Vec<u8> {
    static IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let id = IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut params = json!({ "name": name, "arguments": arguments });
    if let Some(token) = progress_token {
        params["_meta"] = json!({ "progressToken": token });
    }
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})
        .to_string()
        .into_bytes()
}

/// How the clients behave.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Requests per second of one client, at most.
    pub per_second: f64,
    /// How long a request may take before it counts as a hang.
    pub request_timeout: Duration,
    /// How long a slow or idle connection is held before the soak gives up on the server
    /// closing it.
    pub hold: Duration,
}

/// Checks that the stack answers a tool call and an expert question through the gateway, so a
/// broken start fails at once rather than as a table of errors.
pub async fn preflight(targets: &Targets, settings: &ClientSettings) -> anyhow::Result<()> {
    let http = http_client(settings)?;
    let mut conversation = None;
    if let Outcome::Error(why) = tool_call(&http, &targets.tools[0], 0).await {
        anyhow::bail!("a tool call through the gateway failed: {why}");
    }
    let mut own = Own {
        caller: targets.own[0].clone(),
        session: None,
    };
    if let Outcome::Error(why) = expert(&http, &mut own, 0, &mut conversation).await {
        anyhow::bail!("an expert question through the gateway failed: {why}");
    }
    Ok(())
}

fn http_client(settings: &ClientSettings) -> anyhow::Result<reqwest::Client> {
    // Our own stack on loopback: a proxy from the environment has no business here.
    Ok(reqwest::Client::builder()
        .no_proxy()
        .timeout(settings.request_timeout)
        .pool_max_idle_per_host(2)
        .build()?)
}

/// One client: cycles through [`MIX`] from its own offset at `settings.per_second` until `stop`.
/// Slow and idle connections run in the background while `held` has a permit.
pub async fn client(
    id: usize,
    targets: Arc<Targets>,
    tally: Arc<Tally>,
    settings: ClientSettings,
    held: Arc<Semaphore>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let http = http_client(&settings)?;
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / settings.per_second));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = [0usize; 8];
    let mut conversation = None;
    let mut own = Own {
        caller: targets.own[id % targets.own.len()].clone(),
        session: None,
    };
    let mut n = id * 7;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = ticks.tick() => {}
        }
        let kind = MIX[n % MIX.len()];
        n += 1;
        // Spread each kind over callers and variants, differently per client.
        let k = seq[kind.index()] * 31 + id;
        seq[kind.index()] += 1;
        let tools = &targets.tools[k % targets.tools.len()];
        let experts = &targets.experts[k % targets.experts.len()];
        let outcome = match kind {
            Kind::Tool => tool_call(&http, tools, k).await,
            Kind::Expert => expert(&http, &mut own, k, &mut conversation).await,
            Kind::Progress => progress(&http, tools, &mut own, k, &settings).await,
            Kind::Session => session(&http, experts, k).await,
            Kind::BadInput => bad_input(&http, &targets, tools, &mut own, k).await,
            Kind::Oversized => oversized(&http, &targets, tools, &mut own, k).await,
            Kind::Slow | Kind::Idle => {
                if let Ok(permit) = held.clone().try_acquire_owned() {
                    let target = RawTarget {
                        addr: targets.gateway_addr.clone(),
                        path: tools.path.clone(),
                        token: tools.token.clone(),
                    };
                    let (tally, stop, hold) = (tally.clone(), stop.clone(), settings.hold);
                    tokio::spawn(async move {
                        let held = async {
                            match kind {
                                Kind::Slow => raw::half_head(&target, k % 2 == 1, hold).await,
                                _ => raw::idle(&target, hold).await,
                            }
                        };
                        tokio::select! {
                            _ = stop.cancelled() => {}
                            held = held => tally.record_held(kind, held, hold),
                        }
                        drop(permit);
                    });
                }
                continue;
            }
        };
        if !stop.is_cancelled() {
            tally.record(kind, outcome);
        }
    }
}

/// A read-only tool call of some variety.
async fn tool_call(http: &reqwest::Client, caller: &Caller, k: usize) -> Outcome {
    // Customers both backends have: 1-120 and the scenario customers 251-259.
    let customer = if k.is_multiple_of(3) {
        251 + k % 9
    } else {
        1 + k % 120
    };
    let (name, arguments) = match k % 6 {
        0 => ("get_customer_detail", json!({ "customer_id": customer })),
        1 => ("get_billing_summary", json!({ "customer_id": customer })),
        2 => (
            "search_knowledge_base",
            json!({ "query": "roaming charges abroad" }),
        ),
        3 => ("get_support_tickets", json!({ "customer_id": customer })),
        4 => ("get_products", json!({})),
        _ => ("get_all_customers", json!({ "limit": 20 })),
    };
    let body = call_body(name, arguments, None);
    let response = load::mcp_post(http, &caller.url, Some(&caller.token), body).send();
    match answer(sent(response.await)).await {
        Ok((status, body)) => judge_call(status, &body),
        Err(failed) => failed,
    }
}

/// The questions the experts are asked, by expert.
const QUESTIONS: [(&str, &str); 4] = [
    (
        "ask_billing_expert",
        "Why is my bill so high this month? I am customer 251.",
    ),
    (
        "ask_product_expert",
        "Which plans could I upgrade to? I am customer 255.",
    ),
    (
        "ask_billing_expert",
        "Is anything overdue on my account? I am customer 258.",
    ),
    (
        "ask_account_expert",
        "My account is locked, what can I do? I am customer 254.",
    ),
];

/// A question to an expert; every other one continues the client's previous conversation.
async fn expert(
    http: &reqwest::Client,
    own: &mut Own,
    k: usize,
    conversation: &mut Option<String>,
) -> Outcome {
    let (tool, question) = QUESTIONS[k % QUESTIONS.len()];
    let mut arguments = json!({ "question": question });
    if let Some(id) = conversation.take() {
        arguments["conversation_id"] = id.into();
    }
    let request = own.post(http, call_body(tool, arguments, None)).await;
    let (status, body) = match answer(own.send(request).await).await {
        Ok(answered) => answered,
        Err(failed) => return failed,
    };
    let outcome = judge_call(status, &body);
    if outcome != Outcome::Ok {
        return outcome;
    }
    let answer = &body["result"]["structuredContent"];
    if answer["status"] == "error" {
        return Outcome::Error(format!(
            "the expert answered status error: {}",
            short(&answer["error"].to_string())
        ));
    }
    if k.is_multiple_of(2) {
        *conversation = answer["conversation_id"].as_str().map(str::to_owned);
    }
    Outcome::Ok
}

/// A long call with a progress token (the device diagnosis directly, or an expert that runs it),
/// whose event stream is dropped as soon as the first progress notification arrives.
async fn progress(
    http: &reqwest::Client,
    tools: &Caller,
    own: &mut Own,
    k: usize,
    settings: &ClientSettings,
) -> Outcome {
    let token = Some(format!("soak-{k}"));
    let response = if k.is_multiple_of(2) {
        let arguments = json!({ "customer_id": 252, "device": "home router" });
        let body = call_body("trouble_shoot_device", arguments, token);
        sent(
            load::mcp_post(http, &tools.url, Some(&tools.token), body)
                .send()
                .await,
        )
    } else {
        let arguments = json!({ "question": "My internet is very slow. I am customer 252." });
        let request = own
            .post(http, call_body("ask_account_expert", arguments, token))
            .await;
        own.send(request).await
    };
    let mut response = match response {
        Ok(response) => response,
        Err(failed) => return failed,
    };
    let status = response.status();
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Outcome::Limited;
    }
    if !status.is_success() {
        return Outcome::Error(format!("HTTP {}", status.as_u16()));
    }
    let mut seen = Vec::new();
    let first_progress = async {
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    seen.extend_from_slice(&chunk);
                    if find(&seen, b"notifications/progress") {
                        return Outcome::Ok;
                    }
                    if seen.len() > 1024 * 1024 {
                        return Outcome::Error("1 MiB of stream without progress".into());
                    }
                }
                Ok(None) => {
                    return Outcome::Error(
                        "the answer ended without a progress notification".into(),
                    );
                }
                Err(e) => return Outcome::Error(describe(&e)),
            }
        }
    };
    // Then `response` is dropped mid-stream: the connection closes under the server.
    tokio::time::timeout(settings.request_timeout, first_progress)
        .await
        .unwrap_or_else(|_| Outcome::Error("no progress notification in time".into()))
}

/// A legacy client's `initialize` and `notifications/initialized` (and on every other one a
/// question in the session), then nothing more: the session is abandoned, never deleted.
async fn session(http: &reqwest::Client, caller: &Caller, k: usize) -> Outcome {
    let id = match open_session(http, caller).await {
        Ok(id) => id,
        Err(failed) => return failed,
    };
    if k % 2 == 1 {
        // A question starts the session's conversation, left behind with it.
        let (tool, question) = QUESTIONS[k / 2 % QUESTIONS.len()];
        let ask = call_body(tool, json!({ "question": question }), None);
        let response = in_session(http, caller, &id, ask).send();
        return match answer(sent(response.await)).await {
            Ok((status, body)) => judge_call(status, &body),
            Err(failed) => failed,
        };
    }
    Outcome::Ok
}

/// Initializes a legacy session as `caller` (`initialize`, then `notifications/initialized`);
/// its `Mcp-Session-Id`.
async fn open_session(http: &reqwest::Client, caller: &Caller) -> Result<String, Outcome> {
    let hello = json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {
            "protocolVersion": LEGACY_PROTOCOL,
            "capabilities": {},
            "clientInfo": {"name": "soak-legacy-client", "version": "1"}
        }
    });
    let response = load::mcp_post(http, &caller.url, Some(&caller.token), hello.to_string())
        .header("mcp-protocol-version", LEGACY_PROTOCOL)
        .send()
        .await;
    let response = sent(response)?;
    let session = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (status, body) = answer(Ok(response)).await?;
    let outcome = judge_call(status, &body);
    if outcome != Outcome::Ok {
        return Err(outcome);
    }
    let id = session.ok_or_else(|| Outcome::Error("initialize gave no Mcp-Session-Id".into()))?;
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let response = sent(
        in_session(http, caller, &id, initialized.to_string())
            .send()
            .await,
    )?;
    match response.status() {
        status if status.is_success() => Ok(id),
        StatusCode::TOO_MANY_REQUESTS => Err(Outcome::Limited),
        status => Err(Outcome::Error(format!(
            "notifications/initialized: HTTP {}",
            status.as_u16()
        ))),
    }
}

/// A request that must be refused: bad JSON, bad arguments, a bad token.
async fn bad_input(
    http: &reqwest::Client,
    targets: &Targets,
    tools: &Caller,
    own: &mut Own,
    k: usize,
) -> Outcome {
    let call = |name: &str, arguments: Value| call_body(name, arguments, None);
    // `None`: to the experts, in the client's own session.
    let (caller, body): (Option<&Caller>, Vec<u8>) = match k % 14 {
        0 => (
            Some(tools),
            br#"{"jsonrpc": "2.0", "id": 1, "method": "#.to_vec(),
        ),
        1 => (None, b"this is not JSON {{{{".to_vec()),
        2 => (
            Some(tools),
            call("get_customer_detail", json!({"customer_id": "two hundred"})),
        ),
        3 => (Some(tools), call("drop_all_tables", json!({}))),
        // The edge of the calendar, without and with a start date.
        4 => (
            Some(tools),
            call(
                "get_data_usage",
                json!({"subscription_id": 1, "end_date": "-262143-01-01"}),
            ),
        ),
        5 => (
            Some(tools),
            call(
                "get_data_usage",
                json!({"subscription_id": 1, "start_date": "-262143-01-01", "end_date": "+262142-12-31"}),
            ),
        ),
        // JSON nested 100,000 deep.
        6 => {
            let deep = format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{"x":{}{}}}}}"#,
                "[".repeat(100_000),
                "]".repeat(100_000)
            );
            (Some(tools), deep.into_bytes())
        }
        7 => (None, call("ask_billing_expert", json!({"question": 42}))),
        8 => (
            None,
            call(
                "ask_billing_expert",
                json!({"question": "Hi", "conversation_id": "conv_bogus"}),
            ),
        ),
        9 => (
            Some(tools),
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/destroy"})
                .to_string()
                .into_bytes(),
        ),
        wrong => {
            // The bad tokens, all on the first tools route (the one they were made for).
            let which = (k / 14 + wrong) % targets.wrong_tokens.len();
            let (what, token) = &targets.wrong_tokens[which];
            let body = call("get_customer_detail", json!({"customer_id": 251}));
            let first = &targets.tools[0];
            let request = load::mcp_post(http, &first.url, token.as_deref(), body);
            let outcome = match answer(sent(request.send().await)).await {
                Ok((status, body)) => judge_refusal(status, &body),
                Err(failed) => failed,
            };
            return match outcome {
                Outcome::Error(why) => Outcome::Error(format!("token {what}: {why}")),
                other => other,
            };
        }
    };
    let response = match caller {
        Some(caller) => sent(
            load::mcp_post(http, &caller.url, Some(&caller.token), body)
                .send()
                .await,
        ),
        None => {
            let request = own.post(http, body).await;
            own.send(request).await
        }
    };
    let outcome = match answer(response).await {
        Ok((status, body)) => judge_refusal(status, &body),
        Err(failed) => failed,
    };
    match outcome {
        Outcome::Error(why) => Outcome::Error(format!("{}: {why}", BAD_INPUTS[k % 14])),
        other => other,
    }
}

/// What is wrong with each bad input of [`bad_input`], by variant.
const BAD_INPUTS: [&str; 10] = [
    "truncated JSON",
    "not JSON",
    "wrong argument type",
    "unknown tool",
    "calendar-edge end_date",
    "calendar-edge date range",
    "JSON nested 100,000 deep",
    "expert: wrong argument type",
    "expert: unknown conversation_id",
    "unknown method",
];

/// A 2 MiB body with a valid token: a tool call or an expert question.
async fn oversized(
    http: &reqwest::Client,
    targets: &Targets,
    tools: &Caller,
    own: &mut Own,
    k: usize,
) -> Outcome {
    let response = if k.is_multiple_of(2) {
        let body = targets.oversized_tool.clone();
        sent(
            load::mcp_post(http, &tools.url, Some(&tools.token), body)
                .send()
                .await,
        )
    } else {
        let request = own.post(http, targets.oversized_expert.clone()).await;
        own.send(request).await
    };
    match answer(response).await {
        Ok((status, body)) => judge_refusal(status, &body),
        Err(failed) => failed,
    }
}

/// The status and JSON-RPC message of an answer (plain JSON, or the last message of an event
/// stream); `Null` for a body that is neither. A transport failure is the `Err` outcome.
async fn answer(
    response: Result<reqwest::Response, Outcome>,
) -> Result<(StatusCode, Value), Outcome> {
    let response = response?;
    let status = response.status();
    let stream = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let bytes = response
        .bytes()
        .await
        .map_err(|e| Outcome::Error(describe(&e)))?;
    let body = if stream {
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
            .rfind(|message| message.get("result").is_some() || message.get("error").is_some())
            .unwrap_or(Value::Null)
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    Ok((status, body))
}

/// A transport failure as an outcome.
fn sent(response: Result<reqwest::Response, reqwest::Error>) -> Result<reqwest::Response, Outcome> {
    response.map_err(|e| Outcome::Error(describe(&e)))
}

/// A request that should have succeeded.
fn judge_call(status: StatusCode, body: &Value) -> Outcome {
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Outcome::Limited;
    }
    if !status.is_success() {
        return Outcome::Error(format!("HTTP {}", status.as_u16()));
    }
    if let Some(error) = body.get("error") {
        return Outcome::Error(format!(
            "JSON-RPC error: {}",
            short(&error["message"].to_string())
        ));
    }
    if body["result"]["isError"] == json!(true) {
        let text = &body["result"]["content"][0]["text"];
        return Outcome::Error(format!("tool error: {}", short(&text.to_string())));
    }
    if body.get("result").is_none() {
        return Outcome::Error("a success without a JSON-RPC result".into());
    }
    Outcome::Ok
}

/// A request that should have been refused: any 4xx, a JSON-RPC error or a tool error is right.
fn judge_refusal(status: StatusCode, body: &Value) -> Outcome {
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Outcome::Limited;
    }
    if status.is_client_error() {
        return Outcome::Ok;
    }
    if !status.is_success() {
        return Outcome::Error(format!("HTTP {}", status.as_u16()));
    }
    if body.get("error").is_some() || body["result"]["isError"] == json!(true) {
        return Outcome::Ok;
    }
    Outcome::Error(format!("accepted (HTTP {})", status.as_u16()))
}

/// A transport failure in words, without the URL: the same failure reads the same on every route.
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "no answer within the request time-out".into();
    }
    let mut words = Vec::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(error);
    while let Some(cause) = source {
        words.push(cause.to_string());
        source = cause.source();
    }
    let what = if error.is_connect() {
        "connect"
    } else if error.is_body() || error.is_decode() {
        "reading the answer"
    } else {
        "sending"
    };
    short(&format!("{what}: {}", words.join(": ")))
}

fn short(text: &str) -> String {
    const MAX: usize = 120;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut}...")
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_and_refusals_are_judged_by_what_a_good_service_answers() {
        let ok = json!({"result": {"content": [], "isError": false}});
        let tool_error =
            json!({"result": {"content": [{"type": "text", "text": "no"}], "isError": true}});
        let rpc_error = json!({"error": {"code": -32602, "message": "bad"}});
        assert_eq!(judge_call(StatusCode::OK, &ok), Outcome::Ok);
        assert!(matches!(
            judge_call(StatusCode::OK, &tool_error),
            Outcome::Error(_)
        ));
        assert!(matches!(
            judge_call(StatusCode::OK, &rpc_error),
            Outcome::Error(_)
        ));
        assert_eq!(
            judge_call(StatusCode::TOO_MANY_REQUESTS, &Value::Null),
            Outcome::Limited
        );
        assert_eq!(
            judge_call(StatusCode::BAD_GATEWAY, &Value::Null),
            Outcome::Error("HTTP 502".into())
        );

        assert_eq!(
            judge_refusal(StatusCode::PAYLOAD_TOO_LARGE, &Value::Null),
            Outcome::Ok
        );
        assert_eq!(
            judge_refusal(StatusCode::UNAUTHORIZED, &Value::Null),
            Outcome::Ok
        );
        assert_eq!(judge_refusal(StatusCode::OK, &tool_error), Outcome::Ok);
        assert_eq!(judge_refusal(StatusCode::OK, &rpc_error), Outcome::Ok);
        assert_eq!(
            judge_refusal(StatusCode::TOO_MANY_REQUESTS, &Value::Null),
            Outcome::Limited
        );
        assert!(matches!(
            judge_refusal(StatusCode::OK, &ok),
            Outcome::Error(_)
        ));
        assert!(matches!(
            judge_refusal(StatusCode::INTERNAL_SERVER_ERROR, &Value::Null),
            Outcome::Error(_)
        ));
    }

    #[test]
    fn the_tally_counts_by_kind_and_keeps_error_descriptions() {
        let tally = Tally::default();
        tally.record(Kind::Tool, Outcome::Ok);
        tally.record(Kind::Tool, Outcome::Limited);
        tally.record(Kind::Expert, Outcome::Error("HTTP 500".into()));
        tally.record(Kind::Expert, Outcome::Error("HTTP 500".into()));
        let before = tally.counts();
        assert_eq!(before.done[Kind::Tool.index()], 2);
        assert_eq!(before.errors[Kind::Expert.index()], 2);
        assert_eq!(before.limited, 1);
        assert_eq!(tally.messages(), [(Kind::Expert, "HTTP 500".to_owned(), 2)]);
        tally.record(Kind::Slow, Outcome::Ok);
        let delta = tally.counts().since(&before);
        assert_eq!(delta.done[Kind::Slow.index()], 1);
        assert_eq!(delta.done[Kind::Tool.index()], 0);
    }

    #[test]
    fn every_kind_is_in_the_mix() {
        for kind in Kind::ALL {
            assert!(MIX.contains(&kind), "{kind:?}");
            assert_eq!(Kind::ALL[kind.index()], kind);
        }
    }
}
