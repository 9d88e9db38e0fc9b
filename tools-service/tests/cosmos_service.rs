//! The service on Cosmos DB (`USE_COSMOSDB=true`, on the local emulator) answers as it does on
//! SQLite: the same seed gives the same scenario facts, writes go through, and `/readyz` names
//! the backend and database.

mod common;

use common::*;
use serde_json::{Value, json};
use testkit::cosmos;

/// `value` with every timestamp replaced by a placeholder: each service seeds its data relative
/// to the instant it started, so only the instants differ between two services.
fn without_instants(value: Value) -> Value {
    match value {
        Value::String(text) if chrono::DateTime::parse_from_rfc3339(&text).is_ok() => {
            Value::String("<instant>".into())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(without_instants).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k, without_instants(v)))
                .collect(),
        ),
        other => other,
    }
}

#[tokio::test]
async fn the_service_on_cosmos_answers_what_it_answers_on_sqlite() {
    if !cosmos::installed() {
        return;
    }
    let emulator = cosmos::Emulator::start().await;
    let database = cosmos::database("service");
    let on_cosmos = Server::start_with(&[
        ("USE_COSMOSDB", "true"),
        ("COSMOSDB_ENDPOINT", &emulator.endpoint),
        ("COSMOSDB_KEY", cosmos::EMULATOR_KEY),
        ("COSMOS_DATABASE_NAME", &database),
    ])
    .await;
    let on_sqlite = Server::start().await;

    let ready = on_cosmos.readyz().await;
    assert_eq!(ready["store"], "cosmos", "{ready}");
    assert_eq!(ready["database"], database.as_str(), "{ready}");
    assert!(!ready.to_string().contains("127.0.0.1"), "{ready}");

    let (cosmos_client, sqlite_client) = (on_cosmos.client().await, on_sqlite.client().await);
    for (tool, args) in [
        ("get_billing_summary", json!({"customer_id": 251})),
        ("get_customer_detail", json!({"customer_id": 254})),
        ("get_security_logs", json!({"customer_id": 254})),
        ("get_support_tickets", json!({"customer_id": 253})),
        ("get_all_customers", json!({"limit": 5})),
    ] {
        let (a, b) = (
            ok(&cosmos_client, tool, args.clone()).await,
            ok(&sqlite_client, tool, args).await,
        );
        assert_eq!(
            without_instants(a),
            without_instants(b),
            "{tool} differs between the backends"
        );
    }

    // A write on Cosmos: the invoice's balance and its payments follow.
    let invoice = latest_invoice(&cosmos_client, 251).await;
    let paid = ok(
        &cosmos_client,
        "pay_invoice",
        json!({"invoice_id": invoice, "amount": 40.00}),
    )
    .await;
    assert_eq!(money(&paid["invoice"]["outstanding"]), 60_00, "{paid}");
    let after = payments(&cosmos_client, invoice).await;
    assert!(
        after["payments"]
            .as_array()
            .expect("payments")
            .iter()
            .any(|p| p["payment_id"] == paid["payment"]["payment_id"]),
        "{after}"
    );
    let refused = tool_error(
        &cosmos_client,
        "pay_invoice",
        json!({"invoice_id": invoice, "amount": 60.01}),
    )
    .await;
    assert!(
        refused.contains("exceeds the outstanding balance"),
        "{refused}"
    );
}
