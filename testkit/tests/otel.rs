//! The collector harness against the real rotel: a span sent over OTLP/HTTP (JSON, so no
//! OpenTelemetry crate is needed here) comes back from its output whole.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use testkit::otel::{self, Collector, SpanKind, StatusCode};

/// A trace id no other run shares: 32 hex digits from the clock and the process.
fn trace_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is past 1970")
        .as_nanos();
    format!("{:032x}", nanos ^ (u128::from(std::process::id()) << 64))
}

#[tokio::test]
async fn a_span_sent_over_otlp_http_json_is_read_back_from_its_output() {
    if !otel::installed() {
        return;
    }
    let collector = Collector::start().await;
    assert!(collector.grpc_endpoint().starts_with("http://127.0.0.1:"));
    let trace = trace_id();
    let start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is past 1970")
        .as_nanos();
    let end = start + 2_000_000;
    let body = format!(
        r#"{{"resourceSpans":[{{
            "resource":{{"attributes":[
                {{"key":"service.name","value":{{"stringValue":"testkit-probe"}}}},
                {{"key":"service.version","value":{{"stringValue":"0.0.0"}}}}]}},
            "scopeSpans":[{{"scope":{{"name":"testkit"}},"spans":[{{
                "traceId":"{trace}","spanId":"00f067aa0ba902b7","parentSpanId":"53995c3f42cd8ad8",
                "name":"probe.request","kind":3,
                "startTimeUnixNano":"{start}","endTimeUnixNano":"{end}",
                "attributes":[
                    {{"key":"tenant.id","value":{{"stringValue":"t-probe"}}}},
                    {{"key":"attempt","value":{{"intValue":"2"}}}}],
                "status":{{"code":2,"message":"upstream refused"}}}}]}}]}}]}}"#
    );
    let answer = reqwest::Client::new()
        .post(format!("{}/v1/traces", collector.http_endpoint()))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("POST /v1/traces");
    assert_eq!(answer.status(), 200, "{:?}", answer.text().await);

    let spans = collector
        .wait_for_spans(
            |spans| spans.iter().any(|span| span.trace_id == trace),
            Duration::from_secs(10),
        )
        .await;
    let span = spans
        .iter()
        .find(|span| span.trace_id == trace)
        .expect("the span");
    assert_eq!(span.service_name, "testkit-probe");
    assert_eq!(span.resource["service.version"], "0.0.0");
    assert_eq!(span.scope, "testkit");
    assert_eq!(span.name, "probe.request");
    assert_eq!(span.span_id, "00f067aa0ba902b7");
    assert_eq!(span.parent_id.as_deref(), Some("53995c3f42cd8ad8"));
    assert_eq!(span.kind, SpanKind::Client);
    assert_eq!(span.status, Some(StatusCode::Error));
    assert_eq!(span.status_message, "upstream refused");
    assert_eq!(span.duration(), Some(Duration::from_millis(2)));
    assert_eq!(span.attribute("tenant.id"), Some("t-probe"));
    assert_eq!(span.attribute("attempt"), Some("2"));
    assert_eq!(span.attribute_types["attempt"], "Int");

    let printed = collector.stop().await;
    assert!(printed.contains(&trace), "{printed}");
    assert!(printed.contains("t-probe"), "{printed}");
}

#[tokio::test]
async fn two_collectors_run_side_by_side() {
    if !otel::installed() {
        return;
    }
    let (one, two) = tokio::join!(Collector::start(), Collector::start());
    assert_ne!(one.http_endpoint(), two.http_endpoint());
    assert_ne!(one.grpc_endpoint(), two.grpc_endpoint());
    // Both listen: an empty export is answered by each.
    for collector in [&one, &two] {
        let answer = reqwest::Client::new()
            .post(format!("{}/v1/traces", collector.http_endpoint()))
            .header("content-type", "application/json")
            .body(r#"{"resourceSpans":[]}"#)
            .send()
            .await
            .expect("POST /v1/traces");
        assert_eq!(answer.status(), 200);
        assert!(collector.spans().is_empty());
    }
}
