//! The agent service's configuration: flags with environment-variable fallbacks, validated
//! before any port is bound.

use std::{net::SocketAddr, num::NonZeroUsize, path::PathBuf, time::Duration};

use clap::{ArgAction, Parser};
use shared::{
    audit::{AuditArgs, ServiceCommand},
    auth::{
        AuthArgs,
        config::{AuthPlan, PlanKind},
    },
    config::{AzureCredential, ConfigError, HostGuardArgs, Secret, TelemetryArgs, boolish},
    http::{Bounds, ServeLimits},
    mcp::live::LiveBounds,
};

use crate::{
    agent::Limits,
    memory::{MemoryConfig, MemoryStorage},
    model::config::{ModelArgs, ModelChoice},
    upstream::{
        assertion::{self, AssertionSettings},
        exchange::{ClientAuth, Grant},
    },
};

/// Contoso agent service: domain experts (billing, account, product) as MCP tools, answering
/// with the tools service's tools on the caller's authority.
#[derive(Debug, Clone, Parser)]
#[command(name = "agent-service", version, about)]
pub struct Config {
    /// Address to listen on; `127.0.0.1:0` picks a free port (the log says which).
    #[arg(long, env = "BIND_ADDR", default_value = "127.0.0.1:8003")]
    pub bind_addr: SocketAddr,

    /// SQLite database (created if missing): conversation memory and the audit trail. With
    /// USE_COSMOSDB it holds only the audit trail.
    #[arg(long, env = "DB_PATH", default_value = "data/agent.db")]
    pub db_path: PathBuf,

    /// Keep conversation memory and MCP sessions in Azure Cosmos DB (COSMOSDB_ENDPOINT,
    /// COSMOS_DATABASE_NAME, COSMOSDB_KEY) instead of the SQLite file DB_PATH.
    #[arg(long, env = "USE_COSMOSDB", default_value_t = false, action = ArgAction::Set, value_parser = boolish())]
    pub use_cosmosdb: bool,

    // The Cosmos DB account, database and key, read as every service reads them.
    #[cfg(feature = "cosmos")]
    #[command(flatten)]
    pub cosmos: shared::cosmos::CosmosArgs,

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
    /// conversation. Sessions are recorded in the memory's store (DB_PATH, or Cosmos DB), so
    /// every replica on it serves them.
    /// Off by default: without sessions any replica answers any request with nothing to share.
    #[arg(long, env = "MCP_SESSIONS", default_value_t = false, action = ArgAction::Set, value_parser = boolish())]
    pub mcp_sessions: bool,

    /// Conversations one person (tenant and subject) keeps; starting one more forgets their least
    /// recently active one.
    #[arg(long, env = "CONVERSATIONS_PER_OWNER", default_value_t = 1_000)]
    pub conversations_per_owner: u32,

    /// MCP sessions one person holds at once (MCP_SESSIONS=true); initializing one more ends
    /// their oldest.
    #[arg(long, env = "MCP_SESSIONS_PER_OWNER", default_value_t = 32)]
    pub sessions_per_owner: u32,

    /// MCP sessions kept live in memory (MCP_SESSIONS=true); one more closes the least recently
    /// used, which its client's next request takes over from the memory's store again.
    #[arg(long, env = "MCP_SESSIONS_IN_MEMORY", default_value_t = 1_000)]
    pub sessions_in_memory: usize,

    /// Seconds an MCP session stays in memory with no request (it goes on from the store after).
    #[arg(long, env = "MCP_SESSION_IDLE_SECS", default_value_t = 120)]
    pub session_idle_secs: u64,

    /// Earlier turns of a conversation given to the expert with a new question.
    #[arg(long, env = "CONVERSATION_HISTORY_TURNS", default_value_t = 10)]
    pub history_turns: usize,

    /// Model requests an expert may make for one question.
    #[arg(long, env = "AGENT_MAX_STEPS", default_value_t = 8)]
    pub max_steps: usize,

    /// Seconds an expert may spend on one question, tool calls included.
    #[arg(long, env = "AGENT_TIME_BUDGET_SECS", default_value_t = 120)]
    pub time_budget_secs: u64,

