//! The audit trail of the tools service: the real binary verifying real tokens of a development
//! identity provider records one event per `tools/call` (allowed, refused, failed; delegated or
//! not), flushes them when it stops, prunes old ones at start, and prints them with its `audit`
//! subcommand; `unlock_account` writes who unlocked into the security log; `--print-policy`
//! prints the effective policy.
//!
//! Events are read after the service stopped: it stores them off the request path and writes
//! what is pending when it shuts down, so reading then is exact.

mod common;

use std::path::{Path, PathBuf};

use chrono::{Duration, Utc};
use common::*;
use devstack::idp::{self, IdpConfig, RunningIdp, TokenSpec, defaults};
use serde_json::{Map, Value, json};
use shared::{
    audit::{AuditEvent, AuditFilter, AuditStore, Outcome, SqliteAuditStore, read_events},
    auth::{RolePolicy, policy::PlatformRoles},
};

const AGENT: &str = "contoso-agent";

async fn idp() -> RunningIdp {
    idp::spawn(IdpConfig::default())
        .await
        .expect("identity provider starts")
}

/// The service verifying `idp`'s tokens and trusting the agent to act for others.
async fn server(idp: &RunningIdp, extra: &[(&str, &str)]) -> Server {
    let mut env = jwt_auth(idp.url());
    env.push(("TRUSTED_ACTORS", AGENT));
    env.extend_from_slice(extra);
    Server::start_with(&env).await
}

/// A token of `subject` in `tenant` with `roles`, issued to client `client`.
fn token(idp: &RunningIdp, tenant: &str, subject: &str, roles: &[&str], client: &str) -> String {
    idp.idp.mint(&TokenSpec {
        client_id: Some(client.to_owned()),
        ..TokenSpec::new(tenant, roles.iter().copied(), subject)
    })
}

/// A token the agent obtained for `subject` (RFC 8693 `act`).
fn delegated(idp: &RunningIdp, subject: &str, roles: &[&str]) -> String {
    let mut extra = Map::new();
    extra.insert("act".into(), json!({"sub": AGENT}));
    idp.idp.mint(&TokenSpec {
        client_id: Some(AGENT.to_owned()),
        extra,
        ..TokenSpec::new(defaults::CONTOSO, roles.iter().copied(), subject)
    })
}

fn db(dir: &Path) -> PathBuf {
    dir.join("contoso.db")
}

/// Every event of `tenant`.
fn of(tenant: &str) -> AuditFilter {
    AuditFilter {
        tenant: Some(tenant.to_owned()),
        since: None,
        limit: 10_000,
    }
}

async fn stored(dir: &Path, tenant: &str) -> Vec<AuditEvent> {
    read_events(&db(dir), &of(tenant))
        .await
        .expect("the stored events")
}

/// Stops the service (which stores what is pending) and returns its directory.
async fn stop(server: Server) -> tempfile::TempDir {
    // Once it has answered a request it handles SIGTERM (the handler is installed by then).
    server.readyz().await;
    let (dir, status) = server.stop().await;
    assert!(status.success(), "stopped cleanly: {status:?}");
    dir
}

fn log_line<'a>(logs: &'a str, tool: &str, outcome: &str) -> &'a str {
    let tool = format!("\"tool\":\"{tool}\"");
    let outcome = format!("\"outcome\":\"{outcome}\"");
    logs.lines()
        .find(|l| l.contains(" audit: ") && l.contains(&tool) && l.contains(&outcome))
        .unwrap_or_else(|| panic!("no audit line for {tool} {outcome}:\n{logs}"))
}

