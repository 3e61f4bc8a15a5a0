//! Metric data points → `MetricData` (MAPPING.md §5): one envelope per data point.
//!
//! | aggregation | `value` | `count` | `min` / `max` |
//! |---|---|---|---|
//! | sum (counter, up-down counter, observable ones) | the point's value | 1 | – |
//! | gauge | the point's value | 1 | – |
//! | histogram, exponential histogram (§5.1 R) | the sum | the count | when recorded |
//!
//! The point's attributes become properties (§5.1; no standard-key filtering), except the
//! service's reserved `_MS.*` keys, so that no point can pass for a pre-aggregated standard
//! metric (see below). `ai.operation.syntheticSource` is set for synthetic traffic (§2.5).
//! The time is the end of the collection interval. Points whose value is NaN or infinite are
//! not sent (JSON has no such numbers): the caller reports how many.
//!
//! Standard metrics (§5.3, §5.4):
//!
//! - The metric exporter does not send the portal's standard metrics (`requests/duration`,
//!   `dependencies/duration`): the four HTTP duration instruments
//!   (`http.server.request.duration`, `http.server.duration`, `http.client.request.duration`,
//!   `http.client.duration`) are ordinary custom metrics with their attributes (unlike the
//!   Python exporter). The `StandardMetricsProcessor` counts them from the spans instead, the
//!   .NET way (STANDARD-METRICS.md §4); without it the service extracts them from the items.
//! - Point attributes never pass `_MS.*` keys on, so that no ordinary point can pass for a
//!   standard metric.
//! - The other instrument names the official distros autocollect and cannot map
//!   (`http.server.request.size`, `http.server.response.size`, `http.server.active_requests`,
//!   `http.client.request.size`, `http.client.response.size`) produce no envelope, as in the
//!   Python exporter (test case `py-metric-std-unsupported-dropped`), so that a service sends
//!   the same metrics as its peers that use the official exporters.

use std::time::SystemTime;

use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::data::{
    AggregatedMetrics, MetricData as OtelMetricData, ResourceMetrics,
};

use super::attributes::{insert_property, is_synthetic};
use super::semconv::Key;
use super::Context;
use crate::wire::{
    tag, Bounded, Data, DataPoint, Envelope, MetricData, Properties, Tags, TimeAt, Timestamp,
};

/// Autocollected instrument names that produce no envelope (§5.3).
pub(crate) const DROPPED_INSTRUMENTS: [&str; 5] = [
    "http.server.request.size",
    "http.server.response.size",
    "http.server.active_requests",
    "http.client.request.size",
    "http.client.response.size",
];

/// Prefix of the service's reserved properties, never copied from point attributes.
const RESERVED_PREFIX: &str = "_MS.";

/// What a conversion did not send.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Skipped {
    /// Data points whose value (sum) is NaN or infinite.
    pub(crate) non_finite: usize,
    /// Data points of the instruments in [`DROPPED_INSTRUMENTS`].
    pub(crate) unsupported: usize,
}

/// The numbers of one data point (§5.1 value mapping).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct PointValue {
    /// `value`: the value of a sum or gauge, the sum of a histogram.
    pub(crate) value: f64,
    /// `count`: 1 for a sum or gauge, the number of measurements of a histogram.
    pub(crate) count: u64,
    /// `min` of a histogram, when recorded.
    pub(crate) min: Option<f64>,
    /// `max` of a histogram, when recorded.
    pub(crate) max: Option<f64>,
}

impl PointValue {
    /// A sum or gauge point: the value, count 1.
    pub(crate) fn single(value: f64) -> Self {
        PointValue {
            value,
            count: 1,
            min: None,
            max: None,
        }
    }
}

/// A number the SDK aggregates (`f64`, `u64`, `i64`).
trait Number: Copy {
    fn to_f64(self) -> f64;
}

impl Number for f64 {
    fn to_f64(self) -> f64 {
        self
    }
}

impl Number for u64 {
    fn to_f64(self) -> f64 {
        self as f64
    }
}

impl Number for i64 {
    fn to_f64(self) -> f64 {
        self as f64
    }
}

/// How a metric exporter converts its points.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct MetricOptions {
    /// Every point gets `ns` = its meter's (instrumentation scope's) name.
    pub(crate) namespace: bool,
}

/// Converts one collection (MAPPING.md §5.1) into `out`. Returns what was left out.
pub(crate) fn metrics_to_envelopes<'a>(
    metrics: &'a ResourceMetrics,
    cx: &Context<'a>,
    options: MetricOptions,
    out: &mut Vec<Envelope<'a>>,
) -> Skipped {
    let mut points = Points {
        cx,
        name: "",
        ns: None,
        out,
        skipped: Skipped::default(),
    };
    for scope in metrics.scope_metrics() {
        points.ns = Some(scope.scope().name()).filter(|n| options.namespace && !n.is_empty());
        for metric in scope.metrics() {
            points.name = metric.name();
            let dropped = DROPPED_INSTRUMENTS.contains(&metric.name());
            match metric.data() {
                AggregatedMetrics::F64(data) => points.metric(data, dropped),
                AggregatedMetrics::U64(data) => points.metric(data, dropped),
                AggregatedMetrics::I64(data) => points.metric(data, dropped),
            }
        }
    }
    points.skipped
}

