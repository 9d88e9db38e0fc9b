//! The offline planner against a real tools service: the nine scenario customers' typical
//! questions, each to its expert, answered with the facts of their answer keys from the tool
//! results; a question without a customer id asks for it; questions outside an expert's domain
//! get a plain "cannot help"; a query-only caller cannot get an account unlocked, a security
//! caller is asked to confirm the unlock (which is then not made in that turn); a different customer in the same situation gets its own numbers.

mod common;

use std::time::Duration;

use agent_service::{
    agent::{Limits, Status, Turn},
    experts::{self, Expert},
    planner::{self, Context, OFFLINE_NOTE},
    upstream::{Progress, ToolsConnection},
};
use common::*;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Asks without relaying progress.
async fn ask(tools: &ToolsConnection, expert: &Expert, question: &str) -> Turn {
    ask_relaying(tools, expert, question, None).await
}

async fn ask_relaying(
    tools: &ToolsConnection,
    expert: &Expert,
    question: &str,
    progress: Option<mpsc::UnboundedSender<Progress>>,
) -> Turn {
    let ctx = Context {
        tools,
        progress,
        cancel: CancellationToken::new(),
    };
    planner::answer(&ctx, expert, &[], question, Limits::default()).await
}

/// A finished answer, stated to be the planner's, containing every one of `facts`.
fn assert_answer(turn: &Turn, facts: &[&str]) {
    assert_eq!(turn.status, Status::Done, "{turn:#?}");
    assert!(turn.answer.ends_with(OFFLINE_NOTE), "{}", turn.answer);
    assert_eq!(turn.error, None);
    for fact in facts {
        assert!(
            turn.answer.contains(fact),
            "the answer lacks {fact:?}:\n{}",
            turn.answer
        );
    }
}

/// The tools called, each of which succeeded.
fn called(turn: &Turn) -> Vec<&str> {
    for call in &turn.tool_calls {
        assert!(call.ok, "{call:?}");
    }
    turn.tool_calls.iter().map(|c| c.name.as_str()).collect()
}

fn assert_called(turn: &Turn, tools: &[&str]) {
    let made = called(turn);
    for tool in tools {
        assert!(made.contains(tool), "{tool} not called: {made:?}");
    }
}

#[tokio::test]
async fn the_billing_expert_explains_a_high_bill_from_invoices_usage_and_policy() {
    let stack = Stack::start(5).await;
    let tools = stack.connect(&["query"], "planner-251").await;

    // 251: $150 against a usual $60, ~22 GB on a 10 GB cap, $50 paid, $100.00 due.
    let turn = ask(
        &tools,
        &experts::BILLING,
        "Why is my bill so high this month? I'm customer 251",
    )
    .await;
    assert_answer(
        &turn,
        &[
            "John Doe (customer 251)",
            "is $150.00",
            "usual $60.00",
            "$90.00 more than usual",
            "$50.00 of it is paid and $100.00 is outstanding",
            "Total due: $100.00",
            "22.",
            "10 GB cap",
            "Data Overage Policy",
            "$7.50 per additional GB",
        ],
    );
    assert_called(
        &turn,
        &[
            "get_billing_summary",
            "get_data_usage",
            "search_knowledge_base",
        ],
    );
    assert_eq!(turn.steps, 0, "no model requests");

    // 259: the same situation on a mobile plan, nothing paid, the amount named in the question.
    let turn = ask(
        &tools,
        &experts::BILLING,
        "Why is my mobile bill $150? customer 259",
    )
    .await;
    assert_answer(
        &turn,
        &[
            "Alex Brown (customer 259)",
            "Contoso Mobile 10GB",
            "is $150.00",
            "usual $60.00",
            "against a 10 GB cap",
            "Total due: $150.00",
            "The $150.00 you mention is invoice",
            "Data Overage Policy",
        ],
    );
    let usage = turn
        .answer
        .split("Data used")
        .nth(1)
        .expect("a usage sentence");
    assert!(
        usage.contains(": 22.") || usage.contains(": 21."),
        "{usage}"
    );
}

