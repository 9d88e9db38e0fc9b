//! MCP sessions for legacy clients (`MCP_SESSIONS=true`): a client of protocol 2025-11-25 that
//! initializes gets an `Mcp-Session-Id`, and its questions without `conversation_id` continue
//! one conversation: on another replica on the same database too, and never when sessions are
//! off. A session belongs to whoever initialized it: to anyone else (another subject, another
//! tenant) it does not exist, for POST, the GET stream and DELETE alike.

mod common;
mod scripted_model;

use common::*;
use devstack::idp::defaults;
use scripted_model::{Scripted, ScriptedModel};
use serde_json::{Value, json};

fn flags(model: &ScriptedModel, sessions: bool) -> Vec<String> {
    vec![
        "--openai-base-url".to_owned(),
        format!("{}/v1", model.url),
        "--openai-model".to_owned(),
        "scripted".to_owned(),
        "--mcp-sessions".to_owned(),
        sessions.to_string(),
    ]
}

async fn agent(stack: &Stack, db: &std::path::Path, flags: &[String]) -> AgentService {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    AgentService::start(stack, db, &flags).await
}

fn token(stack: &Stack, subject: &str) -> String {
    token_of(stack, defaults::CONTOSO, subject)
}

/// A GET (the session's server-to-client stream) or DELETE (its end) of `session`.
async fn session_request(
    base: &str,
    token: &str,
    method: reqwest::Method,
    session: &str,
) -> reqwest::Response {
    reqwest::Client::new()
        .request(method, format!("{base}/mcp"))
        .bearer_auth(token)
        .header("accept", "text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .header("mcp-session-id", session)
        .send()
        .await
        .expect("request")
}

fn call_body(question: &str) -> Value {
    json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "ask_billing_expert", "arguments": {"question": question}}
    })
}

/// The user messages the model was sent in request `n`.
fn questions_sent(model: &ScriptedModel, n: usize) -> Vec<String> {
    model.requests()[n].body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Two replicas of the agent service with sessions on, on one database, and the model they
/// share answering `replies`.
struct Replicas {
    stack: Stack,
    model: ScriptedModel,
    one: AgentService,
    two: AgentService,
    _dir: tempfile::TempDir,
}

impl Replicas {
    async fn start(store: &MemoryStore, replies: Vec<Scripted>) -> Replicas {
        let stack = Stack::start(20).await;
        let model = ScriptedModel::start(replies).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("agent.db");
        let mut flags = flags(&model, true);
        flags.extend(store.flags());
        let one = agent(&stack, &db, &flags).await;
        let two = agent(&stack, &db, &flags).await;
        Replicas {
            stack,
            model,
            one,
            two,
            _dir: dir,
        }
    }
}

#[tokio::test]
async fn a_session_continues_its_conversation_on_any_replica_and_only_for_its_owner() {
    for store in MemoryStore::all().await {
        eprintln!("on {}", store.name());
        continues_on_any_replica_for_its_owner_only(&store).await;
    }
}

async fn continues_on_any_replica_for_its_owner_only(store: &MemoryStore) {
    let Replicas {
        stack,
        model,
        one,
        two,
        _dir,
    } = Replicas::start(
        store,
        vec![
            Scripted::Text("Your bill is $150.00."),
            Scripted::Text("Because of 12 GB of overage."),
            Scripted::Text("Hello Bob."),
        ],
    )
    .await;
    let alice = token(&stack, "alice");

    let session = initialize(&one.url, &alice)
        .await
        .expect("a legacy client gets a session");
    let first = conversation(
        &ask_in(
            &one.url,
            &alice,
            Some(&session),
            "ask_billing_expert",
            json!({"question": "How much is my bill? I am customer 1."}),
        )
        .await,
    );

    // The other replica never saw this session: it takes it over from the database, and the
    // question without conversation_id continues the same conversation.
    let second = conversation(
        &ask_in(
            &two.url,
            &alice,
            Some(&session),
            "ask_billing_expert",
            json!({"question": "Why so much?"}),
        )
        .await,
    );
    assert_eq!(second, first);
    assert_eq!(
        questions_sent(&model, 1),
        ["How much is my bill? I am customer 1.", "Why so much?"],
        "the earlier question came along"
    );

    // Bob's own session holds a conversation of his own, without her turns.
    let bob = token(&stack, "bob");
    let bobs_session = initialize(&one.url, &bob).await.expect("a session");
    let bobs = conversation(
        &ask_in(
            &one.url,
            &bob,
            Some(&bobs_session),
            "ask_billing_expert",
            json!({"question": "Hi, I am Bob."}),
        )
        .await,
    );
    assert_ne!(bobs, first);
    assert_eq!(questions_sent(&model, 2), ["Hi, I am Bob."]);
}

#[tokio::test]
async fn a_session_is_unknown_to_everyone_but_its_owner_and_survives_their_attempts() {
    for store in MemoryStore::all().await {
        eprintln!("on {}", store.name());
        unknown_to_all_but_its_owner(&store).await;
    }
}

async fn unknown_to_all_but_its_owner(store: &MemoryStore) {
    let Replicas {
        stack,
        model,
        one,
        two,
        _dir,
    } = Replicas::start(
        store,
        vec![
            Scripted::Text("Your bill is $150.00."),
            Scripted::Text("Because of 12 GB of overage."),
        ],
    )
    .await;
    let alice = token(&stack, "alice");
    let session = initialize(&one.url, &alice).await.expect("a session");
    let first = conversation(
        &ask_in(
            &one.url,
            &alice,
            Some(&session),
            "ask_billing_expert",
            json!({"question": "How much is my bill? I am customer 1."}),
        )
        .await,
    );

    // Another person of the same tenant, and the same subject name in another tenant, on the
    // replica holding the session and on the other one: exactly what an unknown id gets.
    let intruders = [
        token(&stack, "bob"),
        token_of(&stack, defaults::FABRIKAM, "alice"),
    ];
    for intruder in &intruders {
        for base in [&one.url, &two.url] {
            let posted = post_in(base, intruder, Some(&session), &call_body("Whose bill?")).await;
            assert_eq!(posted.status(), 404);
            assert_eq!(
                posted.text().await.expect("body"),
                "Not Found: Session not found"
            );
            for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
                let response = session_request(base, intruder, method.clone(), &session).await;
                assert_eq!(response.status(), 404, "{method} by an intruder");
            }
        }
    }
    assert_eq!(model.requests().len(), 1, "no intruder reached the expert");

    // Alice's session is intact: her next question continues her conversation.
    let second = conversation(
        &ask_in(
            &two.url,
            &alice,
            Some(&session),
            "ask_billing_expert",
            json!({"question": "Why so much?"}),
        )
        .await,
    );
    assert_eq!(second, first);

    // She ends it; then it is gone for her too.
    let ended = session_request(&one.url, &alice, reqwest::Method::DELETE, &session).await;
    assert!(ended.status().is_success(), "{}", ended.status());
    let after = post_in(&one.url, &alice, Some(&session), &call_body("Still there?")).await;
    assert_eq!(after.status(), 404);
}

