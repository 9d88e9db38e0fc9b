//! The gateway's metrics: the request duration every service records
//! (`http.server.request.duration`, the route's name as `http.route`) and its own refusals
//! (`gateway.refusals`: 401 by verification reason, 403, 413, 429, timeouts, a full edge, a quota
//! store failing closed), by
//! route and tenant. No label carries a token or a path a caller chose.

use std::{sync::LazyLock, time::Duration};

use opentelemetry::{KeyValue, metrics::Counter};

fn refusals() -> &'static Counter<u64> {
    static REFUSALS: LazyLock<Counter<u64>> = LazyLock::new(|| {
        shared::telemetry::metrics::counter(
            "gateway.refusals",
            "Requests the gateway answered itself instead of forwarding, by reason",
        )
    });
    &REFUSALS
}

/// Records one request the proxy handled: `route` is the route's name (`-` when none matched),
/// `refused` why the gateway answered it itself.
pub(crate) fn request_served(
    method: &str,
    route: &str,
    status: u16,
    tenant: Option<&str>,
    refused: Option<&'static str>,
    elapsed: Duration,
) {
    let mut labels = vec![
        KeyValue::new("http.request.method", method.to_owned()),
        KeyValue::new("http.route", route.to_owned()),
        KeyValue::new("http.response.status_code", i64::from(status)),
    ];
    if let Some(tenant) = tenant {
        labels.push(KeyValue::new("tenant.id", tenant.to_owned()));
    }
    shared::telemetry::metrics::serving()
        .request_duration
        .record(elapsed.as_secs_f64(), &labels);
    if let Some(reason) = refused {
        labels.retain(|label| label.key.as_str() != "http.request.method");
        labels.push(KeyValue::new("reason", reason));
        refusals().add(1, &labels);
    }
}

/// Records a connection the edge refused before any request was routed (431, 408, 503).
pub(crate) fn connection_refused(reason: &'static str, status: u16) {
    refusals().add(
        1,
        &[
            KeyValue::new("reason", reason),
            KeyValue::new("http.response.status_code", i64::from(status)),
        ],
    );
}
