//! Bounded fan-out: a model asking for 200 tool calls at once gets at most
//! `AGENT_MAX_CALLS_PER_TURN` of them made, never more than `AGENT_MAX_PARALLEL_CALLS` in flight
//! (counted by a proxy in front of the real tools service), the rest answered to the model as
//! tool errors, and the turn ends normally.

mod common;
mod scripted_model;

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use agent_service::{
    agent::{self, Context, Limits, Status, Work},
    experts,
    model::openai::OpenAiChat,
};
use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    response::Response,
};
use common::*;
use futures::StreamExt;
use scripted_model::{Scripted, ScriptedModel};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Tool calls the proxy has seen in flight: now, and the most at once.
#[derive(Default)]
struct InFlight {
    now: AtomicUsize,
    most: AtomicUsize,
    total: AtomicUsize,
}

/// Counts one call from its request until its response body has been passed on whole.
struct Counted(Arc<InFlight>);

impl Counted {
    fn start(counts: &Arc<InFlight>) -> Counted {
        let now = counts.now.fetch_add(1, Ordering::SeqCst) + 1;
        counts.most.fetch_max(now, Ordering::SeqCst);
        counts.total.fetch_add(1, Ordering::SeqCst);
        Counted(counts.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Clone)]
struct Proxy {
    upstream: String,
    http: reqwest::Client,
    counts: Arc<InFlight>,
}

/// Passes every request on to the tools service, streaming the response back, and counts the
/// `tools/call` requests in flight.
async fn forward(State(proxy): State<Proxy>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .expect("request body");
    let is_call = serde_json::from_slice::<Value>(&body)
        .is_ok_and(|message| message["method"] == "tools/call");
    let counted = is_call.then(|| Counted::start(&proxy.counts));
    let mut upstream = proxy.http.request(parts.method, &proxy.upstream).body(body);
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            upstream = upstream.header(name, value);
        }
    }
    let answer = upstream.send().await.expect("the tools service answers");
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if name != "content-length" && name != "transfer-encoding" {
            response = response.header(name, value);
        }
    }
    // The count ends when the stream (holding it) is dropped: the body is through.
    let stream = answer.bytes_stream().map(move |chunk| {
        let _held = &counted;
        chunk
    });
    response
        .body(Body::from_stream(stream))
        .expect("a response")
}

async fn proxy(upstream: &str) -> (String, Arc<InFlight>) {
    let counts = Arc::new(InFlight::default());
    let state = Proxy {
        upstream: upstream.to_owned(),
        http: reqwest::Client::new(),
        counts: counts.clone(),
    };
    let app = Router::new().fallback(forward).with_state(state);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/mcp", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, counts)
}

#[tokio::test]
async fn two_hundred_calls_at_once_are_served_within_the_bounds() {
    // Each diagnosis takes 9 steps of 5 ms, so calls overlap if they are let.
    let stack = Stack::start(5).await;
    let (url, counts) = proxy(&stack.tools_url).await;
    let tools = client_of(&url)
        .connect(&stack.token(&["query"]), "conv-fan-out")
        .await
        .expect("connects through the proxy");
    let calls: Vec<(&'static str, Value)> = (0..200)
        .map(|_| ("trouble_shoot_device", json!({"customer_id": 252})))
        .collect();
    let server = ScriptedModel::start([
        Scripted::ToolCalls(calls),
        Scripted::Text("I ran the diagnoses I could."),
    ])
    .await;
    let model =
        OpenAiChat::compatible(&format!("{}/v1", server.url), None, "scripted").expect("client");
    let limits = Limits::default();
    assert_eq!(
        (limits.max_parallel_calls, limits.max_calls_per_turn),
        (4, 24),
        "the documented defaults"
    );
    let ctx = Context {
        model: &model,
        work: Work {
            tools: &tools,
            progress: None,
            cancel: CancellationToken::new(),
        },
    };
    let turn = agent::run(&ctx, &experts::ACCOUNT, &[], "Diagnose 252, a lot.", limits).await;

    assert_eq!(turn.status, Status::Done, "{:?}", turn.error);
    assert_eq!(turn.answer, "I ran the diagnoses I could.");
    assert_eq!(turn.tool_calls.len(), 24, "the calls made");
    assert!(
        turn.tool_calls.iter().all(|c| c.ok),
        "{:?}",
        turn.tool_calls
    );
    assert_eq!(
        counts.total.load(Ordering::SeqCst),
        24,
        "calls that reached the tools service"
    );
    assert_eq!(
        counts.most.load(Ordering::SeqCst),
        4,
        "never more than 4 in flight, and the 4 are used"
    );

    // Every one of the 200 calls was answered to the model, in order: 24 results, 176 errors.
    let messages = server.requests()[1].body["messages"]
        .as_array()
        .expect("messages")
        .clone();
    let results: Vec<&str> = messages
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().expect("text"))
        .collect();
    assert_eq!(results.len(), 200);
    assert!(
        results[..24]
            .iter()
            .all(|r| r
                .starts_with("<tool_result name=\"trouble_shoot_device\" trust=\"untrusted\">")),
        "{:?}",
        &results[..2]
    );
    assert!(
        results[24..]
            .iter()
            .all(|r| *r == "ERROR: not run: at most 24 tool calls per question"),
        "{:?}",
        &results[24..26]
    );
}

#[tokio::test]
async fn the_bounds_are_settings() {
    let stack = Stack::start(5).await;
    let (url, counts) = proxy(&stack.tools_url).await;
    let tools = client_of(&url)
        .connect(&stack.token(&["query"]), "conv-fan-out-set")
        .await
        .expect("connects through the proxy");
    let calls: Vec<(&'static str, Value)> = (0..10)
        .map(|_| ("trouble_shoot_device", json!({"customer_id": 257})))
        .collect();
    let server = ScriptedModel::start([
        Scripted::ToolCalls(calls.clone()),
        // A second batch in the same turn: the total is per turn, not per model reply.
        Scripted::ToolCalls(calls),
        Scripted::Text("Done."),
    ])
    .await;
    let model =
        OpenAiChat::compatible(&format!("{}/v1", server.url), None, "scripted").expect("client");
    let ctx = Context {
        model: &model,
        work: Work {
            tools: &tools,
            progress: None,
            cancel: CancellationToken::new(),
        },
    };
    let limits = Limits {
        max_parallel_calls: 2,
        max_calls_per_turn: 12,
        ..Limits::default()
    };
    let turn = agent::run(&ctx, &experts::ACCOUNT, &[], "Diagnose 257.", limits).await;
    assert_eq!(turn.status, Status::Done, "{:?}", turn.error);
    assert_eq!(turn.tool_calls.len(), 12);
    assert_eq!(counts.total.load(Ordering::SeqCst), 12);
    assert_eq!(counts.most.load(Ordering::SeqCst), 2);
    let second: Vec<String> = server.requests()[2].body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().expect("text").to_owned())
        .collect();
    let refused = second
        .iter()
        .filter(|r| r.as_str() == "ERROR: not run: at most 12 tool calls per question")
        .count();
    assert_eq!((second.len(), refused), (20, 8), "{second:?}");
}
