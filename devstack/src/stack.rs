//! `devstack` with no arguments: the whole local platform with authentication on.
//!
//! Starts, in this process, the development identity provider, the two tools-service backends
//! of [`crate::topology`], the Contoso agent service (expert agents calling the Contoso tools)
//! and the gateway in front of them, every service verifying tokens of
//! that provider exactly as it would verify Entra ID's. It binds every port before starting
//! anything, waits until each backend is ready and the gateway answers, and returns the URLs and
//! a ready-to-paste token per tenant and per Contoso role.

use std::{
    future::Future,
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, bail};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::{
    config::StackArgs,
    idp::{self, IdpConfig, KeySource, TokenSpec, defaults},
    topology::{self, Agents, Backend},
};

/// The Contoso users whose tokens are printed: one per role, and one with every role.
pub const SAMPLE_USERS: [(&str, &[&str]); 4] = [
    ("query-user", &["query"]),
    ("billing-user", &["billing"]),
    ("security-user", &["security"]),
    ("admin", &["query", "billing", "security"]),
];

/// The user whose token is printed for each tenant other than Contoso: enough to see which
/// routes the tenant reaches, without handing out write access nobody asked for.
pub const OTHER_TENANT_USER: (&str, &[&str]) = ("query-user", &["query"]);

/// How long a service may take to become ready (seeding a fresh database included).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running stack. Dropping it does not stop it; call [`RunningStack::stop`].
#[derive(Debug)]
pub struct RunningStack {
    /// The identity provider (its key, tenants and clients), to mint more tokens.
    pub idp: idp::Idp,
    /// The identity provider's issuer, which is also its base URL.
    pub issuer: String,
    /// Where clients reach the gateway, e.g. `http://127.0.0.1:8080`.
    pub gateway_url: String,
    /// One per backend, in [`topology::BACKENDS`] order.
    pub backends: Vec<RunningBackend>,
    pub agents: RunningAgents,
    pub tokens: Vec<SampleToken>,
    stop: CancellationToken,
    idp_task: JoinHandle<Result<(), crate::Error>>,
    backend_tasks: Vec<JoinHandle<anyhow::Result<()>>>,
    agent_task: JoinHandle<anyhow::Result<()>>,
    gateway_task: JoinHandle<anyhow::Result<()>>,
}

/// The agent service as started.
#[derive(Debug)]
pub struct RunningAgents {
    pub agents: &'static Agents,
    /// Its MCP endpoint through the gateway: what clients use.
    pub mcp_url: String,
    /// Its own MCP endpoint, for debugging.
    pub direct_mcp_url: String,
    pub db_path: PathBuf,
    /// The model its experts use, or that the offline planner answers.
    pub model: String,
}

/// A backend as started: where to reach it through the gateway, and directly.
#[derive(Debug)]
pub struct RunningBackend {
    pub backend: &'static Backend,
    /// Its MCP endpoint through the gateway: what clients use.
    pub mcp_url: String,
    /// Its own MCP endpoint, past the gateway: for debugging a backend, with only the backend's
    /// own checks in the way.
    pub direct_mcp_url: String,
    pub db_path: PathBuf,
}

/// A token printed at start.
#[derive(Debug, Clone)]
pub struct SampleToken {
    /// The tenant's name (`contoso`); its tid is in the token.
    pub tenant: String,
    pub subject: String,
    pub roles: Vec<String>,
    /// The gateway route it is for (`contoso`, `contoso-agent`, ...): its audience is that
    /// route's resource, and no other route or service accepts it.
    pub route: &'static str,
    pub token: String,
}

impl RunningStack {
    /// The running backend called `name` (`contoso`, `fabrikam`).
    pub fn backend(&self, name: &str) -> Option<&RunningBackend> {
        self.backends.iter().find(|b| b.backend.name == name)
    }

    /// The first sample token of the tenant called `tenant` for the route called `route`.
    pub fn token_of(&self, tenant: &str, route: &str) -> Option<&str> {
        self.tokens
            .iter()
            .find(|t| t.tenant == tenant && t.route == route)
            .map(|t| t.token.as_str())
    }

