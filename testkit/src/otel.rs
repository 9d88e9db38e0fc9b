//! A real OTLP collector for a test: `rotel-agent`, from the PyPI package `rotel` that
//! `scripts/setup-interop.sh` installs into `.interop/venv` (pins:
//! `scripts/interop/requirements-otel.txt`), started on free loopback ports and killed when
//! dropped. It exports nowhere (`--exporter blackhole`) but prints everything it receives on its
//! stdout (`--debug-log traces --debug-log metrics --debug-log-verbosity detailed`): a
//! [`Collector`] keeps that text, so a test can assert that something (a secret) appears nowhere
//! in what a service exported ([`Collector::raw`]), and parses it back into [`Span`]s and
//! [`Metric`]s.
//!
//! What rotel 0.0.1-alpha10 prints, learnt from real OTLP exports (the Python SDK over OTLP/HTTP
//! protobuf and gRPC, and OTLP/HTTP JSON): `tests/fixtures/rotel-debug-output.txt`. In short:
//! - one `ResourceSpans #0` / `ResourceMetrics #0` block per request it receives, printed as the
//!   request arrives (before its own batching), so a span is there within milliseconds of the
//!   exporter's request being answered;
//! - its own log lines (`2026-…Z  INFO Starting Rotel. …`, decode errors) go to the same stdout;
//! - attribute values print as `Str(…)`, `Int(…)`, `Double(…)`, `Bool(…)`, `Bytes([…])`,
//!   `Slice(…)` and `Map(k:V, …)`, unquoted, so a value holding a newline spans several lines;
//! - a span prints its kind, status (unless the request had none), start and end times, events
//!   and links; a metric its descriptor, and per data point its attributes and value (gauge,
//!   sum), or count, sum, min, max and buckets (histograms), or quantiles (summary).
//!
//! OTLP/HTTP JSON works for traces; for metrics rotel's JSON decoding loses data (`asInt` values,
//! histograms and summaries), so metrics should be sent as protobuf.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader},
    task::JoinHandle,
};

/// Where [`Collector::start`] finds `rotel-agent` instead of `.interop/venv`.
pub const AGENT_VAR: &str = "ROTEL_AGENT";

/// How long rotel gets to listen on both ports. It does within milliseconds; the margin is for a
/// machine busy compiling the rest of the workspace.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How many pairs of ports [`Collector::start`] tries, when another process takes one it picked
/// before rotel binds it.
const START_ATTEMPTS: usize = 5;

/// How often `wait_for*` look again.
const POLL: Duration = Duration::from_millis(20);

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
}

/// The `rotel-agent` binary: `$ROTEL_AGENT` when set, else the one the `rotel` wheel puts in
/// `.interop/venv/lib/python3.*/site-packages/rotel/` (the package does not link it into the
/// venv's `bin/`, and the Python version is whatever made the venv).
pub fn agent() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(AGENT_VAR) {
        return Some(PathBuf::from(path)).filter(|path| path.is_file());
    }
    std::fs::read_dir(repo_root().join(".interop/venv/lib"))
        .ok()?
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("python3"))
        .map(|entry| entry.path().join("site-packages/rotel/rotel-agent"))
        .find(|path| path.is_file())
}

/// Whether `rotel-agent` is installed. When it is not, a test skips what needs the collector
/// with a note, unless `REQUIRE_OTEL_COLLECTOR=1` (the test command) makes that a failure.
pub fn installed() -> bool {
    let found = agent().is_some();
    if !found {
        assert_ne!(
            std::env::var("REQUIRE_OTEL_COLLECTOR").as_deref(),
            Ok("1"),
            "REQUIRE_OTEL_COLLECTOR=1 but rotel-agent is not installed: run \
             scripts/setup-interop.sh (or point {AGENT_VAR} at a rotel-agent binary)"
        );
        eprintln!(
            "note: the rotel OTLP collector is not installed, the part of this test that \
             exports to it is skipped (scripts/setup-interop.sh installs it)"
        );
    }
    found
}

/// A running rotel: OTLP/gRPC and OTLP/HTTP on loopback, everything it prints kept. It is killed
/// when dropped; [`Collector::stop`] also hands back what it printed.
pub struct Collector {
    grpc: SocketAddr,
    http: SocketAddr,
    output: Arc<Output>,
    readers: Vec<JoinHandle<()>>,
    child: tokio::process::Child,
}

/// What the child printed, each stream apart: stderr lines interleaved into stdout would cut
/// through the blocks the parser reads.
#[derive(Default)]
struct Output {
    stdout: Mutex<String>,
    stderr: Mutex<String>,
}

impl Output {
    fn stdout(&self) -> String {
        self.stdout.lock().expect("the stdout buffer").clone()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().expect("the stderr buffer").clone()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        // The child itself goes with `kill_on_drop`; the readers would end at its EOF anyway.
        for reader in &self.readers {
            reader.abort();
        }
    }
}

