//! Clients no HTTP library would be: raw TCP connections to the gateway that send half a request
//! head and wait, or send one whole request and then sit idle on the kept-alive connection. Each
//! waits for the server to close the connection (what a bound does) or for the soak's own limit,
//! whichever comes first, and says which.
//!
//! Written by hand rather than with an HTTP client because the point is to misbehave: no client
//! library sends half a head. Reading the one answer an idle connection gets needs only its
//! status line and where it ends (`Content-Length` or the last chunk), which is parsed here.

use std::time::{Duration, Instant};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// How a held connection ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Held {
    /// The server closed it (or reset it) this long after the client stopped sending.
    Closed(Duration),
    /// Still open when the soak's limit came.
    StillOpen,
    /// It went wrong before the holding began.
    Failed(String),
}

/// A request on a raw connection: where and with what token.
#[derive(Debug, Clone)]
pub struct RawTarget {
    /// `host:port` of the gateway.
    pub addr: String,
    /// The MCP endpoint's path on it.
    pub path: String,
    pub token: String,
}

impl RawTarget {
    /// A whole `tools/list` POST, kept alive.
    fn request(&self) -> Vec<u8> {
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#;
        format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
             MCP-Protocol-Version: {version}\r\nContent-Length: {len}\r\n\r\n{body}",
            path = self.path,
            addr = self.addr,
            token = self.token,
            version = crate::load::PROTOCOL,
            len = body.len(),
        )
        .into_bytes()
    }

    /// The first half of a request head: no blank line ever ends it.
    fn half_head(&self) -> Vec<u8> {
        format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: appl",
            self.path, self.addr
        )
        .into_bytes()
    }
}

/// Sends half a request head (after one whole request on the same connection when
/// `after_a_request`) and waits up to `hold` for the server to close the connection.
pub async fn half_head(target: &RawTarget, after_a_request: bool, hold: Duration) -> Held {
    let mut stream = match connect(&target.addr).await {
        Ok(stream) => stream,
        Err(failed) => return failed,
    };
    if after_a_request && let Err(failed) = exchange(&mut stream, target).await {
        return failed;
    }
    if let Err(e) = stream.write_all(&target.half_head()).await {
        return Held::Failed(format!("sending half a head: {e}"));
    }
    until_closed(&mut stream, hold).await
}

/// Sends one whole request, reads its answer, then leaves the connection idle for up to `hold`.
pub async fn idle(target: &RawTarget, hold: Duration) -> Held {
    let mut stream = match connect(&target.addr).await {
        Ok(stream) => stream,
        Err(failed) => return failed,
    };
    if let Err(failed) = exchange(&mut stream, target).await {
        return failed;
    }
    until_closed(&mut stream, hold).await
}

async fn connect(addr: &str) -> Result<TcpStream, Held> {
    match tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(Held::Failed(format!("connect: {}", e.kind()))),
        Err(_) => Err(Held::Failed("connect: no answer within 10 s".into())),
    }
}

/// One whole request and its whole answer, which must be a success.
async fn exchange(stream: &mut TcpStream, target: &RawTarget) -> Result<(), Held> {
    stream
        .write_all(&target.request())
        .await
        .map_err(|e| Held::Failed(format!("sending a request: {}", e.kind())))?;
    let read = tokio::time::timeout(Duration::from_secs(30), read_response(stream));
    match read.await {
        Ok(Ok(status)) if (200..300).contains(&status) => Ok(()),
        Ok(Ok(status)) => Err(Held::Failed(format!("the request got HTTP {status}"))),
        Ok(Err(why)) => Err(Held::Failed(why)),
        Err(_) => Err(Held::Failed("no answer within 30 s".into())),
    }
}

/// Reads one response to its end; its status.
async fn read_response(stream: &mut TcpStream) -> Result<u16, String> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(status) = complete_response(&buf)? {
            return Ok(status);
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("reading the answer: {}", e.kind()))?;
        if n == 0 {
            return Err("the connection closed before the answer ended".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 4 * 1024 * 1024 {
            return Err("the answer is over 4 MiB".into());
        }
    }
}

/// The status of the response in `buf` once all of it has arrived; `None` until then.
fn complete_response(buf: &[u8]) -> Result<Option<u16>, String> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| "the answer has no status line".to_owned())?;
    let body = &buf[head_end + 4..];
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim() == name)
            .map(|(_, v)| v.trim().to_owned())
    };
    if let Some(length) = header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| format!("a Content-Length of {length:?}"))?;
        return Ok((body.len() >= length).then_some(status));
    }
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        return Ok(find(body, b"0\r\n\r\n")
            .filter(|&at| at == 0 || body[..at].ends_with(b"\r\n"))
            .map(|_| status));
    }
    // No length: the answer runs to the end of the connection, which is not kept alive.
    Err(format!(
        "HTTP {status} without a length: the connection is not kept alive"
    ))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Waits up to `hold` for the peer to close; anything it sends first (a 408) is read and dropped.
async fn until_closed(stream: &mut TcpStream, hold: Duration) -> Held {
    let started = Instant::now();
    let mut sink = [0u8; 4096];
    let closed = async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    };
    match tokio::time::timeout(hold, closed).await {
        Ok(()) => Held::Closed(started.elapsed()),
        Err(_) => Held::StillOpen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_is_complete_once_its_length_or_last_chunk_arrived() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n";
        assert_eq!(complete_response(head), Ok(None));
        assert_eq!(
            complete_response(&[&head[..], b"abcd"].concat()),
            Ok(Some(200))
        );
        let chunked = b"HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n";
        assert_eq!(complete_response(chunked), Ok(None));
        assert_eq!(
            complete_response(&[&chunked[..], b"0\r\n\r\n"].concat()),
            Ok(Some(401))
        );
        assert_eq!(complete_response(b"HTTP/1.1 200"), Ok(None));
        assert!(complete_response(b"HTTP/1.1 200 OK\r\n\r\nbody").is_err());
    }

    /// A server that closes a connection at once, and one that never does.
    #[tokio::test]
    async fn holding_tells_a_closed_connection_from_an_open_one() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let target = RawTarget {
            addr,
            path: "/mcp".into(),
            token: "t".into(),
        };
        let server = tokio::spawn(async move {
            // The first is closed at once, the second kept until the test ends.
            let (first, _) = listener.accept().await.expect("accept");
            drop(first);
            let (second, _) = listener.accept().await.expect("accept");
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(second);
        });
        let hold = Duration::from_millis(300);
        assert!(matches!(
            half_head(&target, false, hold).await,
            Held::Closed(_)
        ));
        assert_eq!(half_head(&target, false, hold).await, Held::StillOpen);
        server.abort();
    }
}