    /// What `devstack` prints for its user.
    pub fn banner(&self) -> String {
        crate::banner::Banner(self).to_string()
    }

    /// Stops every service and waits for them.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.gateway_task.await.context("gateway task")??;
        self.agent_task.await.context("agent service task")??;
        for (task, backend) in self.backend_tasks.into_iter().zip(&self.backends) {
            task.await
                .with_context(|| format!("{} tools service task", backend.backend.label))??;
        }
        self.idp_task.await.context("identity provider task")??;
        Ok(())
    }
}

/// Starts the stack and returns once every backend answers `/readyz` and the gateway answers
/// each route's metadata. On an error, whatever had started is stopped.
pub async fn start(args: StackArgs) -> anyhow::Result<RunningStack> {
    // No listener off loopback unless ALLOW_OPEN_NETWORK: the IdP's client secrets are public.
    args.check_exposure()?;
    // Every port first, so a taken one fails the start before anything runs, naming its setting.
    let idp_listener = bind(args.idp_bind, "IDP_BIND_ADDR", "the identity provider").await?;
    let backend_binds = [
        (&topology::CONTOSO, args.tools_bind),
        (&topology::FABRIKAM, args.fabrikam_bind),
    ];
    let mut backend_listeners = Vec::with_capacity(backend_binds.len());
    for (backend, addr) in backend_binds {
        let what = format!("the {} tools service", backend.label);
        let listener = bind(addr, backend.bind_setting, &what).await?;
        backend_listeners.push((backend, local_addr(&listener)?, listener));
    }
    let agents = &topology::CONTOSO_AGENTS;
    let agent_listener = bind(args.agent_bind, agents.bind_setting, "the agent service").await?;
    let agent_addr = local_addr(&agent_listener)?;
    let gateway_listener = bind(args.gateway_bind, "GATEWAY_BIND_ADDR", "the gateway").await?;

    // Then every configuration, so a bad one fails the start before anything runs too.
    let issuer = format!("http://{}", topology::dialable(local_addr(&idp_listener)?));
    let gateway_base = format!(
        "http://{}",
        topology::dialable(local_addr(&gateway_listener)?)
    );
    let tools_addr = backend_listeners
        .iter()
        .find(|(backend, ..)| std::ptr::eq(*backend, agents.tools))
        .map(|(_, addr, _)| *addr)
        .context("the agents' tools service is not in the topology")?;
    // The tools service's own URL: where the agents call it, and the audience of the tokens
    // they exchange their callers' tokens for.
    let tools_url = topology::direct_resource(tools_addr);
    let idp_config = identity_provider(&issuer, &args, &gateway_base, agent_addr, &tools_url);
    let idp = idp::Idp::new(idp_config.clone())?;
    let mut backends = Vec::with_capacity(backend_listeners.len());
    for (backend, addr, listener) in backend_listeners {
        let db_path = args.data.data_dir.join(backend.db_file());
        let trusted: &[&str] = if std::ptr::eq(backend, agents.tools) {
            &[topology::AGENT_CLIENT]
        } else {
            &[]
        };
        let audiences = backend.audiences(&gateway_base, addr);
        let config = backend.service_config(addr, &db_path, &issuer, &audiences, trusted)?;
        backends.push((backend, addr, db_path, config, listener));
    }
    let upstreams: Vec<(&Backend, SocketAddr)> = backends
        .iter()
        .map(|(backend, addr, ..)| (*backend, *addr))
        .collect();
    let agent_db = args.data.data_dir.join(agents.db_file());
    let agent_config = agents.service_config(
        agent_addr,
        &agent_db,
        &issuer,
        &agents.audiences(&gateway_base, agent_addr),
        &tools_url,
    )?;
    let agent_model = agent_config.model.describe();
    let gateway_config = topology::gateway_config(
        local_addr(&gateway_listener)?,
        &issuer,
        &upstreams,
        &[(agents, agent_addr)],
    )
    .context("the gateway configuration devstack generated")?;

    let stop = CancellationToken::new();
    // Until the stack is handed over, an early return stops whatever already runs.
    let stop_on_failure = stop.clone().drop_guard();
    let idp_task = tokio::spawn(idp::serve(idp_listener, idp_config, stop_signal(&stop)));

    let mut running = Vec::with_capacity(backends.len());
    let mut backend_tasks = Vec::with_capacity(backends.len());
    for (backend, addr, db_path, config, listener) in backends {
        backend_tasks.push(tokio::spawn(tools_service::run(
            config,
            listener,
            stop_signal(&stop),
        )));
        let base = format!("http://{}", topology::dialable(addr));
        running.push((backend, base, db_path));
    }
    for ((backend, base, _), task) in running.iter().zip(&mut backend_tasks) {
        let what = format!("the {} tools service", backend.label);
        wait_until_ok(&what, &format!("{base}/readyz"), task).await?;
    }

    // The agents once their tools service is ready.
    let mut agent_task = tokio::spawn(agent_service::run(
        agent_config,
        agent_listener,
        stop_signal(&stop),
    ));
    let agent_base = format!("http://{}", topology::dialable(agent_addr));
    wait_until_ok(
        "the agent service",
        &format!("{agent_base}/readyz"),
        &mut agent_task,
    )
    .await?;

    // After the backends are ready, so the gateway's first health checks find them serving.
    let gateway_url = gateway_config.public_base_url.clone();
    let route_urls: Vec<(String, String)> = gateway_config
        .routes
        .iter()
        .map(|r| {
            (
                gateway_config.resource_url(r),
                gateway_config.metadata_url(r),
            )
        })
        .collect();
    let agent_mcp_url = gateway_config
        .routes
        .iter()
        .find(|r| r.name == agents.name)
        .map(|r| gateway_config.resource_url(r))
        .context("the gateway has no route to the agents")?;
    let mut gateway_task = tokio::spawn(gateway::run(
        gateway_config,
        gateway_listener,
        stop_signal(&stop),
    ));
    for (_, metadata_url) in &route_urls {
        wait_until_ok("the gateway", metadata_url, &mut gateway_task).await?;
    }

    let agents = RunningAgents {
        agents,
        mcp_url: agent_mcp_url,
        direct_mcp_url: format!("{agent_base}/mcp"),
        db_path: agent_db,
        model: agent_model,
    };
    let backends = running
        .into_iter()
        .zip(route_urls)
        .map(|((backend, base, db_path), (mcp_url, _))| RunningBackend {
            backend,
            mcp_url,
            direct_mcp_url: format!("{base}/mcp"),
            db_path,
        })
        .collect();
    let tokens = sample_tokens(
        &idp,
        &gateway_base,
        Duration::from_secs(args.token_lifetime_secs),
    );
    stop_on_failure.disarm();
    Ok(RunningStack {
        idp,
        issuer,
        gateway_url,
        backends,
        agents,
        tokens,
        stop,
        idp_task,
        backend_tasks,
        agent_task,
        gateway_task,
    })
}

