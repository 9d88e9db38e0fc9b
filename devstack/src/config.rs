//! The `devstack` command line: subcommands and their settings, each a flag with an
//! environment-variable fallback, and how they become an identity provider configuration.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{ArgAction, Args, Parser, Subcommand};
use shared::config::{TelemetryArgs, boolish};

use serde_json::json;

use crate::{
    Error,
    idp::{self, Idp, IdpConfig, KeySource, TokenSpec, defaults},
};

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

    /// The resource (`aud`) the token is for: the resource identifier of the MCP server that
    /// will accept it, by default the Contoso route of the local gateway.
    #[arg(
        long,
        visible_alias = "audience",
        env = "MCP_API_AUDIENCE",
        default_value = defaults::CONTOSO_ROUTE_RESOURCE
    )]
    pub resource: String,

    /// Mint a delegated token, as the token exchange issues: `act: {"sub": CLIENT_ID}` and
    /// `azp` CLIENT_ID. Repeat for a delegation chain, the current actor first (each next one
    /// nested in the previous `act`).
    #[arg(long, value_name = "CLIENT_ID")]
    pub act: Vec<String>,

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
        let audiences = vec![self.resource.clone()];
        IdpConfig {
            issuer: Some(self.issuer.clone()),
            clients: defaults::clients_for(&audiences),
            audiences,
            key: KeySource::File(self.data.key_file()),
            ..IdpConfig::default()
        }
    }

    /// What the token says: tenant (resolved by `idp`), roles, subject, resource, lifetime,
    /// and the delegation chain of `--act`.
    pub fn token_spec(&self, idp: &Idp) -> Result<TokenSpec, Error> {
        let mut spec = TokenSpec {
            audience: Some(self.resource.clone()),
            lifetime: self.lifetime(),
            ..TokenSpec::new(&idp.tenant_id(&self.tenant)?, &self.roles, &self.sub)
        };
        // Built innermost first: the last actor named is the earliest in the chain.
        let act = self.act.iter().rev().fold(None, |inner, actor| {
            let mut act = json!({ "sub": actor });
            if let Some(inner) = inner {
                act["act"] = inner;
            }
            Some(act)
        });
        if let Some(act) = act {
            spec.client_id = self.act.first().cloned();
            spec.extra.insert("act".to_owned(), act);
        }
        Ok(spec)
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

    /// Allow binding the stack's listeners on addresses other machines can reach. Off by
    /// default: the development IdP's client secrets are public, so anyone who reaches it gets
    /// tokens for every service. Only on a trusted network.
    #[arg(long, env = "ALLOW_OPEN_NETWORK", default_value_t = false, action = ArgAction::Set, value_parser = boolish())]
    pub allow_open_network: bool,

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

    /// Audiences (resources) the token endpoint issues for, comma separated; every
    /// development client is registered for all of them, the first being their default. So is
    /// the agent client (`contoso-agent`), which may also exchange a token for any of them for
    /// one for any of them (it serves them all, to try things out).
    #[arg(long, env = "MCP_API_AUDIENCE", value_delimiter = ',', default_value = defaults::AUDIENCE)]
    pub audience: Vec<String>,

    /// Serve `POST /rotate` and `POST /retire` (key rotation for tests).
    #[arg(long, env = "IDP_ALLOW_ROTATION", default_value_t = false, action = ArgAction::Set, value_parser = boolish())]
    pub allow_rotation: bool,

    /// Allow binding an address other machines can reach. Off by default: the development
    /// clients' secrets are public, so anyone who reaches the IdP gets tokens. Only on a
    /// trusted network.
    #[arg(long, env = "ALLOW_OPEN_NETWORK", default_value_t = false, action = ArgAction::Set, value_parser = boolish())]
    pub allow_open_network: bool,

    #[command(flatten)]
    pub data: DataArgs,

    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

/// Refuses a development listener (named by `setting`) on `addr` unless it is a loopback address
/// or `allow_open_network` (`ALLOW_OPEN_NETWORK`) says the network is trusted; warns loudly
/// when it is allowed. Called before anything binds.
pub fn check_bind(setting: &str, addr: SocketAddr, allow_open_network: bool) -> Result<(), Error> {
    if addr.ip().is_loopback() {
        return Ok(());
    }
    if !allow_open_network {
        return Err(Error::InvalidConfig(format!(
            "{setting}={addr} is not a loopback address, and the development identity \
             provider's client secrets are public: anyone who can reach the stack could get \
             tokens for it. Bind 127.0.0.1, or set ALLOW_OPEN_NETWORK=true \
             (--allow-open-network true) on a trusted network"
        )));
    }
    tracing::warn!(
        setting,
        %addr,
        "ALLOW_OPEN_NETWORK=true: a development listener is reachable from the network; the \
         identity provider hands tokens to anyone who knows its published client secrets. \
         Trust its issuer only in development!"
    );
    Ok(())
}

impl StackArgs {
    /// [`check_bind`] for every listener of the stack.
    pub fn check_exposure(&self) -> Result<(), Error> {
        for (setting, addr) in [
            ("IDP_BIND_ADDR", self.idp_bind),
            ("TOOLS_BIND_ADDR", self.tools_bind),
            ("FABRIKAM_BIND_ADDR", self.fabrikam_bind),
            ("AGENT_BIND_ADDR", self.agent_bind),
            ("GATEWAY_BIND_ADDR", self.gateway_bind),
        ] {
            check_bind(setting, addr, self.allow_open_network)?;
        }
        Ok(())
    }
}

impl IdpArgs {
    /// [`check_bind`] for the identity provider's address.
    pub fn check_exposure(&self) -> Result<(), Error> {
        check_bind("IDP_BIND_ADDR", self.bind, self.allow_open_network)
    }

    pub fn idp_config(&self) -> IdpConfig {
        let mut clients = defaults::clients_for(&self.audience);
        clients.push(defaults::agent_client(
            defaults::AGENT_CLIENT_ID,
            &self.audience,
            &self.audience,
        ));
        IdpConfig {
            issuer: self.issuer.clone(),
            audiences: self.audience.clone(),
            clients,
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

    fn token_args(args: &[&str]) -> TokenArgs {
        let cli =
            Cli::try_parse_from([&["devstack", "token", "--tenant", "contoso"], args].concat())
                .expect("parses");
        let Some(Command::Token(args)) = cli.command else {
            panic!("token subcommand");
        };
        args
    }

    #[test]
    fn token_resources_and_delegation_chains() {
        // Not the environment's MCP_API_AUDIENCE: these tests set the flag or read the default
        // only when it is unset.
        if std::env::var_os("MCP_API_AUDIENCE").is_none() {
            assert_eq!(token_args(&[]).resource, defaults::CONTOSO_ROUTE_RESOURCE);
        }
        assert_eq!(
            token_args(&["--resource", "http://x/mcp"]).resource,
            "http://x/mcp"
        );
        assert_eq!(token_args(&["--audience", "api://y"]).resource, "api://y");

        let idp = Idp::new(IdpConfig::default()).expect("idp");
        let spec = token_args(&[]).token_spec(&idp).expect("spec");
        assert!(spec.extra.is_empty());
        assert_eq!(spec.client_id, None);

        let args = token_args(&["--act", "contoso-agent", "--act", "other-agent"]);
        let spec = args.token_spec(&idp).expect("spec");
        assert_eq!(spec.client_id.as_deref(), Some("contoso-agent"));
        assert_eq!(
            spec.extra["act"],
            json!({"sub": "contoso-agent", "act": {"sub": "other-agent"}})
        );
        assert_eq!(spec.tenant, defaults::CONTOSO);
    }

    #[test]
    fn the_idp_command_registers_its_clients_for_its_audiences() {
        let cli =
            Cli::try_parse_from(["devstack", "idp", "--audience", "http://a/mcp,http://b/mcp"])
                .expect("parses");
        let Some(Command::Idp(args)) = cli.command else {
            panic!("idp subcommand");
        };
        let config = args.idp_config();
        assert_eq!(config.audiences, ["http://a/mcp", "http://b/mcp"]);
        assert!(
            config
                .clients
                .iter()
                .all(|c| c.resources == config.audiences)
        );
        let agents: Vec<_> = config
            .clients
            .iter()
            .filter(|c| !c.subject_audiences.is_empty())
            .collect();
        assert_eq!(agents.len(), 1, "only the agent client may exchange");
        assert_eq!(agents[0].client_id, defaults::AGENT_CLIENT_ID);
        assert_eq!(
            agents[0].subject_audiences, config.audiences,
            "it serves every audience"
        );
        // A generated key: the configured key file is a path relative to the test's folder.
        Idp::new(IdpConfig {
            key: KeySource::Generate,
            ..config
        })
        .expect("a valid IdP");
    }

    #[test]
    fn a_listener_off_loopback_needs_allow_open_network() {
        let open: SocketAddr = "0.0.0.0:0".parse().expect("address");
        let error = check_bind("IDP_BIND_ADDR", open, false).expect_err("refused");
        let message = error.to_string();
        assert!(message.contains("IDP_BIND_ADDR=0.0.0.0:0"), "{message}");
        assert!(message.contains("ALLOW_OPEN_NETWORK=true"), "{message}");
        check_bind("IDP_BIND_ADDR", open, true).expect("allowed");
        for loopback in ["127.0.0.1:0", "127.8.9.10:1", "[::1]:0"] {
            check_bind("X", loopback.parse().expect("address"), false).expect(loopback);
        }

        let cli =
            Cli::try_parse_from(["devstack", "--gateway-bind", "0.0.0.0:8080"]).expect("parses");
        let message = cli.stack.check_exposure().expect_err("refused").to_string();
        assert!(message.contains("GATEWAY_BIND_ADDR"), "{message}");
        let cli = Cli::try_parse_from([
            "devstack",
            "--gateway-bind",
            "0.0.0.0:8080",
            "--allow-open-network",
            "true",
        ])
        .expect("parses");
        cli.stack.check_exposure().expect("allowed");
        Cli::try_parse_from(["devstack"])
            .expect("parses")
            .stack
            .check_exposure()
            .expect("the defaults are loopback");
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
