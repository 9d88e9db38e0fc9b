//! Hostile input over real MCP against the real binary: calendar-edge dates, money at the edges of
//! what a double can hold (sent as raw JSON text, since an MCP client would round it to a double
//! before sending), garbage in every argument of every tool, and an internal failure. Each is
//! answered promptly, as a tool error a person can act on, refused writes leave nothing behind,
//! and no internal detail reaches the caller.

// Amounts in cents are written dollars_cents, e.g. 100_00.
#![allow(clippy::inconsistent_digit_grouping)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// Far longer than any of these calls takes, far shorter than a client's own timeout: a request
/// that is never answered fails here instead of hanging the test.
const PROMPTLY: Duration = Duration::from_secs(10);

fn says(message: &str, words: &[&str]) {
    for word in words {
        assert!(
            message.contains(word),
            "the error should mention {word:?}: {message}"
        );
    }
}

/// A `tools/call` posted as raw JSON text (`arguments` verbatim), answered within [`PROMPTLY`];
/// returns the HTTP status and the JSON-RPC answer.
async fn raw_call(server: &Server, request_id: &str, tool: &str, arguments: &str) -> (u16, Value) {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{{"name":"{tool}","arguments":{arguments}}}}}"#
    );
    let response = tokio::time::timeout(PROMPTLY, async {
        raw_mcp_post(server, body)
            .header("x-request-id", request_id)
            .send()
            .await
            .expect("request")
    })
    .await
    .unwrap_or_else(|_| panic!("{tool}({arguments}) was not answered"));
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let answer = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, answer)
}

/// The text of a tool error answered to [`raw_call`].
fn tool_error_text(tool: &str, answer: &Value) -> String {
    assert_eq!(
        answer["result"]["isError"], true,
        "{tool} should answer a tool error: {answer}"
    );
    answer["result"]["content"][0]["text"]
        .as_str()
        .expect("an error text")
        .to_owned()
}

/// A tool call through the MCP client, answered within [`PROMPTLY`].
async fn prompt_call(c: &Client, tool: &str, args: Value) -> rmcp::model::CallToolResult {
    tokio::time::timeout(PROMPTLY, call(c, tool, args.clone()))
        .await
        .unwrap_or_else(|_| panic!("{tool}({args}) was not answered"))
}

#[tokio::test]
async fn calendar_edge_dates_are_answered_promptly_with_a_tool_error() {
    let server = Server::start().await;
    let c = server.client().await;
    let sub = first_subscription(&c, 251).await;
    let edges = [
        "-262143-01-01",
        "+262142-12-31",
        "-0001-12-31",
        "0000-01-01",
        "1899-12-31",
    ];
    for edge in edges {
        // The issue's case: a default window reaching past chrono's first day.
        for (args, field) in [
            (
                json!({"subscription_id": sub, "end_date": edge}),
                "end_date",
            ),
            (
                json!({"subscription_id": sub, "start_date": "2026-01-01", "end_date": edge}),
                "end_date",
            ),
            (
                json!({"subscription_id": sub, "start_date": edge, "end_date": "2026-01-01"}),
                "start_date",
            ),
            (
                json!({"subscription_id": sub, "start_date": edge}),
                "start_date",
            ),
            (
                json!({"subscription_id": sub, "start_date": edge, "end_date": edge, "aggregate": true}),
                "date",
            ),
        ] {
            let result = prompt_call(&c, "get_data_usage", args.clone()).await;
            assert_eq!(result.is_error, Some(true), "{args}: {}", text(&result));
            says(&text(&result), &[field, edge, "1900-01-01 to 9999-12-31"]);
        }
    }
    // The widest window the calendar holds is refused as too long, not computed.
    let message = tool_error(
        &c,
        "get_data_usage",
        json!({"subscription_id": sub, "start_date": "1900-01-01", "end_date": "9999-12-31"}),
    )
    .await;
    says(&message, &["days", "at most 366"]);
    // The first and last days themselves are fine.
    for (start, end) in [("1900-01-01", "1900-01-31"), ("9999-12-01", "9999-12-31")] {
        let usage = ok(
            &c,
            "get_data_usage",
            json!({"subscription_id": sub, "start_date": start, "end_date": end}),
        )
        .await;
        assert_eq!(usage["totals"]["days"], 0, "no usage then");
    }
}

