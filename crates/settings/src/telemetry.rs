use crate::{LogFormat, LogSettings};
use opentelemetry::trace::TracerProvider as _;
use std::io::IsTerminal;
use std::sync::OnceLock;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The variable that turns OpenTelemetry traces on (the standard one: its value is the
/// collector's base URL, such as `http://otel-collector:4318`).
pub const OTLP_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// Every variable the SDK reads a collector's address from.
const OTLP_ENDPOINT_VARS: [&str; 2] = [OTLP_ENDPOINT_VAR, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"];

/// Refuses a collector address this build cannot send to, before anything starts: its OTLP
/// client speaks plain HTTP only (no TLS stack of its own), and an `https://` endpoint would
/// drop every span without a word.
pub fn check_trace_endpoint() -> Result<(), crate::SettingsError> {
    for var in OTLP_ENDPOINT_VARS {
        let Ok(value) = std::env::var(var) else {
            continue;
        };
        let trimmed = value.trim();
        if !trimmed.is_empty() && !trimmed.to_ascii_lowercase().starts_with("http://") {
            return Err(crate::SettingsError::UnsupportedTraceEndpoint { var, value });
        }
    }
    Ok(())
}

/// The tracer provider when traces are exported; flushed by [`shutdown_tracing`].
static PROVIDER: OnceLock<opentelemetry_sdk::trace::SdkTracerProvider> = OnceLock::new();

/// Sets up tracing once per process: `RUST_LOG` if set, else `log.filter`; pretty or JSON
/// lines on stderr; and, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, spans exported to that
/// OpenTelemetry collector (OTLP over HTTP, JSON bodies, batched in a thread of their own).
/// Without it no exporter exists and spans cost what they cost before. A second call
/// (tests) keeps the first subscriber.
pub fn init_tracing(log: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match log.format {
        // Span fields (job id, queue, target, me_file, band, trace id) go on every line of a
        // job.
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .boxed(),
        // Colours only for a person at a terminal, not in files or log collectors.
        LogFormat::Pretty => fmt
            .compact()
            .with_ansi(std::io::stderr().is_terminal())
            .boxed(),
    };
    let otel = otlp_tracer().map(|tracer| tracing_opentelemetry::layer().with_tracer(tracer));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init();
}

/// The OTLP tracer when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (and names a collector);
/// otherwise `None`, after saying why on stderr when the variable is set but unusable.
fn otlp_tracer() -> Option<opentelemetry_sdk::trace::SdkTracer> {
    let endpoint = std::env::var(OTLP_ENDPOINT_VAR).ok()?;
    if endpoint.trim().is_empty() {
        return None;
    }
    use opentelemetry_otlp::WithExportConfig as _;
    // The SDK reads the endpoint (and OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, headers, timeout)
    // from the environment itself; JSON is the protocol, whatever OTEL_EXPORTER_OTLP_PROTOCOL
    // says, as that is the one this build carries.
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpJson)
        .build()
    {
        Ok(exporter) => exporter,
        Err(err) => {
            eprintln!("warning: {OTLP_ENDPOINT_VAR}={endpoint}: traces not exported: {err}");
            return None;
        }
    };
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| process_name());
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        )
        .build();
    let tracer = provider.tracer("snapline");
    let _ = PROVIDER.set(provider);
    Some(tracer)
}

/// `snapline-<binary>` (`snapline-syncer`, ...): how this process names itself to the
/// database (`application_name`) and to a trace collector (`service.name`).
pub fn process_name() -> String {
    let binary = std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|path| path.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "unknown".to_owned());
    format!("snapline-{binary}")
}

/// Exports the spans still batched (at the end of `main`): a short `run` would otherwise
/// exit before its spans leave. Does nothing when traces are off.
pub fn shutdown_tracing() {
    if let Some(provider) = PROVIDER.get()
        && let Err(err) = provider.shutdown()
    {
        eprintln!("warning: exporting the last traces: {err}");
    }
}
