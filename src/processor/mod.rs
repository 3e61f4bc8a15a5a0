//! Telemetry processors: code of yours that sees every outgoing item, after conversion and
//! before encoding, and may change it or drop it.
//!
//! Add one with `with_processor` on any of the three exporter builders. A processor is a
//! closure that gets a [`TelemetryItem`], a view of one Application Insights item that is
//! stable across releases of this crate (the wire types behind it are not public): its
//! [kind](TelemetryItem::kind), [name](TelemetryItem::name), [context tags](ContextTag)
//! (role, instance, operation, user, session, …), properties, measurements, success and result
//! code where the kind has them, sample rate, and (read-only) the message of traces and
//! exceptions. Processors run in the order they were added,
//! each on the previous one's result, on the exporter's export path (keep them fast: they run
//! for every item).
//!
//! ```
//! use opentelemetry_azure_monitor::{ContextTag, ItemKind, SpanExporter};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let exporter = SpanExporter::builder()
//!     # .with_connection_string("InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:9")
//!     # .with_offline_storage(false)
//!     // The cloud role, as the Python sample's telemetry processor sets it.
//!     .with_processor(|item| item.set_tag(ContextTag::CloudRole, "checkout"))
//!     // No rows for the load balancer's health checks.
//!     .with_processor(|item| {
//!         if item.kind() == ItemKind::Request && item.name() == Some("GET /healthz") {
//!             item.discard();
//!         }
//!     })
//!     // Never send an e-mail address; tag everything with the deployment ring.
//!     .with_processor(|item| {
//!         item.remove_property("user.email");
//!         item.set_property("ring", "canary");
//!     })
//!     .build()?;
//! # Ok(()) }
//! ```
//!
//! Edits go through the same limits as the exporter's own values: a tag, a name, a property
//! or a result code that is too long for the service is cut at a character boundary (for
//! example 256 characters for `ai.cloud.role`, 150 for a property key and 8192 for its value),
//! empty keys and non-finite measurements are not sent, and a sample rate outside (0, 100] is
//! refused.
//!
//! A processor that panics changes nothing and drops nothing: the item goes on as it was
//! before that processor ran, to the next processor and to the service. The first panic of each
//! processor is reported in the internal log (`AzureMonitor.Processor.Panicked`); the process's
//! panic hook still sees every panic (by default it prints it to stderr). To undo a panic, each
//! item is copied before each processor runs: processors cost a copy of every item each, on
//! top of what they do themselves.

use std::borrow::Cow;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::wire::Bounded;
use crate::wire::{tag, Data, Envelope, TagKey};

/// What kind of Application Insights item a [`TelemetryItem`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ItemKind {
    /// An incoming request (`requests`): a `SERVER` or `CONSUMER` span.
    Request,
    /// An outgoing call or in-process operation (`dependencies`): a `CLIENT`, `PRODUCER` or
    /// `INTERNAL` span.
    Dependency,
    /// A log line (`traces`): a log record or a span event.
    Trace,
    /// An exception (`exceptions`).
    Exception,
    /// A custom event (`customEvents`).
    Event,
    /// A metric (`customMetrics`), also the `_OTELRESOURCE_` metric of the span exporter.
    Metric,
    /// The result of an availability test (`availabilityResults`).
    Availability,
}

/// A context tag of an item (the `ai.*` tags that the portal shows as its context).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ContextTag {
    /// `ai.cloud.role`: the role in the Application Map (from `service.name`).
    CloudRole,
    /// `ai.cloud.roleInstance`: the instance of the role (from `service.instance.id`).
    CloudRoleInstance,
    /// `ai.operation.id`: the operation (trace) the item belongs to.
    OperationId,
    /// `ai.operation.name`: the name of the operation, usually its request's name.
    OperationName,
    /// `ai.operation.parentId`: the id of the item's parent in the operation.
    OperationParentId,
    /// `ai.operation.syntheticSource`: set for synthetic traffic (bots, tests).
    OperationSyntheticSource,
    /// `ai.user.id`: the anonymous user id.
    UserId,
    /// `ai.user.authUserId`: the authenticated user id.
    UserAuthenticatedId,
    /// `ai.user.userAgent`: the client's user agent.
    UserAgent,
    /// `ai.session.id`: the session id.
    SessionId,
    /// `ai.application.ver`: the application version (from `service.version`).
    ApplicationVersion,
    /// `ai.device.id`: the device (by default the host name).
    DeviceId,
    /// `ai.device.locale`: the process locale.
    DeviceLocale,
    /// `ai.device.model`: the device model.
    DeviceModel,
    /// `ai.device.oemName`: the device manufacturer.
    DeviceOemName,
    /// `ai.device.type`: the device type.
    DeviceType,
    /// `ai.location.ip`: the client's IP address.
    LocationIp,
}

