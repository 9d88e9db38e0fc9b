//! The customer data in Cosmos DB: point reads by document id, queries within the customer's
//! partition, and the state-dependent writes as conditional writes retried on conflict.
//!
//! Every call names the customer, which is the partition: a record of another customer is
//! simply not in it, so it is not found, as in SQLite.

use async_trait::async_trait;
use azure_data_cosmos::{
    FeedScope, TransactionalBatch,
    options::{BatchReplaceOptions, ItemWriteOptions, Precondition},
};
use chrono::NaiveDate;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use super::{Attempts, CosmosStore, Written, commit, docs::*, failed, query, read, sql};
use crate::{
    domain::{
        writes::{self, PaymentReceipt, SubscriptionChange, UnlockReceipt},
        *,
    },
    store::*,
};

/// The cursor of the customer list: `after:<last id>`, as SQLite's, so a cursor means the same
/// on either backend.
const CURSOR_PREFIX: &str = "after:";

/// How a listing is ordered: every kind sorts on its `at` key, then its id.
const NEWEST_FIRST: &str = "c.at DESC, c.n DESC";
const OLDEST_FIRST: &str = "c.at, c.n";
const BY_ID: &str = "c.n";

/// A listing of one kind of record in one customer's partition.
struct Listing<'a> {
    kind: &'static str,
    /// More of the `WHERE` clause, starting with `AND`.
    filter: &'a str,
    parameters: Vec<(&'a str, Value)>,
    order: &'static str,
    top: Option<u32>,
    /// The record alone (`c.data`), or the whole document when its envelope is needed too.
    whole: bool,
}

impl<'a> Listing<'a> {
    fn of(kind: &'static str, order: &'static str) -> Self {
        Listing {
            kind,
            filter: "",
            parameters: Vec::new(),
            order,
            top: None,
            whole: false,
        }
    }

    fn filtered(mut self, filter: &'a str, parameters: Vec<(&'a str, Value)>) -> Self {
        self.filter = filter;
        self.parameters = parameters;
        self
    }
}

impl CosmosStore {
    /// The records of a listing, as the domain sees them.
    async fn list<T: DeserializeOwned + Send + 'static>(
        &self,
        customer: i64,
        listing: Listing<'_>,
    ) -> StoreResult<Vec<T>> {
        let top = listing.top.map(|n| format!("TOP {n} ")).unwrap_or_default();
        let what = if listing.whole { "*" } else { "VALUE c.data" };
        // The partition key is in the WHERE clause too, so the query means the same whatever
        // the scope it is sent with.
        let text = format!(
            "SELECT {top}{what} FROM c WHERE c.pk = @pk AND c.type = @type {} ORDER BY {}",
            listing.filter, listing.order
        );
        let pk = partition(customer);
        let mut parameters = vec![
            ("@pk", Value::from(pk.clone())),
            ("@type", listing.kind.into()),
        ];
        parameters.extend(listing.parameters);
        Ok(query(
            &self.customers,
            sql(&text, &parameters)?,
            FeedScope::partition(pk),
            listing.kind,
        )
        .await?)
    }

    /// A point read of one record of a customer.
    async fn record<T: DeserializeOwned>(
        &self,
        customer: i64,
        kind: &'static str,
        n: i64,
    ) -> StoreResult<Option<(Doc<T>, Precondition)>> {
        Ok(read(
            &self.customers,
            &partition(customer),
            &item_id(kind, n),
            kind,
        )
        .await?)
    }

    async fn customer_record(
        &self,
        customer: i64,
    ) -> StoreResult<(Doc<CustomerBody>, Precondition)> {
        self.record(customer, CUSTOMER, customer)
            .await?
            .ok_or(StoreError::NotFound {
                entity: "customer",
                id: customer,
            })
    }

    /// Creates `record` and replaces `doc` if it is unchanged since it was read, both or
    /// neither: one batch in their partition.
    async fn create_and_replace<R: Serialize, T: Serialize>(
        &self,
        record: &Doc<R>,
        doc: &Doc<T>,
        unchanged: Precondition,
        operation: &'static str,
    ) -> StoreResult<Written> {
        let batch = TransactionalBatch::new(doc.pk.clone())
            .create_item(record)
            .and_then(|b| {
                b.replace_item(
                    doc.id.clone(),
                    doc,
                    Some(BatchReplaceOptions::default().with_precondition(unchanged)),
                )
            })
            .map_err(failed(operation))?;
        match commit(&self.customers, batch, operation).await? {
            // The record's id was allocated for it: taken means the counter is behind the data.
            Written::Exists => Err(StoreError::Backend(format!(
                "cosmos {operation}: the new record's id is taken"
            ))),
            written => Ok(written),
        }
    }

    /// The product a change of plan names, when the rule did not hand it over.
    async fn plan(&self, change: &SubscriptionChange) -> StoreResult<Option<Product>> {
        match (&change.plan, change.update.product_id) {
            (Some(plan), _) => Ok(Some(plan.clone())),
            (None, None) => Ok(None),
            (None, Some(id)) => {
                CatalogData::product(self, id)
                    .await?
                    .map(Some)
                    .ok_or(StoreError::NotFound {
                        entity: "product",
                        id,
                    })
            }
        }
    }
}

