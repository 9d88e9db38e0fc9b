//! The harness of the agent service's tests: a development identity provider and a real tools
//! service trusting it, in this process on `127.0.0.1:0`, and helpers to call tools and read logs.

#![allow(dead_code)]

use std::{
    io,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use agent_service::upstream::{
    BearerToken, CallOptions, PassThrough, Progress, ToolOutcome, ToolsClient, ToolsConnection,
};
use devstack::idp::{self, IdpConfig, RunningIdp, TokenSpec, defaults};
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::mpsc, sync::oneshot, task::JoinHandle};

/// A development identity provider and a tools service that trusts it, stopped when dropped.
pub struct Stack {
    pub idp: RunningIdp,
    pub tools_url: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop.take();
        self.task.abort();
    }
}

/// The agent service's resource, which the harness's people get tokens for (the IdP's first
/// audience, so a [`TokenSpec`] that names none is for the agent service).
pub const AGENT_AUDIENCE: &str = "api://contoso-agent";
/// The tools service's resource: what the agent exchanges callers' tokens for.
pub const TOOLS_AUDIENCE: &str = defaults::AUDIENCE;

/// The harness's identity provider: people's clients may target both services; the agent's
/// client (`contoso-agent`) may exchange callers' tokens for the tools service.
pub fn idp_config() -> IdpConfig {
    let both = vec![AGENT_AUDIENCE.to_owned(), TOOLS_AUDIENCE.to_owned()];
    let mut clients = defaults::clients_for(&both);
    clients.push(defaults::agent_client(
        defaults::AGENT_CLIENT_ID,
        &[AGENT_AUDIENCE.to_owned()],
        &[TOOLS_AUDIENCE.to_owned()],
    ));
    IdpConfig {
        audiences: both,
        clients,
        ..IdpConfig::default()
    }
}

impl Stack {
    /// `step_ms`: the duration of each of `trouble_shoot_device`'s nine steps.
    pub async fn start(step_ms: u64) -> Stack {
        Stack::start_with(step_ms, &[]).await
    }

    /// [`Stack::start`] with more tools-service flags.
    pub async fn start_with(step_ms: u64, extra: &[(&str, &str)]) -> Stack {
        let idp = idp::spawn(idp_config()).await.expect("IdP");
        Stack::start_on(idp, step_ms, extra).await
    }

    /// [`Stack::start_with`] on a given identity provider. The tools service accepts
    /// [`TOOLS_AUDIENCE`] and trusts the agent's delegated tokens unless `extra` says otherwise.
    pub async fn start_on(idp: RunningIdp, step_ms: u64, extra: &[(&str, &str)]) -> Stack {
        capture_logs();
        let dir = tempfile::tempdir().expect("temp dir");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let db = dir.path().join("tools.db").display().to_string();
        let step = step_ms.to_string();
        let flags = [
            ("--disable-auth", "false"),
            ("--auth-issuer", idp.url()),
            ("--mcp-api-audience", TOOLS_AUDIENCE),
            ("--trusted-actors", defaults::AGENT_CLIENT_ID),
            ("--db-path", &db),
            ("--seed-customer-count", "5"),
            ("--bind-addr", "127.0.0.1:0"),
            ("--troubleshoot-step-ms", &step),
        ];
        let config = tools_service::Config::try_parse_from_args(merge_flags(&flags, extra))
            .expect("tools-service flags")
            .into_valid()
            .expect("valid tools-service configuration");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(tools_service::run(config, listener, async move {
            let _ = stopped.await;
        }));
        wait_ready("tools-service", &format!("http://{addr}/readyz"), &task).await;
        Stack {
            idp,
            tools_url: format!("http://{addr}/mcp"),
            stop: Some(stop),
            task,
            _dir: dir,
        }
    }

    /// Shuts the tools service down as on SIGTERM (open MCP streams are ended), without waiting.
    pub fn shut_down(&mut self) {
        self.stop.take();
    }

    pub fn token(&self, roles: &[&str]) -> BearerToken {
        self.token_with(TokenSpec::new(
            defaults::CONTOSO,
            roles.iter().copied(),
            "alice",
        ))
    }

    /// A token for the tools service (unless `spec` names another audience).
    pub fn token_with(&self, spec: TokenSpec) -> BearerToken {
        let spec = TokenSpec {
            audience: spec.audience.or_else(|| Some(TOOLS_AUDIENCE.to_owned())),
            ..spec
        };
        BearerToken::new(self.idp.idp.mint(&spec))
    }

    /// A token for the agent service, of `subject` in contoso with `roles`.
    pub fn agent_token(&self, roles: &[&str], subject: &str) -> String {
        self.idp.idp.mint(&TokenSpec {
            audience: Some(AGENT_AUDIENCE.to_owned()),
            ..TokenSpec::new(defaults::CONTOSO, roles.iter().copied(), subject)
        })
    }

