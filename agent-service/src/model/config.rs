//! Which model the experts use, from settings: Azure OpenAI when a chat deployment is named, an
//! OpenAI-compatible endpoint when `OPENAI_BASE_URL` is set, else none (the offline planner).
//! Setting both is refused rather than silently preferring one.

use std::sync::Arc;

use shared::config::{AzureDeployment, AzureOpenAiArgs, ConfigError, Secret};

use super::{ChatModel, ModelError, openai::OpenAiChat};

/// The model settings, flattened into the service's configuration.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// Azure OpenAI chat deployment the experts use (with `AZURE_OPENAI_ENDPOINT`, and
    /// `AZURE_OPENAI_API_KEY` or `AZURE_CREDENTIAL`).
    #[arg(long, env = "AZURE_OPENAI_CHAT_DEPLOYMENT")]
    pub azure_openai_chat_deployment: Option<String>,

    #[command(flatten)]
    pub azure_openai: AzureOpenAiArgs,

    /// Base URL of an OpenAI-compatible Chat Completions API, e.g.
    /// `http://localhost:11434/v1` (Ollama), instead of Azure OpenAI.
    #[arg(long, env = "OPENAI_BASE_URL")]
    pub openai_base_url: Option<String>,

    /// API key of the OpenAI-compatible endpoint, if it needs one.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub openai_api_key: Option<Secret>,

    /// Model name at the OpenAI-compatible endpoint, e.g. `llama3.1:8b`.
    #[arg(long, env = "OPENAI_MODEL")]
    pub openai_model: Option<String>,
}

/// The model the settings describe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelChoice {
    Azure(AzureDeployment),
    Compatible {
        base_url: String,
        api_key: Option<Secret>,
        model: String,
    },
    /// No model: the offline planner answers.
    Offline,
}

impl ModelArgs {
    /// Checks the settings; errors name the variable to fix.
    pub fn choice(&self) -> Result<ModelChoice, ConfigError> {
        let azure = self.azure_openai.deployment(
            "AZURE_OPENAI_CHAT_DEPLOYMENT",
            self.azure_openai_chat_deployment.as_deref(),
            "the chat model",
        )?;
        let base_url = non_empty(self.openai_base_url.as_deref());
        match (azure, base_url) {
            (Some(_), Some(_)) => Err(ConfigError::new(
                "OPENAI_BASE_URL",
                "both an Azure OpenAI chat deployment (AZURE_OPENAI_CHAT_DEPLOYMENT) and an \
                 OpenAI-compatible endpoint are set; unset one of them",
            )),
            (Some(deployment), None) => Ok(ModelChoice::Azure(deployment)),
            (None, Some(base_url)) => {
                if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
                    return Err(ConfigError::new(
                        "OPENAI_BASE_URL",
                        format!("{base_url:?} is not an http(s) URL"),
                    ));
                }
                let model = non_empty(self.openai_model.as_deref()).ok_or_else(|| {
                    ConfigError::new(
                        "OPENAI_MODEL",
                        "OPENAI_BASE_URL is set, so name the model to use there (e.g. llama3.1:8b)",
                    )
                })?;
                Ok(ModelChoice::Compatible {
                    base_url: base_url.trim_end_matches('/').to_owned(),
                    api_key: self.openai_api_key.clone(),
                    model: model.to_owned(),
                })
            }
            (None, None) => {
                if non_empty(self.openai_model.as_deref()).is_some() {
                    return Err(ConfigError::new(
                        "OPENAI_BASE_URL",
                        "OPENAI_MODEL is set but no endpoint: set OPENAI_BASE_URL too",
                    ));
                }
                Ok(ModelChoice::Offline)
            }
        }
    }
}

/// How the offline planner is named where a model's name would be.
pub const OFFLINE: &str = "offline planner (no model configured)";

