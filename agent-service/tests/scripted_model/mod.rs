//! An OpenAI-compatible chat model for tests: it answers each `chat/completions` request with the
//! next scripted reply and records every request it was sent (path, query, headers, body), so a
//! test can assert both what the agent did with the answers and what it asked.

#![allow(dead_code)]

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use axum::{
    Json, Router,
    extract::{Request, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// One request as the model server received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub query: HashMap<String, String>,
    pub headers: HashMap<String, String>,
    pub body: Value,
}

/// What the server answers next.
#[derive(Debug, Clone)]
pub enum Scripted {
    /// The assistant calls these tools: `(name, arguments)`.
    ToolCalls(Vec<(&'static str, Value)>),
    /// The assistant answers.
    Text(&'static str),
    /// An HTTP error with an OpenAI-style error body.
    Error(u16, &'static str),
    /// A 200 with no choices at all.
    NoChoices,
}

#[derive(Default)]
struct Script {
    replies: VecDeque<Scripted>,
    seen: Vec<Recorded>,
    calls: usize,
}

/// A running scripted model server.
#[derive(Clone)]
pub struct ScriptedModel {
    pub url: String,
    script: Arc<Mutex<Script>>,
}

impl ScriptedModel {
    pub async fn start(replies: impl IntoIterator<Item = Scripted>) -> ScriptedModel {
        let script = Arc::new(Mutex::new(Script {
            replies: replies.into_iter().collect(),
            ..Script::default()
        }));
        let app = Router::new().fallback(answer).with_state(script.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        ScriptedModel { url, script }
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.script.lock().expect("script").seen.clone()
    }
}

async fn answer(State(script): State<Arc<Mutex<Script>>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let query = parts
        .uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("?").to_owned()))
        .collect();
    let next = {
        let mut script = script.lock().expect("script");
        script.seen.push(Recorded {
            path: parts.uri.path().to_owned(),
            query,
            headers,
            body,
        });
        script.calls += 1;
        script.replies.pop_front()
    };
    let n = script.lock().expect("script").calls;
    let message = match next {
        None => return (StatusCode::INTERNAL_SERVER_ERROR, "script exhausted").into_response(),
        Some(Scripted::Error(status, message)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = json!({"error": {"message": message, "type": "server_error", "param": null, "code": null}});
            return (status, Json(body)).into_response();
        }
        Some(Scripted::NoChoices) => {
            return Json(completion(n, Vec::new())).into_response();
        }
        Some(Scripted::Text(text)) => json!({"role": "assistant", "content": text}),
        Some(Scripted::ToolCalls(calls)) => {
            let calls: Vec<Value> = calls
                .into_iter()
                .enumerate()
                .map(|(i, (name, arguments))| {
                    json!({
                        "id": format!("call_{n}_{i}"),
                        "type": "function",
                        "function": {"name": name, "arguments": arguments.to_string()}
                    })
                })
                .collect();
            json!({"role": "assistant", "content": null, "tool_calls": calls})
        }
    };
    let finish = if message.get("tool_calls").is_some() {
        "tool_calls"
    } else {
        "stop"
    };
    let choices = vec![json!({"index": 0, "message": message, "finish_reason": finish})];
    Json(completion(n, choices)).into_response()
}

/// The token usage every completion reports: two different numbers, so a test can tell input
/// from output tokens in what the agent records of them (spans, metrics).
pub const PROMPT_TOKENS: u32 = 120;
pub const COMPLETION_TOKENS: u32 = 30;

fn completion(n: usize, choices: Vec<Value>) -> Value {
    json!({
        "id": format!("chatcmpl-{n}"),
        "object": "chat.completion",
        "created": 1_790_000_000u32,
        "model": "scripted",
        "choices": choices,
        "usage": {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS
        }
    })
}