#[tokio::test]
async fn initializing_beyond_the_per_owner_cap_ends_the_oldest_session() {
    let stack = Stack::start(20).await;
    let model = ScriptedModel::start([Scripted::Text("Second."), Scripted::Text("Third.")]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut flags = flags(&model, true);
    flags.extend(["--sessions-per-owner".to_owned(), "2".to_owned()]);
    let agent = agent(&stack, &dir.path().join("agent.db"), &flags).await;
    let alice = token(&stack, "alice");
    let bob = token(&stack, "bob");
    let bobs = initialize(&agent.url, &bob).await.expect("a session");
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(initialize(&agent.url, &alice).await.expect("a session"));
    }
    let oldest = post_in(&agent.url, &alice, Some(&sessions[0]), &call_body("First?")).await;
    assert_eq!(
        oldest.status(),
        404,
        "the oldest of three ended at a cap of two"
    );
    for (session, question) in sessions[1..].iter().zip(["Second?", "Third?"]) {
        let result = ask_in(
            &agent.url,
            &alice,
            Some(session),
            "ask_billing_expert",
            json!({ "question": question }),
        )
        .await;
        conversation(&result);
    }
    // Another owner's sessions do not count against hers.
    let still = session_request(&agent.url, &bob, reqwest::Method::DELETE, &bobs).await;
    assert!(still.status().is_success(), "{}", still.status());
}

#[tokio::test]
async fn sessions_pushed_out_of_memory_or_idle_go_on_with_their_conversations() {
    let stack = Stack::start(20).await;
    let replies = ["One.", "Two.", "Three.", "Four."].map(Scripted::Text);
    let model = ScriptedModel::start(replies).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut flags = flags(&model, true);
    flags.extend(["--sessions-in-memory", "1", "--session-idle-secs", "1"].map(str::to_owned));
    let agent = agent(&stack, &dir.path().join("agent.db"), &flags).await;
    let alice = token(&stack, "alice");
    let ask = |session: String, question: &'static str| {
        let (url, alice) = (agent.url.clone(), alice.clone());
        async move {
            let arguments = json!({ "question": question });
            conversation(
                &ask_in(
                    &url,
                    &alice,
                    Some(&session),
                    "ask_billing_expert",
                    arguments,
                )
                .await,
            )
        }
    };
    let first = initialize(&agent.url, &alice).await.expect("a session");
    let one = ask(first.clone(), "One?").await;
    // Only one session fits in memory: the second pushes the first out, and using the first
    // again brings it back from the database (pushing the second out).
    let second = initialize(&agent.url, &alice).await.expect("a session");
    let two = ask(second.clone(), "Two?").await;
    assert_ne!(one, two);
    assert_eq!(ask(first.clone(), "Three?").await, one);
    // Idle past a second, the session has left memory and still goes on.
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    assert_eq!(ask(second, "Four?").await, two);
    assert_eq!(
        questions_sent(&model, 2),
        ["One?", "Three?"],
        "the restored session kept its conversation's history"
    );
}

