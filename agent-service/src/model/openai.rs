//! [`ChatModel`] over the Chat Completions API with `async-openai`: Azure OpenAI (deployment in
//! the path, `api-version` query, `api-key` header or an Entra bearer token) or any
//! OpenAI-compatible endpoint (model in the body, optional bearer key).

use std::{sync::Arc, time::Duration};

use async_openai::{
    Client,
    config::{AzureConfig, Config, OpenAIConfig},
    error::OpenAIError,
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
use reqwest::header::HeaderMap;
use shared::{
    azure::AzureAuth,
    config::{AzureDeployment, Secret},
};

use super::{ChatModel, Message, ModelError, Reply, ToolCall, ToolSpec};

/// How long one model request may take, connection to last byte. A slow model is better
/// reported than waited on forever; the agent's own time budget is usually shorter.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A Chat Completions endpoint.
pub struct OpenAiChat {
    target: Target,
    /// The `model` field of requests: the model name, or the deployment on Azure (ignored
    /// there, the deployment being in the path, but sent for logs on the other side).
    model: String,
    /// Where requests go, without secrets, for messages.
    endpoint: String,
}

enum Target {
    /// Same headers on every request.
    Fixed(Client<Arc<dyn Config>>),
    /// Azure OpenAI, whose auth header can change between requests (tokens expire), so each
    /// request gets a client with the current one; the HTTP connection pool is shared.
    Azure {
        http: reqwest::Client,
        config: AzureConfig,
        auth: AzureAuth,
    },
}

/// Azure's URL and query with the header [`AzureAuth`] gives for this request.
struct AzureRequest {
    config: AzureConfig,
    headers: HeaderMap,
}

impl Config for AzureRequest {
    fn headers(&self) -> HeaderMap {
        self.headers.clone()
    }
    fn url(&self, path: &str) -> String {
        self.config.url(path)
    }
    fn query(&self) -> Vec<(&str, &str)> {
        self.config.query()
    }
    fn api_base(&self) -> &str {
        self.config.api_base()
    }
    fn api_key(&self) -> &secrecy::SecretString {
        self.config.api_key()
    }
}

impl OpenAiChat {
    /// An Azure OpenAI chat deployment, authenticated as its settings say (key or Entra).
    pub fn azure(deployment: &AzureDeployment) -> Result<Self, ModelError> {
        let endpoint = format!(
            "{}/openai/deployments/{}",
            deployment.endpoint, deployment.deployment
        );
        let auth = AzureAuth::new(&deployment.auth).map_err(|e| ModelError::Auth {
            endpoint: endpoint.clone(),
            message: e.to_string(),
        })?;
        let config = AzureConfig::new()
            .with_api_base(&deployment.endpoint)
            .with_deployment_id(&deployment.deployment)
            .with_api_version(&deployment.api_version);
        Ok(OpenAiChat {
            target: Target::Azure {
                http: http_client(&endpoint)?,
                config,
                auth,
            },
            model: deployment.deployment.clone(),
            endpoint,
        })
    }

    /// Gets what authentication needs before the first question (an Entra token), so a
    /// service whose identity does not work says so at start. A no-op for keys.
    pub async fn check(&self) -> Result<(), ModelError> {
        match &self.target {
            Target::Azure { auth, .. } => auth.check().await.map_err(|e| ModelError::Auth {
                endpoint: self.endpoint.clone(),
                message: e.to_string(),
            }),
            Target::Fixed(_) => Ok(()),
        }
    }

    async fn client(&self) -> Result<Client<Arc<dyn Config>>, ModelError> {
        match &self.target {
            Target::Fixed(client) => Ok(client.clone()),
            Target::Azure { http, config, auth } => {
                let (name, value) = auth.header().await.map_err(|e| ModelError::Auth {
                    endpoint: self.endpoint.clone(),
                    message: e.to_string(),
                })?;
                let mut headers = HeaderMap::new();
                headers.insert(name, value);
                let config: Arc<dyn Config> = Arc::new(AzureRequest {
                    config: config.clone(),
                    headers,
                });
                Ok(Client::with_config(config).with_http_client(http.clone()))
            }
        }
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
        Self::new(Arc::new(config), model.to_owned(), base_url.to_owned())
    }

    fn new(config: Arc<dyn Config>, model: String, endpoint: String) -> Result<Self, ModelError> {
        let http = http_client(&endpoint)?;
        Ok(OpenAiChat {
            target: Target::Fixed(Client::with_config(config).with_http_client(http)),
            model,
            endpoint,
        })
    }
}

fn http_client(endpoint: &str) -> Result<reqwest::Client, ModelError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| ModelError::Request {
            endpoint: endpoint.to_owned(),
            message: format!("building the HTTP client: {e}"),
        })
}

#[async_trait]
impl ChatModel for OpenAiChat {
    fn describe(&self) -> String {
        match &self.target {
            Target::Azure { auth, .. } => {
                format!("{} at {} ({})", self.model, self.endpoint, auth.describe())
            }
            Target::Fixed(_) => format!("{} at {}", self.model, self.endpoint),
        }
    }

    async fn complete(
        &self,
        messages: &[Message],
        tools: &[ToolSpec],
    ) -> Result<Reply, ModelError> {
        let request = CreateChatCompletionRequest {
            model: self.model.clone(),
            messages: messages.iter().map(wire_message).collect(),
            tools: (!tools.is_empty()).then(|| tools.iter().map(wire_tool).collect()),
            parallel_tool_calls: (!tools.is_empty()).then_some(true),
            ..CreateChatCompletionRequest::default()
        };
        let response = self
            .client()
            .await?
            .chat()
            .create(request)
            .await
            .map_err(|e| ModelError::Request {
                endpoint: self.endpoint.clone(),
                message: describe_error(&e),
            })?;
        let empty = || ModelError::Empty {
            endpoint: self.endpoint.clone(),
        };
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
