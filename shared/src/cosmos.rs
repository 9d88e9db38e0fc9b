//! Azure Cosmos DB (NoSQL API, `azure_data_cosmos`) the one way the platform uses it (feature
//! `cosmos`): the connection settings every service reads the same way ([`CosmosArgs`], checked
//! into a [`CosmosConfig`]), a client built with our options and authenticated with the account
//! key or the service's Entra identity ([`CosmosAuth`]), the database and containers created
//! when missing with a key and checked with an identity ([`Database`]), and the helpers each service's backend needs on top:
//! point reads with their ETag ([`read`]), queries ([`sql`], [`query`]), transactional batches
//! whose every operation is checked ([`commit`]), and the bounded retries of an optimistic write
//! ([`Attempts`]).
//!
//! What the SDK (1.0.0) and the service taught us, and this module takes care of:
//! - binary encoding is off: the local emulator reads text JSON only, and the service reads both;
//! - a throttled request (429) is retried a few times within seconds ([`THROTTLE_RETRIES`],
//!   [`THROTTLE_WAIT`]), not the SDK's default of minutes, so an overloaded account fails a call
//!   instead of holding it;
//! - writes return no body (`Prefer: return=minimal`): a written item's ETag is in the headers;
//! - a transactional batch that fails answers `Ok` with status 207: each operation's status must
//!   be read ([`commit`]);
//! - one `ContainerClient` per container, kept: opening one reads the container's metadata.
//!
//! Errors carry the database's own words ([`CosmosFailure`]): for logs, never for callers.

use std::{
    hash::{BuildHasher, RandomState},
    sync::Arc,
    time::Duration,
};

use azure_data_cosmos::{
    AccountEndpoint, AccountReference, CosmosClient, CosmosError, FeedScope, Query,
    RoutingStrategy, TransactionalBatch,
    clients::{ContainerClient, DatabaseClient},
    models::ContainerProperties,
    options::{
        BinaryEncodingOptions, OperationOptionsBuilder, Precondition, ThrottlingRetryOptionsBuilder,
    },
};
use futures::TryStreamExt;
use serde::de::DeserializeOwned;

use crate::config::{AzureCredential, ConfigError, Secret};

/// Retries of a throttled (429) request.
pub const THROTTLE_RETRIES: u32 = 4;
/// The longest a request waits in all for throttling to end.
pub const THROTTLE_WAIT: Duration = Duration::from_secs(10);
/// Reads and decisions of one optimistic write before it gives up as contended.
pub const MAX_ATTEMPTS: u32 = 25;
/// The longest wait between two attempts of an optimistic write.
const MAX_BACKOFF_MS: u64 = 40;

/// The Cosmos DB settings, as every service names them. `USE_COSMOSDB`, which chooses Cosmos
/// over SQLite, is the service's own setting: its words say what the service keeps there.
#[derive(Debug, Clone, clap::Args)]
pub struct CosmosArgs {
    /// The Cosmos DB account endpoint, e.g. `https://<account>.documents.azure.com:443/`
    /// (plain http:// only to a loopback emulator).
    #[arg(long, env = "COSMOSDB_ENDPOINT")]
    pub cosmosdb_endpoint: Option<String>,

    /// The database in the Cosmos DB account; it and its containers are created when missing.
    #[arg(long, env = "COSMOS_DATABASE_NAME", default_value = "contoso")]
    pub cosmos_database_name: String,

    /// The Cosmos DB account key (the emulator, development); the service then creates the
    /// database and containers when missing. Without one, the service authenticates with its
    /// Entra identity (AZURE_CREDENTIAL, AZURE_CLIENT_ID) and expects them to exist.
    #[arg(long, env = "COSMOSDB_KEY", hide_env_values = true)]
    pub cosmosdb_key: Option<Secret>,
}

/// How a service authenticates to its Cosmos DB account.
#[derive(Debug, Clone)]
pub enum CosmosAuth {
    /// The account key: full rights, so the database and containers are created when missing.
    Key(Secret),
    /// An Entra token of the service's identity, which needs the data-plane role "Cosmos DB
    /// Built-in Data Contributor" only: the database and containers must exist (deploy/).
    Entra(AzureCredential),
}

impl CosmosAuth {
    /// For logs and errors: which kind, never the secret.
    pub fn describe(&self) -> &'static str {
        match self {
            CosmosAuth::Key(_) => "account key",
            CosmosAuth::Entra(AzureCredential::ManagedIdentity { .. }) => "managed identity",
        }
    }
}

