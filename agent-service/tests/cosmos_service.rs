//! The agent service with its memory on Cosmos DB (`USE_COSMOSDB=true`, on the local emulator),
//! over real MCP HTTP with real tokens, a real tools service and a scripted model: an expert
//! answers, the conversation continues on the same replica and on a second one sharing the
//! database (and never for someone else), and `/readyz` names the backend and the database,
//! never the endpoint. Legacy MCP sessions across replicas are `sessions.rs`, on both stores.

mod common;
mod scripted_model;

use common::*;
use devstack::idp::defaults;
use scripted_model::{Scripted, ScriptedModel};
use serde_json::{Value, json};
use testkit::cosmos;

/// An agent service whose memory is `store`, answering with `model`; its `db` file keeps only
/// the audit trail.
async fn agent(
    stack: &Stack,
    db: &std::path::Path,
    store: &MemoryStore,
    model: &ScriptedModel,
) -> AgentService {
    let mut flags = store.flags();
    flags.extend([
        "--openai-base-url".to_owned(),
        format!("{}/v1", model.url),
        "--openai-model".to_owned(),
        "scripted".to_owned(),
    ]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    AgentService::start(stack, db, &flags).await
}

/// The texts of the messages the model was sent in request `n`.
fn sent(model: &ScriptedModel, n: usize) -> Vec<String> {
    model.requests()[n].body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["content"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn an_expert_on_cosmos_answers_continues_the_conversation_and_names_cosmos() {
    if !cosmos::installed() {
        return;
    }
    let database = cosmos::database("agent");
    let store = MemoryStore::Cosmos {
        emulator: Box::new(cosmos::Emulator::start().await),
        database: database.clone(),
    };
    let stack = Stack::start(20).await;
    let model = ScriptedModel::start([
        Scripted::ToolCalls(vec![("get_billing_summary", json!({"customer_id": 251}))]),
        Scripted::Text("Your latest invoice is $150.00; $100.00 is due."),
        Scripted::Text("It was overage: 12 GB over your cap."),
        Scripted::Text("Yes, the overage is billed once."),
    ])
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let one = agent(&stack, &dir.path().join("one.db"), &store, &model).await;

    let ready: Value = reqwest::get(format!("{}/readyz", one.url))
        .await
        .expect("GET /readyz")
        .json()
        .await
        .expect("JSON");
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["memory"], "ok", "{ready}");
    assert_eq!(ready["memory_backend"], "cosmos", "{ready}");
    assert_eq!(ready["database"], database.as_str(), "{ready}");
    assert!(
        !ready.to_string().contains("127.0.0.1"),
        "no endpoint: {ready}"
    );

    let alice = token_of(&stack, defaults::CONTOSO, "alice");
    let first = ask(
        &one.url,
        &alice,
        "ask_billing_expert",
        json!({"question": "Why is my bill high? I am customer 251."}),
    )
    .await;
    assert_eq!(
        first["structuredContent"]["answer"], "Your latest invoice is $150.00; $100.00 is due.",
        "{first}"
    );
    assert_eq!(first["structuredContent"]["tool_calls"][0]["ok"], true);
    let id = conversation(&first);

    // Alice continues: the expert sees her earlier question and its answer.
    let second = ask(
        &one.url,
        &alice,
        "ask_billing_expert",
        json!({"question": "Why was it so high?", "conversation_id": id}),
    )
    .await;
    assert_eq!(conversation(&second), id);
    let texts = sent(&model, 2);
    for earlier in [
        "Why is my bill high? I am customer 251.",
        "Your latest invoice is $150.00; $100.00 is due.",
    ] {
        assert!(
            texts.iter().any(|t| t == earlier),
            "{earlier} missing: {texts:?}"
        );
    }

    // Someone else cannot continue it, on this replica or any.
    let bob = token_of(&stack, defaults::CONTOSO, "bob");
    let refused = ask(
        &one.url,
        &bob,
        "ask_billing_expert",
        json!({"question": "And mine?", "conversation_id": id}),
    )
    .await;
    assert_eq!(refused["isError"], true, "{refused}");
    assert_eq!(
        model.requests().len(),
        3,
        "the refused question reached no model"
    );

    // A second replica on the same database continues it with the whole history.
    let two = agent(&stack, &dir.path().join("two.db"), &store, &model).await;
    let third = ask(
        &two.url,
        &alice,
        "ask_billing_expert",
        json!({"question": "Is it billed once?", "conversation_id": id}),
    )
    .await;
    assert_eq!(conversation(&third), id);
    let texts = sent(&model, 3);
    for earlier in [
        "Why was it so high?",
        "It was overage: 12 GB over your cap.",
    ] {
        assert!(
            texts.iter().any(|t| t == earlier),
            "{earlier} missing: {texts:?}"
        );
    }
}

#[tokio::test]
async fn with_its_managed_identity_the_memory_is_kept_with_entra_tokens_and_what_is_missing_is_named()
 {
    use agent_service::memory::cosmos::CosmosConversations;
    use devstack::{load, managed_identity::ManagedIdentity};
    use std::{path::Path, time::Duration};

    if !cosmos::installed() {
        return;
    }
    const BINARY: &str = env!("CARGO_BIN_EXE_agent-service");
    const CLIENT_ID: &str = "3e2d1c0b-9a8f-4e7d-b6c5-a4f3e2d1c0b9";
    // An account as deploy/ makes it: the data needs an Entra token; only the key (standing in
    // for the control plane) creates databases and containers.
    let emulator = cosmos::Emulator::entra_only().await;
    let identity = ManagedIdentity::spawn(Duration::from_secs(3600))
        .await
        .expect("identity endpoint");
    let database = cosmos::database("agent-entra");
    let stack = Stack::start(20).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let flags = agent_flags(
        &stack,
        &dir.path().join("audit.db"),
        &[
            "--use-cosmosdb",
            "true",
            "--cosmosdb-endpoint",
            &emulator.endpoint,
            "--cosmos-database-name",
            &database,
            "--azure-credential",
            "managed-identity",
            "--azure-client-id",
            CLIENT_ID,
        ],
    );
    let start_fails = async || {
        let output = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::process::Command::new(BINARY)
                .args(&flags)
                .env_clear()
                .envs(identity.env())
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("the service gave up within 30 s")
        .expect("run agent-service");
        assert!(!output.status.success(), "the service started");
        String::from_utf8_lossy(&[output.stdout, output.stderr].concat()).into_owned()
    };

    emulator
        .provision_as_told(&database, CosmosConversations::containers(), start_fails)
        .await;
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let agent = load::spawn(Path::new(BINARY), &args, identity.env())
        .await
        .expect("the agent service starts with its identity");
    let base = format!("http://{}", agent.addr);
    let ready: Value = reqwest::get(format!("{base}/readyz"))
        .await
        .expect("GET /readyz")
        .json()
        .await
        .expect("JSON");
    assert_eq!(ready["memory_backend"], "cosmos", "{ready}");
    assert_eq!(ready["memory"], "ok", "{ready}");

    let alice = token_of(&stack, defaults::CONTOSO, "alice");
    let first = ask(
        &base,
        &alice,
        "ask_billing_expert",
        json!({"question": "Why is my bill high? I am customer 251."}),
    )
    .await;
    assert_eq!(first["structuredContent"]["status"], "done", "{first}");
    let id = conversation(&first);
    let second = ask(
        &base,
        &alice,
        "ask_billing_expert",
        json!({"question": "And what is overdue?", "conversation_id": id}),
    )
    .await;
    assert_eq!(second["structuredContent"]["status"], "done", "{second}");
    assert_eq!(conversation(&second), id, "the conversation was read back");

    identity
        .only_asked_for("https://cosmos.azure.com", CLIENT_ID)
        .expect("Cosmos DB tokens of the service's identity");
}
