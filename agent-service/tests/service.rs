//! The agent service over real MCP HTTP, in front of a real tools service, with real tokens and
//! a scripted model: answers with structured content, conversations remembered (only for their
//! owner, across a restart and across two replicas), the caller's rights bounding the expert,
//! and inner progress relayed while the tool runs.

mod common;
mod scripted_model;

use std::time::{Duration, Instant};

use common::*;
use devstack::idp::{TokenSpec, defaults};
use scripted_model::{Scripted, ScriptedModel};
use serde_json::{Value, json};

fn model_flags(server: &ScriptedModel) -> Vec<String> {
    vec![
        "--openai-base-url".to_owned(),
        format!("{}/v1", server.url),
        "--openai-model".to_owned(),
        "scripted".to_owned(),
    ]
}

async fn agent(stack: &Stack, db: &std::path::Path, model: &ScriptedModel) -> AgentService {
    let flags = model_flags(model);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    AgentService::start(stack, db, &flags).await
}

fn token(stack: &Stack, subject: &str, roles: &[&str]) -> String {
    stack.idp.idp.mint(&TokenSpec::new(
        defaults::CONTOSO,
        roles.iter().copied(),
        subject,
    ))
}

/// A tools service (diagnosis steps of `step_ms`), a scripted model answering `replies`, and an
/// agent service using both with its memory in a fresh folder.
struct Setup {
    stack: Stack,
    model: ScriptedModel,
    agent: AgentService,
    _dir: tempfile::TempDir,
}

async fn setup(step_ms: u64, replies: impl IntoIterator<Item = Scripted>) -> Setup {
    let stack = Stack::start(step_ms).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let model = ScriptedModel::start(replies).await;
    let agent = agent(&stack, &dir.path().join("agent.db"), &model).await;
    Setup {
        stack,
        model,
        agent,
        _dir: dir,
    }
}

#[tokio::test]
async fn an_expert_answers_and_remembers_the_conversation_for_its_owner_only() {
    let Setup {
        stack,
        model,
        agent,
        _dir,
    } = setup(
        20,
        [
            Scripted::ToolCalls(vec![("get_billing_summary", json!({"customer_id": 251}))]),
            Scripted::Text("Your latest invoice is $150.00; $100.00 is due."),
            Scripted::Text("It was overage: 12 GB over your cap."),
        ],
    )
    .await;
    let alice = token(&stack, "alice", &["query"]);

    let first = ask(
        &agent.url,
        &alice,
        "ask_billing_expert",
        json!({"question": "Why is my bill high? I am customer 251."}),
    )
    .await;
    let answer = &first["structuredContent"];
    assert_eq!(answer["domain"], "billing", "{first}");
    assert_eq!(answer["status"], "done");
    assert_eq!(
        answer["answer"],
        "Your latest invoice is $150.00; $100.00 is due."
    );
    assert_eq!(answer["tool_calls"][0]["name"], "get_billing_summary");
    assert_eq!(answer["tool_calls"][0]["ok"], true);
    assert_eq!(first["content"][0]["text"], answer["answer"]);
    let conversation = answer["conversation_id"]
        .as_str()
        .expect("an id")
        .to_owned();
    assert!(conversation.starts_with("conv_"), "{conversation}");

    // Alice continues: the expert sees her earlier question and its answer.
    let second = ask(
        &agent.url,
        &alice,
        "ask_billing_expert",
        json!({"question": "Why was it so high?", "conversation_id": conversation}),
    )
    .await;
    assert_eq!(
        second["structuredContent"]["conversation_id"],
        conversation.as_str()
    );
    let sent = &model.requests()[2].body["messages"];
    let texts: Vec<&str> = sent
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert!(
        texts.contains(&"Why is my bill high? I am customer 251."),
        "{texts:?}"
    );
    assert!(
        texts.contains(&"Your latest invoice is $150.00; $100.00 is due."),
        "{texts:?}"
    );

    // Bob cannot continue Alice's conversation, and learns nothing about it.
    let bob = token(&stack, "bob", &["query"]);
    let refused = ask(
        &agent.url,
        &bob,
        "ask_billing_expert",
        json!({"question": "And mine?", "conversation_id": conversation}),
    )
    .await;
    assert_eq!(refused["isError"], true, "{refused}");
    let message = refused["content"][0]["text"].as_str().expect("text");
    assert!(message.contains("no conversation"), "{message}");
    assert_eq!(
        model.requests().len(),
        3,
        "the refused question reached no model"
    );

    let malformed = ask(
        &agent.url,
        &alice,
        "ask_billing_expert",
        json!({"question": "hi", "conversation_id": "../etc"}),
    )
    .await;
    assert_eq!(malformed["isError"], true, "{malformed}");
    let unknown_field = ask(&agent.url, &alice, "ask_billing_expert", json!({"q": "hi"})).await;
    assert_eq!(unknown_field["isError"], true, "{unknown_field}");
}

