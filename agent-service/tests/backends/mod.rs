//! The memory's backends for the store-level contract: SQLite in a file, and Cosmos DB on a local
//! emulator when one is installed (`testkit::cosmos`; `REQUIRE_COSMOS_EMULATOR=1` makes its
//! absence a failure). Each test body runs once per backend; a second store opened on a
//! backend's database is a restart or a replica, as a second process on it would be.

#![allow(dead_code)] // each test binary uses a different part of it

use std::{
    ops::Deref,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use agent_service::memory::{
    Clock, ConversationStore, CosmosConversations, Memory, MemoryConfig, MemoryResult,
    SqliteConversations,
};
use azure_data_cosmos::{FeedScope, models::ContainerProperties};
use chrono::{DateTime, TimeZone, Utc};
use shared::{
    cosmos::{CosmosConfig, Database, query, sql},
    mcp::LegacySessionStore,
};
use testkit::cosmos::{self, Emulator};

/// A clock the test moves by hand.
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new() -> Arc<Self> {
        Arc::new(ManualClock(Mutex::new(start())))
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().expect("clock lock");
        *now += chrono::Duration::from_std(by).expect("short duration");
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("clock lock")
    }
}

/// Where every manual clock starts.
pub fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 9, 0, 0)
        .single()
        .expect("a valid date")
}

/// One backend's database, and the clock its stores read.
pub struct Backend {
    pub name: &'static str,
    pub clock: Arc<ManualClock>,
    place: Place,
}

enum Place {
    /// A database file in a fresh folder (a subfolder, so opening creates it).
    Sqlite {
        _dir: tempfile::TempDir,
        path: PathBuf,
    },
    /// A database of its own on an emulator of its own.
    Cosmos {
        _emulator: Box<Emulator>,
        config: CosmosConfig,
    },
}

/// Every backend, each with a fresh database.
pub async fn backends() -> Vec<Backend> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("data").join("agent.db");
    let mut all = vec![Backend {
        name: "sqlite",
        clock: ManualClock::new(),
        place: Place::Sqlite { _dir: dir, path },
    }];
    if cosmos::installed() {
        let emulator = Emulator::start().await;
        let config = emulator.config(&cosmos::database("memory"));
        all.push(Backend {
            name: "cosmos",
            clock: ManualClock::new(),
            place: Place::Cosmos {
                _emulator: Box::new(emulator),
                config,
            },
        });
    }
    all
}

/// A store on a backend: its conversations (what it derefs to) and its MCP sessions, from one
/// value.
#[derive(Clone)]
pub struct Store(pub Memory);

impl Deref for Store {
    type Target = dyn ConversationStore;

    fn deref(&self) -> &Self::Target {
        &*self.0.conversations
    }
}

impl Store {
    pub fn sessions(&self) -> &Arc<dyn LegacySessionStore> {
        &self.0.sessions
    }

    pub fn conversations(&self) -> Arc<dyn ConversationStore> {
        self.0.conversations.clone()
    }
}

/// Documents (rows) actually stored, to show that deleting deletes rather than hides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub conversations: u64,
    pub turns: u64,
    pub actions: u64,
    pub handshakes: u64,
}

impl Backend {
    /// A store (a restart, or a replica) on the backend's database, reading its clock.
    pub async fn open(&self, config: MemoryConfig) -> Store {
        self.try_open(config, self.clock.clone())
            .await
            .unwrap_or_else(|e| panic!("{}: open the memory: {e}", self.name))
    }

    /// A store reading the system clock, as the service opens it.
    pub async fn open_as_the_service(&self, config: MemoryConfig) -> Store {
        self.try_open(config, Arc::new(agent_service::memory::SystemClock))
            .await
            .unwrap_or_else(|e| panic!("{}: open the memory: {e}", self.name))
    }

    pub async fn try_open(
        &self,
        config: MemoryConfig,
        clock: Arc<dyn Clock>,
    ) -> MemoryResult<Store> {
        Ok(Store(match &self.place {
            Place::Sqlite { path, .. } => {
                Memory::of(SqliteConversations::open_with_clock(path, config, clock).await?)
            }
            Place::Cosmos { config: cosmos, .. } => {
                Memory::of(CosmosConversations::open_with_clock(cosmos, config, clock).await?)
            }
        }))
    }

    /// What is stored, read past the store (SQLite's rows, Cosmos's documents).
    pub async fn stored(&self) -> Stored {
        match &self.place {
            Place::Sqlite { path, .. } => {
                let pool = sqlx::SqlitePool::connect_with(
                    sqlx::sqlite::SqliteConnectOptions::new().filename(path),
                )
                .await
                .expect("open the file directly");
                let mut counts = [0u64; 4];
                for (table, count) in ["conversations", "turns", "pending_actions", "mcp_sessions"]
                    .into_iter()
                    .zip(&mut counts)
                {
                    // The test's own table names, not a caller's input.
                    let text = format!("SELECT COUNT(*) FROM {table}");
                    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(text))
                        .fetch_one(&pool)
                        .await
                        .expect("count rows");
                    *count = n.unsigned_abs();
                }
                pool.close().await;
                let [conversations, turns, actions, handshakes] = counts;
                Stored {
                    conversations,
                    turns,
                    actions,
                    handshakes,
                }
            }
            Place::Cosmos { config, .. } => {
                let database = Database::open(config).await.expect("the database");
                let count = async |container: &'static str, kind: &str| {
                    let container = database
                        .container(ContainerProperties::new(container, "/pk".into()))
                        .await
                        .expect("the container");
                    let ids: Vec<String> = query(
                        &container,
                        sql(
                            "SELECT VALUE c.id FROM c WHERE c.type = @type",
                            &[("@type", kind.into())],
                        )
                        .expect("query"),
                        FeedScope::full_container(),
                        "count documents",
                    )
                    .await
                    .expect("count documents");
                    ids.len() as u64
                };
                Stored {
                    conversations: count("conversations", "conversation").await,
                    turns: count("conversations", "turn").await,
                    actions: count("conversations", "action").await,
                    handshakes: count("sessions", "handshake").await,
                }
            }
        }
    }
}