#[tokio::test]
async fn without_sessions_no_session_is_given_and_each_question_starts_afresh() {
    let stack = Stack::start(20).await;
    let model = ScriptedModel::start([Scripted::Text("First."), Scripted::Text("Second.")]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = agent(&stack, &dir.path().join("agent.db"), &flags(&model, false)).await;
    let alice = token(&stack, "alice");
    assert_eq!(initialize(&agent.url, &alice).await, None);
    let mut ids = Vec::new();
    for question in ["One?", "Two?"] {
        let result = ask(
            &agent.url,
            &alice,
            "ask_billing_expert",
            json!({ "question": question }),
        )
        .await;
        ids.push(conversation(&result));
    }
    assert_ne!(ids[0], ids[1]);
    assert_eq!(questions_sent(&model, 1), ["Two?"]);
}

#[tokio::test]
async fn a_session_the_service_never_gave_is_refused() {
    let stack = Stack::start(20).await;
    let model = ScriptedModel::start([]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = agent(&stack, &dir.path().join("agent.db"), &flags(&model, true)).await;
    let response = post_in(
        &agent.url,
        &token(&stack, "alice"),
        Some("made-up-session"),
        &json!({
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "ask_billing_expert", "arguments": {"question": "Hi"}}
        }),
    )
    .await;
    assert_eq!(response.status(), 404, "the client must initialize again");
    assert!(model.requests().is_empty());
}

/// A `tools/call` of `ask_account_expert` as request `id`, with a progress token.
fn call_as(id: u64, question: &str) -> Value {
    json!({
        "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {
            "name": "ask_account_expert",
            "arguments": {"question": question},
            "_meta": {"progressToken": format!("p{id}")}
        }
    })
}

/// The JSON-RPC answer (result or error) in a response's SSE stream.
async fn answer(response: reqwest::Response) -> Value {
    let text = response.text().await.expect("body");
    let data = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .find(|d| d.contains("\"result\"") || d.contains("\"error\""))
        .unwrap_or_else(|| panic!("no answer in {text}"));
    serde_json::from_str(data.trim()).expect("JSON-RPC")
}

#[tokio::test]
async fn a_request_under_the_id_of_one_still_running_is_refused_and_steals_nothing() {
    // Each of the diagnosis' nine steps takes 300 ms: the first question runs for seconds.
    let stack = Stack::start(300).await;
    let model = ScriptedModel::start([
        Scripted::ToolCalls(vec![(
            "trouble_shoot_device",
            json!({"customer_id": 252, "device": "home router"}),
        )]),
        Scripted::Text("Your router needs a restart."),
        Scripted::Text("Your plan is Fiber 500."),
        Scripted::Text("Nothing else is wrong."),
    ])
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = agent(&stack, &dir.path().join("agent.db"), &flags(&model, true)).await;
    let alice = token(&stack, "alice");
    let session = initialize(&agent.url, &alice).await.expect("a session");
    let post = |body: Value| {
        let (url, alice, session) = (agent.url.clone(), alice.clone(), session.clone());
        async move { post_in(&url, &alice, Some(&session), &body).await }
    };

    // The slow question's stream is dropped at its first progress report, as a client that
    // gives up does; the question goes on in the service.
    let mut slow = post(call_as(7, "My internet is slow, customer 252.")).await;
    let mut seen = String::new();
    while !seen.contains("notifications/progress") {
        let chunk = slow
            .chunk()
            .await
            .expect("stream")
            .expect("a progress report");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(slow);

    // Its id is still taken: a request under it is refused, and says why.
    let refused = answer(post(call_as(7, "What is my plan?")).await).await;
    assert_eq!(refused["id"], 7, "{refused}");
    assert_eq!(refused["error"]["code"], -32600, "{refused}");
    let message = refused["error"]["message"].as_str().expect("a message");
    assert!(
        message.contains("request id 7 is still in use"),
        "{message}"
    );

    // Another id is served meanwhile (the model's replies go to whichever turn asks next).
    let other = answer(post(call_as(8, "What is my plan?")).await).await;
    assert_eq!(other["id"], 8, "{other}");
    assert_eq!(
        other["result"]["structuredContent"]["status"], "done",
        "{other}"
    );

    // Once the slow question has finished, its id may be used again (as clients that number
    // every request 1 do, one after another).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let again = loop {
        let reply = answer(post(call_as(7, "Anything else?")).await).await;
        if reply.get("result").is_some() {
            break reply;
        }
        assert_eq!(reply["error"]["code"], -32600, "{reply}");
        assert!(std::time::Instant::now() < deadline, "id 7 never freed");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(again["id"], 7, "{again}");
    assert_eq!(
        again["result"]["structuredContent"]["answer"], "Nothing else is wrong.",
        "the model's last reply, to this question: {again}"
    );
    let sequential = answer(post(call_as(7, "Anything else?")).await).await;
    assert!(
        sequential.get("result").is_some() || sequential["error"]["code"] != -32600,
        "an id whose request has been answered is free at once: {sequential}"
    );
}
