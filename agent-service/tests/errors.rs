//! What a caller of the agent service sees when something behind it fails: a tools service that
//! is down or answers 500, a model that fails, a conversation store that fails, a tool that does
//! not exist. Every failure says what happened in words and names the request id (the one the
//! caller sent in `X-Request-Id`); none shows an internal URL, address, database text or path.
//! The detail is in the log, under the same request id.

mod common;
mod scripted_model;

use common::*;
use scripted_model::{Scripted, ScriptedModel};
use serde_json::{Value, json};
use tokio::{io::AsyncWriteExt, net::TcpListener};

/// What must never reach a caller.
const INTERNALS: &[&str] = &[
    "http://",
    "https://",
    "127.0.0.1",
    "localhost",
    "sqlite",
    "SELECT",
    "INSERT",
    "no such table",
    "reqwest",
    "error sending request",
    ".db",
    "/tmp",
];

fn assert_no_internals(what: &str, text: &str) {
    for internal in INTERNALS {
        assert!(
            !text.to_lowercase().contains(&internal.to_lowercase()),
            "{what}: {internal:?} reached the caller: {text}"
        );
    }
}

/// `tools/call` of `tool` with `arguments` as request `request_id`; the JSON-RPC reply.
async fn call_as(base: &str, token: &str, request_id: &str, tool: &str, arguments: Value) -> Value {
    let body = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": tool, "arguments": arguments}
    });
    let response = reqwest::Client::new()
        .post(format!("{base}/mcp"))
        .bearer_auth(token)
        .header("x-request-id", request_id)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], request_id);
    let text = response.text().await.expect("body");
    let json = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .find(|d| d.contains("\"result\"") || d.contains("\"error\""))
        .unwrap_or(&text);
    serde_json::from_str(json.trim()).expect("JSON-RPC")
}

/// The `error` of an expert's answer to `question`, asked as `request_id`: it must name the
/// request and nothing internal.
async fn answer_error(agent: &AgentService, token: &str, request_id: &str, what: &str) -> String {
    let reply = call_as(
        &agent.url,
        token,
        request_id,
        "ask_account_expert",
        json!({"question": "Is the account of customer 254 locked?"}),
    )
    .await;
    let result = &reply["result"];
    assert_eq!(
        result["structuredContent"]["status"], "error",
        "{what}: {reply}"
    );
    let error = result["structuredContent"]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no error in {reply}"))
        .to_owned();
    assert!(
        error.contains(request_id),
        "{what}: names the request id: {error}"
    );
    assert_no_internals(what, &reply.to_string());
    error
}

/// The log lines of request `request_id`.
fn logged(request_id: &str) -> Vec<String> {
    logs()
        .lines()
        .filter(|l| l.contains(request_id))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn a_tools_service_that_is_down_or_failing_is_named_by_request_id_not_by_url() {
    let stack = Stack::start(20).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let token = stack.agent_token(&["query", "security"], "alice");

    // Nothing listens on a port just released.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let down = format!("http://{}/mcp", closed.local_addr().expect("address"));
    drop(closed);
    let agent = AgentService::start(
        &stack,
        &dir.path().join("down.db"),
        &["--mcp-server-uri", &down],
    )
    .await;
    let error = answer_error(&agent, &token, "req-tools-down", "tools down").await;
    assert!(error.contains("cannot be reached"), "{error}");
    // The operator finds the URL in the log, under the request id.
    let lines = logged("req-tools-down");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&down) && l.contains(" WARN ")),
        "the detail is logged with the request id: {lines:#?}"
    );

    // A tools service that answers every request with a 500 and a body full of internals.
    let failing = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let failing_url = format!("http://{}/mcp", failing.local_addr().expect("address"));
    let server = tokio::spawn(async move {
        while let Ok((mut socket, _)) = failing.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut buf).await;
                let body = "sqlite error: no such table: customers (SELECT * FROM customers) at /tmp/tools.db";
                let response = format!(
                    "HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    let agent = AgentService::start(
        &stack,
        &dir.path().join("failing.db"),
        &["--mcp-server-uri", &failing_url],
    )
    .await;
    let error = answer_error(&agent, &token, "req-tools-500", "tools 500").await;
    assert!(error.contains("failed"), "{error}");
    server.abort();
}

