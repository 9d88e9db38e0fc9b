//! OpenTelemetry across the platform, on the real binaries: one question asked through the
//! gateway is one trace over the gateway, the agent service and the tools service, with the
//! spans, attributes, metrics and log lines an operator relies on, and without a token or a
//! customer's words in any of it; a dead collector costs no request; the Prometheus endpoint
//! serves the same metrics.
//!
//! What reaches the collector is what rotel (`testkit::otel`) received and printed; the test that
//! needs it is skipped with a note when it is not installed, unless `REQUIRE_OTEL_COLLECTOR=1`.

mod common;
mod platform;
mod scripted_model;

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    fmt::Write,
    hash::BuildHasher,
    time::{Duration, Instant},
};

use devstack::idp::defaults::CONTOSO;
use platform::{EXPERT_TOOL, Export, Exports, Issuer, MODEL, Platform, ROUTE, call};
use scripted_model::{COMPLETION_TOKENS, PROMPT_TOKENS, Scripted};
use serde_json::{Value, json};
use testkit::otel::{self, Collector, Metric, Span, SpanKind};

/// What the caller asks: distinctive, so that finding it anywhere in what was exported is
/// certain to be a leak of the tool's argument (the conversation's words are customers' data).
const QUESTION: &str =
    "Why did my bill jump after the okapi-umbrella-4182 visit? I am customer 251.";
/// What the model answers: as private as the question.
const ANSWER: &str = "Your invoice rose by the pelican-lantern-9067 roaming fee.";
/// The two tools the model calls, and the store operation each must reach.
const TOOLS: [(&str, &str); 2] = [
    ("get_customer_detail", "customer"),
    ("get_billing_summary", "invoices"),
];
/// How long exported telemetry may take to arrive: spans are sent every 100 ms and metrics every
/// 500 ms (see `platform::telemetry_env`); the margin is for a machine busy building.
const ARRIVAL: Duration = Duration::from_secs(15);

/// The model's script for one question: both tools at once, then the answer.
fn replies() -> Vec<Scripted> {
    let customer = json!({"customer_id": 251});
    vec![
        Scripted::ToolCalls(TOOLS.map(|(tool, _)| (tool, customer.clone())).to_vec()),
        Scripted::Text(ANSWER),
    ]
}

/// Whether every span of the question's trace has arrived. A service exports its spans in the
/// order they end, and a request's span ends after everything in it: so once the gateway's and
/// the agent's request spans are in, and the tools service's request span under each of the
/// agent's two tool calls (the last of its requests), so is the rest.
fn all_arrived(spans: &[Span], trace_id: &str) -> bool {
    let trace: Vec<&Span> = spans.iter().filter(|s| s.trace_id == trace_id).collect();
    let has = |service: &str, name: &str| {
        trace
            .iter()
            .any(|s| s.service_name == service && s.name == name)
    };
    let served_under = |tool: &str| {
        trace
            .iter()
            .filter(|s| s.service_name == "agent-service" && s.name == format!("tools/call {tool}"))
            .any(|call| {
                trace.iter().any(|s| {
                    s.service_name == "tools-service"
                        && s.parent_id.as_deref() == Some(call.span_id.as_str())
                })
            })
    };
    has("gateway", &format!("POST {ROUTE}"))
        && has("agent-service", "POST /mcp")
        && TOOLS.iter().all(|(tool, _)| served_under(tool))
}

/// A W3C `traceparent` of a trace and a caller's span nobody else uses: `(header, trace id,
/// span id)`.
fn caller_context() -> (String, String, String) {
    let random = || std::collections::hash_map::RandomState::new().hash_one(0u8) | 1;
    let trace = format!("{:016x}{:016x}", random(), random());
    let span = format!("{:016x}", random());
    (format!("00-{trace}-{span}-01"), trace, span)
}