impl Collector {
    /// Starts rotel on two free loopback ports and returns once both accept connections.
    /// Panics when it cannot (not installed: check [`installed`] first).
    pub async fn start() -> Collector {
        let agent = agent().expect("rotel-agent is installed (check otel::installed() first)");
        let mut said = String::new();
        for _ in 0..START_ATTEMPTS {
            match Collector::try_start(&agent, free_ports()).await {
                Ok(collector) => return collector,
                // Another process took a port between our probe and rotel's bind: pick again.
                Err(output) if output.contains("Address already in use") => said = output,
                Err(output) => panic!("rotel-agent ({}) did not start: {output}", agent.display()),
            }
        }
        panic!("rotel-agent found no free ports in {START_ATTEMPTS} attempts; last: {said}")
    }

    /// Starts it on `grpc` and `http`; what it printed if it exited before it listened.
    async fn try_start(
        agent: &Path,
        (grpc, http): (SocketAddr, SocketAddr),
    ) -> Result<Self, String> {
        let mut command = tokio::process::Command::new(agent);
        command
            .arg("start")
            .args(["--otlp-grpc-endpoint", &grpc.to_string()])
            .args(["--otlp-http-endpoint", &http.to_string()])
            .args(["--exporter", "blackhole"])
            .args(["--debug-log", "traces", "--debug-log", "metrics"])
            .args(["--debug-log-verbosity", "detailed"])
            // Its own log lines otherwise carry ANSI colours even into a pipe.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // Every flag has a ROTEL_* variable (e.g. ROTEL_OTEL_RESOURCE_ATTRIBUTES adds resource
        // attributes): none from the test's environment may change what it prints.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ROTEL_") {
                command.env_remove(name);
            }
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("start {}: {error}", agent.display()));
        let output = Arc::new(Output::default());
        let readers = vec![
            tokio::spawn(keep(
                child.stdout.take().expect("piped stdout"),
                output.clone(),
                |output| &output.stdout,
            )),
            tokio::spawn(keep(
                child.stderr.take().expect("piped stderr"),
                output.clone(),
                |output| &output.stderr,
            )),
        ];
        let mut collector = Collector {
            grpc,
            http,
            output,
            readers,
            child,
        };
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = collector.exited() {
                return Err(collector.finish(status).await);
            }
            if accepts(grpc).await && accepts(http).await {
                // Listening ports may still be someone else's, if rotel failed to bind them.
                match collector.exited() {
                    Some(status) => return Err(collector.finish(status).await),
                    None => return Ok(collector),
                }
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "rotel-agent did not listen on {grpc} and {http} within {START_TIMEOUT:?}: {}",
                    collector.raw()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("poll rotel-agent")
    }

    /// Waits for the readers to reach EOF, then tells how it ended and what it printed.
    async fn finish(mut self, status: ExitStatus) -> String {
        for reader in std::mem::take(&mut self.readers) {
            let _ = reader.await;
        }
        format!("it exited with {status}: {}", self.raw())
    }

    /// The OTLP/HTTP endpoint, e.g. `http://127.0.0.1:40318` (it serves `/v1/traces`,
    /// `/v1/metrics` and `/v1/logs`, protobuf or JSON).
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http)
    }

    /// The OTLP/gRPC endpoint, e.g. `http://127.0.0.1:40317` (plain HTTP/2, no TLS), the form
    /// the OTLP exporters take.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// Everything it printed so far, stdout then stderr: every span and metric it received with
    /// all their attributes, and its own log lines. A secret a test finds nowhere in here was
    /// exported nowhere.
    pub fn raw(&self) -> String {
        self.output.stdout() + &self.output.stderr()
    }

    /// Every span it printed so far, in the order printed (an exporter that sends each span as
    /// it ends, as a simple span processor does, sends children before their parents).
    pub fn spans(&self) -> Vec<Span> {
        parse(&self.output.stdout()).spans
    }

    /// Every metric it printed so far, in the order printed. Each export prints each metric
    /// again (a cumulative one with its running totals), so a name recurs: [`Collector::metric`]
    /// is the latest.
    pub fn metrics(&self) -> Vec<Metric> {
        parse(&self.output.stdout()).metrics
    }

    /// The latest metric printed under `name`.
    pub fn metric(&self, name: &str) -> Option<Metric> {
        self.metrics()
            .into_iter()
            .rev()
            .find(|metric| metric.name == name)
    }

    /// Waits until `until` holds of this collector, or panics after `timeout` with what it
    /// printed (exporters send in the background, so whatever a test wants to see needs a wait).
    pub async fn wait_for(&self, until: impl Fn(&Collector) -> bool, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while !until(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the collector did not receive what the test waits for within {timeout:?}; it \
                 printed:\n{}",
                tail(&self.raw())
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until `until` holds of the spans printed so far, and returns them; panics after
    /// `timeout` with what it printed.
    pub async fn wait_for_spans(
        &self,
        until: impl Fn(&[Span]) -> bool,
        timeout: Duration,
    ) -> Vec<Span> {
        self.wait_for(|collector| until(&collector.spans()), timeout)
            .await;
        self.spans()
    }

    /// Waits until `until` holds of the metrics printed so far, and returns them; panics after
    /// `timeout` with what it printed.
    pub async fn wait_for_metrics(
        &self,
        until: impl Fn(&[Metric]) -> bool,
        timeout: Duration,
    ) -> Vec<Metric> {
        self.wait_for(|collector| until(&collector.metrics()), timeout)
            .await;
        self.metrics()
    }

    /// Kills it and returns everything it printed (as [`Collector::raw`]), to the last byte.
    pub async fn stop(mut self) -> String {
        let _ = self.child.kill().await;
        for reader in std::mem::take(&mut self.readers) {
            let _ = reader.await;
        }
        self.raw()
    }
}

/// Two ports nothing listens on now: bound together so they differ, then released for rotel.
/// Someone may take one in between; [`Collector::start`] then tries again.
fn free_ports() -> (SocketAddr, SocketAddr) {
    let bind = || {
        std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free loopback port")
    };
    let (grpc, http) = (bind(), bind());
    (
        grpc.local_addr().expect("the port's address"),
        http.local_addr().expect("the port's address"),
    )
}

async fn accepts(addr: SocketAddr) -> bool {
    tokio::net::TcpStream::connect(addr).await.is_ok()
}

/// Appends what `stream` carries to its buffer, line by line (a line is never split between
/// two reads of the buffer), until EOF.
async fn keep(
    stream: impl AsyncRead + Unpin,
    output: Arc<Output>,
    buffer: fn(&Output) -> &Mutex<String>,
) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => buffer(&output)
                .lock()
                .expect("the output buffer")
                .push_str(&String::from_utf8_lossy(&line)),
        }
    }
}

