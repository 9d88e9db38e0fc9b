//! `tools-service seed [--force] [--count N]`, the one-shot seeding job, run as the real binary
//! on SQLite and on the Cosmos DB emulator: it seeds an empty store, leaves one that holds data
//! as it is, replaces it with `--force`, and refuses a count it cannot serve, without needing
//! the token issuer or any other serving setting.

use std::{path::Path, time::Duration};

use testkit::cosmos;
use tools_service::store::{Storage, StorageConfig};

/// Runs `tools-service seed <args>` with `env`; its exit success and everything it printed.
async fn seed(db: &Path, env: &[(&str, String)], args: &[&str]) -> (bool, String) {
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_tools-service"))
            .env_clear()
            .env("DB_PATH", db)
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .arg("seed")
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the job ended within 120 s")
    .expect("run tools-service seed");
    let said = String::from_utf8_lossy(&[output.stdout, output.stderr].concat()).into_owned();
    (output.status.success(), said)
}

/// Every customer id in the store, in order.
async fn customer_ids(storage: &Storage) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let page = storage
            .customers
            .customers(cursor.as_deref(), 100)
            .await
            .expect("list customers");
        ids.extend(page.items.iter().map(|c| c.id));
        match page.next {
            Some(next) => cursor = Some(next),
            None => return ids,
        }
    }
}

/// The job on one store: `env` chooses it, `open` reads it back.
async fn the_job_on(name: &str, db: &Path, env: &[(&str, String)], open: &StorageConfig) {
    let (ok, said) = seed(db, env, &["--count", "5"]).await;
    assert!(ok, "{name}: {said}");
    assert!(said.contains("database seeded"), "{name}: {said}");
    let storage = open.open().await.expect("open the seeded store");
    let first = customer_ids(&storage).await;
    assert_eq!(
        first.len(),
        5 + 9,
        "{name}: five random and nine scenario customers"
    );
    assert!(
        first.contains(&251) && first.contains(&259),
        "{name}: {first:?}"
    );

    // Again: the store holds data, so it is left as it is whatever the count.
    let (ok, said) = seed(db, env, &["--count", "40"]).await;
    assert!(ok, "{name}: {said}");
    assert!(said.contains("left as it is"), "{name}: {said}");
    assert_eq!(customer_ids(&storage).await, first, "{name}");

    // --force replaces it.
    let (ok, said) = seed(db, env, &["--force", "--count", "2"]).await;
    assert!(ok, "{name}: {said}");
    assert_eq!(customer_ids(&storage).await.len(), 2 + 9, "{name}");

    // A count past the limit is refused before anything is touched.
    let (ok, said) = seed(db, env, &["--force", "--count", "1000001"]).await;
    assert!(!ok, "{name}: {said}");
    assert!(said.contains("--count"), "{name}: {said}");
    assert_eq!(customer_ids(&storage).await.len(), 2 + 9, "{name}");
}

#[tokio::test]
async fn the_seed_job_seeds_an_empty_store_keeps_a_full_one_and_replaces_it_when_forced() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("contoso.db");
    let sqlite = StorageConfig::Sqlite { path: db.clone() };
    the_job_on("sqlite", &db, &[], &sqlite).await;

    if !cosmos::installed() {
        return;
    }
    let emulator = cosmos::Emulator::start().await;
    let database = cosmos::database("seed");
    let env = [
        ("USE_COSMOSDB", "true".to_owned()),
        ("COSMOSDB_ENDPOINT", emulator.endpoint.clone()),
        ("COSMOSDB_KEY", cosmos::EMULATOR_KEY.to_owned()),
        ("COSMOS_DATABASE_NAME", database.clone()),
    ];
    let on_cosmos = StorageConfig::Cosmos(emulator.config(&database));
    the_job_on("cosmos", &dir.path().join("audit.db"), &env, &on_cosmos).await;
}
