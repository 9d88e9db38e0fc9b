//! One client connection, from accept to close: the `[server]` bounds that hold before a request
//! is routed, and the keep-alive loop that hands each request to the pingora proxy.
//!
//! Pingora 0.9 bounds none of this itself: its HTTP/1 server times each *read* of a head (60 s,
//! so a client trickling a byte a minute is never cut), waits for a kept-alive connection's next
//! request with no timeout at all (`KeepaliveStatus::Infinite`), answers more than 256 header
//! fields with a bare 400 and has no connection cap (`ServerConf`, `HttpServerOptions` and the
//! listener options have none). So the gateway drives the keep-alive loop itself, with
//! [`HttpServerApp::process_new_http`] per request, as pingora's own `ServerApp` does, and reads
//! every request head itself before pingora sees it:
//!
//! - the head must be complete within `header_read_timeout` of the connection's opening (first
//!   request) or of its first byte (later ones), however the bytes trickle in; then 408 and close,
//!   or a plain close when the client sent nothing;
//! - a kept-alive connection with no new request within `idle_timeout` is closed;
//! - a head over `max_header_bytes` or with more than `max_headers` fields gets 431 and close;
//! - a connection past `max_connections` gets 503 with `Retry-After` and close: the cap is a
//!   semaphore taken at accept and held for the connection's life.
//!
//! A head that passes goes to pingora as the session's prefix bytes (the same path pingora uses
//! for pipelined requests), so pingora parses it without reading again: its own read timeouts never
//! see a head. These answers carry the gateway's JSON body and a fresh request id like every
//! other refusal, and an access-log line.

