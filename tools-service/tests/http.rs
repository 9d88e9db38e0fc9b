//! The service as an operator and a browser see it: health and readiness endpoints, request
//! ids, DNS-rebinding protection on `/mcp`, start-up logs, graceful shutdown on SIGTERM while a
//! diagnosis is streaming, restarts on the same database, configuration errors that name the
//! variable, and the tool catalogue as both protocol generations list it.

mod common;

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use common::*;
use rmcp::model::Tool;
use serde_json::{Value, json};

const TOOLS: [&str; 19] = [
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

const WRITES: [&str; 4] = [
    "pay_invoice",
    "create_support_ticket",
    "update_subscription",
    "unlock_account",
];

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

fn tool_call(id: u32, name: &str, arguments: Value, progress_token: Option<&str>) -> String {
    let mut params = json!({"name": name, "arguments": arguments});
    if let Some(token) = progress_token {
        params["_meta"] = json!({"progressToken": token});
    }
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}).to_string()
}

#[tokio::test]
async fn health_and_readiness() {
    let server = Server::start().await;
    let health = http()
        .get(server.http("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.expect("body"), r#"{"status":"ok"}"#);

    let ready = http()
        .get(server.http("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.expect("JSON body");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["store"], "sqlite");
    assert_eq!(body["search"], "lexical");
    assert_eq!(body["documents"], 17, "every knowledge document is indexed");
    assert!(body.get("error").is_none(), "{body}");
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let server = Server::start().await;
    let requests = [
        ("GET /healthz", http().get(server.http("/healthz"))),
        ("GET /readyz", http().get(server.http("/readyz"))),
        ("GET /nowhere (404)", http().get(server.http("/nowhere"))),
        ("POST /mcp", raw_mcp_post(&server, INITIALIZE)),
        (
            "POST /mcp refused (403)",
            raw_mcp_post(&server, INITIALIZE).header("origin", "https://evil.example"),
        ),
        (
            "POST /mcp not JSON",
            raw_mcp_post(&server, "this is not json"),
        ),
    ];
    let mut ids = BTreeSet::new();
    for (what, request) in requests {
        let response = request.send().await.expect(what);
        let id = response
            .headers()
            .get("x-request-id")
            .unwrap_or_else(|| panic!("{what} ({}) has no x-request-id", response.status()));
        ids.insert(id.to_str().expect("ASCII id").to_owned());
    }
    assert_eq!(ids.len(), 6, "each response has its own id: {ids:?}");

    // An id the caller sends is kept, so a gateway's id ties the logs together.
    let kept = http()
        .get(server.http("/healthz"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .expect("healthz");
    assert_eq!(kept.headers()["x-request-id"], "trace-me-42");
}

#[tokio::test]
async fn browser_origins_other_than_loopback_are_refused() {
    let server = Server::start().await;
    let evil = raw_mcp_post(&server, INITIALIZE)
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("request");
    assert_eq!(evil.status(), 403);

    for origin in ["http://localhost:3000", "http://127.0.0.1:5173"] {
        let local = raw_mcp_post(&server, INITIALIZE)
            .header("origin", origin)
            .send()
            .await
            .expect("request");
        assert_eq!(local.status(), 200, "{origin}");
        let body: Value = local.json().await.expect("JSON-RPC answer");
        assert_eq!(
            body["result"]["serverInfo"]["name"], "contoso-tools-service",
            "{origin}: {body}"
        );
    }
    // A tool call from a refused origin does not run.
    let call = raw_mcp_post(
        &server,
        tool_call(2, "unlock_account", json!({"customer_id": 254}), None),
    )
    .header("origin", "https://evil.example")
    .send()
    .await
    .expect("request");
    assert_eq!(call.status(), 403);
    let c = server.client().await;
    let log = ok(&c, "get_security_logs", json!({"customer_id": 254})).await;
    assert_eq!(
        log["account_locked"], true,
        "the refused unlock did not run"
    );
}

#[tokio::test]
async fn a_foreign_host_header_is_refused() {
    // A DNS-rebinding attack reaches the loopback port with the attacker's host name.
    let server = Server::start().await;
    let foreign = raw_mcp_post(&server, INITIALIZE)
        .header("host", "evil.example")
        .send()
        .await
        .expect("request");
    assert_eq!(foreign.status(), 403);
    let with_port = raw_mcp_post(&server, INITIALIZE)
        .header("host", format!("evil.example:{}", server.addr.port()))
        .send()
        .await
        .expect("request");
    assert_eq!(with_port.status(), 403);
    let local = raw_mcp_post(&server, INITIALIZE)
        .header("host", format!("localhost:{}", server.addr.port()))
        .send()
        .await
        .expect("request");
    assert_eq!(local.status(), 200);
}

#[tokio::test]
async fn start_up_logs_the_address_once_and_warns_about_authentication() {
    let server = Server::start().await;
    wait_for_log(&server, "authentication is OFF").await;
    let logs = server.logs();
    let listening: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("listening on http://"))
        .collect();
    assert_eq!(listening.len(), 1, "{listening:?}");
    assert!(
        listening[0].contains(&format!(
            "listening on http://127.0.0.1:{}",
            server.addr.port()
        )),
        "the real port is logged: {}",
        listening[0]
    );
    assert_ne!(server.addr.port(), 0);
    let warning = logs
        .lines()
        .find(|l| l.contains("authentication is OFF"))
        .expect("warning");
    assert!(warning.contains("WARN"), "logged as a warning: {warning}");
}

#[tokio::test]
async fn sigterm_ends_the_process_promptly_while_a_diagnosis_streams() {
    // Nine 5-second steps: without shutdown ending the streams, SIGTERM would wait 45 s.
    let server = Server::start_with(&[("TROUBLESHOOT_STEP_MS", "5000")]).await;
    let request = raw_mcp_post(
        &server,
        tool_call(
            1,
            "trouble_shoot_device",
            json!({"customer_id": 252}),
            Some("diag"),
        ),
    )
    .send();
    // The answer switches to a stream with the first progress notification, after one step.
    let mut stream = tokio::time::timeout(Duration::from_secs(15), request)
        .await
        .expect("the stream starts after the first step")
        .expect("request");
    assert_eq!(stream.status(), 200);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .expect("ASCII")
            .starts_with("text/event-stream")
    );
    let mut received = String::new();
    while !received.contains("notifications/progress") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
            .await
            .expect("first progress notification")
            .expect("stream readable")
            .expect("stream still open");
        received.push_str(&String::from_utf8_lossy(&chunk));
    }
    // A second diagnosis without a progress token waits for its JSON answer meanwhile.
    let pending = tokio::spawn(
        raw_mcp_post(
            &server,
            tool_call(2, "trouble_shoot_device", json!({"customer_id": 257}), None),
        )
        .send(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    let stopping = Instant::now();
    let (_dir, status) = server.stop().await;
    let took = stopping.elapsed();
    assert!(status.success(), "exit status {status}");
    assert!(took < Duration::from_secs(3), "took {took:?} to stop");

    // Both callers are released rather than left hanging on a dead connection.
    tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(Some(chunk)) = stream.chunk().await {
            received.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .expect("the stream ends with the process");
    assert!(
        !received.contains("\"checks\""),
        "the diagnosis could not have finished: {received}"
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), pending)
        .await
        .expect("the pending call ends with the process");
}

async fn ticket_subjects(c: &Client, customer_id: i64) -> Vec<String> {
    ok(
        c,
        "get_support_tickets",
        json!({"customer_id": customer_id}),
    )
    .await["tickets"]
        .as_array()
        .expect("tickets")
        .iter()
        .map(|t| t["subject"].as_str().expect("subject").to_owned())
        .collect()
}

#[tokio::test]
async fn a_restart_keeps_the_data_and_force_seed_wipes_it() {
    const SUBJECT: &str = "Written before the restart";
    let server = Server::start().await;
    wait_for_log(&server, "database seeded").await;
    let c = server.client().await;
    ok(
        &c,
        "create_support_ticket",
        json!({"customer_id": 251, "category": "billing", "subject": SUBJECT, "description": "x"}),
    )
    .await;
    let invoice = latest_invoice(&c, 251).await;
    ok(
        &c,
        "pay_invoice",
        json!({"invoice_id": invoice, "amount": 40}),
    )
    .await;
    drop(c);
    let (dir, status) = server.stop().await;
    assert!(status.success(), "exit status {status}");

    let server = Server::start_in(dir, &[]).await;
    wait_for_log(&server, "knowledge base indexed").await;
    assert!(
        !server.logs().contains("database seeded"),
        "a database with data is not seeded again:\n{}",
        server.logs()
    );
    let c = server.client().await;
    assert!(ticket_subjects(&c, 251).await.iter().any(|s| s == SUBJECT));
    let payments = ok(&c, "get_invoice_payments", json!({"invoice_id": invoice})).await;
    assert_eq!(money(&payments["invoice"]["outstanding"]), 6000);
    drop(c);
    let (dir, status) = server.stop().await;
    assert!(status.success(), "exit status {status}");

    let server = Server::start_in(dir, &[("FORCE_SEED", "true")]).await;
    wait_for_log(&server, "database seeded").await;
    assert!(server.logs().contains("FORCE_SEED"), "{}", server.logs());
    let c = server.client().await;
    assert!(!ticket_subjects(&c, 251).await.iter().any(|s| s == SUBJECT));
    let payments = ok(&c, "get_invoice_payments", json!({"invoice_id": invoice})).await;
    assert_eq!(money(&payments["invoice"]["outstanding"]), 10000);
}

#[tokio::test]
async fn bad_configuration_exits_non_zero_naming_the_variable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dev = ("DISABLE_AUTH", "true");
    let cases: [(&[(&str, &str)], &str); 8] = [
        (&[dev, ("BIND_ADDR", "0.0.0.0:0")], "BIND_ADDR"),
        (
            &[dev, ("SEED_CUSTOMER_COUNT", "abc")],
            "SEED_CUSTOMER_COUNT",
        ),
        (
            &[dev, ("TROUBLESHOOT_STEP_MS", "999999")],
            "TROUBLESHOOT_STEP_MS",
        ),
        (&[dev, ("FORCE_SEED", "maybe")], "FORCE_SEED"),
        // Secure by default: no issuer and no development flag is a refusal to start.
        (&[], "AUTH_ISSUER"),
        (
            &[
                ("AUTH_ISSUER", "https://login.example.com"),
                ("SECURITY_ROLE", "query"),
            ],
            "SECURITY_ROLE",
        ),
        (&[dev, ("USE_PASSTHROUGH_AUTH", "true")], "DISABLE_AUTH"),
        (
            &[dev, ("ROLE_POLICY_FILE", "/nonexistent/policy.toml")],
            "ROLE_POLICY_FILE",
        ),
    ];
    for (env, variable) in cases {
        let output = run_binary(dir.path(), &[], env).await;
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!output.status.success(), "{env:?} was accepted:\n{printed}");
        assert!(
            printed.contains(variable),
            "{env:?}: the error should name {variable}:\n{printed}"
        );
        assert!(
            !dir.path().join("contoso.db").exists(),
            "{env:?}: the configuration is checked before the database is touched"
        );
    }
}

#[tokio::test]
async fn help_lists_the_settings() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = run_binary(dir.path(), &["--help"], &[]).await;
    assert!(output.status.success(), "{:?}", output.status);
    let help = String::from_utf8_lossy(&output.stdout);
    for variable in [
        "DB_PATH",
        "BIND_ADDR",
        "SEED_CUSTOMER_COUNT",
        "FORCE_SEED",
        "AUTH_ISSUER",
        "MCP_API_AUDIENCE",
        "ALLOWED_TENANTS",
        "DISABLE_AUTH",
        "USE_PASSTHROUGH_AUTH",
    ] {
        assert!(help.contains(variable), "--help lacks {variable}:\n{help}");
    }
}

fn check_catalogue(tools: &[Tool]) {
    let names: BTreeSet<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(tools.len(), 19, "no duplicates");
    assert_eq!(names, TOOLS.into_iter().collect());
    for tool in tools {
        let name = tool.name.as_ref();
        assert!(
            tool.description
                .as_deref()
                .is_some_and(|d| !d.trim().is_empty()),
            "{name}: description"
        );
        assert_eq!(
            tool.input_schema.get("type"),
            Some(&json!("object")),
            "{name}: input schema"
        );
        let output = tool
            .output_schema
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: output schema"));
        assert_eq!(
            output.get("type"),
            Some(&json!("object")),
            "{name}: output schema"
        );
        let read_only = tool.annotations.as_ref().and_then(|a| a.read_only_hint);
        let expected = !WRITES.contains(&name);
        assert_eq!(read_only, Some(expected), "{name}: readOnlyHint");
    }
}

#[tokio::test]
async fn the_catalogue_lists_nineteen_described_tools_for_both_protocols() {
    let server = Server::start().await;
    let old = server.client().await;
    let tools = old.list_all_tools().await.expect("tools/list (2025-11-25)");
    check_catalogue(&tools);

    let new = server.client_2026().await;
    let tools_2026 = new.list_all_tools().await.expect("tools/list (2026-07-28)");
    check_catalogue(&tools_2026);
    assert_eq!(tools_2026, tools, "both protocols see the same catalogue");

    let john = ok(&new, "get_customer_detail", json!({"customer_id": 251})).await;
    assert_eq!(john["first_name"], "John");
    let refused = tool_error(
        &new,
        "pay_invoice",
        json!({"invoice_id": 99999, "amount": 1}),
    )
    .await;
    assert!(
        refused.contains("invoice 99999 does not exist"),
        "{refused}"
    );
}
