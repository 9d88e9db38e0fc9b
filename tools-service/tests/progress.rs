//! `trouble_shoot_device` over real MCP: progress notifications arrive in order while the tool
//! runs (not all at the end), the diagnosis reflects the subscription's real state, and
//! cancelling the request stops the work promptly — for clients of both protocol generations.

mod common;

use std::time::{Duration, Instant};

use common::*;
use rmcp::{
    ClientHandler, ServiceExt,
    model::{
        ClientConfig, ClientRequest, ProgressNotificationParam, ProtocolVersion, Request,
        ServerResult,
    },
    service::{
        ClientLifecycleMode, ClientServiceExt, NotificationContext, PeerRequestOptions, RoleClient,
    },
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// A client that records each progress notification with the time it arrived.
#[derive(Clone)]
struct Recorder {
    config: ClientConfig,
    tx: mpsc::UnboundedSender<(Instant, ProgressNotificationParam)>,
}

impl ClientHandler for Recorder {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        let _ = self.tx.send((Instant::now(), params));
    }

    fn get_info(&self) -> ClientConfig {
        self.config.clone()
    }
}

type Recording = mpsc::UnboundedReceiver<(Instant, ProgressNotificationParam)>;

async fn recorder(
    server: &Server,
    modern: bool,
) -> (
    rmcp::service::RunningService<RoleClient, Recorder>,
    Recording,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(server.url()),
    );
    let client = if modern {
        Recorder {
            config: ClientConfig::default(),
            tx,
        }
        .serve_with_lifecycle(
            transport,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
    } else {
        Recorder {
            config: ClientConfig::default().with_protocol_version(ProtocolVersion::V_2025_11_25),
            tx,
        }
        .serve(transport)
        .await
    };
    (client.expect("client connects"), rx)
}

fn call_request(args: Value) -> ClientRequest {
    ClientRequest::CallToolRequest(Request::new(params("trouble_shoot_device", args)))
}

async fn progress_arrives_in_order_while_running(modern: bool) {
    // 150 ms a step: 9 steps take ~1.35 s, long enough to tell "during" from "at the end".
    let server = Server::start_with(&[("TROUBLESHOOT_STEP_MS", "150")]).await;
    let (client, mut progress) = recorder(&server, modern).await;
    let started = Instant::now();
    let handle = client
        .send_cancellable_request(
            call_request(json!({"customer_id": 252})),
            PeerRequestOptions::no_options(),
        )
        .await
        .expect("request sent");
    let response = handle.await_response().await.expect("response");
    let finished = Instant::now();
    let ServerResult::CallToolResult(result) = response else {
        panic!("unexpected response {response:?}")
    };
    assert_ne!(result.is_error, Some(true), "{}", text(&result));

    let mut notes = Vec::new();
    while let Ok(note) = progress.try_recv() {
        notes.push(note);
    }
    assert_eq!(notes.len(), 9, "one notification per step");
    for (i, (_, p)) in notes.iter().enumerate() {
        assert_eq!(p.progress, (i + 1) as f64, "in order");
        assert_eq!(p.total, Some(9.0));
        assert!(
            p.message
                .as_deref()
                .is_some_and(|m| m.starts_with(&format!("Step {}/9", i + 1)))
        );
    }
    let first_at = notes[0].0 - started;
    assert!(
        first_at < (finished - started) / 2,
        "the first step was reported after {first_at:?} of {:?}: notifications were buffered",
        finished - started
    );

    // The diagnosis uses the subscription's real state: 252's line is slow with an incident.
    let diagnosis = result.structured_content.expect("structured diagnosis");
    assert_eq!(diagnosis["service_status"], "slow");
    assert_eq!(diagnosis["checks"].as_array().expect("checks").len(), 9);
    assert_eq!(diagnosis["open_incidents"][0]["status"], "investigating");
    assert!(
        diagnosis["conclusion"]
            .as_str()
            .expect("conclusion")
            .contains("incident")
    );
}

#[tokio::test]
async fn progress_arrives_in_order_while_running_2025_11_25() {
    progress_arrives_in_order_while_running(false).await;
}

#[tokio::test]
async fn progress_arrives_in_order_while_running_2026_07_28() {
    progress_arrives_in_order_while_running(true).await;
}

#[tokio::test]
async fn cancelling_stops_the_diagnosis_promptly() {
    let server = Server::start_with(&[("TROUBLESHOOT_STEP_MS", "300")]).await;
    let (client, mut progress) = recorder(&server, false).await;
    let handle = client
        .send_cancellable_request(
            call_request(json!({"customer_id": 257})),
            PeerRequestOptions::no_options(),
        )
        .await
        .expect("request sent");
    let (_, first) = tokio::time::timeout(Duration::from_secs(10), progress.recv())
        .await
        .expect("first step reported")
        .expect("channel open");
    assert_eq!(first.progress, 1.0);
    handle
        .cancel(Some("user gave up".into()))
        .await
        .expect("cancel sent");
    let cancelled_at = Instant::now();

    // The server notices within a step and logs it; no further step is reported.
    loop {
        if server.logs().contains("trouble_shoot_device cancelled") {
            break;
        }
        assert!(
            cancelled_at.elapsed() < Duration::from_secs(3),
            "server did not stop:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let later: Vec<f64> = std::iter::from_fn(|| progress.try_recv().ok())
        .map(|(_, p)| p.progress)
        .collect();
    assert!(
        later.iter().all(|p| *p <= 2.0),
        "steps continued after cancel: {later:?}"
    );

    // The service is still healthy for the next caller.
    let c = server.client().await;
    ok(&c, "get_customer_detail", json!({"customer_id": 257})).await;
}

#[tokio::test]
async fn diagnosis_without_progress_token_and_with_explicit_subscription() {
    let server = Server::start().await;
    let c = server.client().await;
    // 258 is suspended for non-payment: the diagnosis says so and points at the balance.
    let detail = ok(&c, "get_customer_detail", json!({"customer_id": 258})).await;
    let sub = detail["subscriptions"][0]["subscription_id"].clone();
    let d = ok(
        &c,
        "trouble_shoot_device",
        json!({"customer_id": 258, "subscription_id": sub, "device": "Pixel 8"}),
    )
    .await;
    assert_eq!(d["device"], "Pixel 8");
    assert_eq!(d["subscription_status"], "suspended");
    assert!(
        d["conclusion"]
            .as_str()
            .expect("conclusion")
            .contains("suspended")
    );
    let actions = d["recommended_actions"].to_string();
    assert!(actions.contains("overdue balance"), "{actions}");
    // 257's open dropped-call tickets lead to an escalation.
    let d = ok(&c, "trouble_shoot_device", json!({"customer_id": 257})).await;
    assert!(
        d["recommended_actions"]
            .to_string()
            .contains("network engineering")
    );
    // A subscription of someone else is refused.
    let err = tool_error(
        &c,
        "trouble_shoot_device",
        json!({"customer_id": 257, "subscription_id": sub}),
    )
    .await;
    assert!(err.contains("does not belong to customer 257"), "{err}");
}