#[tokio::test]
async fn the_billing_expert_explains_a_suspension_by_the_overdue_invoice_and_failed_payments() {
    let stack = Stack::start(5).await;
    let tools = stack.connect(&["query"], "planner-258").await;
    let turn = ask(
        &tools,
        &experts::BILLING,
        "Why is my service suspended? customer 258",
    )
    .await;
    assert_answer(
        &turn,
        &[
            "Sara Lee (customer 258) is suspended",
            "is overdue: $60.00 outstanding",
            "2 failed payment attempts",
            "Payment Failure and Service Reinstatement",
            "two failed payment attempts",
        ],
    );
    // More than 14 days past due, by the tools service's own dates.
    let days: i64 = turn
        .answer
        .split("outstanding, ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("days past due");
    assert!(days > 14, "{days}");
    assert_called(
        &turn,
        &[
            "get_billing_summary",
            "get_customer_detail",
            "get_invoice_payments",
        ],
    );
}

#[tokio::test]
async fn the_account_expert_diagnoses_slow_internet_and_relays_the_progress() {
    let stack = Stack::start(5).await;
    let tools = stack.connect(&["query"], "planner-252").await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let turn = ask_relaying(
        &tools,
        &experts::ACCOUNT,
        "My internet is very slow, customer 252",
        Some(tx),
    )
    .await;
    assert_answer(
        &turn,
        &[
            "Jane Doe (customer 252)",
            "1 Gbps",
            "service status slow",
            "[investigating]",
            "The remote diagnosis",
            "Slow Internet Troubleshooting Guide",
        ],
    );
    assert_called(
        &turn,
        &[
            "get_customer_detail",
            "trouble_shoot_device",
            "get_support_tickets",
            "get_subscription_detail",
        ],
    );
    let reports = drain(&mut rx);
    assert!(!reports.is_empty(), "the diagnosis's progress is relayed");
    assert!(
        reports.iter().all(|p| &*p.tool == "trouble_shoot_device"),
        "{reports:?}"
    );
}

#[tokio::test]
async fn the_account_expert_finds_the_open_dropped_call_tickets() {
    let stack = Stack::start(5).await;
    let tools = stack.connect(&["query"], "planner-257").await;
    let turn = ask(
        &tools,
        &experts::ACCOUNT,
        "My calls keep dropping. customer 257",
    )
    .await;
    assert_answer(
        &turn,
        &[
            "Tom Smith (customer 257)",
            "3 open support tickets",
            "[call_drop] Calls dropping mid-conversation",
            "Dropped Call Investigation Procedure",
        ],
    );
    assert_eq!(turn.answer.matches("[call_drop]").count(), 3);
}

#[tokio::test]
async fn the_account_expert_reads_the_lock_and_unlocks_only_when_asked_by_a_security_caller() {
    let stack = Stack::start(5).await;
    let query_only = stack.connect(&["query"], "planner-254").await;
    let security = stack.connect(&["query", "security"], "planner-254s").await;

    // Not asked to unlock: the lock is reported to a security caller, nothing changes.
    let turn = ask(
        &security,
        &experts::ACCOUNT,
        "I can't log in, my account seems locked. customer 254",
    )
    .await;
    assert_answer(
        &turn,
        &[
            "The account of customer 254 is locked since",
            "account_locked: Account locked after 5 failed sign-in attempts",
            "failed_login",
            "Account Unlock Verification Procedure",
        ],
    );
    assert!(!called(&turn).contains(&"unlock_account"), "{turn:?}");
    // Security logs are the security role's: a query caller is not shown them.
    let turn = ask(
        &query_only,
        &experts::ACCOUNT,
        "I can't log in, my account seems locked. customer 254",
    )
    .await;
    assert_eq!(turn.status, Status::Done, "{turn:#?}");
    assert!(!turn.answer.contains("locked since"), "{}", turn.answer);
    assert!(
        !turn
            .tool_calls
            .iter()
            .any(|c| c.name == "unlock_account" || (c.name == "get_security_logs" && c.ok)),
        "{turn:?}"
    );
    let locked = ask(
        &security,
        &experts::ACCOUNT,
        "My account is locked, customer 254",
    )
    .await;
    assert!(
        locked.answer.contains("12 minutes ago"),
        "{}",
        locked.answer
    );

    // Asked by a caller without the security role: refused plainly, still locked.
    let turn = ask(
        &query_only,
        &experts::ACCOUNT,
        "Please unlock my account, customer 254",
    )
    .await;
    assert_answer(
        &turn,
        &[
            "You asked me to unlock the account, but you are not allowed to",
            "security role",
            "I have not unlocked it",
        ],
    );
    assert!(!called(&turn).contains(&"unlock_account"), "{turn:?}");
    let logs = done(&security, "get_security_logs", json!({"customer_id": 254})).await;
    assert_eq!(logs["account_locked"], true, "{logs}");

    // Asked by a caller with it: the unlock is proposed for confirmation, not made.
    let turn = ask(
        &security,
        &experts::ACCOUNT,
        "Please unlock my account, customer 254",
    )
    .await;
    assert_eq!(turn.status, Status::NeedsConfirmation, "{turn:#?}");
    assert!(
        turn.answer
            .contains("I need your confirmation before I make this change: Unlock the online account of customer 254"),
        "{}",
        turn.answer
    );
    let pending = turn.pending.as_ref().expect("the unlock waits");
    assert_eq!(pending.tool, "unlock_account");
    assert_eq!(
        pending.arguments,
        *json!({"customer_id": 254}).as_object().expect("object")
    );
    assert!(!called(&turn).contains(&"unlock_account"), "{turn:?}");
    let logs = done(&security, "get_security_logs", json!({"customer_id": 254})).await;
    assert_eq!(logs["account_locked"], true, "{logs}");

    // Once confirmed (the server claims the confirmation; see tests/confirmation.rs): unlocked.
    let ctx = Context {
        tools: &security,
        progress: None,
        cancel: CancellationToken::new(),
    };
    let confirmed = agent_service::agent::Confirmed {
        tool: &pending.tool,
        arguments: &pending.arguments,
        action: &pending.action,
        question: None,
    };
    let turn = planner::confirmed(&ctx, &experts::ACCOUNT, confirmed, Limits::default()).await;
    assert_answer(
        &turn,
        &["As you confirmed, I unlocked the account of customer 254"],
    );
    assert_called(&turn, &["unlock_account"]);
    let logs = done(&security, "get_security_logs", json!({"customer_id": 254})).await;
    assert_eq!(logs["account_locked"], false, "{logs}");
}

#[tokio::test]
async fn the_product_expert_answers_roaming_promotions_and_returns() {
    let stack = Stack::start(5).await;
    let tools = stack.connect(&["query"], "planner-product").await;

    // 253: roaming disabled; the add-on exists.
    let turn = ask(
        &tools,
        &experts::PRODUCT,
        "I'm travelling abroad next week, can I use my phone? customer 253",
    )
    .await;
    assert_answer(
        &turn,
        &[
            "Mark Doe (customer 253)",
            "roaming is off",
            "International Roaming Add-on",
            "International Roaming Options",
            "at least 3 days",
        ],
    );
    assert_called(
        &turn,
        &[
            "get_customer_detail",
            "get_products",
            "search_knowledge_base",
        ],
    );

    // 255: eligible for the Gold Mobile Loyalty Discount; an upcoming promotion not yet.
    let turn = ask(
        &tools,
        &experts::PRODUCT,
        "Which promotions am I eligible for? customer 255",
    )
    .await;
    assert_answer(
        &turn,
        &[
            "Customer 255 (Gold loyalty) is eligible today",
            "\"Mobile Loyalty Discount\": 10% off, Gold and above",
            "Not started yet",
            "(upcoming)",
            "Promotion Eligibility Rules",
        ],
    );
    assert_called(&turn, &["get_eligible_promotions"]);

    // 256: a handset returned 25 days ago; the refund policy. Product or billing expert.
    for expert in [&experts::PRODUCT, &experts::BILLING] {
        let turn = ask(
            &tools,
            expert,
            "I returned my phone, where is my refund? customer 256",
        )
        .await;
        assert_answer(
            &turn,
            &[
                "Contoso Phone X handset, $799.00",
                "was returned on",
                "25 days (",
                "Returns and Refunds Policy",
                "7-10 business days",
            ],
        );
        assert_called(&turn, &["get_customer_orders", "search_knowledge_base"]);
    }
}

#[tokio::test]
async fn a_question_without_a_customer_asks_for_the_id_and_calls_nothing() {
    let stack = Stack::start(5).await;
    let tools = stack.connect(&["query"], "planner-input").await;
    let turn = ask(
        &tools,
        &experts::BILLING,
        "Why is my bill so high this month?",
    )
    .await;
    assert_eq!(turn.status, Status::NeedsInput, "{turn:?}");
    assert!(turn.answer.contains("customer id"), "{}", turn.answer);
    assert!(turn.answer.ends_with(OFFLINE_NOTE));
    assert!(turn.tool_calls.is_empty());

    // The id given in an earlier turn of the conversation is used.
    let ctx = Context {
        tools: &tools,
        progress: None,
        cancel: CancellationToken::new(),
    };
    let history = [agent_service::model::Message::User(
        "I am customer 255".into(),
    )];
    let turn = planner::answer(
        &ctx,
        &experts::PRODUCT,
        &history,
        "Which promotions can I get?",
        Limits::default(),
    )
    .await;
    assert_answer(&turn, &["Mobile Loyalty Discount"]);
}

#[tokio::test]
async fn questions_outside_the_domain_get_a_plain_cannot_help() {
    let stack = Stack::start(5).await;
    let tools = stack.connect(&["query"], "planner-off").await;

    let turn = ask(
        &tools,
        &experts::BILLING,
        "My account is locked, customer 254",
    )
    .await;
    assert_answer(
        &turn,
        &["I cannot help with that here", "ask_account_expert"],
    );
    assert!(turn.tool_calls.is_empty());

    let turn = ask(
        &tools,
        &experts::ACCOUNT,
        "Who won the football match last night? customer 251",
    )
    .await;
    assert_answer(
        &turn,
        &[
            "I cannot help with that question",
            "locked accounts",
            "configure a language model",
        ],
    );
    assert!(turn.tool_calls.is_empty());
}

#[tokio::test]
async fn another_customer_gets_the_same_kind_of_answer_with_their_own_facts() {
    let stack = Stack::start(5).await;
    let tools = stack.connect(&["query"], "planner-other").await;
    let summary = done(&tools, "get_billing_summary", json!({"customer_id": 1})).await;
    let name = summary["customer_name"].as_str().expect("name").to_owned();
    let turn = ask(
        &tools,
        &experts::BILLING,
        "Why is my bill so high? customer 1",
    )
    .await;
    assert_answer(
        &turn,
        &[&format!("{name} (customer 1)"), "Total due: $", "Policy \""],
    );
    assert!(!turn.answer.contains("John Doe"), "{}", turn.answer);

    // An unknown customer: the tools service's error, stated.
    let turn = ask(
        &tools,
        &experts::BILLING,
        "Why is my bill so high? customer 999999",
    )
    .await;
    assert_answer(
        &turn,
        &["I could not check the billing of customer 999999", "999999"],
    );
    assert!(!turn.tool_calls[0].ok);
}

#[tokio::test]
async fn the_time_budget_ends_a_slow_investigation_with_the_calls_made_so_far() {
    // Nine diagnosis steps of 200 ms against a 600 ms budget.
    let stack = Stack::start(200).await;
    let tools = stack.connect(&["query"], "planner-budget").await;
    let ctx = Context {
        tools: &tools,
        progress: None,
        cancel: CancellationToken::new(),
    };
    let limits = Limits {
        time_budget: Duration::from_millis(600),
        ..Limits::default()
    };
    let turn = planner::answer(
        &ctx,
        &experts::ACCOUNT,
        &[],
        "My internet is slow, customer 252",
        limits,
    )
    .await;
    assert_eq!(turn.status, Status::Error, "{turn:?}");
    assert!(
        turn.error.as_deref().unwrap_or("").contains("within"),
        "{turn:?}"
    );
    assert!(turn.answer.ends_with(OFFLINE_NOTE));
    assert!(
        turn.tool_calls
            .iter()
            .any(|c| c.name == "get_customer_detail"),
        "{turn:?}"
    );
}

#[tokio::test]
async fn balances_and_the_catalogue_are_answered_and_plans_need_no_customer() {
    let stack = Stack::start(5).await;
    let tools = stack.connect(&["query"], "planner-more").await;
    let turn = ask(
        &tools,
        &experts::BILLING,
        "How much do I still owe? customer 251",
    )
    .await;
    assert_answer(
        &turn,
        &[
            "Total due: $100.00",
            "$50.00 of it is paid and $100.00 is outstanding",
        ],
    );
    assert_called(&turn, &["get_billing_summary"]);

    let turn = ask(&tools, &experts::PRODUCT, "Which plans can I upgrade to?").await;
    assert_answer(
        &turn,
        &[
            "The catalogue:",
            "Contoso Mobile 10GB",
            "International Roaming Add-on",
        ],
    );
    assert_eq!(called(&turn), ["get_products"]);
}

#[tokio::test]
async fn a_cancelled_request_ends_the_turn_without_an_answer_of_substance() {
    let stack = Stack::start(200).await;
    let tools = stack.connect(&["query"], "planner-cancel").await;
    let cancel = CancellationToken::new();
    let ctx = Context {
        tools: &tools,
        progress: None,
        cancel: cancel.clone(),
    };
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel();
    });
    let started = std::time::Instant::now();
    let turn = planner::answer(
        &ctx,
        &experts::ACCOUNT,
        &[],
        "My calls keep dropping, customer 257",
        Limits::default(),
    )
    .await;
    canceller.await.expect("canceller");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(turn.status, Status::Error, "{turn:?}");
    assert!(
        turn.answer.starts_with("The request was cancelled."),
        "{}",
        turn.answer
    );
}