#[tokio::test]
async fn one_question_through_the_gateway_is_one_trace_across_the_three_services() {
    if !otel::installed() {
        return;
    }
    let collector = Collector::start().await;
    let issuer = Issuer::start().await;
    // Both transports: the agent over gRPC, the others over HTTP/protobuf.
    let http = Export {
        endpoint: collector.http_endpoint(),
        protocol: "http/protobuf",
    };
    let exports = Exports {
        gateway: http.clone(),
        agent: Export {
            endpoint: collector.grpc_endpoint(),
            protocol: "grpc",
        },
        tools: http,
    };
    let platform = Platform::start(&issuer, &exports, replies()).await;
    let token = issuer.user_token();
    let (traceparent, trace_id, caller_span) = caller_context();

    let sent = unix_nanos();
    let answer = call(
        &platform.mcp_url(),
        Some(&token),
        Some(&traceparent),
        EXPERT_TOOL,
        json!({"question": QUESTION}),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.message);
    let done = &answer.message["result"]["structuredContent"];
    assert_eq!(done["status"], "done", "{}", answer.message);

    let spans = collector
        .wait_for_spans(|spans| all_arrived(spans, &trace_id), ARRIVAL)
        .await;
    let (trace, others): (Vec<Span>, Vec<Span>) =
        spans.into_iter().partition(|s| s.trace_id == trace_id);
    eprintln!("the trace of one question:\n{}", tree(&trace));

    assert_one_tree_from_the_gateway(&trace, &caller_span);
    assert_nothing_else_since(sent, &others);

    assert_the_chain(&trace);

    let metrics = metrics_when(&collector, &expected_metrics()).await;
    assert_token_usage(&metrics);

    let secrets = secrets(&platform, &issuer, &token);
    assert_exported_nowhere(&collector.raw(), &secrets);
    let services = [
        ("gateway", &platform.gateway),
        ("agent-service", &platform.agent),
        ("tools-service", &platform.tools),
    ];
    for (name, service) in services {
        assert_logs_join_the_trace(name, service, &trace, &trace_id);
        let output = service.output().join("\n");
        for (what, secret) in secrets.iter().filter(|(what, _)| what.ends_with("token")) {
            assert!(!output.contains(secret.as_str()), "{name} logged {what}");
        }
    }

    // The gateway answers a request without a token itself, and counts why.
    let refused = call(&platform.mcp_url(), None, None, EXPERT_TOOL, json!({})).await;
    assert_eq!(refused.status, 401);
    let refusal = Expected::new(
        "gateway",
        "gateway.refusals",
        &[
            ("reason", "missing_token"),
            ("http.route", ROUTE),
            ("http.response.status_code", "401"),
        ],
    );
    metrics_when(&collector, &[refusal]).await;
}