    /// Tool calls an expert may have in flight at once for one question (1 to 64).
    #[arg(long, env = "AGENT_MAX_PARALLEL_CALLS", default_value_t = 4)]
    pub max_parallel_calls: usize,

    /// Tool calls an expert may make for one question (1 to 500); the model is told that the
    /// calls past it were not run.
    #[arg(long, env = "AGENT_MAX_CALLS_PER_TURN", default_value_t = 24)]
    pub max_calls_per_turn: usize,

    /// Seconds a change an expert proposed (a payment, an unlock, ...) waits for the person's
    /// confirmation before it expires unmade (1 to 86400).
    #[arg(long, env = "AGENT_CONFIRMATION_TTL_SECS", default_value_t = 300)]
    pub confirmation_ttl_secs: u64,

    /// Allow listening on a non-loopback address with authentication disabled or in passthrough
    /// mode. For trusted networks only; logged as a warning.
    #[arg(long, env = "ALLOW_OPEN_NETWORK", default_value_t = false, action = ArgAction::Set, value_parser = boolish())]
    pub allow_open_network: bool,

    #[command(flatten)]
    pub model: ModelArgs,

    #[command(flatten)]
    pub delegation: DelegationArgs,

    #[command(flatten)]
    pub auth: AuthArgs,

    #[command(flatten)]
    pub host_guard: HostGuardArgs,

    #[command(flatten)]
    pub serve: ServeLimits,

    #[command(flatten)]
    pub telemetry: TelemetryArgs,

    #[command(flatten)]
    pub audit: AuditArgs,

    /// Print the effective role policy (as a ROLE_POLICY_FILE) and exit, without listening or
    /// opening the database.
    #[arg(long)]
    pub print_policy: bool,

    /// Without a command, the service runs.
    #[command(subcommand)]
    pub command: Option<ServiceCommand>,
}

/// How the experts get the token of their inner calls to the tools service.
#[derive(Debug, Clone, clap::Args)]
pub struct DelegationArgs {
    /// `rfc8693` (OAuth 2.0 Token Exchange at the issuer's token endpoint), `entra-obo` (Microsoft
    /// Entra's on-behalf-of flow), or `passthrough` (DEVELOPMENT ONLY: the caller's own token is
    /// sent on, which the MCP authorization specification forbids).
    #[arg(long, env = "TOKEN_EXCHANGE", default_value = "rfc8693")]
    pub token_exchange: String,
    /// The agent service's own client id at the issuer (it becomes `act.sub` of delegated tokens).
    #[arg(long, env = "AGENT_CLIENT_ID")]
    pub agent_client_id: Option<String>,
    /// The agent service's client secret (not with AGENT_CLIENT_AUTH=managed_identity).
    #[arg(long, env = "AGENT_CLIENT_SECRET", hide_env_values = true)]
    pub agent_client_secret: Option<Secret>,
    /// How the client authenticates at the token endpoint: `client_secret_basic`,
    /// `client_secret_post`, or `managed_identity`: no secret, a token of the managed identity
    /// (AZURE_CREDENTIAL=managed-identity, AZURE_CLIENT_ID) as a client assertion, which Entra
    /// takes from an identity that is a federated identity credential of the app registration.
    #[arg(long, env = "AGENT_CLIENT_AUTH", default_value = "client_secret_basic")]
    pub agent_client_auth: String,
    /// The audience of the managed identity's token sent as the client assertion: the audience
    /// of the app registration's federated identity credential. Another in sovereign clouds
    /// (e.g. `api://AzureADTokenExchangeUSGov`).
    #[arg(long, env = "AGENT_ASSERTION_AUDIENCE", default_value = assertion::DEFAULT_AUDIENCE)]
    pub agent_assertion_audience: String,
    /// The audience to ask for: the tools service's resource identifier. Default: MCP_SERVER_URI.
    #[arg(long, env = "MCP_SERVER_AUDIENCE")]
    pub mcp_server_audience: Option<String>,
}