/// Binds `addr`, or says which setting named the address that could not be bound.
async fn bind(addr: SocketAddr, setting: &str, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} ({setting}) for {what}"))
}

fn local_addr(listener: &TcpListener) -> anyhow::Result<SocketAddr> {
    listener
        .local_addr()
        .context("reading the address of a bound listener")
}

/// A shutdown future for one service: completes when the stack stops.
fn stop_signal(stop: &CancellationToken) -> impl Future<Output = ()> + Send + 'static {
    stop.clone().cancelled_owned()
}

/// The identity provider of the stack: it knows each gateway route's resource, which people's
/// clients may get tokens for, and the Contoso tools service's own, which only the agent service
/// gets tokens for, by exchanging the tokens its callers sent it.
fn identity_provider(
    issuer: &str,
    args: &StackArgs,
    gateway_base: &str,
    agent_addr: SocketAddr,
    tools_url: &str,
) -> IdpConfig {
    let routes: Vec<String> = topology::BACKENDS
        .iter()
        .map(|b| b.prefix)
        .chain([topology::CONTOSO_AGENTS.prefix])
        .map(|prefix| gateway::routing::resource_url(gateway_base, prefix))
        .collect();
    let agent_serves = topology::CONTOSO_AGENTS.audiences(gateway_base, agent_addr);
    let mut clients = defaults::clients_for(&routes);
    clients.push(defaults::agent_client(
        topology::AGENT_CLIENT,
        &agent_serves,
        &[tools_url.to_owned()],
    ));
    let mut audiences = routes;
    audiences.extend(agent_serves.into_iter().skip(1));
    audiences.push(tools_url.to_owned());
    IdpConfig {
        issuer: Some(issuer.to_owned()),
        audiences,
        clients,
        key: KeySource::File(args.data.key_file()),
        ..IdpConfig::default()
    }
}