use std::{
    net::SocketAddr,
    os::fd::AsRawFd,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::BytesMut;
use pingora::{
    apps::{HttpPersistentSettings, HttpServerApp},
    protocols::{GetSocketDigest, SocketDigest, Stream, http::ServerSession},
    proxy::HttpProxy,
    server::ShutdownWatch,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::{OwnedSemaphorePermit, Semaphore},
    time::timeout_at,
};

use crate::{
    config::ServerConfig,
    policy::{REQUEST_ID_HEADER, Refusal},
    proxy::{Gateway, RequestIds, refusal_body},
};

/// Connections past the cap that may be being answered 503 at once; past this they are closed
/// without an answer, so a flood of them costs a descriptor for an instant, not a task each.
const MAX_REFUSING: usize = 256;
/// How long a connection past the cap may take to send its head before the 503 (or a close).
const REFUSAL_READ_TIMEOUT: Duration = Duration::from_secs(1);
/// After a refusal, how long the rest of what the client is sending is read and dropped before
/// the socket closes: closing with unread data makes the kernel send a reset, which can destroy
/// the answer before the client reads it.
const LINGER: Duration = Duration::from_millis(500);
/// At most this much is read and dropped while lingering.
const LINGER_BYTES: usize = 256 * 1024;
/// Read size while a head arrives.
const READ_CHUNK: usize = 4096;

/// What accepts connections for the proxy: the bounds, the cap, and the request ids refusals
/// carry.
pub(crate) struct Edge {
    proxy: Arc<HttpProxy<Gateway>>,
    ids: Arc<RequestIds>,
    bounds: ServerConfig,
    /// One permit per open connection, `max_connections` in all.
    permits: Arc<Semaphore>,
    /// One permit per connection being refused for lack of the former.
    refusing: Arc<Semaphore>,
}

impl Edge {
    pub(crate) fn new(
        proxy: Arc<HttpProxy<Gateway>>,
        ids: Arc<RequestIds>,
        bounds: ServerConfig,
    ) -> Edge {
        Edge {
            proxy,
            ids,
            permits: Arc::new(Semaphore::new(bounds.max_connections)),
            refusing: Arc::new(Semaphore::new(MAX_REFUSING)),
            bounds,
        }
    }

    /// What to run for a connection just accepted: serve it if it is within the cap, else refuse
    /// it; `None` when it was closed outright (past the cap while [`MAX_REFUSING`] are being
    /// refused already).
    pub(crate) fn admit(
        self: &Arc<Self>,
        tcp: TcpStream,
        stopped: &ShutdownWatch,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        let accepted = Instant::now();
        let client = tcp.peer_addr().ok();
        let _ = tcp.set_nodelay(true);
        let mut stream: pingora::protocols::l4::stream::Stream = tcp.into();
        // Gives `Session::client_addr` its value (X-Forwarded-For).
        stream.set_socket_digest(SocketDigest::from_raw_fd(stream.as_raw_fd()));
        let stream: Stream = Box::new(stream);
        let (edge, stopped) = (self.clone(), stopped.clone());
        let admitted = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => Ok(permit),
            Err(_) => match self.refusing.clone().try_acquire_owned() {
                Ok(slot) => Err(slot),
                Err(_) => {
                    tracing::warn!(
                        target: "gateway::access",
                        client = ?client,
                        "connection closed unanswered: at max_connections and refusing as many as it can"
                    );
                    return None;
                }
            },
        };
        Some(async move {
            match admitted {
                Ok(permit) => edge.serve(stream, accepted, client, stopped, permit).await,
                Err(slot) => edge.refuse_over_cap(stream, accepted, client, slot).await,
            }
        })
    }

    /// The keep-alive loop: read a head within the bounds, let pingora handle the request, and
    /// again while the connection may be reused.
    async fn serve(
        &self,
        mut stream: Stream,
        accepted: Instant,
        client: Option<SocketAddr>,
        mut stopped: ShutdownWatch,
        _permit: OwnedSemaphorePermit,
    ) {
        let mut wait = Wait::First { accepted };
        let mut settings: Option<HttpPersistentSettings> = None;
        loop {
            let prefix = match read_head(&mut stream, &self.bounds, wait, Some(&mut stopped)).await
            {
                Head::Complete(prefix) => prefix,
                Head::Gone => return,
                Head::Refused(refusal) => {
                    self.answer(stream, refusal, client).await;
                    return;
                }
            };
            let mut session = ServerSession::new_http1(stream);
            if let Some(settings) = settings.take() {
                settings.apply_to_session(&mut session);
            }
            session.set_pipelined_prefix(prefix);
            let Some(reused) = self.proxy.process_new_http(session, &stopped).await else {
                return;
            };
            if *stopped.borrow() {
                return;
            }
            (stream, settings) = reused.consume();
            wait = Wait::Next;
        }
    }

    /// A connection past the cap: its head (briefly), then 503, so the client learns why.
    async fn refuse_over_cap(
        &self,
        mut stream: Stream,
        accepted: Instant,
        client: Option<SocketAddr>,
        _slot: OwnedSemaphorePermit,
    ) {
        let bounds = ServerConfig {
            header_read_timeout: self.bounds.header_read_timeout.min(REFUSAL_READ_TIMEOUT),
            ..self.bounds.clone()
        };
        match read_head(&mut stream, &bounds, Wait::First { accepted }, None).await {
            Head::Gone => {}
            Head::Complete(_) | Head::Refused(_) => {
                self.answer(stream, Refusal::TooManyConnections, client)
                    .await;
            }
        }
    }

    /// Writes `refusal` as the gateway's JSON answer, with `Connection: close`, then closes.
    async fn answer(&self, mut stream: Stream, refusal: Refusal, client: Option<SocketAddr>) {
        let request_id = self.ids.next();
        crate::metrics::connection_refused(refusal.code(), refusal.status());
        tracing::info!(
            target: "gateway::access",
            status = refusal.status(),
            request_id = %request_id,
            client = ?client,
            error = refusal.code(),
            "connection refused before routing"
        );
        let response = response_bytes(refusal, &request_id);
        let written = async {
            stream.write_all(&response).await?;
            stream.flush().await?;
            stream.shutdown().await
        };
        if written.await.is_err() {
            return;
        }
        let until = tokio::time::Instant::now() + LINGER;
        let mut discard = vec![0u8; READ_CHUNK];
        let mut dropped = 0;
        while dropped < LINGER_BYTES {
            match timeout_at(until, stream.read(&mut discard)).await {
                Ok(Ok(n)) if n > 0 => dropped += n,
                _ => break,
            }
        }
    }
}

/// The whole HTTP/1.1 answer for a refusal made before pingora has a session.
fn response_bytes(refusal: Refusal, request_id: &str) -> Vec<u8> {
    let body = refusal_body(refusal, request_id);
    let retry_after = match refusal {
        Refusal::TooManyConnections => "retry-after: 1\r\n",
        _ => "",
    };
    let mut response = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\
         {REQUEST_ID_HEADER}: {request_id}\r\n{retry_after}connection: close\r\n\r\n",
        status = refusal.status(),
        reason = refusal.reason(),
        len = body.len(),
    )
    .into_bytes();
    response.extend_from_slice(&body);
    response
}

