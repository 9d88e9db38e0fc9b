//! Customer service records: a customer's orders, their support tickets, and opening a new
//! ticket.

use chrono::Utc;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    Entry,
    common::{CustomerId, Result, customer, text_field},
    read_only,
    render::{Render, ln},
    store_tool, writes,
};
use crate::{
    domain::{
        Order, SupportTicket, TicketCategory, TicketPriority,
        writes::{self, NewTicket},
    },
    store::Storage,
};

pub(super) fn entries() -> Vec<Entry> {
    vec![
        store_tool!(
            "get_customer_orders",
            "A customer's orders (devices, accessories), newest first, with status and return dates.",
            read_only(),
            CustomerId,
            get_customer_orders
        ),
        store_tool!(
            "get_support_tickets",
            "A customer's support tickets, newest first; open_only=true keeps open and in-progress ones.",
            read_only(),
            SupportTickets,
            get_support_tickets
        ),
        store_tool!(
            "create_support_ticket",
            "Open a support ticket for a customer (optionally about one of their subscriptions).",
            writes(false),
            CreateSupportTicket,
            create_support_ticket
        ),
    ]
}

pub async fn get_customer_orders(store: &Storage, p: CustomerId) -> Result<CustomerOrders> {
    customer(store, p.customer_id).await?;
    let orders = store.customers.orders(p.customer_id).await?;
    Ok(CustomerOrders {
        customer_id: p.customer_id,
        orders,
    })
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

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SupportTickets {
    /// The customer's id.
    pub customer_id: i64,
    /// Only tickets still open or in progress.
    #[serde(default)]
    pub open_only: bool,
}

pub async fn get_support_tickets(store: &Storage, p: SupportTickets) -> Result<TicketList> {
    customer(store, p.customer_id).await?;
    let tickets = store.customers.tickets(p.customer_id, p.open_only).await?;
    Ok(TicketList {
        customer_id: p.customer_id,
        open_only: p.open_only,
        tickets,
    })
}

// Not `SupportTickets`: that is the parameters' name, the title of the input schema clients
// see. (A `///` here would become the output schema's description.)
#[derive(Debug, Serialize, JsonSchema)]
pub struct TicketList {
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

impl Render for TicketList {
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

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSupportTicket {
    /// The customer the ticket is for.
    pub customer_id: i64,
    /// The subscription concerned, if any; must belong to the customer.
    pub subscription_id: Option<i64>,
    /// What the ticket is about.
    pub category: TicketCategory,
    /// Urgency (default `normal`).
    pub priority: Option<TicketPriority>,
    /// One-line summary (1-200 characters).
    pub subject: String,
    /// What the customer reported (1-4000 characters).
    pub description: String,
}

pub async fn create_support_ticket(
    store: &Storage,
    p: CreateSupportTicket,
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
