//! `devstack` with no arguments, in process: the identity provider and the tools service come
//! up wired together with authentication on, and the printed sample tokens work as their roles
//! say.

use devstack::{
    config::{DataArgs, StackArgs},
    stack,
};
use serde_json::{Value, json};
use shared::config::{LogFormat, TelemetryArgs};

async fn list_tools(url: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("request")
}

#[tokio::test]
async fn the_stack_serves_the_tools_to_the_printed_tokens() {
    let dir = tempfile::tempdir().expect("temp dir");
    let running = stack::start(StackArgs {
        idp_bind: "127.0.0.1:0".parse().expect("addr"),
        tools_bind: "127.0.0.1:0".parse().expect("addr"),
        db_path: dir.path().join("contoso.db"),
        token_lifetime_secs: 600,
        data: DataArgs {
            data_dir: dir.path().join("devstack"),
        },
        telemetry: TelemetryArgs {
            log_format: LogFormat::Text,
            log_filter: "warn".into(),
        },
    })
    .await
    .expect("stack starts");

    let banner = running.banner();
    assert!(banner.contains(&running.mcp_url) && banner.contains("authentication ON"));
    let anonymous = list_tools(&running.mcp_url, None).await;
    assert_eq!(anonymous.status(), 401, "authentication is on");

    for (subject, roles, token) in &running.tokens {
        assert!(
            banner.contains(token.as_str()),
            "{subject}'s token is printed"
        );
        let body: Value = list_tools(&running.mcp_url, Some(token))
            .await
            .json()
            .await
            .expect("json");
        let names: Vec<&str> = body["result"]["tools"]
            .as_array()
            .expect("tools")
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        let expected = if roles.iter().any(|r| r == "security") {
            19
        } else {
            18
        };
        assert_eq!(names.len(), expected, "{subject} {roles:?}: {names:?}");
        assert_eq!(names.contains(&"unlock_account"), expected == 19);
    }
    running.stop().await.expect("stops cleanly");
}
