//! Test harness: starts the real `tools-service` binary on `127.0.0.1:0` with its own database,
//! learns the port from its `listening on http://ADDR` line, and connects real MCP clients.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::{
    net::SocketAddr,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use rmcp::{
    RoleClient, ServiceExt,
    model::{CallToolRequestParams, CallToolResult, ClientConfig, ProtocolVersion},
    service::{ClientLifecycleMode, ClientServiceExt, RunningService},
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
        let config = StreamableHttpClientTransportConfig::with_uri(self.url()).auth_header(token);
        let transport = StreamableHttpClientTransport::from_config(config);
        ClientConfig::default()
            .with_protocol_version(ProtocolVersion::V_2025_11_25)
            .serve(transport)
            .await
            .expect("MCP client connects with a token")
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
    detail["subscriptions"][0]["id"]
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
    billing["subscriptions"][0]["latest_invoice"]["id"]
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
