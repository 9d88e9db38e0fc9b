//! What each tool does: validate the arguments, read or write through the [`Storage`], and shape
//! the typed output. Nothing here knows about MCP or HTTP, so every rule is testable directly.
//! A subscription or invoice named alone is first resolved to its customer ([`owner`]); every
//! read and write after that names the customer.

use chrono::{NaiveDate, Utc};
use shared::auth::Identity;

use super::{ToolError, dates, outputs::*, params};
use crate::{
    domain::{
        writes::{self, NewPayment, NewTicket, SubscriptionUpdate},
        *,
    },
    money::{Money, echo},
    search::KnowledgeIndex,
    store::{Owned, Storage, StoreError},
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

async fn customer(store: &Storage, id: i64) -> Result<Customer> {
    store
        .customers
        .customer(id)
        .await?
        .ok_or(ToolError::not_found("customer", id))
}

/// The customer `of` belongs to; not found if `of` does not exist.
async fn owner(store: &Storage, of: Owned) -> Result<i64> {
    store
        .customers
        .owner(of)
        .await?
        .ok_or_else(|| of.not_found().into())
}

/// A subscription named alone, and its customer.
async fn subscription(store: &Storage, id: i64) -> Result<(i64, Subscription)> {
    let of = Owned::Subscription(id);
    let customer = owner(store, of).await?;
    let subscription = store
        .customers
        .subscription(customer, id)
        .await?
        .ok_or_else(|| ToolError::from(of.not_found()))?;
    Ok((customer, subscription))
}

/// The cursor is the store's own text; anything it did not hand out is refused, quoting at
/// most its first 40 characters.
pub async fn get_all_customers(store: &Storage, p: params::ListCustomers) -> Result<CustomerPage> {
    let limit = bounded(p.limit, DEFAULT_PAGE, MAX_PAGE, "limit")?;
    let cursor = p.cursor.as_deref().filter(|c| !c.is_empty());
    let page = match store.customers.customers(cursor, limit).await {
        Err(StoreError::BadCursor) => {
            return Err(ToolError::invalid(format!(
                "cursor {:?} is not one this service returned; omit it to start from the first page",
                echo(cursor.unwrap_or_default())
            )));
        }
        page => page?,
    };
    Ok(CustomerPage {
        customers: page.items,
        next_cursor: page.next,
    })
}

pub async fn get_customer_detail(store: &Storage, p: params::CustomerId) -> Result<CustomerDetail> {
    let (customer, subscriptions) = tokio::try_join!(customer(store, p.customer_id), async {
        Ok(store.customers.subscriptions(p.customer_id).await?)
    })?;
    Ok(CustomerDetail {
        customer,
        subscriptions,
    })
}

pub async fn get_subscription_detail(
    store: &Storage,
    p: params::SubscriptionId,
) -> Result<SubscriptionDetail> {
    let (customer, subscription) = subscription(store, p.subscription_id).await?;
    let (product, invoices, incidents) = tokio::try_join!(
        async {
            store
                .catalog
                .product(subscription.product_id)
                .await?
                .ok_or(ToolError::not_found("product", subscription.product_id))
        },
        async {
            Ok(store
                .customers
                .invoices(customer, subscription.id, today())
                .await?)
        },
        async { Ok(store.customers.incidents(customer, subscription.id).await?) },
    )?;
    Ok(SubscriptionDetail {
        subscription,
        product,
        invoices,
        incidents,
    })
}

pub async fn get_invoice_payments(
    store: &Storage,
    p: params::InvoiceId,
) -> Result<InvoicePayments> {
    let of = Owned::Invoice(p.invoice_id);
    let customer = owner(store, of).await?;
    let (invoice, payments) = tokio::try_join!(
        async {
            store
                .customers
                .invoice(customer, p.invoice_id, today())
                .await?
                .ok_or_else(|| ToolError::from(of.not_found()))
        },
        async { Ok(store.customers.payments(customer, p.invoice_id).await?) },
    )?;
    Ok(InvoicePayments { invoice, payments })
}

pub async fn pay_invoice(store: &Storage, p: params::PayInvoice) -> Result<PaymentResult> {
    let new = NewPayment {
        invoice_id: p.invoice_id,
        amount: p.amount,
        method: p.method.unwrap_or(PaymentMethod::CreditCard),
        paid_at: Utc::now(),
    };
    // What needs no state is refused before anything is read.
    writes::payable(new.amount)?;
    let customer = owner(store, Owned::Invoice(p.invoice_id)).await?;
    let receipt = store
        .customers
        .pay_invoice(customer, p.invoice_id, today(), &|invoice, id| {
            writes::payment(invoice, &new, id)
        })
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

pub async fn get_data_usage(store: &Storage, p: params::DataUsageQuery) -> Result<DataUsageReport> {
    let (start, end) = dates::usage_window(p.start_date, p.end_date, today())?;
    let (customer, sub) = subscription(store, p.subscription_id).await?;
    let daily = store
        .customers
        .data_usage(customer, sub.id, start, end)
        .await?;
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

pub async fn get_promotions(store: &Storage) -> Result<Promotions> {
    let today = today();
    let promotions = store
        .catalog
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
    store: &Storage,
    p: params::CustomerId,
) -> Result<EligiblePromotions> {
    let today = today();
    let (customer, subscriptions, promotions) = tokio::try_join!(
        customer(store, p.customer_id),
        async { Ok(store.customers.subscriptions(p.customer_id).await?) },
        async { Ok(store.catalog.promotions().await?) },
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
    store: &Storage,
    p: params::SecurityLogs,
) -> Result<SecurityLogReport> {
    let limit = bounded(p.limit, DEFAULT_PAGE, MAX_PAGE, "limit")?;
    customer(store, p.customer_id).await?;
    let entries = store.customers.security_logs(p.customer_id, limit).await?;
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

pub async fn get_customer_orders(store: &Storage, p: params::CustomerId) -> Result<CustomerOrders> {
    customer(store, p.customer_id).await?;
    let orders = store.customers.orders(p.customer_id).await?;
    Ok(CustomerOrders {
        customer_id: p.customer_id,
        orders,
    })
}

pub async fn get_support_tickets(
    store: &Storage,
    p: params::SupportTickets,
) -> Result<SupportTickets> {
    customer(store, p.customer_id).await?;
    let tickets = store.customers.tickets(p.customer_id, p.open_only).await?;
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
    store: &Storage,
    p: params::CreateSupportTicket,
) -> Result<TicketCreated> {
    let subject = text_field(p.subject, "subject", 200)?;
    let description = text_field(p.description, "description", 4000)?;
    let new = NewTicket {
        customer_id: p.customer_id,
        subscription_id: p.subscription_id,
        category: p.category,
        priority: p.priority.unwrap_or(TicketPriority::Normal),
        subject,
        description,
        opened_at: Utc::now(),
    };
    let ticket = store
        .customers
        .create_ticket(p.customer_id, p.subscription_id, &|owner, id| {
            writes::ticket(new.clone(), owner, id)
        })
        .await?;
    tracing::info!(ticket_id = ticket.id, category = %ticket.category, "support ticket created");
    Ok(TicketCreated { ticket })
}

pub async fn get_products(store: &Storage, p: params::Products) -> Result<ProductList> {
    Ok(ProductList {
        products: store.catalog.products(p.category).await?,
    })
}

pub async fn get_product_detail(store: &Storage, p: params::ProductId) -> Result<ProductDetail> {
    let product = store
        .catalog
        .product(p.product_id)
        .await?
        .ok_or(ToolError::not_found("product", p.product_id))?;
    let today = today();
    let active_promotions = store
        .catalog
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
    store: &Storage,
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
        // The rule says why; nothing needs reading first.
        return Err(ToolError::invalid(
            "updates is empty; give at least one of product_id, status, roaming_enabled, autopay_enabled",
        ));
    }
    let customer = owner(store, Owned::Subscription(p.subscription_id)).await?;
    // The catalogue does not change while the service runs: the plan is read outside the
    // subscription's atomic step.
    let plan = match update.product_id {
        None => None,
        Some(product_id) => Some(
            store
                .catalog
                .product(product_id)
                .await?
                .ok_or(ToolError::not_found("product", product_id))?,
        ),
    };
    let subscription = store
        .customers
        .update_subscription(customer, p.subscription_id, &|current| {
            writes::subscription_change(current, &update, plan.as_ref())
        })
        .await?;
    tracing::info!(subscription_id = subscription.id, "subscription updated");
    Ok(SubscriptionUpdated { subscription })
}

pub async fn unlock_account(
    store: &Storage,
    p: params::CustomerId,
    by: &Identity,
) -> Result<AccountUnlocked> {
    let note = unlock_note(by);
    let at = Utc::now();
    let receipt = store
        .customers
        .unlock_account(p.customer_id, &|latest, id| {
            writes::unlock(p.customer_id, latest, at, &note, id)
        })
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

pub async fn get_billing_summary(store: &Storage, p: params::CustomerId) -> Result<BillingSummary> {
    let today = today();
    let id = p.customer_id;
    let (customer, subscriptions) = tokio::try_join!(customer(store, id), async {
        Ok(store.customers.subscriptions(id).await?)
    },)?;
    let invoice_lists = futures::future::try_join_all(
        subscriptions
            .iter()
            .map(|s| store.customers.invoices(id, s.id, today)),
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
            .map(|&invoice| store.customers.payments(id, invoice)),
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