/// A service stopping (scale-in, a new revision) sends what it still holds: here everything,
/// since nothing would be sent for a minute otherwise.
#[tokio::test]
async fn what_is_still_buffered_is_sent_when_the_services_stop() {
    if !otel::installed() {
        return;
    }
    let collector = Collector::start().await;
    let issuer = Issuer::start().await;
    let held = [
        ("OTEL_BSP_SCHEDULE_DELAY", "60000"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "60000"),
    ];
    let exports = Exports {
        gateway: Export {
            endpoint: collector.grpc_endpoint(),
            protocol: "grpc",
        },
        agent: Export {
            endpoint: collector.http_endpoint(),
            protocol: "http/protobuf",
        },
        tools: Export {
            endpoint: collector.http_endpoint(),
            protocol: "http/protobuf",
        },
    };
    let platform = Platform::start_with(&issuer, &exports, replies(), &held).await;
    let (traceparent, trace_id, _) = caller_context();
    let token = issuer.user_token();
    let answer = call(
        &platform.mcp_url(),
        Some(&token),
        Some(&traceparent),
        EXPERT_TOOL,
        json!({"question": QUESTION}),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.message);
    assert!(
        collector.spans().iter().all(|s| s.trace_id != trace_id),
        "nothing is sent before a minute is up"
    );

    let Platform {
        gateway,
        agent,
        tools,
        ..
    } = platform;
    // In the order a deployment stops them: the edge first, so nothing new comes in.
    for (name, service) in [
        ("gateway", gateway),
        ("agent-service", agent),
        ("tools-service", tools),
    ] {
        let status = service.terminate().await;
        assert!(status.success(), "{name} exited with {status}");
    }
    collector
        .wait_for_spans(|spans| all_arrived(spans, &trace_id), ARRIVAL)
        .await;
    let request = |service, route: &str| {
        Expected::new(
            service,
            "http.server.request.duration",
            &[("http.route", route), ("tenant.id", CONTOSO)],
        )
    };
    metrics_when(
        &collector,
        &[
            request("gateway", ROUTE),
            request("agent-service", "/mcp"),
            request("tools-service", "/mcp"),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_dead_collector_costs_no_request() {
    // Something listened there a moment ago; nothing does now.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("address");
    let issuer = Issuer::start().await;
    let platform = Platform::start(&issuer, &exports_to(dead), replies()).await;
    assert_answers_promptly(&platform, &issuer.user_token()).await;
}

/// The harder case: a collector that accepts connections and never answers holds each export
/// for the exporter's whole timeout (seconds). The question is asked once every service is
/// stuck in one.
#[tokio::test]
async fn a_collector_that_never_answers_costs_no_request_either() {
    // One each, to tell the services apart by where they connect.
    let (gateway, agent, tools) = (
        hung_collector().await,
        hung_collector().await,
        hung_collector().await,
    );
    let to = |collector: &HungCollector, protocol| Export {
        endpoint: format!("http://{}", collector.addr),
        protocol,
    };
    let exports = Exports {
        gateway: to(&gateway, "http/protobuf"),
        agent: to(&agent, "grpc"),
        tools: to(&tools, "http/protobuf"),
    };
    let issuer = Issuer::start().await;
    let platform = Platform::start(&issuer, &exports, replies()).await;
    // Each service exports within a metric interval of starting (its key fetch is a metric);
    // the connections stay open, unanswered, to the end of the test.
    let mut held = Vec::new();
    for (name, mut collector) in [
        ("gateway", gateway),
        ("agent-service", agent),
        ("tools-service", tools),
    ] {
        let stream = tokio::time::timeout(ARRIVAL, collector.connections.recv())
            .await
            .unwrap_or_else(|_| panic!("{name} did not try to export within {ARRIVAL:?}"))
            .expect("accepting");
        held.push((stream, collector));
    }
    assert_answers_promptly(&platform, &issuer.user_token()).await;
}

/// A loopback listener that accepts connections and hands them over, reading nothing and
/// answering nothing; it stops accepting when dropped.
struct HungCollector {
    addr: std::net::SocketAddr,
    connections: tokio::sync::mpsc::UnboundedReceiver<tokio::net::TcpStream>,
    accepting: tokio::task::JoinHandle<()>,
}

impl Drop for HungCollector {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

async fn hung_collector() -> HungCollector {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let (accepted, connections) = tokio::sync::mpsc::unbounded_channel();
    let accepting = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = accepted.send(stream);
        }
    });
    HungCollector {
        addr,
        connections,
        accepting,
    }
}

/// Every service exporting to `addr`, over both transports (the agent over gRPC).
fn exports_to(addr: std::net::SocketAddr) -> Exports {
    let to = |protocol| Export {
        endpoint: format!("http://{addr}"),
        protocol,
    };
    Exports {
        gateway: to("http/protobuf"),
        agent: to("grpc"),
        tools: to("http/protobuf"),
    }
}

/// The question is answered, in less than the 5 s an export waiting on the collector may take
/// (`shared::telemetry` gives up on one after that): a request that waited on an export would
/// take longer. The margin is for a busy machine running a debug build.
async fn assert_answers_promptly(platform: &Platform, token: &str) {
    let started = Instant::now();
    let answer = call(
        &platform.mcp_url(),
        Some(token),
        None,
        EXPERT_TOOL,
        json!({"question": QUESTION}),
    )
    .await;
    let took = started.elapsed();
    assert_eq!(answer.status, 200, "{}", answer.message);
    let done = &answer.message["result"]["structuredContent"];
    assert_eq!(done["status"], "done", "{}", answer.message);
    assert!(
        took < Duration::from_secs(4),
        "the question took {took:?} with the collector out of order"
    );
}

#[tokio::test]
async fn the_prometheus_endpoint_serves_the_request_metrics_by_tenant() {
    let issuer = Issuer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let env = [
        ("RUST_LOG", "info,rmcp=warn"),
        ("METRICS_BIND_ADDR", "127.0.0.1:0"),
    ]
    .map(|(key, value)| (key.to_owned(), value.to_owned()))
    .to_vec();
    let tools = platform::start_tools(&issuer, dir.path(), env).await;
    let scrape = scrape_url(&tools);

    let answer = call(
        &tools.url("/mcp"),
        Some(&issuer.tools_token()),
        None,
        "get_customer_detail",
        json!({"customer_id": 251}),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.message);
    assert_ne!(
        answer.message["result"]["isError"], true,
        "{}",
        answer.message
    );

    let exposition = scraped(&scrape).await;
    // Prometheus names: dots become underscores, the unit and `_count`/`_sum`/`_bucket` follow.
    let tenant = format!("tenant_id=\"{CONTOSO}\"");
    let count = |series: &str, labels: &[&str]| {
        exposition
            .lines()
            .filter(|line| line.starts_with(&format!("{series}{{")))
            .find(|line| labels.iter().all(|label| line.contains(label)))
            .and_then(|line| line.rsplit(' ').next())
            .map(str::to_owned)
    };
    assert_eq!(
        count(
            "http_server_request_duration_seconds_count",
            &[
                &tenant,
                "http_request_method=\"POST\"",
                "http_route=\"/mcp\"",
                "http_response_status_code=\"200\""
            ]
        )
        .as_deref(),
        Some("1"),
        "{exposition}"
    );
    assert_eq!(
        count(
            "mcp_server_operation_duration_seconds_count",
            &[
                &tenant,
                "mcp_method_name=\"tools/call\"",
                "gen_ai_tool_name=\"get_customer_detail\""
            ]
        )
        .as_deref(),
        Some("1"),
        "{exposition}"
    );
    assert_eq!(
        count(
            "db_client_operation_duration_seconds_count",
            &[
                "db_system_name=\"sqlite\"",
                "db_operation_name=\"customer\""
            ]
        )
        .as_deref(),
        Some("1"),
        "{exposition}"
    );
}

#[tokio::test]
async fn the_live_sessions_gauge_follows_sessions_as_they_open_and_end() {
    let issuer = Issuer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let env = |extra: &[(&str, &str)]| {
        [("RUST_LOG", "info,rmcp=warn")]
            .iter()
            .chain(extra)
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect::<Vec<_>>()
    };
    let tools = platform::start_tools(&issuer, dir.path(), env(&[])).await;
    let model = scripted_model::ScriptedModel::start([]).await;
    let sessions = [
        ("MCP_SESSIONS", "true"),
        ("METRICS_BIND_ADDR", "127.0.0.1:0"),
    ];
    let agent = platform::start_agent(&issuer, dir.path(), &tools, &model, env(&sessions)).await;
    let scrape = scrape_url(&agent);
    let live = || async {
        let exposition = scraped(&scrape).await;
        exposition
            .lines()
            .find(|line| line.starts_with("mcp_server_sessions_live"))
            .and_then(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no mcp_server_sessions_live in:\n{exposition}"))
    };
    assert_eq!(live().await, 0);

    let base = agent.url("");
    let token = issuer.user_token();
    let first = common::initialize(&base, &token).await.expect("a session");
    common::initialize(&base, &token).await.expect("a session");
    assert_eq!(live().await, 2);

    let ended = reqwest::Client::new()
        .delete(agent.url("/mcp"))
        .bearer_auth(&token)
        .header("mcp-protocol-version", "2025-11-25")
        .header("mcp-session-id", &first)
        .send()
        .await
        .expect("DELETE /mcp");
    assert!(ended.status().is_success(), "{}", ended.status());
    assert_eq!(live().await, 1, "the ended session left the gauge");
}

/// The Prometheus endpoint `service` logged it serves (before `listening on`, so already there).
fn scrape_url(service: &platform::Service) -> String {
    service
        .output()
        .iter()
        .find_map(|line| {
            let rest = line.split("serving metrics for Prometheus on ").nth(1)?;
            Some(
                rest.split(|c: char| c.is_whitespace() || c == '"')
                    .next()?
                    .to_owned(),
            )
        })
        .unwrap_or_else(|| {
            panic!(
                "no metrics address logged:\n{}",
                service.output().join("\n")
            )
        })
}

/// The Prometheus text a scrape of `url` returns.
async fn scraped(url: &str) -> String {
    let response = reqwest::get(url).await.expect("GET /metrics");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().expect("ASCII");
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    response.text().await.expect("body")
}

/// The email address of the customer the model was told about: in the tool results of its
/// second request.
fn customer_email(platform: &Platform) -> String {
    let requests = platform.model.requests();
    let told = requests
        .get(1)
        .map(|request| request.body["messages"].to_string())
        .unwrap_or_default();
    told.split(|c: char| c.is_whitespace() || matches!(c, '"' | '\\' | ',' | '<' | '>'))
        .find(|word| word.contains('@') && word.contains('.'))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no email in what the model was told: {told}"))
}

/// The spans of the question, parent by parent: the gateway's request, the agent's request, its
/// MCP operation, the expert's turn, its model calls and tool calls, and under each tool call the
/// tools service's request, operation, tool and store operations; each with its attributes.
fn assert_the_chain(trace: &[Span]) {
    let gateway = only(trace, "gateway", &format!("POST {ROUTE}"));
    assert_eq!(gateway.kind, SpanKind::Server);
    assert_attributes(
        gateway,
        &[
            ("http.request.method", "POST"),
            ("url.path", &format!("{}/mcp", platform::PREFIX)),
            ("gateway.route", ROUTE),
            ("tenant.id", CONTOSO),
            ("http.response.status_code", "200"),
        ],
    );
    assert!(
        gateway
            .attribute("request_id")
            .is_some_and(|id| !id.is_empty()),
        "{gateway:#?}"
    );

    let agent_request = child(trace, gateway, "agent-service", "POST /mcp");
    assert_server_request(agent_request);
    let expert = child(
        trace,
        agent_request,
        "agent-service",
        &format!("tools/call {EXPERT_TOOL}"),
    );
    assert_eq!(expert.kind, SpanKind::Server);
    assert_attributes(
        expert,
        &[
            ("mcp.method.name", "tools/call"),
            ("gen_ai.tool.name", EXPERT_TOOL),
            ("jsonrpc.request.id", "7"),
            ("mcp.protocol.version", "2025-11-25"),
            ("tenant.id", CONTOSO),
        ],
    );
    let turn = child(trace, expert, "agent-service", "invoke_agent billing");
    assert_eq!(turn.kind, SpanKind::Internal);
    assert_attributes(
        turn,
        &[
            ("gen_ai.operation.name", "invoke_agent"),
            ("gen_ai.agent.name", "billing"),
        ],
    );
    let chats = children_named(trace, turn, &format!("chat {MODEL}"));
    assert_eq!(
        chats.len(),
        2,
        "one chat span per model call:\n{}",
        tree(trace)
    );
    for chat in chats {
        assert_eq!(chat.kind, SpanKind::Client);
        assert_attributes(
            chat,
            &[
                ("gen_ai.operation.name", "chat"),
                ("gen_ai.request.model", MODEL),
                ("gen_ai.usage.input_tokens", &PROMPT_TOKENS.to_string()),
                ("gen_ai.usage.output_tokens", &COMPLETION_TOKENS.to_string()),
            ],
        );
    }
    for (tool, store_operation) in TOOLS {
        let inner = child(trace, turn, "agent-service", &format!("tools/call {tool}"));
        assert_eq!(inner.kind, SpanKind::Client);
        assert_attributes(
            inner,
            &[
                ("mcp.method.name", "tools/call"),
                ("gen_ai.tool.name", tool),
            ],
        );
        let request = child(trace, inner, "tools-service", "POST /mcp");
        assert_server_request(request);
        let served = child(
            trace,
            request,
            "tools-service",
            &format!("tools/call {tool}"),
        );
        assert_eq!(served.kind, SpanKind::Server);
        assert_attributes(
            served,
            &[
                ("mcp.method.name", "tools/call"),
                ("gen_ai.tool.name", tool),
                ("tenant.id", CONTOSO),
            ],
        );
        let work = child(trace, served, "tools-service", tool);
        assert_eq!(work.kind, SpanKind::Internal);
        assert_attributes(work, &[("gen_ai.tool.name", tool)]);
        let stores: Vec<&Span> = descendants(trace, work)
            .into_iter()
            .filter(|s| s.kind == SpanKind::Client)
            .collect();
        assert!(
            stores.iter().any(|s| s.name == store_operation),
            "{tool} reads the store ({store_operation}):\n{}",
            tree(trace)
        );
        for store in stores {
            assert_attributes(
                store,
                &[
                    ("db.system.name", "sqlite"),
                    ("db.operation.name", &store.name),
                ],
            );
        }
    }
    for span in trace {
        assert_eq!(
            span.resource
                .get("deployment.environment.name")
                .map(String::as_str),
            Some("test"),
            "OTEL_RESOURCE_ATTRIBUTES reaches every service's resource: {span:#?}"
        );
    }
}

/// What must be nowhere in telemetry or logs: the caller's token and those the agent got in
/// exchange for it, the question, the answer, and the customer's record (their email address).
fn secrets(platform: &Platform, issuer: &Issuer, token: &str) -> Vec<(&'static str, String)> {
    let delegated = issuer.issued();
    assert!(
        !delegated.is_empty(),
        "the agent exchanged the caller's token"
    );
    let mut secrets = vec![
        ("the caller's token", token.to_owned()),
        ("the question", QUESTION.to_owned()),
        ("the answer", ANSWER.to_owned()),
        ("the customer's email", customer_email(platform)),
    ];
    secrets.extend(delegated.into_iter().map(|t| ("a delegated token", t)));
    secrets
}

fn assert_exported_nowhere(exported: &str, secrets: &[(&str, String)]) {
    for (what, secret) in secrets {
        assert!(!exported.contains(secret.as_str()), "{what} was exported");
        // A token cut short is as bad: its signature is the part nobody else has.
        if what.ends_with("token") {
            let signature = secret.rsplit('.').next().unwrap_or_default();
            assert!(!exported.contains(signature), "part of {what} was exported");
        }
    }
}

/// `service` (exporting as `name`) logged lines under the trace, each in one of its spans of it.
fn assert_logs_join_the_trace(
    name: &str,
    service: &platform::Service,
    trace: &[Span],
    trace_id: &str,
) {
    let ids: HashSet<&str> = trace
        .iter()
        .filter(|s| s.service_name == name)
        .map(|s| s.span_id.as_str())
        .collect();
    let logs = service.json_logs();
    let joined: Vec<&Value> = logs.iter().filter(|l| l["trace_id"] == trace_id).collect();
    assert!(
        !joined.is_empty(),
        "{name} logged nothing under the trace {trace_id}:\n{}",
        service.output().join("\n")
    );
    // The audit event of each tool call joins the trace too (the gateway keeps no audit trail).
    if name != "gateway" {
        assert!(
            joined.iter().any(|line| line["target"] == "audit"),
            "{name}'s audit events do not carry the trace {trace_id}:\n{}",
            service.output().join("\n")
        );
    }
    for line in joined {
        let span = line["span_id"].as_str().unwrap_or_default();
        assert!(
            ids.contains(span),
            "{name} logged in span {span:?}, none of its spans of the trace: {line}"
        );
    }
}

fn assert_server_request(span: &Span) {
    assert_eq!(span.kind, SpanKind::Server);
    assert_attributes(
        span,
        &[
            ("http.request.method", "POST"),
            ("http.route", "/mcp"),
            ("http.response.status_code", "200"),
            ("tenant.id", CONTOSO),
        ],
    );
}

/// The trace is one tree: every span's parent is in it, but the gateway's, whose parent is the
/// caller's span; and only the three services made it.
fn assert_one_tree_from_the_gateway(trace: &[Span], caller_span: &str) {
    let ids: HashSet<&str> = trace.iter().map(|s| s.span_id.as_str()).collect();
    let roots: Vec<&Span> = trace
        .iter()
        .filter(|s| s.parent_id.as_deref().is_none_or(|p| !ids.contains(p)))
        .collect();
    let [root] = roots[..] else {
        panic!("one root, the gateway's: {roots:#?}\n{}", tree(trace));
    };
    assert_eq!(root.service_name, "gateway", "{root:#?}");
    assert_eq!(
        root.parent_id.as_deref(),
        Some(caller_span),
        "the gateway continues the caller's trace"
    );
    let services: BTreeSet<&str> = trace.iter().map(|s| s.service_name.as_str()).collect();
    assert_eq!(
        services,
        BTreeSet::from(["agent-service", "gateway", "tools-service"])
    );
}

/// No span but the question's started once it was sent (it was the only request): what else
/// was exported is the services' own start-up.
fn assert_nothing_else_since(sent: u64, others: &[Span]) {
    let strays: Vec<Span> = others
        .iter()
        .filter(|s| s.start_unix_nano.is_none_or(|start| start >= sent))
        .cloned()
        .collect();
    assert!(
        strays.is_empty(),
        "spans outside the question's trace:\n{}",
        tree(&strays)
    );
}

fn unix_nanos() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    u64::try_from(since.as_nanos()).expect("before 2554")
}

/// Asserts `span` has each attribute with that value.
fn assert_attributes(span: &Span, expected: &[(&str, &str)]) {
    for (key, value) in expected {
        assert_eq!(
            span.attribute(key),
            Some(*value),
            "{} of {} ({}): {:#?}",
            key,
            span.name,
            span.service_name,
            span.attributes
        );
    }
}

/// The only span of `service` called `name`.
fn only<'a>(trace: &'a [Span], service: &str, name: &str) -> &'a Span {
    let found: Vec<&Span> = trace
        .iter()
        .filter(|s| s.service_name == service && s.name == name)
        .collect();
    let [span] = found[..] else {
        panic!(
            "one {name} of {service}, found {}:\n{}",
            found.len(),
            tree(trace)
        );
    };
    span
}

