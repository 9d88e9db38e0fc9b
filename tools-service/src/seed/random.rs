//! Random customers with plausible histories, from a seed.
//!
//! Also home of the small row builders the scenario customers reuse, so both kinds of customer
//! are shaped the same way (monthly invoices due 30 days later, 60 days of usage, ...).

use chrono::{DateTime, Days, Duration, NaiveDate, Utc};
use rand::{RngExt, SeedableRng, seq::IndexedRandom};
use rand_chacha::ChaCha8Rng;

use super::{Dataset, Ids, InvoiceRow, SCENARIO_IDS, SubscriptionRow, UsageRow, catalog};
use crate::{domain::*, money::Money};

/// Days between an invoice and its due date (see the Late Payment Fees document).
pub const PAYMENT_TERMS_DAYS: u64 = 30;
/// Days of daily usage every subscription has.
pub const USAGE_DAYS: u64 = 60;

const FIRST_NAMES: &[&str] = &[
    "Olivia", "Liam", "Emma", "Noah", "Ava", "Lucas", "Mia", "Ethan", "Sofia", "Mateo", "Amara",
    "Kenji", "Priya", "Diego", "Hannah", "Yusuf", "Chloe", "Ravi", "Elena", "Omar", "Grace",
    "Felix", "Leila", "Jonas", "Nina", "Tariq", "Zoe", "Ivan", "Maya", "Samuel",
];
const LAST_NAMES: &[&str] = &[
    "Nguyen", "Garcia", "Kowalski", "Okafor", "Svensson", "Rossi", "Tanaka", "Dubois", "Patel",
    "Schmidt", "Haddad", "Murphy", "Costa", "Novak", "Ibrahim", "Larsen", "Moreau", "Silva",
    "Fischer", "Ahmed", "Jensen", "Lopez", "Weber", "Kim",
];
const STREETS: &[&str] = &[
    "Maple Ave",
    "Harbor St",
    "Cedar Ln",
    "Lakeview Dr",
    "Elm St",
    "Pine Rd",
    "Oak Ct",
    "Riverside Blvd",
    "Hillcrest Way",
    "Sunset Ave",
];
const CITIES: &[&str] = &[
    "Redmond, WA",
    "Seattle, WA",
    "Portland, OR",
    "Austin, TX",
    "Denver, CO",
    "Boston, MA",
    "Chicago, IL",
    "Atlanta, GA",
];
const DEVICES: &[(&str, i64)] = &[
    ("Contoso Phone X handset", 79_900),
    ("Contoso Phone Lite handset", 39_900),
    ("Wi-Fi 6 router", 14_900),
    ("Phone case", 2_900),
    ("Wireless earbuds", 9_900),
];

/// Adds `count` random customers drawn from `seed`, with ids from 1, skipping the scenario ids.
pub(crate) fn customers(
    data: &mut Dataset,
    ids: &mut Ids,
    count: u32,
    seed: u64,
    now: DateTime<Utc>,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let today = now.date_naive();
    let mut id = 0;
    for _ in 0..count {
        id += 1;
        if SCENARIO_IDS.contains(&id) {
            id = SCENARIO_IDS.end() + 1;
        }
        customer(data, ids, &mut rng, id, now, today);
    }
}

