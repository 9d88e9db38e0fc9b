//! The rules of every write, once.
//!
//! Each rule is a pure decision over what a backend read inside its atomic step: SQLite calls it
//! inside a write transaction, a document store between its read and a write conditioned on what
//! it read (and again after a conflict). So every backend refuses and records exactly the same
//! things, and none of them holds a business rule of its own. Ids of new records are given to the
//! rules by the backend (allocated in its own way), so a rule is the same whoever numbers rows.

use chrono::{DateTime, NaiveDate, Utc};

use super::*;
use crate::money::Money;

/// Why a write was refused. Every variant is the caller's to act on, and its message says how.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "payment of {amount} exceeds the outstanding balance of invoice {invoice_id}, which is {outstanding}"
    )]
    Overpayment {
        invoice_id: i64,
        amount: Money,
        outstanding: Money,
    },
    #[error("invoice {invoice_id} is already paid in full; nothing is outstanding")]
    AlreadyPaid { invoice_id: i64 },
    #[error("the account of customer {customer_id} is not locked; there is nothing to unlock")]
    NotLocked { customer_id: i64 },
    /// The request itself cannot be carried out whatever the state (an add-on as a plan, ...).
    #[error("{0}")]
    Invalid(String),
}

/// A payment to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPayment {
    pub invoice_id: i64,
    pub amount: Money,
    pub method: PaymentMethod,
    pub paid_at: DateTime<Utc>,
}

/// A recorded payment and the invoice as it stands after it.
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentReceipt {
    pub payment: Payment,
    pub invoice: Invoice,
}

/// A payment is recorded only if it is positive and the invoice has at least that much
/// outstanding: concurrent payments, each decided on the balance its backend read atomically,
/// can never overpay.
pub fn payment(invoice: &Invoice, new: &NewPayment, id: i64) -> Result<Payment, Refusal> {
    payable(new.amount)?;
    if !invoice.outstanding.is_positive() {
        return Err(Refusal::AlreadyPaid {
            invoice_id: invoice.id,
        });
    }
    if new.amount > invoice.outstanding {
        return Err(Refusal::Overpayment {
            invoice_id: invoice.id,
            amount: new.amount,
            outstanding: invoice.outstanding,
        });
    }
    Ok(Payment {
        id,
        invoice_id: invoice.id,
        paid_at: new.paid_at,
        amount: new.amount,
        method: new.method,
        status: PaymentStatus::Successful,
    })
}

/// Whether `amount` can be paid at all, whatever the invoice: it must be positive.
pub fn payable(amount: Money) -> Result<(), Refusal> {
    if amount.is_positive() {
        Ok(())
    } else {
        Err(Refusal::Invalid(format!(
            "amount must be greater than zero, got {}",
            amount.as_decimal()
        )))
    }
}

/// `invoice` once the successful `payment` is counted.
pub fn after_payment(invoice: &Invoice, payment: &Payment, today: NaiveDate) -> Invoice {
    Invoice::new(
        invoice.id,
        invoice.subscription_id,
        invoice.invoice_date,
        invoice.due_date,
        invoice.description.clone(),
        invoice.amount,
        invoice.paid.saturating_add(payment.amount),
        today,
    )
}

/// The result of unlocking an account.
#[derive(Debug, Clone, PartialEq)]
pub struct UnlockReceipt {
    pub locked_at: DateTime<Utc>,
    pub unlocked: SecurityLog,
}

/// An account is locked when its latest lock or unlock event is a lock; unlocking writes an
/// `account_unlocked` entry saying who did it (`description`).
pub fn unlock(
    customer_id: i64,
    latest_lock_event: Option<&SecurityLog>,
    at: DateTime<Utc>,
    description: &str,
    id: i64,
) -> Result<UnlockReceipt, Refusal> {
    let locked_at = match latest_lock_event {
        Some(event) if event.event_type == SecurityEventType::AccountLocked => event.occurred_at,
        _ => return Err(Refusal::NotLocked { customer_id }),
    };
    Ok(UnlockReceipt {
        locked_at,
        unlocked: SecurityLog {
            id,
            customer_id,
            event_type: SecurityEventType::AccountUnlocked,
            occurred_at: at,
            description: description.to_owned(),
        },
    })
}

/// A change to a subscription; fields left `None` are kept.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubscriptionUpdate {
    pub product_id: Option<i64>,
    pub status: Option<SubscriptionStatus>,
    pub roaming_enabled: Option<bool>,
    pub autopay_enabled: Option<bool>,
}

impl SubscriptionUpdate {
    pub fn is_empty(&self) -> bool {
        *self == SubscriptionUpdate::default()
    }
}

/// An accepted change, and the new plan's product when the plan changes (a backend that keeps
/// the product's name and price on the subscription copies them from it).
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionChange {
    pub update: SubscriptionUpdate,
    pub plan: Option<Product>,
}

