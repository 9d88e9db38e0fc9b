//! The `gateway` command line: its subcommands and settings (each a flag with an environment
//! variable fallback), and what each subcommand does, as functions the binary calls and tests
//! can call too.

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use shared::config::Secret;

use crate::{
    Config, Error, apim,
    limits::{OnFailure, QuotaStore, RedisUrl},
};

/// The platform's edge: routes, tenant allow-lists and rate limits from one TOML file, enforced
/// locally and rendered as Azure API Management policy for production.
#[derive(Debug, Parser)]
#[command(name = "gateway", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
// `run`'s settings outweigh `render-apim`'s; the value is parsed once, at start.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Write the Azure API Management policy of each route, `<route name>.policy.xml`.
    RenderApim(RenderApimArgs),
    /// Validate the configuration, print its routes, and run the proxy on `listen` until Ctrl-C
    /// or SIGTERM (exit status 1 for an invalid configuration or an unreachable issuer).
    Run(RunArgs),
}

/// The configuration file every subcommand reads.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// The gateway configuration (TOML).
    #[arg(long, env = "GATEWAY_CONFIG")]
    pub config: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct RenderApimArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Folder to write the policies into, created if missing [default: `policies` beside the
    /// configuration file, so `--config apim/gateway.toml` writes `apim/policies/`].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Threads serving connections [default: one per CPU]. A gateway sharing a small machine
    /// with its backends may do better with fewer: every thread it wakes is a context switch
    /// the backends pay for.
    #[arg(long, env = "GATEWAY_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub worker_threads: Option<u16>,
    /// Keep the routes' per-tenant quotas (`rate_limit_per_minute`) in this Redis, so that every
    /// gateway replica given the same URL admits one quota together:
    /// `redis://[[user]:password@]host[:port][/db]`, `rediss://` for TLS (the system's CA
    /// store). Needs Redis 5 or later. Unset: each gateway counts on its own.
    #[arg(
        long,
        env = "RATE_LIMIT_REDIS_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub rate_limit_redis_url: Option<Secret>,
    /// What a limited route does while that Redis does not answer (each call waits for it 250 ms
    /// at most): `open` admits the call uncounted (authentication and the tenant allow-list
    /// still apply), `closed` refuses it with 503 and `Retry-After`.
    #[arg(
        long,
        env = "RATE_LIMIT_REDIS_FAILURE",
        value_enum,
        default_value_t = OnFailure::Open
    )]
    pub rate_limit_redis_failure: OnFailure,
    /// Host names other than the loopback that the issuer (`auth.issuer`) and its keys may be
    /// reached at over plain http://, comma separated: only hosts of a private network nobody
    /// else is on (a compose network's `idp`). Warned about at start. None by default.
    #[arg(long, env = "ALLOW_PLAIN_HTTP_HOSTS", value_delimiter = ',')]
    pub allow_plain_http_hosts: Vec<String>,
    #[command(flatten)]
    pub telemetry: shared::config::TelemetryArgs,
}

/// Names the Redis URL setting in errors, as a person may have given either.
const REDIS_URL_SETTING: &str = "--rate-limit-redis-url (RATE_LIMIT_REDIS_URL)";

impl RunArgs {
    /// Where the quotas are kept: in Redis when a URL is given (checked here, before any port
    /// is bound), else in the process.
    pub fn quota_store(&self) -> Result<QuotaStore, Error> {
        let Some(url) = &self.rate_limit_redis_url else {
            return Ok(QuotaStore::Local);
        };
        let url = RedisUrl::parse(url.expose()).map_err(|message| Error::InvalidSetting {
            setting: REDIS_URL_SETTING,
            message,
        })?;
        Ok(QuotaStore::Redis {
            url,
            on_failure: self.rate_limit_redis_failure,
        })
    }
}

impl RenderApimArgs {
    /// Where the policies go: `--out`, or `policies` beside the configuration file.
    pub fn out_dir(&self) -> PathBuf {
        self.out.clone().unwrap_or_else(|| {
            self.config
                .config
                .parent()
                .unwrap_or(Path::new(""))
                .join("policies")
        })
    }
}

/// `gateway render-apim`: validates the configuration, then writes one policy per route.
/// Returns the files written, in route order.
pub fn render_apim(args: &RenderApimArgs) -> Result<Vec<PathBuf>, Error> {
    let config = Config::load(&args.config.config)?;
    let out_dir = args.out_dir();
    std::fs::create_dir_all(&out_dir).map_err(|source| Error::Write {
        path: out_dir.clone(),
        source,
    })?;
    apim::render_all(&config)
        .into_iter()
        .map(|(name, xml)| {
            let path = out_dir.join(name);
            std::fs::write(&path, xml).map_err(|source| Error::Write {
                path: path.clone(),
                source,
            })?;
            Ok(path)
        })
        .collect()
}

/// One line saying what the gateway would serve: address, and each route's prefix, upstreams,
/// tenant count and rate limit.
pub fn summary(config: &Config) -> String {
    let routes: Vec<String> = config
        .routes
        .iter()
        .map(|route| {
            let limit = route.rate_limit_per_minute.map_or_else(
                || "no rate limit".to_owned(),
                |n| format!("{n}/min per tenant"),
            );
            format!(
                "{} {} -> {} ({} tenants, {limit})",
                route.name,
                route.prefix,
                route.upstreams.join(", "),
                route.allowed_tenants.len()
            )
        })
        .collect();
    format!(
        "{} routes on {} ({}): {}",
        config.routes.len(),
        config.listen,
        config.public_base_url,
        routes.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_help_states_the_redis_timeout() {
        // `--rate-limit-redis-failure` says how long a call waits for Redis, in words.
        assert_eq!(
            crate::limits::REDIS_TIMEOUT,
            std::time::Duration::from_millis(250)
        );
    }

    #[test]
    fn policies_go_beside_the_configuration_by_default() {
        let args = |out: Option<&str>| RenderApimArgs {
            config: ConfigArgs {
                config: PathBuf::from("apim/gateway.toml"),
            },
            out: out.map(PathBuf::from),
        };
        assert_eq!(args(None).out_dir(), PathBuf::from("apim/policies"));
        assert_eq!(args(Some("/tmp/x")).out_dir(), PathBuf::from("/tmp/x"));
        let bare = RenderApimArgs {
            config: ConfigArgs {
                config: PathBuf::from("gateway.toml"),
            },
            out: None,
        };
        assert_eq!(bare.out_dir(), PathBuf::from("policies"));
    }
}
