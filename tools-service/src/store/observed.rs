//! Every store call as an OpenTelemetry client span and a `db.client.operation.duration`
//! measurement: a wrapper around a backend, so both backends are observed the same way and
//! neither knows about it.
//!
//! A span is named after the operation (`customer`, `invoices`, `pay_invoice`) and carries
//! `db.system.name` (`sqlite`, `azure.cosmosdb`) and `db.operation.name`; never a query's text,
//! an id or a value read, which can be customers' data. A failure sets `error.type` (the kind of
//! [`StoreError`], not its message, which may name internals).

use std::{future::Future, sync::LazyLock, time::Instant};

use async_trait::async_trait;
use chrono::NaiveDate;
use opentelemetry::{KeyValue, metrics::Histogram};
use tracing::{Instrument, field};

use super::*;

/// A backend whose calls are observed.
pub(super) struct Observed<B> {
    inner: Arc<B>,
    /// `db.system.name`.
    system: &'static str,
}

impl<B> Observed<B> {
    pub(super) fn new(inner: Arc<B>, backend: &'static str) -> Self {
        let system = match backend {
            "cosmos" => "azure.cosmosdb",
            other => other,
        };
        Observed { inner, system }
    }

    async fn observe<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        static DURATION: LazyLock<Histogram<f64>> = LazyLock::new(|| {
            shared::telemetry::metrics::seconds(
                "db.client.operation.duration",
                "Duration of the tools service's store operations",
            )
        });
        let span = tracing::info_span!(
            "store",
            otel.name = operation,
            otel.kind = "client",
            otel.status_code = field::Empty,
            db.system.name = self.system,
            db.operation.name = operation,
            error.r#type = field::Empty,
        );
        let started = Instant::now();
        let result = call.instrument(span.clone()).await;
        let mut labels = vec![
            KeyValue::new("db.system.name", self.system),
            KeyValue::new("db.operation.name", operation),
        ];
        if let Err(error) = &result {
            let kind = kind(error);
            span.record("error.type", kind);
            // A refusal or a missing record is the caller's to fix, not the store failing.
            if matches!(error, StoreError::Busy(_) | StoreError::Backend(_)) {
                span.record("otel.status_code", "ERROR");
            }
            labels.push(KeyValue::new("error.type", kind));
        }
        DURATION.record(started.elapsed().as_secs_f64(), &labels);
        result
    }
}

fn kind(error: &StoreError) -> &'static str {
    match error {
        StoreError::NotFound { .. } => "not_found",
        StoreError::Refused(_) => "refused",
        StoreError::BadCursor => "bad_cursor",
        StoreError::Busy(_) => "busy",
        StoreError::Backend(_) => "backend",
    }
}

