//! The language model an expert thinks with, behind one small trait so the agent loop does not
//! care which service answers: Azure OpenAI or any OpenAI-compatible endpoint (Ollama, vLLM, LM
//! Studio) through `async-openai` ([`openai`]), chosen by the settings in [`config`]. With no
//! model configured the service runs its offline planner instead (not a [`ChatModel`]).
//!
//! The conversation types here are ours, not the wire types: the loop and the memory store keep
//! them, and only [`openai`] knows how a provider spells them.

pub mod config;
pub mod openai;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A tool offered to the model: its name, what it is for, and the JSON Schema of its arguments
/// (the tools service's `inputSchema`, passed on as is).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub parameters: Value,
}

/// A tool call the model asked for. `arguments` is the model's raw JSON text: it may not parse,
/// and the loop reports that back to the model rather than guessing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// One message of the exchange with the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// The expert's instructions.
    System(String),
    /// What the person asked.
    User(String),
    /// What the model said before: text, tool calls, or both.
    Assistant {
        text: Option<String>,
        tool_calls: Vec<ToolCall>,
    },
    /// The outcome of one tool call, answering the call with this id.
    Tool { call_id: String, content: String },
}

/// The model's next step: call tools (possibly several at once), or answer in `text`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reply {
    pub text: Option<String>,
    pub tool_calls: Vec<ToolCall>,
}

/// Why the model gave no reply. The message never contains the API key.
///
/// `Display` is what a caller may read (an expert's answer carries it): what happened, never the
/// model's endpoint nor the provider's or HTTP client's words. [`ModelError::detail`] has those,
/// for the log (the model client logs it where the error is made) and start-up errors.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The endpoint could not be reached, refused the request or answered with an error.
    #[error("the language model failed to answer")]
    Request { endpoint: String, message: String },
    /// The endpoint answered, but with nothing the loop can use (no choice, no text, no call).
    #[error("the language model gave an empty answer")]
    Empty { endpoint: String },
    /// No credential to send: the key cannot be a header, or no Entra token could be had.
    #[error("the service cannot authenticate to its language model")]
    Auth { endpoint: String, message: String },
}

impl ModelError {
    /// `error.type` in traces and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ModelError::Request { .. } => "request_failed",
            ModelError::Empty { .. } => "empty_answer",
            ModelError::Auth { .. } => "auth",
        }
    }

    /// For the log (never for a caller): the failure with the endpoint and the cause.
    pub fn detail(&self) -> String {
        match self {
            ModelError::Request { endpoint, message } => {
                format!("the model at {endpoint} failed: {message}")
            }
            ModelError::Empty { endpoint } => {
                format!("the model at {endpoint} gave an empty answer")
            }
            ModelError::Auth { endpoint, message } => {
                format!("cannot authenticate to the model at {endpoint}: {message}")
            }
        }
    }

    /// Logs [`ModelError::detail`] at WARN (in the current span, which names the request) and
    /// hands the error on.
    pub(crate) fn logged(self) -> Self {
        tracing::warn!(detail = %self.detail(), "model request failed");
        self
    }
}

/// A chat model with tool calling.
#[async_trait]
pub trait ChatModel: Send + Sync {
    /// Which model and where, for the start-up log ("gpt-4o at https://..."); never shown to
    /// callers.
    fn describe(&self) -> String;

    /// Which kind of model and how the service authenticates to it, without any address, for
    /// `/readyz` ("Azure OpenAI (managed identity)").
    fn mode(&self) -> String {
        "model".to_owned()
    }

    /// The model's next step after `messages`, with `tools` on offer (none: it must answer).
    async fn complete(&self, messages: &[Message], tools: &[ToolSpec])
    -> Result<Reply, ModelError>;
}
