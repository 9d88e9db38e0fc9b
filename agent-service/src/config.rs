//! The agent service's configuration: flags with environment-variable fallbacks, validated
//! before any port is bound.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{ArgAction, Parser};
use shared::{
    auth::{AuthArgs, config::AuthPlan},
    config::{ConfigError, HostGuardArgs, TelemetryArgs, boolish},
};

use crate::{
    agent::Limits,
    memory::MemoryConfig,
    model::config::{ModelArgs, ModelChoice},
};

/// Contoso agent service: domain experts (billing, account, product) as MCP tools, answering
/// with the tools service's tools on the caller's authority.
#[derive(Debug, Clone, Parser)]
#[command(name = "agent-service", version, about)]
pub struct Config {
    /// Address to listen on; `127.0.0.1:0` picks a free port (the log says which).
    #[arg(long, env = "BIND_ADDR", default_value = "127.0.0.1:8003")]
    pub bind_addr: SocketAddr,

    /// SQLite database of conversation memory (created if missing).
    #[arg(long, env = "DB_PATH", default_value = "data/agent.db")]
    pub db_path: PathBuf,

    /// The tools service's MCP endpoint.
    #[arg(
        long,
        env = "MCP_SERVER_URI",
        default_value = "http://127.0.0.1:8001/mcp"
    )]
    pub mcp_server_uri: String,

    /// A conversation with no new turn for this many seconds is forgotten.
    #[arg(long, env = "CONVERSATION_TTL_SECS", default_value_t = 24 * 60 * 60)]
    pub conversation_ttl_secs: u64,

    /// Give clients of MCP protocol versions before 2026-07-28 a session (`Mcp-Session-Id`)
    /// when they initialize; a question without `conversation_id` then continues the session's
    /// conversation. Sessions are recorded in DB_PATH, so every replica on it serves them.
    /// Off by default: without sessions any replica answers any request with nothing to share.
    #[arg(long, env = "MCP_SESSIONS", default_value_t = false, action = ArgAction::Set, value_parser = boolish())]
    pub mcp_sessions: bool,

    /// Earlier turns of a conversation given to the expert with a new question.
    #[arg(long, env = "CONVERSATION_HISTORY_TURNS", default_value_t = 10)]
    pub history_turns: usize,

    /// Model requests an expert may make for one question.
    #[arg(long, env = "AGENT_MAX_STEPS", default_value_t = 8)]
    pub max_steps: usize,

    /// Seconds an expert may spend on one question, tool calls included.
    #[arg(long, env = "AGENT_TIME_BUDGET_SECS", default_value_t = 120)]
    pub time_budget_secs: u64,

    /// Allow listening on a non-loopback address with authentication disabled or in passthrough
    /// mode. For trusted networks only; logged as a warning.
    #[arg(long, env = "ALLOW_OPEN_NETWORK", default_value_t = false, action = ArgAction::Set, value_parser = boolish())]
    pub allow_open_network: bool,

    #[command(flatten)]
    pub model: ModelArgs,

    #[command(flatten)]
    pub auth: AuthArgs,

    #[command(flatten)]
    pub host_guard: HostGuardArgs,

    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

/// A configuration that passed [`Config::validate`], with what validation produced.
#[derive(Debug, Clone)]
pub struct ValidConfig {
    pub config: Config,
    pub auth: AuthPlan,
    pub model: ModelChoice,
    pub memory: MemoryConfig,
    pub limits: Limits,
}

impl Config {
    /// Parses a configuration from flags (without the program name), with environment
    /// fallbacks for the flags not given: how `devstack` and tests configure the service.
    pub fn try_parse_from_args(
        args: impl IntoIterator<Item = String>,
    ) -> Result<Self, clap::Error> {
        Config::try_parse_from(std::iter::once("agent-service".to_owned()).chain(args))
    }

    /// Checks every setting; errors name the variable to fix.
    pub fn into_valid(self) -> Result<ValidConfig, ConfigError> {
        let url = self.mcp_server_uri.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError::new(
                "MCP_SERVER_URI",
                format!("{url:?} is not an http(s) URL, e.g. http://127.0.0.1:8001/mcp"),
            ));
        }
        let memory = MemoryConfig {
            ttl: Duration::from_secs(self.conversation_ttl_secs),
            ..MemoryConfig::default()
        };
        memory
            .validate()
            .map_err(|e| ConfigError::new("CONVERSATION_TTL_SECS", e.to_string()))?;
        if !(1..=50).contains(&self.max_steps) {
            return Err(ConfigError::new(
                "AGENT_MAX_STEPS",
                format!("{} is out of range: give 1 to 50", self.max_steps),
            ));
        }
        if !(1..=900).contains(&self.time_budget_secs) {
            return Err(ConfigError::new(
                "AGENT_TIME_BUDGET_SECS",
                format!(
                    "{} is out of range: give 1 to 900 seconds",
                    self.time_budget_secs
                ),
            ));
        }
        if self.history_turns > 100 {
            return Err(ConfigError::new(
                "CONVERSATION_HISTORY_TURNS",
                format!("{} is out of range: give 0 to 100", self.history_turns),
            ));
        }
        let auth = self.auth.plan()?;
        auth.check_exposure(self.bind_addr, self.allow_open_network)?;
        let model = self.model.choice()?;
        let limits = Limits {
            max_steps: self.max_steps,
            time_budget: Duration::from_secs(self.time_budget_secs),
        };
        Ok(ValidConfig {
            config: self,
            auth,
            model,
            memory,
            limits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        Config::try_parse_from(
            ["agent-service", "--disable-auth", "true"]
                .into_iter()
                .chain(args.iter().copied()),
        )
        .expect("flags parse")
    }

    fn refused(args: &[&str]) -> &'static str {
        parse(args).into_valid().expect_err("refused").variable
    }

    #[test]
    fn defaults_are_valid_and_offline() {
        let valid = parse(&[]).into_valid().expect("valid");
        assert_eq!(valid.model, ModelChoice::Offline);
        assert_eq!(valid.config.mcp_server_uri, "http://127.0.0.1:8001/mcp");
        assert_eq!(valid.memory.ttl, Duration::from_secs(86_400));
        assert_eq!(valid.limits.max_steps, 8);
    }

    #[test]
    fn bad_values_name_their_setting() {
        assert_eq!(
            refused(&["--mcp-server-uri", "tools:8001"]),
            "MCP_SERVER_URI"
        );
        assert_eq!(
            refused(&["--conversation-ttl-secs", "0"]),
            "CONVERSATION_TTL_SECS"
        );
        assert_eq!(refused(&["--max-steps", "0"]), "AGENT_MAX_STEPS");
        assert_eq!(
            refused(&["--time-budget-secs", "901"]),
            "AGENT_TIME_BUDGET_SECS"
        );
        assert_eq!(refused(&["--bind-addr", "0.0.0.0:8003"]), "BIND_ADDR");
        assert_eq!(
            refused(&["--openai-base-url", "http://localhost:11434/v1"]),
            "OPENAI_MODEL"
        );
    }
}