/// A new record of `customer` must be in their partition: a batch cannot reach another.
fn same_customer(customer: i64, written_for: i64) -> StoreResult<()> {
    if customer == written_for {
        Ok(())
    } else {
        Err(StoreError::Backend(format!(
            "cosmos: a write for customer {customer} made a record of customer {written_for}"
        )))
    }
}

#[async_trait]
impl CustomerData for CosmosStore {
    async fn owner(&self, of: Owned) -> StoreResult<Option<i64>> {
        let id = match of {
            Owned::Subscription(n) => item_id(SUBSCRIPTION, n),
            Owned::Invoice(n) => item_id(INVOICE, n),
        };
        let found = read::<Lookup>(&self.lookup, &id, &id, "owner").await?;
        Ok(found.map(|(lookup, _)| lookup.customer_id))
    }

    async fn customers(
        &self,
        cursor: Option<&str>,
        limit: u32,
    ) -> StoreResult<Page<CustomerSummary>> {
        let after = match cursor {
            None => i64::MIN,
            Some(cursor) => cursor
                .strip_prefix(CURSOR_PREFIX)
                .and_then(|id| id.parse::<i64>().ok())
                .ok_or(StoreError::BadCursor)?,
        };
        // One more than asked tells whether a next page exists.
        let text = format!(
            "SELECT TOP {} VALUE c.data.profile FROM c WHERE c.type = @type AND c.n > @after \
             ORDER BY c.n",
            u64::from(limit) + 1
        );
        let parameters = [("@type", CUSTOMER.into()), ("@after", after.into())];
        let mut items: Vec<CustomerSummary> = query::<Customer>(
            &self.customers,
            sql(&text, &parameters)?,
            FeedScope::full_container(),
            "list customers",
        )
        .await?
        .into_iter()
        .map(|c| CustomerSummary {
            id: c.id,
            first_name: c.first_name,
            last_name: c.last_name,
            email: c.email,
            loyalty_level: c.loyalty_level,
        })
        .collect();
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next = if more {
            items.last().map(|c| format!("{CURSOR_PREFIX}{}", c.id))
        } else {
            None
        };
        Ok(Page { items, next })
    }

    async fn customer(&self, customer: i64) -> StoreResult<Option<Customer>> {
        let found = self
            .record::<CustomerBody>(customer, CUSTOMER, customer)
            .await?;
        Ok(found.map(|(doc, _)| doc.data.profile))
    }

    async fn subscriptions(&self, customer: i64) -> StoreResult<Vec<Subscription>> {
        let lines: Vec<LineBody> = self
            .list(customer, Listing::of(SUBSCRIPTION, BY_ID))
            .await?;
        Ok(lines.into_iter().map(|l| l.line).collect())
    }

    async fn subscription(&self, customer: i64, id: i64) -> StoreResult<Option<Subscription>> {
        let found = self.record::<LineBody>(customer, SUBSCRIPTION, id).await?;
        Ok(found.map(|(doc, _)| doc.data.line))
    }

