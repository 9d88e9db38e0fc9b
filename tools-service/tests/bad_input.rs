//! Bad input over real MCP: every mistake a caller (person or model) can make comes back as a
//! tool error (`isError: true`) whose message says what to fix, and a refused write leaves no
//! trace: the state is read back through the tools and compared with what it was before.
//! The happy paths of the four writes are checked the same way, by reading back.

// Amounts in cents are written dollars_cents, e.g. 100_00.
#![allow(clippy::inconsistent_digit_grouping)]

mod common;

use common::*;
use serde_json::{Value, json};

/// An id no seeded entity has (ids are small: 29 customers, a few thousand rows at most).
const MISSING: i64 = 99999;

/// Asserts that `message` contains every one of `words`, showing the message when it does not.
fn says(message: &str, words: &[&str]) {
    for word in words {
        assert!(
            message.contains(word),
            "the error should mention {word:?}: {message}"
        );
    }
}

#[tokio::test]
async fn refused_payments_say_why_and_record_nothing() {
    let server = Server::start().await;
    let c = server.client().await;
    // 251's latest invoice: $150.00, $50.00 paid, $100.00 outstanding.
    let invoice = latest_invoice(&c, 251).await;
    let before = payments(&c, invoice).await;
    assert_eq!(money(&before["invoice"]["outstanding"]), 100_00);
    let id = invoice.to_string();

    let refusals: Vec<(Value, Vec<&str>)> = vec![
        (
            json!({"invoice_id": MISSING, "amount": 10}),
            vec!["invoice 99999 does not exist"],
        ),
        (
            json!({"invoice_id": invoice, "amount": 0}),
            vec!["amount", "greater than zero"],
        ),
        (
            json!({"invoice_id": invoice, "amount": -5}),
            vec!["amount", "greater than zero", "-5"],
        ),
        (
            json!({"invoice_id": invoice, "amount": 1.005}),
            vec!["amount", "two decimal places", "1.005"],
        ),
        (
            json!({"invoice_id": invoice, "amount": 100.01}),
            vec![&id, "exceeds the outstanding balance", "$100.00", "$100.01"],
        ),
        (
            json!({"invoice_id": invoice, "amount": 1e300}),
            vec!["amount", "too large"],
        ),
        // JSON has no NaN or infinity; a caller can only send them as strings.
        (json!({"invoice_id": invoice, "amount": "NaN"}), vec!["NaN"]),
        (
            json!({"invoice_id": invoice, "amount": "Infinity"}),
            vec!["Infinity"],
        ),
        (
            json!({"invoice_id": invoice, "amount": "1e400"}),
            vec!["1e400"],
        ),
        (
            json!({"invoice_id": invoice, "amount": 10, "method": "cash"}),
            vec!["cash", "credit_card"],
        ),
    ];
    for (args, words) in refusals {
        let message = tool_error(&c, "pay_invoice", args.clone()).await;
        says(&message, &words);
        assert_eq!(
            payments(&c, invoice).await,
            before,
            "pay_invoice({args}) was refused but changed the invoice"
        );
    }
    let message = tool_error(&c, "get_invoice_payments", json!({"invoice_id": MISSING})).await;
    says(&message, &["invoice 99999 does not exist"]);
}

#[tokio::test]
async fn a_number_json_cannot_hold_as_a_double_is_refused_and_records_nothing() {
    // 1e400 is valid JSON but overflows a double; serde_json cannot even build it as a Value,
    // so it goes over raw HTTP. (As a string it is a tool error: see the test above.)
    let server = Server::start().await;
    let c = server.client().await;
    let invoice = latest_invoice(&c, 251).await;
    let before = payments(&c, invoice).await;
    let response = raw_mcp_post(
        &server,
        format!(
            r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"pay_invoice","arguments":{{"invoice_id":{invoice},"amount":1e400}}}}}}"#
        ),
    )
    .send()
    .await
    .expect("request");
    // The parameters do not parse, so the request is refused (invalid params, with the
    // parser's words) before any tool runs.
    let answer: Value = response.json().await.expect("a JSON-RPC answer");
    assert_eq!(answer["id"], 7, "{answer}");
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    says(
        answer["error"]["message"].as_str().expect("a message"),
        &["tools/call", "number out of range"],
    );
    assert_eq!(payments(&c, invoice).await, before);
}