/// Where the store is and which database it uses. `Debug` never shows the key.
#[derive(Debug, Clone)]
pub struct CosmosConfig {
    /// The account endpoint, e.g. `https://contoso.documents.azure.com:443/` (plain HTTP only
    /// for an emulator on the loopback).
    pub endpoint: String,
    /// The account key, or the Entra identity.
    pub auth: CosmosAuth,
    /// The database; created with the containers when missing.
    pub database: String,
}

impl CosmosConfig {
    /// Where the data is, in the words of its settings, for an operator's error message.
    pub fn describe(&self) -> String {
        format!(
            "the Cosmos DB database {} at {} (COSMOS_DATABASE_NAME, COSMOSDB_ENDPOINT)",
            self.database, self.endpoint
        )
    }
}

impl CosmosArgs {
    /// The settings, checked, for a service that has `USE_COSMOSDB=true`, with the Entra
    /// identity the service's `AZURE_CREDENTIAL` names, if any; errors name the setting to fix.
    /// A key, when set, is used even if a credential is named too (it may be there for another
    /// resource).
    pub fn config(&self, credential: Option<AzureCredential>) -> Result<CosmosConfig, ConfigError> {
        let endpoint = match self.cosmosdb_endpoint.as_deref().map(str::trim) {
            Some(endpoint) if !endpoint.is_empty() => endpoint.to_owned(),
            _ => {
                return Err(ConfigError::new(
                    "COSMOSDB_ENDPOINT",
                    "missing with USE_COSMOSDB=true; e.g. https://<account>.documents.azure.com:443/",
                ));
            }
        };
        crate::auth::jwks::check_secure_url(&endpoint)
            .map_err(|e| ConfigError::new("COSMOSDB_ENDPOINT", e))?;
        let database = self.cosmos_database_name.trim();
        // Cosmos DB ids: 1 to 255 characters, none of / \ ? #.
        if database.is_empty()
            || database.chars().count() > 255
            || database.contains(['/', '\\', '?', '#'])
        {
            return Err(ConfigError::new(
                "COSMOS_DATABASE_NAME",
                format!(
                    "{database:?} is not a Cosmos DB database name: 1 to 255 characters, none of / \\ ? #"
                ),
            ));
        }
        let auth = match (self.cosmosdb_key.clone(), credential) {
            (Some(key), _) => CosmosAuth::Key(key),
            (None, Some(credential)) => CosmosAuth::Entra(credential),
            (None, None) => {
                return Err(ConfigError::new(
                    "AZURE_CREDENTIAL",
                    "USE_COSMOSDB=true needs a way to authenticate: AZURE_CREDENTIAL=managed-identity \
                     (with AZURE_CLIENT_ID for a user-assigned identity) in Azure, or COSMOSDB_KEY \
                     for the emulator",
                ));
            }
        };
        Ok(CosmosConfig {
            endpoint,
            auth,
            database: database.to_owned(),
        })
    }
}

/// A Cosmos DB request that failed: which operation, in the database's words. For logs only.
#[derive(Debug, thiserror::Error)]
#[error("cosmos {operation}: {message}")]
pub struct CosmosFailure {
    pub operation: &'static str,
    pub message: String,
    /// Still throttled (429) after the retries: the account is over its throughput, a
    /// condition that passes, so the caller may be told to try again shortly.
    pub throttled: bool,
}

impl CosmosFailure {
    pub fn new(operation: &'static str, message: impl Into<String>) -> Self {
        CosmosFailure {
            operation,
            message: message.into(),
            throttled: false,
        }
    }

    /// What an Entra identity found missing and may not create: the operator's next step.
    pub fn missing(what: String) -> Self {
        CosmosFailure::new(
            "open",
            format!(
                "{what}; with Entra authentication the service does not create databases or \
                 containers (its role is data-plane only): provision them (deploy/), or set \
                 COSMOSDB_KEY to let the service create them"
            ),
        )
    }
}

/// Turns an SDK error of `operation` into a [`CosmosFailure`].
pub fn failed(operation: &'static str) -> impl Fn(CosmosError) -> CosmosFailure {
    move |error| CosmosFailure {
        throttled: error.status().is_throttled(),
        ..CosmosFailure::new(operation, error.to_string())
    }
}

