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

/// Logging and telemetry settings shared by every binary.
#[derive(Debug, Clone, clap::Args)]
pub struct TelemetryArgs {
    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter in `tracing` syntax, e.g. `info,tools_service=debug`. The MCP library logs
    /// every request's handshake at info, and the OpenTelemetry SDK its exporters' life, hence
    /// their own levels by default (a failed export is still a warning).
    #[arg(
        long,
        env = "RUST_LOG",
        default_value = "info,rmcp=warn,opentelemetry_sdk=warn,opentelemetry_otlp=warn"
    )]
    pub log_filter: String,
    #[command(flatten)]
    pub otel: OtelArgs,
}

/// OpenTelemetry export, by the variables the OpenTelemetry SDKs of every language read, so an
/// operator's existing settings work unchanged. Without an endpoint nothing is exported.
#[derive(Clone, clap::Args)]
pub struct OtelArgs {
    /// Where traces and metrics go over OTLP: the collector's base URL, e.g.
    /// `http://localhost:4318` (HTTP) or `http://localhost:4317` (gRPC). Unset: no export.
    #[arg(long = "otlp-endpoint", env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub endpoint: Option<String>,
    /// The OTLP transport: `http/protobuf` (to `<endpoint>/v1/traces` and `/v1/metrics`) or
    /// `grpc`.
    #[arg(
        long = "otlp-protocol",
        env = "OTEL_EXPORTER_OTLP_PROTOCOL",
        value_enum,
        default_value_t = OtlpProtocol::HttpProtobuf
    )]
    pub protocol: OtlpProtocol,
    /// Headers sent with every export, `key=value` pairs separated by commas (values
    /// percent-encoded): how hosted backends take their API key. Never logged.
    #[arg(
        long = "otlp-headers",
        env = "OTEL_EXPORTER_OTLP_HEADERS",
        hide_env_values = true
    )]
    pub headers: Option<String>,
    /// The service's name in every trace and metric; the binary's own name by default.
    #[arg(long = "otel-service-name", env = "OTEL_SERVICE_NAME")]
    pub service_name: Option<String>,
    /// More resource attributes, `key=value` pairs separated by commas, e.g.
    /// `deployment.environment.name=staging,service.namespace=contoso`.
    #[arg(long = "otel-resource-attributes", env = "OTEL_RESOURCE_ATTRIBUTES")]
    pub resource_attributes: Option<String>,
    /// Which traces are kept: `parentbased_always_on` (the default: follow the caller's choice,
    /// keep every trace this service starts), `parentbased_traceidratio`, `traceidratio`,
    /// `always_on`, `always_off`, `parentbased_always_off`.
    #[arg(
        long = "otel-traces-sampler",
        env = "OTEL_TRACES_SAMPLER",
        value_enum,
        default_value_t = TraceSampler::ParentbasedAlwaysOn
    )]
    pub sampler: TraceSampler,
    /// The ratio (0 to 1) of the `*traceidratio` samplers; 1 by default.
    #[arg(long = "otel-traces-sampler-arg", env = "OTEL_TRACES_SAMPLER_ARG")]
    pub sampler_arg: Option<f64>,
    /// Milliseconds between two exports of the metrics.
    #[arg(
        long = "otel-metric-export-interval",
        env = "OTEL_METRIC_EXPORT_INTERVAL",
        default_value_t = 60_000
    )]
    pub metric_export_interval_ms: u64,
    /// `true`: no OpenTelemetry at all: no spans are made, nothing is exported or served, and
    /// trace context is not propagated (log lines carry no trace ids). For measuring what the
    /// instrumentation itself costs, or to switch it off entirely.
    #[arg(
        long = "otel-sdk-disabled",
        env = "OTEL_SDK_DISABLED",
        value_parser = BoolishValueParser::new(),
        default_value_t = false
    )]
    pub disabled: bool,
    /// Where to serve the metrics for Prometheus to scrape (`GET /metrics`), e.g.
    /// `127.0.0.1:9464`: a port of its own, never the public one. Unset: not served.
    #[arg(long = "metrics-bind-addr", env = "METRICS_BIND_ADDR")]
    pub metrics_bind_addr: Option<std::net::SocketAddr>,
}

impl Default for OtelArgs {
    /// Nothing exported, nothing served: what a service gets without any `OTEL_*` setting.
    fn default() -> Self {
        Self {
            endpoint: None,
            protocol: OtlpProtocol::default(),
            headers: None,
            service_name: None,
            resource_attributes: None,
            sampler: TraceSampler::default(),
            sampler_arg: None,
            metric_export_interval_ms: 60_000,
            disabled: false,
            metrics_bind_addr: None,
        }
    }
}

impl std::fmt::Debug for OtelArgs {
    // The export headers carry backends' API keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtelArgs")
            .field("endpoint", &self.endpoint)
            .field("protocol", &self.protocol)
            .field("headers", &self.headers.as_ref().map(|_| "<redacted>"))
            .field("service_name", &self.service_name)
            .field("resource_attributes", &self.resource_attributes)
            .field("sampler", &self.sampler)
            .field("sampler_arg", &self.sampler_arg)
            .field("metric_export_interval_ms", &self.metric_export_interval_ms)
            .field("disabled", &self.disabled)
            .field("metrics_bind_addr", &self.metrics_bind_addr)
            .finish()
    }
}

