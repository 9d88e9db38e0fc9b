//! The listener loop and the life of one connection, with the connection-level bounds: request
//! head size and header count (hyper answers 431), the header-read timeout (408, then closed),
//! the idle keep-alive timeout, and the cap on open connections.
//!
//! HTTP/1.1 only, as before (axum's `serve` was built without its `http2` feature): the gateway,
//! the MCP SDKs and the Inspector all speak HTTP/1.1 to a plain `http://` endpoint, and an h2c
//! connection would need bounds of its own (no header-read timeout exists for it in hyper).
//!
//! The timeouts are kept here rather than left to hyper's `header_read_timeout`, because that one
//! starts as soon as hyper waits for a head, also between two requests: it would close every idle
//! keep-alive connection after HEADER_READ_TIMEOUT_SECS (sooner than the gateway's pool lets one
//! idle, so the gateway would reuse closed connections), and it closes without a 408. Here a
//! connection's [`Activity`] says what it waits for: a first head (timed from the connection),
//! the next request on a kept-alive connection (idle timeout until its first byte, then the
//! header-read timeout), or nothing while a response is under way.

use std::{
    convert::Infallible,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use axum::{Router, body::Body};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{Notify, OwnedSemaphorePermit, Semaphore, watch},
    time::Instant,
};
use tower::ServiceExt;

use super::limits::Bounds;

/// Descriptors a service needs besides its connections: database and log files, its own
/// outbound connections (issuer, tools service, model), the listener.
const FD_HEADROOM: u64 = 256;
/// The "connection cap reached" warning is repeated at most this often while the cap holds.
const FULL_WARNING_EVERY: Duration = Duration::from_secs(60);
/// How long a timed-out client gets to take its 408 before the socket is dropped.
const LINGER: Duration = Duration::from_secs(1);

/// Accepts connections on `listener` and serves `app` on each, within `bounds`, until `shutdown`
/// completes; then stops accepting and waits for the open connections to finish their requests.
pub(super) async fn serve(
    listener: TcpListener,
    app: Router,
    bounds: Arc<Bounds>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    ensure_descriptors(bounds.max_connections);
    let mut http = http1::Builder::new();
    http.keep_alive(true)
        // Replaced by the connection's own timeouts, see the module docs.
        .header_read_timeout(None)
        .max_headers(bounds.max_headers)
        .max_header_size(bounds.max_header_bytes);
    let http = Arc::new(http);
    // A permit per connection, taken before `accept`: past the cap, connections wait in the
    // kernel's listen backlog (and are refused once it is full) instead of being served.
    let permits = Arc::new(Semaphore::new(bounds.max_connections));
    // `stop` tells connections to finish; `done` is held by each, so its sender's `closed()`
    // completes when the last one is gone.
    let (stop_tx, stop_rx) = watch::channel(());
    let (done_tx, done_rx) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    let mut warned_full_at: Option<Instant> = None;
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if warned_full_at.is_none_or(|at| at.elapsed() >= FULL_WARNING_EVERY) {
                    tracing::warn!(
                        max_connections = bounds.max_connections,
                        "connection cap reached (MAX_CONNECTIONS): new connections wait until one \
                         closes"
                    );
                    warned_full_at = Some(Instant::now());
                }
                tokio::select! {
                    permit = permits.clone().acquire_owned() => {
                        permit.expect("the connection semaphore is never closed")
                    }
                    () = &mut shutdown => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Responses are written whole; Nagle's delay would only add latency.
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            Accepted {
                stream,
                peer,
                _permit: permit,
                _done: done_rx.clone(),
            },
            app.clone(),
            http.clone(),
            bounds.clone(),
            stop_rx.clone(),
        ));
    }
    // New connections are refused from here on; open ones finish what they are doing.
    drop(listener);
    let _ = stop_tx.send(());
    drop(done_rx);
    done_tx.closed().await;
    Ok(())
}

