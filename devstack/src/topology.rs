//! The multi-tenant topology `devstack` runs, as data: the two tools-service backends, the
//! tenants each admits, the data each serves, and the configurations of the backends and of the
//! gateway in front of them.
//!
//! ```text
//!                      ┌ /contoso-mcp   ─► Contoso tools service   (contoso, northwind)
//! client ─► gateway ───┼ /fabrikam-mcp  ─► Fabrikam tools service  (fabrikam, northwind)
//!                      └ /contoso-agent ─► Contoso experts (agent service) ─► Contoso tools
//! ```
//!
//! `woodgrove` gets valid tokens but is on no list: it shows the 403 of a tenant nobody
//! onboarded. Each backend's allow-list is written once here and used twice, by the gateway
//! route and by the backend itself (`ALLOWED_TENANTS`), so a request that slips past the gateway
//! (someone dialling a backend directly) meets the same rule. Nothing here binds a port, so
//! the topology is tested without one.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::Path,
};

use anyhow::Context;
use gateway::config::{RawAuth, RawConfig, RawRoute};

use crate::idp::defaults;

/// One tools-service behind the gateway.
#[derive(Debug)]
pub struct Backend {
    /// The gateway route's name, and the stem of the database file in the data folder.
    pub name: &'static str,
    /// The company it serves, for people reading the banner.
    pub label: &'static str,
    /// The gateway path prefix: `<gateway>/<prefix>/mcp` reaches this backend's `/mcp`.
    pub prefix: &'static str,
    /// Tenant ids admitted, by the gateway route and by the backend itself.
    pub tenants: &'static [&'static str],
    /// `SEED_RANDOM` of its database: backends seeded differently serve different random
    /// customers under the same ids, so a caller can tell them apart through the gateway.
    pub rng_seed: u64,
    /// `SEED_CUSTOMER_COUNT` of its database.
    pub customers: u32,
    /// The setting naming its bind address, for errors about that address.
    pub bind_setting: &'static str,
}

/// The tools service as it runs on its own (default seed and count), so what people learned
/// from a standalone `tools-service` holds here.
pub const CONTOSO: Backend = Backend {
    name: "contoso",
    label: "Contoso",
    prefix: "/contoso-mcp",
    tenants: &[defaults::CONTOSO, defaults::NORTHWIND],
    rng_seed: tools_service::seed::DEFAULT_RNG_SEED,
    customers: 250,
    bind_setting: "TOOLS_BIND_ADDR",
};

/// A second company: other random customers, fewer of them, and the same nine scenario customers.
pub const FABRIKAM: Backend = Backend {
    name: "fabrikam",
    label: "Fabrikam",
    prefix: "/fabrikam-mcp",
    tenants: &[defaults::FABRIKAM, defaults::NORTHWIND],
    rng_seed: 0xFAB1CA,
    customers: 120,
    bind_setting: "FABRIKAM_BIND_ADDR",
};

/// Every backend, in the order routes are configured and printed.
pub const BACKENDS: [&Backend; 2] = [&CONTOSO, &FABRIKAM];

/// The expert agents of one company behind the gateway: an agent service calling that
/// company's tools service with each caller's own token, so it admits the same tenants.
#[derive(Debug)]
pub struct Agents {
    /// The gateway route's name, and the stem of its memory database in the data folder.
    pub name: &'static str,
    pub prefix: &'static str,
    /// The tools service the experts use.
    pub tools: &'static Backend,
    /// The setting naming its bind address.
    pub bind_setting: &'static str,
}

pub const CONTOSO_AGENTS: Agents = Agents {
    name: "contoso-agent",
    prefix: "/contoso-agent",
    tools: &CONTOSO,
    bind_setting: "AGENT_BIND_ADDR",
};

impl Agents {
    /// The audiences the agent service, listening on `addr` behind the gateway at
    /// `gateway_base_url`, accepts.
    pub fn audiences(&self, gateway_base_url: &str, addr: SocketAddr) -> Vec<String> {
        audiences(gateway_base_url, self.prefix, addr)
    }

