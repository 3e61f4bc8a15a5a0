//! OpenTelemetry exporter for Azure Monitor (Application Insights). (docs in progress)
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod connection_string;
mod convert;
mod error;
#[cfg(feature = "trace")]
mod trace;
mod transmit;
mod wire;

pub use error::BuildError;
#[cfg(feature = "trace")]
pub use trace::{SpanExporter, SpanExporterBuilder};
pub use transmit::RetryPolicy;

#[cfg(feature = "testing")]
pub mod testing;

pub use connection_string::{ConnectionString, ConnectionStringError};