#[tokio::test]
async fn every_call_allowed_refused_or_failed_is_one_event() {
    let idp = idp().await;
    let server = server(&idp, &[]).await;
    let query = server
        .client_with_token(&token(
            &idp,
            defaults::CONTOSO,
            "alice",
            &["query"],
            "contoso-query",
        ))
        .await;
    ok(&query, "get_customer_detail", json!({"customer_id": 251})).await;
    let refused = tool_error(&query, "unlock_account", json!({"customer_id": 254})).await;
    assert!(refused.contains("not allowed"), "{refused}");
    tool_error(
        &query,
        "get_customer_detail",
        json!({"customer_id": 999_999}),
    )
    .await;
    // A field the tool does not take makes it a tool error; its arguments are redacted alike.
    tool_error(
        &query,
        "create_support_ticket",
        json!({"customer_id": 251, "category": "billing", "subject": "My bill",
               "description": "It is twice the usual amount", "access_token": "eyJ.secret"}),
    )
    .await;
    let unknown = query
        .call_tool(params("refund_everything", json!({"customer_id": 251})))
        .await;
    assert!(unknown.is_err(), "an unknown tool is a protocol error");
    let logs = server.logs();
    let dir = stop(server).await;

    let events = stored(dir.path(), defaults::CONTOSO).await;
    let summary: Vec<(&str, &Outcome)> = events
        .iter()
        .map(|e| (e.tool.as_str(), &e.outcome))
        .collect();
    assert_eq!(
        summary,
        [
            ("get_customer_detail", &Outcome::Ok),
            (
                "unlock_account",
                &Outcome::refused(
                    "missing_role",
                    Some(
                        "unlock_account requires one of the roles [security]; the caller has [query]"
                            .into()
                    )
                )
            ),
            ("get_customer_detail", &Outcome::tool_error("not_found")),
            ("create_support_ticket", &Outcome::tool_error("invalid")),
            ("refund_everything", &Outcome::refused("unknown_tool", None)),
        ],
        "one event per call, in order: {events:#?}"
    );
    for event in &events {
        assert_eq!(event.service, "tools-service");
        assert_eq!(event.tenant, defaults::CONTOSO);
        assert_eq!(event.subject, "alice");
        assert_eq!(event.client.as_deref(), Some("contoso-query"));
        assert!(event.actors.is_empty(), "not delegated");
        assert!(
            event.request_id.as_deref().is_some_and(|id| id.len() >= 32),
            "the middleware's request id: {event:?}"
        );
    }
    assert_eq!(events[0].arguments, json!({"customer_id": 251}));
    assert_eq!(events[2].arguments, json!({"customer_id": 999_999}));
    // Free text is reduced to its length and a secret-looking field is redacted.
    assert_eq!(
        events[3].arguments,
        json!({"customer_id": 251, "category": "billing", "subject": "<7 chars>",
               "description": "<28 chars>", "access_token": "<redacted>"})
    );
    assert!(!logs.contains("eyJ.secret") && !logs.contains("twice the usual"));
    // The log has the same events on the `audit` target; a restricted tool is an alert.
    assert!(log_line(&logs, "get_customer_detail", "ok").contains(" INFO "));
    assert!(log_line(&logs, "unlock_account", "refused").contains(" WARN "));
}

#[tokio::test]
async fn a_delegated_unlock_names_the_subject_and_the_agent() {
    let idp = idp().await;
    let server = server(&idp, &[]).await;
    let agent = server
        .client_with_token(&delegated(&idp, "alice", &["security"]))
        .await;
    let unlocked = ok(&agent, "unlock_account", json!({"customer_id": 254})).await;
    let expected = format!(
        "Account unlocked by alice (tenant {}) via {AGENT} after identity verification",
        defaults::CONTOSO
    );
    assert_eq!(unlocked["log_entry"]["description"], expected.as_str());
    // The security log says it too, for whoever reads it later.
    let log = ok(&agent, "get_security_logs", json!({"customer_id": 254})).await;
    assert_eq!(log["entries"][0]["description"], expected.as_str(), "{log}");

    // Unlocked for herself, without an agent, the entry names only her.
    let admin = server
        .client_with_token(&token(
            &idp,
            defaults::CONTOSO,
            "bob",
            &["security"],
            "contoso-security",
        ))
        .await;
    let again = tool_error(&admin, "unlock_account", json!({"customer_id": 254})).await;
    assert!(again.contains("not locked"), "{again}");
    let logs = server.logs();
    let dir = stop(server).await;

    let events = stored(dir.path(), defaults::CONTOSO).await;
    assert_eq!(events.len(), 3, "{events:#?}");
    let unlock = &events[0];
    assert_eq!(unlock.tool, "unlock_account");
    assert_eq!(unlock.outcome, Outcome::Ok);
    assert_eq!(unlock.subject, "alice");
    assert_eq!(unlock.client.as_deref(), Some(AGENT));
    assert_eq!(unlock.actors, [AGENT]);
    assert_eq!(events[1].actors, [AGENT]);
    assert_eq!(events[2].subject, "bob");
    assert!(events[2].actors.is_empty());
    assert_eq!(events[2].outcome, Outcome::tool_error("conflict"));
    let alert = log_line(&logs, "unlock_account", "ok");
    assert!(alert.contains(" WARN ") && alert.contains(AGENT), "{alert}");
}