    async fn invoices(
        &self,
        customer: i64,
        subscription: Option<i64>,
        today: NaiveDate,
    ) -> StoreResult<Vec<Invoice>> {
        let listing = Listing::of(INVOICE, NEWEST_FIRST);
        let listing = match subscription {
            Some(subscription) => listing.filtered(
                "AND c.data.subscription_id = @subscription",
                vec![("@subscription", subscription.into())],
            ),
            None => listing,
        };
        // Whole documents: the invoice's id is the envelope's.
        let listing = Listing {
            whole: true,
            ..listing
        };
        let docs: Vec<Doc<InvoiceBody>> = self.list(customer, listing).await?;
        Ok(docs.iter().map(|d| d.invoice(today)).collect())
    }

    async fn invoice(
        &self,
        customer: i64,
        id: i64,
        today: NaiveDate,
    ) -> StoreResult<Option<Invoice>> {
        let found = self.record::<InvoiceBody>(customer, INVOICE, id).await?;
        Ok(found.map(|(doc, _)| doc.invoice(today)))
    }

    async fn payments(&self, customer: i64, invoices: &[i64]) -> StoreResult<Vec<Payment>> {
        let mut found: Vec<Payment> = Vec::new();
        for batch in invoices.chunks(BATCH_IDS) {
            let listing = Listing::of(PAYMENT, OLDEST_FIRST).filtered(
                "AND ARRAY_CONTAINS(@invoices, c.data.invoice_id)",
                vec![("@invoices", batch.into())],
            );
            found.extend(self.list::<Payment>(customer, listing).await?);
        }
        // Batches are each in order; their union is put in order again.
        found.sort_by_key(|p| (p.paid_at, p.id));
        Ok(found)
    }

    async fn data_usage(
        &self,
        customer: i64,
        subscription: i64,
        from: NaiveDate,
        to: NaiveDate,
    ) -> StoreResult<Vec<DataUsage>> {
        let listing = Listing::of(USAGE, OLDEST_FIRST).filtered(
            "AND c.data.subscription_id = @subscription AND c.at >= @from AND c.at <= @to",
            vec![
                ("@subscription", subscription.into()),
                ("@from", date_key(from).into()),
                ("@to", date_key(to).into()),
            ],
        );
        let days: Vec<UsageBody> = self.list(customer, listing).await?;
        Ok(days.into_iter().map(|d| d.day).collect())
    }

