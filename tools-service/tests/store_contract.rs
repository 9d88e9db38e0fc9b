//! The storage contract, asserted the same way on every backend: each test runs against every
//! backend of [`backends`] (SQLite in a file, and Cosmos DB on a local emulator when one is
//! installed; see `scripts/cosmos-emulator/README.md`).
//! A small hand-made data set makes every expectation exact: two customers, one line each, one
//! $100.00 invoice each, the first customer's account locked.

mod common;

use std::sync::Arc;

use chrono::{Days, TimeZone, Utc};
use testkit::cosmos::{self, Emulator};
use tools_service::{
    domain::{
        writes::{self, NewPayment, NewTicket, Refusal, SubscriptionUpdate},
        *,
    },
    money::Money,
    seed::{Dataset, InvoiceRow, SubscriptionRow, catalog},
    store::{BATCH_IDS, Owned, Storage, StoreError, cosmos::CosmosStore, sqlite::SqliteStore},
};

const ALICE: i64 = 1;
const BOB: i64 = 2;
/// Alice's line and its invoice; Bob's are these plus one.
const LINE: i64 = 10;
const INVOICE: i64 = 100;

struct Backend {
    name: &'static str,
    storage: Storage,
    /// A second store on the same database: another replica of the service.
    replica: Storage,
    /// What the backend lives in, kept until the test ends: SQLite's directory, or the
    /// emulator process of a Cosmos DB backend.
    _dir: Option<tempfile::TempDir>,
    _emulator: Option<Emulator>,
}

/// Every backend, each loaded with [`dataset`].
async fn backends() -> Vec<Backend> {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("contract.db"))
        .await
        .expect("open");
    let storage = Storage::of(store);
    storage.seeding.replace_all(&dataset()).await.expect("load");
    let replica = SqliteStore::open(&dir.path().join("contract.db"))
        .await
        .expect("open again");
    let mut all = vec![Backend {
        name: "sqlite",
        storage,
        replica: Storage::of(replica),
        _dir: Some(dir),
        _emulator: None,
    }];
    if cosmos::installed() {
        all.push(cosmos().await);
    }
    all
}

/// A Cosmos DB backend on an emulator of its own, on a database of its own.
async fn cosmos() -> Backend {
    let emulator = Emulator::start().await;
    let config = emulator.config(&cosmos::database("contract"));
    let store = CosmosStore::open(&config).await.expect("open cosmos");
    let storage = Storage::of(store);
    storage.seeding.replace_all(&dataset()).await.expect("load");
    let replica = CosmosStore::open(&config).await.expect("open cosmos again");
    Backend {
        name: "cosmos",
        storage,
        replica: Storage::of(replica),
        _dir: None,
        _emulator: Some(emulator),
    }
}

fn customer(id: i64, first_name: &str) -> Customer {
    Customer {
        id,
        first_name: first_name.into(),
        last_name: "Example".into(),
        email: format!("{}@example.com", first_name.to_lowercase()),
        phone: "+1 555 0100".into(),
        address: "1 Main St".into(),
        date_of_birth: chrono::NaiveDate::from_ymd_opt(1980, 1, 1).expect("date"),
        loyalty_level: LoyaltyLevel::Gold,
        joined_on: chrono::NaiveDate::from_ymd_opt(2020, 1, 1).expect("date"),
    }
}