#[tokio::test]
async fn paying_an_invoice_already_paid_in_full_is_refused() {
    let server = Server::start().await;
    let c = server.client().await;
    let sub = first_subscription(&c, 251).await;
    // The invoice before the overage one was paid in full on time.
    let paid = subscription(&c, sub).await["invoices"][1].clone();
    assert_eq!(paid["status"], "paid");
    let invoice = paid["invoice_id"].as_i64().expect("id");
    let before = payments(&c, invoice).await;
    let message = tool_error(
        &c,
        "pay_invoice",
        json!({"invoice_id": invoice, "amount": 1}),
    )
    .await;
    says(&message, &[&invoice.to_string(), "already paid in full"]);
    assert_eq!(payments(&c, invoice).await, before);
}

#[tokio::test]
async fn unknown_ids_are_named_by_every_read_tool() {
    let server = Server::start().await;
    let c = server.client().await;
    let cases = [
        (
            "get_customer_detail",
            json!({"customer_id": MISSING}),
            "customer",
        ),
        (
            "get_subscription_detail",
            json!({"subscription_id": MISSING}),
            "subscription",
        ),
        (
            "get_product_detail",
            json!({"product_id": MISSING}),
            "product",
        ),
        (
            "get_invoice_payments",
            json!({"invoice_id": MISSING}),
            "invoice",
        ),
        (
            "get_billing_summary",
            json!({"customer_id": MISSING}),
            "customer",
        ),
        (
            "get_security_logs",
            json!({"customer_id": MISSING}),
            "customer",
        ),
        (
            "get_customer_orders",
            json!({"customer_id": MISSING}),
            "customer",
        ),
        (
            "get_support_tickets",
            json!({"customer_id": MISSING}),
            "customer",
        ),
        (
            "get_eligible_promotions",
            json!({"customer_id": MISSING}),
            "customer",
        ),
        (
            "trouble_shoot_device",
            json!({"customer_id": MISSING}),
            "customer",
        ),
        (
            "get_data_usage",
            json!({"subscription_id": MISSING}),
            "subscription",
        ),
    ];
    for (tool, args, entity) in cases {
        let message = tool_error(&c, tool, args).await;
        says(&message, &[&format!("{entity} {MISSING} does not exist")]);
    }
}

#[tokio::test]
async fn data_usage_refuses_malformed_dates_and_bad_ranges() {
    let server = Server::start().await;
    let c = server.client().await;
    let sub = first_subscription(&c, 251).await;

    let message = tool_error(
        &c,
        "get_data_usage",
        json!({"subscription_id": sub, "start_date": "2026-13-45"}),
    )
    .await;
    says(&message, &["start_date", "\"2026-13-45\"", "YYYY-MM-DD"]);
    let message = tool_error(
        &c,
        "get_data_usage",
        json!({"subscription_id": sub, "end_date": "yesterday"}),
    )
    .await;
    says(&message, &["end_date", "\"yesterday\"", "YYYY-MM-DD"]);

    let message = tool_error(
        &c,
        "get_data_usage",
        json!({"subscription_id": sub, "start_date": "2026-03-10", "end_date": "2026-03-01"}),
    )
    .await;
    says(
        &message,
        &["start_date 2026-03-10", "after", "end_date 2026-03-01"],
    );

    // 2024 is a leap year: Jan 1 2024 to Jan 1 2025 inclusive is 367 days.
    let message = tool_error(
        &c,
        "get_data_usage",
        json!({"subscription_id": sub, "start_date": "2024-01-01", "end_date": "2025-01-01"}),
    )
    .await;
    says(&message, &["367 days", "366"]);
    // One day less is accepted: the limit is inclusive.
    ok(
        &c,
        "get_data_usage",
        json!({"subscription_id": sub, "start_date": "2024-01-01", "end_date": "2024-12-31"}),
    )
    .await;
}

#[tokio::test]
async fn knowledge_search_refuses_bad_topk_and_an_empty_query() {
    let server = Server::start().await;
    let c = server.client().await;
    for topk in [0, 21] {
        let message = tool_error(
            &c,
            "search_knowledge_base",
            json!({"query": "roaming", "topk": topk}),
        )
        .await;
        says(
            &message,
            &["topk", "between 1 and 20", &format!("got {topk}")],
        );
    }
    for query in ["", "   "] {
        let message = tool_error(&c, "search_knowledge_base", json!({"query": query})).await;
        says(&message, &["query", "must not be empty"]);
    }
    let hits = ok(
        &c,
        "search_knowledge_base",
        json!({"query": "roaming", "topk": 20}),
    )
    .await;
    assert!(!hits["results"].as_array().expect("results").is_empty());
}

