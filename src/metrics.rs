//! The metric exporter: every data point of a collection becomes one `MetricData` item.

use std::future::Future;
use std::time::Duration;

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::Temporality;

use crate::config::{builder_options, Core, Options};
use crate::convert::{self, Context, MetricOptions};
use crate::error::BuildError;
use crate::transmit::{self, EncodedItems};

/// Environment variable that sends the meter's name as the metric namespace when `true`.
const ENV_METRIC_NAMESPACE_OPT_IN: &str = "APPLICATIONINSIGHTS_METRIC_NAMESPACE_OPT_IN";

/// Exports metrics to Azure Monitor, for the SDK's `PeriodicReader`: every data point becomes
/// one custom metric item (`customMetrics` in Log Analytics) with the point's attributes as
/// custom dimensions. Sums and gauges send their value; explicit and exponential histograms
/// their sum, count, minimum and maximum.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
///
/// let exporter = opentelemetry_azure_monitor::MetricExporter::builder().build()?;
/// let reader = PeriodicReader::builder(exporter).build(); // every 60 s by default
/// let provider = SdkMeterProvider::builder().with_reader(reader).build();
/// # Ok(()) }
/// ```
///
/// The exporter asks for **delta** temporality (see
/// [`temporality`](opentelemetry_sdk::metrics::exporter::PushMetricExporter::temporality)).
/// Points whose value is NaN or infinite are not sent; a warning counts them.
#[derive(Debug)]
pub struct MetricExporter {
    core: Core,
    options: MetricOptions,
}

/// Builds a [`MetricExporter`]. All validation and reading of the environment happens in
/// [`build`](MetricExporterBuilder::build).
///
/// The sample rate ([`with_sample_rate`](MetricExporterBuilder::with_sample_rate)) does not
/// apply to metrics: they aggregate every measurement, so they are sent without `sampleRate`.
#[derive(Debug, Default)]
#[must_use]
pub struct MetricExporterBuilder {
    options: Options,
    namespace: Option<bool>,
}

builder_options!(MetricExporterBuilder);

impl MetricExporterBuilder {
    /// Sends the meter's name (the instrumentation scope's) as the namespace (`ns`) of every
    /// metric, so that the portal's metrics explorer lists the metrics under it instead of
    /// under "azure.applicationinsights".
    ///
    /// Defaults to `false`, unless the environment variable
    /// `APPLICATIONINSIGHTS_METRIC_NAMESPACE_OPT_IN` is `true` (as in the official exporters).
    pub fn with_metric_namespace(mut self, enabled: bool) -> Self {
        self.namespace = Some(enabled);
        self
    }

    /// Builds the exporter and starts its delivery thread.
    ///
    /// # Errors
    ///
    /// [`BuildError`] when no connection string is set or it is malformed, when an option is out
    /// of range, or when the HTTP client or the delivery thread cannot be created.
    pub fn build(self) -> Result<MetricExporter, BuildError> {
        let namespace = self.namespace.unwrap_or_else(|| {
            std::env::var(ENV_METRIC_NAMESPACE_OPT_IN)
                .is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"))
        });
        Ok(MetricExporter {
            core: self.options.resolve(transmit::encode::METRICS_GZIP_LEVEL)?,
            options: MetricOptions { namespace },
        })
    }
}

impl MetricExporter {
    /// A builder with every option at its default.
    pub fn builder() -> MetricExporterBuilder {
        MetricExporterBuilder::default()
    }

