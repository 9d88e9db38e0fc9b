//! The scenario customers' facts, read through the real tools over MCP: what the agents will
//! rely on to answer the nine typical questions.

// Amounts in cents are written dollars_cents, e.g. 150_00.
#![allow(clippy::inconsistent_digit_grouping)]

mod common;

use common::*;
use serde_json::{Value, json};

fn subs(detail: &Value) -> &Vec<Value> {
    detail["subscriptions"].as_array().expect("subscriptions")
}

#[tokio::test]
async fn scenario_facts_hold() {
    let server = Server::start().await;
    let c = server.client().await;

    // 251 John Doe: $150 overage invoice vs usual $60, ~22 GB used on a 10 GB cap, $100 due.
    let john = ok(&c, "get_customer_detail", json!({"customer_id": 251})).await;
    assert_eq!(
        (john["first_name"].as_str(), john["last_name"].as_str()),
        (Some("John"), Some("Doe"))
    );
    assert_eq!(john["loyalty_level"], "Silver");
    let sub = &subs(&john)[0];
    assert_eq!(sub["product_category"], "internet");
    assert_eq!(sub["data_cap_gb"], 10);
    let billing = ok(&c, "get_billing_summary", json!({"customer_id": 251})).await;
    assert_eq!(
        money(&billing["total_due"]),
        100_00,
        "total due exactly $100.00"
    );
    let line = &billing["subscriptions"][0];
    assert_eq!(money(&line["latest_invoice"]["amount"]), 150_00);
    assert_eq!(money(&line["latest_invoice"]["paid"]), 50_00);
    assert_eq!(money(&line["usual_invoice_amount"]), 60_00);
    let usage = ok(
        &c,
        "get_data_usage",
        json!({"subscription_id": sub["subscription_id"], "aggregate": true}),
    )
    .await;
    let gb = usage["totals"]["data_used_gb"].as_f64().expect("gb");
    assert!((21.0..=23.0).contains(&gb), "about 22 GB used, got {gb}");
    assert!(
        usage["daily"].as_array().expect("daily").is_empty(),
        "aggregate leaves out daily rows"
    );
    let daily = ok(
        &c,
        "get_data_usage",
        json!({"subscription_id": sub["subscription_id"]}),
    )
    .await;
    assert_eq!(daily["daily"].as_array().expect("daily").len(), 30);
    let invoice_id = &line["latest_invoice"]["invoice_id"];
    let payments = ok(
        &c,
        "get_invoice_payments",
        json!({"invoice_id": invoice_id}),
    )
    .await;
    assert_eq!(money(&payments["payments"][0]["amount"]), 50_00);

    // 252 Jane Doe: 1 Gbps, slow, open incident investigating.
    let jane = ok(&c, "get_customer_detail", json!({"customer_id": 252})).await;
    assert_eq!(jane["loyalty_level"], "Gold");
    let sub = &subs(&jane)[0];
    assert_eq!(
        (sub["speed_tier"].as_str(), sub["service_status"].as_str()),
        (Some("1 Gbps"), Some("slow"))
    );
    let detail = ok(
        &c,
        "get_subscription_detail",
        json!({"subscription_id": sub["subscription_id"]}),
    )
    .await;
    let incidents = detail["incidents"].as_array().expect("incidents");
    assert!(incidents.iter().any(|i| i["status"] == "investigating"));

    // 253 Mark Doe: roaming disabled; the roaming add-on exists.
    let mark = ok(&c, "get_customer_detail", json!({"customer_id": 253})).await;
    assert_eq!(mark["loyalty_level"], "Bronze");
    assert_eq!(subs(&mark)[0]["roaming_enabled"], false);
    let addons = ok(&c, "get_products", json!({"category": "addon"})).await;
    let addon = &addons["products"][0];
    assert!(addon["name"].as_str().expect("name").contains("Roaming"));
    let detail = ok(
        &c,
        "get_product_detail",
        json!({"product_id": addon["product_id"]}),
    )
    .await;
    assert_eq!(money(&detail["monthly_fee"]), 25_00);

    // 254 Alice Doe: locked about 12 minutes ago.
    let logs = ok(&c, "get_security_logs", json!({"customer_id": 254})).await;
    assert_eq!(logs["account_locked"], true);
    assert_eq!(logs["entries"][0]["event_type"], "account_locked");
    let since: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(logs["locked_since"].clone()).expect("timestamp");
    let minutes = (chrono::Utc::now() - since).num_minutes();
    assert!(
        (11..=20).contains(&minutes),
        "locked about 12 minutes ago, got {minutes}"
    );

    // 255 Ron Doe: eligible for the 10% Gold Mobile Loyalty Discount; a future one is not yet.
    let promos = ok(&c, "get_eligible_promotions", json!({"customer_id": 255})).await;
    let eligible = promos["eligible"].as_array().expect("eligible");
    assert!(
        eligible
            .iter()
            .any(|p| p["name"] == "Mobile Loyalty Discount" && p["discount_percent"] == 10)
    );
    let upcoming = promos["upcoming"].as_array().expect("upcoming");
    assert!(upcoming.iter().all(|p| p["state"] == "upcoming") && !upcoming.is_empty());
    let all = ok(&c, "get_promotions", no_args()).await;
    let states: Vec<&str> = all["promotions"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|p| p["state"].as_str())
        .collect();
    assert!(
        states.contains(&"active") && states.contains(&"expired") && states.contains(&"upcoming")
    );
    // A Bronze customer does not get the Gold discount.
    let bronze = ok(&c, "get_eligible_promotions", json!({"customer_id": 253})).await;
    assert!(
        bronze["eligible"]
            .as_array()
            .expect("list")
            .iter()
            .all(|p| p["name"] != "Mobile Loyalty Discount")
    );

    // 256 Mary Doe: handset returned 25 days ago.
    let orders = ok(&c, "get_customer_orders", json!({"customer_id": 256})).await;
    let returned: Vec<&Value> = orders["orders"]
        .as_array()
        .expect("orders")
        .iter()
        .filter(|o| o["status"] == "returned")
        .collect();
    assert_eq!(returned.len(), 1);
    assert!(
        returned[0]["item"]
            .as_str()
            .expect("item")
            .contains("handset")
    );
    let returned_on: chrono::NaiveDate =
        serde_json::from_value(returned[0]["returned_on"].clone()).expect("date");
    assert_eq!(
        (chrono::Utc::now().date_naive() - returned_on).num_days(),
        25
    );

    // 257 Tom Smith: several open call_drop tickets.
    let tickets = ok(
        &c,
        "get_support_tickets",
        json!({"customer_id": 257, "open_only": true}),
    )
    .await;
    let open = tickets["tickets"].as_array().expect("tickets");
    assert!(open.len() >= 2 && open.iter().all(|t| t["category"] == "call_drop"));
    let everything = ok(&c, "get_support_tickets", json!({"customer_id": 257})).await;
    assert!(
        everything["tickets"].as_array().expect("tickets").len() > open.len(),
        "open_only filters"
    );

    // 258 Sara Lee: suspended, invoice >14 days past due, two failed attempts.
    let sara = ok(&c, "get_customer_detail", json!({"customer_id": 258})).await;
    assert_eq!(subs(&sara)[0]["status"], "suspended");
    let billing = ok(&c, "get_billing_summary", json!({"customer_id": 258})).await;
    let overdue = &billing["open_invoices"][0];
    assert_eq!(overdue["status"], "overdue");
    let due: chrono::NaiveDate = serde_json::from_value(overdue["due_date"].clone()).expect("date");
    assert!((chrono::Utc::now().date_naive() - due).num_days() > 14);
    assert_eq!(
        billing["failed_payments"].as_array().expect("failed").len(),
        2
    );
    assert_eq!(
        money(&billing["overdue_amount"]),
        money(&billing["total_due"])
    );

    // 259 Alex Brown: mobile, 10 GB cap, ~22 GB used, $150 invoice.
    let alex = ok(&c, "get_customer_detail", json!({"customer_id": 259})).await;
    let sub = &subs(&alex)[0];
    assert_eq!(
        (
            sub["product_category"].as_str(),
            sub["data_cap_gb"].as_i64()
        ),
        (Some("mobile"), Some(10))
    );
    let usage = ok(
        &c,
        "get_data_usage",
        json!({"subscription_id": sub["subscription_id"], "aggregate": true}),
    )
    .await;
    let gb = usage["totals"]["data_used_gb"].as_f64().expect("gb");
    assert!((21.0..=23.0).contains(&gb), "about 22 GB used, got {gb}");
    let detail = ok(
        &c,
        "get_subscription_detail",
        json!({"subscription_id": sub["subscription_id"]}),
    )
    .await;
    assert_eq!(money(&detail["invoices"][0]["amount"]), 150_00);
}