#[async_trait]
impl<B: CustomerData> CustomerData for Observed<B> {
    async fn owner(&self, of: Owned) -> StoreResult<Option<i64>> {
        self.observe("owner", self.inner.owner(of)).await
    }
    async fn customers(
        &self,
        cursor: Option<&str>,
        limit: u32,
    ) -> StoreResult<Page<CustomerSummary>> {
        self.observe("customers", self.inner.customers(cursor, limit))
            .await
    }
    async fn customer(&self, customer: i64) -> StoreResult<Option<Customer>> {
        self.observe("customer", self.inner.customer(customer))
            .await
    }
    async fn subscriptions(&self, customer: i64) -> StoreResult<Vec<Subscription>> {
        self.observe("subscriptions", self.inner.subscriptions(customer))
            .await
    }
    async fn subscription(&self, customer: i64, id: i64) -> StoreResult<Option<Subscription>> {
        self.observe("subscription", self.inner.subscription(customer, id))
            .await
    }
    async fn invoices(
        &self,
        customer: i64,
        subscription: Option<i64>,
        today: NaiveDate,
    ) -> StoreResult<Vec<Invoice>> {
        self.observe(
            "invoices",
            self.inner.invoices(customer, subscription, today),
        )
        .await
    }
    async fn invoice(
        &self,
        customer: i64,
        id: i64,
        today: NaiveDate,
    ) -> StoreResult<Option<Invoice>> {
        self.observe("invoice", self.inner.invoice(customer, id, today))
            .await
    }
    async fn payments(&self, customer: i64, invoices: &[i64]) -> StoreResult<Vec<Payment>> {
        self.observe("payments", self.inner.payments(customer, invoices))
            .await
    }
    async fn data_usage(
        &self,
        customer: i64,
        subscription: i64,
        from: NaiveDate,
        to: NaiveDate,
    ) -> StoreResult<Vec<DataUsage>> {
        self.observe(
            "data_usage",
            self.inner.data_usage(customer, subscription, from, to),
        )
        .await
    }
    async fn security_logs(&self, customer: i64, limit: u32) -> StoreResult<Vec<SecurityLog>> {
        self.observe("security_logs", self.inner.security_logs(customer, limit))
            .await
    }
    async fn orders(&self, customer: i64) -> StoreResult<Vec<Order>> {
        self.observe("orders", self.inner.orders(customer)).await
    }
    async fn tickets(&self, customer: i64, open_only: bool) -> StoreResult<Vec<SupportTicket>> {
        self.observe("tickets", self.inner.tickets(customer, open_only))
            .await
    }
    async fn incidents(
        &self,
        customer: i64,
        subscription: i64,
    ) -> StoreResult<Vec<ServiceIncident>> {
        self.observe("incidents", self.inner.incidents(customer, subscription))
            .await
    }
    async fn pay_invoice(
        &self,
        customer: i64,
        invoice: i64,
        today: NaiveDate,
        decide: &PaymentRule<'_>,
    ) -> StoreResult<PaymentReceipt> {
        self.observe(
            "pay_invoice",
            self.inner.pay_invoice(customer, invoice, today, decide),
        )
        .await
    }
    async fn update_subscription(
        &self,
        customer: i64,
        id: i64,
        decide: &SubscriptionRule<'_>,
    ) -> StoreResult<Subscription> {
        self.observe(
            "update_subscription",
            self.inner.update_subscription(customer, id, decide),
        )
        .await
    }
    async fn unlock_account(
        &self,
        customer: i64,
        decide: &UnlockRule<'_>,
    ) -> StoreResult<UnlockReceipt> {
        self.observe(
            "unlock_account",
            self.inner.unlock_account(customer, decide),
        )
        .await
    }
    async fn create_ticket(
        &self,
        customer: i64,
        subscription: Option<i64>,
        decide: &TicketRule<'_>,
    ) -> StoreResult<SupportTicket> {
        self.observe(
            "create_ticket",
            self.inner.create_ticket(customer, subscription, decide),
        )
        .await
    }
}

#[async_trait]
impl<B: CatalogData> CatalogData for Observed<B> {
    async fn promotions(&self) -> StoreResult<Vec<Promotion>> {
        self.observe("promotions", self.inner.promotions()).await
    }
    async fn products(&self, category: Option<ProductCategory>) -> StoreResult<Vec<Product>> {
        self.observe("products", self.inner.products(category))
            .await
    }
    async fn product(&self, id: i64) -> StoreResult<Option<Product>> {
        self.observe("product", self.inner.product(id)).await
    }
}

#[async_trait]
impl<B: KnowledgeData> KnowledgeData for Observed<B> {
    async fn knowledge_documents(&self) -> StoreResult<Vec<KnowledgeDocument>> {
        self.observe("knowledge_documents", self.inner.knowledge_documents())
            .await
    }
    async fn document_embeddings(&self, model: &str) -> StoreResult<Vec<(i64, Vec<f32>)>> {
        self.observe("document_embeddings", self.inner.document_embeddings(model))
            .await
    }
    async fn save_document_embeddings(
        &self,
        model: &str,
        embeddings: &[(i64, Vec<f32>)],
    ) -> StoreResult<()> {
        self.observe(
            "save_document_embeddings",
            self.inner.save_document_embeddings(model, embeddings),
        )
        .await
    }
}
