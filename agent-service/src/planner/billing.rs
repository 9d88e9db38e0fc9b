//! Billing investigations: why a bill is what it is, overdue invoices and suspended service,
//! payments and balances.

use chrono::Utc;
use futures::future::join_all;
use serde_json::json;

use super::{
    answer::{Answer, Reply, cite_policy, count},
    entities::Entities,
    facts::{BillingSummary, CustomerDetail, DataUsage, Dollars, Invoice, InvoicePayments},
    probe::{Probe, Stop},
};

/// A bill higher than usual: the latest invoice of each subscription against its usual amount,
/// data used against the plan's cap, what is paid and owed, and the matching policy.
pub async fn explain_bill(
    probe: &Probe<'_>,
    customer: i64,
    entities: &Entities,
) -> Result<Reply, Stop> {
    let mut answer = Answer::default();
    let found = probe
        .call::<BillingSummary>("get_billing_summary", json!({"customer_id": customer}))
        .await?;
    let Some(summary) = answer.got(found, &format!("the billing of customer {customer}")) else {
        return Ok(answer.finish());
    };
    let lines: Vec<_> = summary
        .subscriptions
        .iter()
        .filter(|s| s.status != "cancelled")
        .filter(|s| {
            entities
                .subscription_id
                .is_none_or(|id| id == s.subscription_id)
        })
        .collect();
    let usages = join_all(lines.iter().map(|line| {
        probe.call::<DataUsage>(
            "get_data_usage",
            json!({"subscription_id": line.subscription_id, "aggregate": true}),
        )
    }))
    .await;

    answer.say(format!(
        "Billing of {} (customer {}):",
        summary.customer_name, summary.customer_id
    ));
    let mut over_cap = false;
    let mut overage_billed = false;
    for (line, usage) in lines.iter().zip(usages) {
        let mut text = format!(
            "Subscription {} ({}):",
            line.subscription_id, line.product_name
        );
        match (&line.latest_invoice, line.usual_invoice_amount) {
            (Some(latest), usual) => {
                overage_billed |= latest.description.to_lowercase().contains("overage");
                text.push_str(&format!(
                    " the latest invoice {} of {} is {} (\"{}\")",
                    latest.id, latest.invoice_date, latest.amount, latest.description
                ));
                text.push_str(&match usual {
                    Some(usual) if latest.amount > usual => format!(
                        ", against a usual {usual}: {} more than usual.",
                        Dollars(latest.amount.0 - usual.0)
                    ),
                    Some(usual) if latest.amount < usual => {
                        format!(", less than the usual {usual}.")
                    }
                    Some(usual) => format!(", the same as usual ({usual})."),
                    None => ", the first invoice, so there is no usual amount yet.".to_owned(),
                });
                text.push(' ');
                text.push_str(&balance(latest));
            }
            (None, _) => text.push_str(" no invoice yet."),
        }
        if let Some(usage) = answer.got(
            usage?,
            &format!("the data usage of subscription {}", line.subscription_id),
        ) {
            let (sentence, over) = usage_sentence(&usage);
            over_cap |= over;
            text.push(' ');
            text.push_str(&sentence);
        }
        answer.say(text);
    }
    let latest_amounts: Vec<(Dollars, i64)> = lines
        .iter()
        .filter_map(|l| l.latest_invoice.as_ref().map(|i| (i.amount, i.id)))
        .collect();
    for cents in &entities.amounts {
        if let Some((amount, id)) = latest_amounts.iter().find(|(a, _)| a.0 == *cents) {
            answer.say(format!("The {amount} you mention is invoice {id}."));
        }
    }
    answer.say(totals(&summary));
    let query = if over_cap || overage_billed {
        "data overage policy"
    } else {
        "invoice adjustment policy"
    };
    cite_policy(probe, &mut answer, query, 1).await?;
    Ok(answer.finish())
}

