//! [`ChatModel`] over the Chat Completions API with `async-openai`: Azure OpenAI (deployment in
//! the path, `api-version` query, `api-key` header or an Entra bearer token) or any
//! OpenAI-compatible endpoint (model in the body, optional bearer key).

use std::time::{Duration, Instant};

use async_openai::{
    Client,
    config::{AzureConfig, Config, OpenAIConfig},
    error::OpenAIError,
    traits::RequestOptionsBuilder,
    types::chat::{
        ChatCompletionMessageToolCall, ChatCompletionMessageToolCalls,
        ChatCompletionRequestAssistantMessage, ChatCompletionRequestAssistantMessageContent,
        ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage,
        ChatCompletionRequestSystemMessageContent, ChatCompletionRequestToolMessage,
        ChatCompletionRequestToolMessageContent, ChatCompletionRequestUserMessage,
        ChatCompletionRequestUserMessageContent, ChatCompletionTool, ChatCompletionTools,
        CreateChatCompletionRequest, FunctionCall, FunctionObject,
    },
};
use async_trait::async_trait;
use opentelemetry::KeyValue;
use reqwest::header::HeaderMap;
use shared::{
    azure::AzureAuth,
    config::{AzureDeployment, Secret},
};
use tracing::{Instrument, field};

use super::{ChatModel, Message, ModelError, Reply, ToolCall, ToolSpec};

/// How long one model request may take, connection to last byte. A slow model is better
/// reported than waited on forever; the agent's own time budget is usually shorter.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A Chat Completions endpoint.
pub struct OpenAiChat {
    client: Client<Box<dyn Config>>,
    /// Azure OpenAI's auth header, asked for on every request since Entra tokens expire (the
    /// token itself is cached); `None` when the configuration carries the key.
    auth: Option<AzureAuth>,
    /// The `model` field of requests: the model name, or the deployment on Azure (ignored
    /// there, the deployment being in the path, but sent for logs on the other side).
    model: String,
    /// Where requests go, without secrets, for messages.
    endpoint: String,
}

/// Azure's URL and query, with no header of its own: `AzureConfig` always sends an `api-key`
/// (empty without a key), and the auth header is added per request instead.
struct AzureWithoutKey(AzureConfig);

impl Config for AzureWithoutKey {
    fn headers(&self) -> HeaderMap {
        HeaderMap::new()
    }
    fn url(&self, path: &str) -> String {
        self.0.url(path)
    }
    fn query(&self) -> Vec<(&str, &str)> {
        self.0.query()
    }
    fn api_base(&self) -> &str {
        self.0.api_base()
    }
    fn api_key(&self) -> &secrecy::SecretString {
        self.0.api_key()
    }
}

impl OpenAiChat {
    /// An Azure OpenAI chat deployment, authenticated as its settings say (key or Entra).
    pub fn azure(deployment: &AzureDeployment) -> Result<Self, ModelError> {
        let endpoint = format!(
            "{}/openai/deployments/{}",
            deployment.endpoint, deployment.deployment
        );
        let auth = AzureAuth::new(&deployment.auth).map_err(|e| {
            ModelError::Auth {
                endpoint: endpoint.clone(),
                message: e.to_string(),
            }
            .logged()
        })?;
        let config = AzureConfig::new()
            .with_api_base(&deployment.endpoint)
            .with_deployment_id(&deployment.deployment)
            .with_api_version(&deployment.api_version);
        let mut chat = Self::new(
            Box::new(AzureWithoutKey(config)),
            deployment.deployment.clone(),
            endpoint,
        )?;
        chat.auth = Some(auth);
        Ok(chat)
    }

    /// An OpenAI-compatible endpoint at `base_url` (e.g. `http://localhost:11434/v1` for
    /// Ollama), with `model`; local servers usually need no key.
    pub fn compatible(
        base_url: &str,
        api_key: Option<&Secret>,
        model: &str,
    ) -> Result<Self, ModelError> {
        let base_url = base_url.trim_end_matches('/');
        let config = OpenAIConfig::new()
            .with_api_base(base_url)
            .with_api_key(api_key.map(Secret::expose).unwrap_or_default());
        Self::new(Box::new(config), model.to_owned(), base_url.to_owned())
    }