    pub fn client(&self) -> ToolsClient {
        client_of(&self.tools_url)
    }

    pub async fn connect(&self, roles: &[&str], conversation_id: &str) -> ToolsConnection {
        self.client()
            .connect(&self.token(roles), conversation_id)
            .await
            .expect("connects with a valid token")
    }
}

pub fn client_of(url: &str) -> ToolsClient {
    ToolsClient::new(url, Arc::new(PassThrough), Duration::from_secs(5)).expect("valid URL")
}

pub fn args(value: Value) -> serde_json::Map<String, Value> {
    let Value::Object(map) = value else {
        panic!("arguments must be an object")
    };
    map
}

pub async fn call(c: &ToolsConnection, tool: &str, arguments: Value) -> ToolOutcome {
    c.call(tool, args(arguments), CallOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"))
}

pub async fn done(c: &ToolsConnection, tool: &str, arguments: Value) -> Value {
    match call(c, tool, arguments).await {
        ToolOutcome::Done {
            structured: Some(structured),
            text,
        } => {
            assert!(!text.is_empty(), "{tool}: a text rendering comes along");
            structured
        }
        other => panic!("{tool}: {other:?}"),
    }
}

pub async fn names(c: &ToolsConnection, allowed: &[&str]) -> Vec<String> {
    c.tools_within(allowed)
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| t.name.into_owned())
        .collect()
}

pub fn drain(rx: &mut mpsc::UnboundedReceiver<Progress>) -> Vec<Progress> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

/// Everything logged in this process, for assertions on the log.
pub fn logs() -> String {
    String::from_utf8_lossy(&log_buffer().lock().expect("log lock")).into_owned()
}

pub fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(Default::default)
}

/// Sends the log of this process (the client and the in-process tools service) to
/// [`logs`], at debug, so assertions see what a debug log would show.
pub fn capture_logs() {
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("log lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let buffer = log_buffer().clone();
    // Several tests in one process (plain `cargo test`): the first installs it.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("debug,sqlx=warn,hyper_util=info,h2=info")
        .with_ansi(false)
        .with_writer(move || Sink(buffer.clone()))
        .try_init();
}

/// `defaults` (flag, value) pairs with `extra` on top: a flag `extra` gives replaces the default
/// one (clap refuses a single-valued flag given twice, and appends to a list flag).
pub fn merge_flags(defaults: &[(&str, &str)], extra: &[(&str, &str)]) -> Vec<String> {
    defaults
        .iter()
        .filter(|(flag, _)| !extra.iter().any(|(given, _)| given == flag))
        .chain(extra)
        .flat_map(|&(flag, value)| [flag.to_owned(), value.to_owned()])
        .collect()
}

/// The flags of an agent service on `127.0.0.1:0` verifying tokens of `stack`'s identity
/// provider for [`AGENT_AUDIENCE`], calling `stack`'s tools service with tokens exchanged as
/// `contoso-agent`, with conversation memory in `db`, and `extra` (pairs of flag and value) on
/// top.
pub fn agent_flags(stack: &Stack, db: &std::path::Path, extra: &[&str]) -> Vec<String> {
    let db = db.display().to_string();
    let secret = format!("{}-secret", defaults::AGENT_CLIENT_ID);
    let defaults = [
        ("--disable-auth", "false"),
        ("--use-passthrough-auth", "false"),
        ("--auth-issuer", stack.idp.url()),
        ("--mcp-api-audience", AGENT_AUDIENCE),
        ("--db-path", &db),
        ("--mcp-server-uri", &stack.tools_url),
        ("--bind-addr", "127.0.0.1:0"),
        ("--token-exchange", "rfc8693"),
        ("--agent-client-id", defaults::AGENT_CLIENT_ID),
        ("--agent-client-secret", &secret),
        ("--mcp-server-audience", TOOLS_AUDIENCE),
    ];
    let extra: Vec<(&str, &str)> = extra
        .chunks(2)
        .map(|pair| (pair[0], pair.get(1).copied().unwrap_or_default()))
        .collect();
    merge_flags(&defaults, &extra)
}

/// An agent service in this process on `127.0.0.1:0`, verifying tokens of `stack`'s identity
/// provider and calling `stack`'s tools service; stopped when dropped.
pub struct AgentService {
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Drop for AgentService {
    fn drop(&mut self) {
        self.stop.take();
        self.task.abort();
    }
}

impl AgentService {
    /// With conversation memory in `db` and the extra flags (e.g. the model's).
    pub async fn start(stack: &Stack, db: &std::path::Path, extra: &[&str]) -> AgentService {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let config = agent_service::Config::try_parse_from_args(agent_flags(stack, db, extra))
            .expect("agent-service flags")
            .into_valid()
            .expect("valid agent-service configuration");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(agent_service::run(config, listener, async move {
            let _ = stopped.await;
        }));
        wait_ready("agent-service", &format!("http://{addr}/readyz"), &task).await;
        AgentService {
            url: format!("http://{addr}"),
            stop: Some(stop),
            task,
        }
    }

    /// Stops it and waits until it has.
    pub async fn stop(mut self) {
        self.stop.take();
        let _ = (&mut self.task).await;
    }
}

/// Polls `/readyz` until it answers 200; fails the test if the service ends or takes 30 s.
async fn wait_ready(what: &str, url: &str, task: &JoinHandle<anyhow::Result<()>>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reqwest::get(url)
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(!task.is_finished(), "{what} ended during start-up");
        assert!(Instant::now() < deadline, "{what} did not get ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A JSON-RPC POST to the MCP endpoint of the service at `base` (`http://host:port`).
pub async fn post(base: &str, token: &str, body: &Value) -> reqwest::Response {
    post_in(base, token, None, body).await
}

/// [`post`] within an MCP session (`Mcp-Session-Id`), if given.
pub async fn post_in(
    base: &str,
    token: &str,
    session: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/mcp"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25");
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    request
        .body(body.to_string())
        .send()
        .await
        .expect("request")
}

/// `tools/call` of an expert; the JSON-RPC `result`.
pub async fn ask(base: &str, token: &str, tool: &str, arguments: Value) -> Value {
    ask_in(base, token, None, tool, arguments).await
}

/// [`ask`] within an MCP session, if given.
pub async fn ask_in(
    base: &str,
    token: &str,
    session: Option<&str>,
    tool: &str,
    arguments: Value,
) -> Value {
    let body = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": tool, "arguments": arguments}
    });
    let response = post_in(base, token, session, &body).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("body");
    // A JSON body, or the result among the events of an SSE stream.
    let json = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .find(|d| d.contains("\"result\"") || d.contains("\"error\""))
        .unwrap_or(&text);
    let reply: Value = serde_json::from_str(json.trim()).expect("JSON-RPC");
    reply["result"].clone()
}

/// Initializes as a 2025-11-25 client; the session id the service gave, if any.
pub async fn initialize(base: &str, token: &str) -> Option<String> {
    let response = post(
        base,
        token,
        &json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "legacy-client", "version": "1.0"}
            }
        }),
    )
    .await;
    assert_eq!(response.status(), 200);
    let session = response
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().expect("ascii").to_owned());
    let initialized = post_in(
        base,
        token,
        session.as_deref(),
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(initialized.status(), 202);
    session
}

