//! Logging: tracing to stderr, human-readable or JSON lines, filtered by `RUST_LOG` or else by
//! `log.level` from the configuration.
//!
//! serenity records each Discord request, body included (a message's text), as a field of
//! info-level spans; unless a filter names serenity itself, its spans and events are kept to
//! warnings, so no subscriber sees a message body at info level.

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Appended to filters that do not mention serenity.
const QUIET_DEPENDENCIES: &str = "serenity=warn";

/// The filter `directives` describe, or None when they do not parse.
pub fn filter(directives: &str) -> Option<EnvFilter> {
    let directives = if directives.contains("serenity") {
        directives.to_owned()
    } else {
        format!("{directives},{QUIET_DEPENDENCIES}")
    };
    EnvFilter::try_new(directives).ok()
}

/// Installs the global subscriber; later calls (several servers in one test process) are no-ops.
pub fn init(config: &LogConfig) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|d| !d.trim().is_empty())
        .and_then(|d| filter(&d))
        .or_else(|| filter(&config.level))
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}