    fn new(config: Box<dyn Config>, model: String, endpoint: String) -> Result<Self, ModelError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| {
                ModelError::Request {
                    endpoint: endpoint.clone(),
                    message: format!("building the HTTP client: {e}"),
                }
                .logged()
            })?;
        Ok(OpenAiChat {
            client: Client::with_config(config).with_http_client(http),
            auth: None,
            model,
            endpoint,
        })
    }

    /// The auth header of this request (Azure), if the configuration does not carry it.
    async fn auth_headers(&self) -> Result<Option<HeaderMap>, ModelError> {
        let Some(auth) = &self.auth else {
            return Ok(None);
        };
        let (name, value) = auth.header().await.map_err(|e| {
            ModelError::Auth {
                endpoint: self.endpoint.clone(),
                message: e.to_string(),
            }
            .logged()
        })?;
        Ok(Some(HeaderMap::from_iter([(name, value)])))
    }

    /// Gets what authentication needs before the first question (an Entra token), so a
    /// service whose identity does not work says so at start. A no-op for keys.
    pub async fn check(&self) -> Result<(), ModelError> {
        self.auth_headers().await.map(|_| ())
    }
}

#[async_trait]
impl ChatModel for OpenAiChat {
    fn describe(&self) -> String {
        match &self.auth {
            Some(auth) => format!("{} at {} ({})", self.model, self.endpoint, auth.describe()),
            None => format!("{} at {}", self.model, self.endpoint),
        }
    }

    fn mode(&self) -> String {
        match &self.auth {
            Some(auth) => format!("Azure OpenAI ({})", auth.describe()),
            None => "OpenAI-compatible".to_owned(),
        }
    }

    async fn complete(
        &self,
        messages: &[Message],
        tools: &[ToolSpec],
    ) -> Result<Reply, ModelError> {
        // A client span by the GenAI conventions: model and token counts, never the messages.
        let span = tracing::info_span!(
            "model",
            otel.name = format!("chat {}", self.model),
            otel.kind = "client",
            otel.status_code = field::Empty,
            gen_ai.operation.name = "chat",
            gen_ai.provider.name = self.provider(),
            gen_ai.request.model = self.model,
            gen_ai.response.model = field::Empty,
            gen_ai.usage.input_tokens = field::Empty,
            gen_ai.usage.output_tokens = field::Empty,
            error.r#type = field::Empty,
        );
        let started = Instant::now();
        let result = self
            .exchange(messages, tools, &span)
            .instrument(span.clone())
            .await;
        let mut labels = vec![
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.provider.name", self.provider()),
            KeyValue::new("gen_ai.request.model", self.model.clone()),
        ];
        if let Err(error) = &result {
            span.record("otel.status_code", "ERROR");
            span.record("error.type", error.kind());
            labels.push(KeyValue::new("error.type", error.kind()));
        }
        crate::metrics::metrics()
            .model_duration
            .record(started.elapsed().as_secs_f64(), &labels);
        result
    }
}

