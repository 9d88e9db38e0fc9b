//! What each tool does: validate the arguments, read or write through the [`Store`], and shape
//! the typed output. Nothing here knows about MCP or HTTP, so every rule is testable directly.

use chrono::{NaiveDate, Utc};
use shared::auth::Identity;

use super::{ToolError, dates, outputs::*, params};
use crate::{
    domain::*,
    money::{Money, echo},
    search::KnowledgeIndex,
    store::{NewPayment, NewTicket, Store, SubscriptionUpdate},
};

type Result<T> = std::result::Result<T, ToolError>;

const MAX_PAGE: u32 = 500;
const DEFAULT_PAGE: u32 = 50;
/// The longest search query, in characters: a topic, not a document.
const MAX_QUERY_CHARS: usize = 1000;

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

fn bounded(value: Option<u32>, default: u32, max: u32, field: &str) -> Result<u32> {
    match value.unwrap_or(default) {
        n if (1..=max).contains(&n) => Ok(n),
        n => Err(ToolError::invalid(format!(
            "{field} must be between 1 and {max}, got {n}"
        ))),
    }
}

async fn customer(store: &dyn Store, id: i64) -> Result<Customer> {
    store
        .customer(id)
        .await?
        .ok_or(ToolError::not_found("customer", id))
}

async fn subscription(store: &dyn Store, id: i64) -> Result<Subscription> {
    store
        .subscription(id)
        .await?
        .ok_or(ToolError::not_found("subscription", id))
}

/// Cursor format: `after:<last id>`. Opaque to callers, but readable in logs. Any `i64` after
/// the prefix is a valid position (a negative one starts at the first customer, `i64::MAX`
/// gives an empty page); anything else is refused, quoting at most its first 40 characters.
pub async fn get_all_customers(
    store: &dyn Store,
    p: params::ListCustomers,
) -> Result<CustomerPage> {
    let limit = bounded(p.limit, DEFAULT_PAGE, MAX_PAGE, "limit")?;
    let after = match p.cursor.as_deref() {
        None | Some("") => 0,
        Some(cursor) => cursor
            .strip_prefix("after:")
            .and_then(|id| id.parse::<i64>().ok())
            .ok_or_else(|| {
                ToolError::invalid(format!(
                    "cursor {:?} is not one this service returned; omit it to start from the first page",
                    echo(cursor)
                ))
            })?,
    };
    let mut customers = store.customers_after(after, limit + 1).await?;
    let next_cursor = if customers.len() > limit as usize {
        customers.truncate(limit as usize);
        customers.last().map(|c| format!("after:{}", c.id))
    } else {
        None
    };
    Ok(CustomerPage {
        customers,
        next_cursor,
    })
}

pub async fn get_customer_detail(
    store: &dyn Store,
    p: params::CustomerId,
) -> Result<CustomerDetail> {
    let (customer, subscriptions) = tokio::try_join!(customer(store, p.customer_id), async {
        Ok(store.subscriptions_of_customer(p.customer_id).await?)
    })?;
    Ok(CustomerDetail {
        customer,
        subscriptions,
    })
}

pub async fn get_subscription_detail(
    store: &dyn Store,
    p: params::SubscriptionId,
) -> Result<SubscriptionDetail> {
    let subscription = subscription(store, p.subscription_id).await?;
    let (product, invoices, incidents) = tokio::try_join!(
        async {
            store
                .product(subscription.product_id)
                .await?
                .ok_or(ToolError::not_found("product", subscription.product_id))
        },
        async {
            Ok(store
                .invoices_of_subscription(subscription.id, today())
                .await?)
        },
        async { Ok(store.incidents_of_subscription(subscription.id).await?) },
    )?;
    Ok(SubscriptionDetail {
        subscription,
        product,
        invoices,
        incidents,
    })
}

pub async fn get_invoice_payments(
    store: &dyn Store,
    p: params::InvoiceId,
) -> Result<InvoicePayments> {
    let invoice = store
        .invoice(p.invoice_id, today())
        .await?
        .ok_or(ToolError::not_found("invoice", p.invoice_id))?;
    let payments = store.payments_of_invoice(p.invoice_id).await?;
    Ok(InvoicePayments { invoice, payments })
}

pub async fn pay_invoice(store: &dyn Store, p: params::PayInvoice) -> Result<PaymentResult> {
    let amount = p.amount;
    if !amount.is_positive() {
        return Err(ToolError::invalid(format!(
            "amount must be greater than zero, got {}",
            amount.as_decimal()
        )));
    }
    let receipt = store
        .pay_invoice(
            NewPayment {
                invoice_id: p.invoice_id,
                amount,
                method: p.method.unwrap_or(PaymentMethod::CreditCard),
                paid_at: Utc::now(),
            },
            today(),
        )
        .await?;
    tracing::info!(
        invoice_id = p.invoice_id,
        payment_id = receipt.payment.id,
        "payment recorded"
    );
    Ok(PaymentResult {
        payment: receipt.payment,
        invoice: receipt.invoice,
    })
}