/// The end of a long output, for a panic message.
fn tail(text: &str) -> &str {
    const KEEP: usize = 16 * 1024;
    let mut start = text.len().saturating_sub(KEEP);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// A span as rotel printed it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Span {
    /// The resource's `service.name` (empty when it had none).
    pub service_name: String,
    /// The resource's attributes, values as in [`Span::attributes`].
    pub resource: BTreeMap<String, String>,
    /// The instrumentation scope's name (the tracer's).
    pub scope: String,
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// The parent's span id; `None` for a root span.
    pub parent_id: Option<String>,
    pub name: String,
    pub kind: SpanKind,
    /// `None` when the request carried no status at all (an SDK sends `Unset` then).
    pub status: Option<StatusCode>,
    pub status_message: String,
    /// Nanoseconds since the Unix epoch; `None` when not printed or 0 (unset).
    pub start_unix_nano: Option<u64>,
    pub end_unix_nano: Option<u64>,
    /// Each attribute's value as printed inside its type: `Str(t-1)` is `t-1`, `Int(200)` is
    /// `200`, `Slice(Str(a), Str(b))` is `Str(a), Str(b)`.
    pub attributes: BTreeMap<String, String>,
    /// Each attribute's type as printed: `Str`, `Int`, `Double`, `Bool`, `Bytes`, `Slice`, `Map`.
    pub attribute_types: BTreeMap<String, String>,
    pub events: Vec<Event>,
    pub links: Vec<Link>,
}

impl Span {
    /// The attribute `key`'s value, if the span has it.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    /// How long it took, when both its start and end were printed.
    pub fn duration(&self) -> Option<Duration> {
        Some(Duration::from_nanos(
            self.end_unix_nano?.checked_sub(self.start_unix_nano?)?,
        ))
    }
}

/// The `Kind` of a span, printed as `SPAN_KIND_SERVER` and so on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SpanKind {
    #[default]
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
    /// Anything else rotel prints there, without the `SPAN_KIND_` prefix.
    Other(String),
}

/// The `Status code` of a span, printed as `STATUS_CODE_ERROR` and so on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusCode {
    Unset,
    Ok,
    Error,
    /// Anything else rotel prints there, without the `STATUS_CODE_` prefix.
    Other(String),
}

/// A span event (an exception recorded on a span is the event `exception`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Event {
    pub name: String,
    pub unix_nano: Option<u64>,
    /// Values as in [`Span::attributes`].
    pub attributes: BTreeMap<String, String>,
}

/// A link from a span to another span.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Link {
    pub trace_id: String,
    pub span_id: String,
    /// Values as in [`Span::attributes`].
    pub attributes: BTreeMap<String, String>,
}

/// A metric as rotel printed it, from one export.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metric {
    /// The resource's `service.name` (empty when it had none).
    pub service_name: String,
    /// The resource's attributes, values as in [`Span::attributes`].
    pub resource: BTreeMap<String, String>,
    /// The instrumentation scope's name (the meter's).
    pub scope: String,
    pub name: String,
    pub description: String,
    pub unit: String,
    pub kind: MetricKind,
    /// A sum's `IsMonotonic` (a counter's `true`, an up-down counter's `false`).
    pub monotonic: Option<bool>,
    /// `CUMULATIVE` or `DELTA` (a gauge and a summary have none).
    pub temporality: Option<String>,
    pub points: Vec<DataPoint>,
}

/// A metric's `DataType`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum MetricKind {
    #[default]
    Gauge,
    Sum,
    Histogram,
    ExponentialHistogram,
    Summary,
    /// Anything else, e.g. `Empty` for a metric whose data rotel could not read.
    Other(String),
}