    pub fn tenants(&self) -> &'static [&'static str] {
        self.tools.tenants
    }

    pub fn db_file(&self) -> String {
        format!("{}.db", self.name)
    }

    /// The agent-service configuration on `addr`, its memory at `db_path`, accepting tokens of
    /// `issuer` for `audiences` (its route's resource and its own), and calling the tools service
    /// at `tools_mcp_url` directly (inside the trust boundary) with each caller's token
    /// exchanged, as [`AGENT_CLIENT`], for one issued to the tools service's own resource, which
    /// is that URL. The model comes from the environment (`AZURE_OPENAI_*`, `OPENAI_*`); without
    /// one the offline planner answers.
    pub fn service_config(
        &self,
        addr: SocketAddr,
        db_path: &Path,
        issuer: &str,
        audiences: &[String],
        tools_mcp_url: &str,
    ) -> anyhow::Result<agent_service::ValidConfig> {
        let args = service_flags(addr, db_path, issuer, audiences, self.tenants()).chain(
            [
                ("--mcp-server-uri", tools_mcp_url),
                ("--mcp-server-audience", tools_mcp_url),
                ("--token-exchange", "rfc8693"),
                ("--agent-client-id", AGENT_CLIENT),
                ("--agent-client-secret", AGENT_CLIENT_SECRET),
            ]
            .into_iter()
            .flat_map(|(flag, value)| [flag.to_owned(), value.to_owned()]),
        );
        agent_service::Config::try_parse_from_args(args)
            .map_err(anyhow::Error::new)
            .and_then(|config| Ok(config.into_valid()?))
            .context("configuring the Contoso agent service")
    }
}

/// The agent service's client at the identity provider, which exchanges callers' tokens; the
/// tools service it calls trusts it as an actor.
pub const AGENT_CLIENT: &str = defaults::AGENT_CLIENT_ID;
/// Its secret, public like every devstack secret (see [`crate::idp::defaults`]).
pub const AGENT_CLIENT_SECRET: &str = "contoso-agent-secret";

/// The resource identifier of an MCP endpoint listening on `addr`, reached directly: its URL.
pub fn direct_resource(addr: SocketAddr) -> String {
    format!("http://{}/mcp", dialable(addr))
}

/// Calls per tenant per minute on each route: far above what a person at an MCP client does, low
/// enough that a runaway loop meets a 429 locally as it would in API Management.
pub const RATE_LIMIT_PER_MINUTE: u32 = 600;

/// Between two health probes of a backend. The backends run in this process and go down only
/// with it, and each probe is a log line at the default level: probing every few seconds would
/// bury the log people read in noise.
pub const HEALTH_CHECK_INTERVAL_MS: u64 = 30_000;

/// The audiences a service accepts: the resource of its gateway route (`<gateway><prefix>/mcp`,
/// what clients get tokens for) and its own URL (`<addr>/mcp`, what the agents' exchanged
/// tokens name when they call it directly).
fn audiences(gateway_base_url: &str, prefix: &str, addr: SocketAddr) -> Vec<String> {
    vec![
        gateway::routing::resource_url(gateway_base_url, prefix),
        direct_resource(addr),
    ]
}

impl Backend {
    /// The audiences this backend, listening on `addr` behind the gateway at
    /// `gateway_base_url`, accepts.
    pub fn audiences(&self, gateway_base_url: &str, addr: SocketAddr) -> Vec<String> {
        audiences(gateway_base_url, self.prefix, addr)
    }

    /// Whether tokens of tenant `tid` reach this backend.
    pub fn admits(&self, tid: &str) -> bool {
        self.tenants.contains(&tid)
    }

    /// Its database file's name in the data folder.
    pub fn db_file(&self) -> String {
        format!("{}.db", self.name)
    }

    /// The tools-service configuration of this backend on `addr` (the address its listener
    /// got), its database at `db_path`, accepting tokens of `issuer` for `audiences` (its
    /// route's resource and its own), and delegated tokens of the agents in `trusted_actors`.
    pub fn service_config(
        &self,
        addr: SocketAddr,
        db_path: &Path,
        issuer: &str,
        audiences: &[String],
        trusted_actors: &[&str],
    ) -> anyhow::Result<tools_service::ValidConfig> {
        let args = service_flags(addr, db_path, issuer, audiences, self.tenants).chain([
            "--trusted-actors".to_owned(),
            trusted_actors.join(","),
            "--seed-random".to_owned(),
            self.rng_seed.to_string(),
            "--seed-customer-count".to_owned(),
            self.customers.to_string(),
        ]);
        tools_service::Config::try_parse_from_args(args)
            .map_err(anyhow::Error::new)
            .and_then(|config| Ok(config.into_valid()?))
            .with_context(|| format!("configuring the {} tools service", self.label))
    }
}

