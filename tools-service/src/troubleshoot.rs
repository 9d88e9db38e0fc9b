//! `trouble_shoot_device`: a long-running, multi-step diagnosis of a customer's service.
//!
//! Each step inspects real state (subscription and billing status, service status, incidents,
//! tickets, recent usage) and takes `step` time, standing in for the remote line tests a real
//! operator would run. Progress is reported after every step, and the run stops at the next step
//! boundary (or mid-wait) when the caller cancels.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{Days, Utc};
use schemars::JsonSchema;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::{
    domain::*,
    store::Storage,
    tools::{ToolError, render::Render},
};

/// Where progress goes (MCP progress notifications in the server, a vector in tests).
#[async_trait]
pub trait ProgressSink: Send + Sync {
    async fn report(&self, progress: u32, total: u32, message: String);
}

/// Result of one diagnostic step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Warning,
    Problem,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Check {
    pub step: u32,
    pub name: String,
    pub outcome: Outcome,
    pub detail: String,
}

/// The diagnosis returned at the end of the run.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Diagnosis {
    pub customer_id: i64,
    pub subscription_id: i64,
    pub product_name: String,
    pub device: String,
    pub subscription_status: SubscriptionStatus,
    pub service_status: ServiceStatus,
    pub open_incidents: Vec<ServiceIncident>,
    pub open_tickets: Vec<SupportTicket>,
    pub checks: Vec<Check>,
    /// One-sentence verdict: where the fault most likely is.
    pub conclusion: String,
    pub recommended_actions: Vec<String>,
    pub duration_ms: u64,
}

impl Render for Diagnosis {
    fn render(&self) -> String {
        let mut out = format!(
            "Diagnosis of subscription {} ({}) for customer {}, device: {}\n",
            self.subscription_id, self.product_name, self.customer_id, self.device
        );
        for c in &self.checks {
            out.push_str(&format!(
                "{}. {} [{:?}]: {}\n",
                c.step, c.name, c.outcome, c.detail
            ));
        }
        out.push_str(&format!("Conclusion: {}\n", self.conclusion));
        for a in &self.recommended_actions {
            out.push_str(&format!("- {a}\n"));
        }
        out
    }
}

const STEPS: [&str; 9] = [
    "Checking the account and subscription",
    "Checking billing standing",
    "Reading the service status from network monitoring",
    "Looking for network incidents affecting the line",
    "Reviewing open support tickets",
    "Analysing the last 7 days of usage",
    "Running remote line and registration diagnostics",
    "Checking the device profile",
    "Preparing the recommendation",
];

