//! The service's configuration: flags with environment-variable fallbacks (the reference's
//! variable names where it had them), validated before any port is bound.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{ArgAction, Parser};
use shared::{
    audit::{AuditArgs, ServiceCommand},
    auth::{AuthArgs, config::AuthPlan},
    config::{
        AzureDeployment, AzureOpenAiArgs, ConfigError, HostGuardArgs, TelemetryArgs, boolish,
    },
    http::{Bounds, ServeLimits},
};

use crate::store::StorageConfig;

/// Contoso tools service: the telecom's customer-service operations as MCP tools.
#[derive(Debug, Clone, Parser)]
#[command(name = "tools-service", version, about)]
pub struct Config {
    /// Address to listen on; `127.0.0.1:0` picks a free port (the log says which).
    #[arg(long, env = "BIND_ADDR", default_value = "127.0.0.1:8001")]
    pub bind_addr: SocketAddr,

    /// SQLite database file (created if missing): the data, and the audit trail. With
    /// USE_COSMOSDB it holds only the audit trail.
    #[arg(long, env = "DB_PATH", default_value = "data/contoso.db")]
    pub db_path: PathBuf,

    /// Keep the data in Azure Cosmos DB (COSMOSDB_ENDPOINT, COSMOS_DATABASE_NAME) instead of
    /// the SQLite file DB_PATH.
    #[arg(long, env = "USE_COSMOSDB", default_value_t = false, action = ArgAction::Set, value_parser = boolish())]
    pub use_cosmosdb: bool,

    // The Cosmos DB account, database and key (COSMOSDB_ENDPOINT, COSMOS_DATABASE_NAME,
    // COSMOSDB_KEY), read as every service reads them.
    #[cfg(feature = "cosmos")]
    #[command(flatten)]
    pub cosmos: shared::cosmos::CosmosArgs,

    /// Fill an empty database with the generated demo data at start.
    #[arg(long, env = "SEED_ON_STARTUP", default_value_t = true, action = ArgAction::Set, value_parser = boolish())]
    pub seed_on_startup: bool,

    /// Wipe the database and seed it again at start.
    #[arg(long, env = "FORCE_SEED", default_value_t = false, action = ArgAction::Set, value_parser = boolish())]
    pub force_seed: bool,

    /// Random customers to generate (the nine scenario customers 251-259 come on top).
    #[arg(long, env = "SEED_CUSTOMER_COUNT", default_value_t = 250)]
    pub seed_customer_count: u32,

    /// Seed of the random generator behind the random customers: two services seeded
    /// differently serve different customers (the scenario customers 251-259 stay the same).
    /// Used when the database is seeded, not on a database that already has data.
    #[arg(long, env = "SEED_RANDOM", default_value_t = crate::seed::DEFAULT_RNG_SEED)]
    pub seed_random: u64,

    /// Duration of each of the nine steps of `trouble_shoot_device`, in milliseconds.
    #[arg(long, env = "TROUBLESHOOT_STEP_MS", default_value_t = 5000)]
    pub troubleshoot_step_ms: u64,

    /// Azure OpenAI embedding deployment name; with it (and the `AZURE_OPENAI_*` resource
    /// settings), knowledge-base search blends embeddings with BM25.
    #[arg(long, env = "AZURE_OPENAI_EMBEDDING_DEPLOYMENT")]
    pub azure_openai_embedding_deployment: Option<String>,

    #[command(flatten)]
    pub azure_openai: AzureOpenAiArgs,

    /// Allow listening on a non-loopback address with authentication disabled or in passthrough
    /// mode. For trusted networks only; logged as a warning.
    #[arg(long, env = "ALLOW_OPEN_NETWORK", default_value_t = false, action = ArgAction::Set, value_parser = boolish())]
    pub allow_open_network: bool,

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
    pub command: Option<Command>,
}

/// What the binary can do besides serving.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    #[command(flatten)]
    Service(ServiceCommand),
    /// Seed the store (SQLite at DB_PATH, or Cosmos DB with USE_COSMOSDB) with the demo data and
    /// exit, without serving: a one-shot job (an init container, a Container Apps job). A store
    /// that already holds customers is left as it is unless --force.
    Seed(SeedArgs),
}