#[tokio::test]
async fn a_failing_model_is_named_by_request_id_not_by_endpoint() {
    let stack = Stack::start(20).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let model = ScriptedModel::start([Scripted::Error(
        500,
        "upstream connect error at http://10.0.0.7:8080/openai (SELECT 1)",
    )])
    .await;
    let base = format!("{}/v1", model.url);
    let agent = AgentService::start(
        &stack,
        &dir.path().join("agent.db"),
        &["--openai-base-url", &base, "--openai-model", "scripted"],
    )
    .await;
    let token = stack.agent_token(&["query"], "alice");
    let error = answer_error(&agent, &token, "req-model-500", "model 500").await;
    assert!(error.contains("language model"), "{error}");
    assert!(!error.contains("10.0.0.7"), "{error}");
}

#[tokio::test]
async fn a_failing_store_and_an_unknown_tool_are_named_by_request_id() {
    let stack = Stack::start(20).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("agent.db");
    let agent = AgentService::start(&stack, &db, &[]).await;
    let token = stack.agent_token(&["query"], "alice");

    // A conversation to continue, then the store loses its tables under the running service.
    let first = call_as(
        &agent.url,
        &token,
        "req-first",
        "ask_account_expert",
        json!({"question": "Is the account of customer 254 locked?"}),
    )
    .await;
    let conversation = first["result"]["structuredContent"]["conversation_id"]
        .as_str()
        .unwrap_or_else(|| panic!("a conversation: {first}"))
        .to_owned();
    let pool =
        sqlx::SqlitePool::connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(&db))
            .await
            .expect("the agent's database");
    sqlx::query("PRAGMA foreign_keys = OFF")
        .execute(&pool)
        .await
        .expect("pragma");
    for drop in ["DROP TABLE turns", "DROP TABLE conversations"] {
        sqlx::query(drop).execute(&pool).await.expect("drop");
    }
    pool.close().await;

    for (request_id, arguments) in [
        (
            "req-store-new",
            json!({"question": "Is customer 254 locked?"}),
        ),
        (
            "req-store-continue",
            json!({"question": "And now?", "conversation_id": conversation}),
        ),
    ] {
        let reply = call_as(
            &agent.url,
            &token,
            request_id,
            "ask_account_expert",
            arguments,
        )
        .await;
        let result = &reply["result"];
        assert_eq!(result["isError"], true, "{reply}");
        let text = result["content"][0]["text"].as_str().expect("text");
        assert!(text.contains(request_id), "names the request id: {text}");
        assert!(text.contains("conversation"), "says what failed: {text}");
        assert_no_internals(request_id, &reply.to_string());
        assert!(
            logged(request_id)
                .iter()
                .any(|l| l.contains("no such table")),
            "the database's words are in the log under {request_id}"
        );
    }

    // A JSON-RPC error names the request too.
    let reply = call_as(&agent.url, &token, "req-unknown", "ask_nobody", json!({})).await;
    let message = reply["error"]["message"]
        .as_str()
        .expect("a JSON-RPC error");
    assert!(message.contains("req-unknown"), "{reply}");

    // Readiness names states, not places: the memory's backend and database by name only.
    let ready = reqwest::get(format!("{}/readyz", agent.url))
        .await
        .expect("readyz")
        .text()
        .await
        .expect("body");
    let ready: Value = serde_json::from_str(&ready).expect("JSON");
    assert_eq!(ready["memory_backend"], "sqlite", "{ready}");
    let mut states = ready.clone();
    let named = states.as_object_mut().expect("an object");
    named.remove("memory_backend");
    let database = named.remove("database").expect("the database's name");
    assert!(!database.to_string().contains('/'), "{ready}");
    assert_no_internals("readyz", &states.to_string());
    assert_eq!(ready["tools_service"], "not_probed", "{ready}");
    assert_eq!(ready["inner_calls"], "token_exchange", "{ready}");
    assert_eq!(ready["signing_keys"], "ok", "{ready}");
}
