//! The `devstack` command line: subcommands and their settings, each a flag with an
//! environment-variable fallback, and how they become an identity provider configuration.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{ArgAction, Args, Parser, Subcommand};
use shared::config::{TelemetryArgs, boolish};

use crate::idp::{self, IdpConfig, KeySource, defaults};

/// Runs the platform locally with no cloud account, with a development OIDC identity provider
/// that issues real signed tokens.
#[derive(Debug, Parser)]
#[command(name = "devstack", version, about)]
pub struct Cli {
    /// What to run; with none, the whole local stack.
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub stack: StackArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print an access token signed with the identity provider's key (the key file in the data
    /// folder, created if missing), valid against a devstack IdP that uses the same folder.
    Token(TokenArgs),
    /// Run only the development identity provider.
    Idp(IdpArgs),
}

/// Where the identity provider keeps its signing key; shared by every subcommand so they all
/// sign with one key.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// Folder of devstack's state; the IdP key is `idp-signing-key.pem` in it.
    #[arg(long, env = "DEVSTACK_DATA_DIR", default_value = "data/devstack")]
    pub data_dir: PathBuf,
}

impl DataArgs {
    pub fn key_file(&self) -> PathBuf {
        self.data_dir.join(idp::KEY_FILE)
    }
}

/// `devstack token`.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// Tenant name (`contoso`, `fabrikam`, `northwind`, `woodgrove`) or tid (any UUID).
    #[arg(long)]
    pub tenant: String,

    /// Roles, comma separated, e.g. `query,security`; none by default.
    #[arg(long, value_delimiter = ',')]
    pub roles: Vec<String>,

    /// The subject (`sub`); `oid` is derived from it.
    #[arg(long, default_value = defaults::SUBJECT)]
    pub sub: String,

    /// The audience (`aud`).
    #[arg(long, env = "MCP_API_AUDIENCE", default_value = defaults::AUDIENCE)]
    pub audience: String,

    /// Seconds until the token expires (at most a week).
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub lifetime_secs: u64,

    /// The issuer (`iss`): the URL of the devstack IdP the token is for.
    #[arg(long, env = "DEVSTACK_ISSUER", default_value = defaults::ISSUER)]
    pub issuer: String,

    #[command(flatten)]
    pub data: DataArgs,
}

impl TokenArgs {
    /// The IdP that `devstack token` signs with: the shared key file, this issuer.
    pub fn idp_config(&self) -> IdpConfig {
        IdpConfig {
            issuer: Some(self.issuer.clone()),
            audiences: vec![self.audience.clone()],
            key: KeySource::File(self.data.key_file()),
            ..IdpConfig::default()
        }
    }

    pub fn lifetime(&self) -> Duration {
        Duration::from_secs(self.lifetime_secs)
    }
}

/// `devstack` with no subcommand: the identity provider, the two tools services and the gateway
/// in front of them (see [`crate::topology`]).
///
/// The databases live in the data folder (`contoso.db`, `fabrikam.db`), beside the IdP key: a
/// single `DB_PATH` cannot name two databases, and one folder holding the whole stack's state is
/// one folder to delete for a fresh start. The tools service's own settings that devstack does
/// not set per backend (`FORCE_SEED`, `TROUBLESHOOT_STEP_MS`, ...) apply to both backends.
#[derive(Debug, Clone, Args)]
pub struct StackArgs {
    /// Identity provider address (its issuer URL is `http://` + this).
    #[arg(long, env = "IDP_BIND_ADDR", default_value = "127.0.0.1:4444")]
    pub idp_bind: SocketAddr,

    /// The Contoso tools service's own address (reached directly only for debugging).
    #[arg(long, env = "TOOLS_BIND_ADDR", default_value = "127.0.0.1:8001")]
    pub tools_bind: SocketAddr,

    /// The Fabrikam tools service's own address (reached directly only for debugging).
    #[arg(long, env = "FABRIKAM_BIND_ADDR", default_value = "127.0.0.1:8002")]
    pub fabrikam_bind: SocketAddr,