pub async fn get_data_usage(
    store: &dyn Store,
    p: params::DataUsageQuery,
) -> Result<DataUsageReport> {
    let (start, end) = dates::usage_window(p.start_date, p.end_date, today())?;
    let sub = subscription(store, p.subscription_id).await?;
    let daily = store.data_usage(sub.id, start, end).await?;
    // At most 366 stored rows; saturating keeps a corrupted row from panicking the sum.
    let total = |field: fn(&DataUsage) -> i64| {
        daily
            .iter()
            .fold(0_i64, |sum, day| sum.saturating_add(field(day)))
    };
    let data_used_mb = total(|d| d.data_used_mb);
    let totals = UsageTotals {
        days: daily.len() as i64,
        data_used_mb,
        data_used_gb: (data_used_mb as f64 / 100.0).round() / 10.0,
        voice_minutes: total(|d| d.voice_minutes),
        sms_count: total(|d| d.sms_count),
    };
    Ok(DataUsageReport {
        subscription_id: sub.id,
        start_date: start,
        end_date: end,
        data_cap_gb: sub.data_cap_gb,
        totals,
        daily: if p.aggregate { Vec::new() } else { daily },
    })
}

fn view(promotion: Promotion, today: NaiveDate) -> PromotionView {
    let state = promotion.state(today);
    PromotionView { promotion, state }
}

pub async fn get_promotions(store: &dyn Store) -> Result<Promotions> {
    let today = today();
    let promotions = store
        .promotions()
        .await?
        .into_iter()
        .map(|p| view(p, today))
        .collect();
    Ok(Promotions { today, promotions })
}

/// Eligible: running today, the customer's tier is at least the promotion's, and the promotion
/// is for any product or for a product the customer subscribes to (not cancelled).
pub async fn get_eligible_promotions(
    store: &dyn Store,
    p: params::CustomerId,
) -> Result<EligiblePromotions> {
    let today = today();
    let (customer, subscriptions, promotions) = tokio::try_join!(
        customer(store, p.customer_id),
        async { Ok(store.subscriptions_of_customer(p.customer_id).await?) },
        async { Ok(store.promotions().await?) },
    )?;
    let products: Vec<i64> = subscriptions
        .iter()
        .filter(|s| s.status != SubscriptionStatus::Cancelled)
        .map(|s| s.product_id)
        .collect();
    let mut eligible = Vec::new();
    let mut upcoming = Vec::new();
    for promotion in promotions {
        let qualifies = customer.loyalty_level >= promotion.min_loyalty_level
            && promotion.product_id.is_none_or(|id| products.contains(&id));
        if !qualifies {
            continue;
        }
        match promotion.state(today) {
            PromotionState::Active => eligible.push(view(promotion, today)),
            PromotionState::Upcoming => upcoming.push(view(promotion, today)),
            PromotionState::Expired => {}
        }
    }
    Ok(EligiblePromotions {
        customer_id: customer.id,
        loyalty_level: customer.loyalty_level,
        today,
        eligible,
        upcoming,
    })
}

pub async fn search_knowledge_base(
    index: &KnowledgeIndex,
    p: params::SearchKnowledgeBase,
) -> Result<SearchResults> {
    let query = p.query.trim();
    if query.is_empty() {
        return Err(ToolError::invalid(
            "query must not be empty; describe the topic in a few words",
        ));
    }
    if query.chars().nth(MAX_QUERY_CHARS).is_some() {
        return Err(ToolError::invalid(format!(
            "query is longer than {MAX_QUERY_CHARS} characters; shorten it to the topic"
        )));
    }
    let topk = p.topk.unwrap_or(3);
    if !(1..=20).contains(&topk) {
        return Err(ToolError::invalid(format!(
            "topk must be between 1 and 20, got {topk}"
        )));
    }
    let results = index.search(query, topk as usize).await;
    Ok(SearchResults {
        query: query.to_owned(),
        mode: index.mode().to_owned(),
        results,
    })
}