/// The flags every service of the stack gets: where it listens and is reached, its database,
/// and verified tokens of `issuer` for `tenants` only. Everything that must differ between the
/// services, or must hold whatever the environment says, is a flag: a service reads its
/// environment for the flags not given, and one process cannot give two services two `DB_PATH`s.
fn service_flags(
    addr: SocketAddr,
    db_path: &Path,
    issuer: &str,
    audiences: &[String],
    tenants: &[&str],
) -> impl Iterator<Item = String> {
    [
        ("--bind-addr", addr.to_string()),
        ("--public-base-url", format!("http://{}", dialable(addr))),
        ("--db-path", db_path.display().to_string()),
        ("--auth-issuer", issuer.to_owned()),
        ("--mcp-api-audience", audiences.join(",")),
        ("--allowed-tenants", tenants.join(",")),
        // Whatever the environment says, devstack runs with verified tokens.
        ("--disable-auth", "false".to_owned()),
        ("--use-passthrough-auth", "false".to_owned()),
    ]
    .into_iter()
    .flat_map(|(flag, value)| [flag.to_owned(), value])
}

/// The gateway listening on `listen` (the address its listener got) in front of `upstreams` (each
/// backend with the address its listener got), accepting tokens of `issuer`.
///
/// Built as the raw configuration a TOML file would give and validated like one, so devstack's
/// gateway passes the same checks as `apim/gateway.toml`.
pub fn gateway_config(
    listen: SocketAddr,
    issuer: &str,
    upstreams: &[(&Backend, SocketAddr)],
    agents: &[(&Agents, SocketAddr)],
) -> Result<gateway::Config, gateway::ConfigError> {
    // The address clients reach: the metadata, `WWW-Authenticate` and the audiences name it.
    let public_base_url = format!("http://{}", dialable(listen));
    let route = |name: &str, prefix: &str, addr: SocketAddr, tenants: &[&str]| RawRoute {
        name: Some(name.to_owned()),
        prefix: Some(prefix.to_owned()),
        upstreams: vec![dialable(addr).to_string()],
        allowed_tenants: tenants.iter().map(|t| (*t).to_owned()).collect(),
        // Written out, as apim/gateway.toml does: a token is good on the route it was issued
        // for (its resource URL, RFC 8707), and on no other.
        audiences: Some(vec![gateway::routing::resource_url(
            &public_base_url,
            prefix,
        )]),
        rate_limit_per_minute: Some(RATE_LIMIT_PER_MINUTE),
        health_check_interval_ms: Some(HEALTH_CHECK_INTERVAL_MS),
        ..RawRoute::default()
    };
    let routes = upstreams
        .iter()
        .map(|(backend, addr)| route(backend.name, backend.prefix, *addr, backend.tenants))
        .chain(
            agents
                .iter()
                .map(|(agents, addr)| route(agents.name, agents.prefix, *addr, agents.tenants())),
        )
        .collect();
    gateway::Config::validate(RawConfig {
        listen: Some(listen.to_string()),
        public_base_url: Some(public_base_url),
        auth: Some(RawAuth {
            issuer: Some(issuer.to_owned()),
            leeway_secs: None,
        }),
        server: None,
        routes,
    })
}

