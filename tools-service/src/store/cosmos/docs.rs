//! The document model: what each record looks like in Cosmos DB, and its way back to the domain.
//!
//! Every stored record is a [`Doc`]: the envelope Cosmos needs (`id`, partition key `pk`), the
//! record's kind (`type`), its numeric id `n` and, for time series, a sort key `at`, then the
//! record itself under `data`, in the domain's own serde shape wherever that shape holds
//! everything the backend needs. Queries sort on `at` then `n` for every kind, so one composite
//! index serves them all (Cosmos needs one for an `ORDER BY` over two properties).
//!
//! `at` is fixed-width text (dates as `YYYY-MM-DD`, instants with nine fraction digits), because
//! chrono's own RFC 3339 text drops trailing zeros of the fraction and then does not sort.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::{domain::*, money::Money, seed::SubscriptionRow};

pub(super) const CUSTOMER: &str = "customer";
pub(super) const SUBSCRIPTION: &str = "subscription";
pub(super) const INVOICE: &str = "invoice";
pub(super) const PAYMENT: &str = "payment";
pub(super) const USAGE: &str = "usage";
pub(super) const SECURITY_LOG: &str = "security_log";
pub(super) const ORDER: &str = "order";
pub(super) const TICKET: &str = "ticket";
pub(super) const INCIDENT: &str = "incident";
pub(super) const PRODUCT: &str = "product";
pub(super) const PROMOTION: &str = "promotion";
pub(super) const KNOWLEDGE: &str = "knowledge";
pub(super) const EMBEDDING: &str = "embedding";

/// One stored record of any kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Doc<T> {
    pub id: String,
    pub pk: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The record's own numeric id: the tie-breaker of every ordering.
    pub n: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    pub data: T,
}

impl<T> Doc<T> {
    /// A record whose document id is `<kind>-<n>`.
    pub fn new(kind: &'static str, pk: String, n: i64, at: Option<String>, data: T) -> Self {
        Doc::with_id(item_id(kind, n), kind, pk, n, at, data)
    }

    pub fn with_id(
        id: String,
        kind: &'static str,
        pk: String,
        n: i64,
        at: Option<String>,
        data: T,
    ) -> Self {
        Doc {
            id,
            pk,
            kind: kind.to_owned(),
            n,
            at,
            data,
        }
    }
}

/// A document as written: its partition and its id, which every write takes from the document
/// itself (the SDK does not check that an id argument matches the body's).
pub(super) trait Keyed: Serialize {
    fn pk(&self) -> &str;
    fn id(&self) -> &str;
}

/// `Keyed` for documents whose own fields are `pk` and `id` (generics in brackets).
macro_rules! keyed {
    ($([$($generics:tt)*] $name:ty),+) => {
        $(impl<$($generics)*> Keyed for $name {
            fn pk(&self) -> &str {
                &self.pk
            }

            fn id(&self) -> &str {
                &self.id
            }
        })+
    };
}

keyed!([T: Serialize] Doc<T>, [] Lookup, [] Counter);

/// The document id of a record, unique within its container.
pub(super) fn item_id(kind: &str, n: i64) -> String {
    format!("{kind}-{n}")
}

/// The partition of a customer's data.
pub(super) fn partition(customer: i64) -> String {
    customer.to_string()
}

pub(super) fn date_key(date: NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

pub(super) fn time_key(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

/// The customer's profile, with the latest lock or unlock event of the account, which an unlock
/// decides on: kept here so that the decision and its write are on one document (one ETag).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct CustomerBody {
    pub profile: Customer,
    pub latest_lock_event: Option<SecurityLog>,
}

impl CustomerBody {
    /// Keeps `event` if it is a lock or unlock event later than the one kept, in the order
    /// SQLite finds the latest (time, then id).
    pub fn record(&mut self, event: &SecurityLog) {
        let relevant = matches!(
            event.event_type,
            SecurityEventType::AccountLocked | SecurityEventType::AccountUnlocked
        );
        let later = self
            .latest_lock_event
            .as_ref()
            .is_none_or(|kept| (event.occurred_at, event.id) > (kept.occurred_at, kept.id));
        if relevant && later {
            self.latest_lock_event = Some(event.clone());
        }
    }
}

/// A subscription as the domain shows it (the plan's fields copied in), and its own speed tier,
/// which overrides the plan's and survives a change of plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct LineBody {
    pub line: Subscription,
    pub own_speed_tier: Option<String>,
}

