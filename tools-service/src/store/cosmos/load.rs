//! Loading a whole data set into Cosmos DB (seeding and re-seeding).
//!
//! Cosmos has no transaction across partitions, so unlike SQLite this is not all-or-nothing:
//! the data set is checked and turned into documents first (a bad one fails before anything is
//! deleted), then every container is emptied and the documents are upserted, a bounded number
//! at a time. A failure half-way leaves a partial data set, which the next `replace_all`
//! replaces.

use std::collections::HashMap;

use azure_data_cosmos::{FeedScope, Query, clients::ContainerClient};
use futures::{StreamExt, TryStreamExt, stream};
use serde::Deserialize;

use super::{COUNTED, CosmosStore, docs::*, failed, query};
use crate::{
    domain::*,
    seed::Dataset,
    store::{StoreError, StoreResult},
};

/// Requests in flight at once while loading.
const PARALLEL: usize = 16;

fn bad_data(what: String) -> StoreError {
    StoreError::Backend(format!("cosmos seed: {what}"))
}

/// Upserts every document, [`PARALLEL`] at a time.
pub(super) async fn upsert_all<D: Keyed + Send + Sync>(
    container: &ContainerClient,
    docs: Vec<D>,
) -> StoreResult<()> {
    stream::iter(docs.into_iter().map(|doc| async move {
        container
            .upsert_item(doc.pk().to_owned(), doc.id(), &doc, None)
            .await
            .map(drop)
            .map_err(failed("upsert"))
    }))
    .buffer_unordered(PARALLEL)
    .try_collect::<()>()
    .await?;
    Ok(())
}

/// Deletes every document of a container.
async fn clear(container: &ContainerClient) -> StoreResult<()> {
    #[derive(Deserialize)]
    struct Key {
        id: String,
        pk: String,
    }
    let keys: Vec<Key> = query(
        container,
        Query::from("SELECT c.id, c.pk FROM c"),
        FeedScope::full_container(),
        "list for deletion",
    )
    .await?;
    stream::iter(keys.into_iter().map(|key| async move {
        match container.delete_item(key.pk, &key.id, None).await {
            Ok(_) => Ok(()),
            Err(e) if e.status().is_not_found() => Ok(()),
            Err(e) => Err(failed("delete")(e)),
        }
    }))
    .buffer_unordered(PARALLEL)
    .try_collect::<()>()
    .await?;
    Ok(())
}

/// Every document of a data set, checked for records that name what does not exist.
struct Documents {
    customers: Vec<Doc<CustomerBody>>,
    lines: Vec<Doc<LineBody>>,
    invoices: Vec<Doc<InvoiceBody>>,
    payments: Vec<Doc<Payment>>,
    usage: Vec<Doc<UsageBody>>,
    security_logs: Vec<Doc<SecurityLog>>,
    orders: Vec<Doc<Order>>,
    tickets: Vec<Doc<SupportTicket>>,
    incidents: Vec<Doc<ServiceIncident>>,
    lookups: Vec<Lookup>,
}