    /// The Contoso agent service's own address (its experts are reached through the gateway at
    /// `/contoso-agent/mcp`).
    #[arg(long, env = "AGENT_BIND_ADDR", default_value = "127.0.0.1:8003")]
    pub agent_bind: SocketAddr,

    /// The gateway's address: where MCP clients connect (`/contoso-mcp/mcp`, `/fabrikam-mcp/mcp`).
    #[arg(long, env = "GATEWAY_BIND_ADDR", default_value = "127.0.0.1:8080")]
    pub gateway_bind: SocketAddr,

    /// Lifetime of the sample tokens printed at start, in seconds.
    #[arg(long, default_value_t = 8 * 3600, value_parser = clap::value_parser!(u64).range(60..=604_800))]
    pub token_lifetime_secs: u64,

    #[command(flatten)]
    pub data: DataArgs,

    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

/// `devstack idp`.
#[derive(Debug, Clone, Args)]
pub struct IdpArgs {
    /// Address to listen on; `127.0.0.1:0` picks a free port (the log says which).
    #[arg(long, env = "IDP_BIND_ADDR", default_value = "127.0.0.1:4444")]
    pub bind: SocketAddr,

    /// The issuer URL, when it is not `http://<bound address>` (behind a proxy, in a container).
    #[arg(long, env = "DEVSTACK_ISSUER")]
    pub issuer: Option<String>,

    /// Audiences the token endpoint issues for, comma separated; the first is the default.
    #[arg(long, env = "MCP_API_AUDIENCE", value_delimiter = ',', default_value = defaults::AUDIENCE)]
    pub audience: Vec<String>,

    /// Serve `POST /rotate` and `POST /retire` (key rotation for tests).
    #[arg(long, env = "IDP_ALLOW_ROTATION", default_value_t = false, action = ArgAction::Set, value_parser = boolish())]
    pub allow_rotation: bool,

    #[command(flatten)]
    pub data: DataArgs,

    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

impl IdpArgs {
    pub fn idp_config(&self) -> IdpConfig {
        IdpConfig {
            issuer: self.issuer.clone(),
            audiences: self.audience.clone(),
            key: KeySource::File(self.data.key_file()),
            allow_rotation: self.allow_rotation,
            ..IdpConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn token_flags_parse() {
        let cli = Cli::try_parse_from([
            "devstack",
            "token",
            "--tenant",
            "fabrikam",
            "--roles",
            "query,security",
            "--sub",
            "bob",
            "--data-dir",
            "/tmp/x",
        ])
        .expect("parses");
        let Some(Command::Token(args)) = cli.command else {
            panic!("token subcommand");
        };
        assert_eq!(args.roles, ["query", "security"]);
        assert_eq!(args.sub, "bob");
        assert_eq!(args.lifetime(), Duration::from_secs(3600));
        assert_eq!(
            args.data.key_file(),
            PathBuf::from("/tmp/x/idp-signing-key.pem")
        );
        assert!(
            Cli::try_parse_from(["devstack", "token", "--tenant", "x", "--lifetime-secs", "0"])
                .is_err()
        );
    }

    #[test]
    fn no_subcommand_runs_the_stack_on_the_documented_ports() {
        let cli = Cli::try_parse_from(["devstack"]).expect("parses");
        assert!(cli.command.is_none());
        assert_eq!(cli.stack.idp_bind.to_string(), "127.0.0.1:4444");
        assert_eq!(cli.stack.tools_bind.to_string(), "127.0.0.1:8001");
        assert_eq!(cli.stack.fabrikam_bind.to_string(), "127.0.0.1:8002");
        assert_eq!(cli.stack.gateway_bind.to_string(), "127.0.0.1:8080");
        assert_eq!(cli.stack.agent_bind.to_string(), "127.0.0.1:8003");
        assert_eq!(
            cli.stack.data.key_file(),
            PathBuf::from("data/devstack/idp-signing-key.pem")
        );
    }
}
