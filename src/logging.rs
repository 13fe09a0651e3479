//! tracing set-up: `RUST_LOG` wins over the config's level; colours only on a terminal,
//! because journald adds its own timestamps and does not render escape codes.

use std::io::IsTerminal;

use tracing_subscriber::{fmt, prelude::*, EnvFilter};

use crate::config::{LogConfig, LogFormat};

pub fn init(config: &LogConfig) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => EnvFilter::try_new(v)?,
        _ => EnvFilter::try_new(&config.level)
            .map_err(|e| anyhow::anyhow!("invalid log.level {:?}: {e}", config.level))?,
    };
    let terminal = std::io::stderr().is_terminal();
    let registry = tracing_subscriber::registry().with(filter);
    match config.format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .with_ansi(false)
                    .with_writer(std::io::stderr),
            )
            .try_init()?,
        LogFormat::Compact if terminal => registry
            .with(fmt::layer().compact().with_writer(std::io::stderr))
            .try_init()?,
        LogFormat::Compact => registry
            .with(
                fmt::layer()
                    .compact()
                    .with_ansi(false)
                    .without_time()
                    .with_writer(std::io::stderr),
            )
            .try_init()?,
    }
    Ok(())
}
