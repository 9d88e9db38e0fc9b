//! The OpenTelemetry providers of a process: spans (always, so trace context flows and logs carry
//! ids) and, when configured, their export over OTLP; metrics over OTLP and for Prometheus.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::{
    Resource,
    metrics::{PeriodicReader, SdkMeterProvider},
    resource::TelemetryResourceDetector,
    trace::{Sampler, SdkTracer, SdkTracerProvider},
};

use crate::config::{ConfigError, OtelArgs, OtlpProtocol, TraceSampler};

/// How long one export may take before it is given up (the spans of that batch are lost).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long shutting down may wait for the last spans, and then the last metrics, to reach the
/// collector: a hung collector delays a stop by twice this, well within a container's grace.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

/// What [`super::init`] started; dropping it sends what is buffered (within a few seconds) and
/// stops the exporters.
pub struct Telemetry {
    /// `None` with `OTEL_SDK_DISABLED=true`.
    tracers: Option<SdkTracerProvider>,
    meters: Option<SdkMeterProvider>,
    service: String,
    exports: bool,
    metrics_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("service", &self.service)
            .field("exports", &self.exports)
            .field("metrics_addr", &self.metrics_addr)
            .finish_non_exhaustive()
    }
}

impl Telemetry {
    pub(super) fn start(args: &OtelArgs, service: &str) -> Result<Self, ConfigError> {
        if args.disabled {
            return Ok(Telemetry {
                tracers: None,
                meters: None,
                service: service.to_owned(),
                exports: false,
                metrics_addr: None,
            });
        }
        let resource = resource(args, service)?;
        let service = resource
            .get(&opentelemetry::Key::from_static_str("service.name"))
            .map_or_else(|| service.to_owned(), |name| name.to_string());
        let mut tracers = SdkTracerProvider::builder()
            .with_sampler(sampler(args)?)
            .with_resource(resource.clone());
        let mut meters = SdkMeterProvider::builder().with_resource(resource);
        let mut metered = false;
        if let Some(endpoint) = &args.endpoint {
            check_endpoint(endpoint)?;
            let headers = headers(args.headers.as_deref())?;
            let interval = Duration::from_millis(args.metric_export_interval_ms.max(100));
            let (spans, metrics) = match args.protocol {
                OtlpProtocol::HttpProtobuf => http_exporters(endpoint, headers)?,
                OtlpProtocol::Grpc => grpc_exporters(endpoint, headers)?,
            };
            tracers = tracers.with_batch_exporter(spans);
            meters = meters.with_reader(
                PeriodicReader::builder(metrics)
                    .with_interval(interval)
                    .build(),
            );
            metered = true;
        }
        let metrics_addr = match args.metrics_bind_addr {
            Some(addr) => {
                let registry = prometheus::Registry::new();
                let reader = opentelemetry_prometheus::exporter()
                    .with_registry(registry.clone())
                    .build()
                    .map_err(|e| ConfigError::new("METRICS_BIND_ADDR", e.to_string()))?;
                meters = meters.with_reader(reader);
                metered = true;
                Some(super::metrics::serve_prometheus(addr, registry)?)
            }
            None => None,
        };
        let meters = metered.then(|| meters.build());
        if let Some(meters) = &meters {
            // Instruments are made from the global provider (see `metrics`); without a reader
            // it stays the no-op one, and recording costs nothing.
            opentelemetry::global::set_meter_provider(meters.clone());
        }
        Ok(Telemetry {
            tracers: Some(tracers.build()),
            meters,
            service,
            exports: args.endpoint.is_some(),
            metrics_addr,
        })
    }

    /// The tracer spans are made with; `None` when OpenTelemetry is disabled.
    pub(super) fn tracer(&self) -> Option<SdkTracer> {
        use opentelemetry::trace::TracerProvider;
        let tracers = self.tracers.as_ref()?;
        Some(tracers.tracer(self.service.clone()))
    }

    /// Whether spans and metrics leave the process over OTLP.
    pub fn exports(&self) -> bool {
        self.exports
    }