impl ContextTag {
    fn key(self) -> TagKey {
        match self {
            ContextTag::CloudRole => tag::CLOUD_ROLE,
            ContextTag::CloudRoleInstance => tag::CLOUD_ROLE_INSTANCE,
            ContextTag::OperationId => tag::OPERATION_ID,
            ContextTag::OperationName => tag::OPERATION_NAME,
            ContextTag::OperationParentId => tag::OPERATION_PARENT_ID,
            ContextTag::OperationSyntheticSource => tag::OPERATION_SYNTHETIC_SOURCE,
            ContextTag::UserId => tag::USER_ID,
            ContextTag::UserAuthenticatedId => tag::USER_AUTH_USER_ID,
            ContextTag::UserAgent => tag::USER_AGENT,
            ContextTag::SessionId => tag::SESSION_ID,
            ContextTag::ApplicationVersion => tag::APPLICATION_VER,
            ContextTag::DeviceId => tag::DEVICE_ID,
            ContextTag::DeviceLocale => tag::DEVICE_LOCALE,
            ContextTag::DeviceModel => tag::DEVICE_MODEL,
            ContextTag::DeviceOemName => tag::DEVICE_OEM_NAME,
            ContextTag::DeviceType => tag::DEVICE_TYPE,
            ContextTag::LocationIp => tag::LOCATION_IP,
        }
    }

    /// The tag's name on the wire, for example `ai.cloud.role`.
    pub fn name(self) -> &'static str {
        self.key().name
    }

    /// The longest value the service accepts for the tag, in characters; longer values are cut.
    pub fn max_len(self) -> usize {
        self.key().max
    }
}

/// One outgoing item, as a telemetry processor sees it: read it, change it, or
/// [`discard`](TelemetryItem::discard) it. See the [module](self) documentation.
pub struct TelemetryItem<'a> {
    envelope: Envelope<'a>,
    discarded: bool,
}

impl fmt::Debug for TelemetryItem<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the instrumentation key.
        f.debug_struct("TelemetryItem")
            .field("kind", &self.kind())
            .field("name", &self.name())
            .field("discarded", &self.discarded)
            .finish_non_exhaustive()
    }
}

impl<'a> TelemetryItem<'a> {
    /// The item's kind.
    pub fn kind(&self) -> ItemKind {
        match &self.envelope.data {
            Data::Request(_) => ItemKind::Request,
            Data::RemoteDependency(_) => ItemKind::Dependency,
            Data::Message(_) => ItemKind::Trace,
            Data::Exception(_) => ItemKind::Exception,
            Data::Event(_) => ItemKind::Event,
            Data::Metric(_) => ItemKind::Metric,
            Data::Availability(_) => ItemKind::Availability,
        }
    }

    /// The item's name: of a request, a dependency, an event, a metric or an availability
    /// result; `None` for traces and exceptions, which have none.
    pub fn name(&self) -> Option<&str> {
        match &self.envelope.data {
            Data::Request(d) => Some(d.name.as_str()),
            Data::RemoteDependency(d) => Some(d.name.as_str()),
            Data::Event(d) => Some(d.name.as_str()),
            Data::Metric(d) => d.metrics.first().map(|p| p.name.as_str()),
            Data::Availability(d) => Some(d.name.as_str()),
            Data::Message(_) | Data::Exception(_) => None,
        }
    }

