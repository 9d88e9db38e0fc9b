//! The model clients against a scripted OpenAI-compatible server: the request shape Azure
//! OpenAI expects (deployment in the path, `api-version`, `api-key`), the shape compatible
//! endpoints expect (model in the body, bearer key), tool calls and text read back, and
//! provider errors reported without the key.

mod scripted_model;

use agent_service::model::{
    ChatModel, Message, ModelError, ToolCall, ToolSpec, openai::OpenAiChat,
};
use scripted_model::{Scripted, ScriptedModel};
use serde_json::json;
use shared::config::{AzureDeployment, AzureOpenAiAuth, Secret};

fn billing_tool() -> ToolSpec {
    ToolSpec {
        name: "get_billing_summary".into(),
        description: "Billing summary of a customer".into(),
        parameters: json!({
            "type": "object",
            "properties": {"customer_id": {"type": "integer"}},
            "required": ["customer_id"]
        }),
    }
}

fn azure(server: &ScriptedModel) -> OpenAiChat {
    OpenAiChat::azure(&AzureDeployment {
        endpoint: server.url.clone(),
        deployment: "gpt-4o-chat".into(),
        api_version: "2024-10-21".into(),
        auth: AzureOpenAiAuth::ApiKey(Secret::new("azure-key-123")),
    })
    .expect("client")
}

#[tokio::test]
async fn azure_requests_name_the_deployment_version_and_key_and_tool_calls_come_back() {
    let server = ScriptedModel::start([Scripted::ToolCalls(vec![
        ("get_billing_summary", json!({"customer_id": 251})),
        ("search_knowledge_base", json!({"query": "data overage"})),
    ])])
    .await;
    let model = azure(&server);
    let messages = vec![
        Message::System("You are the billing expert.".into()),
        Message::User("Why is my bill so high? I am customer 251.".into()),
    ];
    let reply = model
        .complete(&messages, &[billing_tool()])
        .await
        .expect("a reply");
    assert_eq!(reply.text, None);
    assert_eq!(
        reply.tool_calls,
        [
            ToolCall {
                id: "call_1_0".into(),
                name: "get_billing_summary".into(),
                arguments: r#"{"customer_id":251}"#.into()
            },
            ToolCall {
                id: "call_1_1".into(),
                name: "search_knowledge_base".into(),
                arguments: r#"{"query":"data overage"}"#.into()
            },
        ]
    );

    let sent = &server.requests()[0];
    assert_eq!(
        sent.path,
        "/openai/deployments/gpt-4o-chat/chat/completions"
    );
    assert_eq!(
        sent.query.get("api-version").map(String::as_str),
        Some("2024-10-21")
    );
    assert_eq!(
        sent.headers.get("api-key").map(String::as_str),
        Some("azure-key-123")
    );
    assert!(
        !sent.headers.contains_key("authorization"),
        "Azure keys go in api-key"
    );
    let body = &sent.body;
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["messages"][1]["role"], "user");
    assert_eq!(
        body["messages"][1]["content"],
        "Why is my bill so high? I am customer 251."
    );
    assert_eq!(body["tools"][0]["type"], "function");
    assert_eq!(body["tools"][0]["function"]["name"], "get_billing_summary");
    assert_eq!(
        body["tools"][0]["function"]["parameters"]["required"],
        json!(["customer_id"])
    );
    assert_eq!(body["parallel_tool_calls"], true);
    assert!(
        model.describe().contains("gpt-4o-chat"),
        "{}",
        model.describe()
    );
    assert!(!model.describe().contains("azure-key-123"));
}

#[tokio::test]
async fn compatible_endpoints_get_the_model_in_the_body_and_a_bearer_key_and_the_history_in_order()
{
    let server =
        ScriptedModel::start([Scripted::Text("Your bill includes 12 GB of overage.")]).await;
    let key = Secret::new("local-key");
    let model = OpenAiChat::compatible(&format!("{}/v1/", server.url), Some(&key), "llama3.1:8b")
        .expect("client");
    let messages = vec![
        Message::System("You are the billing expert.".into()),
        Message::User("Why is my bill high? Customer 251.".into()),
        Message::Assistant {
            text: None,
            tool_calls: vec![ToolCall {
                id: "call_a".into(),
                name: "get_billing_summary".into(),
                arguments: r#"{"customer_id":251}"#.into(),
            }],
        },
        Message::Tool {
            call_id: "call_a".into(),
            content: r#"{"total_due": 100.0}"#.into(),
        },
    ];
    let reply = model.complete(&messages, &[]).await.expect("a reply");
    assert_eq!(
        reply.text.as_deref(),
        Some("Your bill includes 12 GB of overage.")
    );
    assert!(reply.tool_calls.is_empty());

    let sent = &server.requests()[0];
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(
        sent.headers.get("authorization").map(String::as_str),
        Some("Bearer local-key")
    );
    let body = &sent.body;
    assert_eq!(body["model"], "llama3.1:8b");
    assert_eq!(body["messages"][2]["role"], "assistant");
    assert_eq!(body["messages"][2]["tool_calls"][0]["id"], "call_a");
    assert_eq!(
        body["messages"][2]["tool_calls"][0]["function"]["name"],
        "get_billing_summary"
    );
    assert_eq!(body["messages"][3]["role"], "tool");
    assert_eq!(body["messages"][3]["tool_call_id"], "call_a");
    assert!(
        body.get("tools").is_none(),
        "no tools offered: the model must answer"
    );
    assert!(body.get("parallel_tool_calls").is_none());
}

#[tokio::test]
async fn provider_errors_and_empty_answers_are_reported_without_the_key() {
    let server = ScriptedModel::start([
        Scripted::Error(400, "This model's maximum context length is 128000 tokens."),
        Scripted::NoChoices,
    ])
    .await;
    let model = azure(&server);
    let question = [Message::User("hello".into())];

    let error = model.complete(&question, &[]).await.expect_err("a 400");
    let text = error.detail();
    assert!(matches!(error, ModelError::Request { .. }), "{error:?}");
    assert!(text.contains("maximum context length"), "{text}");
    assert!(text.contains("gpt-4o-chat"), "names the deployment: {text}");
    assert!(!text.contains("azure-key-123"), "{text}");
    // What a caller may read names neither the endpoint nor the provider's words.
    let shown = error.to_string();
    assert!(
        !shown.contains("http") && !shown.contains("gpt-4o-chat"),
        "{shown}"
    );
    assert!(!shown.contains("maximum context length"), "{shown}");

    let error = model
        .complete(&question, &[])
        .await
        .expect_err("no choices");
    assert!(matches!(error, ModelError::Empty { .. }), "{error:?}");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_an_error_naming_it() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("address");
    let model = OpenAiChat::compatible(&format!("http://{closed}/v1"), None, "m").expect("client");
    let error = model
        .complete(&[Message::User("hi".into())], &[])
        .await
        .expect_err("nothing listens");
    assert!(error.detail().contains(&closed.to_string()), "{error:?}");
    assert!(!error.to_string().contains(&closed.to_string()), "{error}");
}
