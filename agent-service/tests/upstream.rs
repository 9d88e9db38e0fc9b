//! The tools service's MCP client against a real tools service (in this process, on
//! `127.0.0.1:0`, verifying tokens of a devstack identity provider): the caller's roles bound
//! every inner call, an expert's subset narrows what is offered, progress is relayed in order,
//! cancellation reaches the tool, and failures to reach the service are clear and prompt.

mod common;

use std::{
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use agent_service::upstream::{
    BearerToken, CallOptions, PassThrough, Progress, ToolOutcome, ToolsClient, ToolsConnection,
    UpstreamError,
};
use common::*;
use devstack::idp::{TokenSpec, defaults};
use serde_json::json;
use tokio::{net::TcpListener, sync::mpsc};
use tokio_util::sync::CancellationToken;

/// The account expert's tools, as the reference gives them (plus one the service lacks).
const ACCOUNT_EXPERT: &[&str] = &[
    "unlock_account",
    "get_security_logs",
    "get_customer_detail",
    "get_all_customers",
    "search_knowledge_base",
    "no_such_tool",
];

#[tokio::test]
async fn a_caller_without_the_security_role_cannot_unlock_through_the_agent() {
    let stack = Stack::start(20).await;
    let query = stack.connect(&["query"], "conv-deputy").await;
    let visible = names(&query, ACCOUNT_EXPERT).await;
    assert!(
        !visible.contains(&"unlock_account".to_owned()),
        "{visible:?}"
    );
    assert!(
        !visible.contains(&"get_security_logs".to_owned()),
        "security logs are the security role's: {visible:?}"
    );
    assert!(
        visible.contains(&"get_customer_detail".to_owned()),
        "{visible:?}"
    );

    // Offered or not, a call is made with the caller's authority, and refused as a value.
    let outcome = call(&query, "unlock_account", json!({"customer_id": 254})).await;
    let ToolOutcome::ToolError { message } = &outcome else {
        panic!("expected a tool error, got {outcome:?}")
    };
    assert!(message.contains("not allowed"), "{message}");
    assert!(
        message.contains("security"),
        "names the missing role: {message}"
    );
    let security = stack.connect(&["security"], "conv-security").await;
    let log = done(&security, "get_security_logs", json!({"customer_id": 254})).await;
    assert_eq!(log["account_locked"], true, "the account stays locked");

    // The same expert on behalf of a caller who holds the role sees the tool and may use it.
    assert!(
        names(&security, ACCOUNT_EXPERT)
            .await
            .contains(&"unlock_account".to_owned())
    );
    let unlocked = done(&security, "unlock_account", json!({"customer_id": 254})).await;
    assert_eq!(unlocked["log_entry"]["event_type"], "account_unlocked");
    let log = done(&security, "get_security_logs", json!({"customer_id": 254})).await;
    assert_eq!(log["account_locked"], false);

    // Each inner call is logged with its tool, outcome and conversation; arguments only at
    // debug; the tokens never.
    let logs = logs();
    assert!(
        logs.lines().any(|l| l.contains("inner tool call")
            && l.contains(" INFO ")
            && l.contains("unlock_account")
            && l.contains("conv-deputy")
            && l.contains("tool_error")
            && l.contains("duration_us")),
        "{logs}"
    );
    let ours: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("agent_service"))
        .collect();
    assert!(
        ours.iter()
            .any(|l| l.contains(" DEBUG ") && l.contains("arguments") && l.contains("254")),
        "the arguments are logged at debug:\n{logs}"
    );
    assert!(
        ours.iter()
            .filter(|l| l.contains("customer_id"))
            .all(|l| l.contains(" DEBUG ")),
        "arguments logged above debug:\n{logs}"
    );
    for roles in [&["query"][..], &["security"][..]] {
        let token = stack.token(roles);
        let signature = token.expose().rsplit('.').next().expect("a JWT");
        assert!(!logs.contains(signature), "a token reached the log");
    }
}

#[tokio::test]
async fn an_experts_subset_narrows_what_the_caller_may_use() {
    let stack = Stack::start(20).await;
    let c = stack
        .connect(&["query", "billing", "security"], "conv-subset")
        .await;
    let all = names(&c, &[]).await;
    assert!(all.is_empty(), "an expert with no tools is offered none");
    let everything: Vec<String> = c
        .tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| t.name.into_owned())
        .collect();
    assert_eq!(everything.len(), 19, "{everything:?}");

    let offered = names(&c, ACCOUNT_EXPERT).await;
    assert_eq!(
        offered.len(),
        ACCOUNT_EXPERT.len() - 1,
        "every allowed tool the service has, once: {offered:?}"
    );
    assert!(offered.iter().all(|n| ACCOUNT_EXPERT.contains(&n.as_str())));
    assert!(!offered.contains(&"pay_invoice".to_owned()));
    // In the service's order, with what a model needs to call them.
    let order: Vec<&String> = everything.iter().filter(|n| offered.contains(n)).collect();
    assert_eq!(order, offered.iter().collect::<Vec<_>>());
    let tools = c
        .tools_within(&["get_customer_detail"])
        .await
        .expect("tools/list");
    assert!(tools[0].description.is_some());
    assert!(tools[0].input_schema.contains_key("properties"));

    // A tool the service lacks is refused as a value too.
    let outcome = call(&c, "no_such_tool", json!({})).await;
    assert!(
        matches!(&outcome, ToolOutcome::Rejected { message, .. } if message.contains("no_such_tool")),
        "{outcome:?}"
    );
}

