//! Loading a whole data set into SQLite in one transaction (seeding and re-seeding).

use sqlx::SqlitePool;

use super::customers::{insert_payment, insert_security_log, insert_ticket};
use crate::{money::Money, seed::Dataset, store::StoreResult};

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
    for c in &data.customers {
        sqlx::query(
            "INSERT INTO customers (id, first_name, last_name, email, phone, address, \
             date_of_birth, loyalty_level, joined_on) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(c.id)
        .bind(&c.first_name)
        .bind(&c.last_name)
        .bind(&c.email)
        .bind(&c.phone)
        .bind(&c.address)
        .bind(c.date_of_birth)
        .bind(c.loyalty_level.as_str())
        .bind(c.joined_on)
        .execute(&mut *tx)
        .await?;
    }
    for p in &data.products {
        sqlx::query(
            "INSERT INTO products (id, name, category, description, monthly_fee_cents, \
             data_cap_gb, overage_per_gb_cents, speed_tier) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(p.id)
        .bind(&p.name)
        .bind(p.category.as_str())
        .bind(&p.description)
        .bind(p.monthly_fee.cents())
        .bind(p.data_cap_gb)
        .bind(p.overage_per_gb.map(Money::cents))
        .bind(&p.speed_tier)
        .execute(&mut *tx)
        .await?;
    }
    for s in &data.subscriptions {
        sqlx::query(
            "INSERT INTO subscriptions (id, customer_id, product_id, start_date, end_date, \
             status, service_status, roaming_enabled, autopay_enabled, speed_tier) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(s.id)
        .bind(s.customer_id)
        .bind(s.product_id)
        .bind(s.start_date)
        .bind(s.end_date)
        .bind(s.status.as_str())
        .bind(s.service_status.as_str())
        .bind(s.roaming_enabled)
        .bind(s.autopay_enabled)
        .bind(&s.speed_tier)
        .execute(&mut *tx)
        .await?;
    }
    for i in &data.invoices {
        sqlx::query(
            "INSERT INTO invoices (id, subscription_id, invoice_date, due_date, description, \
             amount_cents) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(i.id)
        .bind(i.subscription_id)
        .bind(i.invoice_date)
        .bind(i.due_date)
        .bind(&i.description)
        .bind(i.amount.cents())
        .execute(&mut *tx)
        .await?;
    }
    for p in &data.payments {
        insert_payment(&mut tx, p).await?;
    }
    for p in &data.promotions {
        sqlx::query(
            "INSERT INTO promotions (id, name, description, product_id, min_loyalty_level, \
             discount_percent, start_date, end_date) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(p.id)
        .bind(&p.name)
        .bind(&p.description)
        .bind(p.product_id)
        .bind(p.min_loyalty_level.as_str())
        .bind(p.discount_percent)
        .bind(p.start_date)
        .bind(p.end_date)
        .execute(&mut *tx)
        .await?;
    }
    for l in &data.security_logs {
        insert_security_log(&mut tx, l).await?;
    }
    for o in &data.orders {
        sqlx::query(
            "INSERT INTO orders (id, customer_id, product_id, item, order_date, amount_cents, \
             status, returned_on) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(o.id)
        .bind(o.customer_id)
        .bind(o.product_id)
        .bind(&o.item)
        .bind(o.order_date)
        .bind(o.amount.cents())
        .bind(o.status.as_str())
        .bind(o.returned_on)
        .execute(&mut *tx)
        .await?;
    }
    for t in &data.tickets {
        insert_ticket(&mut tx, Some(t.id), t).await?;
    }
    for u in &data.usage {
        sqlx::query(
            "INSERT INTO data_usage (subscription_id, usage_date, data_used_mb, \
             voice_minutes, sms_count) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(u.subscription_id)
        .bind(u.usage.usage_date)
        .bind(u.usage.data_used_mb)
        .bind(u.usage.voice_minutes)
        .bind(u.usage.sms_count)
        .execute(&mut *tx)
        .await?;
    }
    for i in &data.incidents {
        sqlx::query(
            "INSERT INTO service_incidents (id, subscription_id, reported_at, description, \
             status) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(i.id)
        .bind(i.subscription_id)
        .bind(i.reported_at)
        .bind(&i.description)
        .bind(i.status.as_str())
        .execute(&mut *tx)
        .await?;
    }
    for d in &data.documents {
        sqlx::query(
            "INSERT INTO knowledge_documents (id, title, category, content) VALUES (?, ?, ?, ?)",
        )
        .bind(d.id)
        .bind(&d.title)
        .bind(&d.category)
        .bind(&d.content)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