    /// Where the Prometheus endpoint listens, when it does.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Sends what is buffered and stops exporting (what dropping does).
    pub fn shutdown(self) {}
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        // Errors here are a collector gone or already shut down: nothing left to tell anyone.
        if let Some(tracers) = &self.tracers {
            let _ = tracers.shutdown_with_timeout(SHUTDOWN_TIMEOUT);
        }
        if let Some(meters) = &self.meters {
            let _ = meters.shutdown_with_timeout(SHUTDOWN_TIMEOUT);
        }
    }
}

type Exporters = (
    opentelemetry_otlp::SpanExporter,
    opentelemetry_otlp::MetricExporter,
);

/// OTLP over HTTP with protobuf bodies, to `<endpoint>/v1/traces` and `<endpoint>/v1/metrics`
/// as the specification says for the signal-independent endpoint variable.
fn http_exporters(
    endpoint: &str,
    headers: HashMap<String, String>,
) -> Result<Exporters, ConfigError> {
    let base = endpoint.trim_end_matches('/');
    let spans = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(format!("{base}/v1/traces"))
        .with_headers(headers.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(endpoint_error)?;
    let metrics = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(format!("{base}/v1/metrics"))
        .with_headers(headers)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(endpoint_error)?;
    Ok((spans, metrics))
}

/// OTLP over gRPC (tonic, on the tokio runtime this is called in); TLS for `https://`.
fn grpc_exporters(
    endpoint: &str,
    headers: HashMap<String, String>,
) -> Result<Exporters, ConfigError> {
    use axum::http::{HeaderMap, HeaderName, HeaderValue};
    let mut map = HeaderMap::new();
    for (key, value) in headers {
        let name = HeaderName::from_bytes(key.as_bytes()).map_err(|_| {
            ConfigError::new(
                "OTEL_EXPORTER_OTLP_HEADERS",
                format!("{key:?} is not a header name"),
            )
        })?;
        let value = HeaderValue::from_str(&value).map_err(|_| {
            ConfigError::new(
                "OTEL_EXPORTER_OTLP_HEADERS",
                format!("the value of {key} is not a header value"),
            )
        })?;
        map.insert(name, value);
    }
    let metadata = opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(map);
    let tls = endpoint.starts_with("https://").then(|| {
        opentelemetry_otlp::tonic_types::transport::ClientTlsConfig::new().with_enabled_roots()
    });
    let mut spans = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_metadata(metadata.clone())
        .with_timeout(EXPORT_TIMEOUT);
    let mut metrics = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_metadata(metadata)
        .with_timeout(EXPORT_TIMEOUT);
    if let Some(tls) = tls {
        spans = spans.with_tls_config(tls.clone());
        metrics = metrics.with_tls_config(tls);
    }
    Ok((
        spans.build().map_err(endpoint_error)?,
        metrics.build().map_err(endpoint_error)?,
    ))
}

fn endpoint_error(error: opentelemetry_otlp::ExporterBuildError) -> ConfigError {
    ConfigError::new("OTEL_EXPORTER_OTLP_ENDPOINT", error.to_string())
}

fn check_endpoint(endpoint: &str) -> Result<(), ConfigError> {
    let url = reqwest::Url::parse(endpoint).map_err(|e| {
        ConfigError::new(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("{endpoint:?} is not a URL: {e}"),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ConfigError::new(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("{endpoint:?} must be an http:// or https:// URL with a host"),
        ));
    }
    Ok(())
}

/// The process's resource: `service.name` (from `OTEL_SERVICE_NAME`, else from
/// `OTEL_RESOURCE_ATTRIBUTES`, else the binary's name), the other resource attributes, and the
/// SDK's own (`telemetry.sdk.*`).
fn resource(args: &OtelArgs, service: &str) -> Result<Resource, ConfigError> {
    let attributes = match args.resource_attributes.as_deref() {
        Some(text) => pairs("OTEL_RESOURCE_ATTRIBUTES", text)?,
        None => Vec::new(),
    };
    let named = attributes
        .iter()
        .find(|(key, _)| key == "service.name")
        .map(|(_, value)| value.clone());
    let name = args
        .service_name
        .clone()
        .filter(|name| !name.is_empty())
        .or(named)
        .unwrap_or_else(|| service.to_owned());
    Ok(Resource::builder_empty()
        .with_detector(Box::new(TelemetryResourceDetector))
        .with_attributes(
            attributes
                .into_iter()
                .filter(|(key, _)| key != "service.name")
                .map(|(key, value)| KeyValue::new(key, value)),
        )
        .with_service_name(name)
        .build())
}

fn sampler(args: &OtelArgs) -> Result<Sampler, ConfigError> {
    let ratio = match args.sampler_arg {
        None => 1.0,
        Some(ratio) if (0.0..=1.0).contains(&ratio) => ratio,
        Some(ratio) => {
            return Err(ConfigError::new(
                "OTEL_TRACES_SAMPLER_ARG",
                format!("{ratio} is not a ratio between 0 and 1"),
            ));
        }
    };
    Ok(match args.sampler {
        TraceSampler::AlwaysOn => Sampler::AlwaysOn,
        TraceSampler::AlwaysOff => Sampler::AlwaysOff,
        TraceSampler::Traceidratio => Sampler::TraceIdRatioBased(ratio),
        TraceSampler::ParentbasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        TraceSampler::ParentbasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        TraceSampler::ParentbasedTraceidratio => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)))
        }
    })
}