/// Creating what already exists (409) is what opening an existing database does.
pub fn created_or_exists<T>(
    result: azure_data_cosmos::Result<T>,
    operation: &'static str,
) -> Result<(), CosmosFailure> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.status().is_conflict() => Ok(()),
        Err(e) => Err(failed(operation)(e)),
    }
}

/// One database of an account: created when missing with a key; expected to exist with an
/// Entra identity. Cloning shares the client.
#[derive(Clone)]
pub struct Database {
    client: Arc<DatabaseClient>,
    name: String,
    /// Whether the service may create what is missing (it holds the key).
    creates: bool,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Database {
    /// Connects with our client options; with a key, creates the database when missing, and
    /// with an Entra identity fails with [`CosmosFailure::missing`] if it does not exist.
    pub async fn open(config: &CosmosConfig) -> Result<Self, CosmosFailure> {
        let endpoint: AccountEndpoint = config.endpoint.parse().map_err(failed("endpoint"))?;
        let account = match &config.auth {
            CosmosAuth::Key(key) => {
                AccountReference::with_authentication_key(endpoint, key.expose().to_owned())
            }
            CosmosAuth::Entra(credential) => AccountReference::with_credential(
                endpoint,
                crate::azure::entra_credential(credential)
                    .map_err(|e| CosmosFailure::new("authenticate", e.to_string()))?,
            ),
        };
        let throttling = ThrottlingRetryOptionsBuilder::new()
            .with_max_retry_count(THROTTLE_RETRIES)
            .with_max_retry_wait_time(THROTTLE_WAIT)
            .build();
        // Text JSON: the emulator reads no binary encoding, and the service reads both.
        let client = CosmosClient::builder()
            .with_binary_encoding_options(BinaryEncodingOptions::new().with_enabled(false))
            .with_default_operation_options(
                OperationOptionsBuilder::new()
                    .with_throttling_retry_options(throttling)
                    .build(),
            )
            .build(account, RoutingStrategy::PreferredRegions(vec![]))
            .await
            .map_err(failed("connect"))?;
        let creates = matches!(config.auth, CosmosAuth::Key(_));
        let database = client.database_client(&config.database);
        if creates {
            created_or_exists(
                client.create_database(&config.database, None).await,
                "create database",
            )?;
        } else {
            // The data-plane role may not create databases; say which is missing.
            match database.read(None).await {
                Ok(_) => {}
                Err(e) if e.status().is_not_found() => {
                    return Err(CosmosFailure::missing(format!(
                        "the database {} does not exist",
                        config.database
                    )));
                }
                Err(e) => return Err(failed("read database")(e)),
            }
        }
        Ok(Database {
            client: Arc::new(database),
            name: config.database.clone(),
            creates,
        })
    }

    /// The container `properties` describe, created when missing with a key (an existing one
    /// is opened as it is: its partition key, indexing and TTL are not changed); with an Entra
    /// identity, [`CosmosFailure::missing`] if it does not exist.
    pub async fn container(
        &self,
        properties: ContainerProperties,
    ) -> Result<ContainerClient, CosmosFailure> {
        let name = properties.id.to_string();
        if self.creates {
            created_or_exists(
                self.client.create_container(properties, None).await,
                "create container",
            )?;
        }
        match self.client.container_client(&name, None).await {
            Ok(container) => Ok(container),
            Err(e) if !self.creates && e.status().is_not_found() => {
                Err(CosmosFailure::missing(format!(
                    "the container {name} of the database {} does not exist",
                    self.name
                )))
            }
            Err(e) => Err(failed("open container")(e)),
        }
    }

    /// The database's name, as an operator names it (never the endpoint).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Succeeds when the account answers a read of the database.
    pub async fn ping(&self) -> Result<(), CosmosFailure> {
        self.client
            .read(None)
            .await
            .map_err(failed("read database"))?;
        Ok(())
    }
}

/// A point read of a document and the condition that a write of what was read must meet;
/// `None` if there is no such document.
pub async fn read<T: DeserializeOwned>(
    container: &ContainerClient,
    pk: &str,
    id: &str,
    operation: &'static str,
) -> Result<Option<(T, Precondition)>, CosmosFailure> {
    let response = match container.read_item(pk.to_owned(), id, None).await {
        Ok(response) => response,
        Err(e) if e.status().is_not_found() => return Ok(None),
        Err(e) => return Err(failed(operation)(e)),
    };
    let unchanged = if_match(response.headers(), operation)?;
    let item = response.into_model().map_err(failed(operation))?;
    Ok(Some((item, unchanged)))
}

/// The condition "unchanged since this response": If-Match its ETag (a read's, or a write's,
/// which carries no body but has the header).
pub fn if_match(
    headers: &azure_data_cosmos::models::ResponseHeaders,
    operation: &'static str,
) -> Result<Precondition, CosmosFailure> {
    headers
        .etag()
        .cloned()
        .map(Precondition::if_match)
        .ok_or_else(|| CosmosFailure::new(operation, "no ETag"))
}

/// A query's text with its parameters.
pub fn sql(text: &str, parameters: &[(&str, serde_json::Value)]) -> Result<Query, CosmosFailure> {
    parameters
        .iter()
        .try_fold(Query::from(text), |query, (name, value)| {
            query.with_parameter(*name, value)
        })
        .map_err(failed("build query"))
}

/// Every result of a query, in the order the query gives.
pub async fn query<T: DeserializeOwned + Send + 'static>(
    container: &ContainerClient,
    query: Query,
    scope: FeedScope,
    operation: &'static str,
) -> Result<Vec<T>, CosmosFailure> {
    container
        .query_items::<T>(query, scope, None)
        .await
        .map_err(failed(operation))?
        .try_collect()
        .await
        .map_err(failed(operation))
}

