#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
// With only some of the signal features, parts of the shared layers (the semantic-convention
// table, the wire types of the other signals) are unused by design.
#![cfg_attr(
    not(all(feature = "trace", feature = "logs", feature = "metrics")),
    allow(dead_code, unused_imports, unused_macros)
)]

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
pub use transmit::{DeliveryReport, RetryPolicy};

#[cfg(feature = "testing")]
pub mod testing;

pub use connection_string::{ConnectionString, ConnectionStringError};