/// The conversation id of an expert's answer (a tool result), asserting it is done.
pub fn conversation(result: &Value) -> String {
    let answer = &result["structuredContent"];
    assert_eq!(answer["status"], "done", "{result}");
    answer["conversation_id"]
        .as_str()
        .expect("an id")
        .to_owned()
}

/// A token of `subject` in `tenant` with the query role, for the agent service.
pub fn token_of(stack: &Stack, tenant: &str, subject: &str) -> String {
    stack
        .idp
        .idp
        .mint(&TokenSpec::new(tenant, ["query"], subject))
}

/// Where an agent service keeps its memory in a test: SQLite in its `db` file, or a fresh
/// database on a Cosmos DB emulator of its own.
pub enum MemoryStore {
    Sqlite,
    Cosmos {
        emulator: Box<testkit::cosmos::Emulator>,
        database: String,
    },
}

impl MemoryStore {
    /// SQLite, and Cosmos DB when its emulator is installed (`testkit::cosmos::installed`).
    pub async fn all() -> Vec<MemoryStore> {
        let mut all = vec![MemoryStore::Sqlite];
        if testkit::cosmos::installed() {
            all.push(MemoryStore::Cosmos {
                emulator: Box::new(testkit::cosmos::Emulator::start().await),
                database: testkit::cosmos::database("agent"),
            });
        }
        all
    }

    pub fn name(&self) -> &'static str {
        match self {
            MemoryStore::Sqlite => "sqlite",
            MemoryStore::Cosmos { .. } => "cosmos",
        }
    }

    /// The agent service's flags that choose this store.
    pub fn flags(&self) -> Vec<String> {
        match self {
            MemoryStore::Sqlite => Vec::new(),
            MemoryStore::Cosmos { emulator, database } => [
                "--use-cosmosdb",
                "true",
                "--cosmosdb-endpoint",
                &emulator.endpoint,
                "--cosmosdb-key",
                testkit::cosmos::EMULATOR_KEY,
                "--cosmos-database-name",
                database,
            ]
            .map(str::to_owned)
            .to_vec(),
        }
    }
}
