//! The deterministic demo data set: what a fresh database is filled with.
//!
//! [`generate`] builds the whole [`Dataset`] in memory from an RNG seed (`SEED_RANDOM`,
//! [`DEFAULT_RNG_SEED`] unless set), with every date relative to the `now` it is given, so two
//! runs with the same seed on the same day produce identical rows and the scenario facts hold on
//! any day. The seed moves only the random customers: two backends seeded differently serve
//! different customers 1, 2, ... but the same scenario customers, whose facts the agents are
//! tested on. A backend loads it with [`crate::store::SeedData::replace_all`].
//!
//! - [`catalog`]: the four products and the promotions (active, expired and one upcoming);
//! - [`random`]: `SEED_CUSTOMER_COUNT` customers with plausible histories;
//! - [`scenarios`]: the nine hand-made customers 251-259 whose facts the agents are tested on;
//! - [`knowledge`]: the policy documents of the knowledge base (Markdown files in `knowledge/`).

pub mod catalog;
pub mod knowledge;
pub mod random;
pub mod scenarios;

use chrono::{DateTime, NaiveDate, Utc};

use crate::{domain::*, money::Money};

/// Seed of the generator's RNG when `SEED_RANDOM` is not set; changing it changes every random
/// customer.
pub const DEFAULT_RNG_SEED: u64 = 0xC0_7050;

/// Customer ids reserved for the scenario customers, whatever the customer count.
pub const SCENARIO_IDS: std::ops::RangeInclusive<i64> = 251..=259;

/// A subscription as stored: the product's name, category and cap are joined in on read.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionRow {
    pub id: i64,
    pub customer_id: i64,
    pub product_id: i64,
    pub start_date: NaiveDate,
    pub end_date: Option<NaiveDate>,
    pub status: SubscriptionStatus,
    pub service_status: ServiceStatus,
    pub roaming_enabled: bool,
    pub autopay_enabled: bool,
    pub speed_tier: Option<String>,
}

/// An invoice as stored: its balance and status are derived from payments on read.
#[derive(Debug, Clone, PartialEq)]
pub struct InvoiceRow {
    pub id: i64,
    pub subscription_id: i64,
    pub invoice_date: NaiveDate,
    pub due_date: NaiveDate,
    pub description: String,
    pub amount: Money,
}

/// One day of usage of one subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRow {
    pub subscription_id: i64,
    pub usage: DataUsage,
}

/// Every row of every table, ready to load.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dataset {
    pub customers: Vec<Customer>,
    pub products: Vec<Product>,
    pub subscriptions: Vec<SubscriptionRow>,
    pub invoices: Vec<InvoiceRow>,
    pub payments: Vec<Payment>,
    pub promotions: Vec<Promotion>,
    pub security_logs: Vec<SecurityLog>,
    pub orders: Vec<Order>,
    pub tickets: Vec<SupportTicket>,
    pub usage: Vec<UsageRow>,
    pub incidents: Vec<ServiceIncident>,
    pub documents: Vec<KnowledgeDocument>,
}

/// Hands out ids per table so random and scenario rows never collide.
#[derive(Debug, Default)]
pub(crate) struct Ids {
    subscription: i64,
    invoice: i64,
    payment: i64,
    security_log: i64,
    order: i64,
    ticket: i64,
    incident: i64,
}

macro_rules! next_id {
    ($($name:ident),+) => {
        impl Ids {
            $(pub(crate) fn $name(&mut self) -> i64 {
                self.$name += 1;
                self.$name
            })+
        }
    };
}
next_id!(
    subscription,
    invoice,
    payment,
    security_log,
    order,
    ticket,
    incident
);