impl OpenAiChat {
    /// `gen_ai.provider.name`: Azure OpenAI, or any OpenAI-compatible endpoint.
    fn provider(&self) -> &'static str {
        if self.auth.is_some() {
            "azure.ai.openai"
        } else {
            "openai"
        }
    }

    /// One Chat Completions request in `span`, whose context the request carries.
    async fn exchange(
        &self,
        messages: &[Message],
        tools: &[ToolSpec],
        span: &tracing::Span,
    ) -> Result<Reply, ModelError> {
        let request = CreateChatCompletionRequest {
            model: self.model.clone(),
            messages: messages.iter().map(wire_message).collect(),
            tools: (!tools.is_empty()).then(|| tools.iter().map(wire_tool).collect()),
            parallel_tool_calls: (!tools.is_empty()).then_some(true),
            ..CreateChatCompletionRequest::default()
        };
        let mut headers = shared::telemetry::trace_headers(span);
        if let Some(auth) = self.auth_headers().await? {
            headers.extend(auth);
        }
        let mut chat = self.client.chat();
        if !headers.is_empty() {
            chat = chat.headers(headers);
        }
        let response = chat.create(request).await.map_err(|e| {
            ModelError::Request {
                endpoint: self.endpoint.clone(),
                message: describe_error(&e),
            }
            .logged()
        })?;
        let empty = || {
            ModelError::Empty {
                endpoint: self.endpoint.clone(),
            }
            .logged()
        };
        span.record("gen_ai.response.model", response.model.as_str());
        if let Some(usage) = &response.usage {
            span.record("gen_ai.usage.input_tokens", usage.prompt_tokens);
            span.record("gen_ai.usage.output_tokens", usage.completion_tokens);
            let tokens = &crate::metrics::metrics().tokens;
            for (kind, count) in [
                ("input", usage.prompt_tokens),
                ("output", usage.completion_tokens),
            ] {
                tokens.record(
                    u64::from(count),
                    &[
                        KeyValue::new("gen_ai.operation.name", "chat"),
                        KeyValue::new("gen_ai.provider.name", self.provider()),
                        KeyValue::new("gen_ai.request.model", self.model.clone()),
                        KeyValue::new("gen_ai.token.type", kind),
                    ],
                );
            }
        }
        let message = response
            .choices
            .into_iter()
            .next()
            .ok_or_else(empty)?
            .message;
        let tool_calls: Vec<ToolCall> = message
            .tool_calls
            .unwrap_or_default()
            .into_iter()
            .filter_map(|call| match call {
                ChatCompletionMessageToolCalls::Function(call) => Some(ToolCall {
                    id: call.id,
                    name: call.function.name,
                    arguments: call.function.arguments,
                }),
                // We offer function tools only; a custom-tool call has nothing to run.
                ChatCompletionMessageToolCalls::Custom(_) => None,
            })
            .collect();
        let text = message
            .content
            .or(message.refusal)
            .filter(|t| !t.trim().is_empty());
        if text.is_none() && tool_calls.is_empty() {
            return Err(empty());
        }
        Ok(Reply { text, tool_calls })
    }
}

/// The provider's own words where it sent some (`ApiError`), else the transport's.
fn describe_error(error: &OpenAIError) -> String {
    match error {
        OpenAIError::ApiError(api) => api.api_error.message.clone(),
        other => other.to_string(),
    }
}

fn wire_message(message: &Message) -> ChatCompletionRequestMessage {
    match message {
        Message::System(text) => {
            ChatCompletionRequestMessage::System(ChatCompletionRequestSystemMessage {
                content: ChatCompletionRequestSystemMessageContent::Text(text.clone()),
                name: None,
            })
        }
        Message::User(text) => {
            ChatCompletionRequestMessage::User(ChatCompletionRequestUserMessage {
                content: ChatCompletionRequestUserMessageContent::Text(text.clone()),
                name: None,
            })
        }
        Message::Assistant { text, tool_calls } => {
            ChatCompletionRequestMessage::Assistant(ChatCompletionRequestAssistantMessage {
                content: text
                    .clone()
                    .map(ChatCompletionRequestAssistantMessageContent::Text),
                tool_calls: (!tool_calls.is_empty()).then(|| {
                    tool_calls
                        .iter()
                        .map(|call| {
                            ChatCompletionMessageToolCalls::Function(
                                ChatCompletionMessageToolCall {
                                    id: call.id.clone(),
                                    function: FunctionCall {
                                        name: call.name.clone(),
                                        arguments: call.arguments.clone(),
                                    },
                                },
                            )
                        })
                        .collect()
                }),
                ..ChatCompletionRequestAssistantMessage::default()
            })
        }
        Message::Tool { call_id, content } => {
            ChatCompletionRequestMessage::Tool(ChatCompletionRequestToolMessage {
                content: ChatCompletionRequestToolMessageContent::Text(content.clone()),
                tool_call_id: call_id.clone(),
            })
        }
    }
}

fn wire_tool(tool: &ToolSpec) -> ChatCompletionTools {
    ChatCompletionTools::Function(ChatCompletionTool {
        function: FunctionObject {
            name: tool.name.clone(),
            description: Some(tool.description.clone()),
            parameters: Some(tool.parameters.clone()),
            strict: None,
        },
    })
}
