//! Progress of inner tool calls, relayed to whoever made the call.
//!
//! The tools service tags each progress notification with the progress token of the request it
//! belongs to. [`ProgressRoutes`] maps the tokens of the calls in flight on one connection to
//! the channel each caller gave, and [`RelayTransport`] feeds it every progress notification as
//! it comes off the wire.
//!
//! Why at the transport and not in `ClientHandler::on_progress`: rmcp runs each notification
//! handler as a task of its own, so two notifications can be handled out of order, and the last
//! one of a call can be handled after the call's result has been returned (and its route
//! removed). The transport sees messages one at a time in arrival order, so a call's progress is
//! routed, in order, before its result is read.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

use rmcp::{
    RoleClient,
    model::{JsonRpcMessage, ProgressNotificationParam, ProgressToken, ServerNotification},
    service::{RxJsonRpcMessage, TxJsonRpcMessage},
    transport::Transport,
};
use tokio::sync::mpsc;

/// One progress report of an inner tool call.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// The tool that reported it, so one channel can serve several calls.
    pub tool: Arc<str>,
    /// Increases with every report (earlier reports that arrive late are dropped).
    pub progress: f64,
    pub total: Option<f64>,
    pub message: Option<String>,
}

/// Where a caller receives the progress of its calls. Unbounded because a tool sends a handful
/// of reports, and the relay must never block the connection's only reader.
pub type ProgressSender = mpsc::UnboundedSender<Progress>;

/// Reports that arrived before their call registered are kept for this many calls at most
/// (a report can in principle beat the caller back from sending the request).
const EARLY_TOKENS: usize = 16;
/// ... and this many reports each.
const EARLY_REPORTS: usize = 64;

/// The calls in flight on one connection that want their progress, by progress token.
#[derive(Debug, Default)]
pub(crate) struct ProgressRoutes {
    inner: Mutex<Routes>,
}

#[derive(Debug, Default)]
struct Routes {
    routes: HashMap<ProgressToken, Route>,
    early: HashMap<ProgressToken, Vec<ProgressNotificationParam>>,
}

#[derive(Debug)]
struct Route {
    tool: Arc<str>,
    /// `None`: the caller wants no progress (the reports are dropped, not kept as early).
    sender: Option<ProgressSender>,
    /// The last progress value passed on: the relayed sequence only ever increases, as MCP
    /// requires of the caller's own progress notifications.
    last: Option<f64>,
}

impl Route {
    fn deliver(&mut self, param: ProgressNotificationParam) {
        if self.last.is_some_and(|last| param.progress <= last) {
            return;
        }
        self.last = Some(param.progress);
        let Some(sender) = &self.sender else { return };
        // A caller that dropped its receiver no longer wants reports; the call goes on.
        let _ = sender.send(Progress {
            tool: self.tool.clone(),
            progress: param.progress,
            total: param.total,
            message: param.message,
        });
    }
}

impl ProgressRoutes {
    fn lock(&self) -> MutexGuard<'_, Routes> {
        // The lock guards plain maps, consistent after every statement: a panic elsewhere
        // cannot leave them half-updated.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends the reports of `token` to `sender` (or drops them) until the returned guard is
    /// dropped.
    pub(crate) fn register(
        self: &Arc<Self>,
        token: ProgressToken,
        tool: Arc<str>,
        sender: Option<ProgressSender>,
    ) -> RouteGuard {
        let mut routes = self.lock();
        let mut route = Route {
            tool,
            sender,
            last: None,
        };
        for param in routes.early.remove(&token).unwrap_or_default() {
            route.deliver(param);
        }
        routes.routes.insert(token.clone(), route);
        RouteGuard {
            routes: self.clone(),
            token,
        }
    }

