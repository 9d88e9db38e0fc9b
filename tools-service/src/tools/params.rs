//! Tool inputs: one typed, documented struct per tool. Their `JsonSchema` is what clients see as
//! the tool's input schema, and unknown fields are refused so a typo is an error rather than an
//! ignored filter.

use chrono::NaiveDate;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, de};

use crate::{
    domain::{ProductCategory, SubscriptionStatus, TicketCategory, TicketPriority},
    money::Money,
};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListCustomers {
    /// How many customers to return (1-500, default 50).
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page; omit for the first page.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerId {
    /// The customer's id.
    pub customer_id: i64,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionId {
    /// The subscription's id.
    pub subscription_id: i64,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InvoiceId {
    /// The invoice's id.
    pub invoice_id: i64,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PayInvoice {
    /// The invoice to pay.
    pub invoice_id: i64,
    /// Amount in dollars, a JSON number (not a string), positive, at most two decimals, not more
    /// than the outstanding balance. Read from the request's text exactly, never through a float.
    pub amount: Money,
    /// How the customer pays (default `credit_card`).
    pub method: Option<crate::domain::PaymentMethod>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataUsageQuery {
    /// The subscription whose usage to read.
    pub subscription_id: i64,
    /// First day, `YYYY-MM-DD`, from 1900-01-01 to 9999-12-31 (default: 29 days before
    /// `end_date`, so the window is 30 days). At most 366 days after it to `end_date`.
    #[serde(default, deserialize_with = "start_date")]
    pub start_date: Option<NaiveDate>,
    /// Last day, inclusive, `YYYY-MM-DD`, from 1900-01-01 to 9999-12-31 (default: today).
    #[serde(default, deserialize_with = "end_date")]
    pub end_date: Option<NaiveDate>,
    /// Return totals for the range instead of one row per day.
    #[serde(default)]
    pub aggregate: bool,
}

/// Parses a date argument of the supported calendar (see [`super::dates`]).
fn date_field<'de, D: Deserializer<'de>>(
    field: &str,
    deserializer: D,
) -> Result<Option<NaiveDate>, D::Error> {
    let Some(text) = Option::<String>::deserialize(deserializer)? else {
        return Ok(None);
    };
    super::dates::parse_date(field, &text)
        .map(Some)
        .map_err(de::Error::custom)
}

fn start_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
    date_field("start_date", d)
}

fn end_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
    date_field("end_date", d)
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchKnowledgeBase {
    /// What to look for, in plain words (e.g. "data overage policy").
    pub query: String,
    /// How many documents to return (1-20, default 3).
    pub topk: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecurityLogs {
    /// The customer's id.
    pub customer_id: i64,
    /// Most recent entries to return (1-500, default 50).
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SupportTickets {
    /// The customer's id.
    pub customer_id: i64,
    /// Only tickets still open or in progress.
    #[serde(default)]
    pub open_only: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSupportTicket {
    /// The customer the ticket is for.
    pub customer_id: i64,
    /// The subscription concerned, if any; must belong to the customer.
    pub subscription_id: Option<i64>,
    /// What the ticket is about.
    pub category: TicketCategory,
    /// Urgency (default `normal`).
    pub priority: Option<TicketPriority>,
    /// One-line summary (1-200 characters).
    pub subject: String,
    /// What the customer reported (1-4000 characters).
    pub description: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Products {
    /// Only products of this category.
    pub category: Option<ProductCategory>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductId {
    /// The product's id.
    pub product_id: i64,
}

/// The fields of a subscription that may change. At least one must be given.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionChanges {
    /// Move the subscription to another product (plan change).
    pub product_id: Option<i64>,
    /// New status.
    pub status: Option<SubscriptionStatus>,
    /// Turn international roaming on or off.
    pub roaming_enabled: Option<bool>,
    /// Turn automatic payment on or off.
    pub autopay_enabled: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSubscription {
    /// The subscription to change.
    pub subscription_id: i64,
    /// What to change.
    pub updates: SubscriptionChanges,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TroubleShootDevice {
    /// The customer whose service to diagnose.
    pub customer_id: i64,
    /// Which subscription; default: the customer's first active one.
    pub subscription_id: Option<i64>,
    /// The device, as the customer describes it (e.g. "home router", "iPhone 15").
    pub device: Option<String>,
}
