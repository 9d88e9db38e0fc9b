//! Customers and their subscriptions: paging through the customers, a customer's profile, one
//! subscription in detail, and changing a subscription (plan, status, roaming, autopay).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    Entry, ToolError,
    common::{
        CustomerId, DEFAULT_PAGE, MAX_PAGE, Result, bounded, customer, owner, subscription, today,
    },
    read_only,
    render::{Render, invoice_line, ln},
    store_tool, writes,
};
use crate::{
    domain::{
        writes::{self, SubscriptionUpdate},
        *,
    },
    money::echo,
    store::{Owned, Storage, StoreError},
};

pub(super) fn entries() -> Vec<Entry> {
    vec![
        store_tool!(
            "get_all_customers",
            "List customers by id, a page at a time (limit 1-500, default 50). Pass next_cursor back as cursor for the next page.",
            read_only(),
            ListCustomers,
            get_all_customers
        ),
        store_tool!(
            "get_customer_detail",
            "A customer's profile (name, contact, loyalty level) and all their subscriptions.",
            read_only(),
            CustomerId,
            get_customer_detail
        ),
        store_tool!(
            "get_subscription_detail",
            "A subscription with its product, invoices (newest first) and service incidents.",
            read_only(),
            SubscriptionId,
            get_subscription_detail
        ),
        store_tool!(
            "update_subscription",
            "Change a subscription: plan (product_id), status, roaming or autopay. Give at least one change.",
            writes(true),
            UpdateSubscription,
            update_subscription
        ),
    ]
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListCustomers {
    /// How many customers to return (1-500, default 50).
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page; omit for the first page.
    pub cursor: Option<String>,
}

/// The cursor is the store's own text; anything it did not hand out is refused, quoting at
/// most its first 40 characters.
pub async fn get_all_customers(store: &Storage, p: ListCustomers) -> Result<CustomerPage> {
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

pub async fn get_customer_detail(store: &Storage, p: CustomerId) -> Result<CustomerDetail> {
    let (customer, subscriptions) = tokio::try_join!(customer(store, p.customer_id), async {
        Ok(store.customers.subscriptions(p.customer_id).await?)
    })?;
    Ok(CustomerDetail {
        customer,
        subscriptions,
    })
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CustomerDetail {
    #[serde(flatten)]
    pub customer: Customer,
    pub subscriptions: Vec<Subscription>,
}

fn name(c: &Customer) -> String {
    format!("{} {}", c.first_name, c.last_name)
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

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionId {
    /// The subscription's id.
    pub subscription_id: i64,
}

pub async fn get_subscription_detail(
    store: &Storage,
    p: SubscriptionId,
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
                .invoices(customer, Some(subscription.id), today())
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

/// The fields of a subscription that may change. At least one must be given.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionChanges {
    /// Move the subscription to another product (plan change).
    pub product_id: Option<i64>,
    /// New status.
    pub status: Option<SubscriptionStatus>,
    /// Turn international roaming on or off.
    pub roaming_enabled: Option<bool>,
    /// Turn automatic payment on or off.
    pub autopay_enabled: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSubscription {
    /// The subscription to change.
    pub subscription_id: i64,
    /// What to change.
    pub updates: SubscriptionChanges,
}

pub async fn update_subscription(
    store: &Storage,
    p: UpdateSubscription,
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
