//! The customer data in SQLite. Every query names the customer, as a partitioned store needs
//! it to: a subscription, invoice or payment of another customer is not found here either.

use async_trait::async_trait;
use chrono::NaiveDate;
use sqlx::Row;

use super::{SqliteStore, load, next_id, rows::*};
use crate::{
    domain::{
        writes::{self, PaymentReceipt, UnlockReceipt},
        *,
    },
    store::*,
};

/// The cursor of the customer list: `after:<last id>`, readable in logs. Any `i64` after the
/// prefix is a position (a negative one starts at the first customer).
const CURSOR_PREFIX: &str = "after:";

/// An invoice with the sum of its successful payments, joined with its subscription so that
/// the customer can be named; callers append more of the `WHERE` clause.
macro_rules! customer_invoice_select {
    () => {
        concat!(
            invoice_select!(),
            " JOIN subscriptions s ON s.id = i.subscription_id WHERE s.customer_id = ?"
        )
    };
}

async fn customer_exists(tx: &mut sqlx::SqliteConnection, customer: i64) -> StoreResult<()> {
    let exists = sqlx::query("SELECT 1 FROM customers WHERE id = ?")
        .bind(customer)
        .fetch_optional(&mut *tx)
        .await?;
    match exists {
        Some(_) => Ok(()),
        None => Err(StoreError::NotFound {
            entity: "customer",
            id: customer,
        }),
    }
}

async fn owner_of_subscription(
    executor: impl sqlx::SqliteExecutor<'_>,
    subscription: i64,
) -> StoreResult<Option<i64>> {
    let row = sqlx::query("SELECT customer_id FROM subscriptions WHERE id = ?")
        .bind(subscription)
        .fetch_optional(executor)
        .await?;
    Ok(row.map(|r| r.try_get("customer_id")).transpose()?)
}

