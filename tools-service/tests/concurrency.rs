//! Concurrent payments over real MCP: many clients paying at once can never overpay an invoice,
//! every payment that fits is recorded exactly once, and payments to different invoices do not
//! affect each other. The balance check and the insert must be one atomic step in the store.

// Amounts in cents are written dollars_cents, e.g. 100_00.
#![allow(clippy::inconsistent_digit_grouping)]

mod common;

use std::sync::Arc;

use common::*;
use rmcp::model::CallToolResult;
use serde_json::{Value, json};
use tokio::sync::Barrier;

/// Clients the calls are spread over: each has its own HTTP connection pool.
const CLIENTS: usize = 10;

/// The outcome of one `pay_invoice` call.
struct Attempt {
    invoice_id: i64,
    result: CallToolResult,
}

impl Attempt {
    fn succeeded(&self) -> bool {
        self.result.is_error != Some(true)
    }

    /// The invoice as the receipt of a successful payment shows it.
    fn invoice_after(&self) -> &Value {
        &self
            .result
            .structured_content
            .as_ref()
            .expect("a successful payment returns its receipt")["invoice"]
    }
}

/// Sends every payment at once, spread round-robin over [`CLIENTS`] clients, and returns the
/// outcomes in the order given. A barrier holds each call until all are ready, so they reach
/// the server together rather than as a trickle.
async fn pay_all_at_once(server: &Server, payments: &[(i64, f64)]) -> Vec<Attempt> {
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(Arc::new(server.client().await));
    }
    let start = Arc::new(Barrier::new(payments.len()));
    let tasks: Vec<_> = payments
        .iter()
        .enumerate()
        .map(|(i, &(invoice_id, amount))| {
            let client = clients[i % CLIENTS].clone();
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let result = call(
                    &client,
                    "pay_invoice",
                    json!({"invoice_id": invoice_id, "amount": amount}),
                )
                .await;
                Attempt { invoice_id, result }
            })
        })
        .collect();
    futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|joined| joined.expect("payment task"))
        .collect()
}

async fn invoice_payments(c: &Client, invoice_id: i64) -> Value {
    ok(c, "get_invoice_payments", json!({"invoice_id": invoice_id})).await
}

/// Successful payments recorded on an invoice, in cents.
fn successful_amounts(payments: &Value) -> Vec<i64> {
    payments["payments"]
        .as_array()
        .expect("payments")
        .iter()
        .filter(|p| p["status"] == "successful")
        .map(|p| money(&p["amount"]))
        .collect()
}

