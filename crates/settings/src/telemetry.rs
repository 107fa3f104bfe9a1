use crate::{LogFormat, LogSettings};
use tracing_subscriber::EnvFilter;

/// Sets up tracing once per process: `RUST_LOG` if set, else `log.filter`; pretty or JSON
/// lines on stderr. A second call (tests) keeps the first subscriber.
pub fn init_tracing(log: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}