/// The validated delegation settings; the token endpoint comes later, from discovery.
#[derive(Debug, Clone)]
pub enum Delegation {
    PassThrough,
    Exchange {
        grant: Grant,
        client_id: String,
        /// With `client_secret_basic` and `client_secret_post`; `None` with `managed_identity`.
        client_secret: Option<Secret>,
        client_auth: ClientAuth,
        /// With `managed_identity`: whose tokens are the client assertions, for which audience.
        assertion: Option<AssertionSettings>,
        audience: String,
    },
}

impl DelegationArgs {
    /// `identity`: the Entra identity AZURE_CREDENTIAL names, if any.
    fn validate(
        &self,
        mcp_server_uri: &str,
        auth: &AuthPlan,
        identity: Option<AzureCredential>,
    ) -> Result<Delegation, ConfigError> {
        let grant = match self.token_exchange.trim() {
            "passthrough" => return Ok(Delegation::PassThrough),
            "rfc8693" => Grant::Rfc8693,
            "entra-obo" => Grant::EntraObo,
            other => {
                return Err(ConfigError::new(
                    "TOKEN_EXCHANGE",
                    format!("{other:?} is not one of rfc8693, entra-obo, passthrough"),
                ));
            }
        };
        if !matches!(auth.kind, PlanKind::Jwt { .. }) {
            return Err(ConfigError::new(
                "TOKEN_EXCHANGE",
                "exchanging tokens needs verified tokens of an issuer (AUTH_ISSUER); with \
                 DISABLE_AUTH or USE_PASSTHROUGH_AUTH set TOKEN_EXCHANGE=passthrough",
            ));
        }
        let client_id = self
            .agent_client_id
            .as_deref()
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| {
                ConfigError::new(
                    "AGENT_CLIENT_ID",
                    "set the agent service's client id at the issuer (and AGENT_CLIENT_SECRET, \
                     or AGENT_CLIENT_AUTH=managed_identity), which it exchanges callers' tokens \
                     with",
                )
            })?;
        let client_auth = match self.agent_client_auth.trim() {
            "client_secret_basic" => ClientAuth::Basic,
            "client_secret_post" => ClientAuth::Post,
            "managed_identity" => ClientAuth::ManagedIdentity,
            other => {
                return Err(ConfigError::new(
                    "AGENT_CLIENT_AUTH",
                    format!(
                        "{other:?} is not one of client_secret_basic, client_secret_post, \
                         managed_identity"
                    ),
                ));
            }
        };
        let client_secret = self
            .agent_client_secret
            .clone()
            .filter(|secret| !secret.expose().is_empty());
        let (client_secret, assertion) = match client_auth {
            ClientAuth::Basic | ClientAuth::Post => {
                let secret = client_secret.ok_or_else(|| {
                    ConfigError::new(
                        "AGENT_CLIENT_SECRET",
                        "set the agent service's client secret, or authenticate with its \
                         managed identity instead: AGENT_CLIENT_AUTH=managed_identity",
                    )
                })?;
                (Some(secret), None)
            }
            ClientAuth::ManagedIdentity => {
                if client_secret.is_some() {
                    return Err(ConfigError::new(
                        "AGENT_CLIENT_SECRET",
                        "AGENT_CLIENT_AUTH=managed_identity authenticates with the managed \
                         identity's token, never a secret: unset AGENT_CLIENT_SECRET (or choose \
                         client_secret_basic)",
                    ));
                }
                let identity = identity.ok_or_else(|| {
                    ConfigError::new(
                        "AZURE_CREDENTIAL",
                        "AGENT_CLIENT_AUTH=managed_identity sends a token of the managed \
                         identity: set AZURE_CREDENTIAL=managed-identity (and AZURE_CLIENT_ID for \
                         a user-assigned identity)",
                    )
                })?;
                let audience = self.agent_assertion_audience.trim();
                if audience.is_empty() || audience.contains(char::is_whitespace) {
                    return Err(ConfigError::new(
                        "AGENT_ASSERTION_AUDIENCE",
                        format!(
                            "{audience:?} is not an audience: give the federated credential's, \
                             e.g. {}",
                            assertion::DEFAULT_AUDIENCE
                        ),
                    ));
                }
                let assertion = AssertionSettings {
                    identity,
                    audience: audience.to_owned(),
                };
                (None, Some(assertion))
            }
        };
        let audience = self
            .mcp_server_audience
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .unwrap_or(mcp_server_uri)
            .to_owned();
        Ok(Delegation::Exchange {
            grant,
            client_id: client_id.to_owned(),
            client_secret,
            client_auth,
            assertion,
            audience,
        })
    }
}