/// The balances the receipts of the successful attempts show, smallest first. Serialised
/// payments each see a different balance; two payments that read the same balance would show
/// the same number twice.
fn balances_after(attempts: &[Attempt]) -> Vec<i64> {
    let mut balances: Vec<i64> = attempts
        .iter()
        .filter(|a| a.succeeded())
        .map(|a| money(&a.invoice_after()["outstanding"]))
        .collect();
    balances.sort_unstable();
    balances
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_payments_never_overpay_one_invoice() {
    let server = Server::start().await;
    let c = server.client().await;
    // 251's latest invoice: $150.00 with $50.00 paid, $100.00 outstanding.
    let invoice = latest_invoice(&c, 251).await;
    assert_eq!(
        money(&invoice_payments(&c, invoice).await["invoice"]["outstanding"]),
        100_00
    );

    let attempts = pay_all_at_once(&server, &[(invoice, 1.50); 100]).await;

    // $1.50 fits 66 times into $100.00 ($99.00); the other 34 find $1.00 left.
    let (paid, refused): (Vec<&Attempt>, Vec<&Attempt>) =
        attempts.iter().partition(|a| a.succeeded());
    assert_eq!(paid.len(), 66, "successful payments");
    assert_eq!(refused.len(), 34, "refused payments");
    for attempt in refused {
        let message = text(&attempt.result);
        for word in [
            "exceeds the outstanding balance",
            &format!("invoice {invoice}"),
            "$1.50",
            "which is $1.00",
        ] {
            assert!(
                message.contains(word),
                "refusal should mention {word:?}: {message}"
            );
        }
    }
    let expected: Vec<i64> = (0..66).map(|k| 1_00 + k * 1_50).collect();
    assert_eq!(
        balances_after(&attempts),
        expected,
        "each payment saw the balance the previous one left"
    );

    let after = invoice_payments(&c, invoice).await;
    assert_eq!(money(&after["invoice"]["paid"]), 50_00 + 99_00);
    assert_eq!(money(&after["invoice"]["outstanding"]), 1_00);
    assert_eq!(after["invoice"]["status"], "partially_paid");
    let amounts = successful_amounts(&after);
    assert_eq!(amounts.len(), 67, "the seeded $50.00 and the 66 new ones");
    assert_eq!(amounts.iter().sum::<i64>(), 149_00);
    let billing = ok(&c, "get_billing_summary", json!({"customer_id": 251})).await;
    assert_eq!(money(&billing["total_due"]), 1_00);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_payments_that_exactly_exhaust_the_balance_all_succeed() {
    let server = Server::start().await;
    let c = server.client().await;
    let invoice = latest_invoice(&c, 251).await;

    let attempts = pay_all_at_once(&server, &[(invoice, 1.00); 100]).await;

    let failures: Vec<String> = attempts
        .iter()
        .filter(|a| !a.succeeded())
        .map(|a| text(&a.result))
        .collect();
    assert!(failures.is_empty(), "refused: {failures:?}");
    let expected: Vec<i64> = (0..100).map(|k| k * 1_00).collect();
    assert_eq!(balances_after(&attempts), expected);

    let after = invoice_payments(&c, invoice).await;
    assert_eq!(money(&after["invoice"]["paid"]), 150_00);
    assert_eq!(money(&after["invoice"]["outstanding"]), 0);
    assert_eq!(after["invoice"]["status"], "paid");
    assert_eq!(successful_amounts(&after).len(), 101);

    let message = tool_error(
        &c,
        "pay_invoice",
        json!({"invoice_id": invoice, "amount": 1.00}),
    )
    .await;
    assert!(
        message.contains(&format!("invoice {invoice} is already paid in full")),
        "{message}"
    );
    assert_eq!(
        invoice_payments(&c, invoice).await,
        after,
        "the 101st payment wrote nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_payments_to_different_invoices_do_not_interfere() {
    let server = Server::start().await;
    let c = server.client().await;
    // A: 251's, $100.00 outstanding. B: 259's, $150.00 unpaid. C: 258's overdue one, untouched.
    let a = latest_invoice(&c, 251).await;
    let b = latest_invoice(&c, 259).await;
    let billing = ok(&c, "get_billing_summary", json!({"customer_id": 258})).await;
    let untouched = billing["open_invoices"][0]["invoice_id"]
        .as_i64()
        .expect("id");
    let untouched_before = invoice_payments(&c, untouched).await;
    assert_eq!(
        money(&invoice_payments(&c, b).await["invoice"]["outstanding"]),
        150_00
    );

    // Interleaved: thirty $5.00 payments to each. A can take twenty, B all thirty.
    let payments: Vec<(i64, f64)> = (0..60)
        .map(|i| (if i % 2 == 0 { a } else { b }, 5.00))
        .collect();
    let attempts = pay_all_at_once(&server, &payments).await;

    let on = |invoice: i64| -> Vec<&Attempt> {
        attempts
            .iter()
            .filter(|at| at.invoice_id == invoice)
            .collect()
    };
    let (a_paid, a_refused): (Vec<&Attempt>, Vec<&Attempt>) =
        on(a).into_iter().partition(|at| at.succeeded());
    assert_eq!((a_paid.len(), a_refused.len()), (20, 10));
    for attempt in a_refused {
        let message = text(&attempt.result);
        assert!(
            message.contains(&format!("invoice {a} is already paid in full")),
            "{message}"
        );
    }
    let b_failures: Vec<String> = on(b)
        .iter()
        .filter(|at| !at.succeeded())
        .map(|at| text(&at.result))
        .collect();
    assert!(b_failures.is_empty(), "B had room for all: {b_failures:?}");
    for attempt in attempts.iter().filter(|at| at.succeeded()) {
        assert_eq!(
            attempt.invoice_after()["invoice_id"],
            attempt.invoice_id,
            "the receipt is for the invoice paid"
        );
    }

    let a_after = invoice_payments(&c, a).await;
    assert_eq!(money(&a_after["invoice"]["paid"]), 150_00);
    assert_eq!(a_after["invoice"]["status"], "paid");
    assert_eq!(successful_amounts(&a_after).len(), 21);
    let b_after = invoice_payments(&c, b).await;
    assert_eq!(money(&b_after["invoice"]["paid"]), 150_00);
    assert_eq!(b_after["invoice"]["status"], "paid");
    assert_eq!(successful_amounts(&b_after), vec![5_00; 30]);
    assert_eq!(invoice_payments(&c, untouched).await, untouched_before);
}