/// The address to dial for a listener bound to `addr`: the loopback address of the same family
/// when it is bound to every interface (`0.0.0.0`, `::`), which is no address to connect to or
/// to publish as a URL.
pub fn dialable(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("socket address")
    }

    fn local_gateway() -> gateway::Config {
        gateway_config(
            addr("127.0.0.1:8080"),
            defaults::ISSUER,
            &[
                (&CONTOSO, addr("127.0.0.1:8001")),
                (&FABRIKAM, addr("127.0.0.1:8002")),
            ],
            &[(&CONTOSO_AGENTS, addr("127.0.0.1:8003"))],
        )
        .expect("the generated gateway configuration is valid")
    }

    #[test]
    fn each_tenant_reaches_the_routes_the_issue_asks_for() {
        let gateway = local_gateway();
        let reach = |tid: &str| -> Vec<&str> {
            gateway
                .routes
                .iter()
                .filter(|r| r.admits(tid))
                .map(|r| r.name.as_str())
                .collect()
        };
        assert_eq!(reach(defaults::CONTOSO), ["contoso", "contoso-agent"]);
        assert_eq!(reach(defaults::FABRIKAM), ["fabrikam"]);
        assert_eq!(
            reach(defaults::NORTHWIND),
            ["contoso", "fabrikam", "contoso-agent"]
        );
        assert!(
            reach(defaults::WOODGROVE).is_empty(),
            "woodgrove reaches nothing"
        );
        for (route, backend) in gateway.routes.iter().zip(BACKENDS) {
            assert_eq!(
                route.allowed_tenants, backend.tenants,
                "one list, used twice"
            );
        }
    }

    /// `apim/gateway.toml` is what API Management is rendered from; devstack must enforce the
    /// same routes, tenants and limits, or the laptop would test a different product.
    #[test]
    fn devstack_enforces_what_apim_gateway_toml_renders() {
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../apim/gateway.toml");
        let apim = gateway::Config::load(std::path::Path::new(file)).expect("apim/gateway.toml");
        let local = local_gateway();
        assert_eq!(local.listen, apim.listen);
        assert_eq!(local.public_base_url, apim.public_base_url);
        assert_eq!(local.auth, apim.auth);
        assert_eq!(local.routes.len(), apim.routes.len());
        for (ours, theirs) in local.routes.iter().zip(&apim.routes) {
            assert_eq!(
                (
                    &ours.name,
                    &ours.prefix,
                    &ours.upstreams,
                    &ours.allowed_tenants,
                    &ours.audiences
                ),
                (
                    &theirs.name,
                    &theirs.prefix,
                    &theirs.upstreams,
                    &theirs.allowed_tenants,
                    &theirs.audiences
                ),
            );
            assert_eq!(ours.rate_limit_per_minute, theirs.rate_limit_per_minute);
            assert_eq!(ours.max_body_bytes, theirs.max_body_bytes);
            assert_eq!(ours.read_timeout, theirs.read_timeout);
        }
    }

    #[test]
    fn the_gateway_configuration_matches_the_bound_addresses() {
        let gateway = local_gateway();
        assert_eq!(gateway.public_base_url, "http://127.0.0.1:8080");
        assert_eq!(gateway.auth.issuer, defaults::ISSUER);
        let contoso = &gateway.routes[0];
        for route in &gateway.routes {
            assert_eq!(
                route.audiences,
                [gateway.resource_url(route)],
                "{}: tokens for this route only",
                route.name
            );
        }
        assert_eq!(contoso.prefix, "/contoso-mcp");
        assert_eq!(contoso.upstreams, ["127.0.0.1:8001"]);
        assert_eq!(
            contoso.rate_limit_per_minute.map(|n| n.get()),
            Some(RATE_LIMIT_PER_MINUTE)
        );
        assert_eq!(
            gateway.resource_url(&gateway.routes[1]),
            "http://127.0.0.1:8080/fabrikam-mcp/mcp"
        );

        let everywhere = gateway_config(
            addr("0.0.0.0:8080"),
            defaults::ISSUER,
            &[(&CONTOSO, addr("0.0.0.0:8001"))],
            &[],
        )
        .expect("valid");
        assert_eq!(everywhere.public_base_url, "http://127.0.0.1:8080");
        assert_eq!(everywhere.routes[0].upstreams, ["127.0.0.1:8001"]);
        assert_eq!(
            everywhere.routes[0].audiences,
            ["http://127.0.0.1:8080/contoso-mcp/mcp"]
        );
    }

    #[test]
    fn backends_check_the_same_tenants_and_seed_different_data() {
        let dir = Path::new("/tmp/devstack-topology");
        let configs: Vec<_> = BACKENDS
            .iter()
            .map(|backend| {
                let audiences = backend.audiences("http://127.0.0.1:8080", addr("127.0.0.1:8001"));
                backend
                    .service_config(
                        addr("127.0.0.1:0"),
                        &dir.join(backend.db_file()),
                        defaults::ISSUER,
                        &audiences,
                        &[AGENT_CLIENT],
                    )
                    .expect("valid tools-service configuration")
            })
            .collect();
        for (valid, backend) in configs.iter().zip(BACKENDS) {
            assert_eq!(
                valid.config.auth.mcp_api_audience,
                [
                    format!("http://127.0.0.1:8080{}/mcp", backend.prefix),
                    "http://127.0.0.1:8001/mcp".to_owned()
                ],
                "its route's resource and its own, nothing else"
            );
            assert_eq!(valid.config.auth.trusted_actors, [AGENT_CLIENT]);
            assert_eq!(valid.config.auth.allowed_tenants, backend.tenants);
            assert_eq!(valid.config.seed_random, backend.rng_seed);
            assert_eq!(valid.config.seed_customer_count, backend.customers);
            assert_eq!(valid.config.db_path, dir.join(backend.db_file()));
            assert!(!valid.config.auth.disable_auth);
        }
        assert_ne!(configs[0].config.seed_random, configs[1].config.seed_random);
        assert_ne!(configs[0].config.db_path, configs[1].config.db_path);
    }

    #[test]
    fn unspecified_addresses_are_dialled_on_loopback() {
        assert_eq!(dialable(addr("0.0.0.0:1")), addr("127.0.0.1:1"));
        assert_eq!(dialable(addr("[::]:1")), addr("[::1]:1"));
        assert_eq!(dialable(addr("192.0.2.7:1")), addr("192.0.2.7:1"));
    }
}
