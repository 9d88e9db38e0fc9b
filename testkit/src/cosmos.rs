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
