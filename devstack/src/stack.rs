//! `devstack` with no arguments: the whole local platform with authentication on.
//!
//! Starts the development identity provider and the tools service in this process, the
//! service verifying tokens of that provider exactly as it would verify Entra ID's, waits until
//! the service is ready, and returns the MCP URL and a ready-to-paste token per role. Later
//! services (gateway, agents) join here.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::{
    config::StackArgs,
    idp::{self, IdpConfig, KeySource, TokenSpec, defaults},
};

/// The sample users whose tokens are printed: one per role, and one with every role.
pub const SAMPLE_USERS: [(&str, &[&str]); 4] = [
    ("query-user", &["query"]),
    ("billing-user", &["billing"]),
    ("security-user", &["security"]),
    ("admin", &["query", "billing", "security"]),
];

/// A running stack. Dropping it does not stop it; call [`RunningStack::stop`].
#[derive(Debug)]
pub struct RunningStack {
    pub issuer: String,
    pub mcp_url: String,
    /// `(subject, roles, token)` of each sample user.
    pub tokens: Vec<(String, Vec<String>, String)>,
    stop: CancellationToken,
    idp_task: JoinHandle<Result<(), crate::Error>>,
    tools_task: JoinHandle<anyhow::Result<()>>,
}

/// Starts the stack and returns once the tools service answers `/readyz`.
pub async fn start(args: StackArgs) -> anyhow::Result<RunningStack> {
    let stop = CancellationToken::new();
    let idp_listener = TcpListener::bind(args.idp_bind).await.with_context(|| {
        format!(
            "cannot listen on {} (IDP_BIND_ADDR) for the identity provider",
            args.idp_bind
        )
    })?;
    let issuer = format!("http://{}", idp_listener.local_addr()?);
    let idp_config = IdpConfig {
        issuer: Some(issuer.clone()),
        key: KeySource::File(args.data.key_file()),
        ..IdpConfig::default()
    };
    let idp = idp::Idp::new(idp_config.clone())?;
    let idp_stop = stop.clone();
    let idp_task = tokio::spawn(idp::serve(idp_listener, idp_config, async move {
        idp_stop.cancelled().await
    }));

    let tools_listener = TcpListener::bind(args.tools_bind).await.with_context(|| {
        format!(
            "cannot listen on {} (TOOLS_BIND_ADDR) for the tools service",
            args.tools_bind
        )
    })?;
    let tools_addr = tools_listener.local_addr()?;
    let tools_config = tools_service::Config::try_parse_from_args([
        "--bind-addr".to_owned(),
        tools_addr.to_string(),
        "--db-path".to_owned(),
        args.db_path.display().to_string(),
        "--auth-issuer".to_owned(),
        issuer.clone(),
        "--mcp-api-audience".to_owned(),
        defaults::AUDIENCE.to_owned(),
        // Whatever the environment says, devstack runs with verified tokens.
        "--disable-auth".to_owned(),
        "false".to_owned(),
        "--use-passthrough-auth".to_owned(),
        "false".to_owned(),
    ])?
    .into_valid()?;
    let tools_stop = stop.clone();
    let tools_task = tokio::spawn(tools_service::run(
        tools_config,
        tools_listener,
        async move { tools_stop.cancelled().await },
    ));
    wait_ready(&format!("http://{tools_addr}/readyz"), &tools_task).await?;

    let lifetime = Duration::from_secs(args.token_lifetime_secs);
    let tokens = SAMPLE_USERS
        .iter()
        .map(|(subject, roles)| {
            let spec = TokenSpec {
                lifetime,
                ..TokenSpec::new(defaults::CONTOSO, roles.iter().copied(), subject)
            };
            (
                subject.to_string(),
                roles.iter().map(|r| r.to_string()).collect(),
                idp.mint(&spec),
            )
        })
        .collect();
    Ok(RunningStack {
        issuer,
        mcp_url: format!("http://{tools_addr}/mcp"),
        tokens,
        stop,
        idp_task,
        tools_task,
    })
}

/// Polls `/readyz` until it answers 200; fails if the service task ends first or after 60 s.
async fn wait_ready(url: &str, task: &JoinHandle<anyhow::Result<()>>) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if task.is_finished() {
            bail!("the tools service stopped during start-up (see the log above)");
        }
        if let Ok(response) = http.get(url).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the tools service was not ready after 60 s ({url})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl RunningStack {
    /// What `devstack` prints for its user.
    pub fn banner(&self) -> String {
        let mut text = format!(
            "\ndevstack is running (authentication ON)\n\n  identity provider  {}  (discovery: {}/.well-known/openid-configuration)\n  tools service MCP  {}\n\nSample tokens of tenant contoso ({}); send as `Authorization: Bearer <token>`:\n",
            self.issuer,
            self.issuer,
            self.mcp_url,
            defaults::CONTOSO,
        );
        for (subject, roles, token) in &self.tokens {
            text.push_str(&format!(
                "\n  {subject} [{}]\n  {token}\n",
                roles.join(", ")
            ));
        }
        text.push_str(
            "\nMore tokens: devstack token --tenant contoso --roles query,security [--sub alice]\n\
             Client credentials: POST <identity provider>/token with client_id contoso-query and \
             client_secret contoso-query-secret (likewise <tenant>-<role> for fabrikam, northwind and billing, security)\n",
        );
        text
    }

    /// Stops both services and waits for them.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.tools_task.await.context("tools service task")??;
        self.idp_task.await.context("identity provider task")??;
        Ok(())
    }
}
