//! Loading a whole data set into SQLite in one transaction (seeding and re-seeding).

use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqlitePool, query_builder::Separated};

use crate::{
    domain::{Payment, SecurityLog},
    money::Money,
    seed::Dataset,
    store::StoreResult,
};

/// Bound parameters per statement, at most: SQLite (3.32 on) takes 32,766.
const MAX_PARAMETERS: usize = 30_000;
/// Rows per statement, at most: beyond a few hundred, longer statements gain nothing.
const MAX_ROWS: usize = 500;

/// Inserts `rows` into `into` (`table (column, ...)`), many rows per statement: one statement
/// per row spends most of its time on the round trip to the database thread, which for 100,000
/// customers (about ten million rows) took minutes.
pub(super) async fn insert_rows<T>(
    tx: &mut SqliteConnection,
    into: &str,
    rows: &[T],
    mut bind: impl FnMut(&mut Separated<'_, Sqlite, &'static str>, &T),
) -> StoreResult<()> {
    let columns = into.matches(',').count() + 1;
    let per_statement = (MAX_PARAMETERS / columns).clamp(1, MAX_ROWS);
    for chunk in rows.chunks(per_statement) {
        let mut statement = QueryBuilder::<Sqlite>::new(format!("INSERT INTO {into} "));
        statement.push_values(chunk, |mut row, item| bind(&mut row, item));
        statement.build().execute(&mut *tx).await?;
    }
    Ok(())
}

/// The payments table's columns, as seeding and a payment write fill them.
pub(super) const PAYMENTS: &str =
    "payments (id, invoice_id, paid_at, amount_cents, method, status)";

pub(super) fn bind_payment(row: &mut Separated<'_, Sqlite, &'static str>, p: &Payment) {
    row.push_bind(p.id)
        .push_bind(p.invoice_id)
        .push_bind(p.paid_at)
        .push_bind(p.amount.cents())
        .push_bind(p.method.as_str())
        .push_bind(p.status.as_str());
}

/// The security log's columns, as seeding and an unlock fill them.
pub(super) const SECURITY_LOGS: &str =
    "security_logs (id, customer_id, event_type, occurred_at, description)";

pub(super) fn bind_security_log(row: &mut Separated<'_, Sqlite, &'static str>, l: &SecurityLog) {
    row.push_bind(l.id)
        .push_bind(l.customer_id)
        .push_bind(l.event_type.as_str())
        .push_bind(l.occurred_at)
        .push_bind(&l.description);
}