fn dataset() -> Dataset {
    let today = Utc::now().date_naive();
    let mut data = Dataset {
        customers: vec![customer(ALICE, "Alice"), customer(BOB, "Bob")],
        products: catalog::products(),
        promotions: catalog::promotions(today),
        ..Dataset::default()
    };
    for (n, owner) in [ALICE, BOB].into_iter().enumerate() {
        let n = n as i64;
        data.subscriptions.push(SubscriptionRow {
            id: LINE + n,
            customer_id: owner,
            product_id: catalog::MOBILE,
            start_date: today - Days::new(400),
            end_date: None,
            status: SubscriptionStatus::Active,
            service_status: ServiceStatus::Normal,
            roaming_enabled: false,
            autopay_enabled: true,
            speed_tier: None,
        });
        data.invoices.push(InvoiceRow {
            id: INVOICE + n,
            subscription_id: LINE + n,
            invoice_date: today - Days::new(5),
            due_date: today + Days::new(10),
            description: "This month".into(),
            amount: Money::dollars(100),
        });
    }
    data.security_logs.push(SecurityLog {
        id: 1,
        customer_id: ALICE,
        event_type: SecurityEventType::AccountLocked,
        occurred_at: Utc
            .with_ymd_and_hms(2026, 1, 2, 3, 4, 5)
            .single()
            .expect("time"),
        description: "Locked after five failed sign-ins".into(),
    });
    data
}

/// A payment of `cents` by card on Alice's invoice, now.
fn pay(cents: i64) -> NewPayment {
    NewPayment {
        invoice_id: INVOICE,
        amount: Money::from_cents(cents),
        method: PaymentMethod::CreditCard,
        paid_at: Utc::now(),
    }
}

fn today() -> chrono::NaiveDate {
    Utc::now().date_naive()
}

#[tokio::test]
async fn a_subscription_or_invoice_resolves_to_its_customer() {
    for b in backends().await {
        let c = &b.storage.customers;
        for (of, owner) in [
            (Owned::Subscription(LINE), Some(ALICE)),
            (Owned::Subscription(LINE + 1), Some(BOB)),
            (Owned::Invoice(INVOICE + 1), Some(BOB)),
            (Owned::Invoice(999), None),
            (Owned::Subscription(-1), None),
        ] {
            assert_eq!(
                c.owner(of).await.expect("owner"),
                owner,
                "{}: {of:?}",
                b.name
            );
        }
    }
}

#[tokio::test]
async fn another_customers_records_are_not_found_under_a_customer() {
    for b in backends().await {
        let c = &b.storage.customers;
        assert!(
            c.subscription(BOB, LINE).await.expect("read").is_none(),
            "{}",
            b.name
        );
        assert!(
            c.invoice(BOB, INVOICE, today())
                .await
                .expect("read")
                .is_none()
        );
        assert!(
            c.invoices(BOB, Some(LINE), today())
                .await
                .expect("read")
                .is_empty()
        );
        assert!(c.payments(BOB, &[INVOICE]).await.expect("read").is_empty());
        let own = c
            .subscription(ALICE, LINE)
            .await
            .expect("read")
            .expect("hers");
        assert_eq!(
            (own.customer_id, own.product_name.as_str()),
            (ALICE, "Contoso Mobile 10GB")
        );
        let invoice = c
            .invoice(ALICE, INVOICE, today())
            .await
            .expect("read")
            .expect("hers");
        assert_eq!(
            (invoice.outstanding, invoice.status),
            (Money::dollars(100), InvoiceStatus::Unpaid)
        );
    }
}

#[tokio::test]
async fn one_listing_reads_a_customers_invoices_and_the_payments_of_many_invoices() {
    for b in backends().await {
        let c = &b.storage.customers;
        let all = c.invoices(ALICE, None, today()).await.expect("read");
        assert_eq!(
            all.iter().map(|i| i.id).collect::<Vec<_>>(),
            [INVOICE],
            "{}: only her own invoices",
            b.name
        );
        let mut paid = Vec::new();
        for cents in [700, 300] {
            let receipt = c
                .pay_invoice(ALICE, INVOICE, today(), &|invoice, id| {
                    writes::payment(invoice, &pay(cents), id)
                })
                .await
                .expect("paid");
            paid.push(receipt.payment);
        }
        // More ids than one query takes, hers last, Bob's and unknown ones among them.
        let mut asked: Vec<i64> = (1_000..1_000 + BATCH_IDS as i64).collect();
        asked.extend([INVOICE + 1, INVOICE]);
        assert_eq!(
            c.payments(ALICE, &asked).await.expect("read"),
            paid,
            "{}: her payments, oldest first",
            b.name
        );
        assert!(c.payments(ALICE, &[]).await.expect("read").is_empty());
        assert!(
            c.payments(BOB, &asked).await.expect("read").is_empty(),
            "{}: none of Bob's invoices was paid",
            b.name
        );
    }
}