/// `tools-service seed`.
#[derive(Debug, Clone, clap::Args)]
pub struct SeedArgs {
    /// Replace whatever the store holds.
    #[arg(long)]
    pub force: bool,
    /// Random customers to generate (default: SEED_CUSTOMER_COUNT); the nine scenario
    /// customers come on top.
    #[arg(long)]
    pub count: Option<u32>,
}

/// A configuration that passed [`Config::validate`], with the authentication plan it produced:
/// what [`crate::run`] takes, so the checks run once, before any port is bound.
#[derive(Debug, Clone)]
pub struct ValidConfig {
    pub config: Config,
    pub auth: AuthPlan,
    /// The serving bounds (body, headers, timeouts, connections) from [`Config::serve`].
    pub bounds: Bounds,
    /// Where the data is kept.
    pub storage: StorageConfig,
}

/// The embedding deployment knowledge-base search uses.
pub type EmbeddingConfig = AzureDeployment;

/// REQUEST_TIMEOUT_SECS when not given: above the longest tool call answered as one JSON
/// response, the nine-step diagnosis at its default 5 s a step (45 s); with a progress token it
/// streams, and only its head is timed.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Customers above this are refused: the generator keeps the whole data set in memory.
const MAX_SEED_CUSTOMERS: u32 = 1_000_000;

/// A number of customers to seed, checked; `variable` names where it came from.
pub fn check_seed_count(variable: &'static str, count: u32) -> Result<u32, ConfigError> {
    if count > MAX_SEED_CUSTOMERS {
        return Err(ConfigError::new(
            variable,
            format!("{count} is above the limit of {MAX_SEED_CUSTOMERS}"),
        ));
    }
    Ok(count)
}

impl Config {
    /// Parses a configuration from flags (without the program name), with environment
    /// fallbacks for the flags not given: how `devstack` configures an in-process service.
    pub fn try_parse_from_args(
        args: impl IntoIterator<Item = String>,
    ) -> Result<Self, clap::Error> {
        Config::try_parse_from(std::iter::once("tools-service".to_owned()).chain(args))
    }

    /// Validates and keeps the result for [`crate::run`].
    pub fn into_valid(self) -> Result<ValidConfig, ConfigError> {
        let auth = self.validate()?;
        let bounds = self.serve.validate(DEFAULT_REQUEST_TIMEOUT)?;
        let storage = self.storage()?;
        Ok(ValidConfig {
            config: self,
            auth,
            bounds,
            storage,
        })
    }

    /// The storage the settings choose: SQLite at DB_PATH, or Cosmos DB with USE_COSMOSDB.
    pub fn storage(&self) -> Result<StorageConfig, ConfigError> {
        if !self.use_cosmosdb {
            return Ok(StorageConfig::Sqlite {
                path: self.db_path.clone(),
            });
        }
        self.cosmos()
    }

    #[cfg(not(feature = "cosmos"))]
    fn cosmos(&self) -> Result<StorageConfig, ConfigError> {
        Err(ConfigError::new(
            "USE_COSMOSDB",
            "this build has no Cosmos DB backend (build tools-service with the cosmos feature)",
        ))
    }

    #[cfg(feature = "cosmos")]
    fn cosmos(&self) -> Result<StorageConfig, ConfigError> {
        self.cosmos
            .config(self.azure_openai.credential.credential()?)
            .map(StorageConfig::Cosmos)
    }

    /// Checks the settings that parse but do not make sense together, and returns the
    /// authentication plan.
    pub fn validate(&self) -> Result<AuthPlan, ConfigError> {
        check_seed_count("SEED_CUSTOMER_COUNT", self.seed_customer_count)?;
        if self.troubleshoot_step_ms > 60_000 {
            return Err(ConfigError::new(
                "TROUBLESHOOT_STEP_MS",
                "a step longer than 60000 ms would make the diagnosis take over 9 minutes",
            ));
        }
        let plan = self.auth.plan()?;
        let catalog = crate::tools::Catalog::new();
        if let Some(unknown) = plan
            .policy
            .tools_named()
            .find(|t| !catalog.names().any(|n| n == *t))
        {
            return Err(ConfigError::new(
                "ROLE_POLICY_FILE",
                format!("it names the tool {unknown:?}, which this service does not have"),
            ));
        }
        plan.check_exposure(self.bind_addr, self.allow_open_network)?;
        self.embedding()?;
        Ok(plan)
    }