fn children<'a>(trace: &'a [Span], parent: &Span) -> Vec<&'a Span> {
    let mut children: Vec<&Span> = trace
        .iter()
        .filter(|s| s.parent_id.as_deref() == Some(parent.span_id.as_str()))
        .collect();
    children.sort_by_key(|s| s.start_unix_nano);
    children
}

fn children_named<'a>(trace: &'a [Span], parent: &Span, name: &str) -> Vec<&'a Span> {
    children(trace, parent)
        .into_iter()
        .filter(|s| s.name == name)
        .collect()
}

/// The only child of `parent` called `name`, of `service`.
fn child<'a>(trace: &'a [Span], parent: &Span, service: &str, name: &str) -> &'a Span {
    let found = children_named(trace, parent, name);
    let [span] = found[..] else {
        panic!(
            "one {name} under {} ({}), found {}:\n{}",
            parent.name,
            parent.service_name,
            found.len(),
            tree(trace)
        );
    };
    assert_eq!(span.service_name, service, "{span:#?}");
    span
}

fn descendants<'a>(trace: &'a [Span], ancestor: &Span) -> Vec<&'a Span> {
    children(trace, ancestor)
        .into_iter()
        .flat_map(|child| std::iter::once(child).chain(descendants(trace, child)))
        .collect()
}

