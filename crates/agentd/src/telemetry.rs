//! Logging: `tracing` to stdout, text or JSON (`LOG_FORMAT`), filtered by `RUST_LOG` or `LOG_LEVEL`. Request
//! spans carry `request_id`, so every line of a request names it. Log lines known to carry secrets are off.

use agentd_config::{LogFormat, LogSettings};
use tracing_subscriber::EnvFilter;

pub fn init(log: &LogSettings) {
    let mut filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(format!("{},sqlx=warn,hyper=info,h2=info", log.level)))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // sqlx warns about DATABASE_URL parameters it does not know *with their values* (e.g. `sslpassword=…`):
    // that line would put a secret in the log, whatever RUST_LOG says.
    if let Ok(quiet) = "sqlx_postgres::options::parse=error".parse() {
        filter = filter.add_directive(quiet);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let _ = match log.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
