//! The Contoso domain: the entities the tools read and write, exactly as callers see them.
//!
//! These types are the contract between the tools and every storage backend: a backend returns
//! them, a tool serialises them as its structured output (their `JsonSchema` is the tool's output
//! schema). Identifiers are plain integers because that is what the reference exposes and what
//! callers already hold, and they are named as the reference's models name them (`customer_id`,
//! `invoice_id`, `log_id`, ...), so clients written against the Python service read the same
//! fields. The rules of every write are in [`writes`].

pub mod writes;

use chrono::{DateTime, NaiveDate, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::money::Money;

/// Declares a closed set of string values with its serde names, schema, `as_str` and parsing,
/// so the same spelling is used on the wire, in the database and in error messages.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, UnknownValue> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownValue {
                        kind: stringify!($name),
                        value: s.to_owned(),
                        expected: &[$($text),+],
                    }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// A stored value outside its closed set (a corrupted row, or a backend written by a newer version).
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown {kind} {value:?}; expected one of {expected:?}")]
pub struct UnknownValue {
    pub kind: &'static str,
    pub value: String,
    pub expected: &'static [&'static str],
}

text_enum!(
    /// Loyalty tier, lowest first; promotions name the lowest tier they accept.
    LoyaltyLevel { Bronze = "Bronze", Silver = "Silver", Gold = "Gold", Platinum = "Platinum" }
);

text_enum!(
    /// What kind of product a catalogue entry is.
    ProductCategory { Mobile = "mobile", Internet = "internet", Bundle = "bundle", Addon = "addon" }
);

text_enum!(
    /// Whether a subscription is billed and in service.
    SubscriptionStatus {
        Active = "active",
        /// Out of service, usually for non-payment; reinstated when the overdue balance is paid.
        Suspended = "suspended",
        Cancelled = "cancelled",
    }
);

text_enum!(
    /// Network-side health of a subscription's service as monitoring last saw it.
    ServiceStatus { Normal = "normal", Slow = "slow", Degraded = "degraded", Outage = "outage" }
);

text_enum!(
    /// Where an invoice stands, derived from its payments and due date.
    InvoiceStatus {
        Paid = "paid",
        PartiallyPaid = "partially_paid",
        Unpaid = "unpaid",
        /// Past its due date with a balance outstanding.
        Overdue = "overdue",
    }
);

text_enum!(
    /// Outcome of a payment attempt. Only successful payments reduce the balance.
    PaymentStatus { Successful = "successful", Failed = "failed" }
);

text_enum!(
    /// How a payment was made.
    PaymentMethod {
        CreditCard = "credit_card",
        DebitCard = "debit_card",
        BankTransfer = "bank_transfer",
        Paypal = "paypal",
    }
);

text_enum!(
    /// Kinds of entries in a customer's security log.
    SecurityEventType {
        Login = "login",
        FailedLogin = "failed_login",
        PasswordReset = "password_reset",
        AccountLocked = "account_locked",
        AccountUnlocked = "account_unlocked",
        ProfileChange = "profile_change",
    }
);

text_enum!(
    /// Fulfilment state of an order.
    OrderStatus {
        Processing = "processing",
        Shipped = "shipped",
        Delivered = "delivered",
        Returned = "returned",
        Cancelled = "cancelled",
    }
);

text_enum!(
    /// What a support ticket is about.
    TicketCategory {
        Billing = "billing",
        CallDrop = "call_drop",
        Internet = "internet",
        Roaming = "roaming",
        Account = "account",
        Device = "device",
        Sms = "sms",
        Other = "other",
    }
);

text_enum!(
    /// Whether a ticket still needs work. `open` and `in_progress` count as open.
    TicketStatus { Open = "open", InProgress = "in_progress", Resolved = "resolved", Closed = "closed" }
);

impl TicketStatus {
    pub fn is_open(self) -> bool {
        matches!(self, TicketStatus::Open | TicketStatus::InProgress)
    }
}

text_enum!(
    /// Urgency of a support ticket.
    TicketPriority { Low = "low", Normal = "normal", High = "high", Urgent = "urgent" }
);

text_enum!(
    /// Where the investigation of a service incident stands.
    IncidentStatus {
        Investigating = "investigating",
        Identified = "identified",
        Monitoring = "monitoring",
        Resolved = "resolved",
    }
);

impl IncidentStatus {
    pub fn is_open(self) -> bool {
        self != IncidentStatus::Resolved
    }
}

/// One line of the paged customer list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CustomerSummary {
    #[serde(rename = "customer_id")]
    pub id: i64,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub loyalty_level: LoyaltyLevel,
}

/// A customer's profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Customer {
    #[serde(rename = "customer_id")]
    pub id: i64,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub phone: String,
    pub address: String,
    pub date_of_birth: NaiveDate,
    pub loyalty_level: LoyaltyLevel,
    pub joined_on: NaiveDate,
}