impl LineBody {
    pub fn from_row(row: &SubscriptionRow, plan: &Product) -> Self {
        let mut body = LineBody {
            line: Subscription {
                id: row.id,
                customer_id: row.customer_id,
                product_id: plan.id,
                product_name: String::new(),
                product_category: plan.category,
                monthly_fee: plan.monthly_fee,
                start_date: row.start_date,
                end_date: row.end_date,
                status: row.status,
                service_status: row.service_status,
                roaming_enabled: row.roaming_enabled,
                autopay_enabled: row.autopay_enabled,
                data_cap_gb: None,
                speed_tier: None,
            },
            own_speed_tier: row.speed_tier.clone(),
        };
        body.set_plan(plan);
        body
    }

    pub fn set_plan(&mut self, plan: &Product) {
        let line = &mut self.line;
        line.product_id = plan.id;
        line.product_name.clone_from(&plan.name);
        line.product_category = plan.category;
        line.monthly_fee = plan.monthly_fee;
        line.data_cap_gb = plan.data_cap_gb;
        line.speed_tier = self.own_speed_tier.clone().or(plan.speed_tier.clone());
    }
}

/// An invoice with the sum of its successful payments, which a payment updates in the same
/// batch as it is recorded: the balance is then one read, and its ETag guards the decision.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct InvoiceBody {
    pub subscription_id: i64,
    pub invoice_date: NaiveDate,
    pub due_date: NaiveDate,
    pub description: String,
    pub amount_cents: i64,
    pub paid_cents: i64,
}

impl Doc<InvoiceBody> {
    pub fn invoice(&self, today: NaiveDate) -> Invoice {
        let d = &self.data;
        Invoice::new(
            self.n,
            d.subscription_id,
            d.invoice_date,
            d.due_date,
            d.description.clone(),
            Money::from_cents(d.amount_cents),
            Money::from_cents(d.paid_cents),
            today,
        )
    }
}

/// A day of usage of one subscription.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct UsageBody {
    pub subscription_id: i64,
    pub day: DataUsage,
}

/// An embedding of one knowledge document (the model is the document's partition).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct EmbeddingBody {
    pub document_id: i64,
    pub vector: Vec<f32>,
}

/// The partition of one model's embeddings in the catalogue container.
pub(super) fn embedding_partition(model: &str) -> String {
    format!("{EMBEDDING}:{model}")
}

/// Whose a subscription or an invoice is: the document `owner` point-reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Lookup {
    pub id: String,
    pub pk: String,
    pub customer_id: i64,
}

impl Lookup {
    pub fn new(kind: &str, n: i64, customer_id: i64) -> Self {
        let id = item_id(kind, n);
        Lookup {
            pk: id.clone(),
            id,
            customer_id,
        }
    }
}

/// The next id of one kind of record, incremented on the server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Counter {
    pub id: String,
    pub pk: String,
    pub next: i64,
}

impl Counter {
    pub fn new(kind: &str, next: i64) -> Self {
        Counter {
            id: kind.to_owned(),
            pk: kind.to_owned(),
            next,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn time_keys_sort_as_the_instants_do() {
        let whole = Utc
            .with_ymd_and_hms(2026, 1, 2, 3, 4, 5)
            .single()
            .expect("a time");
        let later = whole + chrono::Duration::milliseconds(100);
        assert!(time_key(whole) < time_key(later));
        assert_eq!(time_key(whole), "2026-01-02T03:04:05.000000000Z");
    }
}