#[tokio::test]
async fn money_beyond_the_cent_or_a_double_is_refused_and_records_nothing() {
    let server = Server::start().await;
    let c = server.client().await;
    // 251's latest invoice: $150.00, $50.00 paid, $100.00 outstanding.
    let invoice = latest_invoice(&c, 251).await;
    let before = payments(&c, invoice).await;
    let refusals: &[(&str, &[&str])] = &[
        ("5000.004", &["amount", "two decimal places", "5000.004"]),
        // A double cannot tell this from 5000: only the text can.
        (
            "5000.0000000000001",
            &["amount", "two decimal places", "5000.0000000000001"],
        ),
        ("0.001", &["amount", "two decimal places", "0.001"]),
        ("1e-3", &["amount", "two decimal places"]),
        ("-1", &["amount", "greater than zero", "-1.00"]),
        ("-0", &["amount", "greater than zero"]),
        ("0", &["amount", "greater than zero"]),
        ("12345678901234567890", &["amount", "too large"]),
        ("123456789012345678901234567890.5", &["amount", "too large"]),
        ("1e300", &["amount", "too large"]),
        ("\"100\"", &["amount", "JSON number", "\"100\""]),
        ("null", &["amount", "JSON number"]),
        ("[100]", &["amount", "JSON number"]),
    ];
    for (amount, words) in refusals {
        let arguments = format!(r#"{{"invoice_id":{invoice},"amount":{amount}}}"#);
        let (status, answer) = raw_call(&server, "money", "pay_invoice", &arguments).await;
        assert_eq!(status, 200, "{amount}: {answer}");
        says(&tool_error_text("pay_invoice", &answer), words);
        assert_eq!(
            payments(&c, invoice).await,
            before,
            "pay_invoice({amount}) was refused but changed the invoice"
        );
    }
    // 1e400 is valid JSON that no double holds: the request's params do not parse, so it is
    // refused as invalid params before any tool runs.
    let arguments = format!(r#"{{"invoice_id":{invoice},"amount":1e400}}"#);
    let (status, answer) = raw_call(&server, "money", "pay_invoice", &arguments).await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (200, &json!(-32602)),
        "{answer}"
    );
    says(
        answer["error"]["message"].as_str().expect("a message"),
        &["number out of range"],
    );
    assert_eq!(payments(&c, invoice).await, before);
}

#[tokio::test]
async fn two_spellings_of_an_amount_are_the_same_cents() {
    let server = Server::start().await;
    let c = server.client().await;
    let invoice = latest_invoice(&c, 251).await;
    let before = payments(&c, invoice).await;
    assert_eq!(money(&before["invoice"]["outstanding"]), 100_00);
    // Too much for this invoice: the refusal shows the amount as read, exactly.
    for amount in ["5000.1", "5000.10", "5000.100", "50001e-1"] {
        let arguments = format!(r#"{{"invoice_id":{invoice},"amount":{amount}}}"#);
        let (_, answer) = raw_call(&server, "money", "pay_invoice", &arguments).await;
        says(
            &tool_error_text("pay_invoice", &answer),
            &["payment of $5000.10 exceeds", "$100.00"],
        );
    }
    assert_eq!(payments(&c, invoice).await, before);
    // Accepted, and recorded as the same cents.
    for amount in ["10.1", "10.10", "1.01e1"] {
        let arguments = format!(r#"{{"invoice_id":{invoice},"amount":{amount}}}"#);
        let (_, answer) = raw_call(&server, "money", "pay_invoice", &arguments).await;
        assert_ne!(answer["result"]["isError"], true, "{amount}: {answer}");
        assert_eq!(
            money(&answer["result"]["structuredContent"]["payment"]["amount"]),
            10_10,
            "{amount}"
        );
    }
    let after = payments(&c, invoice).await;
    assert_eq!(money(&after["invoice"]["outstanding"]), 100_00 - 3 * 10_10);
}

/// Values that are wrong for some argument of some tool, or right in a way nobody expects.
fn garbage() -> Vec<Value> {
    vec![
        Value::Null,
        json!(-1),
        json!(0),
        json!(i64::MAX),
        json!(i64::MIN),
        json!(u64::MAX),
        json!(1.5),
        json!(-1e308),
        json!(""),
        json!("\u{0}"),
        json!("a\u{0}b\u{1b}[2J"),
        json!("-262143-01-01"),
        json!("after:-9223372036854775808"),
        json!("after:9223372036854775807"),
        json!("after:99999999999999999999"),
        json!("SELECT * FROM customers; --"),
        json!("\" OR 1=1 --"),
        json!("*:*"),
        json!([]),
        json!({}),
        json!([[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]),
        json!(true),
    ]
}

#[tokio::test]
async fn every_tool_answers_garbage_in_every_argument_promptly() {
    // A diagnosis that a garbage device name does not stop runs its nine steps: keep them short.
    let server = Server::start_with(&[("TROUBLESHOOT_STEP_MS", "1")]).await;
    let c = server.client().await;
    let calls = valid_calls(&c).await;
    let huge = json!("x".repeat(1_000_000));
    // One task per tool, so the ~1000 calls overlap (the service answers each in a few ms).
    let per_tool = calls.iter().map(|(tool, args)| {
        let (c, huge) = (&c, &huge);
        async move {
            let mut answered = 0;
            // Optional arguments the valid call leaves out are garbage targets too.
            let optional: &[&str] = match *tool {
                "get_all_customers" => &["limit", "cursor"],
                "get_data_usage" => &["start_date", "end_date", "aggregate"],
                "search_knowledge_base" => &["topk"],
                "get_security_logs" => &["limit"],
                "get_support_tickets" => &["open_only"],
                "create_support_ticket" => &["subscription_id", "priority"],
                "pay_invoice" => &["method"],
                "get_products" => &["category"],
                "trouble_shoot_device" => &["subscription_id", "device"],
                _ => &[],
            };
            let fields: Vec<String> = args
                .as_object()
                .expect("object")
                .keys()
                .cloned()
                .chain(optional.iter().map(|f| (*f).to_owned()))
                .collect();
            for (i, field) in fields.iter().enumerate() {
                // A megabyte in the first argument of each tool (and in every free-text one).
                let big = i == 0
                    || ["query", "subject", "description", "device", "cursor"]
                        .contains(&field.as_str());
                let values = garbage().into_iter().chain(big.then(|| huge.clone()));
                for value in values {
                    let mut bad = args.clone();
                    bad[field] = value.clone();
                    let result = prompt_call(c, tool, bad).await;
                    let message = text(&result);
                    assert!(
                        !message.contains("internal error"),
                        "{tool}.{field} = {}: {message}",
                        value.to_string().chars().take(60).collect::<String>()
                    );
                    assert!(
                        message.len() < 4000 || result.is_error != Some(true),
                        "{tool}.{field}: an error does not echo a megabyte ({} bytes)",
                        message.len()
                    );
                    answered += 1;
                }
            }
            // Arguments that are not what any tool takes at all.
            for bad in [json!({}), json!({"": 1}), json!({"\u{0}": "\u{0}"})] {
                let result = prompt_call(c, tool, bad.clone()).await;
                let takes_nothing_required =
                    ["get_promotions", "get_products", "get_all_customers"].contains(tool);
                if !takes_nothing_required || bad != json!({}) {
                    assert_eq!(result.is_error, Some(true), "{tool}({bad})");
                }
                answered += 1;
            }
            answered
        }
    });
    let answered: usize = futures::future::join_all(per_tool).await.into_iter().sum();
    assert!(answered > 500, "only {answered} calls were made");
    // Raw texts an MCP client would not send: a duplicated key, and arguments that are no object.
    let (_, answer) = raw_call(
        &server,
        "dup",
        "get_customer_detail",
        r#"{"customer_id":251,"customer_id":252}"#,
    )
    .await;
    says(
        &tool_error_text("get_customer_detail", &answer),
        &["duplicate field", "customer_id"],
    );
    for arguments in ["[]", "1", "\"x\""] {
        let (status, answer) = raw_call(&server, "shape", "get_customer_detail", arguments).await;
        assert!(
            answer.get("error").is_some() || answer["result"]["isError"] == true,
            "{arguments}: answered {status} {answer}"
        );
    }
    // And the service is still itself.
    ok(&c, "get_customer_detail", json!({"customer_id": 251})).await;
}

#[tokio::test]
async fn text_with_control_characters_is_not_stored() {
    let server = Server::start().await;
    let c = server.client().await;
    let before = tickets(&c, 251).await;
    for (subject, description) in [
        ("Bill\u{0}", "Too high"),
        ("Bill", "Too high\u{1b}[2J"),
        ("Bill", "\u{7f}"),
    ] {
        let message = tool_error(
            &c,
            "create_support_ticket",
            json!({"customer_id": 251, "category": "billing", "subject": subject, "description": description}),
        )
        .await;
        says(&message, &["control character"]);
    }
    assert_eq!(tickets(&c, 251).await, before, "nothing was stored");
    // Line breaks and tabs are text.
    ok(
        &c,
        "create_support_ticket",
        json!({"customer_id": 251, "category": "billing", "subject": "Bill", "description": "Line 1\n\tLine 2"}),
    )
    .await;
}

#[tokio::test]
async fn an_internal_failure_names_the_request_id_and_nothing_else() {
    let server = Server::start().await;
    let c = server.client().await;
    ok(&c, "get_customer_orders", json!({"customer_id": 256})).await;
    // Break the database under the running service: its next read of orders fails in SQL.
    let db = server.dir.path().join("contoso.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open the service's database");
    sqlx::query("ALTER TABLE orders RENAME TO orders_gone")
        .execute(&pool)
        .await
        .expect("rename");
    pool.close().await;

    let (status, answer) = raw_call(
        &server,
        "hostile-req-1",
        "get_customer_orders",
        r#"{"customer_id":256}"#,
    )
    .await;
    assert_eq!(status, 200);
    let message = tool_error_text("get_customer_orders", &answer);
    says(
        &message,
        &["internal error", "request hostile-req-1", "retry"],
    );
    for internal in ["orders", "table", "SQL", "sqlite", "contoso.db", "/"] {
        assert!(
            !message.contains(internal),
            "{internal:?} reached the caller: {message}"
        );
    }
    // The detail is in the log, under the same request id.
    wait_for_log(&server, "no such table").await;
    let logs = server.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("no such table"))
        .expect("logged");
    assert!(
        line.contains("hostile-req-1"),
        "the log line names the request: {line}"
    );

    // Readiness says how the parts are, not where they are: the database by its name (what an
    // operator calls it), never by its path or an address.
    let ready = reqwest::get(server.http("/readyz"))
        .await
        .expect("GET /readyz")
        .text()
        .await
        .expect("body");
    assert!(ready.contains(r#""database":"contoso.db""#), "{ready}");
    for internal in [
        server.dir.path().to_string_lossy().as_ref(),
        "/contoso.db",
        "127.0.0.1",
        "http://",
    ] {
        assert!(
            !ready.contains(internal),
            "/readyz names {internal:?}: {ready}"
        );
    }
}

/// A message the MCP transport cannot take is answered with a JSON-RPC error saying what is
/// wrong (not rmcp's plain-text 415, nor "method not found" for a known method's bad params).
#[tokio::test]
async fn malformed_json_rpc_messages_get_json_rpc_errors_that_say_what_is_wrong() {
    let server = Server::start().await;
    let cases: [(&str, u16, i64, Value, &[&str]); 5] = [
        (
            r#"{"jsonrpc":"2.0","id":7,"method":"#,
            400,
            -32700,
            Value::Null,
            &["not valid JSON", "line 1 column"],
        ),
        (
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]"#,
            400,
            -32600,
            Value::Null,
            &["batch"],
        ),
        (
            r#"{"jsonrpc":"1.0","id":11,"method":"tools/list"}"#,
            400,
            -32600,
            json!(11),
            &["\"jsonrpc\" must be \"2.0\""],
        ),
        (
            r#"{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"nam":"x"}}"#,
            200,
            -32602,
            json!(10),
            &["tools/call", "name"],
        ),
        (
            r#"{"jsonrpc":"2.0","id":"l","method":"tools/list","params":{"cursor":5}}"#,
            200,
            -32602,
            json!("l"),
            &["tools/list", "expected a string"],
        ),
    ];
    for (body, status, code, id, words) in cases {
        let response =
            tokio::time::timeout(PROMPTLY, raw_mcp_post(&server, body.to_owned()).send())
                .await
                .unwrap_or_else(|_| panic!("{body} was not answered"))
                .expect("request");
        assert_eq!(response.status().as_u16(), status, "{body}");
        let answer: Value = response.json().await.expect("a JSON answer");
        assert_eq!(answer["jsonrpc"], "2.0", "{answer}");
        assert_eq!(answer["id"], id, "{answer}");
        assert_eq!(answer["error"]["code"], code, "{answer}");
        says(
            answer["error"]["message"].as_str().expect("a message"),
            words,
        );
    }
    // The same connection's well-formed message is still served.
    let c = server.client().await;
    assert!(!c.list_all_tools().await.expect("tools/list").is_empty());
}
