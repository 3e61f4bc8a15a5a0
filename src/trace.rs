//! The span exporter: spans to requests, dependencies, exceptions and traces.

use std::future::Future;
use std::time::{Duration, SystemTime};

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::SpanData;
use opentelemetry_sdk::Resource;

use crate::config::{builder_options, Core, Options};
use crate::convert::{self, Context};
use crate::error::BuildError;
use crate::transmit::{self, EncodedItems};
use crate::wire::SharedTags;

/// Environment variable that turns the per-batch `_OTELRESOURCE_` metric off when `true`.
const ENV_RESOURCE_METRIC_DISABLED: &str =
    "APPLICATIONINSIGHTS_OPENTELEMETRY_RESOURCE_METRIC_DISABLED";

/// Exports spans to Azure Monitor: `SERVER` and `CONSUMER` spans become requests, `CLIENT`,
/// `PRODUCER` and `INTERNAL` spans dependencies, span events exceptions or traces.
///
/// Build it with [`SpanExporter::builder`] and hand it to the SDK's batch processor:
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use opentelemetry_sdk::trace::SdkTracerProvider;
///
/// let exporter = opentelemetry_azure_monitor::SpanExporter::builder().build()?;
/// let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).build();
/// # Ok(()) }
/// ```
///
/// `export` converts the batch on the caller's thread and hands the encoded bodies to the
/// exporter's own background thread, which delivers them with retries within the export deadline.
/// It works under the SDK's thread-based batch processor (no async runtime needed) and under
/// the Tokio-based one.
#[derive(Debug)]
pub struct SpanExporter {
    core: Core,
    resource: Resource,
    tags: SharedTags,
    resource_metric: bool,
    tracing_events: bool,
}

/// Builds a [`SpanExporter`]. All validation and reading of the environment happens in
/// [`build`](SpanExporterBuilder::build).
#[derive(Debug, Default)]
#[must_use]
pub struct SpanExporterBuilder {
    options: Options,
    resource_metric: Option<bool>,
    tracing_events: Option<bool>,
}

builder_options!(SpanExporterBuilder);

impl SpanExporterBuilder {
    /// Sends, with every export, one `_OTELRESOURCE_` metric item whose properties are the
    /// resource's attributes (less `telemetry.sdk.*`), so that they can be queried next to the
    /// telemetry without being copied into every item.
    ///
    /// Defaults to `true`, unless the environment variable
    /// `APPLICATIONINSIGHTS_OPENTELEMETRY_RESOURCE_METRIC_DISABLED` is `true`.
    pub fn with_resource_metric(mut self, enabled: bool) -> Self {
        self.resource_metric = Some(enabled);
        self
    }

    /// Sends the span events that `tracing-opentelemetry` makes from `tracing` events (those
    /// with its `level` and `target` attributes) as traces with the event's severity.
    ///
    /// Turn it off when the same events also reach a [`LogExporter`](crate::LogExporter)
    /// through `opentelemetry-appender-tracing` (the log bridge): each event would otherwise
    /// appear twice, once as a log record and once as a span event. The log record is the
    /// better of the two (its own fields as properties, exceptions from `error` fields), and
    /// sits in the same operation. `tracing-opentelemetry` still sees the events, so an error
    /// event still marks its span as failed.
    ///
    /// Defaults to `true`. Span events made with the OpenTelemetry API are always sent.
    pub fn with_tracing_span_events(mut self, enabled: bool) -> Self {
        self.tracing_events = Some(enabled);
        self
    }

    /// Builds the exporter and starts its delivery thread.
    ///
    /// # Errors
    ///
    /// [`BuildError`] when no connection string is set or it is malformed, when an option is out
    /// of range, or when the HTTP client or the delivery thread cannot be created.
    pub fn build(self) -> Result<SpanExporter, BuildError> {
        let resource_metric = self.resource_metric.unwrap_or_else(|| {
            !std::env::var(ENV_RESOURCE_METRIC_DISABLED)
                .is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"))
        });
        let core = self.options.resolve(transmit::encode::SPAN_GZIP_LEVEL)?;
        let resource = Resource::builder_empty().build();
        Ok(SpanExporter {
            core,
            tags: convert::shared_tags(&resource),
            resource,
            resource_metric,
            tracing_events: self.tracing_events.unwrap_or(true),
        })
    }
}