/// Which request of the connection a head is read for; it decides the deadlines.
#[derive(Debug, Clone, Copy)]
enum Wait {
    /// The first: the whole head within the header timeout of the connection's opening.
    First { accepted: Instant },
    /// A later one: its first byte within the idle timeout, then the rest within the header
    /// timeout of that byte.
    Next,
}

/// The outcome of reading one request head.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// A complete head, and whatever the client sent after it (the start of its body).
    Complete(BytesMut),
    /// The client closed, failed, sent nothing in time, or the gateway is shutting down
    /// between two requests: nothing to answer.
    Gone,
    /// A head over a bound: answer this and close.
    Refused(Refusal),
}

/// Reads the next request head from `stream` within `bounds`. While no byte of it has come,
/// a shutdown (`stopped`, when given) ends the wait too.
async fn read_head(
    stream: &mut Stream,
    bounds: &ServerConfig,
    wait: Wait,
    mut stopped: Option<&mut ShutdownWatch>,
) -> Head {
    let now = tokio::time::Instant::now();
    let first_byte_by = match wait {
        Wait::First { accepted } => {
            tokio::time::Instant::from_std(accepted + bounds.header_read_timeout)
        }
        Wait::Next => now + bounds.idle_timeout,
    };
    let mut head_by = first_byte_by;
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut scan = Scan::default();
    loop {
        buf.reserve(READ_CHUNK);
        let started = scan.started();
        let deadline = if started { head_by } else { first_byte_by };
        let read = timeout_at(deadline, stream.read_buf(&mut buf));
        let read = match stopped.as_deref_mut() {
            Some(stopped) if !started => tokio::select! {
                read = read => read,
                () = shutting_down(stopped) => return Head::Gone,
            },
            _ => read.await,
        };
        match read {
            Err(_elapsed) if started => return Head::Refused(Refusal::RequestTimeout),
            Err(_elapsed) => return Head::Gone,
            Ok(Err(_)) | Ok(Ok(0)) => return Head::Gone,
            Ok(Ok(_)) => {}
        }
        if !started && matches!(wait, Wait::Next) {
            head_by = tokio::time::Instant::now() + bounds.header_read_timeout;
        }
        match scan.advance(&buf) {
            Some(end) if end > bounds.max_header_bytes => {
                return Head::Refused(Refusal::HeadersTooLarge);
            }
            Some(end) => match check_head(&buf[..end], bounds.max_headers) {
                Checked::Complete => return Head::Complete(buf),
                Checked::TooManyHeaders => return Head::Refused(Refusal::HeadersTooLarge),
                // The parser wants more than our scan thought: go on reading, still bounded.
                Checked::Partial => scan.resume_after(end),
            },
            None if buf.len() > bounds.max_header_bytes => {
                return Head::Refused(Refusal::HeadersTooLarge);
            }
            // Field lines counted so far, minus the request line: refuse before the rest comes.
            None if scan.lines > bounds.max_headers + 1 => {
                return Head::Refused(Refusal::HeadersTooLarge);
            }
            None => {}
        }
    }
}

async fn shutting_down(stopped: &mut ShutdownWatch) {
    // The guard `wait_for` returns is not `Send`: drop it here, not across an await.
    let _ = stopped.wait_for(|s| *s).await.map(|_| ());
}

enum Checked {
    Complete,
    TooManyHeaders,
    Partial,
}

/// The head as pingora will parse it (httparse): too many fields, complete (malformed heads
/// included: pingora answers those 400 itself), or not complete after all.
fn check_head(head: &[u8], max_headers: usize) -> Checked {
    let mut headers = vec![httparse::EMPTY_HEADER; max_headers];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Err(httparse::Error::TooManyHeaders) => Checked::TooManyHeaders,
        Ok(httparse::Status::Partial) => Checked::Partial,
        Ok(httparse::Status::Complete(_)) | Err(_) => Checked::Complete,
    }
}