#[tokio::test]
async fn knowledge_base_ranks_by_meaning_of_the_words() {
    let server = Server::start().await;
    let c = server.client().await;
    let hits = ok(
        &c,
        "search_knowledge_base",
        json!({"query": "data overage policy"}),
    )
    .await;
    assert_eq!(hits["results"][0]["title"], "Data Overage Policy");
    assert_eq!(hits["mode"], "lexical");
    assert_eq!(
        hits["results"].as_array().expect("results").len(),
        3,
        "topk defaults to 3"
    );
    let refund = ok(
        &c,
        "search_knowledge_base",
        json!({"query": "refund for a returned handset", "topk": 1}),
    )
    .await;
    assert_eq!(refund["results"].as_array().expect("results").len(), 1);
    let content = refund["results"][0]["content"].as_str().expect("content");
    assert!(content.contains("7-10 business days") && content.contains("30-day return window"));
    let roaming = ok(
        &c,
        "search_knowledge_base",
        json!({"query": "activate roaming before travel", "topk": 5}),
    )
    .await;
    let text = roaming["results"][0]["content"].as_str().expect("content");
    assert!(text.contains("3 days"), "roaming cut-off fact");
    let adjust = ok(
        &c,
        "search_knowledge_base",
        json!({"query": "upgrade plan retroactively invoice adjustment"}),
    )
    .await;
    assert!(
        adjust["results"][0]["content"]
            .as_str()
            .expect("content")
            .contains("15 days")
    );
}

#[tokio::test]
async fn customer_list_pages_with_a_cursor_to_the_end() {
    let server = Server::start().await;
    let c = server.client().await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut args = json!({"limit": 7});
        if let Some(cur) = &cursor {
            args["cursor"] = json!(cur);
        }
        let page = ok(&c, "get_all_customers", args).await;
        let customers = page["customers"].as_array().expect("customers");
        assert!(customers.len() <= 7);
        seen.extend(
            customers
                .iter()
                .map(|c| c["customer_id"].as_i64().expect("id")),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let expected: usize = TEST_CUSTOMERS.parse::<usize>().expect("count") + 9;
    assert_eq!(seen.len(), expected, "every customer exactly once");
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "ordered by id, no repeats"
    );
}