/// Tokens for the routes each sample user's tenant reaches: every Contoso sample user for the
/// Contoso tools and experts, and one user of every other tenant for each route it reaches (a
/// tenant admitted nowhere, for the Contoso tools, to show the 403).
fn sample_tokens(idp: &idp::Idp, gateway_base: &str, lifetime: Duration) -> Vec<SampleToken> {
    let routes: Vec<(&'static str, &'static str, &'static [&'static str])> = topology::BACKENDS
        .iter()
        .map(|b| (b.name, b.prefix, b.tenants))
        .chain([(
            topology::CONTOSO_AGENTS.name,
            topology::CONTOSO_AGENTS.prefix,
            topology::CONTOSO_AGENTS.tenants(),
        )])
        .collect();
    let users = idp.tenants().iter().flat_map(|tenant| {
        let users: &[(&str, &[&str])] = if tenant.tid == defaults::CONTOSO {
            &SAMPLE_USERS
        } else {
            std::slice::from_ref(&OTHER_TENANT_USER)
        };
        let reached: Vec<_> = routes
            .iter()
            .filter(|(_, _, tenants)| tenants.contains(&tenant.tid.as_str()))
            .copied()
            .collect();
        let reached = if reached.is_empty() {
            routes[..1].to_vec()
        } else {
            reached
        };
        reached.into_iter().flat_map(move |route| {
            users
                .iter()
                .map(move |user| (tenant.tid.as_str(), route, *user))
        })
    });
    users
        .map(|(tid, (route, prefix, _), (subject, roles))| {
            let spec = TokenSpec {
                lifetime,
                audience: Some(gateway::routing::resource_url(gateway_base, prefix)),
                ..TokenSpec::new(tid, roles.iter().copied(), subject)
            };
            SampleToken {
                tenant: tenant_name(idp, tid),
                subject: subject.to_owned(),
                roles: roles.iter().map(|r| (*r).to_owned()).collect(),
                route,
                token: idp.mint(&spec),
            }
        })
        .collect()
}

/// The name the identity provider knows tenant `tid` by, or the tid itself.
fn tenant_name(idp: &idp::Idp, tid: &str) -> String {
    idp.tenants()
        .iter()
        .find(|t| t.tid == tid)
        .map_or_else(|| tid.to_owned(), |t| t.name.clone())
}

/// Polls `url` until it answers 200. Fails with the service's own error if its task ends first,
/// or after [`START_TIMEOUT`].
async fn wait_until_ok(
    what: &str,
    url: &str,
    task: &mut JoinHandle<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    // Our own services on our own addresses: a proxy from the environment has no business here.
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .context("building an HTTP client")?;
    let started = Instant::now();
    loop {
        if task.is_finished() {
            return Err(match task.await {
                Ok(Err(error)) => error.context(format!("{what} stopped during start-up")),
                Ok(Ok(())) => anyhow!("{what} stopped during start-up"),
                Err(join) => anyhow::Error::new(join).context(format!("{what} failed")),
            });
        }
        if let Ok(response) = http.get(url).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        if started.elapsed() > START_TIMEOUT {
            bail!(
                "{what} was not ready after {} s ({url})",
                START_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
