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

/// The binary's output when it is started with `env` and ends by itself within 30 s.
async fn start_fails(dir: &std::path::Path, env: &[(&str, String)]) -> String {
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_tools-service"))
            .env_clear()
            .env("BIND_ADDR", "127.0.0.1:0")
            .env("DB_PATH", dir.join("audit.db"))
            .env("DISABLE_AUTH", "true")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the service gave up within 30 s")
    .expect("run tools-service");
    assert!(!output.status.success(), "the service started");
    String::from_utf8_lossy(&[output.stdout, output.stderr].concat()).into_owned()
}

#[tokio::test]
async fn with_its_managed_identity_the_service_sends_entra_tokens_and_names_what_is_missing() {
    use devstack::managed_identity::ManagedIdentity;
    use tools_service::store::cosmos::CosmosStore;

    if !cosmos::installed() {
        return;
    }
    const CLIENT_ID: &str = "7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f";
    // An account as deploy/ makes it: the data needs an Entra token; only the key (standing in
    // for the control plane) creates databases and containers.
    let emulator = cosmos::Emulator::entra_only().await;
    let identity = ManagedIdentity::spawn(std::time::Duration::from_secs(3600))
        .await
        .expect("identity endpoint");
    let database = cosmos::database("entra");
    let mut env: Vec<(&str, String)> = identity.env().to_vec();
    env.extend([
        ("USE_COSMOSDB", "true".to_owned()),
        ("COSMOSDB_ENDPOINT", emulator.endpoint.clone()),
        ("COSMOS_DATABASE_NAME", database.clone()),
        ("AZURE_CREDENTIAL", "managed-identity".to_owned()),
        ("AZURE_CLIENT_ID", CLIENT_ID.to_owned()),
    ]);
    let dir = tempfile::tempdir().expect("temp dir");

    emulator
        .provision_as_told(&database, CosmosStore::containers(), async || {
            start_fails(dir.path(), &env).await
        })
        .await;
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start_with(&env).await;
    let ready = server.readyz().await;
    assert_eq!(ready["store"], "cosmos", "{ready}");
    let client = server.client().await;
    let detail = ok(&client, "get_customer_detail", json!({"customer_id": 251})).await;
    assert_eq!(detail["customer_id"], 251, "{detail}");
    identity
        .only_asked_for("https://cosmos.azure.com", CLIENT_ID)
        .expect("Cosmos DB tokens of the service's identity");
}

#[tokio::test]
async fn a_throttled_store_is_retried_and_past_the_retries_the_caller_is_told_to_wait() {
    if !cosmos::installed() {
        return;
    }
    let emulator = cosmos::Emulator::start().await;
    let throttle = cosmos::Throttle::start(&emulator).await;
    let database = cosmos::database("throttled");
    let server = Server::start_with(&[
        ("USE_COSMOSDB", "true"),
        ("COSMOSDB_ENDPOINT", &throttle.endpoint),
        ("COSMOSDB_KEY", cosmos::EMULATOR_KEY),
        ("COSMOS_DATABASE_NAME", &database),
    ])
    .await;
    let client = server.client().await;

    // A few 429s: the SDK waits as told and the call succeeds.
    throttle.refuse(3);
    let detail = ok(&client, "get_customer_detail", json!({"customer_id": 251})).await;
    assert_eq!(detail["customer_id"], 251, "{detail}");
    assert_eq!(throttle.refused(), 3);

    // Throttled for good: the call ends within the retry budget, saying what to do.
    throttle.refuse(u64::MAX);
    let started = std::time::Instant::now();
    let said = tool_error(&client, "get_customer_detail", json!({"customer_id": 251})).await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "gave up after {:?}",
        started.elapsed()
    );
    assert!(
        said.contains("busy") && said.contains("try again"),
        "{said}"
    );
    assert!(
        !said.contains("127.0.0.1") && !said.contains("429"),
        "{said}"
    );
    throttle.refuse(0);
    ok(&client, "get_customer_detail", json!({"customer_id": 251})).await;
}