/// The OTLP transports (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OtlpProtocol {
    #[default]
    #[value(name = "http/protobuf")]
    HttpProtobuf,
    #[value(name = "grpc")]
    Grpc,
}

/// The standard samplers (`OTEL_TRACES_SAMPLER`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum TraceSampler {
    AlwaysOn,
    AlwaysOff,
    Traceidratio,
    #[default]
    ParentbasedAlwaysOn,
    ParentbasedAlwaysOff,
    ParentbasedTraceidratio,
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

    /// Azure OpenAI API key. Without one, set `AZURE_CREDENTIAL` to authenticate with an Entra
    /// identity instead (no secret to store or rotate).
    #[arg(long, env = "AZURE_OPENAI_API_KEY", hide_env_values = true)]
    pub azure_openai_api_key: Option<Secret>,

    /// Azure OpenAI REST API version.
    #[arg(long, env = "AZURE_OPENAI_API_VERSION", default_value = "2024-10-21")]
    pub azure_openai_api_version: String,

    #[command(flatten)]
    pub credential: AzureCredentialArgs,

    /// The Entra scope of tokens for Azure OpenAI; differs only in sovereign clouds
    /// (e.g. `https://cognitiveservices.azure.us/.default`).
    #[arg(
        long,
        env = "AZURE_OPENAI_TOKEN_SCOPE",
        default_value = "https://cognitiveservices.azure.com/.default"
    )]
    pub azure_openai_token_scope: String,
}

/// Which Entra identity a service uses for Azure resources when it holds no key for them.
#[derive(Debug, Clone, clap::Args)]
pub struct AzureCredentialArgs {
    /// How to get Entra tokens for Azure resources that have no key set. `managed-identity`:
    /// the identity Azure gives the app (Container Apps and App Service through
    /// `IDENTITY_ENDPOINT`/`IDENTITY_HEADER`, which the platform sets; VMs through the instance
    /// metadata service).
    #[arg(long, env = "AZURE_CREDENTIAL", value_enum)]
    pub azure_credential: Option<AzureCredentialKind>,

    /// Client ID of a user-assigned managed identity; unset means the system-assigned one.
    #[arg(long, env = "AZURE_CLIENT_ID")]
    pub azure_client_id: Option<String>,
}

/// The kinds of Entra credential a service can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AzureCredentialKind {
    ManagedIdentity,
}

/// An Entra identity, checked: what [`crate::azure`] turns into tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AzureCredential {
    /// `client_id` names a user-assigned identity; `None` is the system-assigned one.
    ManagedIdentity { client_id: Option<String> },
}

impl AzureCredentialArgs {
    /// The credential these settings name, if any.
    pub fn credential(&self) -> Result<Option<AzureCredential>, ConfigError> {
        let client_id = self
            .azure_client_id
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty());
        match self.azure_credential {
            Some(AzureCredentialKind::ManagedIdentity) => {
                Ok(Some(AzureCredential::ManagedIdentity {
                    client_id: client_id.map(str::to_owned),
                }))
            }
            None if client_id.is_some() => Err(ConfigError::new(
                "AZURE_CREDENTIAL",
                "AZURE_CLIENT_ID is set but no credential uses it: set AZURE_CREDENTIAL=managed-identity",
            )),
            None => Ok(None),
        }
    }
}

/// How requests to Azure OpenAI are authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AzureOpenAiAuth {
    /// The `api-key` header.
    ApiKey(Secret),
    /// `Authorization: Bearer` with an Entra token for `scope`.
    Entra {
        credential: AzureCredential,
        scope: String,
    },
}

impl AzureOpenAiAuth {
    /// For logs and `/readyz`: which kind, never the secret.
    pub fn describe(&self) -> &'static str {
        match self {
            AzureOpenAiAuth::ApiKey(_) => "API key",
            AzureOpenAiAuth::Entra {
                credential: AzureCredential::ManagedIdentity { .. },
                ..
            } => "managed identity",
        }
    }
}

/// One Azure OpenAI deployment, every part of it checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureDeployment {
    /// Without a trailing slash.
    pub endpoint: String,
    pub deployment: String,
    pub api_version: String,
    pub auth: AzureOpenAiAuth,
}