/// What a conditional write found: it happened, or the partition was not as it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Done,
    /// A document changed since it was read (412): someone else wrote first.
    Stale,
    /// A document to create exists (409): someone else created it first.
    Exists,
}

/// Runs a batch of one partition: all of it, or (on a failed operation) none of it.
pub async fn commit(
    container: &ContainerClient,
    batch: TransactionalBatch,
    operation: &'static str,
) -> Result<Written, CosmosFailure> {
    let response = match container.execute_transactional_batch(batch, None).await {
        Ok(response) => response,
        Err(e) if e.status().is_precondition_failed() => return Ok(Written::Stale),
        Err(e) if e.status().is_conflict() => return Ok(Written::Exists),
        Err(e) => return Err(failed(operation)(e)),
    };
    // A failed batch is still `Ok` (207 Multi-Status): the failed operation has its own status,
    // the others 424.
    let outcome = response.into_model().map_err(failed(operation))?;
    let results = outcome.results();
    if results.iter().all(|r| r.is_success()) {
        Ok(Written::Done)
    } else if results.iter().any(|r| r.status_code() == 412) {
        Ok(Written::Stale)
    } else if results.iter().any(|r| r.status_code() == 409) {
        Ok(Written::Exists)
    } else {
        let statuses: Vec<u16> = results.iter().map(|r| r.status_code()).collect();
        Err(CosmosFailure::new(
            operation,
            format!("batch failed with statuses {statuses:?}"),
        ))
    }
}

/// Queues for one replica's conditional writes to one document: writers on the same replica
/// wait their turn instead of racing, so an ETag conflict comes only from another replica and
/// [`MAX_ATTEMPTS`] is not used up by a burst on one replica (200 concurrent payments to one
/// invoice, say). Keys share a fixed number of queues by hash: bounded memory, and two keys
/// on one queue only wait for each other.
#[derive(Clone)]
pub struct WriteQueues {
    queues: Arc<[tokio::sync::Mutex<()>]>,
    hasher: RandomState,
}

impl std::fmt::Debug for WriteQueues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteQueues")
            .field("queues", &self.queues.len())
            .finish()
    }
}

impl WriteQueues {
    /// Queues shared by `queues` keys' writers (at least one).
    pub fn new(queues: usize) -> Self {
        WriteQueues {
            queues: (0..queues.max(1))
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            hasher: RandomState::new(),
        }
    }

    /// Waits for `key`'s turn; the turn lasts as long as the guard.
    pub async fn enter(&self, key: &str) -> tokio::sync::MutexGuard<'_, ()> {
        let slot = (self.hasher.hash_one(key) % self.queues.len() as u64) as usize;
        self.queues[slot].lock().await
    }
}

/// The attempts of one optimistic write: each after the first waits a random while, longer as
/// attempts fail, so that writers that collided do not collide again in step.
#[derive(Debug)]
pub struct Attempts {
    operation: &'static str,
    made: u32,
}