fn customer(
    data: &mut Dataset,
    ids: &mut Ids,
    rng: &mut ChaCha8Rng,
    id: i64,
    now: DateTime<Utc>,
    today: NaiveDate,
) {
    let first = *FIRST_NAMES.choose(rng).expect("non-empty");
    let last = *LAST_NAMES.choose(rng).expect("non-empty");
    let loyalty = *[
        LoyaltyLevel::Bronze,
        LoyaltyLevel::Bronze,
        LoyaltyLevel::Silver,
        LoyaltyLevel::Silver,
        LoyaltyLevel::Gold,
        LoyaltyLevel::Platinum,
    ]
    .choose(rng)
    .expect("non-empty");
    let joined = today - Days::new(rng.random_range(400..3000));
    data.customers.push(person(
        id,
        first,
        last,
        loyalty,
        joined,
        today - Days::new(rng.random_range(18 * 365..75 * 365)),
        format!(
            "{} {}, {}",
            rng.random_range(1..9999),
            STREETS.choose(rng).expect("non-empty"),
            CITIES.choose(rng).expect("non-empty")
        ),
        format!("+1-555-{:04}", rng.random_range(0..10_000)),
    ));

    let plans = if rng.random_bool(0.3) { 2 } else { 1 };
    for _ in 0..plans {
        let product = *[catalog::MOBILE, catalog::INTERNET, catalog::BUNDLE]
            .choose(rng)
            .expect("non-empty");
        let sub = subscription(
            ids,
            id,
            product,
            joined,
            SubscriptionStatus::Active,
            ServiceStatus::Normal,
        );
        let sub = SubscriptionRow {
            roaming_enabled: product != catalog::INTERNET && rng.random_bool(0.2),
            autopay_enabled: rng.random_bool(0.5),
            speed_tier: (product == catalog::INTERNET)
                .then(|| {
                    ["300 Mbps", "500 Mbps", "1 Gbps"]
                        .choose(rng)
                        .map(|s| s.to_string())
                })
                .flatten(),
            service_status: if rng.random_bool(0.05) {
                ServiceStatus::Degraded
            } else {
                ServiceStatus::Normal
            },
            ..sub
        };
        let fee = data
            .products
            .iter()
            .find(|p| p.id == product)
            .map_or(Money::ZERO, |p| p.monthly_fee);
        let cap_mb = if product == catalog::BUNDLE {
            50_000
        } else {
            10_000
        };
        usage(data, sub.id, today, |_| {
            (cap_mb / 30) * rng.random_range(20..110) / 100
        });
        let months = rng.random_range(8..=14);
        let latest = today - Days::new(rng.random_range(1..28));
        for month in (0..months).rev() {
            let invoice_date = latest - Days::new(30 * month);
            let over_gb = if rng.random_bool(0.15) {
                rng.random_range(1..7)
            } else {
                0
            };
            let amount = fee + Money::from_cents(catalog::OVERAGE_PER_GB.cents() * over_gb);
            let description = if over_gb > 0 {
                format!("Monthly service + data overage ({over_gb} GB)")
            } else {
                "Monthly service".to_owned()
            };
            let invoice = invoice(data, ids, sub.id, invoice_date, description, amount);
            let due = invoice.due_date;
            let paid_at = |days_after: u64| {
                (invoice_date + Days::new(days_after))
                    .and_hms_opt(10, 0, 0)
                    .expect("valid time")
                    .and_utc()
            };
            let method = *PaymentMethod::ALL.choose(rng).expect("non-empty");
            if due >= today {
                // Not due yet: half of the customers have paid already.
                if rng.random_bool(0.5) && paid_at(3) < now {
                    payment(data, ids, invoice.id, paid_at(3), amount, method, true);
                }
                continue;
            }
            let roll = rng.random_range(0..100);
            if roll < 75 {
                payment(data, ids, invoice.id, paid_at(12), amount, method, true);
            } else if roll < 87 {
                payment(data, ids, invoice.id, paid_at(10), amount, method, false);
                payment(data, ids, invoice.id, paid_at(14), amount, method, true);
            } else if roll < 96 {
                let first = Money::from_cents(amount.cents() / 2);
                payment(data, ids, invoice.id, paid_at(10), first, method, true);
                payment(
                    data,
                    ids,
                    invoice.id,
                    paid_at(25),
                    amount - first,
                    method,
                    true,
                );
            } else {
                // Left partly paid: an overdue balance.
                let part = Money::from_cents(amount.cents() / 3);
                payment(data, ids, invoice.id, paid_at(20), part, method, true);
            }
        }
        if rng.random_bool(0.1) {
            let reported = now - Duration::days(rng.random_range(3..50));
            incident(
                data,
                ids,
                sub.id,
                reported,
                "Intermittent packet loss on the local access node",
                IncidentStatus::Resolved,
            );
        }
        data.subscriptions.push(sub);
    }

    for _ in 0..rng.random_range(0..3) {
        let (item, cents) = *DEVICES.choose(rng).expect("non-empty");
        let order_date = today - Days::new(rng.random_range(1..300));
        let age = (today - order_date).num_days();
        let status = if age < 3 {
            OrderStatus::Processing
        } else if age < 7 {
            OrderStatus::Shipped
        } else if rng.random_bool(0.1) {
            OrderStatus::Returned
        } else {
            OrderStatus::Delivered
        };
        let returned_on = (status == OrderStatus::Returned)
            .then(|| order_date + Days::new(rng.random_range(5..25)));
        data.orders.push(Order {
            id: ids.order(),
            customer_id: id,
            product_id: None,
            item: item.to_owned(),
            order_date,
            amount: Money::from_cents(cents),
            status,
            returned_on: returned_on.filter(|d| *d <= today),
        });
    }

    let subscription_ids: Vec<i64> = data
        .subscriptions
        .iter()
        .filter(|s| s.customer_id == id)
        .map(|s| s.id)
        .collect();
    for _ in 0..rng.random_range(0..3) {
        let category = *TicketCategory::ALL.choose(rng).expect("non-empty");
        let opened = now - Duration::hours(rng.random_range(2..24 * 200));
        let open = rng.random_bool(0.3);
        ticket(
            data,
            ids,
            TicketSpec {
                customer_id: id,
                subscription_id: subscription_ids.choose(rng).copied(),
                category,
                priority: *TicketPriority::ALL.choose(rng).expect("non-empty"),
                status: if open {
                    TicketStatus::Open
                } else {
                    TicketStatus::Closed
                },
                subject: format!("{} issue reported by customer", category_label(category)),
                description: "Customer contacted support; details recorded by the agent.".into(),
                opened_at: opened,
                closed_at: (!open).then(|| opened + Duration::hours(rng.random_range(1..96))),
            },
        );
    }

    for _ in 0..rng.random_range(2..8) {
        let at = now - Duration::minutes(rng.random_range(60..60 * 24 * 60));
        let (event, description) = if rng.random_bool(0.85) {
            (
                SecurityEventType::Login,
                "Successful sign-in from the Contoso app",
            )
        } else if rng.random_bool(0.5) {
            (
                SecurityEventType::FailedLogin,
                "Sign-in failed: wrong password",
            )
        } else {
            (
                SecurityEventType::PasswordReset,
                "Password reset by the customer",
            )
        };
        security_log(data, ids, id, event, at, description);
    }
}