fn headers(text: Option<&str>) -> Result<HashMap<String, String>, ConfigError> {
    Ok(match text {
        Some(text) => pairs("OTEL_EXPORTER_OTLP_HEADERS", text)?
            .into_iter()
            .collect(),
        None => HashMap::new(),
    })
}

/// `key=value` pairs separated by commas, values percent-decoded, as the OpenTelemetry
/// environment variables write lists. Empty entries are skipped.
fn pairs(variable: &'static str, text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    text.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let (key, value) = entry.split_once('=').ok_or_else(|| {
                // The entry itself may be a secret (a header's value): name its position only.
                ConfigError::new(variable, "every entry must be key=value")
            })?;
            let key = key.trim();
            if key.is_empty() {
                return Err(ConfigError::new(variable, "an entry has an empty key"));
            }
            let value = percent_encoding::percent_decode_str(value.trim())
                .decode_utf8()
                .map_err(|_| {
                    ConfigError::new(variable, format!("the value of {key} is not UTF-8"))
                })?;
            Ok((key.to_owned(), value.into_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_key_value_pairs_with_percent_encoded_values() {
        let parsed = pairs("X", " a=1 , b=x%20y%2Cz,,c= ").expect("parses");
        assert_eq!(
            parsed,
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y,z".into()),
                ("c".into(), String::new())
            ]
        );
        let error = pairs("OTEL_EXPORTER_OTLP_HEADERS", "api-key").expect_err("no =");
        assert_eq!(error.variable, "OTEL_EXPORTER_OTLP_HEADERS");
        assert!(!error.message.contains("api-key"), "{}", error.message);
    }

    #[test]
    fn the_service_name_comes_from_the_setting_then_the_attributes_then_the_binary() {
        let name = |args: &OtelArgs| {
            resource(args, "tools-service")
                .expect("resource")
                .get(&opentelemetry::Key::from_static_str("service.name"))
                .map(|v| v.to_string())
        };
        let mut args = OtelArgs::default();
        assert_eq!(name(&args).as_deref(), Some("tools-service"));
        args.resource_attributes =
            Some("service.name=from-attrs,deployment.environment.name=ci".into());
        assert_eq!(name(&args).as_deref(), Some("from-attrs"));
        args.service_name = Some("contoso-tools".into());
        assert_eq!(name(&args).as_deref(), Some("contoso-tools"));
        let resource = resource(&args, "x").expect("resource");
        assert_eq!(
            resource
                .get(&opentelemetry::Key::from_static_str(
                    "deployment.environment.name"
                ))
                .map(|v| v.to_string())
                .as_deref(),
            Some("ci")
        );
    }

    #[test]
    fn bad_settings_name_their_variable() {
        assert_eq!(
            check_endpoint("localhost:4318")
                .expect_err("no scheme")
                .variable,
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        );
        assert!(check_endpoint("http://127.0.0.1:4318").is_ok());
        let args = OtelArgs {
            sampler: TraceSampler::Traceidratio,
            sampler_arg: Some(1.5),
            ..OtelArgs::default()
        };
        assert_eq!(
            sampler(&args).expect_err("ratio").variable,
            "OTEL_TRACES_SAMPLER_ARG"
        );
    }
}