pub async fn get_security_logs(
    store: &dyn Store,
    p: params::SecurityLogs,
) -> Result<SecurityLogReport> {
    let limit = bounded(p.limit, DEFAULT_PAGE, MAX_PAGE, "limit")?;
    customer(store, p.customer_id).await?;
    let entries = store.security_logs(p.customer_id, limit).await?;
    let last_lock_event = entries.iter().find(|e| {
        matches!(
            e.event_type,
            SecurityEventType::AccountLocked | SecurityEventType::AccountUnlocked
        )
    });
    let locked_since = last_lock_event
        .filter(|e| e.event_type == SecurityEventType::AccountLocked)
        .map(|e| e.occurred_at);
    Ok(SecurityLogReport {
        customer_id: p.customer_id,
        account_locked: locked_since.is_some(),
        locked_since,
        entries,
    })
}

pub async fn get_customer_orders(
    store: &dyn Store,
    p: params::CustomerId,
) -> Result<CustomerOrders> {
    customer(store, p.customer_id).await?;
    let orders = store.orders_of_customer(p.customer_id).await?;
    Ok(CustomerOrders {
        customer_id: p.customer_id,
        orders,
    })
}

pub async fn get_support_tickets(
    store: &dyn Store,
    p: params::SupportTickets,
) -> Result<SupportTickets> {
    customer(store, p.customer_id).await?;
    let tickets = store
        .tickets_of_customer(p.customer_id, p.open_only)
        .await?;
    Ok(SupportTickets {
        customer_id: p.customer_id,
        open_only: p.open_only,
        tickets,
    })
}

/// A stored free-text field: trimmed, 1 to `max` characters, and no control characters other
/// than line breaks and tabs (a NUL or an escape sequence in a ticket is never what a person
/// typed, and would reach every screen and model that later shows the ticket).
pub(crate) fn text_field(value: String, field: &str, max: usize) -> Result<String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(ToolError::invalid(format!("{field} must not be empty")));
    }
    if trimmed.chars().nth(max).is_some() {
        return Err(ToolError::invalid(format!(
            "{field} is longer than {max} characters"
        )));
    }
    if let Some(c) = trimmed
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(ToolError::invalid(format!(
            "{field} contains the control character {:?}; remove it",
            c
        )));
    }
    Ok(trimmed.to_owned())
}

pub async fn create_support_ticket(
    store: &dyn Store,
    p: params::CreateSupportTicket,
) -> Result<TicketCreated> {
    let subject = text_field(p.subject, "subject", 200)?;
    let description = text_field(p.description, "description", 4000)?;
    let ticket = store
        .create_ticket(NewTicket {
            customer_id: p.customer_id,
            subscription_id: p.subscription_id,
            category: p.category,
            priority: p.priority.unwrap_or(TicketPriority::Normal),
            subject,
            description,
            opened_at: Utc::now(),
        })
        .await?;
    tracing::info!(ticket_id = ticket.id, category = %ticket.category, "support ticket created");
    Ok(TicketCreated { ticket })
}

pub async fn get_products(store: &dyn Store, p: params::Products) -> Result<ProductList> {
    Ok(ProductList {
        products: store.products(p.category).await?,
    })
}

pub async fn get_product_detail(store: &dyn Store, p: params::ProductId) -> Result<ProductDetail> {
    let product = store
        .product(p.product_id)
        .await?
        .ok_or(ToolError::not_found("product", p.product_id))?;
    let today = today();
    let active_promotions = store
        .promotions()
        .await?
        .into_iter()
        .filter(|promo| {
            promo.product_id == Some(product.id) && promo.state(today) == PromotionState::Active
        })
        .map(|promo| view(promo, today))
        .collect();
    Ok(ProductDetail {
        product,
        active_promotions,
    })
}

pub async fn update_subscription(
    store: &dyn Store,
    p: params::UpdateSubscription,
) -> Result<SubscriptionUpdated> {
    let u = p.updates;
    let update = SubscriptionUpdate {
        product_id: u.product_id,
        status: u.status,
        roaming_enabled: u.roaming_enabled,
        autopay_enabled: u.autopay_enabled,
    };
    if update.is_empty() {
        return Err(ToolError::invalid(
            "updates is empty; give at least one of product_id, status, roaming_enabled, autopay_enabled",
        ));
    }
    let current = subscription(store, p.subscription_id).await?;
    if let Some(product_id) = update.product_id {
        let product = store
            .product(product_id)
            .await?
            .ok_or(ToolError::not_found("product", product_id))?;
        if product.category == ProductCategory::Addon {
            return Err(ToolError::invalid(format!(
                "product {product_id} ({}) is an add-on, not a plan; enable the feature instead (e.g. roaming_enabled)",
                product.name
            )));
        }
    }
    if update.roaming_enabled == Some(true) && current.product_category == ProductCategory::Internet
    {
        return Err(ToolError::invalid(format!(
            "subscription {} is a home internet line; roaming applies to mobile lines only",
            current.id
        )));
    }
    let subscription = store.update_subscription(p.subscription_id, update).await?;
    tracing::info!(subscription_id = subscription.id, "subscription updated");
    Ok(SubscriptionUpdated { subscription })
}