#[tokio::test]
async fn pages_cover_every_customer_once_and_a_foreign_cursor_is_refused() {
    for b in backends().await {
        let c = &b.storage.customers;
        let first = c.customers(None, 1).await.expect("page");
        assert_eq!(
            first.items.iter().map(|s| s.id).collect::<Vec<_>>(),
            [ALICE],
            "{}",
            b.name
        );
        let cursor = first.next.expect("a next page");
        let second = c.customers(Some(&cursor), 1).await.expect("page");
        assert_eq!(second.items.iter().map(|s| s.id).collect::<Vec<_>>(), [BOB]);
        assert_eq!(second.next, None, "nothing after the last");
        assert!(matches!(
            c.customers(Some("page=2"), 1).await,
            Err(StoreError::BadCursor)
        ));
    }
}

#[tokio::test]
async fn concurrent_payments_are_decided_one_after_another_and_never_overpay() {
    for b in backends().await {
        let customers = b.storage.customers.clone();
        // Two hundred payments of $0.60 on $100.00, half through each of two replicas: 166
        // fit, the 167th would overpay by $0.20.
        let attempts = (0..200).map(|n| {
            let customers = [&b.storage, &b.replica][n % 2].customers.clone();
            tokio::spawn(async move {
                let new = NewPayment {
                    invoice_id: INVOICE,
                    amount: Money::from_cents(60),
                    method: PaymentMethod::DebitCard,
                    paid_at: Utc::now(),
                };
                customers
                    .pay_invoice(ALICE, INVOICE, today(), &|invoice, id| {
                        writes::payment(invoice, &new, id)
                    })
                    .await
            })
        });
        let outcomes: Vec<_> = futures::future::join_all(attempts)
            .await
            .into_iter()
            .map(|joined| joined.expect("no panic"))
            .collect();
        let receipts: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
        assert_eq!(receipts.len(), 166, "{}", b.name);
        for refused in outcomes.iter().filter_map(|o| o.as_ref().err()) {
            assert!(
                matches!(refused, StoreError::Refused(Refusal::Overpayment { outstanding, .. }) if *outstanding == Money::from_cents(40)),
                "{refused}"
            );
        }
        let mut ids: Vec<i64> = receipts.iter().map(|r| r.payment.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 166, "every payment has its own id");
        let invoice = customers
            .invoice(ALICE, INVOICE, today())
            .await
            .expect("read")
            .expect("hers");
        assert_eq!(invoice.outstanding, Money::from_cents(40));
        assert_eq!(
            customers
                .payments(ALICE, &[INVOICE])
                .await
                .expect("read")
                .len(),
            166
        );
        // The receipt of the last payment shows what it left.
        let least = receipts
            .iter()
            .map(|r| r.invoice.outstanding)
            .min()
            .expect("some");
        assert_eq!(least, Money::from_cents(40));
    }
}

#[tokio::test]
async fn a_refused_write_changes_nothing() {
    for b in backends().await {
        let c = &b.storage.customers;
        let refused = c
            .update_subscription(ALICE, LINE, &|_| Err(Refusal::Invalid("no".into())))
            .await;
        assert!(
            matches!(refused, Err(StoreError::Refused(Refusal::Invalid(_)))),
            "{}",
            b.name
        );
        let line = c
            .subscription(ALICE, LINE)
            .await
            .expect("read")
            .expect("hers");
        assert!(!line.roaming_enabled && line.autopay_enabled);
        let too_much = NewPayment {
            invoice_id: INVOICE,
            amount: Money::dollars(101),
            method: PaymentMethod::Paypal,
            paid_at: Utc::now(),
        };
        let paid = c
            .pay_invoice(ALICE, INVOICE, today(), &|invoice, id| {
                writes::payment(invoice, &too_much, id)
            })
            .await;
        assert!(matches!(
            paid,
            Err(StoreError::Refused(Refusal::Overpayment { .. }))
        ));
        assert!(
            c.payments(ALICE, &[INVOICE])
                .await
                .expect("read")
                .is_empty()
        );
        // A write under the wrong customer finds nothing to write.
        let elsewhere = c
            .pay_invoice(BOB, INVOICE, today(), &|invoice, id| {
                writes::payment(invoice, &too_much, id)
            })
            .await;
        assert!(matches!(
            elsewhere,
            Err(StoreError::NotFound {
                entity: "invoice",
                ..
            })
        ));
    }
}