/// One data point of a metric; which fields it has depends on the metric's kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataPoint {
    /// Values as in [`Span::attributes`].
    pub attributes: BTreeMap<String, String>,
    /// Types as in [`Span::attribute_types`].
    pub attribute_types: BTreeMap<String, String>,
    /// Nanoseconds since the Unix epoch; `None` when not printed or 0 (a gauge has no start).
    pub start_unix_nano: Option<u64>,
    pub unix_nano: Option<u64>,
    /// A gauge's or a sum's value.
    pub value: Option<f64>,
    /// Histograms and summaries: how many values were recorded, and their sum, min and max.
    pub count: Option<u64>,
    pub sum: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// A histogram's upper bucket bounds (`ExplicitBounds`); one fewer than its buckets.
    pub bounds: Vec<f64>,
    /// The count of each bucket in the order printed: a histogram's one per bound and one
    /// above; an exponential histogram's negative bucket line first, then its positive ones.
    pub bucket_counts: Vec<u64>,
    /// A summary's `(quantile, value)` pairs.
    pub quantiles: Vec<(f64, f64)>,
}

/// The spans and metrics in a stretch of rotel's output.
#[derive(Debug, Default, PartialEq)]
struct Parsed {
    spans: Vec<Span>,
    metrics: Vec<Metric>,
}

/// One line of rotel's debug output, by shape.
#[derive(Debug, PartialEq)]
enum Line<'a> {
    /// `     -> key: value`, or `          -> key: value` (`nested`) inside an event or a link.
    /// An attribute's value may continue over the lines after it: see [`parse`].
    Arrow {
        nested: bool,
        key: &'a str,
        value: String,
    },
    /// `Span #0`, `Resource attributes:` and so on: the label of a block.
    Header(&'a str),
    /// `InstrumentationScope name version`
    Scope(&'a str),
    /// `Key: value` at the line's start, or a span's `    Key    : value`.
    Field { key: &'a str, value: &'a str },
    /// rotel's own log lines (`2026-12-03T17:01:01.304197Z  INFO …`).
    Log,
    /// Any other line: the rest of an attribute's value that held a newline.
    Other(&'a str),
}

fn classify(line: &str) -> Line<'_> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    for (indent, nested) in [("          -> ", true), ("     -> ", false)] {
        if let Some(rest) = line.strip_prefix(indent) {
            // `-> Attributes::` opens an event's or a link's attributes.
            let (key, value) = rest
                .split_once(": ")
                .or_else(|| Some((rest.strip_suffix(':')?, "")))
                .unwrap_or((rest, ""));
            return Line::Arrow {
                nested,
                key,
                value: value.to_owned(),
            };
        }
    }
    if let Some(rest) = line.strip_prefix("    ")
        && !rest.starts_with(' ')
        && let Some((key, value)) = rest.split_once(':')
    {
        return Line::Field {
            key: key.trim(),
            value: value.trim(),
        };
    }
    if is_log(line) {
        return Line::Log;
    }
    if !line.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Line::Other(line);
    }
    if let Some(scope) = line.strip_prefix("InstrumentationScope ") {
        return Line::Scope(scope.trim());
    }
    let trimmed = line.trim_end();
    if let Some(label) = trimmed.strip_suffix(':') {
        return Line::Header(label);
    }
    if let Some((label, number)) = trimmed.rsplit_once(" #")
        && !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit())
    {
        return Line::Header(label);
    }
    match line.split_once(": ") {
        Some((key, value)) => Line::Field {
            key,
            value: value.trim(),
        },
        None => Line::Other(line),
    }
}

/// rotel's own log lines start with an RFC 3339 timestamp.
fn is_log(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 20 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[10] == b'T'
}

/// `Str(t-1)` is `("Str", "t-1")`; a value not of that shape has no type.
fn typed(printed: &str) -> (&str, &str) {
    printed
        .split_once('(')
        .filter(|(kind, _)| !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_alphanumeric()))
        .and_then(|(kind, rest)| Some((kind, rest.strip_suffix(')')?)))
        .unwrap_or(("", printed))
}

/// A timestamp; 0 is OTLP's "unset".
fn nanos(value: &str) -> Option<u64> {
    value.parse().ok().filter(|&n| n != 0)
}

/// Which block the lines being read belong to.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
enum Section {
    #[default]
    None,
    Resource,
    SpanHeader,
    SpanAttributes,
    Event,
    Link,
    Descriptor,
    Point,
    PointAttributes,
}

#[derive(Default)]
struct Parser {
    parsed: Parsed,
    resource: BTreeMap<String, String>,
    scope: String,
    span: Option<Span>,
    metric: Option<Metric>,
    point: Option<DataPoint>,
    section: Section,
}

/// Reads rotel's debug output into spans and metrics. Lines it does not know are skipped, but for
/// one that follows an attribute: a string value with a newline in it prints over several lines,
/// so such a line continues the value (a continuation line that looks like `Key: value` is lost).
fn parse(output: &str) -> Parsed {
    let mut parser = Parser::default();
    let mut lines = output.lines().map(classify).peekable();
    while let Some(mut line) = lines.next() {
        if let Line::Arrow { value, .. } = &mut line {
            while let Some(Line::Other(more)) = lines.peek() {
                value.push('\n');
                value.push_str(more);
                lines.next();
            }
        }
        parser.line(line);
    }
    parser.finish_span();
    parser.finish_metric();
    parser.parsed
}

