//! Rows to domain values: one mapper per entity, shared by every query that reads it.

use std::str::FromStr;

use chrono::NaiveDate;
use sqlx::{Row, sqlite::SqliteRow};

use super::backend;
use crate::{domain::*, money::Money, store::StoreResult};

/// Reads a text column holding one of a closed set of values.
pub(super) fn enum_col<T: FromStr<Err = UnknownValue>>(
    row: &SqliteRow,
    col: &str,
) -> StoreResult<T> {
    let text: String = row.try_get(col)?;
    text.parse().map_err(|e: UnknownValue| backend(e))
}

pub(super) fn money(row: &SqliteRow, col: &str) -> StoreResult<Money> {
    Ok(Money::from_cents(row.try_get(col)?))
}

pub(super) fn customer(row: &SqliteRow) -> StoreResult<Customer> {
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

pub(super) fn product(row: &SqliteRow) -> StoreResult<Product> {
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

pub(super) fn subscription(row: &SqliteRow) -> StoreResult<Subscription> {
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

pub(super) fn invoice(row: &SqliteRow, today: NaiveDate) -> StoreResult<Invoice> {
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

pub(super) fn payment(row: &SqliteRow) -> StoreResult<Payment> {
    Ok(Payment {
        id: row.try_get("id")?,
        invoice_id: row.try_get("invoice_id")?,
        paid_at: row.try_get("paid_at")?,
        amount: money(row, "amount_cents")?,
        method: enum_col(row, "method")?,
        status: enum_col(row, "status")?,
    })
}

pub(super) fn security_log(row: &SqliteRow) -> StoreResult<SecurityLog> {
    Ok(SecurityLog {
        id: row.try_get("id")?,
        customer_id: row.try_get("customer_id")?,
        event_type: enum_col(row, "event_type")?,
        occurred_at: row.try_get("occurred_at")?,
        description: row.try_get("description")?,
    })
}

pub(super) fn ticket(row: &SqliteRow) -> StoreResult<SupportTicket> {
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

pub(super) fn all<T>(
    rows: Vec<SqliteRow>,
    map: impl Fn(&SqliteRow) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    rows.iter().map(map).collect()
}

/// Encodes an embedding as little-endian f32s.
pub(super) fn vector_to_blob(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub(super) fn blob_to_vector(blob: &[u8]) -> Vec<f32> {
    blob.chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

pub(super) fn data_usage(row: &SqliteRow) -> StoreResult<DataUsage> {
    Ok(DataUsage {
        usage_date: row.try_get("usage_date")?,
        data_used_mb: row.try_get("data_used_mb")?,
        voice_minutes: row.try_get("voice_minutes")?,
        sms_count: row.try_get("sms_count")?,
    })
}

pub(super) fn promotion(row: &SqliteRow) -> StoreResult<Promotion> {
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
}

pub(super) fn order(row: &SqliteRow) -> StoreResult<Order> {
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
}

pub(super) fn incident(row: &SqliteRow) -> StoreResult<ServiceIncident> {
    Ok(ServiceIncident {
        id: row.try_get("id")?,
        subscription_id: row.try_get("subscription_id")?,
        reported_at: row.try_get("reported_at")?,
        description: row.try_get("description")?,
        status: enum_col(row, "status")?,
    })
}

pub(super) fn customer_summary(row: &SqliteRow) -> StoreResult<CustomerSummary> {
    Ok(CustomerSummary {
        id: row.try_get("id")?,
        first_name: row.try_get("first_name")?,
        last_name: row.try_get("last_name")?,
        email: row.try_get("email")?,
        loyalty_level: enum_col(row, "loyalty_level")?,
    })
}

pub(super) fn knowledge_document(row: &SqliteRow) -> StoreResult<KnowledgeDocument> {
    Ok(KnowledgeDocument {
        id: row.try_get("id")?,
        title: row.try_get("title")?,
        category: row.try_get("category")?,
        content: row.try_get("content")?,
    })
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
