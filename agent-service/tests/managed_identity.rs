//! The agent service authenticating to Azure OpenAI with its managed identity instead of a key:
//! the real binary, started with the environment Azure Container Apps gives an app
//! (`IDENTITY_ENDPOINT`, `IDENTITY_HEADER`) pointing at a stand-in identity endpoint, asks a
//! scripted Azure OpenAI deployment with `Authorization: Bearer` tokens from it, renews them
//! before they expire, and refuses to start when the identity is not there.
//!
//! The identity endpoint is read from the process environment by the Azure SDK, so these tests
//! run the service as a child process with exactly that environment.

mod common;
mod scripted_model;

use std::{path::Path, process::Stdio, time::Duration};

use common::*;
use devstack::{
    idp::{TokenSpec, defaults},
    load,
    managed_identity::ManagedIdentity,
};
use scripted_model::{Scripted, ScriptedModel};
use serde_json::json;

const BINARY: &str = env!("CARGO_BIN_EXE_agent-service");
const CLIENT_ID: &str = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9";

/// The flags of an agent service using `model` as an Azure OpenAI deployment through its
/// user-assigned managed identity.
fn flags(stack: &Stack, db: &Path, model: &ScriptedModel) -> Vec<String> {
    agent_flags(
        stack,
        db,
        &[
            "--azure-openai-endpoint",
            &model.url,
            "--azure-openai-chat-deployment",
            "gpt-4o-chat",
            "--azure-credential",
            "managed-identity",
            "--azure-client-id",
            CLIENT_ID,
        ],
    )
}

fn alice(stack: &Stack) -> String {
    stack
        .idp
        .idp
        .mint(&TokenSpec::new(defaults::CONTOSO, ["query"], "alice"))
}

/// The bearer token each model request carried, asserting none carried a key.
fn bearers(model: &ScriptedModel) -> Vec<String> {
    model
        .requests()
        .iter()
        .map(|request| {
            assert!(
                !request.headers.contains_key("api-key"),
                "no key is sent with an identity"
            );
            assert_eq!(
                request.path,
                "/openai/deployments/gpt-4o-chat/chat/completions"
            );
            request
                .headers
                .get("authorization")
                .and_then(|v| v.strip_prefix("Bearer "))
                .expect("a bearer token")
                .to_owned()
        })
        .collect()
}

/// An identity endpoint issuing tokens for `lifetime`, a tools service, a model answering
/// `replies`, and the agent service binary using them, listening at `base`. Bind every field:
/// the service is killed when `_agent` is dropped.
struct Setup {
    identity: ManagedIdentity,
    stack: Stack,
    model: ScriptedModel,
    base: String,
    _agent: load::Process,
    _dir: tempfile::TempDir,
}

async fn setup(lifetime: Duration, replies: impl IntoIterator<Item = Scripted>) -> Setup {
    let identity = ManagedIdentity::spawn(lifetime)
        .await
        .expect("identity endpoint");
    let stack = Stack::start(20).await;
    let model = ScriptedModel::start(replies).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let args = flags(&stack, &dir.path().join("agent.db"), &model);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let agent = load::spawn(Path::new(BINARY), &args, identity.env())
        .await
        .expect("the agent service starts with its identity");
    Setup {
        base: format!("http://{}", agent.addr),
        identity,
        stack,
        model,
        _agent: agent,
        _dir: dir,
    }
}

#[tokio::test]
async fn the_experts_ask_azure_openai_with_the_managed_identity_token_and_no_key() {
    let Setup {
        identity,
        stack,
        model,
        base,
        _agent,
        _dir,
    } = setup(
        Duration::from_secs(3600),
        [
            Scripted::Text("Customer 1 can get the loyalty discount."),
            Scripted::Text("It ends next month."),
        ],
    )
    .await;

    // The token was fetched at start, before the service listened.
    let at_start = identity.requests();
    assert_eq!(at_start.len(), 1, "{at_start:?}");
    let request = &at_start[0];
    assert!(
        request.secret_ok,
        "X-IDENTITY-HEADER carries IDENTITY_HEADER"
    );
    assert_eq!(request.api_version.as_deref(), Some("2019-08-01"));
    assert_eq!(
        request.resource.as_deref(),
        Some("https://cognitiveservices.azure.com")
    );
    assert_eq!(request.client_id.as_deref(), Some(CLIENT_ID));

    let ready = reqwest::get(format!("{base}/readyz"))
        .await
        .expect("readyz")
        .text()
        .await
        .expect("body");
    assert!(ready.contains("managed identity"), "{ready}");

    let token = alice(&stack);
    for (question, expected) in [
        (
            "What promotions can customer 1 get?",
            "Customer 1 can get the loyalty discount.",
        ),
        ("When does it end?", "It ends next month."),
    ] {
        let result = ask(
            &base,
            &token,
            "ask_product_expert",
            json!({ "question": question }),
        )
        .await;
        let answer = &result["structuredContent"];
        assert_eq!(answer["status"], "done", "{result}");
        assert_eq!(answer["answer"], expected);
    }

    // One token served both questions: it is cached until near its expiry.
    assert_eq!(bearers(&model), ["mi-token-1", "mi-token-1"]);
    assert_eq!(identity.requests().len(), 1);
}

#[tokio::test]
async fn a_token_near_its_expiry_is_renewed_before_a_request_carries_it() {
    // Two minutes: inside the five minutes before expiry in which tokens are renewed.
    let Setup {
        identity,
        stack,
        model,
        base,
        _agent,
        _dir,
    } = setup(
        Duration::from_secs(120),
        [Scripted::Text("First."), Scripted::Text("Second.")],
    )
    .await;
    let token = alice(&stack);
    for _ in 0..2 {
        let result = ask(
            &base,
            &token,
            "ask_billing_expert",
            json!({"question": "Why is my bill high? I am customer 1."}),
        )
        .await;
        assert_eq!(result["structuredContent"]["status"], "done", "{result}");
    }
    assert_eq!(bearers(&model), ["mi-token-2", "mi-token-3"]);
    assert_eq!(identity.requests().len(), 3);
}

#[tokio::test]
async fn without_that_identity_the_service_stops_at_start_and_says_why() {
    let identity = ManagedIdentity::spawn(Duration::from_secs(3600))
        .await
        .expect("identity endpoint");
    identity.refuse();
    let stack = Stack::start(20).await;
    let model = ScriptedModel::start([]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("agent.db");
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(BINARY)
            .args(flags(&stack, &db, &model))
            .env_clear()
            .envs(identity.env())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("it stops instead of waiting")
    .expect("it ran");
    assert!(!output.status.success());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        said.contains("managed identity (AZURE_CREDENTIAL"),
        "{said}"
    );
    assert!(said.contains("has not been assigned"), "{said}");
    assert!(!said.contains("listening on"), "{said}");
    assert!(model.requests().is_empty());
    // A configuration error creates nothing: no conversation database was made.
    assert!(!db.exists());
}
