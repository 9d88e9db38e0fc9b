//! The stack under soak: the release `devstack` binary as a child process, every port on
//! `127.0.0.1:0` and its state in a scratch folder, so what is measured is one real process
//! serving the identity provider, both tools services, the agent service and the gateway.
//!
//! The addresses are read from the banner `devstack` prints once everything answers, as a person
//! reads them; tokens are signed in this process with the key `devstack` keeps in its data
//! folder, so they verify exactly like the ones it prints, and a few deliberately wrong ones can
//! be made too.

use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use tokio::process::Child;

use crate::{
    idp::{self, Idp, IdpConfig, KeySource, TokenSpec, defaults},
    load,
    topology::{BACKENDS, CONTOSO_AGENTS},
};

/// What `devstack` is started with besides its ports and data folder.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// `TROUBLESHOOT_STEP_MS` of both tools services: a progress stream lasts nine steps.
    pub troubleshoot_step_ms: u64,
    /// `RUST_LOG` of the child.
    pub log_filter: String,
    /// `CONVERSATIONS_PER_OWNER` of the experts.
    pub conversations_per_owner: u32,
}

/// One gateway route as the banner names it.
#[derive(Debug, Clone)]
pub struct Route {
    /// `contoso`, `fabrikam`, `contoso-agent`.
    pub name: &'static str,
    /// Its MCP endpoint through the gateway, also the audience of its tokens.
    pub url: String,
    /// The path of [`Route::url`], for raw requests.
    pub path: String,
    /// Tenant ids the route admits.
    pub tenants: &'static [&'static str],
}

/// What the child's output has shown since it became ready.
#[derive(Debug, Default)]
pub struct OutputCounts {
    /// Set once the banner's last line has gone by: lines before it are not log lines.
    banner_done: AtomicBool,
    /// Lines on stdout or stderr after the banner (warnings and errors at the soak's log level).
    pub lines: AtomicU64,
    /// Lines that report a panic.
    pub panics: AtomicU64,
    /// The first of those lines, cut short.
    pub first_panic: Mutex<Option<String>>,
    /// The latest lines, to explain a child that stopped.
    last: Mutex<VecDeque<String>>,
}

/// `devstack` running as a child process; killed when dropped.
pub struct ChildStack {
    child: Child,
    pub pid: u32,
    /// The gateway's `host:port`, for raw TCP clients.
    pub gateway_addr: String,
    /// The tools routes first (in [`BACKENDS`] order), then the experts' route.
    pub routes: Vec<Route>,
    /// The agent service's SQLite database (conversations and sessions).
    pub agent_db: PathBuf,
    /// Signs tokens with the child's key.
    pub idp: Idp,
    pub output: Arc<OutputCounts>,
    data_dir: PathBuf,
}

impl ChildStack {
    /// Starts `bin` (the `devstack` binary) with its data in `data_dir` and returns once its
    /// banner has named the issuer and every route.
    pub async fn start(
        bin: &Path,
        data_dir: &Path,
        options: &StackOptions,
    ) -> anyhow::Result<ChildStack> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let any = "127.0.0.1:0";
        let env = [
            ("DEVSTACK_DATA_DIR", data_dir.display().to_string()),
            ("IDP_BIND_ADDR", any.to_owned()),
            ("TOOLS_BIND_ADDR", any.to_owned()),
            ("FABRIKAM_BIND_ADDR", any.to_owned()),
            ("AGENT_BIND_ADDR", any.to_owned()),
            ("GATEWAY_BIND_ADDR", any.to_owned()),
            ("RUST_LOG", options.log_filter.clone()),
            // Legacy clients get sessions, so abandoned ones can pile up if nothing bounds them.
            ("MCP_SESSIONS", "true".to_owned()),
            (
                "CONVERSATIONS_PER_OWNER",
                options.conversations_per_owner.to_string(),
            ),
            (
                "TROUBLESHOOT_STEP_MS",
                options.troubleshoot_step_ms.to_string(),
            ),
        ];
        let output = Arc::new(OutputCounts::default());
        let sink = output.clone();
        let mut banner = Banner::default();
        let started = load::spawn_until(
            bin,
            &[],
            env,
            move |line| banner.read(line),
            Arc::new(move |line: &str| sink.count(line)),
        )
        .await;
        let (child, banner) = match started {
            Ok(started) => started,
            Err(error) => {
                // Its last words (on stderr) may still be on their way.
                tokio::time::sleep(Duration::from_millis(200)).await;
                let said = output.last_lines();
                return Err(error.context(format!("starting devstack; it said:\n{said}")));
            }
        };
        let pid = child.id().context("devstack exited at once")?;
        let audiences: Vec<String> = banner.routes.iter().map(|r| r.url.clone()).collect();
        let idp = Idp::new(IdpConfig {
            issuer: Some(banner.issuer.clone()),
            clients: defaults::clients_for(&audiences),
            audiences,
            key: KeySource::File(data_dir.join(idp::KEY_FILE)),
            ..IdpConfig::default()
        })
        .context("loading devstack's signing key")?;
        Ok(ChildStack {
            child,
            pid,
            gateway_addr: banner.gateway_addr,
            routes: banner.routes,
            agent_db: data_dir.join(CONTOSO_AGENTS.db_file()),
            idp,
            output,
            data_dir: data_dir.to_owned(),
        })
    }

    /// The route called `name`.
    pub fn route(&self, name: &str) -> anyhow::Result<&Route> {
        self.routes
            .iter()
            .find(|r| r.name == name)
            .with_context(|| format!("the banner named no route {name}"))
    }

    /// A `query` token of `tenant` and `subject` for `route`, valid for `lifetime`.
    pub fn token(&self, route: &Route, tenant: &str, subject: &str, lifetime: Duration) -> String {
        self.idp.mint(&TokenSpec {
            audience: Some(route.url.clone()),
            lifetime,
            ..TokenSpec::new(tenant, ["query"], subject)
        })
    }

    /// A token for `route` that expired a minute ago, otherwise honest.
    pub fn expired_token(&self, route: &Route) -> String {
        let spec = TokenSpec {
            audience: Some(route.url.clone()),
            ..TokenSpec::new(defaults::CONTOSO, ["query"], "soak-expired")
        };
        let mut claims = self.idp.claims(&spec);
        let past = chrono::Utc::now().timestamp() - 60;
        claims["exp"] = past.into();
        claims["nbf"] = (past - 3600).into();
        claims["iat"] = (past - 3600).into();
        self.idp.mint_with(&self.idp.header(), &claims)
    }

    /// Stops the child and deletes its data folder.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

