//! The pure core of the standard metrics: what a span counts as (its item's fields, from the
//! same functions as the item), the per-interval aggregation keyed by dimensions, and the
//! `MetricData` envelopes of an interval (STANDARD-METRICS.md §2, §4).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::SystemTime;

use opentelemetry::trace::SpanKind;
use opentelemetry_sdk::trace::SpanData;

use crate::convert::attributes::is_synthetic;
use crate::convert::semconv::{Key, Known, USER_AGENT};
use crate::convert::span::{dependency_fields, request_fields};
use crate::convert::Context;
use crate::wire::{
    tag, Bounded, Data, DataPoint, DataPointKind, Envelope, MetricData, Properties, Tags, TimeAt,
    Timestamp,
};

/// At most this many series (distinct dimension sets) per interval (§4.6); the spans of
/// further ones are counted in one series per metric and success whose result code, type and
/// target are [`OTHER`].
pub(crate) const MAX_SERIES: usize = 1000;
/// The dimension value of the spans beyond [`MAX_SERIES`].
pub(crate) const OTHER: &str = "Other";

/// The two standard metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Metric {
    /// `requests/duration`: SERVER and CONSUMER spans.
    Requests,
    /// `dependencies/duration`: CLIENT, PRODUCER and INTERNAL spans.
    Dependencies,
}

impl Metric {
    fn id(self) -> &'static str {
        match self {
            Metric::Requests => "requests/duration",
            Metric::Dependencies => "dependencies/duration",
        }
    }
}

/// What one ended span counts as: its item's fields (§4.2).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Observation<'a> {
    pub(crate) metric: Metric,
    /// The item's `success`.
    pub(crate) success: bool,
    /// The item's `responseCode` / `resultCode` (`"0"` when none).
    pub(crate) result_code: Cow<'a, str>,
    /// The dependency's `type` (empty for requests).
    pub(crate) type_: Cow<'a, str>,
    /// The dependency's `target` (empty when none, and for requests).
    pub(crate) target: Cow<'a, str>,
    /// Whether the item has `ai.operation.syntheticSource`.
    pub(crate) synthetic: bool,
    /// The duration in milliseconds.
    pub(crate) duration_ms: f64,
}

/// What `span` counts as, computed by the functions that fill its item's fields.
pub(crate) fn observe(span: &SpanData) -> Observation<'_> {
    let k = Known::scan(&span.attributes, None);
    let synthetic = is_synthetic(k.str(&[Key::UserAgentSyntheticType]), k.str(USER_AGENT));
    let duration_ms = span
        .end_time
        .duration_since(span.start_time)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    match span.span_kind {
        SpanKind::Server | SpanKind::Consumer => {
            let f = request_fields(span, &k);
            Observation {
                metric: Metric::Requests,
                success: f.success,
                result_code: f.response_code,
                type_: Cow::Borrowed(""),
                target: Cow::Borrowed(""),
                synthetic,
                duration_ms,
            }
        }
        _ => {
            let f = dependency_fields(span, &k);
            Observation {
                metric: Metric::Dependencies,
                success: f.success,
                result_code: f.result_code,
                type_: f.type_,
                target: f.target.unwrap_or(Cow::Borrowed("")),
                synthetic,
                duration_ms,
            }
        }
    }
}

/// One series: its dimensions and the interval's aggregate of durations.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Series {
    pub(crate) metric: Metric,
    pub(crate) success: bool,
    pub(crate) result_code: String,
    pub(crate) type_: String,
    pub(crate) target: String,
    pub(crate) synthetic: bool,
    pub(crate) count: u64,
    pub(crate) sum: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

/// The series of the current interval.
#[derive(Debug, Default)]
pub(crate) struct Aggregator {
    series: HashMap<String, Series>,
    /// The key of the observation being added, reused so that counting into an existing
    /// series allocates nothing.
    key: String,
}

impl Aggregator {
    /// Counts one observation.
    pub(crate) fn add(&mut self, o: &Observation<'_>) {
        let mut folded = false;
        write_key(&mut self.key, o, false);
        if !self.series.contains_key(self.key.as_str()) && self.series.len() >= MAX_SERIES {
            folded = true;
            write_key(&mut self.key, o, true);
        }
        if let Some(series) = self.series.get_mut(self.key.as_str()) {
            series.count += 1;
            series.sum += o.duration_ms;
            series.min = series.min.min(o.duration_ms);
            series.max = series.max.max(o.duration_ms);
            return;
        }
        let text = |s: &str| {
            if folded {
                OTHER.to_owned()
            } else {
                s.to_owned()
            }
        };
        self.series.insert(
            self.key.clone(),
            Series {
                metric: o.metric,
                success: o.success,
                result_code: text(&o.result_code),
                type_: text(&o.type_),
                target: text(&o.target),
                synthetic: o.synthetic,
                count: 1,
                sum: o.duration_ms,
                min: o.duration_ms,
                max: o.duration_ms,
            },
        );
    }