impl Documents {
    fn of(data: &Dataset) -> StoreResult<Self> {
        let products: HashMap<i64, &Product> = data.products.iter().map(|p| (p.id, p)).collect();
        let line_owner: HashMap<i64, i64> = data
            .subscriptions
            .iter()
            .map(|s| (s.id, s.customer_id))
            .collect();
        let owner_of_line = |line: i64, what: &str| {
            line_owner.get(&line).copied().ok_or_else(|| {
                bad_data(format!("{what} names subscription {line}, not in the data"))
            })
        };
        let mut invoice_owner = HashMap::new();
        for i in &data.invoices {
            let owner = owner_of_line(i.subscription_id, &format!("invoice {}", i.id))?;
            invoice_owner.insert(i.id, owner);
        }
        let mut paid: HashMap<i64, i64> = HashMap::new();
        let mut payments = Vec::with_capacity(data.payments.len());
        for p in &data.payments {
            let owner = *invoice_owner.get(&p.invoice_id).ok_or_else(|| {
                bad_data(format!(
                    "payment {} names invoice {}, not in the data",
                    p.id, p.invoice_id
                ))
            })?;
            if p.status == PaymentStatus::Successful {
                *paid.entry(p.invoice_id).or_default() += p.amount.cents();
            }
            let at = Some(time_key(p.paid_at));
            payments.push(Doc::new(PAYMENT, partition(owner), p.id, at, p.clone()));
        }

        let mut customers: HashMap<i64, Doc<CustomerBody>> = HashMap::new();
        for c in &data.customers {
            let body = CustomerBody {
                profile: c.clone(),
                latest_lock_event: None,
            };
            customers.insert(c.id, Doc::new(CUSTOMER, partition(c.id), c.id, None, body));
        }
        let mut security_logs = Vec::with_capacity(data.security_logs.len());
        for l in &data.security_logs {
            let customer = customers.get_mut(&l.customer_id).ok_or_else(|| {
                bad_data(format!(
                    "security log {} names customer {}, not in the data",
                    l.id, l.customer_id
                ))
            })?;
            customer.data.record(l);
            let at = Some(time_key(l.occurred_at));
            security_logs.push(Doc::new(
                SECURITY_LOG,
                partition(l.customer_id),
                l.id,
                at,
                l.clone(),
            ));
        }

        let mut lines = Vec::with_capacity(data.subscriptions.len());
        let mut lookups = Vec::with_capacity(data.subscriptions.len() + data.invoices.len());
        for s in &data.subscriptions {
            let plan = products.get(&s.product_id).ok_or_else(|| {
                bad_data(format!(
                    "subscription {} names product {}, not in the data",
                    s.id, s.product_id
                ))
            })?;
            let body = LineBody::from_row(s, plan);
            lines.push(Doc::new(
                SUBSCRIPTION,
                partition(s.customer_id),
                s.id,
                None,
                body,
            ));
            lookups.push(Lookup::new(SUBSCRIPTION, s.id, s.customer_id));
        }
        let mut invoices = Vec::with_capacity(data.invoices.len());
        for i in &data.invoices {
            let owner = invoice_owner[&i.id];
            let body = InvoiceBody {
                subscription_id: i.subscription_id,
                invoice_date: i.invoice_date,
                due_date: i.due_date,
                description: i.description.clone(),
                amount_cents: i.amount.cents(),
                paid_cents: paid.get(&i.id).copied().unwrap_or_default(),
            };
            let at = Some(date_key(i.invoice_date));
            invoices.push(Doc::new(INVOICE, partition(owner), i.id, at, body));
            lookups.push(Lookup::new(INVOICE, i.id, owner));
        }
        let mut usage = Vec::with_capacity(data.usage.len());
        for u in &data.usage {
            let owner = owner_of_line(u.subscription_id, "a day of usage")?;
            let day = date_key(u.usage.usage_date);
            let id = format!("{USAGE}-{}-{day}", u.subscription_id);
            let body = UsageBody {
                subscription_id: u.subscription_id,
                day: u.usage.clone(),
            };
            usage.push(Doc::with_id(
                id,
                USAGE,
                partition(owner),
                u.subscription_id,
                Some(day),
                body,
            ));
        }
        let mut incidents = Vec::with_capacity(data.incidents.len());
        for i in &data.incidents {
            let owner = owner_of_line(i.subscription_id, &format!("incident {}", i.id))?;
            let at = Some(time_key(i.reported_at));
            incidents.push(Doc::new(INCIDENT, partition(owner), i.id, at, i.clone()));
        }
        let orders = data
            .orders
            .iter()
            .map(|o| {
                let at = Some(date_key(o.order_date));
                Doc::new(ORDER, partition(o.customer_id), o.id, at, o.clone())
            })
            .collect();
        let tickets = data
            .tickets
            .iter()
            .map(|t| {
                let at = Some(time_key(t.opened_at));
                Doc::new(TICKET, partition(t.customer_id), t.id, at, t.clone())
            })
            .collect();
        Ok(Documents {
            customers: customers.into_values().collect(),
            lines,
            invoices,
            payments,
            usage,
            security_logs,
            orders,
            tickets,
            incidents,
            lookups,
        })
    }
}

/// One past the largest id of each counted kind.
fn counters(data: &Dataset) -> Vec<Counter> {
    let next = |ids: &mut dyn Iterator<Item = i64>| ids.max().unwrap_or(0) + 1;
    let nexts = [
        next(&mut data.payments.iter().map(|p| p.id)),
        next(&mut data.security_logs.iter().map(|l| l.id)),
        next(&mut data.tickets.iter().map(|t| t.id)),
    ];
    COUNTED
        .iter()
        .zip(nexts)
        .map(|(kind, next)| Counter::new(kind, next))
        .collect()
}

/// The documents of one catalogue partition (built before any request is awaited, so no
/// borrowing closure is held across one).
fn catalog_docs<T: Clone>(kind: &'static str, records: &[T], id: fn(&T) -> i64) -> Vec<Doc<T>> {
    records
        .iter()
        .map(|r| Doc::new(kind, kind.to_owned(), id(r), None, r.clone()))
        .collect()
}

/// Replaces every document of every container with `data`.
pub(super) async fn replace_all(store: &CosmosStore, data: &Dataset) -> StoreResult<()> {
    let docs = Documents::of(data)?;
    for container in [
        &store.customers,
        &store.lookup,
        &store.catalog,
        &store.counters,
    ] {
        clear(container).await?;
    }
    let catalog = &store.catalog;
    upsert_all(catalog, catalog_docs(PRODUCT, &data.products, |p| p.id)).await?;
    upsert_all(catalog, catalog_docs(PROMOTION, &data.promotions, |p| p.id)).await?;
    upsert_all(catalog, catalog_docs(KNOWLEDGE, &data.documents, |d| d.id)).await?;
    upsert_all(&store.lookup, docs.lookups).await?;
    let customers = &store.customers;
    upsert_all(customers, docs.customers).await?;
    upsert_all(customers, docs.lines).await?;
    upsert_all(customers, docs.invoices).await?;
    upsert_all(customers, docs.payments).await?;
    upsert_all(customers, docs.usage).await?;
    upsert_all(customers, docs.security_logs).await?;
    upsert_all(customers, docs.orders).await?;
    upsert_all(customers, docs.tickets).await?;
    upsert_all(customers, docs.incidents).await?;
    upsert_all(&store.counters, counters(data)).await
}
