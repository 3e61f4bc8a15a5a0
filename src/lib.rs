//! OpenTelemetry exporter for Azure Monitor (Application Insights). (docs in progress)
#![cfg_attr(docsrs, feature(doc_cfg))]

mod connection_string;
mod convert;
mod transmit;
#[allow(dead_code)]
mod wire;

#[cfg(feature = "testing")]
pub mod testing;

pub use connection_string::{ConnectionString, ConnectionStringError};