impl SpanExporter {
    /// A builder with every option at its default.
    pub fn builder() -> SpanExporterBuilder {
        SpanExporterBuilder::default()
    }

    /// Converts a batch and encodes it, ready for delivery.
    fn encode(&self, batch: &[SpanData], now: SystemTime) -> EncodedItems {
        let cx = Context {
            ikey: &self.core.ikey,
            tags: &self.tags,
        };
        // Spans recorded but not sampled (a sampler's `RecordOnly`, so that span processors
        // such as the standard metrics see them) are not sent: the SDK's thread-based batch
        // processor passes them on.
        let mut sampled = batch
            .iter()
            .filter(|s| s.span_context.is_sampled())
            .peekable();
        let resource = if self.resource_metric && sampled.peek().is_some() {
            convert::resource_envelope(&self.resource, &cx, now)
        } else {
            None
        };
        let tracing_events = self.tracing_events;
        let rate = self.core.sample_rate;
        // Each span is converted just before it is written and dropped right after, so the
        // conversion's allocations are reused span after span; converting the whole batch
        // first made the heap grow and shrink by a few hundred KiB per export (page faults at
        // about 5% of a span export's CPU in `benches/pipeline.rs`).
        let envelopes = resource
            .into_iter()
            .chain(sampled.flat_map(|span| {
                let mut one = Vec::with_capacity(1 + span.events.len());
                convert::span_to_envelopes(span, &cx, tracing_events, &mut one);
                one
            }))
            .map(|mut envelope| {
                if let Some(rate) = rate {
                    envelope.sample_rate.get_or_insert(rate);
                }
                envelope
            });
        self.core.encode_counted(batch.len() + 1, envelopes)
    }

    /// A handle on what became of the telemetry this exporter is given: items accepted by the
    /// service, refused, dropped, waiting on disk, and the latest failure (see
    /// [`DeliveryReport`](crate::DeliveryReport)). Take it before handing the exporter to the
    /// SDK, and read it after the provider's `shutdown`:
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use opentelemetry_sdk::trace::SdkTracerProvider;
    ///
    /// let exporter = opentelemetry_azure_monitor::SpanExporter::builder().build()?;
    /// let report = exporter.delivery_report();
    /// let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).build();
    /// // ...
    /// provider.shutdown()?;
    /// println!("telemetry: {report}");
    /// # Ok(()) }
    /// ```
    pub fn delivery_report(&self) -> crate::DeliveryReport {
        self.core.delivery_report()
    }

    /// A span processor whose `force_flush` waits for this exporter's deliveries, also when
    /// the SDK's batch processor finds nothing left to export (after a full batch that was
    /// handed off while the endpoint was slow). Register it after the batch processor; see
    /// [`FlushProcessor`](crate::FlushProcessor). The one-call setup adds it on its own.
    pub fn flush_processor(&self) -> crate::FlushProcessor {
        crate::FlushProcessor::new(self.core.transmitter.flush_handle())
    }

    /// The gzip-compressed request bodies this exporter would send for `batch`, without sending
    /// them: for snapshot tests of your instrumentation and for benchmarks.
    #[cfg(feature = "testing")]
    pub fn request_bodies(&self, batch: &[SpanData]) -> Vec<Vec<u8>> {
        let items = self.encode(batch, SystemTime::now());
        self.core.transmitter.request_bodies(&items)
    }
}

impl opentelemetry_sdk::trace::SpanExporter for SpanExporter {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        self.core.export(transmit::Batch::Of(batch.len()), &|| {
            self.encode(&batch, SystemTime::now())
        })
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.core.shutdown(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.core.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.tags = convert::shared_tags(resource);
        self.resource = resource.clone();
    }
}