#[tokio::test]
async fn conversations_survive_a_restart_and_span_two_replicas() {
    let stack = Stack::start(20).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("agent.db");
    let model = ScriptedModel::start([
        Scripted::Text("First answer."),
        Scripted::Text("Second answer."),
        Scripted::Text("Third answer."),
    ])
    .await;
    let alice = token(&stack, "alice", &["query"]);

    let one = agent(&stack, &db, &model).await;
    let first = ask(
        &one.url,
        &alice,
        "ask_product_expert",
        json!({"question": "Q1"}),
    )
    .await;
    let id = first["structuredContent"]["conversation_id"]
        .as_str()
        .expect("id")
        .to_owned();
    one.stop().await;

    // A new process on the same database continues it...
    let restarted = agent(&stack, &db, &model).await;
    let second = ask(
        &restarted.url,
        &alice,
        "ask_product_expert",
        json!({"question": "Q2", "conversation_id": id}),
    )
    .await;
    assert_eq!(second["structuredContent"]["status"], "done", "{second}");
    // ...and so does a second replica running beside it.
    let replica = agent(&stack, &db, &model).await;
    let third = ask(
        &replica.url,
        &alice,
        "ask_product_expert",
        json!({"question": "Q3", "conversation_id": id}),
    )
    .await;
    assert_eq!(third["structuredContent"]["status"], "done", "{third}");
    let sent: Vec<String> = model.requests()[2].body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["content"].as_str().map(str::to_owned))
        .collect();
    for earlier in ["Q1", "First answer.", "Q2", "Second answer."] {
        assert!(
            sent.iter().any(|t| t == earlier),
            "{earlier} missing: {sent:?}"
        );
    }
}

#[tokio::test]
async fn the_expert_cannot_exceed_its_callers_rights() {
    let Setup {
        stack,
        model,
        agent,
        _dir,
    } = setup(
        20,
        [
            Scripted::ToolCalls(vec![("unlock_account", json!({"customer_id": 254}))]),
            Scripted::Text("I am not allowed to unlock accounts for you."),
        ],
    )
    .await;
    let query_only = token(&stack, "alice", &["query"]);
    let result = ask(
        &agent.url,
        &query_only,
        "ask_account_expert",
        json!({"question": "Unlock the account of customer 254."}),
    )
    .await;
    let answer = &result["structuredContent"];
    assert_eq!(
        answer["answer"],
        "I am not allowed to unlock accounts for you."
    );
    assert_eq!(answer["tool_calls"][0]["ok"], false, "{answer}");
    let requests = model.requests();
    let offered: Vec<&str> = requests[0].body["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["function"]["name"].as_str())
        .collect();
    assert!(!offered.contains(&"unlock_account"), "{offered:?}");
    let security = stack.connect(&["security"], "check").await;
    let logs = done(&security, "get_security_logs", json!({"customer_id": 254})).await;
    assert_eq!(logs["account_locked"], true, "no unlock happened");
}

#[tokio::test]
async fn inner_progress_is_relayed_while_the_tool_runs() {
    let Setup {
        stack,
        model: _,
        agent,
        _dir,
    } = setup(
        120,
        [
            Scripted::ToolCalls(vec![("trouble_shoot_device", json!({"customer_id": 252}))]),
            Scripted::Text("Your line is slow because of an open incident."),
        ],
    )
    .await;
    let body = json!({
        "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {
            "name": "ask_account_expert",
            "arguments": {"question": "My internet is slow, customer 252."},
            "_meta": {"progressToken": "outer"}
        }
    });
    let sent = Instant::now();
    let mut response = post(&agent.url, &token(&stack, "alice", &["query"]), &body).await;
    let mut buffer = String::new();
    let mut progress: Vec<(Duration, Value)> = Vec::new();
    let mut result_at = None;
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(20), response.chunk())
        .await
        .expect("the stream moves")
        .expect("intact")
    {
        buffer.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            for data in event.lines().filter_map(|l| l.strip_prefix("data:")) {
                let Ok(message) = serde_json::from_str::<Value>(data.trim()) else {
                    continue;
                };
                if message["method"] == "notifications/progress" {
                    progress.push((sent.elapsed(), message["params"].clone()));
                } else if message["id"] == 7 {
                    assert_eq!(message["result"]["structuredContent"]["status"], "done");
                    result_at = Some(sent.elapsed());
                }
            }
        }
    }
    let result_at = result_at.expect("the answer");
    assert!(
        progress.len() >= 9,
        "{} progress notifications",
        progress.len()
    );
    assert!(progress.iter().all(|(_, p)| p["progressToken"] == "outer"));
    let steps: Vec<f64> = progress
        .iter()
        .map(|(_, p)| p["progress"].as_f64().expect("number"))
        .collect();
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "{steps:?}");
    assert!(
        progress[0].1["message"]
            .as_str()
            .expect("message")
            .starts_with("trouble_shoot_device:")
    );
    assert!(
        result_at - progress[0].0 >= Duration::from_millis(600),
        "relayed as it happened, not at the end: first {:?}, answer {result_at:?}",
        progress[0].0
    );
}