/// Starts a diagnosis of `customer` with `options` (whose progress goes to `rx`) and returns the
/// still-running call once its first step is reported.
async fn diagnosis_under_way<'c>(
    c: &'c ToolsConnection,
    customer: i64,
    options: CallOptions,
    rx: &mut mpsc::UnboundedReceiver<Progress>,
) -> (
    Pin<Box<dyn Future<Output = Result<ToolOutcome, UpstreamError>> + Send + 'c>>,
    Progress,
) {
    let mut call = Box::pin(c.call(
        "trouble_shoot_device",
        args(json!({"customer_id": customer})),
        options,
    ));
    let first = tokio::select! {
        outcome = &mut call => panic!("the call ended before any progress: {outcome:?}"),
        first = rx.recv() => first.expect("a progress report"),
    };
    (call, first)
}

#[tokio::test]
async fn progress_arrives_in_order_while_the_tool_runs() {
    let stack = Stack::start(150).await;
    let c = stack.connect(&["query"], "conv-progress").await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let started = Instant::now();
    let (call, first) =
        diagnosis_under_way(&c, 252, CallOptions::default().progress(tx), &mut rx).await;
    let first_at = started.elapsed();
    let outcome = call.await.expect("the call completes");
    let total = started.elapsed();
    assert!(outcome.is_done(), "{outcome:?}");
    assert!(
        first_at < total / 2,
        "first report after {first_at:?} of {total:?}"
    );

    let mut reports = vec![first];
    reports.extend(drain(&mut rx));
    assert_eq!(
        reports.len(),
        9,
        "every step, the last one too: {reports:?}"
    );
    for (i, p) in reports.iter().enumerate() {
        assert_eq!(p.progress, (i + 1) as f64, "in order");
        assert_eq!(p.total, Some(9.0));
        assert_eq!(&*p.tool, "trouble_shoot_device");
        let message = p.message.as_deref().unwrap_or_default();
        assert!(
            message.starts_with(&format!("Step {}/9", i + 1)),
            "{message}"
        );
    }
    let ToolOutcome::Done { structured, .. } = outcome else {
        unreachable!()
    };
    assert_eq!(structured.expect("diagnosis")["service_status"], "slow");
}

/// Waits until the tools service has logged `times` stopped diagnoses, then checks that no
/// step after `reported` (and the one under way) was reported.
async fn the_diagnosis_stops(
    rx: &mut mpsc::UnboundedReceiver<Progress>,
    reported: f64,
    times: usize,
) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while logs().matches("trouble_shoot_device cancelled").count() < times {
        assert!(
            Instant::now() < deadline,
            "the tool did not stop:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let later: Vec<f64> = drain(rx).iter().map(|p| p.progress).collect();
    assert!(
        later.iter().all(|p| *p <= reported + 1.0),
        "steps went on after the cancellation: {later:?}"
    );
}

#[tokio::test]
async fn cancelling_or_dropping_a_call_stops_the_inner_tool() {
    let stack = Stack::start(300).await;
    let c = stack.connect(&["query"], "conv-cancel").await;

    // Cancelled through its token: the call ends at once, and so does the tool.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    let options = CallOptions::default().progress(tx).cancel(cancel.clone());
    let (call, first) = diagnosis_under_way(&c, 257, options, &mut rx).await;
    cancel.cancel();
    let cancelled_at = Instant::now();
    let result = call.await;
    assert!(
        matches!(&result, Err(UpstreamError::Cancelled { tool }) if tool == "trouble_shoot_device"),
        "{result:?}"
    );
    assert!(
        cancelled_at.elapsed() < Duration::from_secs(1),
        "the call ended at once"
    );
    the_diagnosis_stops(&mut rx, first.progress, 1).await;

    // Dropped, as when the outer request's handler goes away: the tool stops too.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let options = CallOptions::default().progress(tx);
    let (call, first) = diagnosis_under_way(&c, 252, options, &mut rx).await;
    drop(call);
    the_diagnosis_stops(&mut rx, first.progress, 2).await;

    // The connection serves the next call.
    done(&c, "get_customer_detail", json!({"customer_id": 257})).await;
}

#[tokio::test]
async fn a_bad_token_is_a_clear_error() {
    // Admits Contoso only, so a valid token of another tenant is refused (403).
    let stack = Stack::start_with(20, &[("--allowed-tenants", defaults::CONTOSO)]).await;
    let client = stack.client();
    let expired = TokenSpec {
        extra: args(json!({"exp": chrono::Utc::now().timestamp() - 3600})),
        ..TokenSpec::new(defaults::CONTOSO, ["query"], "alice")
    };
    let foreign = stack
        .idp
        .idp
        .foreign_key_token(&TokenSpec::new(defaults::CONTOSO, ["query"], "alice"))
        .expect("a token signed by another key");
    for (what, token) in [
        ("expired", stack.token_with(expired)),
        ("signed by another key", BearerToken::new(foreign)),
        ("not a JWT", BearerToken::new("not-a-jwt")),
    ] {
        let error = client
            .connect(&token, "conv-bad-token")
            .await
            .expect_err(what);
        assert!(
            matches!(error, UpstreamError::Unauthorized { .. }),
            "{what}: {error:?}"
        );
        let message = error.detail();
        assert!(message.contains(&stack.tools_url), "{what}: {message}");
        assert!(message.contains("refused"), "{what}: {message}");
        assert!(
            !error.to_string().contains(&stack.tools_url),
            "{what}: {error}"
        );
    }

    let other_tenant = stack.token_with(TokenSpec::new(defaults::FABRIKAM, ["query"], "alice"));
    let error = client
        .connect(&other_tenant, "conv-other-tenant")
        .await
        .expect_err("a tenant the service does not admit");
    assert!(matches!(error, UpstreamError::Failed { .. }), "{error:?}");
    let message = error.detail();
    assert!(message.contains(&stack.tools_url), "{message}");
    assert!(message.contains("403"), "{message}");
    assert!(!error.to_string().contains("403"), "{error}");
}

/// Connects to `url` with `client`, which must fail within 2 s as unreachable, naming `url`.
async fn unreachable_fast(client: ToolsClient, url: &str) {
    let started = Instant::now();
    let error = client
        .connect(&BearerToken::new("any"), "conv-down")
        .await
        .expect_err("no tools service there");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "gave up after {took:?}");
    assert!(
        matches!(error, UpstreamError::Unreachable { .. }),
        "{error:?}"
    );
    assert!(error.detail().contains(url), "{error:?}");
    assert!(!error.to_string().contains(url), "{error}");
}

