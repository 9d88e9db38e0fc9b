//! A Cosmos DB emulator for a test: `scripts/cosmos-emulator/launch.mjs` (the package patched
//! where it differs from the service), started on a free port and stopped when dropped.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use azure_data_cosmos::models::ContainerProperties;
use shared::{
    config::Secret,
    cosmos::{CosmosAuth, CosmosConfig, Database},
};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The emulator's well-known key (the emulator accepts any; this one runs the signing path).
pub const EMULATOR_KEY: &str =
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw==";
const EMULATOR_PACKAGE: &str = "node_modules/@vercel/cosmosdb-server";

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
}

/// Whether the emulator is installed where its launcher looks for it. When it is not, a test
/// skips its Cosmos half with a note, unless `REQUIRE_COSMOS_EMULATOR=1` (the test command)
/// makes that a failure.
pub fn installed() -> bool {
    let root = repo_root();
    let found = std::env::var_os("COSMOS_EMULATOR_MODULES")
        .map(PathBuf::from)
        .into_iter()
        .chain([
            root.join("scripts/cosmos-emulator"),
            root.join(".interop/cosmos-emulator"),
        ])
        .any(|dir| dir.join(EMULATOR_PACKAGE).is_dir());
    if !found {
        assert_ne!(
            std::env::var("REQUIRE_COSMOS_EMULATOR").as_deref(),
            Ok("1"),
            "REQUIRE_COSMOS_EMULATOR=1 but the Cosmos DB emulator is not installed: run \
             scripts/setup-interop.sh (or npm ci --prefix scripts/cosmos-emulator)"
        );
        eprintln!(
            "note: Cosmos DB emulator not installed, its half of this test is skipped \
             (scripts/setup-interop.sh installs it)"
        );
    }
    found
}

/// A running emulator; it exits when this is dropped (its stdin closes).
pub struct Emulator {
    /// The account endpoint, e.g. `http://127.0.0.1:40131/`.
    pub endpoint: String,
    _child: tokio::process::Child,
}

impl Emulator {
    pub async fn start() -> Emulator {
        Emulator::start_with(&[]).await
    }

    /// An emulator of an account whose data needs an Entra token (`--entra-only`: the key
    /// only creates databases and containers, as the control plane does in Azure).
    pub async fn entra_only() -> Emulator {
        Emulator::start_with(&["--entra-only"]).await
    }

    async fn start_with(flags: &[&str]) -> Emulator {
        let mut child = tokio::process::Command::new("node")
            .arg(repo_root().join("scripts/cosmos-emulator/launch.mjs"))
            .args(["--port", "0"])
            .args(flags)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the Cosmos DB emulator (node)");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        tokio::time::timeout(
            Duration::from_secs(20),
            BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .expect("the emulator is ready within 20 s")
        .expect("read the emulator's stdout");
        let url = line
            .trim()
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("the emulator said {line:?}, not READY <url>"));
        Emulator {
            endpoint: format!("{}/", url.trim_end_matches('/')),
            _child: child,
        }
    }

    /// The settings of `database` on this emulator, with its well-known key.
    pub fn config(&self, database: &str) -> CosmosConfig {
        CosmosConfig {
            endpoint: self.endpoint.clone(),
            auth: CosmosAuth::Key(Secret::new(EMULATOR_KEY)),
            database: database.to_owned(),
        }
    }
}

impl Emulator {
    /// Walks a service that uses an Entra identity (it may not create anything) through an
    /// account provisioned step by step, as an operator meets it: with nothing there, it must
    /// refuse to start naming the database and the remedy (`COSMOSDB_KEY`); with the database
    /// alone, naming the first of `containers`. Then creates them all with the key, so the
    /// service starts next. `start_fails` starts the service and returns what it said on
    /// stopping.
    pub async fn provision_as_told(
        &self,
        database: &str,
        containers: impl IntoIterator<Item = ContainerProperties>,
        start_fails: impl AsyncFn() -> String,
    ) {
        let said = start_fails().await;
        assert!(
            said.contains(&format!("the database {database} does not exist")),
            "{said}"
        );
        assert!(said.contains("COSMOSDB_KEY"), "the remedy: {said}");

        let provisioner = Database::open(&self.config(database))
            .await
            .expect("the key creates the database");
        let mut containers = containers.into_iter().peekable();
        let first = containers.peek().expect("a container").id.to_string();
        let said = start_fails().await;
        assert!(
            said.contains(&format!(
                "the container {first} of the database {database} does not exist"
            )),
            "{said}"
        );
        for container in containers {
            provisioner.container(container).await.expect("provision");
        }
    }
}