impl Parser {
    fn line(&mut self, line: Line<'_>) {
        match line {
            Line::Header(label) => self.header(label),
            Line::Scope(scope) => {
                // `name version`, or `name ` without one.
                self.scope = scope.split(' ').next().unwrap_or_default().to_owned();
            }
            Line::Arrow { nested, key, value } => self.arrow(nested, key, &value),
            Line::Field { key, value } => self.field(key, value),
            Line::Log | Line::Other(_) => {}
        }
    }

    fn header(&mut self, label: &str) {
        match label {
            "ResourceSpans" | "ResourceMetrics" => {
                self.finish_span();
                self.finish_metric();
                self.resource.clear();
                self.scope.clear();
                self.section = Section::None;
            }
            "Resource attributes" => self.section = Section::Resource,
            "ScopeSpans" | "ScopeMetrics" => {
                self.finish_span();
                self.finish_metric();
                self.scope.clear();
                self.section = Section::None;
            }
            "Span" => {
                self.finish_span();
                self.span = Some(Span {
                    service_name: self.service_name(),
                    resource: self.resource.clone(),
                    scope: self.scope.clone(),
                    ..Span::default()
                });
                self.section = Section::SpanHeader;
            }
            "Attributes" if self.span.is_some() => self.section = Section::SpanAttributes,
            "SpanEvent" => {
                if let Some(span) = &mut self.span {
                    span.events.push(Event::default());
                    self.section = Section::Event;
                }
            }
            "SpanLink" => {
                if let Some(span) = &mut self.span {
                    span.links.push(Link::default());
                    self.section = Section::Link;
                }
            }
            "Metric" => {
                self.finish_metric();
                self.metric = Some(Metric {
                    service_name: self.service_name(),
                    resource: self.resource.clone(),
                    scope: self.scope.clone(),
                    ..Metric::default()
                });
                self.section = Section::None;
            }
            "Descriptor" => self.section = Section::Descriptor,
            points if points.ends_with("DataPoints") && self.metric.is_some() => {
                self.finish_point();
                self.point = Some(DataPoint::default());
                self.section = Section::Point;
            }
            "Data point attributes" if self.point.is_some() => {
                self.section = Section::PointAttributes;
            }
            // `Events:`, `Links:`, the schema URLs, and what a later rotel may add.
            _ => self.section = Section::None,
        }
    }

    fn arrow(&mut self, nested: bool, key: &str, value: &str) {
        let (kind, inner) = typed(value);
        match (
            self.section,
            &mut self.span,
            &mut self.metric,
            &mut self.point,
        ) {
            (Section::Resource, ..) => {
                self.resource.insert(key.to_owned(), inner.to_owned());
            }
            (Section::SpanAttributes, Some(span), ..) => {
                span.attributes.insert(key.to_owned(), inner.to_owned());
                span.attribute_types.insert(key.to_owned(), kind.to_owned());
            }
            (Section::Event, Some(span), ..) => {
                let Some(event) = span.events.last_mut() else {
                    return;
                };
                match (nested, key) {
                    (true, _) => {
                        event.attributes.insert(key.to_owned(), inner.to_owned());
                    }
                    (false, "Name") => event.name = value.to_owned(),
                    (false, "Timestamp") => event.unix_nano = nanos(value),
                    _ => {}
                }
            }
            (Section::Link, Some(span), ..) => {
                let Some(link) = span.links.last_mut() else {
                    return;
                };
                match (nested, key) {
                    (true, _) => {
                        link.attributes.insert(key.to_owned(), inner.to_owned());
                    }
                    (false, "Trace ID") => link.trace_id = value.to_owned(),
                    (false, "ID") => link.span_id = value.to_owned(),
                    _ => {}
                }
            }
            (Section::Descriptor, _, Some(metric), _) => match key {
                "Name" => metric.name = value.to_owned(),
                "Description" => metric.description = value.to_owned(),
                "Unit" => metric.unit = value.to_owned(),
                "DataType" => {
                    metric.kind = match value {
                        "Gauge" => MetricKind::Gauge,
                        "Sum" => MetricKind::Sum,
                        "Histogram" => MetricKind::Histogram,
                        "ExponentialHistogram" => MetricKind::ExponentialHistogram,
                        "Summary" => MetricKind::Summary,
                        other => MetricKind::Other(other.to_owned()),
                    }
                }
                "IsMonotonic" => metric.monotonic = value.parse().ok(),
                "AggregationTemporality" => {
                    let temporality = value.trim_start_matches("AGGREGATION_TEMPORALITY_");
                    metric.temporality = Some(temporality.to_owned());
                }
                _ => {}
            },
            (Section::PointAttributes, _, _, Some(point)) => {
                point.attributes.insert(key.to_owned(), inner.to_owned());
                point
                    .attribute_types
                    .insert(key.to_owned(), kind.to_owned());
            }
            _ => {}
        }
    }

