//! The SQLite backend (`sqlx`, bundled SQLite): the default store, and the only place SQL lives.
//!
//! The database runs in WAL mode so readers never wait for the writer, with foreign keys on and
//! a busy timeout so concurrent writers queue instead of failing. State-dependent writes run in
//! `BEGIN IMMEDIATE` transactions: the write lock is taken before the state is read, so two
//! payments to one invoice are serialised by the database and the second is decided on the
//! balance the first left. New ids are allocated inside that transaction (one past the largest).
//!
//! One file serves every concern: [`customers`] the customer data, [`catalog`] the catalogue and
//! the knowledge base, [`load`] seeding; [`rows`] maps rows to domain values.

use std::{path::Path, str::FromStr};

use async_trait::async_trait;
use sqlx::{Row, SqlitePool, migrate::Migrator, sqlite::SqliteConnectOptions};

/// Columns of a full customer row.
macro_rules! customer_columns {
    () => {
        "id, first_name, last_name, email, phone, address, date_of_birth, \
                                loyalty_level, joined_on"
    };
}

/// A subscription joined with its product; callers append the `WHERE` clause.
macro_rules! subscription_select {
    () => {
        "SELECT s.id, s.customer_id, s.product_id, p.name AS product_name, \
     p.category AS product_category, p.monthly_fee_cents, s.start_date, s.end_date, s.status, s.service_status, \
     s.roaming_enabled, s.autopay_enabled, p.data_cap_gb, \
     COALESCE(s.speed_tier, p.speed_tier) AS speed_tier \
     FROM subscriptions s JOIN products p ON p.id = s.product_id"
    };
}

/// An invoice with the sum of its successful payments; callers append the `WHERE` clause.
macro_rules! invoice_select {
    () => {
        "SELECT i.id, i.subscription_id, i.invoice_date, i.due_date, \
     i.description, i.amount_cents, \
     (SELECT COALESCE(SUM(amount_cents), 0) FROM payments \
       WHERE invoice_id = i.id AND status = 'successful') AS paid_cents \
     FROM invoices i"
    };
}

mod catalog;
mod customers;
mod load;
mod rows;

use super::*;
use crate::seed::Dataset;

/// Connections in the pool. SQLite serialises writers anyway; a few readers cover two cores.
const POOL_SIZE: u32 = 4;
/// The schema, from `tools-service/migrations/`.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The SQLite store. Cloning shares the pool.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// The database's file name, for `/readyz` (never its path).
    name: String,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        let pool = shared::sqlite::open_file(path, POOL_SIZE, &MIGRATOR)
            .await
            .map_err(backend)?;
        let name = path.file_name().map_or_else(
            || "tools.db".to_owned(),
            |n| n.to_string_lossy().into_owned(),
        );
        Ok(SqliteStore { pool, name })
    }

    /// A private in-memory database (one connection, since each would get its own memory).
    pub async fn in_memory() -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(backend)?
            .foreign_keys(true);
        let pool = shared::sqlite::connect(options, 1, &MIGRATOR)
            .await
            .map_err(backend)?;
        Ok(SqliteStore {
            pool,
            name: ":memory:".to_owned(),
        })
    }
}

fn backend(error: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(error.to_string())
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        backend(error)
    }
}

/// One past the largest id of `table`, inside the caller's write transaction (which holds the
/// database's write lock, so no other writer can take the same id).
async fn next_id(tx: &mut sqlx::SqliteConnection, table: &'static str) -> StoreResult<i64> {
    let sql = format!("SELECT COALESCE(MAX(id), 0) + 1 AS next FROM {table}");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_one(&mut *tx)
        .await?;
    Ok(row.try_get("next")?)
}

#[async_trait]
impl StoreHealth for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn database(&self) -> String {
        self.name.clone()
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

#[async_trait]
impl SeedData for SqliteStore {
    async fn is_empty(&self) -> StoreResult<bool> {
        let row = sqlx::query("SELECT NOT EXISTS (SELECT 1 FROM customers) AS empty")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("empty")?)
    }

    async fn replace_all(&self, data: &Dataset) -> StoreResult<()> {
        load::replace_all(&self.pool, data).await
    }
}
