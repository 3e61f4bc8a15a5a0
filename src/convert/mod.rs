//! Conversion from OpenTelemetry data to Track-API envelopes: pure and synchronous, no I/O,
//! no clock (times are passed in). Follows `MAPPING.md` with the Python exporter as the
//! profile and its recommended ("R") rules.
//!
//! - [`tags`]: resource ("Part A") and process tags, computed once per resource;
//! - [`span`]: spans and span events, and the `_OTELRESOURCE_` metric;
//! - [`log`]: log records (feature `logs`);
//! - [`metric`]: metric data points (feature `metrics`);
//! - [`http`]: HTTP URLs, status codes and dependency targets, shared by spans and the
//!   standard metrics;
//! - [`attributes`]: value rendering, measurements, sample rate and context tags, shared by
//!   every signal;
//! - [`semconv`]: the one table of attribute keys, stable and legacy names side by side.

pub(crate) mod attributes;
pub(crate) mod http;
#[cfg(feature = "logs")]
pub(crate) mod log;
#[cfg(feature = "metrics")]
pub(crate) mod metric;
pub(crate) mod semconv;
#[cfg(feature = "trace")]
pub(crate) mod span;
pub(crate) mod tags;

use crate::wire::SharedTags;

// Not used until the exporters are wired up.
#[allow(unused_imports)]
#[cfg(feature = "trace")]
pub(crate) use span::{resource_envelope, span_to_envelopes};
#[allow(unused_imports)]
pub(crate) use tags::shared_tags;

#[cfg(feature = "logs")]
pub(crate) use log::log_to_envelope;
#[cfg(feature = "metrics")]
pub(crate) use metric::{metrics_to_envelopes, MetricOptions};

/// What every item of one export shares: the instrumentation key and the resource and
/// process tags. Deliberately not `Debug`: it holds the instrumentation key.
#[derive(Clone, Copy)]
pub(crate) struct Context<'a> {
    /// Instrumentation key (`iKey` of every envelope).
    pub(crate) ikey: &'a str,
    /// Tags of the resource and the process (see [`shared_tags`]).
    pub(crate) tags: &'a SharedTags,
}