/// A database name no other test of this process uses.
pub fn database(prefix: &str) -> String {
    static DATABASES: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        DATABASES.fetch_add(1, Ordering::Relaxed)
    )
}

/// A proxy in front of an emulator that answers `429 Too Many Requests` (with Cosmos DB's
/// `x-ms-retry-after-ms`) to as many item requests as it is told to, as an account over its
/// provisioned throughput does; everything else passes through. The account's metadata is
/// rewritten to name the proxy, so the SDK sends every request here.
pub struct Throttle {
    /// The endpoint to give the service instead of the emulator's.
    pub endpoint: String,
    state: std::sync::Arc<ThrottleState>,
    task: tokio::task::JoinHandle<()>,
}

struct ThrottleState {
    upstream: String,
    own: String,
    client: reqwest::Client,
    /// Item requests still to refuse.
    pending: std::sync::atomic::AtomicU64,
    refused: std::sync::atomic::AtomicU64,
}

impl Drop for Throttle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Throttle {
    /// Starts one on `127.0.0.1:0` in front of `emulator`, passing everything through.
    pub async fn start(emulator: &Emulator) -> Throttle {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the throttle");
        let own = format!("http://{}", listener.local_addr().expect("address"));
        let state = std::sync::Arc::new(ThrottleState {
            upstream: emulator.endpoint.trim_end_matches('/').to_owned(),
            own: own.clone(),
            client: reqwest::Client::new(),
            pending: std::sync::atomic::AtomicU64::new(0),
            refused: std::sync::atomic::AtomicU64::new(0),
        });
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Throttle {
            endpoint: format!("{own}/"),
            state,
            task,
        }
    }

    /// Refuses the next `n` item requests (reads, queries, writes, batches) with 429.
    pub fn refuse(&self, n: u64) {
        self.state.pending.store(n, Ordering::SeqCst);
    }

    /// How many requests it has refused so far.
    pub fn refused(&self) -> u64 {
        self.state.refused.load(Ordering::SeqCst)
    }
}

async fn forward(
    axum::extract::State(state): axum::extract::State<std::sync::Arc<ThrottleState>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;

    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    // Items live under `/dbs/<db>/colls/<coll>/docs`; metadata and control calls pass.
    let item = path.contains("/docs");
    if item
        && state
            .pending
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    {
        state.refused.fetch_add(1, Ordering::SeqCst);
        return (
            http::StatusCode::TOO_MANY_REQUESTS,
            [("x-ms-retry-after-ms", "50"), ("x-ms-substatus", "3200")],
            r#"{"code":"TooManyRequests","message":"Request rate is large."}"#,
        )
            .into_response();
    }
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let mut upstream = state
        .client
        .request(parts.method, format!("{}{path}", state.upstream))
        .body(body);
    for (name, value) in &parts.headers {
        if name != http::header::HOST && name != http::header::CONTENT_LENGTH {
            upstream = upstream.header(name, value);
        }
    }
    let Ok(answer) = upstream.send().await else {
        return http::StatusCode::BAD_GATEWAY.into_response();
    };
    let status = answer.status();
    let headers = answer.headers().clone();
    let body = answer.bytes().await.unwrap_or_default();
    // The account's metadata names where its regions are: here, not the emulator.
    let body = if path == "/" || path.starts_with("/?") {
        bytes::Bytes::from(
            String::from_utf8_lossy(&body)
                .replace(&state.upstream, &state.own)
                .into_bytes(),
        )
    } else {
        body
    };
    let mut response = (status, body).into_response();
    for (name, value) in &headers {
        if name != http::header::CONTENT_LENGTH && name != http::header::TRANSFER_ENCODING {
            response.headers_mut().append(name, value.clone());
        }
    }
    response
}
