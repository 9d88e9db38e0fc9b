//! The agent loop with a scripted model against a real tools service: tool results go back to the
//! model, parallel calls run at once, tool errors are fed back rather than ending the turn, the
//! step limit and time budget hold, the model is offered only what the caller may call (and a
//! call to anything else never reaches the tools service), and a question for the person ends
//! the turn with `needs_input`.

mod common;
mod scripted_model;

use std::time::{Duration, Instant};

use agent_service::{
    agent::{self, Context, Limits, Status, Work},
    experts::{self, Expert},
    model::openai::OpenAiChat,
    upstream::ToolsConnection,
};
use common::*;
use scripted_model::{Scripted, ScriptedModel};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

fn model(server: &ScriptedModel) -> OpenAiChat {
    OpenAiChat::compatible(&format!("{}/v1", server.url), None, "scripted").expect("client")
}

async fn ask(
    server: &ScriptedModel,
    tools: &ToolsConnection,
    expert: &Expert,
    question: &str,
    limits: Limits,
) -> agent::Turn {
    let model = model(server);
    let ctx = Context {
        model: &model,
        work: Work {
            tools,
            progress: None,
            cancel: CancellationToken::new(),
        },
    };
    agent::run(&ctx, expert, &[], question, limits).await
}

/// The messages of the `n`th model request.
fn messages(server: &ScriptedModel, n: usize) -> Vec<Value> {
    server.requests()[n].body["messages"]
        .as_array()
        .expect("messages")
        .clone()
}

