//! Test harness: starts the real `tools-service` binary on `127.0.0.1:0` with its own database,
//! learns the port from its `listening on http://ADDR` line, and connects real MCP clients.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::{
    net::SocketAddr,
    path::Path,
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use rmcp::{
    RoleClient, ServiceExt,
    model::{CallToolRequestParams, CallToolResult, ClientConfig, ProtocolVersion},
    service::{ClientInitializeError, ClientLifecycleMode, ClientServiceExt, RunningService},
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

pub type Client = RunningService<RoleClient, ClientConfig>;

/// A running service process, killed when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    /// Everything the process printed, for assertions on logs.
    pub log: Arc<Mutex<Vec<String>>>,
}

/// A small data set keeps start-up fast; the scenario customers 251-259 are always there.
pub const TEST_CUSTOMERS: &str = "20";

impl Server {
    pub async fn start() -> Server {
        Server::start_with(&[]).await
    }

    /// Starts the binary with extra environment variables (they override the test defaults).
    pub async fn start_with(env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        Server::start_in(dir, env).await
    }

    /// Starts the binary on an existing directory (to restart on the same database).
    pub async fn start_in(dir: tempfile::TempDir, env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tools-service"));
        command
            .env_clear()
            .env("BIND_ADDR", "127.0.0.1:0")
            .env("DB_PATH", dir.path().join("contoso.db"))
            .env("SEED_CUSTOMER_COUNT", TEST_CUSTOMERS)
            .env("TROUBLESHOOT_STEP_MS", "20")
            .env("RUST_LOG", "info,rmcp=warn")
            // Functional tests run with development auth; tests/auth.rs runs with real tokens.
            .env("DISABLE_AUTH", "true")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start tools-service");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        let stdout = child.stdout.take().expect("stdout piped");
        let stderr = child.stderr.take().expect("stderr piped");
        let sink = log.clone();
        tokio::spawn(async move {
            let mut addr_tx = Some(addr_tx);
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.split("listening on http://").nth(1)
                    && let (Some(tx), Ok(addr)) =
                        (addr_tx.take(), rest.trim().parse::<SocketAddr>())
                {
                    let _ = tx.send(addr);
                }
                sink.lock().expect("log lock").push(line);
            }
        });
        let sink = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().expect("log lock").push(line);
            }
        });
        let addr = match tokio::time::timeout(Duration::from_secs(60), addr_rx).await {
            Ok(Ok(addr)) => addr,
            _ => panic!(
                "tools-service did not start; output:\n{}",
                log.lock().expect("log lock").join("\n")
            ),
        };
        Server {
            child,
            addr,
            dir,
            log,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The `/readyz` body.
    pub async fn readyz(&self) -> Value {
        reqwest::get(self.http("/readyz"))
            .await
            .expect("GET /readyz")
            .json()
            .await
            .expect("/readyz answers JSON")
    }

    pub fn logs(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    /// Stops the process with SIGTERM and returns its directory (database kept) and exit status.
    pub async fn stop(mut self) -> (tempfile::TempDir, std::process::ExitStatus) {
        let pid = self.child.id().expect("running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("exits promptly after SIGTERM")
            .expect("wait");
        (self.dir, exit)
    }

    /// An MCP client speaking the 2025-11-25 protocol (initialize handshake).
    pub async fn client(&self) -> Client {
        let transport = StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(self.url()),
        );
        ClientConfig::default()
            .with_protocol_version(ProtocolVersion::V_2025_11_25)
            .serve(transport)
            .await
            .expect("MCP client connects (2025-11-25)")
    }

    /// An MCP client (2025-11-25) that sends `Authorization: Bearer <token>`.
    pub async fn client_with_token(&self, token: &str) -> Client {
        self.try_client_with_token(token)
            .await
            .expect("MCP client connects with a token")
    }

    /// Connects an MCP client (2025-11-25) that sends `Authorization: Bearer <token>`, returning
    /// the error when the service refuses it.
    pub async fn try_client_with_token(
        &self,
        token: &str,
    ) -> Result<Client, ClientInitializeError> {
        let config = StreamableHttpClientTransportConfig::with_uri(self.url()).auth_header(token);
        let transport = StreamableHttpClientTransport::from_config(config);
        ClientConfig::default()
            .with_protocol_version(ProtocolVersion::V_2025_11_25)
            .serve(transport)
            .await
    }

    /// An MCP client speaking the 2026-07-28 protocol that sends `Authorization: Bearer <token>`.
    pub async fn client_2026_with_token(&self, token: &str) -> Client {
        let config = StreamableHttpClientTransportConfig::with_uri(self.url()).auth_header(token);
        ClientConfig::default()
            .serve_with_lifecycle(
                StreamableHttpClientTransport::from_config(config),
                ClientLifecycleMode::Discover {
                    preferred_versions: vec![ProtocolVersion::V_2026_07_28],
                },
            )
            .await
            .expect("MCP client connects with a token (2026-07-28)")
    }

    /// An MCP client speaking the 2026-07-28 protocol (discover, no session).
    pub async fn client_2026(&self) -> Client {
        let transport = StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(self.url()),
        );
        ClientConfig::default()
            .serve_with_lifecycle(
                transport,
                ClientLifecycleMode::Discover {
                    preferred_versions: vec![ProtocolVersion::V_2026_07_28],
                },
            )
            .await
            .expect("MCP client connects (2026-07-28)")
    }
}

