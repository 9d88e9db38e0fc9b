//! Typed views of the tools service's structured results: only the fields the planner cites.
//! Identifiers are named as the reference service names them (`invoice_id`, not `id`).
//! Fields it does not read are ignored, so the tools service can add some without breaking it.

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Deserializer};

/// An amount of money as the tools service sends it (a JSON number with at most two decimals),
/// held in cents and shown as `$150.00`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dollars(pub i64);

impl<'de> Deserialize<'de> for Dollars {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let amount = f64::deserialize(deserializer)?;
        if !amount.is_finite() {
            return Err(serde::de::Error::custom("amount must be finite"));
        }
        // The service sends whole cents; rounding only removes the binary representation's noise.
        Ok(Dollars((amount * 100.0).round() as i64))
    }
}

impl fmt::Display for Dollars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let cents = self.0.unsigned_abs();
        write!(f, "{sign}${}.{:02}", cents / 100, cents % 100)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Invoice {
    #[serde(rename = "invoice_id")]
    pub id: i64,
    pub invoice_date: NaiveDate,
    pub due_date: NaiveDate,
    pub description: String,
    pub amount: Dollars,
    pub paid: Dollars,
    pub outstanding: Dollars,
    pub status: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Payment {
    pub invoice_id: i64,
    pub paid_at: DateTime<Utc>,
    pub amount: Dollars,
    pub method: String,
    pub status: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SubscriptionBilling {
    pub subscription_id: i64,
    pub product_name: String,
    pub status: String,
    pub usual_invoice_amount: Option<Dollars>,
    pub latest_invoice: Option<Invoice>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BillingSummary {
    pub customer_id: i64,
    pub customer_name: String,
    pub total_due: Dollars,
    pub overdue_amount: Dollars,
    pub open_invoices: Vec<Invoice>,
    pub subscriptions: Vec<SubscriptionBilling>,
    pub failed_payments: Vec<Payment>,
    pub last_successful_payment: Option<Payment>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InvoicePayments {
    pub invoice: Invoice,
    pub payments: Vec<Payment>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct UsageTotals {
    pub days: i64,
    pub data_used_gb: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DataUsage {
    pub subscription_id: i64,
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
    pub data_cap_gb: Option<i64>,
    pub totals: UsageTotals,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Subscription {
    #[serde(rename = "subscription_id")]
    pub id: i64,
    pub product_name: String,
    pub product_category: String,
    pub status: String,
    pub service_status: String,
    pub roaming_enabled: bool,
    pub speed_tier: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CustomerDetail {
    #[serde(rename = "customer_id")]
    pub id: i64,
    pub first_name: String,
    pub last_name: String,
    pub loyalty_level: String,
    pub subscriptions: Vec<Subscription>,
}

impl CustomerDetail {
    pub fn name(&self) -> String {
        format!("{} {}", self.first_name, self.last_name)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Incident {
    #[serde(rename = "incident_id")]
    pub id: i64,
    pub reported_at: DateTime<Utc>,
    pub description: String,
    pub status: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SubscriptionDetail {
    #[serde(rename = "subscription_id")]
    pub id: i64,
    pub incidents: Vec<Incident>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SecurityEvent {
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    pub description: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SecurityLogs {
    pub customer_id: i64,
    pub account_locked: bool,
    pub locked_since: Option<DateTime<Utc>>,
    pub entries: Vec<SecurityEvent>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AccountUnlocked {
    pub customer_id: i64,
    pub unlocked_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Ticket {
    #[serde(rename = "ticket_id")]
    pub id: i64,
    pub category: String,
    pub priority: String,
    pub status: String,
    pub subject: String,
    pub opened_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Tickets {
    pub tickets: Vec<Ticket>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Diagnosis {
    pub subscription_id: i64,
    pub product_name: String,
    pub service_status: String,
    pub conclusion: String,
    pub recommended_actions: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Order {
    #[serde(rename = "order_id")]
    pub id: i64,
    pub item: String,
    pub order_date: NaiveDate,
    pub amount: Dollars,
    pub status: String,
    pub returned_on: Option<NaiveDate>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Orders {
    pub orders: Vec<Order>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Promotion {
    pub name: String,
    pub description: String,
    pub min_loyalty_level: String,
    pub discount_percent: i64,
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
    pub state: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EligiblePromotions {
    pub loyalty_level: String,
    pub eligible: Vec<Promotion>,
    pub upcoming: Vec<Promotion>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Promotions {
    pub promotions: Vec<Promotion>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Product {
    #[serde(rename = "product_id")]
    pub id: i64,
    pub name: String,
    pub category: String,
    pub description: String,
    pub monthly_fee: Dollars,
    pub data_cap_gb: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Products {
    pub products: Vec<Product>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Document {
    pub title: String,
    pub content: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Search {
    pub results: Vec<Document>,
}

impl Document {
    /// Up to `n` of the document's stated facts: its sentences that put a number in bold
    /// ("Refunds take **7-10 business days ...**"), as plain text.
    pub fn key_facts(&self, n: usize) -> Vec<String> {
        self.content
            .lines()
            .map(|line| {
                // Without the list marker ("- ", "2. "), whose number is not a fact.
                let line = line.trim().trim_start_matches(['-', ' ']);
                let unnumbered = line.trim_start_matches(|c: char| c.is_ascii_digit());
                match unnumbered.strip_prefix(". ") {
                    Some(rest) if unnumbered.len() < line.len() => rest,
                    _ => line,
                }
            })
            .flat_map(|line| line.split(". "))
            .filter(|sentence| {
                sentence.contains("**") && sentence.chars().any(|c| c.is_ascii_digit())
            })
            .map(|sentence| {
                let plain = sentence.replace("**", "");
                cut(plain.trim().trim_end_matches('.'), 220)
            })
            .take(n)
            .collect()
    }
}

/// `text` cut to at most `max` characters, on a word boundary, with an ellipsis.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut end = text
        .char_indices()
        .nth(max)
        .map_or(text.len(), |(at, _)| at);
    if let Some(space) = text[..end].rfind(' ') {
        end = space;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_read_json_numbers_exactly_and_show_cents() {
        let read = |json: &str| serde_json::from_str::<Dollars>(json).expect("an amount");
        assert_eq!(read("150").to_string(), "$150.00");
        assert_eq!(read("49.99").to_string(), "$49.99");
        assert_eq!(read("0.1").to_string(), "$0.10");
        assert_eq!(Dollars(-250).to_string(), "-$2.50");
        assert!(serde_json::from_str::<Dollars>("\"150\"").is_err());
    }

    #[test]
    fn key_facts_are_the_bold_statements_with_numbers() {
        let doc = Document {
            title: "Returns".into(),
            content: "# Returns\n\nDevices can be returned within a **30-day return window**.\n\
                      - The device must be in **original condition**.\n\
                      1. The customer is **notified** by SMS.\n\
                      - Refunds take **7-10 business days after the device is received**.\n"
                .into(),
        };
        assert_eq!(
            doc.key_facts(5),
            [
                "Devices can be returned within a 30-day return window",
                "Refunds take 7-10 business days after the device is received"
            ]
        );
        assert_eq!(doc.key_facts(1).len(), 1);
        assert_eq!(cut("one two three", 7), "one...");
    }
}