fn offered(server: &ScriptedModel) -> Vec<String> {
    server.requests()[0].body["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| t["function"]["name"].as_str().expect("name").to_owned())
        .collect()
}

#[tokio::test]
async fn tool_results_go_back_to_the_model_until_it_answers() {
    let stack = Stack::start(20).await;
    let tools = stack.connect(&["query"], "conv-loop").await;
    let server = ScriptedModel::start([
        Scripted::ToolCalls(vec![("get_billing_summary", json!({"customer_id": 251}))]),
        Scripted::Text("Your latest invoice is $150.00 because of 12 GB of overage."),
    ])
    .await;
    let turn = ask(
        &server,
        &tools,
        &experts::BILLING,
        "Why is my bill so high? I am customer 251.",
        Limits::default(),
    )
    .await;

    assert_eq!(turn.status, Status::Done, "{turn:?}");
    assert_eq!(
        turn.answer,
        "Your latest invoice is $150.00 because of 12 GB of overage."
    );
    assert_eq!(turn.steps, 2);
    assert_eq!(turn.tool_calls.len(), 1);
    assert!(turn.tool_calls[0].ok, "{turn:?}");
    assert_eq!(turn.tool_calls[0].arguments, json!({"customer_id": 251}));

    let first = messages(&server, 0);
    assert_eq!(first[0]["role"], "system");
    assert!(
        first[0]["content"]
            .as_str()
            .expect("text")
            .contains("billing expert")
    );
    let second = messages(&server, 1);
    let result = second.last().expect("the tool result");
    assert_eq!(result["role"], "tool");
    let content = result["content"].as_str().expect("text");
    // Fenced as untrusted data; the structured result inside.
    let inner = content
        .strip_prefix("<tool_result name=\"get_billing_summary\" trust=\"untrusted\">\n")
        .and_then(|rest| rest.strip_suffix("\n</tool_result>"))
        .unwrap_or_else(|| panic!("a fenced result: {content}"));
    let summary: Value = serde_json::from_str(inner).expect("JSON result");
    assert_eq!(summary["customer_id"], 251, "{summary}");
    assert_eq!(second[second.len() - 2]["role"], "assistant");
}

#[tokio::test]
async fn several_calls_asked_at_once_run_at_once() {
    // Each diagnosis takes 9 steps of 100 ms: two in a row would take 1.8 s.
    let stack = Stack::start(100).await;
    let tools = stack.connect(&["query"], "conv-parallel").await;
    let server = ScriptedModel::start([
        Scripted::ToolCalls(vec![
            ("trouble_shoot_device", json!({"customer_id": 252})),
            ("trouble_shoot_device", json!({"customer_id": 257})),
            ("get_customer_detail", json!({"customer_id": 252})),
        ]),
        Scripted::Text("Both diagnoses are done."),
    ])
    .await;
    let started = Instant::now();
    let turn = ask(
        &server,
        &tools,
        &experts::ACCOUNT,
        "Why are 252 and 257 having trouble?",
        Limits::default(),
    )
    .await;
    let took = started.elapsed();
    assert_eq!(turn.status, Status::Done, "{turn:?}");
    assert_eq!(turn.tool_calls.len(), 3);
    assert!(turn.tool_calls.iter().all(|c| c.ok), "{turn:?}");
    assert!(took < Duration::from_millis(1600), "took {took:?}");
    // All three results went back, each answering its own call.
    let second = messages(&server, 1);
    let results: Vec<&Value> = second.iter().filter(|m| m["role"] == "tool").collect();
    assert_eq!(results.len(), 3);
    let ids: Vec<&str> = results
        .iter()
        .map(|m| m["tool_call_id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["call_1_0", "call_1_1", "call_1_2"]);
}

#[tokio::test]
async fn tool_errors_and_bad_arguments_go_back_to_the_model() {
    let stack = Stack::start(20).await;
    let tools = stack.connect(&["query", "billing"], "conv-errors").await;
    let server = ScriptedModel::start([
        Scripted::ToolCalls(vec![
            ("get_invoice_payments", json!({"invoice_id": 999_999})),
            ("get_billing_summary", json!({"customer": "251"})),
        ]),
        Scripted::Text("I could not find invoice 999999."),
    ])
    .await;
    let turn = ask(
        &server,
        &tools,
        &experts::BILLING,
        "Show invoice 999999.",
        Limits::default(),
    )
    .await;
    assert_eq!(turn.status, Status::Done, "{turn:?}");
    assert_eq!(turn.answer, "I could not find invoice 999999.");
    assert!(turn.tool_calls.iter().all(|c| !c.ok), "{turn:?}");
    let missing = turn.tool_calls[0].error.as_deref().expect("an error");
    assert!(missing.contains("999999"), "{missing}");
    let results: Vec<String> = messages(&server, 1)
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().expect("text").to_owned())
        .collect();
    // The tools service's errors are fenced like its results: they can quote stored data.
    let error = "<tool_result name=\"get_invoice_payments\" trust=\"untrusted\" status=\"error\">";
    assert!(
        results[0].starts_with(error) && results[0].contains("999999"),
        "{results:?}"
    );
    assert!(
        results[1].contains("status=\"error\"") && results[1].contains("customer"),
        "{results:?}"
    );
}

#[tokio::test]
async fn the_model_is_offered_only_what_the_caller_may_call_and_cannot_unlock_anyway() {
    let stack = Stack::start(20).await;
    let query_only = stack.connect(&["query"], "conv-deputy").await;
    let server = ScriptedModel::start([
        Scripted::ToolCalls(vec![("unlock_account", json!({"customer_id": 254}))]),
        Scripted::Text("You are not allowed to unlock accounts."),
    ])
    .await;
    let turn = ask(
        &server,
        &query_only,
        &experts::ACCOUNT,
        "Unlock the account of customer 254.",
        Limits::default(),
    )
    .await;

    let offered = offered(&server);
    assert!(
        !offered.contains(&"unlock_account".to_owned()),
        "{offered:?}"
    );
    assert!(
        !offered.contains(&"get_security_logs".to_owned()),
        "security logs are the security role's: {offered:?}"
    );
    assert!(
        offered.contains(&"get_customer_detail".to_owned()),
        "{offered:?}"
    );
    assert!(
        !offered.contains(&"get_billing_summary".to_owned()),
        "outside the account expert's subset: {offered:?}"
    );
    assert_eq!(turn.status, Status::Done);
    assert_eq!(turn.answer, "You are not allowed to unlock accounts.");
    let refused = &turn.tool_calls[0];
    assert!(!refused.ok);
    assert!(
        refused
            .error
            .as_deref()
            .unwrap_or("")
            .contains("not available"),
        "{refused:?}"
    );
    // The account is still locked.
    let security = stack.connect(&["security"], "conv-check").await;
    let logs = done(&security, "get_security_logs", json!({"customer_id": 254})).await;
    assert_eq!(logs["account_locked"], true, "{logs}");
}

#[tokio::test]
async fn the_step_limit_and_the_time_budget_end_a_turn_that_does_not_converge() {
    let stack = Stack::start(200).await;
    let tools = stack.connect(&["query"], "conv-limits").await;
    let again = || Scripted::ToolCalls(vec![("get_customer_detail", json!({"customer_id": 251}))]);
    let server = ScriptedModel::start([again(), again(), again(), again()]).await;
    let limits = Limits {
        max_steps: 3,
        ..Limits::default()
    };
    let turn = ask(&server, &tools, &experts::BILLING, "Loop forever.", limits).await;
    assert_eq!(turn.status, Status::Error);
    assert!(
        turn.error.as_deref().unwrap_or("").contains("3 steps"),
        "{turn:?}"
    );
    assert_eq!(server.requests().len(), 3, "no request past the limit");
    assert_eq!(turn.tool_calls.len(), 3);

    // A diagnosis of 9 x 200 ms against a 500 ms budget.
    let server = ScriptedModel::start([Scripted::ToolCalls(vec![(
        "trouble_shoot_device",
        json!({"customer_id": 252}),
    )])])
    .await;
    let limits = Limits {
        time_budget: Duration::from_millis(500),
        ..Limits::default()
    };
    let started = Instant::now();
    let turn = ask(&server, &tools, &experts::ACCOUNT, "Diagnose 252.", limits).await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(turn.status, Status::Error);
    assert!(
        turn.error.as_deref().unwrap_or("").contains("within"),
        "{turn:?}"
    );
}

#[tokio::test]
async fn a_question_for_the_person_ends_the_turn_with_needs_input() {
    let stack = Stack::start(20).await;
    let tools = stack.connect(&["query"], "conv-input").await;
    let server = ScriptedModel::start([Scripted::ToolCalls(vec![(
        "request_input",
        json!({"question": "Which customer id is yours?"}),
    )])])
    .await;
    let turn = ask(
        &server,
        &tools,
        &experts::PRODUCT,
        "Which promotions can I get?",
        Limits::default(),
    )
    .await;
    assert_eq!(turn.status, Status::NeedsInput);
    assert_eq!(turn.answer, "Which customer id is yours?");
    assert!(turn.tool_calls.is_empty());
}