    pub fn troubleshoot_step(&self) -> Duration {
        Duration::from_millis(self.troubleshoot_step_ms)
    }

    /// The embedding settings, if complete; an error if they are half there.
    pub fn embedding(&self) -> Result<Option<EmbeddingConfig>, ConfigError> {
        self.azure_openai.deployment(
            "AZURE_OPENAI_EMBEDDING_DEPLOYMENT",
            self.azure_openai_embedding_deployment.as_deref(),
            "embeddings",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::auth::config::PlanKind;

    /// Parses flags as given, with development auth unless the test passes auth flags itself.
    fn parse(args: &[&str]) -> Config {
        let auth: &[&str] = if args
            .iter()
            .any(|a| a.starts_with("--auth") || a.starts_with("--aad") || a.contains("audience"))
        {
            &[]
        } else {
            &["--disable-auth", "true"]
        };
        let argv = std::iter::once("tools-service")
            .chain(auth.iter().copied())
            .chain(args.iter().copied());
        Config::try_parse_from(argv).expect("parses")
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = parse(&[]);
        assert_eq!(c.bind_addr.to_string(), "127.0.0.1:8001");
        assert_eq!(c.db_path, PathBuf::from("data/contoso.db"));
        assert!(c.seed_on_startup);
        assert!(!c.force_seed);
        assert_eq!(c.seed_customer_count, 250);
        assert_eq!(c.seed_random, 0xC0_7050);
        assert_eq!(parse(&["--seed-random", "42"]).seed_random, 42);
        assert_eq!(c.troubleshoot_step() * 9, Duration::from_secs(45));
        assert!(c.validate().is_ok());
        let valid = c.into_valid().expect("valid");
        assert_eq!(valid.bounds.request_timeout, Duration::from_secs(60));
        assert_eq!(valid.bounds.max_request_body_bytes, 1024 * 1024);
        assert_eq!(
            parse(&["--max-connections", "0"])
                .into_valid()
                .expect_err("refused")
                .variable,
            "MAX_CONNECTIONS"
        );
    }

    #[test]
    fn booleans_accept_common_spellings() {
        assert!(!parse(&["--seed-on-startup", "no"]).seed_on_startup);
        assert!(parse(&["--force-seed", "1"]).force_seed);
        assert!(Config::try_parse_from(["tools-service", "--force-seed", "maybe"]).is_err());
    }

    #[test]
    fn errors_name_the_variable() {
        let open = parse(&["--bind-addr", "0.0.0.0:8001"]);
        assert_eq!(open.validate().expect_err("refused").variable, "BIND_ADDR");
        assert!(
            parse(&[
                "--bind-addr",
                "0.0.0.0:8001",
                "--allow-open-network",
                "true"
            ])
            .validate()
            .is_ok()
        );

        let half = parse(&["--azure-openai-embedding-deployment", "emb"]);
        assert_eq!(
            half.validate().expect_err("refused").variable,
            "AZURE_OPENAI_ENDPOINT"
        );
        let keyless = parse(&[
            "--azure-openai-embedding-deployment",
            "emb",
            "--azure-openai-endpoint",
            "https://x.openai.azure.com",
        ]);
        assert_eq!(
            keyless.validate().expect_err("refused").variable,
            "AZURE_OPENAI_API_KEY"
        );
        assert_eq!(
            parse(&["--seed-customer-count", "2000000"])
                .validate()
                .expect_err("refused")
                .variable,
            "SEED_CUSTOMER_COUNT"
        );
    }

    #[test]
    fn cosmos_settings_are_checked_and_name_what_to_fix() {
        let refused = |args: &[&str]| {
            let mut all = vec!["--use-cosmosdb", "true"];
            all.extend_from_slice(args);
            parse(&all).storage().expect_err("refused").variable
        };
        assert_eq!(refused(&[]), "COSMOSDB_ENDPOINT");
        let remote = ["--cosmosdb-endpoint", "http://cosmos.example.com:8081/"];
        assert_eq!(refused(&remote), "COSMOSDB_ENDPOINT");
        let endpoint = [
            "--cosmosdb-endpoint",
            "https://contoso.documents.azure.com:443/",
        ];
        assert_eq!(
            refused(&endpoint),
            "AZURE_CREDENTIAL",
            "no key and no identity"
        );
        let bad_name = [
            &endpoint[..],
            &["--cosmosdb-key", "k", "--cosmos-database-name", "a/b"],
        ]
        .concat();
        assert_eq!(refused(&bad_name), "COSMOS_DATABASE_NAME");
        let good = [&endpoint[..], &["--cosmosdb-key", "secret-key"]].concat();
        let mut all = vec!["--use-cosmosdb", "true"];
        all.extend_from_slice(&good);
        let storage = parse(&all).storage().expect("valid");
        let described = format!("{storage:?} {}", storage.describe());
        assert!(
            described.contains("contoso.documents.azure.com"),
            "{described}"
        );
        assert!(
            !described.contains("secret-key"),
            "the key is never shown: {described}"
        );
        assert!(matches!(
            parse(&[]).storage().expect("valid"),
            StorageConfig::Sqlite { .. }
        ));
        // Without a key, the service's managed identity (the same setting as for Azure OpenAI).
        let mut entra = vec![
            "--use-cosmosdb",
            "true",
            "--azure-credential",
            "managed-identity",
        ];
        entra.extend_from_slice(&endpoint);
        let StorageConfig::Cosmos(cosmos) = parse(&entra).storage().expect("valid") else {
            panic!("expected Cosmos DB");
        };
        assert_eq!(cosmos.auth.describe(), "managed identity");
    }

    #[test]
    fn a_role_policy_naming_an_unknown_tool_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, "[tools]\nrefund_everything = [\"billing\"]\n").expect("write");
        let c = parse(&["--role-policy-file", path.to_str().expect("UTF-8 path")]);
        let err = c.validate().expect_err("unknown tool");
        assert_eq!(err.variable, "ROLE_POLICY_FILE");
        assert!(err.message.contains("refund_everything"), "{}", err.message);
    }