/// Where a head ends, found in one pass over the bytes as they arrive (a trickled head is not
/// rescanned from its start on every read): after the first empty line that follows a
/// non-empty one. Empty lines before the request line are skipped, as RFC 9112 (2.2) allows.
#[derive(Debug, Default)]
struct Scan {
    /// Index of the request line's first byte, once a byte other than CR or LF has come.
    start: Option<usize>,
    /// Next byte to look at.
    pos: usize,
    /// Line ends seen so far after `start` (request line and field lines).
    lines: usize,
}

impl Scan {
    fn started(&self) -> bool {
        self.start.is_some()
    }

    /// Looks at the bytes that came since the last call; the end of the head, once seen.
    fn advance(&mut self, buf: &[u8]) -> Option<usize> {
        if self.start.is_none() {
            let skipped = buf[self.pos..]
                .iter()
                .position(|b| !matches!(b, b'\r' | b'\n'));
            match skipped {
                Some(offset) => {
                    self.pos += offset;
                    self.start = Some(self.pos);
                }
                None => {
                    self.pos = buf.len();
                    return None;
                }
            }
        }
        while self.pos < buf.len() {
            if buf[self.pos] == b'\n' {
                match (buf.get(self.pos + 1), buf.get(self.pos + 2)) {
                    (Some(b'\n'), _) => return Some(self.pos + 2),
                    (Some(b'\r'), Some(b'\n')) => return Some(self.pos + 3),
                    // The line after this one has not come yet: look again next time.
                    (None, _) | (Some(b'\r'), None) => return None,
                    _ => self.lines += 1,
                }
            }
            self.pos += 1;
        }
        None
    }

    /// Goes on past `end`, a line end the parser did not take for the end of the head.
    fn resume_after(&mut self, end: usize) {
        self.pos = end;
        self.lines += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end_of(chunks: &[&str]) -> Option<usize> {
        let mut scan = Scan::default();
        let mut buf = Vec::new();
        let mut end = None;
        for chunk in chunks {
            buf.extend_from_slice(chunk.as_bytes());
            end = scan.advance(&buf);
            if end.is_some() {
                break;
            }
        }
        end
    }

    #[test]
    fn the_end_of_a_head_is_found_however_it_is_split() {
        let head = "GET /mcp HTTP/1.1\r\nhost: x\r\n\r\n";
        assert_eq!(end_of(&[head]), Some(head.len()));
        // Byte by byte, CR and LF split across reads included.
        let bytes: Vec<String> = head.chars().map(String::from).collect();
        let chunks: Vec<&str> = bytes.iter().map(String::as_str).collect();
        assert_eq!(end_of(&chunks), Some(head.len()));
        assert_eq!(end_of(&["GET / HTTP/1.1\nhost: x\n\nbody"]), Some(24));
        assert_eq!(end_of(&["GET / HTTP/1.1\r\nhost: x\r\n"]), None);
    }

    #[test]
    fn empty_lines_before_the_request_line_do_not_end_a_head() {
        assert_eq!(end_of(&["\r\n\r\n\n"]), None);
        let head = "\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        assert_eq!(end_of(&[head]), Some(head.len()));
    }

    #[test]
    fn lines_are_counted_as_they_come() {
        let mut scan = Scan::default();
        let buf = b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc:";
        assert_eq!(scan.advance(buf), None);
        assert_eq!(scan.lines, 3);
    }

    #[test]
    fn too_many_fields_are_told_from_a_malformed_head() {
        let head = "GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n";
        assert!(matches!(
            check_head(head.as_bytes(), 2),
            Checked::TooManyHeaders
        ));
        assert!(matches!(check_head(head.as_bytes(), 3), Checked::Complete));
        assert!(matches!(
            check_head(b"GARBAGE\r\n\r\n", 3),
            Checked::Complete
        ));
    }

    #[test]
    fn refusals_are_whole_http_answers() {
        let text =
            String::from_utf8(response_bytes(Refusal::TooManyConnections, "id-1")).expect("UTF-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head");
        assert!(
            head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nconnection: close"), "{head}");
        assert!(head.contains("\r\nretry-after: 1"), "{head}");
        assert!(
            head.contains(&format!("\r\ncontent-length: {}", body.len())),
            "{head}"
        );
        let json: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(json["error"], "too_many_connections");
        assert_eq!(json["request_id"], "id-1");
    }
}