#[tokio::test]
async fn refused_subscription_updates_change_nothing() {
    let server = Server::start().await;
    let c = server.client().await;
    let sub = first_subscription(&c, 253).await;
    let before = subscription(&c, sub).await;

    let refusals: Vec<(Value, Vec<&str>)> = vec![
        (
            json!({}),
            vec![
                "updates",
                "product_id",
                "status",
                "roaming_enabled",
                "autopay_enabled",
            ],
        ),
        (json!({"speed_tier": "10 Gbps"}), vec!["speed_tier"]),
        // An unknown field next to a valid one must not let the valid one through.
        (
            json!({"roaming_enabled": true, "roaming": true}),
            vec!["`roaming`"],
        ),
        (
            json!({"status": "paused"}),
            vec!["paused", "active", "suspended", "cancelled"],
        ),
        (
            json!({"product_id": MISSING}),
            vec!["product 99999 does not exist"],
        ),
        (json!({"product_id": 4}), vec!["product 4", "add-on"]),
    ];
    for (updates, words) in refusals {
        let args = json!({"subscription_id": sub, "updates": updates});
        let message = tool_error(&c, "update_subscription", args.clone()).await;
        says(&message, &words);
        assert_eq!(
            subscription(&c, sub).await,
            before,
            "update_subscription({args}) was refused but changed the subscription"
        );
    }
    let message = tool_error(
        &c,
        "update_subscription",
        json!({"subscription_id": MISSING, "updates": {"autopay_enabled": true}}),
    )
    .await;
    says(&message, &["subscription 99999 does not exist"]);

    // Roaming on a home internet line is refused too (251 has one).
    let internet = first_subscription(&c, 251).await;
    let internet_before = subscription(&c, internet).await;
    let message = tool_error(
        &c,
        "update_subscription",
        json!({"subscription_id": internet, "updates": {"roaming_enabled": true}}),
    )
    .await;
    says(&message, &["roaming", "mobile"]);
    assert_eq!(subscription(&c, internet).await, internet_before);
}

#[tokio::test]
async fn refused_unlocks_write_nothing_to_the_security_log() {
    let server = Server::start().await;
    let c = server.client().await;
    let before = security_log(&c, 251).await;
    assert_eq!(before["account_locked"], false);
    let message = tool_error(&c, "unlock_account", json!({"customer_id": 251})).await;
    says(&message, &["customer 251", "not locked"]);
    assert_eq!(security_log(&c, 251).await, before);

    let message = tool_error(&c, "unlock_account", json!({"customer_id": MISSING})).await;
    says(&message, &["customer 99999 does not exist"]);
}

#[tokio::test]
async fn refused_tickets_are_not_created() {
    let server = Server::start().await;
    let c = server.client().await;
    let own = first_subscription(&c, 251).await;
    let others = first_subscription(&c, 252).await;
    let before = (tickets(&c, 251).await, tickets(&c, 252).await);
    let not_theirs = format!("subscription {others}");
    let ticket = |subject: &str, category: &str, subscription: Option<i64>| {
        let mut args = json!({
            "customer_id": 251,
            "category": category,
            "subject": subject,
            "description": "Customer called about it.",
        });
        if let Some(id) = subscription {
            args["subscription_id"] = json!(id);
        }
        args
    };

    let refusals: Vec<(Value, Vec<&str>)> = vec![
        (
            ticket("", "billing", Some(own)),
            vec!["subject", "must not be empty"],
        ),
        (
            ticket("   ", "billing", None),
            vec!["subject", "must not be empty"],
        ),
        (
            ticket("Bill too high", "teleportation", None),
            vec!["teleportation", "billing", "call_drop"],
        ),
        (
            ticket("Bill too high", "billing", Some(others)),
            vec![&not_theirs, "customer 251"],
        ),
        (
            ticket("Bill too high", "billing", Some(MISSING)),
            vec!["subscription 99999 does not exist"],
        ),
        (
            ticket(&"x".repeat(201), "billing", None),
            vec!["subject", "200 characters"],
        ),
    ];
    for (args, words) in refusals {
        let message = tool_error(&c, "create_support_ticket", args.clone()).await;
        says(&message, &words);
        assert_eq!(
            (tickets(&c, 251).await, tickets(&c, 252).await),
            before,
            "create_support_ticket({args}) was refused but created a ticket"
        );
    }
    let mut args = ticket("Bill too high", "billing", None);
    args["customer_id"] = json!(MISSING);
    let message = tool_error(&c, "create_support_ticket", args).await;
    says(&message, &["customer 99999 does not exist"]);
}