    /// Renames the item (cut to the service's limit for its kind). Returns `false`, changing
    /// nothing, for kinds without a name (traces and exceptions).
    pub fn set_name(&mut self, name: impl Into<String>) -> bool {
        let name = Cow::Owned(name.into());
        match &mut self.envelope.data {
            Data::Request(d) => d.name = Bounded::new(name),
            Data::RemoteDependency(d) => d.name = Bounded::new(name),
            Data::Event(d) => d.name = Bounded::new(name),
            Data::Availability(d) => d.name = Bounded::new(name),
            Data::Metric(d) => match d.metrics.first_mut() {
                Some(point) => point.name = Bounded::new(name),
                None => return false,
            },
            Data::Message(_) | Data::Exception(_) => return false,
        }
        true
    }

    /// The text of a trace (its message), of an exception (its first exception's message) or
    /// of an availability result (its message); `None` for other kinds. Read-only: to change
    /// what a log line says, change it where it is logged.
    pub fn message(&self) -> Option<&str> {
        match &self.envelope.data {
            Data::Message(d) => Some(d.message.as_str()),
            Data::Exception(d) => d.exceptions.first().map(|e| e.message.as_str()),
            Data::Availability(d) => d.message.as_ref().map(Bounded::as_str),
            _ => None,
        }
    }

    /// The value of a context tag, if the item has it.
    pub fn tag(&self, tag: ContextTag) -> Option<Cow<'_, str>> {
        self.envelope.tags.get(tag.key())
    }

    /// Sets a context tag, cut to its limit ([`ContextTag::max_len`]); an empty value removes
    /// it.
    pub fn set_tag(&mut self, tag: ContextTag, value: impl Into<String>) {
        self.envelope
            .tags
            .replace(tag.key(), Some(Cow::Owned(value.into())));
    }

    /// Removes a context tag, if the item has it.
    pub fn remove_tag(&mut self, tag: ContextTag) {
        self.envelope.tags.replace(tag.key(), None);
    }

    /// The value of a custom property (`customDimensions`), if the item has it.
    pub fn property(&self, key: &str) -> Option<&str> {
        self.envelope.data.properties().and_then(|p| p.get(key))
    }

    /// The custom properties, in the order they were added.
    pub fn properties(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.envelope
            .data
            .properties()
            .into_iter()
            .flat_map(|p| p.iter())
    }

    /// Sets a custom property, replacing one with the same key. Keys longer than 150
    /// characters and values longer than 8192 are cut; an empty key is not sent.
    pub fn set_property(&mut self, key: impl Into<String>, value: impl Into<String>) {
        if let Some(p) = self.envelope.data.properties_mut() {
            p.insert(key.into(), value.into());
        }
    }

    /// Removes a custom property, if the item has it.
    pub fn remove_property(&mut self, key: &str) {
        if let Some(p) = self.envelope.data.properties_mut() {
            p.remove(key);
        }
    }

    /// The value of a custom measurement (`customMeasurements`), if the item has it.
    pub fn measurement(&self, key: &str) -> Option<f64> {
        self.envelope.data.measurements().and_then(|m| m.get(key))
    }

    /// The custom measurements, in the order they were added; none for metrics.
    pub fn measurements(&self) -> impl Iterator<Item = (&str, f64)> + '_ {
        self.envelope
            .data
            .measurements()
            .into_iter()
            .flat_map(|m| m.iter())
    }

    /// Sets a custom measurement, replacing one with the same key. Keys longer than 150
    /// characters are cut; an empty key or a value that is not finite is not sent. Returns
    /// `false`, changing nothing, for metrics, which have no measurements.
    pub fn set_measurement(&mut self, key: impl Into<String>, value: f64) -> bool {
        match self.envelope.data.measurements_mut() {
            Some(m) => {
                m.insert(key.into(), value);
                true
            }
            None => false,
        }
    }

    /// Removes a custom measurement, if the item has it.
    pub fn remove_measurement(&mut self, key: &str) {
        if let Some(m) = self.envelope.data.measurements_mut() {
            m.remove(key);
        }
    }

    /// Whether the request, dependency or availability test succeeded; `None` for other kinds.
    pub fn success(&self) -> Option<bool> {
        match &self.envelope.data {
            Data::Request(d) => Some(d.success),
            Data::RemoteDependency(d) => Some(d.success),
            Data::Availability(d) => Some(d.success),
            _ => None,
        }
    }

    /// Sets whether the request, dependency or availability test succeeded. Returns `false`,
    /// changing nothing, for other kinds.
    pub fn set_success(&mut self, success: bool) -> bool {
        match &mut self.envelope.data {
            Data::Request(d) => d.success = success,
            Data::RemoteDependency(d) => d.success = success,
            Data::Availability(d) => d.success = success,
            _ => return false,
        }
        true
    }

    /// The result code of a request (its response code) or a dependency; `None` for other
    /// kinds and for dependencies without one.
    pub fn result_code(&self) -> Option<&str> {
        match &self.envelope.data {
            Data::Request(d) => Some(d.response_code.as_str()),
            Data::RemoteDependency(d) => d.result_code.as_ref().map(Bounded::as_str),
            _ => None,
        }
    }

    /// Sets the result code of a request or a dependency (cut to 1024 characters). Returns
    /// `false`, changing nothing, for other kinds.
    pub fn set_result_code(&mut self, code: impl Into<String>) -> bool {
        let code = Cow::Owned(code.into());
        match &mut self.envelope.data {
            Data::Request(d) => d.response_code = Bounded::new(code),
            Data::RemoteDependency(d) => d.result_code = Some(Bounded::new(code)),
            _ => return false,
        }
        true
    }

    /// The percentage of items this one stands for (the portal counts it `100 / rate`
    /// times); 100 when the item was not sampled.
    pub fn sample_rate(&self) -> f64 {
        self.envelope.sample_rate.unwrap_or(100.0)
    }

    /// Sets the sample rate, a percentage in (0, 100]. Returns `false`, changing nothing, for
    /// other values.
    pub fn set_sample_rate(&mut self, percentage: f64) -> bool {
        if !(percentage > 0.0 && percentage <= 100.0) {
            return false;
        }
        self.envelope.sample_rate = (percentage != 100.0).then_some(percentage);
        true
    }

    /// Drops the item: it is not sent (unless a later processor panics, see the [module](self)
    /// docs, or calls [`keep`](Self::keep)).
    pub fn discard(&mut self) {
        self.discarded = true;
    }

    /// Undoes [`discard`](Self::discard): the item is sent.
    pub fn keep(&mut self) {
        self.discarded = false;
    }

    /// Whether a processor discarded the item.
    pub fn is_discarded(&self) -> bool {
        self.discarded
    }
}