/// The spans as a tree: name, service, kind and duration, children indented under their parent
/// in the order they started.
fn tree(spans: &[Span]) -> String {
    let ids: HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    let mut roots: Vec<&Span> = spans
        .iter()
        .filter(|s| s.parent_id.as_deref().is_none_or(|p| !ids.contains(p)))
        .collect();
    roots.sort_by_key(|s| s.start_unix_nano);
    let mut out = String::new();
    for root in roots {
        branch(spans, root, 0, &mut out);
    }
    out
}

fn branch(spans: &[Span], span: &Span, depth: usize, out: &mut String) {
    let ms = span
        .duration()
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0);
    let kind = format!("{:?}", span.kind).to_lowercase();
    let _ = writeln!(
        out,
        "{:indent$}{}  [{}, {kind}]  {ms:.1} ms",
        "",
        span.name,
        span.service_name,
        indent = depth * 2
    );
    for child in children(spans, span) {
        branch(spans, child, depth + 1, out);
    }
}

/// A metric a service must export with a data point carrying at least these labels.
struct Expected {
    service: &'static str,
    name: &'static str,
    labels: Vec<(&'static str, String)>,
}

impl Expected {
    fn new(service: &'static str, name: &'static str, labels: &[(&'static str, &str)]) -> Self {
        Expected {
            service,
            name,
            labels: labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        }
    }

    fn met_by(&self, metrics: &[Metric]) -> bool {
        latest(metrics, self.service, self.name).is_some_and(|metric| {
            metric.points.iter().any(|point| {
                self.labels
                    .iter()
                    .all(|(key, value)| point.attributes.get(*key) == Some(value))
            })
        })
    }
}

/// What the three services export of one question.
fn expected_metrics() -> Vec<Expected> {
    let request = |route: &str| {
        vec![
            ("http.request.method", "POST".to_owned()),
            ("http.route", route.to_owned()),
            ("http.response.status_code", "200".to_owned()),
            ("tenant.id", CONTOSO.to_owned()),
        ]
    };
    let mut expected = vec![
        Expected {
            service: "gateway",
            name: "http.server.request.duration",
            labels: request(ROUTE),
        },
        Expected {
            service: "agent-service",
            name: "http.server.request.duration",
            labels: request("/mcp"),
        },
        Expected {
            service: "tools-service",
            name: "http.server.request.duration",
            labels: request("/mcp"),
        },
        Expected::new(
            "agent-service",
            "mcp.server.operation.duration",
            &[
                ("mcp.method.name", "tools/call"),
                ("gen_ai.tool.name", EXPERT_TOOL),
                ("tenant.id", CONTOSO),
            ],
        ),
        Expected::new(
            "agent-service",
            "gen_ai.client.operation.duration",
            &[
                ("gen_ai.operation.name", "chat"),
                ("gen_ai.request.model", MODEL),
            ],
        ),
    ];
    for token_type in ["input", "output"] {
        expected.push(Expected::new(
            "agent-service",
            "gen_ai.client.token.usage",
            &[
                ("gen_ai.token.type", token_type),
                ("gen_ai.request.model", MODEL),
            ],
        ));
    }
    for (tool, operation) in TOOLS {
        expected.push(Expected::new(
            "agent-service",
            "mcp.client.operation.duration",
            &[
                ("mcp.method.name", "tools/call"),
                ("gen_ai.tool.name", tool),
            ],
        ));
        expected.push(Expected::new(
            "tools-service",
            "mcp.server.operation.duration",
            &[
                ("mcp.method.name", "tools/call"),
                ("gen_ai.tool.name", tool),
                ("tenant.id", CONTOSO),
            ],
        ));
        expected.push(Expected::new(
            "tools-service",
            "db.client.operation.duration",
            &[
                ("db.system.name", "sqlite"),
                ("db.operation.name", operation),
            ],
        ));
    }
    expected.push(Expected::new(
        "agent-service",
        "agent.conversations.started",
        &[("gen_ai.agent.name", "billing"), ("tenant.id", CONTOSO)],
    ));
    expected.push(Expected::new(
        "agent-service",
        "agent.turns",
        &[
            ("gen_ai.agent.name", "billing"),
            ("tenant.id", CONTOSO),
            ("agent.turn.status", "done"),
        ],
    ));
    for service in ["gateway", "agent-service", "tools-service"] {
        expected.push(Expected::new(
            service,
            "auth.jwks.refreshes",
            &[("outcome", "ok")],
        ));
    }
    expected
}

/// The tokens of the two model calls, as the agent counted them.
fn assert_token_usage(metrics: &[Metric]) {
    let usage = latest(metrics, "agent-service", "gen_ai.client.token.usage")
        .expect("gen_ai.client.token.usage");
    let sum = |token_type: &str| {
        usage
            .points
            .iter()
            .find(|p| p.attributes.get("gen_ai.token.type").map(String::as_str) == Some(token_type))
            .map(|p| (p.count, p.sum))
    };
    assert_eq!(
        sum("input"),
        Some((Some(2), Some(f64::from(2 * PROMPT_TOKENS)))),
        "{usage:#?}"
    );
    assert_eq!(
        sum("output"),
        Some((Some(2), Some(f64::from(2 * COMPLETION_TOKENS)))),
        "{usage:#?}"
    );
}

/// The latest export of the metric `name` by `service`.
fn latest<'a>(metrics: &'a [Metric], service: &str, name: &str) -> Option<&'a Metric> {
    metrics
        .iter()
        .rev()
        .find(|m| m.service_name == service && m.name == name)
}

/// Waits until every metric of `expected` has arrived and returns the metrics; fails naming
/// those that did not, with what each service exported instead.
async fn metrics_when(collector: &Collector, expected: &[Expected]) -> Vec<Metric> {
    let deadline = Instant::now() + ARRIVAL;
    loop {
        let metrics = collector.metrics();
        let missing: Vec<&Expected> = expected.iter().filter(|e| !e.met_by(&metrics)).collect();
        if missing.is_empty() {
            return metrics;
        }
        if Instant::now() > deadline {
            let missing: Vec<String> = missing
                .iter()
                .map(|e| format!("{} of {} with {:?}", e.name, e.service, e.labels))
                .collect();
            panic!(
                "missing after {ARRIVAL:?}:\n  {}\nexported:\n{}",
                missing.join("\n  "),
                exported(&metrics)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Each service's metrics as last exported, with the labels of their points.
fn exported(metrics: &[Metric]) -> String {
    let mut last: BTreeMap<(&str, &str), &Metric> = BTreeMap::new();
    for metric in metrics {
        last.insert((&metric.service_name, &metric.name), metric);
    }
    let mut out = String::new();
    for ((service, name), metric) in last {
        let points: Vec<_> = metric.points.iter().map(|p| &p.attributes).collect();
        let _ = writeln!(out, "  {service} {name}: {points:?}");
    }
    out
}