    /// The series counted since the last call (empty ones are never kept), sorted by key so
    /// that the output is stable.
    pub(crate) fn take(&mut self) -> Vec<Series> {
        let mut series: Vec<(String, Series)> = self.series.drain().collect();
        series.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        series.into_iter().map(|(_, s)| s).collect()
    }
}

/// The key of an observation's series; `other` replaces result code, type and target.
fn write_key(key: &mut String, o: &Observation<'_>, other: bool) {
    const SEP: char = '\u{1f}';
    key.clear();
    let (code, type_, target) = if other {
        (OTHER, OTHER, OTHER)
    } else {
        (o.result_code.as_ref(), o.type_.as_ref(), o.target.as_ref())
    };
    let _ = write!(
        key,
        "{}{SEP}{}{SEP}{}{SEP}{code}{SEP}{type_}{SEP}{target}",
        o.metric as u8, o.success as u8, o.synthetic as u8
    );
}

fn true_false(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// The `MetricData` envelope of one series (§2): named by the metric id, `value` = the sum of
/// durations in ms, `count`, `min`, `max`, and the dimensions as properties, with the role
/// and role instance of the items' tags.
pub(crate) fn series_envelope<'a>(
    series: &'a Series,
    cx: &Context<'a>,
    time: SystemTime,
) -> Envelope<'a> {
    let mut p = Properties::with_capacity(9);
    p.insert("_MS.MetricId", series.metric.id());
    p.insert("_MS.IsAutocollected", "True");
    match series.metric {
        Metric::Requests => {
            p.insert("Request.Success", true_false(series.success));
            p.insert("request/resultCode", series.result_code.as_str());
        }
        Metric::Dependencies => {
            p.insert("Dependency.Success", true_false(series.success));
            p.insert("Dependency.Type", series.type_.as_str());
            if !series.target.is_empty() {
                p.insert("dependency/target", series.target.as_str());
            }
            p.insert("dependency/resultCode", series.result_code.as_str());
        }
    }
    if series.synthetic {
        p.insert("operation/synthetic", "True");
    }
    if let Some(role) = cx.tags.get(tag::CLOUD_ROLE.name) {
        p.insert("cloud/roleName", role);
    }
    if let Some(instance) = cx.tags.get(tag::CLOUD_ROLE_INSTANCE.name) {
        p.insert("cloud/roleInstance", instance);
    }
    Envelope {
        time: Timestamp(time),
        sample_rate: None,
        ikey: cx.ikey,
        tags: Tags::new(cx.tags),
        time_at: TimeAt::AfterTags,
        data: Data::Metric(MetricData {
            ver: (),
            metrics: vec![DataPoint {
                name: Bounded::new(series.metric.id()),
                kind: Some(DataPointKind::Aggregation),
                value: series.sum,
                count: Some(i32::try_from(series.count).unwrap_or(i32::MAX)),
                min: Some(series.min),
                max: Some(series.max),
                ..DataPoint::default()
            }],
            properties: p,
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn obs(
        metric: Metric,
        code: &'static str,
        target: &'static str,
        ms: f64,
    ) -> Observation<'static> {
        Observation {
            metric,
            success: code != "500",
            result_code: Cow::Borrowed(code),
            type_: Cow::Borrowed(if metric == Metric::Requests {
                ""
            } else {
                "HTTP"
            }),
            target: Cow::Borrowed(target),
            synthetic: false,
            duration_ms: ms,
        }
    }

    #[test]
    fn aggregates_per_dimension_set() {
        let mut a = Aggregator::default();
        for ms in [1.0, 3.0, 2.0] {
            a.add(&obs(Metric::Requests, "200", "", ms));
        }
        a.add(&obs(Metric::Requests, "500", "", 10.0));
        a.add(&obs(Metric::Dependencies, "200", "db:1", 4.0));
        let series = a.take();
        assert_eq!(series.len(), 3);
        let ok = series
            .iter()
            .find(|s| s.metric == Metric::Requests && s.success)
            .unwrap();
        assert_eq!((ok.count, ok.sum, ok.min, ok.max), (3, 6.0, 1.0, 3.0));
        assert!(a.take().is_empty(), "each interval starts empty");
    }

    #[test]
    fn too_many_series_fold_into_other() {
        let mut a = Aggregator::default();
        let targets: Vec<&'static str> = (0..MAX_SERIES + 50)
            .map(|i| &*Box::leak(format!("host{i}").into_boxed_str()))
            .collect();
        for t in &targets {
            a.add(&obs(Metric::Dependencies, "200", t, 1.0));
        }
        let series = a.take();
        assert_eq!(series.len(), MAX_SERIES + 1);
        let other = series.iter().find(|s| s.target == OTHER).unwrap();
        assert_eq!(other.count, 50);
        assert_eq!(other.result_code, OTHER);
        assert_eq!(
            series.iter().map(|s| s.count).sum::<u64>(),
            targets.len() as u64
        );
    }
}
