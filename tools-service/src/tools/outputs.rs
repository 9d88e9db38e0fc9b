//! Tool outputs: the structured result of each tool (its `JsonSchema` is the tool's output
//! schema) and its plain-text rendering for clients and models that read text.

use std::fmt::Write;

use chrono::{DateTime, NaiveDate, Utc};
use schemars::JsonSchema;
use serde::Serialize;

use crate::{domain::*, money::Money, search::SearchHit};

/// A readable text version of a structured result.
pub trait Render {
    fn render(&self) -> String;
}

fn name(c: &Customer) -> String {
    format!("{} {}", c.first_name, c.last_name)
}

fn line(out: &mut String, args: std::fmt::Arguments<'_>) {
    let _ = out.write_fmt(args);
    out.push('\n');
}

macro_rules! ln {
    ($out:expr, $($arg:tt)*) => { line($out, format_args!($($arg)*)) };
}

fn subscription_line(out: &mut String, s: &Subscription) {
    let cap = s
        .data_cap_gb
        .map_or("no data cap".to_owned(), |gb| format!("{gb} GB cap"));
    let speed = s
        .speed_tier
        .as_deref()
        .map(|t| format!(", {t}"))
        .unwrap_or_default();
    ln!(
        out,
        "- subscription {}: {} ({}{speed}, {cap}), status {}, service {}, roaming {}, autopay {}",
        s.id,
        s.product_name,
        s.product_category,
        s.status,
        s.service_status,
        if s.roaming_enabled { "on" } else { "off" },
        if s.autopay_enabled { "on" } else { "off" },
    );
}