/// A configuration that passed [`Config::validate`], with what validation produced.
#[derive(Debug, Clone)]
pub struct ValidConfig {
    pub config: Config,
    pub auth: AuthPlan,
    pub delegation: Delegation,
    pub model: ModelChoice,
    pub memory: MemoryConfig,
    /// Where the memory is kept: the SQLite file DB_PATH, or Cosmos DB with USE_COSMOSDB.
    pub storage: MemoryStorage,
    pub limits: Limits,
    /// The serving bounds (body, headers, timeouts, connections) from [`Config::serve`].
    pub bounds: Bounds,
    /// How many MCP sessions stay in memory, and for how long idle (with MCP_SESSIONS=true).
    pub live_sessions: LiveBounds,
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
            confirmation_ttl: Duration::from_secs(self.confirmation_ttl_secs),
            max_conversations_per_owner: self.conversations_per_owner,
            max_sessions_per_owner: self.sessions_per_owner,
            ..MemoryConfig::default()
        };
        if self.conversations_per_owner == 0 {
            return Err(ConfigError::new(
                "CONVERSATIONS_PER_OWNER",
                "give at least 1",
            ));
        }
        if self.sessions_per_owner == 0 {
            return Err(ConfigError::new(
                "MCP_SESSIONS_PER_OWNER",
                "give at least 1",
            ));
        }
        let live_sessions = LiveBounds {
            max_live: NonZeroUsize::new(self.sessions_in_memory)
                .filter(|n| n.get() <= 1_000_000)
                .ok_or_else(|| {
                    ConfigError::new(
                        "MCP_SESSIONS_IN_MEMORY",
                        format!(
                            "{} is out of range: give 1 to 1000000",
                            self.sessions_in_memory
                        ),
                    )
                })?,
            idle: Duration::from_secs(self.session_idle_secs),
        };
        if !(1..=3_600).contains(&self.session_idle_secs) {
            return Err(ConfigError::new(
                "MCP_SESSION_IDLE_SECS",
                format!(
                    "{} is out of range: give 1 to 3600 seconds",
                    self.session_idle_secs
                ),
            ));
        }
        if !(1..=86_400).contains(&self.confirmation_ttl_secs) {
            return Err(ConfigError::new(
                "AGENT_CONFIRMATION_TTL_SECS",
                format!(
                    "{} is out of range: give 1 to 86400 seconds",
                    self.confirmation_ttl_secs
                ),
            ));
        }
        memory
            .validate()
            .map_err(|e| ConfigError::new("CONVERSATION_TTL_SECS", e.to_string()))?;
        let storage = self.storage()?;
        if !(1..=50).contains(&self.max_steps) {
            return Err(ConfigError::new(
                "AGENT_MAX_STEPS",
                format!("{} is out of range: give 1 to 50", self.max_steps),
            ));
        }
        if !(1..=64).contains(&self.max_parallel_calls) {
            return Err(ConfigError::new(
                "AGENT_MAX_PARALLEL_CALLS",
                format!("{} is out of range: give 1 to 64", self.max_parallel_calls),
            ));
        }
        if !(1..=500).contains(&self.max_calls_per_turn) {
            return Err(ConfigError::new(
                "AGENT_MAX_CALLS_PER_TURN",
                format!("{} is out of range: give 1 to 500", self.max_calls_per_turn),
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
        let identity = self.model.azure_openai.credential.credential()?;
        let delegation = self.delegation.validate(url, &auth, identity)?;
        let model = self.model.choice()?;
        let limits = Limits {
            max_steps: self.max_steps,
            time_budget: Duration::from_secs(self.time_budget_secs),
            max_parallel_calls: self.max_parallel_calls,
            max_calls_per_turn: self.max_calls_per_turn,
        };
        // An expert's answer is one JSON response, sent when its turn ends: the request timeout
        // must outlast the time budget, with room for the model's last reply.
        let bounds = self
            .serve
            .validate(limits.time_budget + Duration::from_secs(60))?;
        if bounds.request_timeout <= limits.time_budget {
            return Err(ConfigError::new(
                "REQUEST_TIMEOUT_SECS",
                format!(
                    "{} s would cut experts' answers: give more than AGENT_TIME_BUDGET_SECS ({} s)",
                    bounds.request_timeout.as_secs_f64(),
                    self.time_budget_secs
                ),
            ));
        }
        Ok(ValidConfig {
            config: self,
            auth,
            delegation,
            model,
            memory,
            storage,
            limits,
            bounds,
            live_sessions,
        })
    }

    /// Where the memory is kept: SQLite at DB_PATH, or Cosmos DB with USE_COSMOSDB.
    pub fn storage(&self) -> Result<MemoryStorage, ConfigError> {
        if !self.use_cosmosdb {
            return Ok(MemoryStorage::Sqlite {
                path: self.db_path.clone(),
            });
        }
        self.cosmos()
    }

    #[cfg(not(feature = "cosmos"))]
    fn cosmos(&self) -> Result<MemoryStorage, ConfigError> {
        Err(ConfigError::new(
            "USE_COSMOSDB",
            "this build has no Cosmos DB backend (build agent-service with the cosmos feature)",
        ))
    }

    #[cfg(feature = "cosmos")]
    fn cosmos(&self) -> Result<MemoryStorage, ConfigError> {
        let cap = crate::memory::cosmos::MAX_SESSIONS_PER_OWNER;
        if self.sessions_per_owner > cap {
            return Err(ConfigError::new(
                "MCP_SESSIONS_PER_OWNER",
                format!(
                    "{} is above the limit of {cap} on Cosmos DB (USE_COSMOSDB)",
                    self.sessions_per_owner
                ),
            ));
        }
        self.cosmos
            .config(self.model.azure_openai.credential.credential()?)
            .map(MemoryStorage::Cosmos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        Config::try_parse_from(
            [
                "agent-service",
                "--disable-auth",
                "true",
                "--token-exchange",
                "passthrough",
            ]
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
        assert_eq!(valid.bounds.request_timeout, Duration::from_secs(180));
        assert_eq!(valid.limits.max_parallel_calls, 4);
        assert_eq!(valid.limits.max_calls_per_turn, 24);
        assert_eq!(valid.memory.confirmation_ttl, Duration::from_secs(300));
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
            refused(&["--request-timeout-secs", "120"]),
            "REQUEST_TIMEOUT_SECS"
        );
        assert_eq!(refused(&["--max-json-depth", "0"]), "MAX_JSON_DEPTH");
        assert_eq!(
            refused(&["--max-parallel-calls", "0"]),
            "AGENT_MAX_PARALLEL_CALLS"
        );
        assert_eq!(
            refused(&["--max-calls-per-turn", "501"]),
            "AGENT_MAX_CALLS_PER_TURN"
        );
        assert_eq!(
            refused(&["--confirmation-ttl-secs", "0"]),
            "AGENT_CONFIRMATION_TTL_SECS"
        );
        assert_eq!(
            refused(&["--time-budget-secs", "901"]),
            "AGENT_TIME_BUDGET_SECS"
        );
        assert_eq!(
            refused(&["--sessions-in-memory", "0"]),
            "MCP_SESSIONS_IN_MEMORY"
        );
        assert_eq!(
            refused(&["--session-idle-secs", "3601"]),
            "MCP_SESSION_IDLE_SECS"
        );
        assert_eq!(refused(&["--bind-addr", "0.0.0.0:8003"]), "BIND_ADDR");
        assert_eq!(
            refused(&["--openai-base-url", "http://localhost:11434/v1"]),
            "OPENAI_MODEL"
        );
    }

    fn verified(args: &[&str]) -> Result<ValidConfig, ConfigError> {
        Config::try_parse_from(
            [
                "agent-service",
                "--auth-issuer",
                "http://127.0.0.1:4444",
                "--disable-auth",
                "false",
                "--use-passthrough-auth",
                "false",
            ]
            .into_iter()
            .chain(args.iter().copied()),
        )
        .expect("flags parse")
        .into_valid()
    }

    #[test]
    fn the_memory_is_in_sqlite_unless_cosmos_is_chosen_and_its_settings_are_checked() {
        let sqlite = parse(&[]).into_valid().expect("valid");
        assert!(
            matches!(&sqlite.storage, MemoryStorage::Sqlite { path } if path.ends_with("agent.db")),
            "{:?}",
            sqlite.storage
        );
        let cosmos = ["--use-cosmosdb", "true"];
        assert_eq!(refused(&cosmos), "COSMOSDB_ENDPOINT");
        let endpoint = [
            &cosmos[..],
            &[
                "--cosmosdb-endpoint",
                "https://contoso.documents.azure.com:443/",
            ],
        ]
        .concat();
        assert_eq!(
            refused(&endpoint),
            "AZURE_CREDENTIAL",
            "no key and no identity"
        );
        let keyed = [&endpoint[..], &["--cosmosdb-key", "secret-key"]].concat();
        assert_eq!(
            refused(&[&keyed[..], &["--cosmos-database-name", "a#b"]].concat()),
            "COSMOS_DATABASE_NAME"
        );
        assert_eq!(
            refused(&[&keyed[..], &["--sessions-per-owner", "10001"]].concat()),
            "MCP_SESSIONS_PER_OWNER"
        );
        let valid = parse(&keyed).into_valid().expect("valid");
        let MemoryStorage::Cosmos(config) = &valid.storage else {
            panic!("expected Cosmos DB, got {:?}", valid.storage);
        };
        assert_eq!(config.database, "contoso");
        let described = format!("{:?} {}", valid.storage, valid.storage.describe());
        assert!(
            described.contains("contoso.documents.azure.com"),
            "{described}"
        );
        assert!(!described.contains("secret-key"), "{described}");

        // Without a key, the managed identity that AZURE_CREDENTIAL names for every Azure
        // resource, with or without an Azure OpenAI deployment.
        let entra = [&endpoint[..], &["--azure-credential", "managed-identity"]].concat();
        let valid = parse(&entra).into_valid().expect("valid");
        let MemoryStorage::Cosmos(config) = &valid.storage else {
            panic!("expected Cosmos DB, got {:?}", valid.storage);
        };
        assert_eq!(config.auth.describe(), "managed identity");
    }

    #[test]
    fn token_exchange_is_the_default_and_needs_the_agents_credentials() {
        let refused = |args: &[&str]| verified(args).expect_err("refused").variable;
        assert_eq!(refused(&[]), "AGENT_CLIENT_ID");
        assert_eq!(refused(&["--token-exchange", "obo"]), "TOKEN_EXCHANGE");
        assert_eq!(
            refused(&["--agent-client-id", "agent"]),
            "AGENT_CLIENT_SECRET"
        );
        let credentials = ["--agent-client-id", "agent", "--agent-client-secret", "s"];
        let with = |more: &[&str]| {
            verified(&[&credentials[..], more].concat()).map(|valid| valid.delegation)
        };
        match with(&[]).expect("valid") {
            Delegation::Exchange {
                grant,
                client_id,
                client_auth,
                audience,
                ..
            } => {
                assert_eq!(grant, Grant::Rfc8693);
                assert_eq!(client_id, "agent");
                assert_eq!(client_auth, ClientAuth::Basic);
                assert_eq!(audience, "http://127.0.0.1:8001/mcp", "MCP_SERVER_URI");
            }
            other => panic!("expected an exchange, got {other:?}"),
        }
        match with(&[
            "--token-exchange",
            "entra-obo",
            "--agent-client-auth",
            "client_secret_post",
            "--mcp-server-audience",
            "api://contoso-tools",
        ])
        .expect("valid")
        {
            Delegation::Exchange {
                grant,
                client_auth,
                audience,
                ..
            } => {
                assert_eq!(grant, Grant::EntraObo);
                assert_eq!(client_auth, ClientAuth::Post);
                assert_eq!(audience, "api://contoso-tools");
            }
            other => panic!("expected an exchange, got {other:?}"),
        }
        assert_eq!(
            with(&["--agent-client-auth", "private_key_jwt"])
                .expect_err("refused")
                .variable,
            "AGENT_CLIENT_AUTH"
        );
        assert!(matches!(
            verified(&["--token-exchange", "passthrough"]).map(|v| v.delegation),
            Ok(Delegation::PassThrough)
        ));
        // Unverified callers have no token an issuer would exchange.
        let unverified = Config::try_parse_from([
            "agent-service",
            "--disable-auth",
            "true",
            "--token-exchange",
            "rfc8693",
        ])
        .expect("flags parse")
        .into_valid()
        .expect_err("refused");
        assert_eq!(unverified.variable, "TOKEN_EXCHANGE");
    }

    #[test]
    fn managed_identity_client_auth_takes_no_secret_and_needs_the_identity() {
        let base = [
            "--agent-client-id",
            "agent",
            "--agent-client-auth",
            "managed_identity",
        ];
        let with = |more: &[&str]| verified(&[&base[..], more].concat());
        let identity = ["--azure-credential", "managed-identity"];

        let secret = with(&[&identity[..], &["--agent-client-secret", "s"]].concat())
            .expect_err("a secret beside the identity");
        assert_eq!(secret.variable, "AGENT_CLIENT_SECRET");
        assert!(
            secret
                .message
                .contains("AGENT_CLIENT_AUTH=managed_identity"),
            "names both settings: {secret}"
        );
        let no_identity = with(&[]).expect_err("no identity");
        assert_eq!(no_identity.variable, "AZURE_CREDENTIAL");
        assert!(
            no_identity
                .message
                .contains("AZURE_CREDENTIAL=managed-identity"),
            "{no_identity}"
        );
        assert_eq!(
            with(&[&identity[..], &["--agent-assertion-audience", " "]].concat())
                .expect_err("blank audience")
                .variable,
            "AGENT_ASSERTION_AUDIENCE"
        );

        let user_assigned = [&identity[..], &["--azure-client-id", "0f1e2d3c"]].concat();
        match with(&user_assigned).expect("valid").delegation {
            Delegation::Exchange {
                client_secret,
                client_auth,
                assertion,
                ..
            } => {
                assert_eq!(client_auth, ClientAuth::ManagedIdentity);
                assert!(client_secret.is_none());
                assert_eq!(
                    assertion,
                    Some(AssertionSettings {
                        identity: AzureCredential::ManagedIdentity {
                            client_id: Some("0f1e2d3c".into())
                        },
                        audience: "api://AzureADTokenExchange".into(),
                    })
                );
            }
            other => panic!("expected an exchange, got {other:?}"),
        }
        let sovereign = [
            &identity[..],
            &[
                "--agent-assertion-audience",
                "api://AzureADTokenExchangeUSGov",
            ],
        ]
        .concat();
        match with(&sovereign).expect("valid").delegation {
            Delegation::Exchange {
                assertion: Some(assertion),
                ..
            } => assert_eq!(assertion.audience, "api://AzureADTokenExchangeUSGov"),
            other => panic!("expected an assertion, got {other:?}"),
        }
        // The secret-based ways keep no assertion, whatever AZURE_CREDENTIAL says.
        match verified(&[
            "--agent-client-id",
            "agent",
            "--agent-client-secret",
            "s",
            "--azure-credential",
            "managed-identity",
        ])
        .expect("valid")
        .delegation
        {
            Delegation::Exchange {
                client_secret,
                assertion,
                ..
            } => {
                assert_eq!(client_secret, Some(Secret::new("s")));
                assert_eq!(assertion, None);
            }
            other => panic!("expected an exchange, got {other:?}"),
        }
    }
}