/// Overdue invoices and suspended service: which subscription is suspended, which invoice is
/// overdue and by how long, the failed payment attempts, and the reinstatement policy.
pub async fn overdue(probe: &Probe<'_>, customer: i64) -> Result<Reply, Stop> {
    let mut answer = Answer::default();
    let (summary, detail) = tokio::join!(
        probe.call::<BillingSummary>("get_billing_summary", json!({"customer_id": customer})),
        probe.call::<CustomerDetail>("get_customer_detail", json!({"customer_id": customer})),
    );
    let (summary, detail) = (summary?, detail?);
    let Some(summary) = answer.got(summary, &format!("the billing of customer {customer}")) else {
        return Ok(answer.finish());
    };
    if let Some(detail) = answer.got(detail, "the status of the subscriptions") {
        let suspended: Vec<String> = detail
            .subscriptions
            .iter()
            .filter(|s| s.status == "suspended")
            .map(|s| format!("subscription {} ({})", s.id, s.product_name))
            .collect();
        answer.say(if suspended.is_empty() {
            format!(
                "None of the subscriptions of {} (customer {}) is suspended.",
                detail.name(),
                detail.id
            )
        } else {
            format!(
                "The service of {} (customer {}) is suspended: {}.",
                detail.name(),
                detail.id,
                suspended.join(", ")
            )
        });
    }
    let overdue: Vec<&Invoice> = summary
        .open_invoices
        .iter()
        .filter(|i| i.status == "overdue")
        .take(3)
        .collect();
    let payments = join_all(overdue.iter().map(|invoice| {
        probe.call::<InvoicePayments>("get_invoice_payments", json!({"invoice_id": invoice.id}))
    }));
    let mut policy = Answer::default();
    let (payments, cited) = tokio::join!(
        payments,
        cite_policy(
            probe,
            &mut policy,
            "payment failure suspended service reinstatement",
            1
        )
    );
    cited?;
    let today = Utc::now().date_naive();
    if overdue.is_empty() {
        answer.say("No invoice is overdue.");
    }
    for (invoice, payments) in overdue.iter().zip(payments) {
        let late = (today - invoice.due_date).num_days();
        let mut text = format!(
            "Invoice {} of {} (\"{}\") for {} was due on {} and is overdue: {} outstanding, {} past due.",
            invoice.id,
            invoice.invoice_date,
            invoice.description,
            invoice.amount,
            invoice.due_date,
            invoice.outstanding,
            count(usize::try_from(late).unwrap_or(0), "day", "days"),
        );
        if let Some(payments) = answer.got(
            payments?,
            &format!("the payments of invoice {}", invoice.id),
        ) {
            let failed: Vec<String> = payments
                .payments
                .iter()
                .filter(|p| p.status == "failed")
                .map(|p| format!("{} by {} on {}", p.amount, p.method, p.paid_at.date_naive()))
                .collect();
            if !failed.is_empty() {
                text.push_str(&format!(
                    " {} on it: {}.",
                    count(
                        failed.len(),
                        "failed payment attempt",
                        "failed payment attempts"
                    ),
                    failed.join("; ")
                ));
            }
        }
        answer.say(text);
    }
    answer.say(totals(&summary));
    if let Some(paid) = &summary.last_successful_payment {
        answer.say(format!(
            "The last successful payment was {} on {}.",
            paid.amount,
            paid.paid_at.date_naive()
        ));
    }
    answer.absorb(policy);
    Ok(answer.finish())
}