/// The closure type of a telemetry processor.
type ProcessorFn = dyn Fn(&mut TelemetryItem<'_>) + Send + Sync;

/// A telemetry processor as the builders keep it: the closure and whether its panic was
/// reported already.
pub(crate) struct Processor {
    f: Box<ProcessorFn>,
    reported: AtomicBool,
}

impl Processor {
    pub(crate) fn new(f: impl Fn(&mut TelemetryItem<'_>) + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Processor {
            f: Box::new(f),
            reported: AtomicBool::new(false),
        })
    }
}

/// Runs the processors on one item, in order: the item as they leave it, or `None` when one
/// of them discarded it. A processor that panics leaves the item as it was before it ran.
pub(crate) fn apply<'a>(
    processors: &[Arc<Processor>],
    envelope: Envelope<'a>,
) -> Option<Envelope<'a>> {
    let mut item = TelemetryItem {
        envelope,
        discarded: false,
    };
    for processor in processors {
        let before = (item.envelope.clone(), item.discarded);
        if catch_unwind(AssertUnwindSafe(|| (processor.f)(&mut item))).is_err() {
            item = TelemetryItem {
                envelope: before.0,
                discarded: before.1,
            };
            if !processor.reported.swap(true, Ordering::Relaxed) {
                opentelemetry::otel_warn!(
                    name: "AzureMonitor.Processor.Panicked",
                    message = "a telemetry processor panicked; the item was sent as it was before that processor ran. Reported once per processor."
                );
            }
        }
    }
    (!item.discarded).then_some(item.envelope)
}

#[cfg(test)]
mod tests;
