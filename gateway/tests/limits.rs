//! Per-tenant rate limits on live traffic: a tenant over its quota gets 429 with `Retry-After`
//! and nothing reaches the backend, while other tenants and other routes go on; and a tenant
//! flooding the gateway does not starve another tenant on the same route.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::*;
use devstack::idp::defaults;

/// A token of `tenant` good on both routes (issued for both resources).
fn both_routes(gateway: &Gateway, idp: &devstack::idp::RunningIdp, tenant: &str) -> String {
    mint_for(
        idp,
        tenant,
        serde_json::json!([gateway.resource("/limited"), gateway.resource("/open")]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_limit_gets_429_with_retry_after_and_reaches_nothing() {
    let idp = idp().await;
    let (upstream, hits) = echo_upstream().await;
    let gateway = Gateway::start_with(&idp, &limited_and_open_routes(&upstream, 5)).await;
    let http = reqwest::Client::new();
    let (contoso, fabrikam) = (
        both_routes(&gateway, &idp, defaults::CONTOSO),
        both_routes(&gateway, &idp, defaults::FABRIKAM),
    );

    for i in 0..5 {
        let response = get_as(&http, gateway.url("/limited/mcp"), &contoso).await;
        assert_eq!(response.status(), 200, "call {i} is within the limit");
    }
    let response = get_as(&http, gateway.url("/limited/mcp"), &contoso).await;
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("whole seconds");
    // 5 a minute refill one call every 12 s.
    assert!((1..=12).contains(&retry_after), "Retry-After {retry_after}");
    refusal(response, 429, "rate_limited").await;
    assert_eq!(
        hits.load(Ordering::SeqCst),
        5,
        "the refused call was not forwarded"
    );

    // Another tenant on the same route, and the same tenant on a route without a limit.
    for (path, token) in [("/limited/mcp", &fabrikam), ("/open/mcp", &contoso)] {
        let response = get_as(&http, gateway.url(path), token).await;
        assert_eq!(response.status(), 200, "{path}");
    }
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_tenant_does_not_starve_another() {
    let idp = idp().await;
    let (upstream, _hits) = echo_upstream().await;
    let limit = 300;
    let gateway =
        Arc::new(Gateway::start_with(&idp, &limited_and_open_routes(&upstream, limit)).await);
    let (contoso, fabrikam) = (
        both_routes(&gateway, &idp, defaults::CONTOSO),
        both_routes(&gateway, &idp, defaults::FABRIKAM),
    );

    // Contoso: 32 connections sending as fast as they can for 3 s.
    let flood_for = Duration::from_secs(3);
    let (admitted, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let flooders: Vec<_> = (0..32)
        .map(|_| {
            let (gateway, contoso) = (gateway.clone(), contoso.clone());
            let (admitted, refused) = (admitted.clone(), refused.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let started = Instant::now();
                while started.elapsed() < flood_for {
                    let response = get_as(&http, gateway.url("/limited/mcp"), &contoso).await;
                    match response.status().as_u16() {
                        200 => admitted.fetch_add(1, Ordering::Relaxed),
                        429 => refused.fetch_add(1, Ordering::Relaxed),
                        other => panic!("flood got {other}"),
                    };
                }
            })
        })
        .collect();

    // Fabrikam meanwhile: a call every 100 ms, each answered by the backend, promptly.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let http = reqwest::Client::new();
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let sent = Instant::now();
        let response = get_as(&http, gateway.url("/limited/mcp"), &fabrikam).await;
        assert_eq!(response.status(), 200, "fabrikam call {i} during the flood");
        slowest = slowest.max(sent.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for flooder in flooders {
        flooder.await.expect("flooder");
    }
    let (admitted, refused) = (
        admitted.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    );
    assert!(
        refused > 0,
        "the flood was never limited ({admitted} admitted)"
    );
    // The whole quota at once, then 5 a second for the rest of the flood (plus a little slack
    // for the flood's last calls).
    assert!(
        admitted <= limit as usize + 25,
        "{admitted} admitted, {refused} refused"
    );
    assert!(
        slowest < Duration::from_secs(1),
        "fabrikam's slowest call took {slowest:?} during the flood"
    );
    if let Ok(gateway) = Arc::try_unwrap(gateway) {
        gateway.stop().await;
    }
}
