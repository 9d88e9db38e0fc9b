//! The whole platform as it is deployed, one process per service: the `tools-service`,
//! `agent-service` and `gateway` binaries of this build, started with flags and an environment of
//! the test's choosing and nothing from the test's own, in front of an identity provider in this
//! process that keeps every token it issues (so a test can look for the agent's delegated tokens
//! where they must not be) and a scripted model.
//!
//! Each process is its own OpenTelemetry SDK with its own resource, which in-process services
//! (one global tracer provider) cannot be; what each printed is kept, for assertions on logs.

#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::Body,
    extract::{Request, State},
    middleware::Next,
    response::Response,
};
use devstack::{
    idp::{Idp, IdpConfig, TokenSpec, defaults},
    load::{self, LineSink},
};
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::oneshot};

use crate::common::{AGENT_AUDIENCE, TOOLS_AUDIENCE, idp_config};
use crate::scripted_model::{Scripted, ScriptedModel};

/// The gateway route in front of the agent service: its name is the gateway span's.
pub const ROUTE: &str = "contoso-experts";
pub const PREFIX: &str = "/contoso-experts";
/// What the expert gets asked as its tool.
pub const EXPERT_TOOL: &str = "ask_billing_expert";
/// The model the agent is configured with, which names its `chat` spans.
pub const MODEL: &str = "scripted";
/// How long a binary may take to say it listens (seeding included) on a machine busy building.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The binary `name` of this build: beside the agent service's, where `cargo build --workspace`
/// (and `cargo nextest run --workspace`) put every binary of the workspace.
pub fn binary(name: &str) -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_agent-service")).with_file_name(name);
    assert!(
        bin.is_file(),
        "{} not found: build it with `cargo build -p {name}` (or run the tests with --workspace)",
        bin.display()
    );
    bin
}

/// A service binary running as a child process, killed when dropped.
pub struct Service {
    /// `host:port` from its `listening on http://ADDR` line.
    pub addr: String,
    /// Every line it printed (stdout and stderr) so far.
    output: Arc<Mutex<Vec<String>>>,
    process: tokio::process::Child,
}

impl Service {
    /// Starts `name` with `args` and exactly the environment `env`; returns once it listens.
    pub async fn start(name: &str, args: &[&str], env: Vec<(String, String)>) -> Service {
        let output: Arc<Mutex<Vec<String>>> = Arc::default();
        let kept = output.clone();
        let keep: LineSink = Arc::new(move |line: &str| {
            kept.lock().expect("output").push(line.to_owned());
        });
        let until_listening = {
            let keep = keep.clone();
            move |line: &str| {
                keep(line);
                load::listening_addr(line)
            }
        };
        let started = tokio::time::timeout(
            START_TIMEOUT,
            load::spawn_until(&binary(name), args, env, until_listening, keep),
        )
        .await;
        let said = || output.lock().expect("output").join("\n");
        let (process, addr) = match started {
            Ok(Ok(started)) => started,
            Ok(Err(error)) => panic!("{name} did not start: {error:#}\n{}", said()),
            Err(_) => panic!(
                "{name} did not listen within {START_TIMEOUT:?}:\n{}",
                said()
            ),
        };
        Service {
            addr,
            output,
            process,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops it as an orchestrator does, with SIGTERM, and waits until it has exited (10 s at
    /// most); how it exited.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.process.id().expect("still running");
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid}");
        tokio::time::timeout(Duration::from_secs(10), self.process.wait())
            .await
            .expect("it exits within 10 s of SIGTERM")
            .expect("wait for it")
    }

    /// Every line it printed so far.
    pub fn output(&self) -> Vec<String> {
        self.output.lock().expect("output").clone()
    }

    /// The lines it printed that are JSON objects (its log lines under `LOG_FORMAT=json`).
    pub fn json_logs(&self) -> Vec<Value> {
        self.output()
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(Value::is_object)
            .collect()
    }
}

/// The development identity provider on `127.0.0.1:0`, keeping the `access_token` of every
/// answer of its token endpoint: the agent service's exchanged (delegated) tokens.
pub struct Issuer {
    pub idp: Idp,
    pub url: String,
    issued: Arc<Mutex<Vec<String>>>,
    _stop: oneshot::Sender<()>,
}

impl Issuer {
    /// Knows the agent's and the tools service's resources, and the agent's client
    /// ([`idp_config`]).
    pub async fn start() -> Issuer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let idp = Idp::new(IdpConfig {
            issuer: Some(url.clone()),
            ..idp_config()
        })
        .expect("identity provider");
        let issued: Arc<Mutex<Vec<String>>> = Arc::default();
        let router = idp.router().layer(axum::middleware::from_fn_with_state(
            issued.clone(),
            keep_issued,
        ));
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(shared::http::serve(listener, router, async move {
            let _ = stopped.await;
        }));
        Issuer {
            idp,
            url,
            issued,
            _stop: stop,
        }
    }