#[tokio::test]
async fn readiness_names_the_model_and_a_missing_token_is_refused() {
    let Setup {
        stack,
        model: _,
        agent,
        _dir,
    } = setup(20, []).await;
    let ready: Value = reqwest::get(format!("{}/readyz", agent.url))
        .await
        .expect("readyz")
        .json()
        .await
        .expect("JSON");
    assert_eq!(ready["status"], "ready");
    // The kind of model and how inner calls are authorized, never where anything is.
    assert_eq!(ready["model"], "OpenAI-compatible", "{ready}");
    assert_eq!(ready["memory"], "ok", "{ready}");
    assert_eq!(ready["memory_backend"], "sqlite", "{ready}");
    let database = ready["database"].as_str().expect("a name");
    assert!(
        database.ends_with(".db") && !database.contains('/'),
        "{ready}"
    );
    assert_eq!(ready["signing_keys"], "ok", "{ready}");
    assert_eq!(ready["tools_service"], "not_probed", "{ready}");
    assert_eq!(ready["inner_calls"], "token_exchange", "{ready}");
    let text = ready.to_string();
    assert!(!text.contains(&stack.tools_url), "{text}");
    assert!(
        !text.contains("127.0.0.1") && !text.contains("contoso-agent"),
        "{text}"
    );
    let response = reqwest::Client::new()
        .post(format!("{}/mcp", agent.url))
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401);
    assert!(response.headers().contains_key("www-authenticate"));
}

#[tokio::test]
async fn without_a_model_the_offline_planner_answers_and_says_so() {
    let stack = Stack::start(20).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = AgentService::start(&stack, &dir.path().join("agent.db"), &[]).await;
    let ready: Value = reqwest::get(format!("{}/readyz", agent.url))
        .await
        .expect("readyz")
        .json()
        .await
        .expect("JSON");
    assert!(
        ready["model"].as_str().expect("model").contains("offline"),
        "{ready}"
    );

    let alice = token(&stack, "alice", &["query"]);
    let result = ask(
        &agent.url,
        &alice,
        "ask_billing_expert",
        json!({"question": "Why is my bill so high this month? I'm customer 251."}),
    )
    .await;
    let answer = &result["structuredContent"];
    assert_eq!(answer["status"], "done", "{result}");
    let text = answer["answer"].as_str().expect("text");
    assert!(
        text.contains(agent_service::planner::OFFLINE_NOTE),
        "{text}"
    );
    assert!(text.contains("150.00") && text.contains("100.00"), "{text}");
    assert!(
        answer["tool_calls"]
            .as_array()
            .expect("calls")
            .iter()
            .any(|c| c["name"] == "get_billing_summary" && c["ok"] == true),
        "{answer}"
    );
}