/// A catalogue product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Product {
    #[serde(rename = "product_id")]
    pub id: i64,
    pub name: String,
    pub category: ProductCategory,
    pub description: String,
    pub monthly_fee: Money,
    /// Monthly data allowance in GB; absent for unlimited plans and add-ons without data.
    pub data_cap_gb: Option<i64>,
    /// Price per GB above the cap.
    pub overage_per_gb: Option<Money>,
    /// Line speed for internet products, e.g. `1 Gbps`.
    pub speed_tier: Option<String>,
}

/// A customer's subscription to a product, with the product's name for readability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Subscription {
    #[serde(rename = "subscription_id")]
    pub id: i64,
    pub customer_id: i64,
    pub product_id: i64,
    pub product_name: String,
    pub product_category: ProductCategory,
    /// The plan's monthly fee.
    pub monthly_fee: Money,
    pub start_date: NaiveDate,
    pub end_date: Option<NaiveDate>,
    pub status: SubscriptionStatus,
    pub service_status: ServiceStatus,
    pub roaming_enabled: bool,
    pub autopay_enabled: bool,
    /// Monthly data allowance in GB (from the plan); absent when unlimited.
    pub data_cap_gb: Option<i64>,
    pub speed_tier: Option<String>,
}

/// An invoice with its balance as of now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Invoice {
    #[serde(rename = "invoice_id")]
    pub id: i64,
    pub subscription_id: i64,
    pub invoice_date: NaiveDate,
    pub due_date: NaiveDate,
    pub description: String,
    pub amount: Money,
    /// Sum of successful payments.
    pub paid: Money,
    /// What is still owed: `amount - paid`.
    pub outstanding: Money,
    pub status: InvoiceStatus,
}

impl Invoice {
    /// Derives the balance and status of an invoice from its amount and successful payments.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: i64,
        subscription_id: i64,
        invoice_date: NaiveDate,
        due_date: NaiveDate,
        description: String,
        amount: Money,
        paid: Money,
        today: NaiveDate,
    ) -> Self {
        let outstanding = amount.saturating_sub(paid).max(Money::ZERO);
        let status = if !outstanding.is_positive() {
            InvoiceStatus::Paid
        } else if due_date < today {
            InvoiceStatus::Overdue
        } else if paid.is_positive() {
            InvoiceStatus::PartiallyPaid
        } else {
            InvoiceStatus::Unpaid
        };
        Invoice {
            id,
            subscription_id,
            invoice_date,
            due_date,
            description,
            amount,
            paid,
            outstanding,
            status,
        }
    }
}

/// One payment attempt against an invoice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Payment {
    #[serde(rename = "payment_id")]
    pub id: i64,
    pub invoice_id: i64,
    pub paid_at: DateTime<Utc>,
    pub amount: Money,
    pub method: PaymentMethod,
    pub status: PaymentStatus,
}

/// A day of usage on a subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DataUsage {
    pub usage_date: NaiveDate,
    pub data_used_mb: i64,
    pub voice_minutes: i64,
    pub sms_count: i64,
}

/// A promotion, with whether it runs today.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Promotion {
    #[serde(rename = "promotion_id")]
    pub id: i64,
    pub name: String,
    pub description: String,
    /// The product it discounts; absent when it applies to any product.
    pub product_id: Option<i64>,
    /// Lowest loyalty tier that qualifies.
    pub min_loyalty_level: LoyaltyLevel,
    pub discount_percent: i64,
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
}

text_enum!(
    /// Whether a promotion runs today.
    PromotionState { Active = "active", Upcoming = "upcoming", Expired = "expired" }
);

impl Promotion {
    pub fn state(&self, today: NaiveDate) -> PromotionState {
        if today < self.start_date {
            PromotionState::Upcoming
        } else if today > self.end_date {
            PromotionState::Expired
        } else {
            PromotionState::Active
        }
    }
}

/// An entry of a customer's security log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SecurityLog {
    #[serde(rename = "log_id")]
    pub id: i64,
    pub customer_id: i64,
    pub event_type: SecurityEventType,
    pub occurred_at: DateTime<Utc>,
    pub description: String,
}

/// An order placed by a customer (devices and accessories as well as plans).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Order {
    #[serde(rename = "order_id")]
    pub id: i64,
    pub customer_id: i64,
    /// The catalogue product, when the order was for one.
    pub product_id: Option<i64>,
    pub item: String,
    pub order_date: NaiveDate,
    pub amount: Money,
    pub status: OrderStatus,
    /// When the customer returned it, for returned orders.
    pub returned_on: Option<NaiveDate>,
}

/// A customer-service ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SupportTicket {
    #[serde(rename = "ticket_id")]
    pub id: i64,
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

/// A network incident affecting a subscription's service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceIncident {
    #[serde(rename = "incident_id")]
    pub id: i64,
    pub subscription_id: i64,
    pub reported_at: DateTime<Utc>,
    pub description: String,
    pub status: IncidentStatus,
}

/// A policy or procedure document of the knowledge base.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct KnowledgeDocument {
    pub id: i64,
    pub title: String,
    pub category: String,
    pub content: String,
}