/// The settings that make the service verify bearer tokens of `issuer` issued for
/// `api://contoso-mcp` (overriding the harness's `DISABLE_AUTH=true`).
pub fn jwt_auth(issuer: &str) -> Vec<(&'static str, &str)> {
    vec![
        ("DISABLE_AUTH", "false"),
        ("AUTH_ISSUER", issuer),
        ("MCP_API_AUDIENCE", "api://contoso-mcp"),
    ]
}

pub fn params(name: &str, args: Value) -> CallToolRequestParams {
    let Value::Object(args) = args else {
        panic!("arguments must be an object")
    };
    CallToolRequestParams::new(name.to_owned()).with_arguments(args)
}

/// Calls a tool; panics on a protocol error (tool errors are returned).
pub async fn call(client: &Client, name: &str, args: Value) -> CallToolResult {
    client
        .call_tool(params(name, args))
        .await
        .unwrap_or_else(|e| panic!("{name}: protocol error {e}"))
}

/// Calls a tool that must succeed and returns its structured content.
pub async fn ok(client: &Client, name: &str, args: Value) -> Value {
    let result = call(client, name, args.clone()).await;
    assert_ne!(
        result.is_error,
        Some(true),
        "{name}({args}) failed: {}",
        text(&result)
    );
    let value = result
        .structured_content
        .clone()
        .unwrap_or_else(|| panic!("{name}: no structured content"));
    assert!(
        !text(&result).trim().is_empty(),
        "{name}: a text rendering accompanies the structure"
    );
    value
}

/// Calls a tool that must fail with a tool error and returns the error text.
pub async fn tool_error(client: &Client, name: &str, args: Value) -> String {
    let result = call(client, name, args.clone()).await;
    assert_eq!(
        result.is_error,
        Some(true),
        "{name}({args}) should fail, got {}",
        text(&result)
    );
    text(&result)
}

pub fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn money(value: &Value) -> i64 {
    let dollars = value
        .as_f64()
        .unwrap_or_else(|| panic!("not a number: {value}"));
    (dollars * 100.0).round() as i64
}

pub fn no_args() -> Value {
    json!({})
}

/// The id of a customer's first subscription (the scenario customers have exactly one).
pub async fn first_subscription(client: &Client, customer_id: i64) -> i64 {
    let detail = ok(
        client,
        "get_customer_detail",
        json!({"customer_id": customer_id}),
    )
    .await;
    detail["subscriptions"][0]["subscription_id"]
        .as_i64()
        .unwrap_or_else(|| panic!("customer {customer_id} has no subscription"))
}

