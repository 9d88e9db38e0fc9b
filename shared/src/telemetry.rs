//! Tracing initialisation shared by every binary, so all services log the same way.

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::{ConfigError, LogFormat, TelemetryArgs};

/// Installs the global `tracing` subscriber. Call once, at the top of `main`.
///
/// Logs go to stdout (the container convention). The filter is validated here so a typo in
/// `RUST_LOG` is reported instead of silently logging nothing.
pub fn init(args: &TelemetryArgs) -> Result<(), ConfigError> {
    let filter = EnvFilter::try_new(&args.log_filter)
        .map_err(|e| ConfigError::new("RUST_LOG", e.to_string()))?;
    let registry = tracing_subscriber::registry().with(filter);
    let result = match args.log_format {
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    .with_target(true)
                    .with_ansi(std::io::stdout().is_terminal()),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false),
            )
            .try_init(),
    };
    // A subscriber already installed (a test harness did it) is not an error worth failing on.
    let _ = result;
    Ok(())
}