#[tokio::test]
async fn an_unreachable_tools_service_fails_fast_naming_its_url() {
    // Nothing listens on a port just released.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/mcp", listener.local_addr().expect("address"));
    drop(listener);
    unreachable_fast(client_of(&url), &url).await;

    // A service that accepts connections and never answers is given up on after the timeout.
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/mcp", silent.local_addr().expect("address"));
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let client = ToolsClient::new(&url, Arc::new(PassThrough), Duration::from_millis(500))
        .expect("valid URL");
    unreachable_fast(client, &url).await;
    held.abort();

    let error = ToolsClient::new("tools:8001", Arc::new(PassThrough), Duration::from_secs(1))
        .expect_err("no scheme");
    assert!(error.to_string().contains("tools:8001"), "{error}");
}

#[tokio::test]
async fn a_tools_service_going_away_mid_call_is_an_error_naming_it() {
    let mut stack = Stack::start(300).await;
    let c = stack.connect(&["query"], "conv-gone").await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (call, _) =
        diagnosis_under_way(&c, 252, CallOptions::default().progress(tx), &mut rx).await;
    // Shuts down as on SIGTERM: open MCP streams are ended.
    stack.shut_down();
    let result = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("the call ends, not hangs");
    let error = result.expect_err("no answer from a service that went away");
    assert!(matches!(error, UpstreamError::Failed { .. }), "{error:?}");
    assert!(error.detail().contains(&stack.tools_url), "{error:?}");
}

#[tokio::test]
async fn calls_run_in_parallel_on_one_connection() {
    let stack = Stack::start(100).await;
    let c = stack.connect(&["query"], "conv-parallel").await;
    let customers = [251, 252, 257];
    let mut receivers = Vec::new();
    let mut calls = Vec::new();
    for customer in customers {
        let (tx, rx) = mpsc::unbounded_channel();
        receivers.push(rx);
        calls.push(c.call(
            "trouble_shoot_device",
            args(json!({"customer_id": customer})),
            CallOptions::default().progress(tx),
        ));
    }
    let started = Instant::now();
    let (diagnoses, detail) = tokio::join!(
        futures::future::join_all(calls),
        call(&c, "get_customer_detail", json!({"customer_id": 251}))
    );
    let elapsed = started.elapsed();
    assert!(detail.is_done(), "{detail:?}");
    // One diagnosis takes nine 100 ms steps; three in a row would take 2.7 s.
    assert!(
        elapsed < Duration::from_millis(1800),
        "not in parallel: {elapsed:?}"
    );
    for ((customer, outcome), mut rx) in customers.iter().zip(diagnoses).zip(receivers) {
        let outcome = outcome.expect("the call completes");
        let ToolOutcome::Done { structured, .. } = &outcome else {
            panic!("{customer}: {outcome:?}")
        };
        assert_eq!(
            structured.as_ref().expect("diagnosis")["customer_id"],
            *customer,
            "each call gets its own answer"
        );
        let steps: Vec<f64> = drain(&mut rx).iter().map(|p| p.progress).collect();
        assert_eq!(
            steps,
            (1..=9).map(f64::from).collect::<Vec<_>>(),
            "{customer}"
        );
    }
}