/// What has been paid and what is owed: open invoices, failed attempts, the last payment, and
/// the payments of an invoice the question names.
pub async fn payments(
    probe: &Probe<'_>,
    customer: i64,
    entities: &Entities,
) -> Result<Reply, Stop> {
    let mut answer = Answer::default();
    let invoice = async {
        match entities.invoice_id {
            Some(id) => Some(
                probe
                    .call::<InvoicePayments>("get_invoice_payments", json!({"invoice_id": id}))
                    .await,
            ),
            None => None,
        }
    };
    let (summary, invoice) = tokio::join!(
        probe.call::<BillingSummary>("get_billing_summary", json!({"customer_id": customer})),
        invoice,
    );
    if let Some(summary) = answer.got(summary?, &format!("the billing of customer {customer}")) {
        answer.say(totals(&summary));
        for open in &summary.open_invoices {
            answer.say(format!(
                "Invoice {} of {} (\"{}\"): {}",
                open.id,
                open.invoice_date,
                open.description,
                balance(open)
            ));
        }
        if !summary.failed_payments.is_empty() {
            answer.say(format!(
                "{} on open invoices.",
                count(
                    summary.failed_payments.len(),
                    "failed payment attempt",
                    "failed payment attempts"
                )
            ));
        }
        if let Some(paid) = &summary.last_successful_payment {
            answer.say(format!(
                "The last successful payment was {} on {} (invoice {}).",
                paid.amount,
                paid.paid_at.date_naive(),
                paid.invoice_id
            ));
        }
    }
    if let Some(found) = invoice
        && let Some(detail) = answer.got(found?, "the invoice you named")
    {
        let attempts: Vec<String> = detail
            .payments
            .iter()
            .map(|p| {
                format!(
                    "{} by {} on {} ({})",
                    p.amount,
                    p.method,
                    p.paid_at.date_naive(),
                    p.status
                )
            })
            .collect();
        answer.say(format!(
            "Invoice {} for {}: {} Payments: {}.",
            detail.invoice.id,
            detail.invoice.amount,
            balance(&detail.invoice),
            if attempts.is_empty() {
                "none".to_owned()
            } else {
                attempts.join("; ")
            }
        ));
    }
    Ok(answer.finish())
}

/// "$50.00 of it is paid and $100.00 is outstanding (partially_paid, due 2026-12-06)."
fn balance(invoice: &Invoice) -> String {
    if invoice.outstanding.0 <= 0 {
        return format!("It is paid in full ({} paid).", invoice.paid);
    }
    format!(
        "{} of it is paid and {} is outstanding ({}, due {}).",
        invoice.paid, invoice.outstanding, invoice.status, invoice.due_date
    )
}

fn totals(summary: &BillingSummary) -> String {
    format!(
        "Total due: {}, of which {} is overdue.",
        summary.total_due, summary.overdue_amount
    )
}

/// The usage sentence, and whether the usage is above the cap.
fn usage_sentence(usage: &DataUsage) -> (String, bool) {
    let used = usage.totals.data_used_gb;
    let period = format!(
        "Data used from {} to {} ({} days): {used:.1} GB",
        usage.start_date, usage.end_date, usage.totals.days
    );
    match usage.data_cap_gb {
        Some(cap) if used > cap as f64 => (
            format!(
                "{period} against a {cap} GB cap, {:.1} GB over the cap (subscription {}).",
                used - cap as f64,
                usage.subscription_id
            ),
            true,
        ),
        Some(cap) => (format!("{period}, within the {cap} GB cap."), false),
        None => (format!("{period}; the plan has no data cap."), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::facts::UsageTotals;

    fn usage(gb: f64, cap: Option<i64>) -> DataUsage {
        DataUsage {
            subscription_id: 7,
            start_date: "2026-10-29".parse().expect("date"),
            end_date: "2026-11-27".parse().expect("date"),
            data_cap_gb: cap,
            totals: UsageTotals {
                days: 30,
                data_used_gb: gb,
            },
        }
    }

    #[test]
    fn usage_is_compared_with_the_cap() {
        let (text, over) = usage_sentence(&usage(22.02, Some(10)));
        assert!(over);
        assert_eq!(
            text,
            "Data used from 2026-10-29 to 2026-11-27 (30 days): 22.0 GB against a 10 GB cap, \
             12.0 GB over the cap (subscription 7)."
        );
        assert!(!usage_sentence(&usage(6.0, Some(10))).1);
        assert!(usage_sentence(&usage(60.0, None)).0.contains("no data cap"));
    }
}