impl AzureOpenAiArgs {
    /// The deployment named by the service's own setting `deployment_variable` (value
    /// `deployment`): `None` when that is unset, an error naming the variable at fault when the
    /// rest is missing or malformed. `purpose` ("embeddings", "chat") completes the messages.
    ///
    /// An API key, when set, is used even if `AZURE_CREDENTIAL` is set too: the credential may be
    /// there for another resource (a database) while this one keeps its key.
    pub fn deployment(
        &self,
        deployment_variable: &'static str,
        deployment: Option<&str>,
        purpose: &str,
    ) -> Result<Option<AzureDeployment>, ConfigError> {
        let credential = self.credential.credential()?;
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
        let auth = match (self.azure_openai_api_key.clone(), credential) {
            (Some(key), _) => AzureOpenAiAuth::ApiKey(key),
            (None, Some(credential)) => {
                let scope = self.azure_openai_token_scope.trim();
                if !scope.starts_with("https://") {
                    return Err(ConfigError::new(
                        "AZURE_OPENAI_TOKEN_SCOPE",
                        format!(
                            "{scope:?} is not a scope like https://cognitiveservices.azure.com/.default"
                        ),
                    ));
                }
                AzureOpenAiAuth::Entra {
                    credential,
                    scope: scope.to_owned(),
                }
            }
            (None, None) => {
                return Err(ConfigError::new(
                    "AZURE_OPENAI_API_KEY",
                    format!(
                        "required for {purpose}, unless the service authenticates with its \
                         Entra identity: then set AZURE_CREDENTIAL=managed-identity"
                    ),
                ));
            }
        };
        Ok(Some(AzureDeployment {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            deployment: deployment.to_owned(),
            api_version: self.azure_openai_api_version.clone(),
            auth,
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

    #[derive(Debug, clap::Parser)]
    struct AzureCli {
        #[command(flatten)]
        azure: AzureOpenAiArgs,
    }

    fn chat(args: &[&str]) -> Result<Option<AzureDeployment>, ConfigError> {
        use clap::Parser;
        let cli = AzureCli::try_parse_from(std::iter::once("service").chain(args.iter().copied()))
            .expect("flags parse");
        cli.azure
            .deployment("AZURE_OPENAI_CHAT_DEPLOYMENT", Some("gpt-4o"), "chat")
    }

    const ENDPOINT: [&str; 2] = ["--azure-openai-endpoint", "https://x.openai.azure.com"];

    #[test]
    fn azure_openai_takes_a_key_or_the_managed_identity_and_says_which_is_missing() {
        let missing = chat(&ENDPOINT).expect_err("neither");
        assert_eq!(missing.variable, "AZURE_OPENAI_API_KEY");
        assert!(
            missing
                .message
                .contains("AZURE_CREDENTIAL=managed-identity"),
            "{missing}"
        );

        let key = chat(&[&ENDPOINT[..], &["--azure-openai-api-key", "k"]].concat())
            .expect("valid")
            .expect("configured");
        assert_eq!(key.auth, AzureOpenAiAuth::ApiKey(Secret::new("k")));

        let identity = chat(&[&ENDPOINT[..], &["--azure-credential", "managed-identity"]].concat())
            .expect("valid")
            .expect("configured");
        assert_eq!(
            identity.auth,
            AzureOpenAiAuth::Entra {
                credential: AzureCredential::ManagedIdentity { client_id: None },
                scope: "https://cognitiveservices.azure.com/.default".into(),
            }
        );
        assert_eq!(identity.auth.describe(), "managed identity");

        let user_assigned = chat(
            &[
                &ENDPOINT[..],
                &["--azure-credential", "managed-identity"],
                &["--azure-client-id", " 0f1e2d3c "],
                &[
                    "--azure-openai-token-scope",
                    "https://cognitiveservices.azure.us/.default",
                ],
            ]
            .concat(),
        )
        .expect("valid")
        .expect("configured");
        assert_eq!(
            user_assigned.auth,
            AzureOpenAiAuth::Entra {
                credential: AzureCredential::ManagedIdentity {
                    client_id: Some("0f1e2d3c".into())
                },
                scope: "https://cognitiveservices.azure.us/.default".into(),
            }
        );
    }

    #[test]
    fn a_key_wins_over_the_identity_and_stray_identity_settings_are_refused() {
        // The identity may be there for another resource (a database).
        let both = chat(
            &[
                &ENDPOINT[..],
                &["--azure-openai-api-key", "k"],
                &["--azure-credential", "managed-identity"],
            ]
            .concat(),
        )
        .expect("valid")
        .expect("configured");
        assert_eq!(both.auth.describe(), "API key");

        let stray = chat(
            &[
                &ENDPOINT[..],
                &["--azure-openai-api-key", "k"],
                &["--azure-client-id", "0f1e2d3c"],
            ]
            .concat(),
        )
        .expect_err("a client id nothing uses");
        assert_eq!(stray.variable, "AZURE_CREDENTIAL");

        let bad_scope = chat(
            &[
                &ENDPOINT[..],
                &["--azure-credential", "managed-identity"],
                &["--azure-openai-token-scope", "cognitiveservices"],
            ]
            .concat(),
        )
        .expect_err("not a scope");
        assert_eq!(bad_scope.variable, "AZURE_OPENAI_TOKEN_SCOPE");

        let unknown = <AzureCli as clap::Parser>::try_parse_from([
            "service",
            "--azure-credential",
            "client-secret",
        ]);
        assert!(unknown.is_err(), "only the kinds we support parse");
    }

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("sk-very-secret");
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
        assert_eq!(secret.expose(), "sk-very-secret");
    }
}
