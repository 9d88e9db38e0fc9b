//! Telemetry for every binary, initialised the same way: log lines, and OpenTelemetry traces and
//! metrics.
//!
//! - Logs go to stdout (the container convention), as text or JSON; a JSON line carries the
//!   `trace_id` and `span_id` of the span it was logged in, so logs join the trace.
//! - A `tracing` span becomes an OpenTelemetry span when it declares an `otel.kind` field
//!   (`server`, `client` or `internal`) at INFO or above: the spans the platform means to show
//!   (a request, an MCP operation, an expert's turn, a model call, a store operation). Libraries'
//!   spans and health probes stay out of traces. Span fields follow the OpenTelemetry semantic
//!   conventions (`http.request.method`, `mcp.method.name`, `gen_ai.request.model`...);
//!   `otel.name` names the span and `otel.status_code` marks a failure.
//! - Trace context always flows (W3C `traceparent`, see [`propagation`]) and log lines always
//!   carry ids; only with `OTEL_EXPORTER_OTLP_ENDPOINT` set are spans and metrics exported
//!   ([`export`]), from a background thread that never blocks a request (a dead collector loses
//!   telemetry, never a request).
//! - [`metrics`]: the instruments every service records, and the Prometheus endpoint.

mod export;
pub mod metrics;
pub mod propagation;

use std::io::IsTerminal;

use tracing::{Metadata, level_filters::LevelFilter};
use tracing_subscriber::{
    EnvFilter, Layer, Registry, filter::filter_fn, fmt, prelude::*, registry::LookupSpan,
};

use crate::config::{ConfigError, LogFormat, TelemetryArgs};

pub use export::Telemetry;
pub use propagation::{TraceParent, continue_trace, parent_of, trace_headers};

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Installs the global `tracing` subscriber and, when configured, the OpenTelemetry exporters
/// and the Prometheus endpoint. Call once, at the top of `main`, inside the tokio runtime (the
/// gRPC exporter and the metrics endpoint run on it); keep the returned [`Telemetry`] until the
/// process ends, and call its `shutdown` to send what is still buffered.
///
/// `service` is the service's name in traces and metrics unless `OTEL_SERVICE_NAME` (or
/// `service.name` in `OTEL_RESOURCE_ATTRIBUTES`) says otherwise. The log filter is validated
/// here so a typo in `RUST_LOG` is reported instead of silently logging nothing.
pub fn init(args: &TelemetryArgs, service: &str) -> Result<Telemetry, ConfigError> {
    let filter = EnvFilter::try_new(&args.log_filter)
        .map_err(|e| ConfigError::new("RUST_LOG", e.to_string()))?;
    let telemetry = Telemetry::start(&args.otel, service)?;
    let logs: BoxedLayer = match args.log_format {
        LogFormat::Text => fmt::layer()
            .with_target(true)
            .with_ansi(std::io::stdout().is_terminal())
            .fmt_fields(WithoutOtelFields)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => {
            let mut layer = json_subscriber::fmt::layer()
                .flatten_event(true)
                .with_current_span(false);
            layer
                .inner_layer_mut()
                .add_multiple_dynamic_fields(|event, context, writer| {
                    if let Some((trace_id, span_id)) = trace_ids(event, context) {
                        let _ = writer.write_field("trace_id", trace_id);
                        let _ = writer.write_field("span_id", span_id);
                    }
                });
            layer.with_filter(filter).boxed()
        }
    };
    let mut layers = vec![logs];
    if let Some(tracer) = telemetry.tracer() {
        layers.push(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_location(false)
                .with_threads(false)
                .with_level(false)
                .with_target(false)
                .with_tracked_inactivity(false)
                .with_filter(filter_fn(is_exported_span).with_max_level_hint(LevelFilter::INFO))
                .boxed(),
        );
    }
    let disabled = layers.len() == 1;
    // A subscriber already installed (a test harness did it) is not an error worth failing on.
    let _ = tracing_subscriber::registry().with(layers).try_init();
    if disabled {
        tracing::warn!(
            "OpenTelemetry is disabled (OTEL_SDK_DISABLED): no spans, no export, no trace ids in \
             logs, and callers' trace context is not passed on"
        );
    }
    if telemetry.exports() {
        tracing::info!(
            endpoint = args.otel.endpoint.as_deref().unwrap_or_default(),
            protocol = ?args.otel.protocol,
            sampler = ?args.otel.sampler,
            "exporting traces and metrics over OTLP"
        );
    }
    if let Some(addr) = telemetry.metrics_addr() {
        tracing::info!("serving metrics for Prometheus on http://{addr}/metrics");
    }
    Ok(telemetry)
}

/// Span and event fields for a person: `otel.name`, `otel.kind` and `otel.status_code` steer
/// the exporter and repeat what the line says already, so text logs leave them out.
struct WithoutOtelFields;

impl<'w> fmt::FormatFields<'w> for WithoutOtelFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        writer: fmt::format::Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        let mut visitor = TextFields {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct TextFields<'w> {
    writer: fmt::format::Writer<'w>,
    first: bool,
    result: std::fmt::Result,
}

impl tracing::field::Visit for TextFields<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let name = field.name();
        if self.result.is_err() || name.starts_with("otel.") {
            return;
        }
        let separator = if std::mem::take(&mut self.first) {
            ""
        } else {
            " "
        };
        self.result = match name {
            "message" => write!(self.writer, "{separator}{value:?}"),
            _ => write!(self.writer, "{separator}{name}={value:?}"),
        };
    }
}

/// Whether a span goes to OpenTelemetry: it says which kind of span it is, at INFO or above.
fn is_exported_span(metadata: &Metadata<'_>) -> bool {
    metadata.is_span()
        && *metadata.level() <= tracing::Level::INFO
        && metadata.fields().field("otel.kind").is_some()
}

/// The trace and span ids of the innermost exported span around `event`, as lowercase hex.
fn trace_ids<S>(
    event: &tracing::Event<'_>,
    context: &tracing_subscriber::layer::Context<'_, S>,
) -> Option<(String, String)>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    use opentelemetry::trace::TraceContextExt;
    let scope = context.event_scope(event)?;
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    scope.into_iter().find_map(|span| {
        let cx = tracing_opentelemetry::get_otel_context(&span.id(), &dispatch)?;
        let otel = cx.span();
        let ids = otel.span_context();
        ids.is_valid()
            .then(|| (ids.trace_id().to_string(), ids.span_id().to_string()))
    })
}