/// Collects the envelopes of the points of one metric after another.
struct Points<'a, 'o> {
    cx: &'o Context<'a>,
    name: &'a str,
    ns: Option<&'a str>,
    out: &'o mut Vec<Envelope<'a>>,
    skipped: Skipped,
}

impl<'a> Points<'a, '_> {
    fn metric<T: Number>(&mut self, data: &'a OtelMetricData<T>, dropped: bool) {
        match data {
            OtelMetricData::Gauge(g) => {
                for p in g.data_points() {
                    self.point(
                        dropped,
                        PointValue::single(p.value().to_f64()),
                        p.attributes(),
                        g.time(),
                    );
                }
            }
            OtelMetricData::Sum(s) => {
                for p in s.data_points() {
                    self.point(
                        dropped,
                        PointValue::single(p.value().to_f64()),
                        p.attributes(),
                        s.time(),
                    );
                }
            }
            OtelMetricData::Histogram(h) => {
                for p in h.data_points() {
                    let value = PointValue {
                        value: p.sum().to_f64(),
                        count: p.count(),
                        min: p.min().map(Number::to_f64),
                        max: p.max().map(Number::to_f64),
                    };
                    self.point(dropped, value, p.attributes(), h.time());
                }
            }
            OtelMetricData::ExponentialHistogram(h) => {
                for p in h.data_points() {
                    let value = PointValue {
                        value: p.sum().to_f64(),
                        count: u64::try_from(p.count()).unwrap_or(u64::MAX),
                        min: p.min().map(Number::to_f64),
                        max: p.max().map(Number::to_f64),
                    };
                    self.point(dropped, value, p.attributes(), h.time());
                }
            }
        }
    }

    fn point(
        &mut self,
        dropped: bool,
        value: PointValue,
        attributes: impl Iterator<Item = &'a KeyValue>,
        time: SystemTime,
    ) {
        if dropped {
            self.skipped.unsupported += 1;
            return;
        }
        let envelope = point_envelope(self.cx, self.name, self.ns, value, attributes, time);
        match envelope {
            Some(envelope) => self.out.push(envelope),
            None => self.skipped.non_finite += 1,
        }
    }
}

/// The envelope of one data point (§5.1), `None` when its value is NaN or infinite (a
/// non-finite `min` or `max` is left out).
pub(crate) fn point_envelope<'a>(
    cx: &Context<'a>,
    name: &'a str,
    ns: Option<&'a str>,
    value: PointValue,
    attributes: impl Iterator<Item = &'a KeyValue>,
    time: SystemTime,
) -> Option<Envelope<'a>> {
    if !value.value.is_finite() {
        return None;
    }
    // Allocated once, at the attribute count (capped: the bound is only a hint).
    let (low, high) = attributes.size_hint();
    let mut properties = Properties::with_capacity(high.unwrap_or(low).min(64));
    let mut synthetic_type = None;
    let mut user_agent = None;
    for kv in attributes {
        let key = kv.key.as_str();
        match Key::lookup(key) {
            Some(Key::UserAgentSyntheticType) => synthetic_type = Some(kv.value.as_str()),
            Some(Key::UserAgentOriginal) => user_agent = Some(kv.value.as_str()),
            Some(Key::HttpUserAgent) if user_agent.is_none() => {
                user_agent = Some(kv.value.as_str());
            }
            _ => {}
        }
        if !key.starts_with(RESERVED_PREFIX) {
            insert_property(&mut properties, key, &kv.value);
        }
    }
    let mut tags = Tags::new(cx.tags);
    if is_synthetic(synthetic_type.as_deref(), user_agent.as_deref()) {
        tags.set(tag::OPERATION_SYNTHETIC_SOURCE, "True");
    }
    let finite = |v: Option<f64>| v.filter(|v| v.is_finite());
    Some(Envelope {
        time: Timestamp(time),
        sample_rate: None,
        ikey: cx.ikey,
        tags,
        time_at: TimeAt::AfterTags,
        data: Data::Metric(MetricData {
            ver: (),
            metrics: vec![DataPoint {
                ns: ns.map(Bounded::new),
                name: Bounded::new(name),
                value: value.value,
                count: Some(i32::try_from(value.count).unwrap_or(i32::MAX)),
                min: finite(value.min),
                max: finite(value.max),
                ..DataPoint::default()
            }],
            properties,
        }),
    })
}

#[cfg(test)]
mod py_cases;
#[cfg(test)]
mod tests;