impl Attempts {
    pub fn new(operation: &'static str) -> Self {
        Attempts { operation, made: 0 }
    }

    /// Waits for the next attempt; an error once [`MAX_ATTEMPTS`] are used up.
    pub async fn next(&mut self) -> Result<(), CosmosFailure> {
        if self.made >= MAX_ATTEMPTS {
            return Err(CosmosFailure::new(
                self.operation,
                format!("contended ({MAX_ATTEMPTS} conflicting attempts)"),
            ));
        }
        if self.made > 0 {
            let window = (1u64 << self.made.min(6)).min(MAX_BACKOFF_MS);
            // A fresh RandomState is randomly keyed: enough randomness for a jitter.
            let wait = RandomState::new().hash_one(self.made) % (window + 1);
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        self.made += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        cosmos: CosmosArgs,
    }

    fn config(args: &[&str]) -> Result<CosmosConfig, ConfigError> {
        config_with(args, None)
    }

    fn config_with(
        args: &[&str],
        credential: Option<AzureCredential>,
    ) -> Result<CosmosConfig, ConfigError> {
        use clap::Parser;
        Cli::try_parse_from(std::iter::once("service").chain(args.iter().copied()))
            .expect("flags parse")
            .cosmos
            .config(credential)
    }

    #[test]
    fn settings_are_checked_and_errors_name_what_to_fix() {
        let refused = |args: &[&str]| config(args).expect_err("refused").variable;
        assert_eq!(refused(&[]), "COSMOSDB_ENDPOINT");
        assert_eq!(
            refused(&["--cosmosdb-endpoint", "http://cosmos.example.com:8081/"]),
            "COSMOSDB_ENDPOINT"
        );
        let endpoint = [
            "--cosmosdb-endpoint",
            "https://contoso.documents.azure.com:443/",
        ];
        assert_eq!(
            refused(&endpoint),
            "AZURE_CREDENTIAL",
            "no key and no identity"
        );
        let named = |name: &str| {
            config(
                &[
                    &endpoint[..],
                    &["--cosmosdb-key", "k", "--cosmos-database-name", name],
                ]
                .concat(),
            )
        };
        for bad in ["a/b", "", "  ", "q?", &"x".repeat(256)] {
            assert_eq!(
                named(bad).expect_err("refused").variable,
                "COSMOS_DATABASE_NAME",
                "{bad:?}"
            );
        }
        assert_eq!(named(" agents ").expect("valid").database, "agents");

        let good =
            config(&[&endpoint[..], &["--cosmosdb-key", "secret-key"]].concat()).expect("valid");
        assert_eq!(good.database, "contoso", "the default");
        assert!(
            matches!(&good.auth, CosmosAuth::Key(key) if key.expose() == "secret-key"),
            "{good:?}"
        );
        let shown = format!("{good:?} {}", good.describe());
        assert!(shown.contains("contoso.documents.azure.com"), "{shown}");
        assert!(
            !shown.contains("secret-key"),
            "the key is never shown: {shown}"
        );
        // Without a key, the service's Entra identity; a key wins over it.
        let identity = AzureCredential::ManagedIdentity { client_id: None };
        let entra = config_with(&endpoint, Some(identity.clone())).expect("an identity");
        assert!(
            matches!(&entra.auth, CosmosAuth::Entra(c) if *c == identity),
            "{entra:?}"
        );
        assert_eq!(entra.auth.describe(), "managed identity");
        let both = config_with(
            &[&endpoint[..], &["--cosmosdb-key", "k"]].concat(),
            Some(identity),
        )
        .expect("valid");
        assert_eq!(both.auth.describe(), "account key");
        // An emulator on the loopback may be plain HTTP.
        assert!(
            config(&[
                "--cosmosdb-endpoint",
                "http://127.0.0.1:8081/",
                "--cosmosdb-key",
                "k"
            ])
            .is_ok()
        );
    }

    #[tokio::test]
    async fn attempts_run_out() {
        let mut attempts = Attempts::new("test");
        for _ in 0..MAX_ATTEMPTS {
            attempts.next().await.expect("an attempt left");
        }
        let error = attempts.next().await.expect_err("used up");
        assert!(
            error.to_string().starts_with("cosmos test: contended"),
            "{error}"
        );
    }
}
