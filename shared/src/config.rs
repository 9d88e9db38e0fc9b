//! Settings every service accepts, as `clap` argument groups that service binaries flatten into
//! their own configuration, and the error type for a setting that fails validation.
//!
//! Each setting is a flag with an environment-variable fallback; booleans accept the usual
//! spellings (`true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`) because container platforms and
//! `.env` files disagree about which one is normal.

use clap::builder::BoolishValueParser;

/// A setting that parsed but does not make sense; names the variable so a person can fix it.
#[derive(Debug, thiserror::Error)]
#[error("invalid {variable}: {message}")]
pub struct ConfigError {
    /// The environment variable (or flag) at fault, e.g. `SEED_CUSTOMER_COUNT`.
    pub variable: &'static str,
    pub message: String,
}

impl ConfigError {
    pub fn new(variable: &'static str, message: impl Into<String>) -> Self {
        Self {
            variable,
            message: message.into(),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, for a terminal.
    Text,
    /// One JSON object per line, for log collectors (Container Apps, Log Analytics).
    Json,
}

/// Logging settings shared by every binary.
#[derive(Debug, Clone, clap::Args)]
pub struct TelemetryArgs {
    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter in `tracing` syntax, e.g. `info,tools_service=debug`. The MCP library logs
    /// every request's handshake at info, hence its own level by default.
    #[arg(long, env = "RUST_LOG", default_value = "info,rmcp=warn")]
    pub log_filter: String,
}

/// Which `Host` and `Origin` headers an MCP endpoint accepts (DNS-rebinding protection).
#[derive(Debug, Clone, clap::Args)]
pub struct HostGuardArgs {
    /// Hostnames (or host:port) accepted in the `Host` header, comma separated. Loopback only by
    /// default; a deployment behind a gateway lists its own names, `*` accepts any host.
    #[arg(
        long,
        env = "ALLOWED_HOSTS",
        value_delimiter = ',',
        default_value = "localhost,127.0.0.1,::1"
    )]
    pub allowed_hosts: Vec<String>,
    /// Browser origins accepted in the `Origin` header, comma separated, with scheme and port
    /// (`http://localhost:*` for any port). Requests without `Origin` (non-browser clients)
    /// always pass; by default any browser origin other than loopback is refused.
    #[arg(
        long,
        env = "ALLOWED_ORIGINS",
        value_delimiter = ',',
        default_value = "http://localhost:*,http://127.0.0.1:*,http://[::1]:*"
    )]
    pub allowed_origins: Vec<String>,
}

/// The Azure OpenAI resource a service may use; each service names the deployment it needs
/// (embeddings, chat) in a setting of its own and asks [`AzureOpenAiArgs::deployment`] for the
/// complete picture.
#[derive(Debug, Clone, clap::Args)]
pub struct AzureOpenAiArgs {
    /// Azure OpenAI endpoint, e.g. `https://NAME.openai.azure.com`.
    #[arg(long, env = "AZURE_OPENAI_ENDPOINT")]
    pub azure_openai_endpoint: Option<String>,

    /// Azure OpenAI API key.
    #[arg(long, env = "AZURE_OPENAI_API_KEY", hide_env_values = true)]
    pub azure_openai_api_key: Option<Secret>,

    /// Azure OpenAI REST API version.
    #[arg(long, env = "AZURE_OPENAI_API_VERSION", default_value = "2024-10-21")]
    pub azure_openai_api_version: String,
}

/// One Azure OpenAI deployment, every part of it checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureDeployment {
    /// Without a trailing slash.
    pub endpoint: String,
    pub deployment: String,
    pub api_version: String,
    pub api_key: Secret,
}

impl AzureOpenAiArgs {
    /// The deployment named by the service's own setting `deployment_variable` (value
    /// `deployment`): `None` when that is unset, an error naming the variable at fault when the
    /// rest is missing or malformed. `purpose` ("embeddings", "chat") completes the messages.
    pub fn deployment(
        &self,
        deployment_variable: &'static str,
        deployment: Option<&str>,
        purpose: &str,
    ) -> Result<Option<AzureDeployment>, ConfigError> {
        let Some(deployment) = deployment.map(str::trim).filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let endpoint = self
            .azure_openai_endpoint
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                ConfigError::new(
                    "AZURE_OPENAI_ENDPOINT",
                    format!("{deployment_variable} is set, so the endpoint must be set too"),
                )
            })?;
        if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
            return Err(ConfigError::new(
                "AZURE_OPENAI_ENDPOINT",
                format!("{endpoint:?} is not an http(s) URL"),
            ));
        }
        let api_key = self.azure_openai_api_key.clone().ok_or_else(|| {
            ConfigError::new(
                "AZURE_OPENAI_API_KEY",
                format!("required for {purpose} (managed identity is not supported here yet)"),
            )
        })?;
        Ok(Some(AzureDeployment {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            deployment: deployment.to_owned(),
            api_version: self.azure_openai_api_version.clone(),
            api_key,
        }))
    }
}

/// Parser for boolean settings given as flags or environment variables.
pub fn boolish() -> BoolishValueParser {
    BoolishValueParser::new()
}

/// A secret setting (API key, client secret): usable, but never printed by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("sk-very-secret");
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
        assert_eq!(secret.expose(), "sk-very-secret");
    }
}