    /// A token of alice in Contoso (role `query`) for the agent service.
    pub fn user_token(&self) -> String {
        self.idp.mint(&TokenSpec {
            audience: Some(AGENT_AUDIENCE.to_owned()),
            ..TokenSpec::new(defaults::CONTOSO, ["query"], "alice")
        })
    }

    /// A token of alice in Contoso (role `query`) for the tools service, called directly.
    pub fn tools_token(&self) -> String {
        self.idp.mint(&TokenSpec {
            audience: Some(TOOLS_AUDIENCE.to_owned()),
            ..TokenSpec::new(defaults::CONTOSO, ["query"], "alice")
        })
    }

    /// Every token its token endpoint issued so far.
    pub fn issued(&self) -> Vec<String> {
        self.issued.lock().expect("issued").clone()
    }
}

async fn keep_issued(
    State(issued): State<Arc<Mutex<Vec<String>>>>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    if let Ok(answer) = serde_json::from_slice::<Value>(&bytes)
        && let Some(token) = answer["access_token"].as_str()
    {
        issued.lock().expect("issued").push(token.to_owned());
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// Where one service sends its telemetry.
#[derive(Debug, Clone)]
pub struct Export {
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: String,
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`: `http/protobuf` or `grpc`.
    pub protocol: &'static str,
}

/// Where each service sends its telemetry.
#[derive(Debug, Clone)]
pub struct Exports {
    pub gateway: Export,
    pub agent: Export,
    pub tools: Export,
}

/// The environment of a service exporting as `export` says: JSON logs, metrics every half
/// second and spans every tenth (the defaults, a minute and five seconds, would make a test
/// wait), and a resource attribute to find again in what it exported.
pub fn telemetry_env(export: &Export) -> Vec<(String, String)> {
    [
        ("RUST_LOG", "info,rmcp=warn"),
        ("LOG_FORMAT", "json"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", export.endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", export.protocol),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment.name=test",
        ),
        ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value.to_owned()))
    .collect()
}

/// The tools service, the agent service using it and `model`, and the gateway routing
/// [`PREFIX`] to the agent service, each exporting as `exports` says; all verify tokens of
/// `issuer`. Killed when dropped.
pub struct Platform {
    pub model: ScriptedModel,
    pub tools: Service,
    pub agent: Service,
    pub gateway: Service,
    _dir: tempfile::TempDir,
}

impl Platform {
    pub async fn start(
        issuer: &Issuer,
        exports: &Exports,
        replies: impl IntoIterator<Item = Scripted>,
    ) -> Platform {
        Platform::start_with(issuer, exports, replies, &[]).await
    }

    /// [`Platform::start`] with more variables in every service's environment, over those of
    /// [`telemetry_env`].
    pub async fn start_with(
        issuer: &Issuer,
        exports: &Exports,
        replies: impl IntoIterator<Item = Scripted>,
        env: &[(&str, &str)],
    ) -> Platform {
        let env = |export: &Export| {
            let mut all = telemetry_env(export);
            all.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
            all
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let model = ScriptedModel::start(replies).await;
        let tools = start_tools(issuer, dir.path(), env(&exports.tools)).await;
        let agent = start_agent(issuer, dir.path(), &tools, &model, env(&exports.agent)).await;
        let gateway = start_gateway(issuer, dir.path(), &agent, env(&exports.gateway)).await;
        Platform {
            model,
            tools,
            agent,
            gateway,
            _dir: dir,
        }
    }

    /// The expert's MCP endpoint through the gateway.
    pub fn mcp_url(&self) -> String {
        self.gateway.url(&format!("{PREFIX}/mcp"))
    }
}

/// The tools service with its database in `dir`, accepting tokens for [`TOOLS_AUDIENCE`] and the
/// agent's delegated ones.
pub async fn start_tools(issuer: &Issuer, dir: &Path, env: Vec<(String, String)>) -> Service {
    let db = dir.join("tools.db").display().to_string();
    let args = [
        "--disable-auth",
        "false",
        "--auth-issuer",
        &issuer.url,
        "--mcp-api-audience",
        TOOLS_AUDIENCE,
        "--trusted-actors",
        defaults::AGENT_CLIENT_ID,
        "--db-path",
        &db,
        "--seed-customer-count",
        "5",
        "--bind-addr",
        "127.0.0.1:0",
    ];
    Service::start("tools-service", &args, env).await
}

pub async fn start_agent(
    issuer: &Issuer,
    dir: &Path,
    tools: &Service,
    model: &ScriptedModel,
    env: Vec<(String, String)>,
) -> Service {
    let db = dir.join("agent.db").display().to_string();
    let tools_url = tools.url("/mcp");
    let model_url = format!("{}/v1", model.url);
    let secret = format!("{}-secret", defaults::AGENT_CLIENT_ID);
    let args = [
        "--disable-auth",
        "false",
        "--use-passthrough-auth",
        "false",
        "--auth-issuer",
        &issuer.url,
        "--mcp-api-audience",
        AGENT_AUDIENCE,
        "--db-path",
        &db,
        "--mcp-server-uri",
        &tools_url,
        "--mcp-server-audience",
        TOOLS_AUDIENCE,
        "--token-exchange",
        "rfc8693",
        "--agent-client-id",
        defaults::AGENT_CLIENT_ID,
        "--agent-client-secret",
        &secret,
        "--openai-base-url",
        &model_url,
        "--openai-model",
        MODEL,
        "--bind-addr",
        "127.0.0.1:0",
    ];
    Service::start("agent-service", &args, env).await
}

/// The gateway with one route, [`ROUTE`] at [`PREFIX`], to the agent service, admitting Contoso
/// with the agent's own audience (so one token is good at the gateway and at the agent).
async fn start_gateway(
    issuer: &Issuer,
    dir: &Path,
    agent: &Service,
    env: Vec<(String, String)>,
) -> Service {
    let config = dir.join("gateway.toml");
    let toml = format!(
        r#"
        listen = "127.0.0.1:0"
        public_base_url = "http://127.0.0.1"
        [auth]
        issuer = "{issuer}"
        [[routes]]
        name = "{ROUTE}"
        prefix = "{PREFIX}"
        upstreams = ["{upstream}"]
        allowed_tenants = ["{contoso}"]
        audiences = ["{AGENT_AUDIENCE}"]
        "#,
        issuer = issuer.url,
        upstream = agent.addr,
        contoso = defaults::CONTOSO,
    );
    std::fs::write(&config, toml).expect("write the gateway configuration");
    let config = config.display().to_string();
    Service::start("gateway", &["run", "--config", &config], env).await
}

/// The answer of one MCP request: the HTTP status and the JSON-RPC message (a JSON body, or the
/// answer among the events of an SSE stream).
pub struct Answer {
    pub status: u16,
    pub message: Value,
}

/// `tools/call` of `tool` with `arguments` at the MCP endpoint `url` with `token`, and
/// `traceparent` if given, as an MCP client of protocol 2025-11-25 in stateless mode sends it.
pub async fn call(
    url: &str,
    token: Option<&str>,
    traceparent: Option<&str>,
    tool: &str,
    arguments: Value,
) -> Answer {
    let body = json!({
        "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": tool, "arguments": arguments}
    });
    let mut request = load::mcp_post(&reqwest::Client::new(), url, token, body.to_string());
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let message = load::answer_in(&text);
    Answer { status, message }
}