    fn field(&mut self, key: &str, value: &str) {
        match (self.section, &mut self.span, &mut self.point) {
            (Section::SpanHeader, Some(span), _) => match key {
                "Trace ID" => span.trace_id = value.to_owned(),
                "Parent ID" => span.parent_id = Some(value.to_owned()).filter(|id| !id.is_empty()),
                "ID" => span.span_id = value.to_owned(),
                "Name" => span.name = value.to_owned(),
                "Kind" => {
                    span.kind = match value.trim_start_matches("SPAN_KIND_") {
                        "UNSPECIFIED" => SpanKind::Unspecified,
                        "INTERNAL" => SpanKind::Internal,
                        "SERVER" => SpanKind::Server,
                        "CLIENT" => SpanKind::Client,
                        "PRODUCER" => SpanKind::Producer,
                        "CONSUMER" => SpanKind::Consumer,
                        other => SpanKind::Other(other.to_owned()),
                    }
                }
                "Start time" => span.start_unix_nano = nanos(value),
                "End time" => span.end_unix_nano = nanos(value),
                "Status code" => {
                    span.status = Some(match value.trim_start_matches("STATUS_CODE_") {
                        "UNSET" => StatusCode::Unset,
                        "OK" => StatusCode::Ok,
                        "ERROR" => StatusCode::Error,
                        other => StatusCode::Other(other.to_owned()),
                    })
                }
                "Status message" => span.status_message = value.to_owned(),
                _ => {}
            },
            (Section::Point | Section::PointAttributes, _, Some(point)) => match key {
                "StartTimestamp" => point.start_unix_nano = nanos(value),
                "Timestamp" => point.unix_nano = nanos(value),
                "Value" => point.value = value.parse().ok(),
                "Count" => point.count = value.parse().ok(),
                "Sum" => point.sum = value.parse().ok(),
                "Min" => point.min = value.parse().ok(),
                "Max" => point.max = value.parse().ok(),
                // `ExplicitBounds #3: 25`
                bound if bound.starts_with("ExplicitBounds #") => {
                    point.bounds.extend(value.parse::<f64>().ok());
                }
                // `Buckets #3, Count: 1`, and an exponential histogram's `Bucket (1, 16], Count: 2`
                bucket if bucket.starts_with("Bucket") && bucket.ends_with(", Count") => {
                    point.bucket_counts.extend(value.parse::<u64>().ok());
                }
                // `QuantileValue #0: Quantile 0.5, Value 0.4`
                quantile if quantile.starts_with("QuantileValue #") => {
                    let pair = value
                        .strip_prefix("Quantile ")
                        .and_then(|rest| rest.split_once(", Value "))
                        .and_then(|(q, v)| Some((q.parse().ok()?, v.parse().ok()?)));
                    point.quantiles.extend(pair);
                }
                _ => {}
            },
            _ => {}
        }
    }

    fn service_name(&self) -> String {
        self.resource
            .get("service.name")
            .cloned()
            .unwrap_or_default()
    }

    fn finish_span(&mut self) {
        self.parsed.spans.extend(self.span.take());
    }

    fn finish_point(&mut self) {
        if let (Some(metric), Some(point)) = (&mut self.metric, self.point.take()) {
            metric.points.push(point);
        }
    }

    fn finish_metric(&mut self) {
        self.finish_point();
        self.parsed.metrics.extend(self.metric.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real capture (see the module docs): one rotel run that received, in this order, the
    /// Python SDK's spans and metrics over OTLP/HTTP protobuf (service `fixture-http`), then over
    /// gRPC (`fixture-grpc`), two JSON trace requests with a malformed one between them, and a
    /// protobuf summary; with rotel's own log lines.
    const FIXTURE: &str = include_str!("../tests/fixtures/rotel-debug-output.txt");

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn span<'a>(spans: &'a [Span], name: &str) -> &'a Span {
        spans
            .iter()
            .find(|span| span.name == name)
            .unwrap_or_else(|| panic!("a span {name} in {spans:#?}"))
    }