/// The id of the newest invoice of a customer's first subscription.
pub async fn latest_invoice(client: &Client, customer_id: i64) -> i64 {
    let billing = ok(
        client,
        "get_billing_summary",
        json!({"customer_id": customer_id}),
    )
    .await;
    billing["subscriptions"][0]["latest_invoice"]["invoice_id"]
        .as_i64()
        .unwrap_or_else(|| panic!("customer {customer_id} has no invoice"))
}

/// Posts a raw JSON-RPC body to `/mcp` as a 2025-11-25 client would (no session: the service is
/// stateless), for what the MCP client cannot send: odd headers, numbers serde_json cannot hold.
pub fn raw_mcp_post(server: &Server, body: impl Into<String>) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(server.url())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(body.into())
}

/// Read-backs of what the writes change, for asserting that a refused write changed nothing.
pub async fn payments(c: &Client, invoice_id: i64) -> Value {
    ok(c, "get_invoice_payments", json!({"invoice_id": invoice_id})).await
}

pub async fn tickets(c: &Client, customer_id: i64) -> Value {
    ok(
        c,
        "get_support_tickets",
        json!({"customer_id": customer_id}),
    )
    .await
}

pub async fn security_log(c: &Client, customer_id: i64) -> Value {
    ok(c, "get_security_logs", json!({"customer_id": customer_id})).await
}

pub async fn subscription(c: &Client, subscription_id: i64) -> Value {
    ok(
        c,
        "get_subscription_detail",
        json!({"subscription_id": subscription_id}),
    )
    .await
}

/// Valid arguments for every tool, so the only fault in a call is the one a test adds.
pub async fn valid_calls(c: &Client) -> Vec<(&'static str, Value)> {
    let sub = first_subscription(c, 251).await;
    let mobile = first_subscription(c, 253).await;
    let invoice = latest_invoice(c, 251).await;
    vec![
        ("get_all_customers", json!({})),
        ("get_customer_detail", json!({"customer_id": 251})),
        ("get_subscription_detail", json!({"subscription_id": sub})),
        ("get_invoice_payments", json!({"invoice_id": invoice})),
        ("pay_invoice", json!({"invoice_id": invoice, "amount": 1})),
        ("get_data_usage", json!({"subscription_id": sub})),
        ("get_promotions", json!({})),
        ("get_eligible_promotions", json!({"customer_id": 251})),
        ("search_knowledge_base", json!({"query": "roaming"})),
        ("get_security_logs", json!({"customer_id": 254})),
        ("get_customer_orders", json!({"customer_id": 256})),
        ("get_support_tickets", json!({"customer_id": 251})),
        (
            "create_support_ticket",
            json!({"customer_id": 251, "category": "billing", "subject": "Bill", "description": "Too high"}),
        ),
        ("get_products", json!({})),
        ("get_product_detail", json!({"product_id": 1})),
        (
            "update_subscription",
            json!({"subscription_id": mobile, "updates": {"roaming_enabled": true}}),
        ),
        ("unlock_account", json!({"customer_id": 254})),
        ("get_billing_summary", json!({"customer_id": 251})),
        ("trouble_shoot_device", json!({"customer_id": 251})),
    ]
}

/// What the four writes could change, read back through the tools.
pub async fn writable_state(c: &Client) -> Value {
    let invoice = latest_invoice(c, 251).await;
    let mobile = first_subscription(c, 253).await;
    json!({
        "payments": payments(c, invoice).await,
        "tickets": tickets(c, 251).await,
        "subscription": subscription(c, mobile).await,
        "security_log": security_log(c, 254).await,
    })
}

/// Runs the binary to completion with only `env` set (and a database path in `dir`).
pub async fn run_binary(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tools-service"));
    command
        .env_clear()
        .env("DB_PATH", dir.join("contoso.db"))
        .env("BIND_ADDR", "127.0.0.1:0")
        .args(args)
        .kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    tokio::time::timeout(Duration::from_secs(20), command.output())
        .await
        .unwrap_or_else(|_| panic!("{env:?} {args:?}: the binary kept running"))
        .expect("run tools-service")
}

/// Polls the process output until a line contains `needle` (output is read asynchronously).
pub async fn wait_for_log(server: &Server, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.logs().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no log line contains {needle:?}:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
