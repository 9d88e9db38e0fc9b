//! The SQLite backend (`sqlx`, bundled SQLite): the default store, and the only place SQL lives.
//!
//! The database runs in WAL mode so readers never wait for the writer, with foreign keys on and
//! a busy timeout so concurrent writers queue instead of failing. Balance-checking writes run in
//! `BEGIN IMMEDIATE` transactions: the write lock is taken before the balance is read, so two
//! payments to one invoice are serialised by the database and cannot both see the old balance.

use std::{path::Path, str::FromStr};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{
    Row, SqlitePool,
    migrate::Migrator,
    sqlite::{SqliteConnectOptions, SqliteRow},
};

mod load;

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
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        let pool = shared::sqlite::open_file(path, POOL_SIZE, &MIGRATOR)
            .await
            .map_err(backend)?;
        Ok(SqliteStore { pool })
    }

    /// A private in-memory database (one connection, since each would get its own memory).
    pub async fn in_memory() -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(backend)?
            .foreign_keys(true);
        let pool = shared::sqlite::connect(options, 1, &MIGRATOR)
            .await
            .map_err(backend)?;
        Ok(SqliteStore { pool })
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

/// Reads a text column holding one of a closed set of values.
fn enum_col<T: FromStr<Err = UnknownValue>>(row: &SqliteRow, col: &str) -> StoreResult<T> {
    let text: String = row.try_get(col)?;
    text.parse().map_err(|e: UnknownValue| backend(e))
}

fn money(row: &SqliteRow, col: &str) -> StoreResult<Money> {
    Ok(Money::from_cents(row.try_get(col)?))
}

/// Columns of a full customer row.
macro_rules! customer_columns {
    () => {
        "id, first_name, last_name, email, phone, address, date_of_birth, \
                                loyalty_level, joined_on"
    };
}

fn customer(row: &SqliteRow) -> StoreResult<Customer> {
    Ok(Customer {
        id: row.try_get("id")?,
        first_name: row.try_get("first_name")?,
        last_name: row.try_get("last_name")?,
        email: row.try_get("email")?,
        phone: row.try_get("phone")?,
        address: row.try_get("address")?,
        date_of_birth: row.try_get("date_of_birth")?,
        loyalty_level: enum_col(row, "loyalty_level")?,
        joined_on: row.try_get("joined_on")?,
    })
}