fn invoice_line(out: &mut String, i: &Invoice) {
    ln!(
        out,
        "- invoice {} of {} ({}): {} billed, {} paid, {} outstanding, due {}, {}",
        i.id,
        i.invoice_date,
        i.description,
        i.amount,
        i.paid,
        i.outstanding,
        i.due_date,
        i.status
    );
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CustomerPage {
    pub customers: Vec<CustomerSummary>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl Render for CustomerPage {
    fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.customers {
            ln!(
                &mut out,
                "{}: {} {} ({}, {})",
                c.id,
                c.first_name,
                c.last_name,
                c.loyalty_level,
                c.email
            );
        }
        match &self.next_cursor {
            Some(cursor) => ln!(
                &mut out,
                "More customers: call again with cursor \"{cursor}\"."
            ),
            None => ln!(&mut out, "End of the customer list."),
        }
        out
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CustomerDetail {
    #[serde(flatten)]
    pub customer: Customer,
    pub subscriptions: Vec<Subscription>,
}

impl Render for CustomerDetail {
    fn render(&self) -> String {
        let c = &self.customer;
        let mut out = String::new();
        ln!(
            &mut out,
            "Customer {}: {} ({} loyalty), customer since {}",
            c.id,
            name(c),
            c.loyalty_level,
            c.joined_on
        );
        ln!(
            &mut out,
            "Contact: {}, {}; address: {}",
            c.email,
            c.phone,
            c.address
        );
        ln!(&mut out, "Subscriptions ({}):", self.subscriptions.len());
        for s in &self.subscriptions {
            subscription_line(&mut out, s);
        }
        out
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SubscriptionDetail {
    #[serde(flatten)]
    pub subscription: Subscription,
    pub product: Product,
    /// Newest first.
    pub invoices: Vec<Invoice>,
    /// Newest first.
    pub incidents: Vec<ServiceIncident>,
}

impl Render for SubscriptionDetail {
    fn render(&self) -> String {
        let mut out = String::new();
        subscription_line(&mut out, &self.subscription);
        ln!(
            &mut out,
            "Product: {} at {}/month",
            self.product.name,
            self.product.monthly_fee
        );
        ln!(&mut out, "Invoices ({}):", self.invoices.len());
        for i in &self.invoices {
            invoice_line(&mut out, i);
        }
        ln!(&mut out, "Service incidents ({}):", self.incidents.len());
        for i in &self.incidents {
            ln!(
                &mut out,
                "- incident {} reported {}: {} [{}]",
                i.id,
                i.reported_at.format("%Y-%m-%d %H:%M UTC"),
                i.description,
                i.status
            );
        }
        out
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct InvoicePayments {
    pub invoice: Invoice,
    /// Every attempt, oldest first; only successful ones count towards `invoice.paid`.
    pub payments: Vec<Payment>,
}

impl Render for InvoicePayments {
    fn render(&self) -> String {
        let mut out = String::new();
        invoice_line(&mut out, &self.invoice);
        ln!(&mut out, "Payments ({}):", self.payments.len());
        for p in &self.payments {
            ln!(
                &mut out,
                "- payment {} on {}: {} by {}, {}",
                p.id,
                p.paid_at.format("%Y-%m-%d"),
                p.amount,
                p.method,
                p.status
            );
        }
        out
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct PaymentResult {
    pub payment: Payment,
    /// The invoice after the payment.
    pub invoice: Invoice,
}

impl Render for PaymentResult {
    fn render(&self) -> String {
        format!(
            "Payment {} of {} recorded on invoice {}. Outstanding now {} (invoice {}).\n",
            self.payment.id,
            self.payment.amount,
            self.invoice.id,
            self.invoice.outstanding,
            self.invoice.status
        )
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct UsageTotals {
    pub days: i64,
    pub data_used_mb: i64,
    /// `data_used_mb` in GB (1 GB = 1000 MB), one decimal.
    pub data_used_gb: f64,
    pub voice_minutes: i64,
    pub sms_count: i64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct DataUsageReport {
    pub subscription_id: i64,
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
    /// The plan's monthly cap, for comparison.
    pub data_cap_gb: Option<i64>,
    pub totals: UsageTotals,
    /// One row per day, oldest first; empty when `aggregate` was requested.
    pub daily: Vec<DataUsage>,
}

impl Render for DataUsageReport {
    fn render(&self) -> String {
        let mut out = String::new();
        let t = &self.totals;
        let cap = self
            .data_cap_gb
            .map_or(String::new(), |gb| format!(" (plan cap {gb} GB a month)"));
        ln!(
            &mut out,
            "Usage of subscription {} from {} to {} ({} days): {:.1} GB data{cap}, {} voice minutes, {} SMS",
            self.subscription_id,
            self.start_date,
            self.end_date,
            t.days,
            t.data_used_gb,
            t.voice_minutes,
            t.sms_count
        );
        for d in &self.daily {
            ln!(
                &mut out,
                "- {}: {} MB, {} min, {} SMS",
                d.usage_date,
                d.data_used_mb,
                d.voice_minutes,
                d.sms_count
            );
        }
        out
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct PromotionView {
    #[serde(flatten)]
    pub promotion: Promotion,
    pub state: PromotionState,
}

fn promotion_line(out: &mut String, p: &PromotionView) {
    let pr = &p.promotion;
    ln!(
        out,
        "- promotion {} \"{}\": {}% off, {} and above, {} to {} [{}] - {}",
        pr.id,
        pr.name,
        pr.discount_percent,
        pr.min_loyalty_level,
        pr.start_date,
        pr.end_date,
        p.state,
        pr.description
    );
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Promotions {
    pub today: NaiveDate,
    pub promotions: Vec<PromotionView>,
}

impl Render for Promotions {
    fn render(&self) -> String {
        let mut out = String::new();
        ln!(&mut out, "Promotions as of {}:", self.today);
        for p in &self.promotions {
            promotion_line(&mut out, p);
        }
        out
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct EligiblePromotions {
    pub customer_id: i64,
    pub loyalty_level: LoyaltyLevel,
    pub today: NaiveDate,
    /// Running today, and the customer meets every condition.
    pub eligible: Vec<PromotionView>,
    /// The customer would qualify, but the promotion has not started yet.
    pub upcoming: Vec<PromotionView>,
}

impl Render for EligiblePromotions {
    fn render(&self) -> String {
        let mut out = String::new();
        ln!(
            &mut out,
            "Customer {} ({} loyalty) is eligible today for {} promotion(s):",
            self.customer_id,
            self.loyalty_level,
            self.eligible.len()
        );
        for p in &self.eligible {
            promotion_line(&mut out, p);
        }
        if !self.upcoming.is_empty() {
            ln!(
                &mut out,
                "Not yet started (cannot be applied before the start date):"
            );
            for p in &self.upcoming {
                promotion_line(&mut out, p);
            }
        }
        out
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SearchResults {
    pub query: String,
    /// `lexical` (BM25) or `hybrid` (BM25 fused with embeddings).
    pub mode: String,
    pub results: Vec<SearchHit>,
}

impl Render for SearchResults {
    fn render(&self) -> String {
        let mut out = String::new();
        if self.results.is_empty() {
            ln!(
                &mut out,
                "No knowledge-base document matches \"{}\".",
                self.query
            );
        }
        for hit in &self.results {
            ln!(
                &mut out,
                "## {} (document {}, {}, score {:.3})\n{}\n",
                hit.title,
                hit.id,
                hit.category,
                hit.score,
                hit.content
            );
        }
        out
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SecurityLogReport {
    pub customer_id: i64,
    /// Whether the latest lock has not been lifted.
    pub account_locked: bool,
    pub locked_since: Option<DateTime<Utc>>,
    /// Newest first.
    pub entries: Vec<SecurityLog>,
}

impl Render for SecurityLogReport {
    fn render(&self) -> String {
        let mut out = String::new();
        match self.locked_since {
            Some(at) if self.account_locked => ln!(
                &mut out,
                "Account of customer {} is LOCKED since {}.",
                self.customer_id,
                at.format("%Y-%m-%d %H:%M UTC")
            ),
            _ => ln!(
                &mut out,
                "Account of customer {} is not locked.",
                self.customer_id
            ),
        }
        for e in &self.entries {
            ln!(
                &mut out,
                "- {} {}: {}",
                e.occurred_at.format("%Y-%m-%d %H:%M UTC"),
                e.event_type,
                e.description
            );
        }
        out
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CustomerOrders {
    pub customer_id: i64,
    /// Newest first.
    pub orders: Vec<Order>,
}

impl Render for CustomerOrders {
    fn render(&self) -> String {
        let mut out = String::new();
        ln!(
            &mut out,
            "Orders of customer {} ({}):",
            self.customer_id,
            self.orders.len()
        );
        for o in &self.orders {
            let returned = o
                .returned_on
                .map(|d| format!(", returned on {d}"))
                .unwrap_or_default();
            ln!(
                &mut out,
                "- order {} on {}: {} for {}, {}{returned}",
                o.id,
                o.order_date,
                o.item,
                o.amount,
                o.status
            );
        }
        out
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SupportTickets {
    pub customer_id: i64,
    pub open_only: bool,
    /// Newest first.
    pub tickets: Vec<SupportTicket>,
}

fn ticket_line(out: &mut String, t: &SupportTicket) {
    ln!(
        out,
        "- ticket {} opened {}: [{}] {} ({} priority, {})",
        t.id,
        t.opened_at.format("%Y-%m-%d"),
        t.category,
        t.subject,
        t.priority,
        t.status
    );
}

impl Render for SupportTickets {
    fn render(&self) -> String {
        let mut out = String::new();
        let which = if self.open_only {
            "Open tickets"
        } else {
            "Tickets"
        };
        ln!(
            &mut out,
            "{which} of customer {} ({}):",
            self.customer_id,
            self.tickets.len()
        );
        for t in &self.tickets {
            ticket_line(&mut out, t);
        }
        out
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TicketCreated {
    pub ticket: SupportTicket,
}

impl Render for TicketCreated {
    fn render(&self) -> String {
        let mut out = String::from("Ticket created:\n");
        ticket_line(&mut out, &self.ticket);
        out
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ProductList {
    pub products: Vec<Product>,
}

fn product_line(out: &mut String, p: &Product) {
    let cap = p
        .data_cap_gb
        .map(|gb| format!(", {gb} GB data"))
        .unwrap_or_default();
    let speed = p
        .speed_tier
        .as_deref()
        .map(|s| format!(", {s}"))
        .unwrap_or_default();
    ln!(
        out,
        "- product {}: {} ({}) {}/month{cap}{speed} - {}",
        p.id,
        p.name,
        p.category,
        p.monthly_fee,
        p.description
    );
}

impl Render for ProductList {
    fn render(&self) -> String {
        let mut out = String::new();
        for p in &self.products {
            product_line(&mut out, p);
        }
        out
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ProductDetail {
    #[serde(flatten)]
    pub product: Product,
    /// Promotions on this product running today.
    pub active_promotions: Vec<PromotionView>,
}

impl Render for ProductDetail {
    fn render(&self) -> String {
        let mut out = String::new();
        product_line(&mut out, &self.product);
        if let Some(rate) = self.product.overage_per_gb {
            ln!(&mut out, "Data above the cap costs {rate} per GB.");
        }
        for p in &self.active_promotions {
            promotion_line(&mut out, p);
        }
        out
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SubscriptionUpdated {
    pub subscription: Subscription,
}

impl Render for SubscriptionUpdated {
    fn render(&self) -> String {
        let mut out = String::from("Subscription updated:\n");
        subscription_line(&mut out, &self.subscription);
        out
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct AccountUnlocked {
    pub customer_id: i64,
    pub locked_at: DateTime<Utc>,
    pub unlocked_at: DateTime<Utc>,
    /// The security-log entry written for the unlock.
    pub log_entry: SecurityLog,
}

impl Render for AccountUnlocked {
    fn render(&self) -> String {
        format!(
            "Account of customer {} unlocked at {} (it was locked at {}).\n",
            self.customer_id,
            self.unlocked_at.format("%Y-%m-%d %H:%M UTC"),
            self.locked_at.format("%Y-%m-%d %H:%M UTC")
        )
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SubscriptionBilling {
    pub subscription_id: i64,
    pub product_name: String,
    pub status: SubscriptionStatus,
    pub monthly_fee: Money,
    /// Median of the earlier invoices: what this subscription usually costs.
    pub usual_invoice_amount: Option<Money>,
    pub latest_invoice: Option<Invoice>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct BillingSummary {
    pub customer_id: i64,
    pub customer_name: String,
    /// Everything outstanding on every invoice.
    pub total_due: Money,
    /// The part of `total_due` that is past its due date.
    pub overdue_amount: Money,
    /// Invoices with a balance, oldest first.
    pub open_invoices: Vec<Invoice>,
    pub subscriptions: Vec<SubscriptionBilling>,
    /// Failed payment attempts on the open invoices.
    pub failed_payments: Vec<Payment>,
    pub last_successful_payment: Option<Payment>,
}

impl Render for BillingSummary {
    fn render(&self) -> String {
        let mut out = String::new();
        ln!(
            &mut out,
            "Billing summary for {} (customer {}): total due {}, of which overdue {}.",
            self.customer_name,
            self.customer_id,
            self.total_due,
            self.overdue_amount
        );
        for s in &self.subscriptions {
            let usual = s
                .usual_invoice_amount
                .map(|m| m.to_string())
                .unwrap_or("n/a".into());
            let latest = s
                .latest_invoice
                .as_ref()
                .map(|i| {
                    format!(
                        "latest invoice {} of {} for {} ({})",
                        i.id, i.invoice_date, i.amount, i.status
                    )
                })
                .unwrap_or("no invoice yet".into());
            ln!(
                &mut out,
                "- subscription {} {} ({}), {}/month, usually billed {usual}; {latest}",
                s.subscription_id,
                s.product_name,
                s.status,
                s.monthly_fee
            );
        }
        if !self.open_invoices.is_empty() {
            ln!(&mut out, "Open invoices:");
            for i in &self.open_invoices {
                invoice_line(&mut out, i);
            }
        }
        if !self.failed_payments.is_empty() {
            ln!(
                &mut out,
                "Failed payment attempts on open invoices: {}",
                self.failed_payments.len()
            );
        }
        if let Some(p) = &self.last_successful_payment {
            ln!(
                &mut out,
                "Last successful payment: {} on {}.",
                p.amount,
                p.paid_at.format("%Y-%m-%d")
            );
        }
        out
    }
}