    /// Converts a collection and encodes it, ready for delivery. The resource tags are
    /// computed from the collection's resource, as for spans and logs.
    fn encode(&self, metrics: &ResourceMetrics) -> EncodedItems {
        let tags = convert::shared_tags(metrics.resource());
        let cx = Context {
            ikey: &self.core.ikey,
            tags: &tags,
        };
        let mut envelopes = Vec::new();
        let skipped = convert::metrics_to_envelopes(metrics, &cx, self.options, &mut envelopes);
        if skipped.non_finite > 0 {
            opentelemetry::otel_warn!(
                name: "AzureMonitor.Metrics.NonFiniteDropped",
                message = "metric data points whose value is NaN or infinite cannot be sent to Azure Monitor and were dropped",
                points = skipped.non_finite
            );
        }
        if skipped.unsupported > 0 {
            opentelemetry::otel_debug!(
                name: "AzureMonitor.Metrics.UnsupportedDropped",
                message = "data points of autocollected HTTP size and active-request instruments are not sent, as in the official exporters",
                points = skipped.unsupported
            );
        }
        self.core.encode(envelopes)
    }

    /// A handle on what became of the telemetry this exporter is given: items accepted by the
    /// service, refused, dropped, waiting on disk, and the latest failure (see
    /// [`DeliveryReport`](crate::DeliveryReport)). Take it before handing the exporter to the
    /// SDK, and read it after the provider's `shutdown`:
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use opentelemetry_sdk::metrics::SdkMeterProvider;
    ///
    /// let exporter = opentelemetry_azure_monitor::MetricExporter::builder().build()?;
    /// let report = exporter.delivery_report();
    /// let provider = SdkMeterProvider::builder().with_periodic_exporter(exporter).build();
    /// // ...
    /// provider.shutdown()?;
    /// println!("telemetry: {report}");
    /// # Ok(()) }
    /// ```
    pub fn delivery_report(&self) -> crate::DeliveryReport {
        self.core.delivery_report()
    }

    /// The gzip-compressed request bodies this exporter would send for `metrics`, without
    /// sending them: for snapshot tests of your instrumentation and for benchmarks.
    #[cfg(feature = "testing")]
    pub fn request_bodies(&self, metrics: &ResourceMetrics) -> Vec<Vec<u8>> {
        let items = self.encode(metrics);
        self.core.transmitter.request_bodies(&items)
    }
}

impl opentelemetry_sdk::metrics::exporter::PushMetricExporter for MetricExporter {
    fn export(&self, metrics: &ResourceMetrics) -> impl Future<Output = OTelSdkResult> + Send {
        self.core
            .export(transmit::Batch::Reading, &|| self.encode(metrics))
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.core.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.core.shutdown(timeout)
    }

    /// Delta: Azure Monitor stores each item as the aggregate of its own interval and sums
    /// the items itself (a chart's "Sum" over an hour adds the hour's items). Cumulative sums
    /// would be counted again in every interval. The SDK keeps up-down counters cumulative
    /// under this preference, so they report their current value, as the official exporters
    /// do; gauges report their last value either way.
    fn temporality(&self) -> Temporality {
        Temporality::Delta
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_sdk::error::OTelSdkError;
    use opentelemetry_sdk::metrics::exporter::PushMetricExporter as _;

    const CONNECTION_STRING: &str = "InstrumentationKey=12345678-aaaa-4bbb-8ccc-1234567890ab;IngestionEndpoint=http://127.0.0.1:9";

    #[test]
    fn delta_and_no_key_in_debug() {
        let exporter = MetricExporter::builder()
            .with_connection_string(CONNECTION_STRING)
            .with_offline_storage(false)
            .with_metric_namespace(true)
            .build()
            .unwrap();
        assert_eq!(exporter.temporality(), Temporality::Delta);
        let debug = format!("{exporter:?}");
        assert!(debug.contains("namespace: true"), "{debug}");
        assert!(!debug.contains("12345678"), "{debug}");
        exporter.shutdown().unwrap();
        let result = futures_executor::block_on(exporter.export(&ResourceMetrics::default()));
        assert!(
            matches!(result, Err(OTelSdkError::AlreadyShutdown)),
            "{result:?}"
        );
        assert!(matches!(
            exporter.force_flush(),
            Err(OTelSdkError::AlreadyShutdown)
        ));
    }
}