/// Errors of `accept` that concern one connection are skipped; others (out of descriptors) are
/// logged and retried after a pause, so the loop does not spin.
async fn accept_failed(error: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "cannot accept a connection; retrying in a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Raises the open-file soft limit to the hard limit if MAX_CONNECTIONS would not fit under it,
/// or warns that it cannot.
fn ensure_descriptors(max_connections: usize) {
    let wanted = max_connections as u64 + FD_HEADROOM;
    match rlimit::increase_nofile_limit(wanted) {
        Ok(limit) if limit >= wanted => {}
        Ok(limit) => tracing::warn!(
            open_files = limit,
            wanted,
            "the open-file limit is below MAX_CONNECTIONS plus headroom; lower MAX_CONNECTIONS \
             or raise the limit (ulimit -n)"
        ),
        Err(error) => tracing::warn!(%error, wanted, "cannot read or raise the open-file limit"),
    }
}

/// An accepted connection and what it holds while it lives.
struct Accepted {
    stream: TcpStream,
    peer: SocketAddr,
    /// Its place under MAX_CONNECTIONS, given back when the connection ends.
    _permit: OwnedSemaphorePermit,
    /// Keeps the server's shutdown waiting until the connection ends.
    _done: watch::Receiver<()>,
}

/// Serves one connection until it ends, a timeout closes it, or the server stops.
async fn connection(
    accepted: Accepted,
    app: Router,
    http: Arc<http1::Builder>,
    bounds: Arc<Bounds>,
    mut stop: watch::Receiver<()>,
) {
    let Accepted {
        stream,
        peer,
        _permit,
        _done,
    } = accepted;
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        stream,
        activity: activity.clone(),
    });
    let service = hyper::service::service_fn({
        let activity = activity.clone();
        move |request: hyper::Request<Incoming>| {
            let exchange = Exchange::start(activity.clone());
            let response = app.clone().oneshot(request.map(Body::new));
            async move {
                let response = response.await?;
                // The exchange lasts until the response body is sent (or dropped): an event
                // stream keeps its connection busy, never idle.
                Ok::<_, Infallible>(response.map(|inner| {
                    Body::new(Tracked {
                        inner,
                        _exchange: exchange,
                    })
                }))
            }
        }
    });
    let mut conn = http.serve_connection(io, service);
    // Whether the connection was told to close after its current request.
    let mut closing = false;
    loop {
        let deadline = activity.deadline(&bounds, closing);
        let sleep = async {
            match deadline {
                Some((at, _)) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = &mut conn => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return;
            }
            () = sleep => match deadline.map(|(_, expiry)| expiry) {
                Some(Expiry::Idle) => {
                    Pin::new(&mut conn).graceful_shutdown();
                    closing = true;
                }
                Some(Expiry::Head) => {
                    // hyper holds the socket but is only waiting to read: take it back and
                    // answer the 408 on it.
                    let stream = conn.into_parts().io.into_inner().stream;
                    tracing::debug!(%peer, "request head not received in time (HEADER_READ_TIMEOUT_SECS)");
                    answer_timeout(stream).await;
                    return;
                }
                None => {}
            },
            () = activity.changed.notified() => {}
            _ = stop.changed(), if !closing => {
                Pin::new(&mut conn).graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// Writes a 408 on a connection whose head did not arrive in time, then closes it, reading what
/// the client still sends for a moment so the close does not reset the connection before the
/// client has read the answer.
async fn answer_timeout(mut stream: TcpStream) {
    let body = r#"{"error":"the request head did not arrive in time"}"#;
    let response = format!(
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(LINGER, async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        io::Result::Ok(())
    })
    .await;
}

/// What a connection waits for, which its timeouts follow.
struct Activity {
    phase: Mutex<Phase>,
    /// Woken when the phase changes, so the connection's deadline is computed again.
    changed: Notify,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a request head: since when, whether the connection served a request before
    /// (kept alive), and when the first byte of the head arrived.
    Waiting {
        since: Instant,
        kept_alive: bool,
        first_byte: Option<Instant>,
    },
    /// This many responses are under way.
    Busy(usize),
}

/// Which timeout a deadline belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// IDLE_TIMEOUT_SECS: close quietly, as keep-alive connections are closed.
    Idle,
    /// HEADER_READ_TIMEOUT_SECS: answer 408 and close.
    Head,
}

impl Activity {
    fn new() -> Self {
        Self {
            phase: Mutex::new(Phase::Waiting {
                since: Instant::now(),
                kept_alive: false,
                first_byte: None,
            }),
            changed: Notify::new(),
        }
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        // The lock is only held for plain assignments, which cannot panic.
        self.phase
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// When the connection is to be closed, and why; none while a response is under way.
    /// Once `closing`, an idle connection is already being closed.
    fn deadline(&self, bounds: &Bounds, closing: bool) -> Option<(Instant, Expiry)> {
        match *self.phase() {
            Phase::Busy(_) => None,
            Phase::Waiting {
                since,
                kept_alive: false,
                ..
            } => Some((since + bounds.header_read_timeout, Expiry::Head)),
            Phase::Waiting {
                first_byte: Some(first),
                ..
            } => Some((first + bounds.header_read_timeout, Expiry::Head)),
            Phase::Waiting { since, .. } if !closing => {
                Some((since + bounds.idle_timeout, Expiry::Idle))
            }
            Phase::Waiting { .. } => None,
        }
    }

    /// Bytes arrived: on a kept-alive connection waiting for its next request, the header-read
    /// timeout starts.
    fn bytes_arrived(&self) {
        let mut phase = self.phase();
        if let Phase::Waiting {
            kept_alive: true,
            first_byte: first @ None,
            ..
        } = &mut *phase
        {
            *first = Some(Instant::now());
            drop(phase);
            self.changed.notify_one();
        }
    }
}

/// One request, from its complete head until its response is sent; it keeps the connection
/// busy while it lives.
struct Exchange(Arc<Activity>);

impl Exchange {
    fn start(activity: Arc<Activity>) -> Self {
        {
            let mut phase = activity.phase();
            *phase = match *phase {
                Phase::Busy(n) => Phase::Busy(n + 1),
                Phase::Waiting { .. } => Phase::Busy(1),
            };
        }
        activity.changed.notify_one();
        Self(activity)
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        {
            let mut phase = self.0.phase();
            *phase = match *phase {
                Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
                _ => Phase::Waiting {
                    since: Instant::now(),
                    kept_alive: true,
                    first_byte: None,
                },
            };
        }
        self.0.changed.notify_one();
    }
}

/// A response body that ends its [`Exchange`] when it is sent or dropped.
struct Tracked {
    inner: Body,
    /// Held, never read: the exchange lives exactly as long as the body.
    _exchange: Exchange,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The connection's socket, telling its [`Activity`] when bytes arrive.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let result = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.bytes_arrived();
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