/// Replaces every row of every table with `data`; on error nothing changes.
pub(super) async fn replace_all(pool: &SqlitePool, data: &Dataset) -> StoreResult<()> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    for table in [
        "document_embeddings",
        "knowledge_documents",
        "service_incidents",
        "data_usage",
        "support_tickets",
        "orders",
        "security_logs",
        "promotions",
        "payments",
        "invoices",
        "subscriptions",
        "products",
        "customers",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
            .execute(&mut *tx)
            .await?;
    }
    let conn = &mut *tx;
    insert_rows(
        conn,
        "customers (id, first_name, last_name, email, phone, address, date_of_birth, \
         loyalty_level, joined_on)",
        &data.customers,
        |row, c| {
            row.push_bind(c.id)
                .push_bind(&c.first_name)
                .push_bind(&c.last_name)
                .push_bind(&c.email)
                .push_bind(&c.phone)
                .push_bind(&c.address)
                .push_bind(c.date_of_birth)
                .push_bind(c.loyalty_level.as_str())
                .push_bind(c.joined_on);
        },
    )
    .await?;
    insert_rows(
        conn,
        "products (id, name, category, description, monthly_fee_cents, data_cap_gb, \
         overage_per_gb_cents, speed_tier)",
        &data.products,
        |row, p| {
            row.push_bind(p.id)
                .push_bind(&p.name)
                .push_bind(p.category.as_str())
                .push_bind(&p.description)
                .push_bind(p.monthly_fee.cents())
                .push_bind(p.data_cap_gb)
                .push_bind(p.overage_per_gb.map(Money::cents))
                .push_bind(&p.speed_tier);
        },
    )
    .await?;
    insert_rows(
        conn,
        "subscriptions (id, customer_id, product_id, start_date, end_date, status, \
         service_status, roaming_enabled, autopay_enabled, speed_tier)",
        &data.subscriptions,
        |row, s| {
            row.push_bind(s.id)
                .push_bind(s.customer_id)
                .push_bind(s.product_id)
                .push_bind(s.start_date)
                .push_bind(s.end_date)
                .push_bind(s.status.as_str())
                .push_bind(s.service_status.as_str())
                .push_bind(s.roaming_enabled)
                .push_bind(s.autopay_enabled)
                .push_bind(&s.speed_tier);
        },
    )
    .await?;
    insert_rows(
        conn,
        "invoices (id, subscription_id, invoice_date, due_date, description, amount_cents)",
        &data.invoices,
        |row, i| {
            row.push_bind(i.id)
                .push_bind(i.subscription_id)
                .push_bind(i.invoice_date)
                .push_bind(i.due_date)
                .push_bind(&i.description)
                .push_bind(i.amount.cents());
        },
    )
    .await?;
    insert_rows(conn, PAYMENTS, &data.payments, bind_payment).await?;
    insert_rows(
        conn,
        "promotions (id, name, description, product_id, min_loyalty_level, discount_percent, \
         start_date, end_date)",
        &data.promotions,
        |row, p| {
            row.push_bind(p.id)
                .push_bind(&p.name)
                .push_bind(&p.description)
                .push_bind(p.product_id)
                .push_bind(p.min_loyalty_level.as_str())
                .push_bind(p.discount_percent)
                .push_bind(p.start_date)
                .push_bind(p.end_date);
        },
    )
    .await?;
    insert_rows(conn, SECURITY_LOGS, &data.security_logs, bind_security_log).await?;
    insert_rows(
        conn,
        "orders (id, customer_id, product_id, item, order_date, amount_cents, status, \
         returned_on)",
        &data.orders,
        |row, o| {
            row.push_bind(o.id)
                .push_bind(o.customer_id)
                .push_bind(o.product_id)
                .push_bind(&o.item)
                .push_bind(o.order_date)
                .push_bind(o.amount.cents())
                .push_bind(o.status.as_str())
                .push_bind(o.returned_on);
        },
    )
    .await?;
    insert_rows(
        conn,
        "support_tickets (id, customer_id, subscription_id, category, priority, status, \
         subject, description, opened_at, closed_at)",
        &data.tickets,
        |row, t| {
            row.push_bind(t.id)
                .push_bind(t.customer_id)
                .push_bind(t.subscription_id)
                .push_bind(t.category.as_str())
                .push_bind(t.priority.as_str())
                .push_bind(t.status.as_str())
                .push_bind(&t.subject)
                .push_bind(&t.description)
                .push_bind(t.opened_at)
                .push_bind(t.closed_at);
        },
    )
    .await?;
    insert_rows(
        conn,
        "data_usage (subscription_id, usage_date, data_used_mb, voice_minutes, sms_count)",
        &data.usage,
        |row, u| {
            row.push_bind(u.subscription_id)
                .push_bind(u.usage.usage_date)
                .push_bind(u.usage.data_used_mb)
                .push_bind(u.usage.voice_minutes)
                .push_bind(u.usage.sms_count);
        },
    )
    .await?;
    insert_rows(
        conn,
        "service_incidents (id, subscription_id, reported_at, description, status)",
        &data.incidents,
        |row, i| {
            row.push_bind(i.id)
                .push_bind(i.subscription_id)
                .push_bind(i.reported_at)
                .push_bind(&i.description)
                .push_bind(i.status.as_str());
        },
    )
    .await?;
    insert_rows(
        conn,
        "knowledge_documents (id, title, category, content)",
        &data.documents,
        |row, d| {
            row.push_bind(d.id)
                .push_bind(&d.title)
                .push_bind(&d.category)
                .push_bind(&d.content);
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