#[tokio::test]
async fn customer_list_refuses_bad_limits_and_foreign_cursors() {
    let server = Server::start().await;
    let c = server.client().await;
    for limit in [0, 501] {
        let message = tool_error(&c, "get_all_customers", json!({"limit": limit})).await;
        says(
            &message,
            &["limit", "between 1 and 500", &format!("got {limit}")],
        );
    }
    for cursor in ["garbage", "after:", "after:abc", "before:3"] {
        let message = tool_error(&c, "get_all_customers", json!({"cursor": cursor})).await;
        says(&message, &["cursor", cursor]);
    }
    let page = ok(&c, "get_all_customers", json!({"limit": 500})).await;
    assert!(
        page["next_cursor"].is_null(),
        "29 customers fit in one page"
    );
}

#[tokio::test]
async fn every_tool_refuses_an_unknown_argument_by_name() {
    let server = Server::start().await;
    let c = server.client().await;
    let calls = valid_calls(&c).await;
    let mut listed: Vec<String> = c
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| t.name.into_owned())
        .collect();
    let mut covered: Vec<String> = calls.iter().map(|(name, _)| name.to_string()).collect();
    listed.sort();
    covered.sort();
    assert_eq!(covered, listed, "every listed tool is exercised");

    let before = writable_state(&c).await;
    for (tool, args) in &calls {
        let mut args = args.clone();
        args["customer_idd"] = json!(251);
        let message = tool_error(&c, tool, args).await;
        says(&message, &["unknown field", "customer_idd"]);
    }
    assert_eq!(
        writable_state(&c).await,
        before,
        "a refused call wrote something"
    );
    // Without the extra argument the same calls succeed: the argument alone was the fault.
    for (tool, args) in calls {
        ok(&c, tool, args).await;
    }
}

#[tokio::test]
async fn a_missing_required_argument_is_named() {
    let server = Server::start().await;
    let c = server.client().await;
    let calls = valid_calls(&c).await;
    let before = writable_state(&c).await;
    let tools = c.list_all_tools().await.expect("tools/list");
    let mut checked = 0;
    // The required arguments are those the input schema advertises as required.
    for (tool, args) in calls {
        let schema = &tools
            .iter()
            .find(|t| t.name == tool)
            .expect("listed")
            .input_schema;
        let required: Vec<String> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        for field in required {
            let mut partial = args.clone();
            partial
                .as_object_mut()
                .expect("object")
                .remove(&field)
                .unwrap_or_else(|| panic!("{tool}: the valid call lacks {field}"));
            let message = tool_error(&c, tool, partial).await;
            says(&message, &["missing field", &format!("`{field}`")]);
            checked += 1;
        }
    }
    assert!(
        checked >= 20,
        "only {checked} required arguments were checked"
    );
    assert_eq!(
        writable_state(&c).await,
        before,
        "a refused call wrote something"
    );
    // No arguments at all is the same mistake, not a protocol error.
    let message = tool_error(&c, "get_customer_detail", json!({})).await;
    says(&message, &["missing field", "`customer_id`"]);
}