/// A subscription may change plan only to a plan (not an add-on), and only a mobile line can
/// roam. `plan` is the product `update.product_id` names (the caller found it).
pub fn subscription_change(
    current: &Subscription,
    update: &SubscriptionUpdate,
    plan: Option<&Product>,
) -> Result<SubscriptionChange, Refusal> {
    if update.is_empty() {
        return Err(Refusal::Invalid(
            "updates is empty; give at least one of product_id, status, roaming_enabled, autopay_enabled"
                .to_owned(),
        ));
    }
    if let Some(plan) = plan
        && plan.category == ProductCategory::Addon
    {
        return Err(Refusal::Invalid(format!(
            "product {} ({}) is an add-on, not a plan; enable the feature instead (e.g. roaming_enabled)",
            plan.id, plan.name
        )));
    }
    let category = plan.map_or(current.product_category, |p| p.category);
    if update.roaming_enabled == Some(true) && category == ProductCategory::Internet {
        return Err(Refusal::Invalid(format!(
            "subscription {} is a home internet line; roaming applies to mobile lines only",
            current.id
        )));
    }
    Ok(SubscriptionChange {
        update: update.clone(),
        plan: plan.cloned(),
    })
}

/// A ticket to open.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTicket {
    pub customer_id: i64,
    pub subscription_id: Option<i64>,
    pub category: TicketCategory,
    pub priority: TicketPriority,
    pub subject: String,
    pub description: String,
    pub opened_at: DateTime<Utc>,
}

/// A new ticket is open; one about a subscription must be about one of the customer's own.
/// `subscription_owner` is the customer the named subscription belongs to.
pub fn ticket(
    new: NewTicket,
    subscription_owner: Option<i64>,
    id: i64,
) -> Result<SupportTicket, Refusal> {
    if let (Some(subscription_id), Some(owner)) = (new.subscription_id, subscription_owner)
        && owner != new.customer_id
    {
        return Err(Refusal::Invalid(format!(
            "subscription {subscription_id} does not belong to customer {}",
            new.customer_id
        )));
    }
    Ok(SupportTicket {
        id,
        customer_id: new.customer_id,
        subscription_id: new.subscription_id,
        category: new.category,
        priority: new.priority,
        status: TicketStatus::Open,
        subject: new.subject,
        description: new.description,
        opened_at: new.opened_at,
        closed_at: None,
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, d).expect("a date")
    }

    fn invoice(amount: i64, paid: i64) -> Invoice {
        let (amount, paid) = (Money::from_cents(amount), Money::from_cents(paid));
        Invoice::new(7, 3, day(1), day(20), "March".into(), amount, paid, day(10))
    }

    fn pay(cents: i64) -> NewPayment {
        NewPayment {
            invoice_id: 7,
            amount: Money::from_cents(cents),
            method: PaymentMethod::CreditCard,
            paid_at: Utc
                .with_ymd_and_hms(2026, 3, 10, 12, 0, 0)
                .single()
                .expect("a time"),
        }
    }

    #[test]
    fn a_payment_up_to_the_balance_is_recorded_and_counted() {
        let before = invoice(10000, 4000);
        let paid = payment(&before, &pay(6000), 11).expect("recorded");
        assert_eq!((paid.id, paid.status), (11, PaymentStatus::Successful));
        let after = after_payment(&before, &paid, day(10));
        assert_eq!(after.outstanding, Money::ZERO);
        assert_eq!(after.status, InvoiceStatus::Paid);
    }

    #[test]
    fn a_payment_beyond_the_balance_or_on_a_paid_invoice_is_refused() {
        assert_eq!(
            payment(&invoice(10000, 4000), &pay(6001), 11),
            Err(Refusal::Overpayment {
                invoice_id: 7,
                amount: Money::from_cents(6001),
                outstanding: Money::from_cents(6000),
            })
        );
        assert_eq!(
            payment(&invoice(10000, 10000), &pay(1), 11),
            Err(Refusal::AlreadyPaid { invoice_id: 7 })
        );
        assert!(matches!(
            payment(&invoice(10000, 0), &pay(0), 11),
            Err(Refusal::Invalid(_))
        ));
    }

    fn event(kind: SecurityEventType) -> SecurityLog {
        SecurityLog {
            id: 1,
            customer_id: 5,
            event_type: kind,
            occurred_at: Utc
                .with_ymd_and_hms(2026, 3, 9, 8, 0, 0)
                .single()
                .expect("a time"),
            description: String::new(),
        }
    }

    #[test]
    fn only_a_locked_account_is_unlocked() {
        let at = Utc::now();
        let locked = event(SecurityEventType::AccountLocked);
        let receipt = unlock(5, Some(&locked), at, "by alice", 9).expect("unlocked");
        assert_eq!(receipt.locked_at, locked.occurred_at);
        assert_eq!(
            receipt.unlocked.event_type,
            SecurityEventType::AccountUnlocked
        );
        assert_eq!((receipt.unlocked.id, receipt.unlocked.occurred_at), (9, at));
        let unlocked = event(SecurityEventType::AccountUnlocked);
        for latest in [None, Some(&unlocked)] {
            assert_eq!(
                unlock(5, latest, at, "by alice", 9),
                Err(Refusal::NotLocked { customer_id: 5 })
            );
        }
    }

    #[test]
    fn a_ticket_about_another_customers_subscription_is_refused() {
        let new = NewTicket {
            customer_id: 5,
            subscription_id: Some(8),
            category: TicketCategory::Billing,
            priority: TicketPriority::Normal,
            subject: "s".into(),
            description: "d".into(),
            opened_at: Utc::now(),
        };
        assert!(matches!(
            ticket(new.clone(), Some(6), 1),
            Err(Refusal::Invalid(_))
        ));
        let opened = ticket(new, Some(5), 1).expect("opened");
        assert_eq!((opened.id, opened.status), (1, TicketStatus::Open));
    }
}