#[async_trait]
impl CustomerData for SqliteStore {
    async fn owner(&self, of: Owned) -> StoreResult<Option<i64>> {
        match of {
            Owned::Subscription(id) => owner_of_subscription(&self.pool, id).await,
            Owned::Invoice(id) => {
                let row = sqlx::query(
                    "SELECT s.customer_id FROM invoices i \
                     JOIN subscriptions s ON s.id = i.subscription_id WHERE i.id = ?",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|r| r.try_get("customer_id")).transpose()?)
            }
        }
    }

    async fn customers(
        &self,
        cursor: Option<&str>,
        limit: u32,
    ) -> StoreResult<Page<CustomerSummary>> {
        let after = match cursor {
            None => 0,
            Some(cursor) => cursor
                .strip_prefix(CURSOR_PREFIX)
                .and_then(|id| id.parse::<i64>().ok())
                .ok_or(StoreError::BadCursor)?,
        };
        let rows = sqlx::query(
            "SELECT id, first_name, last_name, email, loyalty_level FROM customers \
             WHERE id > ? ORDER BY id LIMIT ?",
        )
        .bind(after)
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        let mut items = all(rows, customer_summary)?;
        let next = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|c| format!("{CURSOR_PREFIX}{}", c.id))
        } else {
            None
        };
        Ok(Page { items, next })
    }

    async fn customer(&self, customer: i64) -> StoreResult<Option<Customer>> {
        let sql = concat!(
            "SELECT ",
            customer_columns!(),
            " FROM customers WHERE id = ?"
        );
        let row = sqlx::query(sql)
            .bind(customer)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(super::rows::customer).transpose()
    }

    async fn subscriptions(&self, customer: i64) -> StoreResult<Vec<Subscription>> {
        let sql = concat!(
            subscription_select!(),
            " WHERE s.customer_id = ? ORDER BY s.id"
        );
        let rows = sqlx::query(sql)
            .bind(customer)
            .fetch_all(&self.pool)
            .await?;
        all(rows, subscription)
    }

    async fn subscription(&self, customer: i64, id: i64) -> StoreResult<Option<Subscription>> {
        let sql = concat!(
            subscription_select!(),
            " WHERE s.customer_id = ? AND s.id = ?"
        );
        let row = sqlx::query(sql)
            .bind(customer)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(subscription).transpose()
    }

    async fn invoices(
        &self,
        customer: i64,
        subscription: Option<i64>,
        today: NaiveDate,
    ) -> StoreResult<Vec<Invoice>> {
        let sql = concat!(
            customer_invoice_select!(),
            " AND (?2 IS NULL OR i.subscription_id = ?2) ORDER BY i.invoice_date DESC, i.id DESC"
        );
        let rows = sqlx::query(sql)
            .bind(customer)
            .bind(subscription)
            .fetch_all(&self.pool)
            .await?;
        all(rows, |row| invoice(row, today))
    }

    async fn invoice(
        &self,
        customer: i64,
        id: i64,
        today: NaiveDate,
    ) -> StoreResult<Option<Invoice>> {
        let sql = concat!(customer_invoice_select!(), " AND i.id = ?");
        let row = sqlx::query(sql)
            .bind(customer)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(|row| invoice(row, today)).transpose()
    }

    async fn payments(&self, customer: i64, invoices: &[i64]) -> StoreResult<Vec<Payment>> {
        let mut found = Vec::new();
        for batch in invoices.chunks(BATCH_IDS) {
            let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "SELECT p.id, p.invoice_id, p.paid_at, p.amount_cents, p.method, p.status \
                 FROM payments p JOIN invoices i ON i.id = p.invoice_id \
                 JOIN subscriptions s ON s.id = i.subscription_id WHERE s.customer_id = ",
            );
            query.push_bind(customer).push(" AND p.invoice_id IN (");
            let mut ids = query.separated(", ");
            for id in batch {
                ids.push_bind(id);
            }
            query.push(")");
            found.extend(all(query.build().fetch_all(&self.pool).await?, payment)?);
        }
        found.sort_by_key(|p: &Payment| (p.paid_at, p.id));
        Ok(found)
    }

    async fn data_usage(
        &self,
        customer: i64,
        subscription: i64,
        from: NaiveDate,
        to: NaiveDate,
    ) -> StoreResult<Vec<DataUsage>> {
        let rows = sqlx::query(
            "SELECT u.usage_date, u.data_used_mb, u.voice_minutes, u.sms_count FROM data_usage u \
             JOIN subscriptions s ON s.id = u.subscription_id \
             WHERE s.customer_id = ? AND u.subscription_id = ? AND u.usage_date BETWEEN ? AND ? \
             ORDER BY u.usage_date",
        )
        .bind(customer)
        .bind(subscription)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        all(rows, data_usage)
    }

    async fn security_logs(&self, customer: i64, limit: u32) -> StoreResult<Vec<SecurityLog>> {
        let rows = sqlx::query(
            "SELECT id, customer_id, event_type, occurred_at, description FROM security_logs \
             WHERE customer_id = ? ORDER BY occurred_at DESC, id DESC LIMIT ?",
        )
        .bind(customer)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        all(rows, security_log)
    }

    async fn orders(&self, customer: i64) -> StoreResult<Vec<Order>> {
        let rows = sqlx::query(
            "SELECT id, customer_id, product_id, item, order_date, amount_cents, status, \
             returned_on FROM orders WHERE customer_id = ? ORDER BY order_date DESC, id DESC",
        )
        .bind(customer)
        .fetch_all(&self.pool)
        .await?;
        all(rows, order)
    }

    async fn tickets(&self, customer: i64, open_only: bool) -> StoreResult<Vec<SupportTicket>> {
        let rows = sqlx::query(
            "SELECT * FROM support_tickets WHERE customer_id = ? \
             AND (NOT ? OR status IN ('open', 'in_progress')) ORDER BY opened_at DESC, id DESC",
        )
        .bind(customer)
        .bind(open_only)
        .fetch_all(&self.pool)
        .await?;
        all(rows, ticket)
    }

    async fn incidents(
        &self,
        customer: i64,
        subscription: i64,
    ) -> StoreResult<Vec<ServiceIncident>> {
        let rows = sqlx::query(
            "SELECT n.id, n.subscription_id, n.reported_at, n.description, n.status \
             FROM service_incidents n JOIN subscriptions s ON s.id = n.subscription_id \
             WHERE s.customer_id = ? AND n.subscription_id = ? \
             ORDER BY n.reported_at DESC, n.id DESC",
        )
        .bind(customer)
        .bind(subscription)
        .fetch_all(&self.pool)
        .await?;
        all(rows, incident)
    }

    async fn pay_invoice(
        &self,
        customer: i64,
        invoice_id: i64,
        today: NaiveDate,
        decide: &PaymentRule<'_>,
    ) -> StoreResult<PaymentReceipt> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let sql = concat!(customer_invoice_select!(), " AND i.id = ?");
        let row = sqlx::query(sql)
            .bind(customer)
            .bind(invoice_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(Owned::Invoice(invoice_id).not_found())?;
        let before = invoice(&row, today)?;
        let id = next_id(&mut tx, "payments").await?;
        let payment = decide(&before, id)?;
        insert_payment(&mut tx, &payment).await?;
        tx.commit().await?;
        let invoice = writes::after_payment(&before, &payment, today);
        Ok(PaymentReceipt { payment, invoice })
    }

    async fn update_subscription(
        &self,
        customer: i64,
        id: i64,
        decide: &SubscriptionRule<'_>,
    ) -> StoreResult<Subscription> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let sql = concat!(
            subscription_select!(),
            " WHERE s.customer_id = ? AND s.id = ?"
        );
        let row = sqlx::query(sql)
            .bind(customer)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(Owned::Subscription(id).not_found())?;
        let change = decide(&subscription(&row)?)?;
        let update = change.update;
        sqlx::query(
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
        let row = sqlx::query(sql)
            .bind(customer)
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let after = subscription(&row)?;
        tx.commit().await?;
        Ok(after)
    }

    async fn unlock_account(
        &self,
        customer: i64,
        decide: &UnlockRule<'_>,
    ) -> StoreResult<UnlockReceipt> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        customer_exists(&mut tx, customer).await?;
        let latest = sqlx::query(
            "SELECT id, customer_id, event_type, occurred_at, description FROM security_logs \
             WHERE customer_id = ? AND event_type IN ('account_locked', 'account_unlocked') \
             ORDER BY occurred_at DESC, id DESC LIMIT 1",
        )
        .bind(customer)
        .fetch_optional(&mut *tx)
        .await?
        .as_ref()
        .map(security_log)
        .transpose()?;
        let id = next_id(&mut tx, "security_logs").await?;
        let receipt = decide(latest.as_ref(), id)?;
        insert_security_log(&mut tx, &receipt.unlocked).await?;
        tx.commit().await?;
        Ok(receipt)
    }

    async fn create_ticket(
        &self,
        customer: i64,
        subscription: Option<i64>,
        decide: &TicketRule<'_>,
    ) -> StoreResult<SupportTicket> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        customer_exists(&mut tx, customer).await?;
        let owner = match subscription {
            None => None,
            Some(id) => Some(
                owner_of_subscription(&mut *tx, id)
                    .await?
                    .ok_or(Owned::Subscription(id).not_found())?,
            ),
        };
        let id = next_id(&mut tx, "support_tickets").await?;
        let ticket = decide(owner, id)?;
        insert_ticket(&mut tx, Some(ticket.id), &ticket).await?;
        tx.commit().await?;
        Ok(ticket)
    }
}

/// One payment row, as a write records it and as seeding loads it.
pub(super) async fn insert_payment(
    tx: &mut sqlx::SqliteConnection,
    payment: &Payment,
) -> StoreResult<()> {
    load::insert_rows(
        tx,
        load::PAYMENTS,
        std::slice::from_ref(payment),
        load::bind_payment,
    )
    .await
}

/// One security-log entry, as a write records it and as seeding loads it.
pub(super) async fn insert_security_log(
    tx: &mut sqlx::SqliteConnection,
    entry: &SecurityLog,
) -> StoreResult<()> {
    load::insert_rows(
        tx,
        load::SECURITY_LOGS,
        std::slice::from_ref(entry),
        load::bind_security_log,
    )
    .await
}

pub(super) async fn insert_ticket(
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
