//! OpenTelemetry exporter for Azure Monitor (Application Insights). (docs in progress)
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod connection_string;
mod convert;
mod error;
mod transmit;
#[allow(dead_code)]
mod wire;

pub use error::BuildError;
pub use transmit::RetryPolicy;

#[cfg(feature = "testing")]
pub mod testing;

pub use connection_string::{ConnectionString, ConnectionStringError};