    #[test]
    fn authentication_is_required_unless_a_development_mode_is_named() {
        let nothing = Config::try_parse_from(["tools-service"]).expect("parses");
        let err = nothing.validate().expect_err("no auth configured");
        assert_eq!(err.variable, "AUTH_ISSUER");
        assert!(err.message.contains("DISABLE_AUTH"), "{}", err.message);
        // No audience named: the service accepts its own resource URL only, which is known
        // once it is bound.
        let no_audience = parse(&["--auth-issuer", "https://login.example.com"]);
        match no_audience.validate().expect("valid").kind {
            shared::auth::config::PlanKind::Jwt { settings, .. } => {
                assert!(settings.audiences.is_empty(), "{settings:?}");
                assert!(settings.trusted_actors.is_empty(), "no actor trusted");
            }
            other => panic!("expected JWT verification, got {other:?}"),
        }
        let same_roles = parse(&[
            "--auth-issuer",
            "https://login.example.com",
            "--query-role",
            "billing",
        ]);
        assert_eq!(
            same_roles.validate().expect_err("refused").variable,
            "QUERY_ROLE"
        );
        let verified = parse(&[
            "--bind-addr",
            "0.0.0.0:8001",
            "--auth-issuer",
            "https://login.example.com",
            "--mcp-api-audience",
            "api://contoso-mcp",
        ]);
        assert!(
            verified.validate().is_ok(),
            "verified tokens may listen anywhere"
        );
        let entra = parse(&["--aad-tenant-id", "abc", "--mcp-api-audience", "api://x"]);
        match entra.validate().expect("valid").kind {
            PlanKind::Jwt { settings, .. } => {
                assert_eq!(
                    settings.issuer,
                    "https://login.microsoftonline.com/abc/v2.0"
                )
            }
            other => panic!("expected JWT, got {other:?}"),
        }
    }
}
