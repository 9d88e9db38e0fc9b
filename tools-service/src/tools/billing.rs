//! Invoices and payments: one invoice with its payment attempts, paying an invoice, and what a
//! customer owes across all their subscriptions.

use chrono::Utc;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    Entry, ToolError,
    common::{CustomerId, Result, customer, owner, today},
    read_only,
    render::{Render, invoice_line, ln},
    store_tool, writes,
};
use crate::{
    domain::{
        writes::{self, NewPayment},
        *,
    },
    money::Money,
    store::{Owned, Storage},
};

pub(super) fn entries() -> Vec<Entry> {
    vec![
        store_tool!(
            "get_invoice_payments",
            "An invoice with its balance and every payment attempt (successful and failed).",
            read_only(),
            InvoiceId,
            get_invoice_payments
        ),
        store_tool!(
            "pay_invoice",
            "Record a payment on an invoice. The amount must be positive, in whole cents, and not more than the outstanding balance.",
            writes(false),
            PayInvoice,
            pay_invoice
        ),
        store_tool!(
            "get_billing_summary",
            "What a customer owes: total due, overdue amount, open invoices, each subscription's latest and usual invoice, failed payments.",
            read_only(),
            CustomerId,
            get_billing_summary
        ),
    ]
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InvoiceId {
    /// The invoice's id.
    pub invoice_id: i64,
}

pub async fn get_invoice_payments(store: &Storage, p: InvoiceId) -> Result<InvoicePayments> {
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
        async { Ok(store.customers.payments(customer, &[p.invoice_id]).await?) },
    )?;
    Ok(InvoicePayments { invoice, payments })
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

pub async fn pay_invoice(store: &Storage, p: PayInvoice) -> Result<PaymentResult> {
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

fn median(mut amounts: Vec<Money>) -> Option<Money> {
    amounts.sort_unstable();
    amounts.get(amounts.len() / 2).copied()
}

pub async fn get_billing_summary(store: &Storage, p: CustomerId) -> Result<BillingSummary> {
    let today = today();
    let id = p.customer_id;
    let (customer, subscriptions, invoices) = tokio::try_join!(
        customer(store, id),
        async { Ok(store.customers.subscriptions(id).await?) },
        async { Ok(store.customers.invoices(id, None, today).await?) },
    )?;
    let mut open_invoices = Vec::new();
    let mut lines = Vec::new();
    // Payments are read for the open invoices (failed attempts) and the two latest invoices of
    // each subscription (where the last successful payment is).
    let mut payment_invoices = Vec::new();
    for s in &subscriptions {
        // Newest first, as the store lists them.
        let of_line: Vec<&Invoice> = invoices
            .iter()
            .filter(|i| i.subscription_id == s.id)
            .collect();
        lines.push(SubscriptionBilling {
            subscription_id: s.id,
            product_name: s.product_name.clone(),
            status: s.status,
            monthly_fee: s.monthly_fee,
            usual_invoice_amount: median(of_line.iter().skip(1).map(|i| i.amount).collect()),
            latest_invoice: of_line.first().copied().cloned(),
        });
        payment_invoices.extend(of_line.iter().take(2).map(|i| i.id));
    }
    open_invoices.extend(invoices.into_iter().filter(|i| i.outstanding.is_positive()));
    open_invoices.sort_by_key(|i| (i.invoice_date, i.id));
    payment_invoices.extend(open_invoices.iter().map(|i| i.id));
    payment_invoices.sort_unstable();
    payment_invoices.dedup();
    let payments = store.customers.payments(id, &payment_invoices).await?;
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
