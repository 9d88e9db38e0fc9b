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