/// Runs the diagnosis. `step` is the time each step takes (45 s in all by default).
pub async fn run(
    store: &Storage,
    customer_id: i64,
    subscription_id: Option<i64>,
    device: Option<String>,
    step: Duration,
    progress: Option<&dyn ProgressSink>,
    cancel: &CancellationToken,
) -> Result<Diagnosis, ToolError> {
    let started = Instant::now();
    let total = STEPS.len() as u32;
    // The arguments are checked before anything is read: blank means "not given".
    let named_device = match device.filter(|d| !d.trim().is_empty()) {
        Some(d) => Some(crate::tools::common::text_field(d, "device", 200)?),
        None => None,
    };
    let customer = store
        .customers
        .customer(customer_id)
        .await?
        .ok_or(ToolError::not_found("customer", customer_id))?;
    let subscriptions = store.customers.subscriptions(customer.id).await?;
    let sub = match subscription_id {
        Some(id) => subscriptions
            .iter()
            .find(|s| s.id == id)
            .cloned()
            .ok_or_else(|| {
                ToolError::NotFound(format!(
                    "subscription {id} does not exist or does not belong to customer {customer_id}"
                ))
            })?,
        None => subscriptions
            .iter()
            .find(|s| {
                s.status != SubscriptionStatus::Cancelled
                    && s.product_category != ProductCategory::Addon
            })
            .cloned()
            .ok_or_else(|| {
                ToolError::Conflict(format!(
                    "customer {customer_id} has no subscription to diagnose"
                ))
            })?,
    };
    let device = named_device.unwrap_or_else(|| match sub.product_category {
        ProductCategory::Internet => "home router".to_owned(),
        _ => "mobile phone".to_owned(),
    });

    let mut checks = Vec::new();
    let mut actions = Vec::new();
    let mut conclusion: Option<String> = None;
    let today = Utc::now().date_naive();
    let mut open_incidents = Vec::new();
    let mut open_tickets = Vec::new();

    for (index, name) in STEPS.iter().enumerate() {
        let number = index as u32 + 1;
        tokio::select! {
            () = cancel.cancelled() => {
                tracing::info!(step = number, "trouble_shoot_device cancelled");
                return Err(ToolError::Conflict("the diagnosis was cancelled".into()));
            }
            () = tokio::time::sleep(step) => {}
        }
        let (outcome, detail) = match number {
            1 => match sub.status {
                SubscriptionStatus::Active => (
                    Outcome::Ok,
                    format!("subscription {} ({}) is active", sub.id, sub.product_name),
                ),
                status => {
                    conclusion.get_or_insert(format!("the subscription is {status}: service is off until that is resolved, not a device fault"));
                    (
                        Outcome::Problem,
                        format!("subscription {} is {status}", sub.id),
                    )
                }
            },
            2 => {
                let invoices = store
                    .customers
                    .invoices(customer.id, Some(sub.id), today)
                    .await?;
                let overdue: Vec<&Invoice> = invoices
                    .iter()
                    .filter(|i| i.status == InvoiceStatus::Overdue)
                    .collect();
                if overdue.is_empty() {
                    (Outcome::Ok, "no overdue invoice".to_owned())
                } else {
                    let due: crate::money::Money = overdue.iter().map(|i| i.outstanding).sum();
                    actions.push(format!("Pay the overdue balance of {due}; service is reinstated within 24 hours of full payment"));
                    (
                        Outcome::Problem,
                        format!("{} overdue invoice(s), {due} outstanding", overdue.len()),
                    )
                }
            }
            3 => match sub.service_status {
                ServiceStatus::Normal => {
                    (Outcome::Ok, "monitoring reports normal service".to_owned())
                }
                status => (
                    Outcome::Warning,
                    format!("monitoring reports the service as {status}"),
                ),
            },
            4 => {
                open_incidents = store
                    .customers
                    .incidents(customer.id, sub.id)
                    .await?
                    .into_iter()
                    .filter(|i| i.status.is_open())
                    .collect();
                match open_incidents.first() {
                    None => (Outcome::Ok, "no open network incident".to_owned()),
                    Some(incident) => {
                        conclusion.get_or_insert(format!(
                            "a network incident (#{}) is {} on this line; the fault is on the network side, not the {device}",
                            incident.id, incident.status
                        ));
                        actions.push(format!("Tell the customer incident #{} is being worked on ({}); no technician visit is needed while it is open", incident.id, incident.status));
                        actions.push("Offer an SLA credit once the incident is resolved, per the Service Reliability SLA Credit Matrix".to_owned());
                        (
                            Outcome::Problem,
                            format!("incident #{}: {}", incident.id, incident.description),
                        )
                    }
                }
            }
            5 => {
                open_tickets = store.customers.tickets(customer.id, true).await?;
                let call_drops = open_tickets
                    .iter()
                    .filter(|t| t.category == TicketCategory::CallDrop)
                    .count();
                if call_drops >= 3 {
                    conclusion.get_or_insert(format!("{call_drops} open dropped-call tickets point to a coverage problem at the customer's location"));
                    actions.push("Escalate to network engineering for a dropped-call investigation (cell-site logs of the last 30 days)".to_owned());
                    (
                        Outcome::Problem,
                        format!("{call_drops} open dropped-call tickets"),
                    )
                } else if open_tickets.is_empty() {
                    (Outcome::Ok, "no open ticket".to_owned())
                } else {
                    (
                        Outcome::Warning,
                        format!("{} open ticket(s)", open_tickets.len()),
                    )
                }
            }
            6 => {
                let usage = store
                    .customers
                    .data_usage(customer.id, sub.id, today - Days::new(6), today)
                    .await?;
                let mb: i64 = usage.iter().map(|d| d.data_used_mb).sum();
                let silent_days = usage
                    .iter()
                    .rev()
                    .take_while(|d| d.data_used_mb == 0)
                    .count();
                if silent_days >= 3 {
                    (
                        Outcome::Warning,
                        format!("no traffic for the last {silent_days} days"),
                    )
                } else {
                    (
                        Outcome::Ok,
                        format!("{mb} MB over the last 7 days; the line carries traffic"),
                    )
                }
            }
            7 => match (sub.status, sub.service_status) {
                (SubscriptionStatus::Active, ServiceStatus::Normal) => (
                    Outcome::Ok,
                    "line and network registration tests passed".to_owned(),
                ),
                (SubscriptionStatus::Active, status) => {
                    let tier = sub
                        .speed_tier
                        .as_deref()
                        .map(|t| format!(" against a {t} tier"))
                        .unwrap_or_default();
                    (
                        Outcome::Warning,
                        format!("line test shows {status} throughput{tier}"),
                    )
                }
                (status, _) => (
                    Outcome::Problem,
                    format!("line is not provisioned (subscription {status})"),
                ),
            },
            8 => (
                Outcome::Ok,
                format!("{device}: no known issue with this device profile"),
            ),
            _ => {
                let verdict = conclusion.get_or_insert_with(|| {
                    actions.push(format!("Restart the {device} and check its settings; open a ticket if the problem continues"));
                    format!("no fault found on the network side; the {device} is the most likely cause")
                });
                (Outcome::Ok, verdict.clone())
            }
        };
        checks.push(Check {
            step: number,
            name: (*name).to_owned(),
            outcome,
            detail,
        });
        if let Some(sink) = progress {
            sink.report(number, total, format!("Step {number}/{total}: {name}"))
                .await;
        }
    }

    Ok(Diagnosis {
        customer_id: customer.id,
        subscription_id: sub.id,
        product_name: sub.product_name,
        device,
        subscription_status: sub.status,
        service_status: sub.service_status,
        open_incidents,
        open_tickets,
        checks,
        conclusion: conclusion.unwrap_or_default(),
        recommended_actions: actions,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}