#[tokio::test]
async fn a_subscription_change_is_applied_with_its_new_plan() {
    for b in backends().await {
        let c = &b.storage.customers;
        let plan = b
            .storage
            .catalog
            .product(catalog::BUNDLE)
            .await
            .expect("read")
            .expect("a plan");
        let update = SubscriptionUpdate {
            product_id: Some(plan.id),
            roaming_enabled: Some(true),
            ..SubscriptionUpdate::default()
        };
        let after = c
            .update_subscription(ALICE, LINE, &|current| {
                writes::subscription_change(current, &update, Some(&plan))
            })
            .await
            .expect("changed");
        assert_eq!(
            (after.product_id, after.product_name.as_str()),
            (plan.id, plan.name.as_str()),
            "{}",
            b.name
        );
        assert_eq!(after.monthly_fee, plan.monthly_fee);
        assert!(
            after.roaming_enabled && after.autopay_enabled,
            "what was not named is kept"
        );
        assert_eq!(
            c.subscription(ALICE, LINE).await.expect("read"),
            Some(after)
        );
    }
}

#[tokio::test]
async fn of_two_concurrent_unlocks_one_is_refused() {
    for b in backends().await {
        let customers = b.storage.customers.clone();
        let unlock = |by: &'static str| {
            let customers = customers.clone();
            tokio::spawn(async move {
                let at = Utc::now();
                customers
                    .unlock_account(ALICE, &|latest, id| {
                        writes::unlock(ALICE, latest, at, by, id)
                    })
                    .await
            })
        };
        let (one, two) = tokio::join!(unlock("by one"), unlock("by two"));
        let outcomes = [one.expect("no panic"), two.expect("no panic")];
        let unlocked: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
        assert_eq!(unlocked.len(), 1, "{}: {outcomes:?}", b.name);
        assert!(outcomes.iter().any(|o| matches!(
            o,
            Err(StoreError::Refused(Refusal::NotLocked {
                customer_id: ALICE
            }))
        )));
        let log = customers.security_logs(ALICE, 10).await.expect("read");
        assert_eq!(log.len(), 2);
        assert_eq!(
            log[0], unlocked[0].unlocked,
            "the unlock is the newest entry"
        );
        assert_ne!(log[0].id, log[1].id);
        // Bob was never locked; unknown customers do not exist.
        let at = Utc::now();
        let bob = customers
            .unlock_account(BOB, &|latest, id| writes::unlock(BOB, latest, at, "x", id))
            .await;
        assert!(matches!(
            bob,
            Err(StoreError::Refused(Refusal::NotLocked { .. }))
        ));
        let nobody = customers
            .unlock_account(77, &|latest, id| writes::unlock(77, latest, at, "x", id))
            .await;
        assert!(matches!(
            nobody,
            Err(StoreError::NotFound {
                entity: "customer",
                id: 77
            })
        ));
    }
}

