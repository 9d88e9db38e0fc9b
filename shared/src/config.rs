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
    /// Log filter in `tracing` syntax, e.g. `info,tools_service=debug`.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
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

/// Parser for boolean settings given as flags or environment variables.
pub fn boolish() -> BoolishValueParser {
    BoolishValueParser::new()
}