    fn metric<'a>(metrics: &'a [Metric], service: &str, name: &str) -> &'a Metric {
        metrics
            .iter()
            .rev()
            .find(|m| m.service_name == service && m.name == name)
            .unwrap_or_else(|| panic!("a metric {name} of {service} in {metrics:#?}"))
    }

    #[test]
    fn every_span_and_metric_of_the_capture_is_read() {
        let parsed = parse(FIXTURE);
        let names: Vec<_> = parsed.spans.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "inner.work",
                "upstream.call",
                "produce",
                "http.request",
                "child",
                "child2",
                "root",
                "json.span",
                "types"
            ]
        );
        // The HTTP exporter's five metrics twice (a flush, then the shutdown's export), the gRPC
        // exporter's two once, the summary.
        assert_eq!(parsed.metrics.len(), 5 * 2 + 2 + 1);
        assert!(
            parsed
                .spans
                .iter()
                .all(|s| s.trace_id.len() == 32 && s.span_id.len() == 16)
        );
    }

    #[test]
    fn spans_carry_their_tree_kind_status_times_and_typed_attributes() {
        let spans = parse(FIXTURE).spans;
        let root = span(&spans, "http.request");
        let client = span(&spans, "upstream.call");
        let inner = span(&spans, "inner.work");
        let producer = span(&spans, "produce");

        assert_eq!(root.service_name, "fixture-http");
        assert_eq!(root.resource["service.version"], "1.2.3");
        assert_eq!(root.resource["deployment.environment"], "test");
        assert_eq!(root.scope, "probe.tracer");
        assert_eq!(root.parent_id, None);
        assert_eq!(client.parent_id.as_deref(), Some(root.span_id.as_str()));
        assert_eq!(inner.parent_id.as_deref(), Some(client.span_id.as_str()));
        assert_eq!(producer.parent_id.as_deref(), Some(root.span_id.as_str()));
        assert!(
            [client, inner, producer]
                .iter()
                .all(|s| s.trace_id == root.trace_id)
        );

        assert_eq!(root.kind, SpanKind::Server);
        assert_eq!(client.kind, SpanKind::Client);
        assert_eq!(inner.kind, SpanKind::Internal);
        assert_eq!(producer.kind, SpanKind::Producer);
        assert_eq!(span(&spans, "child").kind, SpanKind::Consumer);

        assert_eq!(root.status, Some(StatusCode::Unset));
        assert_eq!(producer.status, Some(StatusCode::Ok));
        assert_eq!(inner.status, Some(StatusCode::Error));
        assert_eq!(inner.status_message, "boom went wrong");
        assert_eq!(root.status_message, "");

        assert_eq!(root.start_unix_nano, Some(1796317262218473206));
        assert_eq!(root.end_unix_nano, Some(1796317262230157518));
        assert_eq!(root.duration(), Some(Duration::from_nanos(11684312)));

        assert_eq!(
            root.attributes,
            map(&[
                ("http.method", "POST"),
                ("http.status_code", "200"),
                ("tenant.id", "t-1")
            ])
        );
        assert_eq!(root.attribute("tenant.id"), Some("t-1"));
        assert_eq!(root.attribute_types["http.status_code"], "Int");
        assert_eq!(root.attribute_types["http.method"], "Str");
        assert_eq!(
            client.attributes,
            map(&[
                ("peer.service", "tools"),
                ("retry", "1"),
                ("ok", "true"),
                ("ratio", "0.5")
            ])
        );
        assert_eq!(client.attribute_types["ok"], "Bool");
        assert_eq!(client.attribute_types["ratio"], "Double");
        assert_eq!(inner.attributes, map(&[("list", "Str(a), Str(b)")]));
        assert_eq!(inner.attribute_types["list"], "Slice");
        assert!(producer.attributes.is_empty());

        assert_eq!(
            root.events,
            [Event {
                name: "received".into(),
                unix_nano: Some(1796317262218507417),
                attributes: map(&[("bytes", "42")]),
            }]
        );
    }

    #[test]
    fn values_with_newlines_and_parentheses_and_exceptions_survive() {
        let spans = parse(FIXTURE).spans;
        let root = span(&spans, "root");
        assert_eq!(root.service_name, "fixture-grpc");
        assert_eq!(
            root.attributes,
            map(&[
                ("weird", "a (b) c)"),
                ("multi", "line1\nline2"),
                ("empty", ""),
                ("neg", "-7")
            ])
        );
        // Two scopes in one request.
        assert_eq!(span(&spans, "child").scope, "other.tracer");
        let failed = span(&spans, "child2");
        assert_eq!(failed.scope, "grpc.tracer");
        assert_eq!(failed.status, Some(StatusCode::Error));
        let exception = &failed.events[0];
        assert_eq!(exception.name, "exception");
        assert_eq!(exception.attributes["exception.type"], "ValueError");
        assert_eq!(
            exception.attributes["exception.stacktrace"],
            "ValueError: bad value\n"
        );
        assert_eq!(exception.attributes["exception.escaped"], "False");
    }

    #[test]
    fn json_spans_carry_links_and_no_status_when_sent_none() {
        let spans = parse(FIXTURE).spans;
        let json = span(&spans, "json.span");
        assert_eq!(json.service_name, "json-probe");
        assert_eq!(json.trace_id, "5b8efff798038103d269b633813fc60c");
        assert_eq!(json.parent_id.as_deref(), Some("eee19b7ec3c1b173"));
        assert_eq!(json.status, Some(StatusCode::Error));
        assert_eq!(json.status_message, "bad");
        assert_eq!(json.duration(), Some(Duration::from_micros(1500)));
        assert_eq!(
            json.links,
            [Link {
                trace_id: "5b8efff798038103d269b633813fc60d".into(),
                span_id: "eee19b7ec3c1b175".into(),
                attributes: map(&[("l", "x")]),
            }]
        );

        let types = span(&spans, "types");
        assert_eq!(types.status, None);
        assert_eq!(types.scope, "testkit");
        assert_eq!(
            types.attributes,
            map(&[
                ("kv", "a:Int(1), b:Str(two)"),
                ("by", "[104, 101, 108, 108, 111]"),
                ("arr", "Int(1), Bool(false)"),
                ("d", "1000000000000000000000")
            ])
        );
        assert_eq!(types.attribute_types["kv"], "Map");
        assert_eq!(types.attribute_types["by"], "Bytes");
    }

    #[test]
    fn histograms_carry_counts_bounds_and_buckets() {
        let metrics = parse(FIXTURE).metrics;
        let histogram = metric(&metrics, "fixture-http", "request.duration");
        assert_eq!(histogram.kind, MetricKind::Histogram);
        assert_eq!(histogram.unit, "ms");
        assert_eq!(histogram.description, "How long requests take");
        assert_eq!(histogram.scope, "probe.meter");
        assert_eq!(histogram.temporality.as_deref(), Some("CUMULATIVE"));
        assert_eq!(histogram.monotonic, None);
        let [mcp, health] = &histogram.points[..] else {
            panic!("two points: {histogram:#?}");
        };
        assert_eq!(
            mcp.attributes,
            map(&[("route", "/mcp"), ("tenant.id", "t-1")])
        );
        assert_eq!(mcp.attribute_types["route"], "Str");
        assert_eq!(
            (mcp.count, mcp.sum, mcp.min, mcp.max),
            (Some(2), Some(262.5), Some(12.5), Some(250.0))
        );
        assert_eq!(
            mcp.bounds,
            [
                0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0,
                5000.0, 7500.0, 10000.0
            ]
        );
        assert_eq!(
            mcp.bucket_counts,
            [0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert!(mcp.start_unix_nano.is_some() && mcp.unix_nano.is_some());
        assert_eq!(health.attributes["route"], "/health");
        assert_eq!(health.count, Some(1));

        let exponential = metric(&metrics, "fixture-grpc", "exp.hist");
        assert_eq!(exponential.kind, MetricKind::ExponentialHistogram);
        let point = &exponential.points[0];
        assert_eq!(point.attributes, map(&[("k", "v")]));
        assert_eq!((point.count, point.sum), (Some(4), Some(107.0)));
        assert_eq!(point.bucket_counts, [0, 1, 2, 1, 0]);
        assert!(point.bounds.is_empty());
    }

    #[test]
    fn sums_gauges_and_summaries_carry_their_values() {
        let metrics = parse(FIXTURE).metrics;
        let counter = metric(&metrics, "fixture-http", "requests.total");
        assert_eq!(counter.kind, MetricKind::Sum);
        assert_eq!(counter.monotonic, Some(true));
        assert_eq!(counter.temporality.as_deref(), Some("CUMULATIVE"));
        let values: Vec<_> = counter
            .points
            .iter()
            .map(|p| (p.attributes["status"].as_str(), p.value))
            .collect();
        assert_eq!(values, [("200", Some(3.0)), ("500", Some(1.0))]);

        let up_down = metric(&metrics, "fixture-http", "connections.active");
        assert_eq!(up_down.monotonic, Some(false));
        assert_eq!(up_down.points[0].value, Some(3.0));

        let bare = metric(&metrics, "fixture-http", "bytes.sent");
        assert_eq!(bare.unit, "By");
        assert!(bare.points[0].attributes.is_empty());
        assert_eq!(bare.points[0].value, Some(1.5));

        let observable = metric(&metrics, "fixture-http", "pool.size");
        assert_eq!(observable.kind, MetricKind::Gauge);
        assert_eq!(observable.temporality, None);
        let values: Vec<_> = observable.points.iter().map(|p| p.value).collect();
        assert_eq!(values, [Some(7.0), Some(2.25)]);
        assert_eq!(observable.points[0].start_unix_nano, None);

        let gauge = metric(&metrics, "fixture-grpc", "sync.gauge");
        assert_eq!(gauge.points[0].value, Some(-3.0));
        assert_eq!(gauge.points[0].attributes, map(&[("zone", "a")]));

        let summary = metric(&metrics, "proto-summary", "rpc.summary");
        assert_eq!(summary.kind, MetricKind::Summary);
        let point = &summary.points[0];
        assert_eq!(point.attributes, map(&[("m", "call")]));
        assert_eq!((point.count, point.sum), (Some(3), Some(1.5)));
        assert_eq!(point.quantiles, [(0.5, 0.4), (0.99, 0.9)]);
    }

    #[test]
    fn trailing_blanks_and_crlf_change_nothing() {
        let stripped: String = FIXTURE
            .lines()
            .map(|l| l.trim_end().to_owned() + "\n")
            .collect();
        assert_eq!(parse(&stripped), parse(FIXTURE));
        let crlf = FIXTURE.replace('\n', "\r\n");
        assert_eq!(parse(&crlf), parse(FIXTURE));
    }

    #[test]
    fn log_lines_and_half_blocks_are_skipped() {
        assert_eq!(
            classify("2026-12-03T17:01:01.304197Z  INFO Starting Rotel."),
            Line::Log
        );
        assert_eq!(
            parse("garbage\nSpan #0\n"),
            Parsed {
                spans: vec![Span::default()],
                metrics: vec![],
            }
        );
        // A block cut off mid-way (output still arriving) yields what it has so far.
        let cut = FIXTURE
            .split_inclusive('\n')
            .take_while(|line| !line.starts_with("Attributes:"))
            .collect::<String>();
        let spans = parse(&cut).spans;
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].name, "inner.work");
        assert!(spans[0].attributes.is_empty());
    }

    /// What [`Collector::start`] retries on: rotel exits at once, saying so on stderr.
    #[tokio::test]
    async fn a_port_taken_meanwhile_is_told_apart() {
        if !installed() {
            return;
        }
        let taken = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let (grpc, _) = free_ports();
        let agent = agent().expect("installed");
        let said = Collector::try_start(&agent, (grpc, taken.local_addr().expect("address")))
            .await
            .err()
            .expect("rotel cannot listen on a port taken");
        assert!(said.contains("Address already in use"), "{said}");
    }

    #[test]
    fn a_long_output_is_cut_at_a_char_boundary() {
        let text = "é".repeat(20_000);
        assert!(tail(&text).len() <= 16 * 1024);
        assert!(text.ends_with(tail(&text)));
    }
}