#[tokio::test]
async fn concurrent_tickets_get_their_own_ids_and_a_foreign_line_is_refused() {
    for b in backends().await {
        let customers = b.storage.customers.clone();
        let new = Arc::new(NewTicket {
            customer_id: BOB,
            subscription_id: Some(LINE + 1),
            category: TicketCategory::Internet,
            priority: TicketPriority::High,
            subject: "Slow".into(),
            description: "Since Monday".into(),
            opened_at: Utc::now(),
        });
        let opened = futures::future::join_all((0..12).map(|_| {
            let (customers, new) = (customers.clone(), new.clone());
            tokio::spawn(async move {
                customers
                    .create_ticket(BOB, new.subscription_id, &|owner, id| {
                        writes::ticket((*new).clone(), owner, id)
                    })
                    .await
            })
        }))
        .await;
        let mut ids: Vec<i64> = opened
            .into_iter()
            .map(|t| t.expect("no panic").expect("opened").id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 12, "{}", b.name);
        assert_eq!(customers.tickets(BOB, true).await.expect("read").len(), 12);
        let foreign = NewTicket {
            customer_id: ALICE,
            ..(*new).clone()
        };
        let refused = customers
            .create_ticket(ALICE, foreign.subscription_id, &|owner, id| {
                writes::ticket(foreign.clone(), owner, id)
            })
            .await;
        assert!(matches!(
            refused,
            Err(StoreError::Refused(Refusal::Invalid(_)))
        ));
        assert!(
            customers
                .tickets(ALICE, false)
                .await
                .expect("read")
                .is_empty()
        );
    }
}

#[tokio::test]
async fn health_names_the_backend_and_database_only() {
    for b in backends().await {
        let health = &b.storage.health;
        health.ping().await.expect("answers");
        assert_eq!(health.backend(), b.name);
        let database = health.database();
        assert!(
            !database.contains('/') && !database.contains("://"),
            "{database}"
        );
        assert!(!b.storage.seeding.is_empty().await.expect("read"));
    }
}

#[tokio::test]
async fn concurrent_changes_of_one_subscription_are_all_applied() {
    // On Cosmos DB the two writers of each round read the same ETag: one of them meets a
    // conflict (412) and decides again on what the other wrote.
    for b in backends().await {
        let customers = b.storage.customers.clone();
        for round in 0..10 {
            let change = |update: SubscriptionUpdate| {
                let customers = customers.clone();
                tokio::spawn(async move {
                    customers
                        .update_subscription(ALICE, LINE, &|current| {
                            writes::subscription_change(current, &update, None)
                        })
                        .await
                })
            };
            let roaming = round % 2 == 0;
            let (one, two) = tokio::join!(
                change(SubscriptionUpdate {
                    roaming_enabled: Some(roaming),
                    ..SubscriptionUpdate::default()
                }),
                change(SubscriptionUpdate {
                    autopay_enabled: Some(!roaming),
                    ..SubscriptionUpdate::default()
                })
            );
            one.expect("no panic").expect("changed");
            two.expect("no panic").expect("changed");
            let line = customers
                .subscription(ALICE, LINE)
                .await
                .expect("read")
                .expect("hers");
            assert_eq!(
                (line.roaming_enabled, line.autopay_enabled),
                (roaming, !roaming),
                "{}: round {round}",
                b.name
            );
        }
    }
}

#[tokio::test]
async fn seeding_again_replaces_what_was_written() {
    for b in backends().await {
        let c = &b.storage.customers;
        c.pay_invoice(ALICE, INVOICE, today(), &|invoice, id| {
            writes::payment(invoice, &pay(500), id)
        })
        .await
        .expect("paid");
        b.storage
            .seeding
            .replace_all(&dataset())
            .await
            .expect("reload");
        assert!(
            c.payments(ALICE, &[INVOICE])
                .await
                .expect("read")
                .is_empty(),
            "{}",
            b.name
        );
        let invoice = c
            .invoice(ALICE, INVOICE, today())
            .await
            .expect("read")
            .expect("hers");
        assert_eq!(invoice.outstanding, Money::dollars(100));
        let again = c
            .pay_invoice(ALICE, INVOICE, today(), &|invoice, id| {
                writes::payment(invoice, &pay(700), id)
            })
            .await
            .expect("paid");
        assert_eq!(again.invoice.outstanding, Money::from_cents(9300));
        assert_eq!(
            c.payments(ALICE, &[INVOICE]).await.expect("read"),
            [again.payment]
        );
    }
}