fn category_label(category: TicketCategory) -> &'static str {
    match category {
        TicketCategory::Billing => "Billing",
        TicketCategory::CallDrop => "Dropped call",
        TicketCategory::Internet => "Internet",
        TicketCategory::Roaming => "Roaming",
        TicketCategory::Account => "Account",
        TicketCategory::Device => "Device",
        TicketCategory::Sms => "SMS",
        TicketCategory::Other => "General",
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn person(
    id: i64,
    first: &str,
    last: &str,
    loyalty_level: LoyaltyLevel,
    joined_on: NaiveDate,
    date_of_birth: NaiveDate,
    address: String,
    phone: String,
) -> Customer {
    Customer {
        id,
        first_name: first.to_owned(),
        last_name: last.to_owned(),
        email: format!(
            "{}.{}{}@example.com",
            first.to_lowercase(),
            last.to_lowercase(),
            id
        ),
        phone,
        address,
        date_of_birth,
        loyalty_level,
        joined_on,
    }
}

/// A subscription row with the common defaults; callers adjust fields with struct update.
pub(crate) fn subscription(
    ids: &mut Ids,
    customer_id: i64,
    product_id: i64,
    start_date: NaiveDate,
    status: SubscriptionStatus,
    service_status: ServiceStatus,
) -> SubscriptionRow {
    SubscriptionRow {
        id: ids.subscription(),
        customer_id,
        product_id,
        start_date,
        end_date: None,
        status,
        service_status,
        roaming_enabled: false,
        autopay_enabled: false,
        speed_tier: None,
    }
}

/// Sixty days of usage ending today; `daily_mb(days_ago)` gives each day's data.
pub(crate) fn usage(
    data: &mut Dataset,
    subscription_id: i64,
    today: NaiveDate,
    mut daily_mb: impl FnMut(u64) -> i64,
) {
    for days_ago in (0..USAGE_DAYS).rev() {
        let mb = daily_mb(days_ago);
        data.usage.push(UsageRow {
            subscription_id,
            usage: DataUsage {
                usage_date: today - Days::new(days_ago),
                data_used_mb: mb,
                // Deterministic but varied without another RNG draw.
                voice_minutes: (mb * 7 + days_ago as i64 * 13) % 90,
                sms_count: (mb + days_ago as i64 * 5) % 30,
            },
        });
    }
}

pub(crate) fn invoice(
    data: &mut Dataset,
    ids: &mut Ids,
    subscription_id: i64,
    invoice_date: NaiveDate,
    description: String,
    amount: Money,
) -> InvoiceRow {
    let row = InvoiceRow {
        id: ids.invoice(),
        subscription_id,
        invoice_date,
        due_date: invoice_date + Days::new(PAYMENT_TERMS_DAYS),
        description,
        amount,
    };
    data.invoices.push(row.clone());
    row
}

pub(crate) fn payment(
    data: &mut Dataset,
    ids: &mut Ids,
    invoice_id: i64,
    paid_at: DateTime<Utc>,
    amount: Money,
    method: PaymentMethod,
    successful: bool,
) {
    data.payments.push(Payment {
        id: ids.payment(),
        invoice_id,
        paid_at,
        amount,
        method,
        status: if successful {
            PaymentStatus::Successful
        } else {
            PaymentStatus::Failed
        },
    });
}

pub(crate) fn incident(
    data: &mut Dataset,
    ids: &mut Ids,
    subscription_id: i64,
    reported_at: DateTime<Utc>,
    description: &str,
    status: IncidentStatus,
) {
    data.incidents.push(ServiceIncident {
        id: ids.incident(),
        subscription_id,
        reported_at,
        description: description.to_owned(),
        status,
    });
}

/// The fields of a ticket row but its id.
pub(crate) struct TicketSpec {
    pub customer_id: i64,
    pub subscription_id: Option<i64>,
    pub category: TicketCategory,
    pub priority: TicketPriority,
    pub status: TicketStatus,
    pub subject: String,
    pub description: String,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}

pub(crate) fn ticket(data: &mut Dataset, ids: &mut Ids, spec: TicketSpec) {
    data.tickets.push(SupportTicket {
        id: ids.ticket(),
        customer_id: spec.customer_id,
        subscription_id: spec.subscription_id,
        category: spec.category,
        priority: spec.priority,
        status: spec.status,
        subject: spec.subject,
        description: spec.description,
        opened_at: spec.opened_at,
        closed_at: spec.closed_at,
    });
}

pub(crate) fn security_log(
    data: &mut Dataset,
    ids: &mut Ids,
    customer_id: i64,
    event_type: SecurityEventType,
    occurred_at: DateTime<Utc>,
    description: &str,
) {
    data.security_logs.push(SecurityLog {
        id: ids.security_log(),
        customer_id,
        event_type,
        occurred_at,
        description: description.to_owned(),
    });
}