fn product(row: &SqliteRow) -> StoreResult<Product> {
    Ok(Product {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        category: enum_col(row, "category")?,
        description: row.try_get("description")?,
        monthly_fee: money(row, "monthly_fee_cents")?,
        data_cap_gb: row.try_get("data_cap_gb")?,
        overage_per_gb: row
            .try_get::<Option<i64>, _>("overage_per_gb_cents")?
            .map(Money::from_cents),
        speed_tier: row.try_get("speed_tier")?,
    })
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

fn subscription(row: &SqliteRow) -> StoreResult<Subscription> {
    Ok(Subscription {
        id: row.try_get("id")?,
        customer_id: row.try_get("customer_id")?,
        product_id: row.try_get("product_id")?,
        product_name: row.try_get("product_name")?,
        product_category: enum_col(row, "product_category")?,
        monthly_fee: money(row, "monthly_fee_cents")?,
        start_date: row.try_get("start_date")?,
        end_date: row.try_get("end_date")?,
        status: enum_col(row, "status")?,
        service_status: enum_col(row, "service_status")?,
        roaming_enabled: row.try_get("roaming_enabled")?,
        autopay_enabled: row.try_get("autopay_enabled")?,
        data_cap_gb: row.try_get("data_cap_gb")?,
        speed_tier: row.try_get("speed_tier")?,
    })
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

fn invoice(row: &SqliteRow, today: NaiveDate) -> StoreResult<Invoice> {
    Ok(Invoice::new(
        row.try_get("id")?,
        row.try_get("subscription_id")?,
        row.try_get("invoice_date")?,
        row.try_get("due_date")?,
        row.try_get("description")?,
        money(row, "amount_cents")?,
        money(row, "paid_cents")?,
        today,
    ))
}

fn payment(row: &SqliteRow) -> StoreResult<Payment> {
    Ok(Payment {
        id: row.try_get("id")?,
        invoice_id: row.try_get("invoice_id")?,
        paid_at: row.try_get("paid_at")?,
        amount: money(row, "amount_cents")?,
        method: enum_col(row, "method")?,
        status: enum_col(row, "status")?,
    })
}

fn security_log(row: &SqliteRow) -> StoreResult<SecurityLog> {
    Ok(SecurityLog {
        id: row.try_get("id")?,
        customer_id: row.try_get("customer_id")?,
        event_type: enum_col(row, "event_type")?,
        occurred_at: row.try_get("occurred_at")?,
        description: row.try_get("description")?,
    })
}

fn ticket(row: &SqliteRow) -> StoreResult<SupportTicket> {
    Ok(SupportTicket {
        id: row.try_get("id")?,
        customer_id: row.try_get("customer_id")?,
        subscription_id: row.try_get("subscription_id")?,
        category: enum_col(row, "category")?,
        priority: enum_col(row, "priority")?,
        status: enum_col(row, "status")?,
        subject: row.try_get("subject")?,
        description: row.try_get("description")?,
        opened_at: row.try_get("opened_at")?,
        closed_at: row.try_get("closed_at")?,
    })
}

fn all<T>(rows: Vec<SqliteRow>, map: impl Fn(&SqliteRow) -> StoreResult<T>) -> StoreResult<Vec<T>> {
    rows.iter().map(map).collect()
}

/// Encodes an embedding as little-endian f32s.
fn vector_to_blob(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn blob_to_vector(blob: &[u8]) -> Vec<f32> {
    blob.chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn is_empty(&self) -> StoreResult<bool> {
        let row = sqlx::query("SELECT NOT EXISTS (SELECT 1 FROM customers) AS empty")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("empty")?)
    }

    async fn replace_all(&self, data: &Dataset) -> StoreResult<()> {
        load::replace_all(&self.pool, data).await
    }

    async fn customers_after(&self, after: i64, limit: u32) -> StoreResult<Vec<CustomerSummary>> {
        let rows = sqlx::query(
            "SELECT id, first_name, last_name, email, loyalty_level FROM customers \
             WHERE id > ? ORDER BY id LIMIT ?",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        all(rows, |row| {
            Ok(CustomerSummary {
                id: row.try_get("id")?,
                first_name: row.try_get("first_name")?,
                last_name: row.try_get("last_name")?,
                email: row.try_get("email")?,
                loyalty_level: enum_col(row, "loyalty_level")?,
            })
        })
    }

    async fn customer(&self, id: i64) -> StoreResult<Option<Customer>> {
        let sql = concat!(
            "SELECT ",
            customer_columns!(),
            " FROM customers WHERE id = ?"
        );
        let row = sqlx::query(sql).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(customer).transpose()
    }

    async fn subscriptions_of_customer(&self, customer_id: i64) -> StoreResult<Vec<Subscription>> {
        let sql = concat!(
            subscription_select!(),
            " WHERE s.customer_id = ? ORDER BY s.id"
        );
        let rows = sqlx::query(sql)
            .bind(customer_id)
            .fetch_all(&self.pool)
            .await?;
        all(rows, subscription)
    }

    async fn subscription(&self, id: i64) -> StoreResult<Option<Subscription>> {
        let sql = concat!(subscription_select!(), " WHERE s.id = ?");
        let row = sqlx::query(sql).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(subscription).transpose()
    }

    async fn invoices_of_subscription(
        &self,
        subscription_id: i64,
        today: NaiveDate,
    ) -> StoreResult<Vec<Invoice>> {
        let sql = concat!(
            invoice_select!(),
            " WHERE i.subscription_id = ? ORDER BY i.invoice_date DESC, i.id DESC"
        );
        let rows = sqlx::query(sql)
            .bind(subscription_id)
            .fetch_all(&self.pool)
            .await?;
        all(rows, |row| invoice(row, today))
    }

    async fn invoice(&self, id: i64, today: NaiveDate) -> StoreResult<Option<Invoice>> {
        let sql = concat!(invoice_select!(), " WHERE i.id = ?");
        let row = sqlx::query(sql).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(|row| invoice(row, today)).transpose()
    }

    async fn payments_of_invoice(&self, invoice_id: i64) -> StoreResult<Vec<Payment>> {
        let rows = sqlx::query(
            "SELECT id, invoice_id, paid_at, amount_cents, method, status FROM payments \
             WHERE invoice_id = ? ORDER BY paid_at, id",
        )
        .bind(invoice_id)
        .fetch_all(&self.pool)
        .await?;
        all(rows, payment)
    }

    async fn pay_invoice(&self, new: NewPayment, today: NaiveDate) -> StoreResult<PaymentReceipt> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let sql = concat!(invoice_select!(), " WHERE i.id = ?");
        let row = sqlx::query(sql)
            .bind(new.invoice_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound {
                entity: "invoice",
                id: new.invoice_id,
            })?;
        let before = invoice(&row, today)?;
        if !before.outstanding.is_positive() {
            return Err(StoreError::AlreadyPaid {
                invoice_id: new.invoice_id,
            });
        }
        if new.amount > before.outstanding {
            return Err(StoreError::Overpayment {
                invoice_id: new.invoice_id,
                amount: new.amount,
                outstanding: before.outstanding,
            });
        }
        let id: i64 = sqlx::query(
            "INSERT INTO payments (invoice_id, paid_at, amount_cents, method, status) \
             VALUES (?, ?, ?, ?, 'successful') RETURNING id",
        )
        .bind(new.invoice_id)
        .bind(new.paid_at)
        .bind(new.amount.cents())
        .bind(new.method.as_str())
        .fetch_one(&mut *tx)
        .await?
        .try_get("id")?;
        let row = sqlx::query(sql)
            .bind(new.invoice_id)
            .fetch_one(&mut *tx)
            .await?;
        let after = invoice(&row, today)?;
        tx.commit().await?;
        Ok(PaymentReceipt {
            payment: Payment {
                id,
                invoice_id: new.invoice_id,
                paid_at: new.paid_at,
                amount: new.amount,
                method: new.method,
                status: PaymentStatus::Successful,
            },
            invoice: after,
        })
    }

    async fn data_usage(
        &self,
        subscription_id: i64,
        from: NaiveDate,
        to: NaiveDate,
    ) -> StoreResult<Vec<DataUsage>> {
        let rows = sqlx::query(
            "SELECT usage_date, data_used_mb, voice_minutes, sms_count FROM data_usage \
             WHERE subscription_id = ? AND usage_date BETWEEN ? AND ? ORDER BY usage_date",
        )
        .bind(subscription_id)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        all(rows, |row| {
            Ok(DataUsage {
                usage_date: row.try_get("usage_date")?,
                data_used_mb: row.try_get("data_used_mb")?,
                voice_minutes: row.try_get("voice_minutes")?,
                sms_count: row.try_get("sms_count")?,
            })
        })
    }

    async fn promotions(&self) -> StoreResult<Vec<Promotion>> {
        let rows = sqlx::query(
            "SELECT id, name, description, product_id, min_loyalty_level, discount_percent, \
             start_date, end_date FROM promotions ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        all(rows, |row| {
            Ok(Promotion {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                description: row.try_get("description")?,
                product_id: row.try_get("product_id")?,
                min_loyalty_level: enum_col(row, "min_loyalty_level")?,
                discount_percent: row.try_get("discount_percent")?,
                start_date: row.try_get("start_date")?,
                end_date: row.try_get("end_date")?,
            })
        })
    }

    async fn products(&self, category: Option<ProductCategory>) -> StoreResult<Vec<Product>> {
        let rows =
            sqlx::query("SELECT * FROM products WHERE ?1 IS NULL OR category = ?1 ORDER BY id")
                .bind(category.map(ProductCategory::as_str))
                .fetch_all(&self.pool)
                .await?;
        all(rows, product)
    }

    async fn product(&self, id: i64) -> StoreResult<Option<Product>> {
        let row = sqlx::query("SELECT * FROM products WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(product).transpose()
    }

    async fn update_subscription(
        &self,
        id: i64,
        update: SubscriptionUpdate,
    ) -> StoreResult<Subscription> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        if let Some(product_id) = update.product_id {
            let exists = sqlx::query("SELECT 1 FROM products WHERE id = ?")
                .bind(product_id)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_none() {
                return Err(StoreError::NotFound {
                    entity: "product",
                    id: product_id,
                });
            }
        }
        let done = sqlx::query(
            "UPDATE subscriptions SET product_id = COALESCE(?, product_id), \
             status = COALESCE(?, status), roaming_enabled = COALESCE(?, roaming_enabled), \
             autopay_enabled = COALESCE(?, autopay_enabled) WHERE id = ?",
        )
        .bind(update.product_id)
        .bind(update.status.map(SubscriptionStatus::as_str))
        .bind(update.roaming_enabled)
        .bind(update.autopay_enabled)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                entity: "subscription",
                id,
            });
        }
        let sql = concat!(subscription_select!(), " WHERE s.id = ?");
        let row = sqlx::query(sql).bind(id).fetch_one(&mut *tx).await?;
        let after = subscription(&row)?;
        tx.commit().await?;
        Ok(after)
    }

    async fn security_logs(&self, customer_id: i64, limit: u32) -> StoreResult<Vec<SecurityLog>> {
        let rows = sqlx::query(
            "SELECT id, customer_id, event_type, occurred_at, description FROM security_logs \
             WHERE customer_id = ? ORDER BY occurred_at DESC, id DESC LIMIT ?",
        )
        .bind(customer_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        all(rows, security_log)
    }

    async fn unlock_account(
        &self,
        customer_id: i64,
        at: DateTime<Utc>,
        description: &str,
    ) -> StoreResult<UnlockReceipt> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let exists = sqlx::query("SELECT 1 FROM customers WHERE id = ?")
            .bind(customer_id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound {
                entity: "customer",
                id: customer_id,
            });
        }
        // Locked means: the latest lock/unlock event is a lock.
        let last = sqlx::query(
            "SELECT event_type, occurred_at FROM security_logs WHERE customer_id = ? \
             AND event_type IN ('account_locked', 'account_unlocked') \
             ORDER BY occurred_at DESC, id DESC LIMIT 1",
        )
        .bind(customer_id)
        .fetch_optional(&mut *tx)
        .await?;
        let locked_at: DateTime<Utc> = match last {
            Some(row) if row.try_get::<String, _>("event_type")? == "account_locked" => {
                row.try_get("occurred_at")?
            }
            _ => return Err(StoreError::NotLocked { customer_id }),
        };
        let id: i64 = sqlx::query(
            "INSERT INTO security_logs (customer_id, event_type, occurred_at, description) \
             VALUES (?, 'account_unlocked', ?, ?) RETURNING id",
        )
        .bind(customer_id)
        .bind(at)
        .bind(description)
        .fetch_one(&mut *tx)
        .await?
        .try_get("id")?;
        tx.commit().await?;
        Ok(UnlockReceipt {
            locked_at,
            unlocked: SecurityLog {
                id,
                customer_id,
                event_type: SecurityEventType::AccountUnlocked,
                occurred_at: at,
                description: description.to_owned(),
            },
        })
    }

    async fn orders_of_customer(&self, customer_id: i64) -> StoreResult<Vec<Order>> {
        let rows = sqlx::query(
            "SELECT id, customer_id, product_id, item, order_date, amount_cents, status, \
             returned_on FROM orders WHERE customer_id = ? ORDER BY order_date DESC, id DESC",
        )
        .bind(customer_id)
        .fetch_all(&self.pool)
        .await?;
        all(rows, |row| {
            Ok(Order {
                id: row.try_get("id")?,
                customer_id: row.try_get("customer_id")?,
                product_id: row.try_get("product_id")?,
                item: row.try_get("item")?,
                order_date: row.try_get("order_date")?,
                amount: money(row, "amount_cents")?,
                status: enum_col(row, "status")?,
                returned_on: row.try_get("returned_on")?,
            })
        })
    }

    async fn tickets_of_customer(
        &self,
        customer_id: i64,
        open_only: bool,
    ) -> StoreResult<Vec<SupportTicket>> {
        let rows = sqlx::query(
            "SELECT * FROM support_tickets WHERE customer_id = ? \
             AND (NOT ? OR status IN ('open', 'in_progress')) ORDER BY opened_at DESC, id DESC",
        )
        .bind(customer_id)
        .bind(open_only)
        .fetch_all(&self.pool)
        .await?;
        all(rows, ticket)
    }

    async fn create_ticket(&self, new: NewTicket) -> StoreResult<SupportTicket> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let exists = sqlx::query("SELECT 1 FROM customers WHERE id = ?")
            .bind(new.customer_id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound {
                entity: "customer",
                id: new.customer_id,
            });
        }
        if let Some(sub_id) = new.subscription_id {
            let owner: Option<i64> =
                sqlx::query("SELECT customer_id FROM subscriptions WHERE id = ?")
                    .bind(sub_id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|row| row.try_get("customer_id"))
                    .transpose()?;
            match owner {
                None => {
                    return Err(StoreError::NotFound {
                        entity: "subscription",
                        id: sub_id,
                    });
                }
                Some(owner) if owner != new.customer_id => {
                    return Err(StoreError::Invalid(format!(
                        "subscription {sub_id} does not belong to customer {}",
                        new.customer_id
                    )));
                }
                Some(_) => {}
            }
        }
        let ticket_row = SupportTicket {
            id: 0,
            customer_id: new.customer_id,
            subscription_id: new.subscription_id,
            category: new.category,
            priority: new.priority,
            status: TicketStatus::Open,
            subject: new.subject,
            description: new.description,
            opened_at: new.opened_at,
            closed_at: None,
        };
        let id = insert_ticket(&mut tx, None, &ticket_row).await?;
        tx.commit().await?;
        Ok(SupportTicket { id, ..ticket_row })
    }

    async fn incidents_of_subscription(
        &self,
        subscription_id: i64,
    ) -> StoreResult<Vec<ServiceIncident>> {
        let rows = sqlx::query(
            "SELECT id, subscription_id, reported_at, description, status FROM service_incidents \
             WHERE subscription_id = ? ORDER BY reported_at DESC, id DESC",
        )
        .bind(subscription_id)
        .fetch_all(&self.pool)
        .await?;
        all(rows, |row| {
            Ok(ServiceIncident {
                id: row.try_get("id")?,
                subscription_id: row.try_get("subscription_id")?,
                reported_at: row.try_get("reported_at")?,
                description: row.try_get("description")?,
                status: enum_col(row, "status")?,
            })
        })
    }

    async fn knowledge_documents(&self) -> StoreResult<Vec<KnowledgeDocument>> {
        let rows =
            sqlx::query("SELECT id, title, category, content FROM knowledge_documents ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
        all(rows, |row| {
            Ok(KnowledgeDocument {
                id: row.try_get("id")?,
                title: row.try_get("title")?,
                category: row.try_get("category")?,
                content: row.try_get("content")?,
            })
        })
    }

    async fn document_embeddings(&self, model: &str) -> StoreResult<Vec<(i64, Vec<f32>)>> {
        let rows = sqlx::query(
            "SELECT document_id, vector FROM document_embeddings WHERE model = ? ORDER BY document_id",
        )
        .bind(model)
        .fetch_all(&self.pool)
        .await?;
        all(rows, |row| {
            let blob: Vec<u8> = row.try_get("vector")?;
            Ok((row.try_get("document_id")?, blob_to_vector(&blob)))
        })
    }

    async fn save_document_embeddings(
        &self,
        model: &str,
        embeddings: &[(i64, Vec<f32>)],
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        for (document_id, vector) in embeddings {
            sqlx::query(
                "INSERT OR REPLACE INTO document_embeddings (document_id, model, vector) \
                 VALUES (?, ?, ?)",
            )
            .bind(document_id)
            .bind(model)
            .bind(vector_to_blob(vector))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

async fn insert_ticket(
    tx: &mut sqlx::SqliteConnection,
    id: Option<i64>,
    t: &SupportTicket,
) -> StoreResult<i64> {
    let row = sqlx::query(
        "INSERT INTO support_tickets (id, customer_id, subscription_id, category, priority, \
         status, subject, description, opened_at, closed_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(id)
    .bind(t.customer_id)
    .bind(t.subscription_id)
    .bind(t.category.as_str())
    .bind(t.priority.as_str())
    .bind(t.status.as_str())
    .bind(&t.subject)
    .bind(&t.description)
    .bind(t.opened_at)
    .bind(t.closed_at)
    .fetch_one(&mut *tx)
    .await?;
    Ok(row.try_get("id")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_round_trip_through_blobs() {
        let v = vec![0.25_f32, -1.5, 3.0e-7];
        assert_eq!(blob_to_vector(&vector_to_blob(&v)), v);
    }
}
