#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
// With only some of the signal features, parts of the shared layers (the semantic-convention
// table, the wire types of the other signals) are unused by design.
#![cfg_attr(
    not(all(feature = "trace", feature = "logs", feature = "metrics")),
    allow(dead_code, unused_imports, unused_macros)
)]

pub mod auth;
#[cfg(feature = "reqwest-middleware")]
mod client_middleware;
mod config;
mod connection_string;
mod convert;
mod error;
#[cfg(any(feature = "trace", feature = "logs"))]
mod flush;
#[cfg(feature = "live-metrics")]
mod live_metrics;
#[cfg(feature = "logs")]
mod logs;
#[cfg(feature = "metrics")]
mod metrics;
pub mod processor;
pub mod resource;
#[cfg(feature = "trace")]
pub mod sampling;
#[cfg(all(feature = "trace", feature = "logs", feature = "metrics"))]
mod setup;
#[cfg(feature = "trace")]
mod standard_metrics;
#[cfg(feature = "trace")]
mod trace;
mod transmit;
mod wire;

#[cfg(feature = "reqwest-middleware")]
pub use client_middleware::ReqwestTracingMiddleware;
pub use error::BuildError;
#[cfg(any(feature = "trace", feature = "logs"))]
pub use flush::FlushProcessor;
#[cfg(all(feature = "live-metrics", feature = "testing"))]
pub use live_metrics::LiveMetricsIntervals;
#[cfg(all(feature = "live-metrics", feature = "logs"))]
pub use live_metrics::LiveMetricsLogProcessor;
#[cfg(all(feature = "live-metrics", feature = "trace"))]
pub use live_metrics::LiveMetricsSpanProcessor;
#[cfg(feature = "live-metrics")]
pub use live_metrics::{LiveMetrics, LiveMetricsBuilder};
#[cfg(feature = "logs")]
pub use logs::{LogExporter, LogExporterBuilder};
#[cfg(feature = "metrics")]
pub use metrics::{MetricExporter, MetricExporterBuilder};
pub use processor::{ContextTag, ItemKind, TelemetryItem};
#[cfg(feature = "trace")]
pub use sampling::{ApplicationInsightsSampler, RateLimitedSampler, SamplerError};
#[cfg(all(feature = "trace", feature = "logs", feature = "metrics"))]
pub use setup::{AzureMonitor, AzureMonitorBuilder, SetupError, ShutdownError};
#[cfg(feature = "trace")]
pub use standard_metrics::{StandardMetricsProcessor, StandardMetricsProcessorBuilder};
#[cfg(feature = "trace")]
pub use trace::{SpanExporter, SpanExporterBuilder};
pub use transmit::{DeliveryReport, RetryPolicy};

#[cfg(feature = "testing")]
pub mod testing;

pub use connection_string::{ConnectionString, ConnectionStringError};
