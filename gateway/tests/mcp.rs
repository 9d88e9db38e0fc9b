//! An MCP session end to end through the gateway to a real tools-service: initialize, the
//! initialized notification, and a long tool call whose progress notifications reach the client
//! while the tool runs, not buffered until its result.

mod common;

use std::time::{Duration, Instant};

use common::*;
use devstack::idp::defaults;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_streams_through_the_gateway_while_the_tool_runs() {
    let idp = idp().await;
    // 9 steps of 150 ms: the result comes ~1.35 s after the call.
    let backend = tools_service_with(idp.url(), &["--troubleshoot-step-ms", "150"]).await;
    let gateway = Gateway::start(&idp, &backend.addr).await;
    let contoso = gateway.token(&idp, defaults::CONTOSO, "/contoso-mcp");
    let mcp = gateway.url("/contoso-mcp/mcp");

    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "gateway-test", "version": "0"}
        }
    });
    let response = mcp_post(mcp.clone(), initialize.to_string())
        .bearer_auth(&contoso)
        .send()
        .await
        .expect("initialize");
    assert_eq!(response.status(), 200);
    let initialized = json_rpc(response).await;
    assert_eq!(
        initialized["result"]["protocolVersion"], "2025-11-25",
        "{initialized}"
    );
    assert!(initialized["result"]["capabilities"]["tools"].is_object());

    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let response = mcp_post(mcp.clone(), note.to_string())
        .bearer_auth(&contoso)
        .send()
        .await
        .expect("initialized");
    assert_eq!(response.status(), 202);

    let call = json!({
        "jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {
            "name": "trouble_shoot_device",
            "arguments": {"customer_id": 252},
            "_meta": {"progressToken": "through-the-gateway"}
        }
    });
    let sent = Instant::now();
    let mut response = mcp_post(mcp, call.to_string())
        .bearer_auth(&contoso)
        .send()
        .await
        .expect("tools/call");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("ASCII")
            .starts_with("text/event-stream"),
        "progress needs a stream"
    );

    // Each JSON-RPC message of the stream with the time it arrived.
    let mut buffer = String::new();
    let mut messages: Vec<(Duration, Value)> = Vec::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(20), response.chunk())
        .await
        .expect("the stream moves")
        .expect("the stream is intact")
    {
        buffer.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            for data in event.lines().filter_map(|l| l.strip_prefix("data:")) {
                if !data.trim().is_empty() {
                    let message = serde_json::from_str(data.trim()).expect("JSON-RPC message");
                    messages.push((sent.elapsed(), message));
                }
            }
        }
    }

    let progress: Vec<(Duration, f64)> = messages
        .iter()
        .filter(|(_, m)| m["method"] == "notifications/progress")
        .map(|(at, m)| {
            assert_eq!(m["params"]["progressToken"], "through-the-gateway");
            (*at, m["params"]["progress"].as_f64().expect("progress"))
        })
        .collect();
    let (result_at, result) = messages
        .iter()
        .find(|(_, m)| m["id"] == 2)
        .expect("the call's result");
    assert_ne!(result["result"]["isError"], true, "{result}");
    assert!(
        result["result"]["structuredContent"].is_object(),
        "{result}"
    );
    assert!(
        progress.len() >= 9,
        "{} progress notifications",
        progress.len()
    );
    assert!(
        progress.windows(2).all(|w| w[0].1 < w[1].1),
        "progress in order: {progress:?}"
    );
    // The first step's notification arrives long before the last step ends.
    let first = progress[0].0;
    assert!(
        *result_at - first >= Duration::from_millis(800),
        "first progress at {first:?}, result at {result_at:?}: buffered?"
    );
    gateway.stop().await;
    backend.stop().await;
}