#[tokio::test]
async fn the_audit_subcommand_prints_one_tenants_events_newest_last() {
    let idp = idp().await;
    let server = server(&idp, &[]).await;
    let contoso = server
        .client_with_token(&token(
            &idp,
            defaults::CONTOSO,
            "alice",
            &["billing"],
            "contoso-billing",
        ))
        .await;
    let fabrikam = server
        .client_with_token(&token(
            &idp,
            defaults::FABRIKAM,
            "frank",
            &["query"],
            "fabrikam-query",
        ))
        .await;
    for customer in [251, 252, 253] {
        ok(
            &contoso,
            "get_billing_summary",
            json!({"customer_id": customer}),
        )
        .await;
        ok(
            &fabrikam,
            "get_customer_detail",
            json!({"customer_id": customer}),
        )
        .await;
    }
    let dir = stop(server).await;

    let run = |args: Vec<String>| {
        let dir = dir.path().to_owned();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let output = run_binary(&dir, &args, &[]).await;
            assert!(
                output.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8(output.stdout)
                .expect("UTF-8")
                .lines()
                .map(|line| serde_json::from_str::<AuditEvent>(line).expect("a JSON event"))
                .collect::<Vec<_>>()
        }
    };
    let args = |more: &[&str]| -> Vec<String> {
        ["audit", "--tenant", defaults::CONTOSO]
            .iter()
            .chain(more)
            .map(|s| (*s).to_owned())
            .collect()
    };
    let printed = run(args(&["--since", "1h"])).await;
    let customers: Vec<&Value> = printed
        .iter()
        .map(|e| &e.arguments["customer_id"])
        .collect();
    assert_eq!(customers, [&json!(251), &json!(252), &json!(253)]);
    assert!(printed.iter().all(|e| e.tenant == defaults::CONTOSO
        && e.subject == "alice"
        && e.tool == "get_billing_summary"));
    // The newest only, and none before a time after the calls.
    let newest = run(args(&["--since", "7d", "--limit", "1"])).await;
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0].arguments["customer_id"], 253);
    let later = (Utc::now() + Duration::minutes(1)).to_rfc3339();
    assert!(run(args(&["--since", &later])).await.is_empty());
    // --db-path names the database instead of DB_PATH.
    let path = db(dir.path()).display().to_string();
    let elsewhere = run(vec![
        "audit".into(),
        "--tenant".into(),
        defaults::FABRIKAM.into(),
        "--since".into(),
        "30m".into(),
        "--db-path".into(),
        path,
    ])
    .await;
    assert_eq!(elsewhere.len(), 3);
    assert!(elsewhere.iter().all(|e| e.subject == "frank"));

    // A database that does not exist is an error, not a new empty file.
    let missing = dir.path().join("missing.db");
    let output = run_binary(
        dir.path(),
        &[
            "audit",
            "--tenant",
            defaults::CONTOSO,
            "--since",
            "1h",
            "--db-path",
            missing.to_str().expect("UTF-8 path"),
        ],
        &[],
    )
    .await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no database"));
    assert!(!missing.exists());
}

#[tokio::test]
async fn events_older_than_the_retention_are_pruned_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let old = |days: i64| AuditEvent {
        time: Utc::now() - Duration::days(days),
        service: "tools-service".into(),
        request_id: None,
        tenant: defaults::CONTOSO.into(),
        subject: "alice".into(),
        client: None,
        actors: Vec::new(),
        tool: "get_products".into(),
        arguments: json!({}),
        outcome: Outcome::Ok,
        duration_us: 1,
    };
    let store = SqliteAuditStore::open(&db(dir.path()))
        .await
        .expect("a new database");
    store
        .append(&[old(45), old(10)])
        .await
        .expect("events from before");
    store.pool().close().await;

    let server = Server::start_in(dir, &[("AUDIT_RETENTION_DAYS", "30")]).await;
    let dir = stop(server).await;
    let left = stored(dir.path(), defaults::CONTOSO).await;
    assert_eq!(left.len(), 1, "{left:#?}");
    assert!(left[0].time < Utc::now() - Duration::days(9));

    // 0 keeps everything.
    let server = Server::start_in(dir, &[("AUDIT_RETENTION_DAYS", "0")]).await;
    let dir = stop(server).await;
    assert_eq!(stored(dir.path(), defaults::CONTOSO).await.len(), 1);
}

#[tokio::test]
async fn without_authentication_calls_are_audited_as_anonymous() {
    let server = Server::start().await;
    let client = server.client().await;
    ok(&client, "get_products", no_args()).await;
    let dir = stop(server).await;
    let events = stored(dir.path(), "development").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].subject, "anonymous");
    assert_eq!(events[0].outcome, Outcome::Ok);
}

#[tokio::test]
async fn print_policy_prints_the_effective_policy_and_opens_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = run_binary(dir.path(), &["--print-policy"], &[("DISABLE_AUTH", "true")]).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout).expect("UTF-8");
    assert_eq!(
        RolePolicy::from_toml(&printed).expect("a policy file"),
        RolePolicy::least_privilege(&PlatformRoles::default())
    );
    assert!(!db(dir.path()).exists(), "no database opened");
}