#[tokio::test]
async fn payments_reduce_the_balance_until_the_invoice_is_paid() {
    let server = Server::start().await;
    let c = server.client().await;
    let invoice = latest_invoice(&c, 251).await;

    let receipt = ok(
        &c,
        "pay_invoice",
        json!({"invoice_id": invoice, "amount": 40.00}),
    )
    .await;
    assert_eq!(money(&receipt["payment"]["amount"]), 40_00);
    assert_eq!(receipt["payment"]["status"], "successful");
    assert_eq!(receipt["payment"]["method"], "credit_card", "the default");
    assert_eq!(money(&receipt["invoice"]["outstanding"]), 60_00);
    let after = payments(&c, invoice).await;
    assert_eq!(money(&after["invoice"]["paid"]), 90_00);
    assert_eq!(money(&after["invoice"]["outstanding"]), 60_00);
    assert_eq!(after["invoice"]["status"], "partially_paid");
    let billing = ok(&c, "get_billing_summary", json!({"customer_id": 251})).await;
    assert_eq!(money(&billing["total_due"]), 60_00);

    let receipt = ok(
        &c,
        "pay_invoice",
        json!({"invoice_id": invoice, "amount": 60.00, "method": "paypal"}),
    )
    .await;
    assert_eq!(receipt["invoice"]["status"], "paid");
    let after = payments(&c, invoice).await;
    assert_eq!(money(&after["invoice"]["paid"]), 150_00);
    assert_eq!(money(&after["invoice"]["outstanding"]), 0);
    assert_eq!(after["invoice"]["status"], "paid");
    let amounts: Vec<(i64, &str)> = after["payments"]
        .as_array()
        .expect("payments")
        .iter()
        .map(|p| (money(&p["amount"]), p["method"].as_str().expect("method")))
        .collect();
    assert_eq!(
        amounts,
        [
            (50_00, "credit_card"),
            (40_00, "credit_card"),
            (60_00, "paypal")
        ]
    );
    let billing = ok(&c, "get_billing_summary", json!({"customer_id": 251})).await;
    assert_eq!(money(&billing["total_due"]), 0);
    assert!(
        billing["open_invoices"]
            .as_array()
            .expect("open")
            .is_empty()
    );
}

#[tokio::test]
async fn enabling_roaming_shows_on_the_customer() {
    let server = Server::start().await;
    let c = server.client().await;
    let sub = first_subscription(&c, 253).await;
    let updated = ok(
        &c,
        "update_subscription",
        json!({"subscription_id": sub, "updates": {"roaming_enabled": true}}),
    )
    .await;
    assert_eq!(updated["subscription"]["roaming_enabled"], true);
    let mark = ok(&c, "get_customer_detail", json!({"customer_id": 253})).await;
    let line = &mark["subscriptions"][0];
    assert_eq!(line["roaming_enabled"], true);
    // Only the requested field changed.
    assert_eq!(line["status"], "active");
    assert_eq!(line["product_id"], 1);
    assert_eq!(
        line["autopay_enabled"],
        updated["subscription"]["autopay_enabled"]
    );
}

#[tokio::test]
async fn an_account_unlocks_once() {
    let server = Server::start().await;
    let c = server.client().await;
    assert_eq!(security_log(&c, 254).await["account_locked"], true);
    let unlocked = ok(&c, "unlock_account", json!({"customer_id": 254})).await;
    assert_eq!(unlocked["log_entry"]["event_type"], "account_unlocked");

    let log = security_log(&c, 254).await;
    assert_eq!(log["account_locked"], false);
    assert!(log["locked_since"].is_null());
    assert_eq!(log["entries"][0]["event_type"], "account_unlocked");
    assert_eq!(log["entries"][0]["log_id"], unlocked["log_entry"]["log_id"]);

    let message = tool_error(&c, "unlock_account", json!({"customer_id": 254})).await;
    says(&message, &["customer 254", "not locked"]);
    assert_eq!(
        security_log(&c, 254).await,
        log,
        "the refusal wrote nothing"
    );
}

#[tokio::test]
async fn a_created_ticket_is_listed_as_open() {
    let server = Server::start().await;
    let c = server.client().await;
    let sub = first_subscription(&c, 253).await;
    let created = ok(
        &c,
        "create_support_ticket",
        json!({
            "customer_id": 253,
            "subscription_id": sub,
            "category": "roaming",
            "priority": "high",
            "subject": "  Roaming needed for trip to Spain  ",
            "description": "Leaves in 5 days.",
        }),
    )
    .await;
    let ticket = &created["ticket"];
    assert_eq!(ticket["status"], "open");
    assert_eq!(
        ticket["subject"], "Roaming needed for trip to Spain",
        "trimmed"
    );
    let open = ok(
        &c,
        "get_support_tickets",
        json!({"customer_id": 253, "open_only": true}),
    )
    .await;
    let listed = &open["tickets"][0];
    assert_eq!(listed["ticket_id"], ticket["ticket_id"], "newest first");
    assert_eq!(listed["subscription_id"], sub);
    assert_eq!(listed["category"], "roaming");
    assert_eq!(listed["priority"], "high");
    assert_eq!(listed["status"], "open");
}
