//! Serving an axum router: [`serve_with`] runs it on a listener within the bounds of
//! [`limits`] (connection handling in `conn`), with graceful shutdown; plus the middleware every
//! service puts in front of its routes, the one JSON error shape, and the health endpoints;
//! [`probe`] is the raw client tests prove the bounds with.

mod conn;
pub mod limits;
mod observe;
pub mod probe;

pub use observe::ServedTenant;
pub(crate) use observe::hold;

use std::{future::Future, io, sync::Arc};

use axum::{
    Json, Router,
    http::{HeaderName, Response, StatusCode},
    response::IntoResponse,
};
use tokio::net::TcpListener;
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
};

/// Header carrying the id that ties a request's log lines together (kept if the caller sent one).
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request id [`with_middleware`] put on a request, for what a handler records about it
/// (an audit event).
pub fn request_id(parts: &axum::http::request::Parts) -> Option<&str> {
    parts.headers.get(&REQUEST_ID).and_then(|v| v.to_str().ok())
}

pub use limits::{Bounds, ServeLimits};

/// [`serve_with`] the default [`Bounds`]: for servers without settings of their own (the
/// devstack identity provider).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_with(listener, router, Bounds::default(), shutdown).await
}

/// Serves `router` on `listener` within `bounds` until `shutdown` completes, then stops
/// accepting and lets in-flight requests finish. The connection bounds apply to any router; the
/// request-level ones (body, JSON depth, request timeout) to the routes [`with_middleware`]
/// wrapped, as every service's are.
///
/// Logs exactly one `listening on http://ADDR` line with the bound address, which is how
/// scripts and tests learn the port when they bind `127.0.0.1:0`.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    bounds: Bounds,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!("listening on http://{addr}");
    serve_unannounced(listener, router, bounds, shutdown).await
}

/// [`serve_with`] without the `listening on` line: for a second listener of a service (its
/// metrics), which must not be taken for the service's own address.
pub(crate) async fn serve_unannounced(
    listener: TcpListener,
    router: Router,
    bounds: Bounds,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let bounds = Arc::new(bounds);
    // The request-level bounds run inside `with_middleware` (so the access log and the request
    // id cover their refusals); they find the bounds on the request.
    let app = router.layer(axum::Extension(bounds.clone()));
    conn::serve(listener, app, bounds, shutdown).await
}

/// Completes on Ctrl-C or SIGTERM (what `docker stop` and Container Apps send).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received, finishing in-flight requests");
}

/// Wraps a service's routes in the middleware every service uses, outermost first:
/// request id (kept from the caller or generated, echoed in the response), the request's span
/// (continuing the caller's trace), access-log line and duration metric (`observe`), the
/// request-level bounds of [`serve_with`] (time to a response head, body size, JSON depth), and
/// panic capture (a panicking handler answers 500 with a JSON body instead of dropping the
/// connection).
///
/// The access log records the path but never the query string or headers, so tokens and
/// customer data in them stay out of logs.
pub fn with_middleware(router: Router) -> Router {
    router
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn(limits::guard_body))
        .layer(axum::middleware::from_fn(limits::request_timeout))
        .layer(axum::middleware::from_fn(observe::observe))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response<axum::body::Body> {
    tracing::error!("request handler panicked");
    error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
}

/// A JSON error body in the one shape every service uses: `{"error": "..."}`.
pub fn error_response(status: StatusCode, message: &str) -> impl IntoResponse + use<> {
    (
        status,
        Json(ErrorBody {
            error: message.to_owned(),
        }),
    )
}

#[derive(serde::Serialize)]
struct ErrorBody {
    error: String,
}

/// `GET /healthz`: the process is alive and serving HTTP. Readiness is service specific.
pub async fn healthz() -> impl IntoResponse {
    Json(Status { status: "ok" })
}

/// `GET /readyz`'s answer: `body` with 200 when `ready`, else 503, so orchestrators route
/// traffic only to ready replicas while people can read why one is not.
pub fn readiness<T: serde::Serialize>(ready: bool, body: T) -> impl IntoResponse {
    let status = if ready {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

#[derive(serde::Serialize)]
struct Status {
    status: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;

    async fn spawn(router: Router) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("bound address");
        tokio::spawn(serve(
            listener,
            with_middleware(router),
            std::future::pending(),
        ));
        addr
    }

    #[tokio::test]
    async fn request_id_is_generated_or_kept() {
        let addr = spawn(Router::new().route("/healthz", get(healthz))).await;
        let client = reqwest::Client::new();
        let url = format!("http://{addr}/healthz");

        let generated = client.get(&url).send().await.expect("request");
        assert_eq!(generated.status(), 200);
        let id = generated
            .headers()
            .get("x-request-id")
            .expect("generated id");
        assert_eq!(id.len(), 36, "a UUID");

        let kept = client
            .get(&url)
            .header("x-request-id", "abc-123")
            .send()
            .await
            .expect("request");
        assert_eq!(kept.headers()["x-request-id"], "abc-123");
        assert_eq!(kept.text().await.expect("body"), r#"{"status":"ok"}"#);
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_json_and_the_server_survives() {
        async fn boom() -> &'static str {
            panic!("handler bug")
        }
        let addr = spawn(
            Router::new()
                .route("/boom", get(boom))
                .route("/healthz", get(healthz)),
        )
        .await;
        let client = reqwest::Client::new();
        let response = client
            .get(format!("http://{addr}/boom"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 500);
        assert_eq!(
            response.text().await.expect("body"),
            r#"{"error":"internal error"}"#
        );
        let after = client
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .expect("request");
        assert_eq!(after.status(), 200);
    }
}
