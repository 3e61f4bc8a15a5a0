//! OpenTelemetry exporter for Azure Monitor (Application Insights). (docs in progress)
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod connection_string;
mod convert;
mod error;
#[cfg(feature = "logs")]
mod logs;
#[cfg(feature = "metrics")]
mod metrics;
#[cfg(feature = "trace")]
mod trace;
mod transmit;
mod wire;

pub use error::BuildError;
#[cfg(feature = "logs")]
pub use logs::{LogExporter, LogExporterBuilder};
#[cfg(feature = "metrics")]
pub use metrics::{MetricExporter, MetricExporterBuilder};
#[cfg(feature = "trace")]
pub use trace::{SpanExporter, SpanExporterBuilder};
pub use transmit::RetryPolicy;

#[cfg(feature = "testing")]
pub mod testing;

pub use connection_string::{ConnectionString, ConnectionStringError};