    /// Passes a report on to its call, or keeps it briefly if the call is not registered yet.
    pub(crate) fn deliver(&self, param: ProgressNotificationParam) {
        let mut routes = self.lock();
        if let Some(route) = routes.routes.get_mut(&param.progress_token) {
            route.deliver(param);
            return;
        }
        if routes.early.len() >= EARLY_TOKENS && !routes.early.contains_key(&param.progress_token) {
            // Reports for calls that never register (no progress wanted): forget them.
            routes.early.clear();
        }
        let early = routes
            .early
            .entry(param.progress_token.clone())
            .or_default();
        if early.len() < EARLY_REPORTS {
            early.push(param);
        }
    }
}

/// Stops routing a call's progress when the call ends, however it ends.
#[derive(Debug)]
pub(crate) struct RouteGuard {
    routes: Arc<ProgressRoutes>,
    token: ProgressToken,
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        let mut routes = self.routes.lock();
        routes.routes.remove(&self.token);
        routes.early.remove(&self.token);
    }
}

/// A client transport that hands every progress notification to [`ProgressRoutes`] as it is
/// received, then passes it on unchanged (rmcp still sees it, e.g. for progress timeouts).
pub(crate) struct RelayTransport<T> {
    inner: T,
    routes: Arc<ProgressRoutes>,
}

impl<T> RelayTransport<T> {
    pub(crate) fn new(inner: T, routes: Arc<ProgressRoutes>) -> Self {
        RelayTransport { inner, routes }
    }
}

impl<T: Transport<RoleClient>> Transport<RoleClient> for RelayTransport<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleClient>> {
        let message = self.inner.receive().await?;
        if let JsonRpcMessage::Notification(notification) = &message
            && let ServerNotification::ProgressNotification(progress) = &notification.notification
        {
            self.routes.deliver(progress.params.clone());
        }
        Some(message)
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}

#[cfg(test)]
mod tests {
    use rmcp::model::NumberOrString;

    use super::*;

    fn token(n: i64) -> ProgressToken {
        ProgressToken(NumberOrString::Number(n))
    }

    fn report(token_of: i64, progress: f64) -> ProgressNotificationParam {
        ProgressNotificationParam::new(token(token_of), progress)
            .with_total(9.0)
            .with_message(format!("step {progress}"))
    }

    fn received(rx: &mut mpsc::UnboundedReceiver<Progress>) -> Vec<f64> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|p| p.progress)
            .collect()
    }

    #[test]
    fn each_call_gets_its_own_reports_in_increasing_order() {
        let routes = Arc::new(ProgressRoutes::default());
        let (tx_a, mut rx_a) = mpsc::unbounded_channel();
        let (tx_b, mut rx_b) = mpsc::unbounded_channel();
        let _a = routes.register(token(1), "a".into(), Some(tx_a));
        let _b = routes.register(token(2), "b".into(), Some(tx_b));
        let _c = routes.register(token(3), "c".into(), None);
        for (t, p) in [
            (1, 1.0),
            (2, 1.0),
            (3, 1.0),
            (1, 3.0),
            (1, 2.0),
            (2, 2.0),
            (1, 4.0),
        ] {
            routes.deliver(report(t, p));
        }
        assert!(
            routes.lock().early.is_empty(),
            "a call without a sink drops its reports"
        );
        assert_eq!(
            received(&mut rx_a),
            [1.0, 3.0, 4.0],
            "the late 2 is dropped"
        );
        assert_eq!(received(&mut rx_b), [1.0, 2.0]);
    }

    #[test]
    fn reports_before_registration_are_kept_and_routes_end_with_their_guard() {
        let routes = Arc::new(ProgressRoutes::default());
        routes.deliver(report(7, 1.0));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let guard = routes.register(token(7), "t".into(), Some(tx));
        routes.deliver(report(7, 2.0));
        assert_eq!(received(&mut rx), [1.0, 2.0]);
        drop(guard);
        routes.deliver(report(7, 3.0));
        assert!(received(&mut rx).is_empty());
        // What arrives after the end is kept only within the bound.
        for n in 100..100 + EARLY_TOKENS as i64 * 2 {
            routes.deliver(report(n, 1.0));
        }
        assert!(routes.lock().early.len() <= EARLY_TOKENS);
    }
}