    async fn security_logs(&self, customer: i64, limit: u32) -> StoreResult<Vec<SecurityLog>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let listing = Listing {
            top: Some(limit),
            ..Listing::of(SECURITY_LOG, NEWEST_FIRST)
        };
        self.list(customer, listing).await
    }

    async fn orders(&self, customer: i64) -> StoreResult<Vec<Order>> {
        self.list(customer, Listing::of(ORDER, NEWEST_FIRST)).await
    }

    async fn tickets(&self, customer: i64, open_only: bool) -> StoreResult<Vec<SupportTicket>> {
        let mut listing = Listing::of(TICKET, NEWEST_FIRST);
        if open_only {
            listing = listing.filtered(
                "AND (c.data.status = @open OR c.data.status = @in_progress)",
                vec![
                    ("@open", TicketStatus::Open.as_str().into()),
                    ("@in_progress", TicketStatus::InProgress.as_str().into()),
                ],
            );
        }
        self.list(customer, listing).await
    }

    async fn incidents(
        &self,
        customer: i64,
        subscription: i64,
    ) -> StoreResult<Vec<ServiceIncident>> {
        let listing = Listing::of(INCIDENT, NEWEST_FIRST).filtered(
            "AND c.data.subscription_id = @subscription",
            vec![("@subscription", subscription.into())],
        );
        self.list(customer, listing).await
    }

    async fn pay_invoice(
        &self,
        customer: i64,
        invoice_id: i64,
        today: NaiveDate,
        decide: &PaymentRule<'_>,
    ) -> StoreResult<PaymentReceipt> {
        let _queued = self.writing.enter(&partition(customer)).await;
        let mut attempts = Attempts::new("pay invoice");
        // One id for every attempt: a retry is the same payment decided again.
        let mut payment_id = None;
        loop {
            attempts.next().await?;
            let (mut doc, unchanged) = self
                .record::<InvoiceBody>(customer, INVOICE, invoice_id)
                .await?
                .ok_or(Owned::Invoice(invoice_id).not_found())?;
            let before = doc.invoice(today);
            let id = match payment_id {
                Some(id) => id,
                None => *payment_id.insert(self.allocate(PAYMENT).await?),
            };
            let payment = decide(&before, id)?;
            if payment.status == PaymentStatus::Successful {
                doc.data.paid_cents = doc.data.paid_cents.saturating_add(payment.amount.cents());
            }
            let record = Doc::new(
                PAYMENT,
                doc.pk.clone(),
                payment.id,
                Some(time_key(payment.paid_at)),
                &payment,
            );
            if let Written::Done = self
                .create_and_replace(&record, &doc, unchanged, "pay invoice")
                .await?
            {
                let invoice = writes::after_payment(&before, &payment, today);
                return Ok(PaymentReceipt { payment, invoice });
            }
        }
    }

    async fn update_subscription(
        &self,
        customer: i64,
        id: i64,
        decide: &SubscriptionRule<'_>,
    ) -> StoreResult<Subscription> {
        let _queued = self.writing.enter(&partition(customer)).await;
        let mut attempts = Attempts::new("update subscription");
        loop {
            attempts.next().await?;
            let (mut doc, unchanged) = self
                .record::<LineBody>(customer, SUBSCRIPTION, id)
                .await?
                .ok_or(Owned::Subscription(id).not_found())?;
            let change = decide(&doc.data.line)?;
            if let Some(plan) = self.plan(&change).await? {
                doc.data.set_plan(&plan);
            }
            let update = &change.update;
            let line = &mut doc.data.line;
            line.status = update.status.unwrap_or(line.status);
            line.roaming_enabled = update.roaming_enabled.unwrap_or(line.roaming_enabled);
            line.autopay_enabled = update.autopay_enabled.unwrap_or(line.autopay_enabled);
            let options = ItemWriteOptions::default().with_precondition(unchanged);
            match self
                .customers
                .replace_item(doc.pk.clone(), &doc.id, &doc, Some(options))
                .await
            {
                Ok(_) => return Ok(doc.data.line),
                Err(e) if e.status().is_precondition_failed() => continue,
                Err(e) => return Err(failed("update subscription")(e).into()),
            }
        }
    }

    async fn unlock_account(
        &self,
        customer: i64,
        decide: &UnlockRule<'_>,
    ) -> StoreResult<UnlockReceipt> {
        let _queued = self.writing.enter(&partition(customer)).await;
        let mut attempts = Attempts::new("unlock account");
        let mut entry_id = None;
        loop {
            attempts.next().await?;
            let (mut doc, unchanged) = self.customer_record(customer).await?;
            let id = match entry_id {
                Some(id) => id,
                None => *entry_id.insert(self.allocate(SECURITY_LOG).await?),
            };
            let receipt = decide(doc.data.latest_lock_event.as_ref(), id)?;
            let entry = &receipt.unlocked;
            same_customer(customer, entry.customer_id)?;
            doc.data.record(entry);
            let record = Doc::new(
                SECURITY_LOG,
                doc.pk.clone(),
                entry.id,
                Some(time_key(entry.occurred_at)),
                entry,
            );
            // The customer's document is written even when the new entry is not its latest
            // lock event: the condition on it is what serialises two unlocks.
            if let Written::Done = self
                .create_and_replace(&record, &doc, unchanged, "unlock account")
                .await?
            {
                return Ok(receipt);
            }
        }
    }

    async fn create_ticket(
        &self,
        customer: i64,
        subscription: Option<i64>,
        decide: &TicketRule<'_>,
    ) -> StoreResult<SupportTicket> {
        self.customer_record(customer).await?;
        let owner = match subscription {
            None => None,
            Some(id) => Some(
                self.owner(Owned::Subscription(id))
                    .await?
                    .ok_or(Owned::Subscription(id).not_found())?,
            ),
        };
        let id = self.allocate(TICKET).await?;
        let ticket = decide(owner, id)?;
        same_customer(customer, ticket.customer_id)?;
        let record = Doc::new(
            TICKET,
            partition(customer),
            ticket.id,
            Some(time_key(ticket.opened_at)),
            &ticket,
        );
        self.customers
            .create_item(record.pk.clone(), &record.id, &record, None)
            .await
            .map_err(failed("create ticket"))?;
        Ok(ticket)
    }
}