pub async fn unlock_account(
    store: &dyn Store,
    p: params::CustomerId,
    by: &Identity,
) -> Result<AccountUnlocked> {
    let note = unlock_note(by);
    let receipt = store
        .unlock_account(p.customer_id, Utc::now(), &note)
        .await?;
    tracing::info!(customer_id = p.customer_id, "account unlocked");
    Ok(AccountUnlocked {
        customer_id: p.customer_id,
        locked_at: receipt.locked_at,
        unlocked_at: receipt.unlocked.occurred_at,
        log_entry: receipt.unlocked,
    })
}

/// The security-log entry of an unlock, naming who did it: the subject and tenant, and the
/// agent that acted for them when the token was delegated.
fn unlock_note(by: &Identity) -> String {
    let via = match by.actors.as_slice() {
        [] => String::new(),
        actors => format!(" via {}", actors.join(" via ")),
    };
    format!(
        "Account unlocked by {} (tenant {}){via} after identity verification",
        by.subject, by.tenant
    )
}

fn median(mut amounts: Vec<Money>) -> Option<Money> {
    amounts.sort_unstable();
    amounts.get(amounts.len() / 2).copied()
}

pub async fn get_billing_summary(
    store: &dyn Store,
    p: params::CustomerId,
) -> Result<BillingSummary> {
    let today = today();
    let (customer, subscriptions) = tokio::try_join!(customer(store, p.customer_id), async {
        Ok(store.subscriptions_of_customer(p.customer_id).await?)
    },)?;
    let invoice_lists = futures::future::try_join_all(
        subscriptions
            .iter()
            .map(|s| store.invoices_of_subscription(s.id, today)),
    )
    .await?;
    let mut open_invoices = Vec::new();
    let mut lines = Vec::new();
    // Payments are read for the open invoices (failed attempts) and the two latest invoices of
    // each subscription (where the last successful payment is).
    let mut payment_invoices = Vec::new();
    for (s, invoices) in subscriptions.iter().zip(invoice_lists) {
        lines.push(SubscriptionBilling {
            subscription_id: s.id,
            product_name: s.product_name.clone(),
            status: s.status,
            monthly_fee: s.monthly_fee,
            usual_invoice_amount: median(invoices.iter().skip(1).map(|i| i.amount).collect()),
            latest_invoice: invoices.first().cloned(),
        });
        payment_invoices.extend(invoices.iter().take(2).map(|i| i.id));
        open_invoices.extend(invoices.into_iter().filter(|i| i.outstanding.is_positive()));
    }
    open_invoices.sort_by_key(|i| (i.invoice_date, i.id));
    payment_invoices.extend(open_invoices.iter().map(|i| i.id));
    payment_invoices.sort_unstable();
    payment_invoices.dedup();
    let payments: Vec<Payment> = futures::future::try_join_all(
        payment_invoices
            .iter()
            .map(|&id| store.payments_of_invoice(id)),
    )
    .await?
    .into_iter()
    .flatten()
    .collect();
    let failed_payments = payments
        .iter()
        .filter(|p| {
            p.status == PaymentStatus::Failed && open_invoices.iter().any(|i| i.id == p.invoice_id)
        })
        .cloned()
        .collect();
    let last_successful_payment = payments
        .into_iter()
        .filter(|p| p.status == PaymentStatus::Successful)
        .max_by_key(|p| p.paid_at);
    Ok(BillingSummary {
        customer_id: customer.id,
        customer_name: format!("{} {}", customer.first_name, customer.last_name),
        total_due: open_invoices.iter().map(|i| i.outstanding).sum(),
        overdue_amount: open_invoices
            .iter()
            .filter(|i| i.status == InvoiceStatus::Overdue)
            .map(|i| i.outstanding)
            .sum(),
        open_invoices,
        subscriptions: lines,
        failed_payments,
        last_successful_payment,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn identity(actors: &[&str]) -> Identity {
        Identity {
            subject: "alice".into(),
            object_id: None,
            tenant: "c0a7".into(),
            roles: BTreeSet::from(["security".to_owned()]),
            scopes: BTreeSet::new(),
            client_id: None,
            expires_at: i64::MAX,
            audiences: Vec::new(),
            actors: actors.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    #[test]
    fn an_unlock_note_names_the_subject_and_any_agent() {
        assert_eq!(
            unlock_note(&identity(&[])),
            "Account unlocked by alice (tenant c0a7) after identity verification"
        );
        assert_eq!(
            unlock_note(&identity(&["contoso-agent"])),
            "Account unlocked by alice (tenant c0a7) via contoso-agent after identity verification"
        );
    }
}