/// Builds the data set: catalogue, `customer_count` random customers drawn from `rng_seed` (ids
/// from 1, skipping the scenario ids), the nine scenario customers, and the knowledge base.
pub fn generate(customer_count: u32, rng_seed: u64, now: DateTime<Utc>) -> Dataset {
    let mut data = Dataset {
        products: catalog::products(),
        documents: knowledge::documents(),
        ..Dataset::default()
    };
    data.promotions = catalog::promotions(now.date_naive());
    let mut ids = Ids::default();
    random::customers(&mut data, &mut ids, customer_count, rng_seed, now);
    scenarios::customers(&mut data, &mut ids, now);
    data.customers.sort_by_key(|c| c.id);
    data
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0)
            .single()
            .expect("valid date")
    }

    #[test]
    fn the_seed_changes_the_random_customers_and_nothing_else() {
        let seeded = |seed| generate(30, seed, now());
        let (a, b) = (seeded(DEFAULT_RNG_SEED), seeded(0xFAB1CA));
        assert_eq!(a, seeded(DEFAULT_RNG_SEED), "same seed, same data");

        let split = |data: &Dataset| -> (Vec<Customer>, Vec<Customer>) {
            data.customers
                .iter()
                .cloned()
                .partition(|c| !SCENARIO_IDS.contains(&c.id))
        };
        let ((random_a, scenario_a), (random_b, scenario_b)) = (split(&a), split(&b));
        // Same ids, different people behind them: what tells two backends apart.
        let ids = |customers: &[Customer]| customers.iter().map(|c| c.id).collect::<Vec<_>>();
        assert_eq!(ids(&random_a), ids(&random_b));
        for (x, y) in random_a.iter().zip(&random_b) {
            assert_ne!(x, y, "customer {} is the same under both seeds", x.id);
        }
        assert_eq!(scenario_a, scenario_b, "the scenario customers do not move");
        assert_eq!(a.products, b.products);
        assert_eq!(a.promotions, b.promotions);
        assert_eq!(a.documents, b.documents);
    }

    #[test]
    fn ids_are_unique_and_scenarios_are_251_to_259() {
        let data = generate(300, DEFAULT_RNG_SEED, now());
        let mut ids: Vec<i64> = data.customers.iter().map(|c| c.id).collect();
        let before = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), before, "customer ids unique");
        assert_eq!(data.customers.len(), 309);
        let names: Vec<_> = data
            .customers
            .iter()
            .filter(|c| SCENARIO_IDS.contains(&c.id))
            .map(|c| format!("{} {}", c.first_name, c.last_name))
            .collect();
        assert_eq!(
            names,
            [
                "John Doe",
                "Jane Doe",
                "Mark Doe",
                "Alice Doe",
                "Ron Doe",
                "Mary Doe",
                "Tom Smith",
                "Sara Lee",
                "Alex Brown"
            ]
        );
    }

    #[test]
    fn random_customers_have_the_promised_shape() {
        let data = generate(250, DEFAULT_RNG_SEED, now());
        for sub in &data.subscriptions {
            let invoices = data
                .invoices
                .iter()
                .filter(|i| i.subscription_id == sub.id)
                .count();
            if !SCENARIO_IDS.contains(&sub.customer_id) {
                assert!((8..=14).contains(&invoices), "subscription {}", sub.id);
            }
            let days = data
                .usage
                .iter()
                .filter(|u| u.subscription_id == sub.id)
                .count();
            assert_eq!(days, 60, "60 days of usage on subscription {}", sub.id);
        }
        for status in [PaymentStatus::Successful, PaymentStatus::Failed] {
            assert!(data.payments.iter().any(|p| p.status == status));
        }
        // A paid invoice is never overpaid by the generator.
        for invoice in &data.invoices {
            let paid: Money = data
                .payments
                .iter()
                .filter(|p| p.invoice_id == invoice.id && p.status == PaymentStatus::Successful)
                .map(|p| p.amount)
                .sum();
            assert!(paid <= invoice.amount, "invoice {}", invoice.id);
        }
        let today = now().date_naive();
        let states: Vec<_> = data.promotions.iter().map(|p| p.state(today)).collect();
        assert!(states.contains(&PromotionState::Active));
        assert!(states.contains(&PromotionState::Expired));
        assert_eq!(
            states
                .iter()
                .filter(|s| **s == PromotionState::Upcoming)
                .count(),
            1
        );
        assert_eq!(data.products.len(), 4);
        assert!(data.documents.len() >= 17);
    }
}