impl OutputCounts {
    fn count(&self, line: &str) {
        {
            let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
            if last.len() == 5 {
                last.pop_front();
            }
            last.push_back(line.chars().take(500).collect());
        }
        if line.contains("panicked") {
            self.panics.fetch_add(1, Ordering::Relaxed);
            let mut first = self
                .first_panic
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if first.is_none() {
                *first = Some(line.chars().take(300).collect());
            }
        }
        if !self.banner_done.load(Ordering::Relaxed) {
            if line.starts_with("Client credentials:") {
                self.banner_done.store(true, Ordering::Relaxed);
            }
            return;
        }
        self.lines.fetch_add(1, Ordering::Relaxed);
    }

    /// The child's latest lines, one per line.
    fn last_lines(&self) -> String {
        let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        last.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

/// What the banner has said so far.
#[derive(Debug, Default)]
struct Banner {
    issuer: String,
    gateway_addr: String,
    routes: Vec<Route>,
}

/// A banner read to the end of what the soak needs.
#[derive(Debug)]
struct ReadBanner {
    issuer: String,
    gateway_addr: String,
    routes: Vec<Route>,
}

impl Banner {
    /// Takes one line of the child's stdout; the whole banner once its sample tokens begin
    /// (everything the soak needs comes before them).
    fn read(&mut self, line: &str) -> Option<ReadBanner> {
        let urls = line
            .split_whitespace()
            .filter(|word| word.starts_with("http://"));
        if let Some(rest) = line.trim_start().strip_prefix("identity provider") {
            self.issuer = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
        }
        let known = BACKENDS
            .iter()
            .map(|b| (b.name, b.prefix, b.tenants))
            .chain([(
                CONTOSO_AGENTS.name,
                CONTOSO_AGENTS.prefix,
                CONTOSO_AGENTS.tenants(),
            )]);
        let known: Vec<_> = known.collect();
        for url in urls {
            for &(name, prefix, tenants) in &known {
                let path = gateway::routing::resource_url("", prefix);
                let Some(base) = url.strip_suffix(&path) else {
                    continue;
                };
                if self.routes.iter().any(|r| r.name == name) {
                    continue;
                }
                self.gateway_addr = base.trim_start_matches("http://").to_owned();
                self.routes.push(Route {
                    name,
                    url: url.to_owned(),
                    path,
                    tenants,
                });
            }
        }
        let complete = line.starts_with("Sample tokens")
            && !self.issuer.is_empty()
            && self.routes.len() == known.len();
        complete.then(|| {
            // In topology order, whatever order the banner used.
            let mut routes = std::mem::take(&mut self.routes);
            routes.sort_by_key(|r| known.iter().position(|k| k.0 == r.name));
            ReadBanner {
                issuer: std::mem::take(&mut self.issuer),
                gateway_addr: std::mem::take(&mut self.gateway_addr),
                routes,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_banner_gives_the_issuer_and_every_route() {
        let text = "\ndevstack is running (authentication ON)\n\n  identity provider  \
            http://127.0.0.1:4001  (discovery: http://127.0.0.1:4001/.well-known/openid-configuration)\n\n\
            MCP through the gateway (what clients use):\n\
            \x20 contoso        http://127.0.0.1:5000/contoso-mcp/mcp\n\
            \x20 fabrikam       http://127.0.0.1:5000/fabrikam-mcp/mcp\n\
            \x20 contoso-agent  http://127.0.0.1:5000/contoso-agent/mcp  (experts: ...)\n\
            \nSample tokens; send as ...\n";
        let mut banner = Banner::default();
        let read = text
            .lines()
            .find_map(|line| banner.read(line))
            .expect("a complete banner");
        assert_eq!(read.issuer, "http://127.0.0.1:4001");
        assert_eq!(read.gateway_addr, "127.0.0.1:5000");
        let names: Vec<_> = read.routes.iter().map(|r| r.name).collect();
        assert_eq!(names, ["contoso", "fabrikam", "contoso-agent"]);
        assert_eq!(read.routes[2].path, "/contoso-agent/mcp");
        assert_eq!(read.routes[0].tenants, crate::topology::CONTOSO.tenants);
    }

    #[test]
    fn a_banner_without_every_route_is_not_complete() {
        let mut banner = Banner::default();
        assert!(
            banner
                .read("  identity provider  http://127.0.0.1:1  (discovery: ...)")
                .is_none()
        );
        assert!(
            banner
                .read("  contoso  http://h:1/contoso-mcp/mcp")
                .is_none()
        );
        assert!(banner.read("Sample tokens; send as ...").is_none());
    }
}