impl ModelChoice {
    /// Which model and where (never the key), or [`OFFLINE`].
    pub fn describe(&self) -> String {
        match self {
            ModelChoice::Azure(d) => format!(
                "Azure OpenAI {} at {} ({})",
                d.deployment,
                d.endpoint,
                d.auth.describe()
            ),
            ModelChoice::Compatible {
                base_url, model, ..
            } => format!("{model} at {base_url}"),
            ModelChoice::Offline => OFFLINE.to_owned(),
        }
    }

    /// The model client, or `None` for the offline planner. With an Entra identity, a token is
    /// fetched here, so an identity that does not work stops the service at start.
    pub async fn build(&self) -> Result<Option<Arc<dyn ChatModel>>, ModelError> {
        Ok(match self {
            ModelChoice::Azure(deployment) => {
                let chat = OpenAiChat::azure(deployment)?;
                chat.check().await?;
                Some(Arc::new(chat))
            }
            ModelChoice::Compatible {
                base_url,
                api_key,
                model,
            } => Some(Arc::new(OpenAiChat::compatible(
                base_url,
                api_key.as_ref(),
                model,
            )?)),
            ModelChoice::Offline => None,
        })
    }
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        model: ModelArgs,
    }

    fn choice(args: &[&str]) -> Result<ModelChoice, ConfigError> {
        let cli = Cli::try_parse_from(std::iter::once("agent-service").chain(args.iter().copied()))
            .expect("flags parse");
        cli.model.choice()
    }

    fn refused(args: &[&str]) -> &'static str {
        choice(args).expect_err("refused").variable
    }

    #[test]
    fn no_model_settings_mean_the_offline_planner() {
        assert_eq!(choice(&[]).expect("valid"), ModelChoice::Offline);
    }

    #[test]
    fn azure_needs_endpoint_and_key_and_names_what_is_missing() {
        let deployment = ["--azure-openai-chat-deployment", "gpt-4o"];
        assert_eq!(refused(&deployment), "AZURE_OPENAI_ENDPOINT");
        let with_endpoint = [
            &deployment[..],
            &["--azure-openai-endpoint", "https://x.openai.azure.com/"],
        ]
        .concat();
        assert_eq!(refused(&with_endpoint), "AZURE_OPENAI_API_KEY");
        let complete = [&with_endpoint[..], &["--azure-openai-api-key", "k"]].concat();
        let ModelChoice::Azure(azure) = choice(&complete).expect("valid") else {
            panic!("Azure expected")
        };
        assert_eq!(azure.endpoint, "https://x.openai.azure.com");
        assert_eq!(azure.deployment, "gpt-4o");
        assert_eq!(azure.api_version, "2024-10-21");
    }

    #[test]
    fn a_compatible_endpoint_needs_a_model_and_cannot_be_mixed_with_azure() {
        assert_eq!(
            refused(&["--openai-base-url", "http://localhost:11434/v1"]),
            "OPENAI_MODEL"
        );
        assert_eq!(refused(&["--openai-model", "llama3.1"]), "OPENAI_BASE_URL");
        assert_eq!(
            refused(&[
                "--openai-base-url",
                "localhost:11434",
                "--openai-model",
                "m"
            ]),
            "OPENAI_BASE_URL"
        );
        let ok = choice(&[
            "--openai-base-url",
            "http://localhost:11434/v1/",
            "--openai-model",
            "llama3.1",
        ])
        .expect("valid");
        assert_eq!(
            ok,
            ModelChoice::Compatible {
                base_url: "http://localhost:11434/v1".into(),
                api_key: None,
                model: "llama3.1".into()
            }
        );
        assert_eq!(
            refused(&[
                "--openai-base-url",
                "http://localhost:11434/v1",
                "--openai-model",
                "m",
                "--azure-openai-chat-deployment",
                "d",
                "--azure-openai-endpoint",
                "https://x.openai.azure.com",
                "--azure-openai-api-key",
                "k",
            ]),
            "OPENAI_BASE_URL"
        );
    }
}
