//! The portal's standard metrics `requests/duration` and `dependencies/duration` from the
//! HTTP duration instruments (MAPPING.md §5.4), when the exporters are built with
//! `with_standard_metrics(true)`.
//!
//! The service computes these metrics (the "Server requests", "Server response time",
//! "Dependency calls" charts) from every request and dependency item it receives, unless an
//! item says that its metrics were pre-aggregated already. So the two halves go together:
//!
//! - the metric exporter sends the points of `http.server.request.duration`,
//!   `http.server.duration`, `http.client.request.duration` and `http.client.duration` as the
//!   standard metric, with the Python exporter's properties in place of the point's
//!   attributes ([`properties`]);
//! - the span exporter marks the HTTP request and HTTP dependency items with
//!   [`PROCESSED_BY_METRIC_EXTRACTORS`], so that the service does not count them again.
//!
//! The Python exporter marks the spans of a fixed list of Python instrumentations that also
//! record those histograms. Rust has no such pairing, so the user says it: turn the option on
//! in both exporters when the service records the HTTP duration histograms for all the HTTP
//! requests it serves and makes. Off (the default), the histograms are ordinary custom
//! metrics and no item is marked, so nothing is counted twice or missed (§5.4 R). The
//! benefit of turning it on: the histograms see every request, sampled out or not.

use std::borrow::Cow;

use opentelemetry::KeyValue;

use super::http::{http_dependency_target, http_url, status_code, HostFallback};
use super::semconv::{Key, Known};
use crate::wire::{tag, Properties, SharedTags};

/// Property of request and dependency items whose standard metrics were sent as metrics.
pub(crate) const PROCESSED_BY_METRIC_EXTRACTORS: &str = "_MS.ProcessedByMetricExtractors";

/// The standard metric an instrument feeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StandardMetric {
    /// `requests/duration`, from the server duration instruments.
    Requests,
    /// `dependencies/duration`, from the client duration instruments.
    Dependencies,
}

impl StandardMetric {
    /// The standard metric of an instrument, by its name (PY `_AUTOCOLLECTED_INSTRUMENT_NAMES`,
    /// the stable and the legacy names).
    pub(crate) fn of_instrument(name: &str) -> Option<Self> {
        match name {
            "http.server.request.duration" | "http.server.duration" => Some(Self::Requests),
            "http.client.request.duration" | "http.client.duration" => Some(Self::Dependencies),
            _ => None,
        }
    }
}

/// PY `_is_status_code_success` for metrics: a code, below 400.
fn success(code: i64) -> &'static str {
    if code != 0 && code < 400 {
        "True"
    } else {
        "False"
    }
}

/// The properties of a standard-metric point (PY `_handle_std_metric_envelope`): they replace
/// the point's attributes. The status code is read as for spans (0 when missing or not a
/// number); the role and role instance are the items' tags.
pub(crate) fn properties<'a>(
    metric: StandardMetric,
    attributes: impl IntoIterator<Item = &'a KeyValue>,
    tags: &'a SharedTags,
) -> Properties<'a> {
    let k = Known::scan(attributes, None);
    let code = status_code(&k);
    let mut p = Properties::with_capacity(8);
    match metric {
        StandardMetric::Dependencies => {
            p.insert("_MS.MetricId", "dependencies/duration");
            p.insert("_MS.IsAutocollected", "True");
            p.insert("Dependency.Type", "http");
            p.insert("Dependency.Success", success(code));
            let url = http_url(&k, HostFallback::Peer);
            if let Some(target) = http_dependency_target(&k, url.as_ref()) {
                p.insert("dependency/target", target);
            }
            p.insert("dependency/resultCode", Cow::Owned(code.to_string()));
        }
        StandardMetric::Requests => {
            p.insert("_MS.MetricId", "requests/duration");
            p.insert("_MS.IsAutocollected", "True");
            p.insert("request/resultCode", Cow::Owned(code.to_string()));
            if k.get(Key::UserAgentSyntheticType)
                .is_some_and(|v| !v.as_str().is_empty())
            {
                p.insert("operation/synthetic", "True");
            }
            p.insert("Request.Success", success(code));
        }
    }
    if let Some(instance) = tags.get(tag::CLOUD_ROLE_INSTANCE.name) {
        p.insert("cloud/roleInstance", instance);
    }
    if let Some(role) = tags.get(tag::CLOUD_ROLE.name) {
        p.insert("cloud/roleName", role);
    }
    p
}
