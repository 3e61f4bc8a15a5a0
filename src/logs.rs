//! The log exporter: log records to traces, exceptions and custom events.

use std::future::Future;
use std::time::{Duration, SystemTime};

use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, SdkLogRecord};
use opentelemetry_sdk::Resource;

use crate::config::{builder_options, Core, Options};
use crate::convert::{self, Context};
use crate::error::BuildError;
use crate::transmit::{self, EncodedItems};
use crate::wire::SharedTags;

/// Exports log records to Azure Monitor: a record with `exception.type` or
/// `exception.message` (or, from `tracing`, an `error` field at level ERROR) becomes an
/// exception, one with `microsoft.custom_event.name` a custom event, any other a trace
/// (`MessageData`) with its severity.
///
/// Build it with [`LogExporter::builder`] and hand it to the SDK's batch processor; with
/// `opentelemetry-appender-tracing` or `opentelemetry-appender-log`, your `tracing` events
/// and `log` records reach it:
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use opentelemetry_sdk::logs::SdkLoggerProvider;
///
/// let exporter = opentelemetry_azure_monitor::LogExporter::builder().build()?;
/// let provider = SdkLoggerProvider::builder().with_batch_exporter(exporter).build();
/// # Ok(()) }
/// ```
///
/// Records logged inside a span carry its trace and span ids, so that the portal shows them
/// in the span's end-to-end transaction. `export` converts the batch on the caller's thread
/// and hands the encoded bodies to the exporter's own background thread, which delivers them
/// with retries within the export deadline. It works under the SDK's thread-based batch
/// processor (no async runtime needed) and under the Tokio-based one.
#[derive(Debug)]
pub struct LogExporter {
    core: Core,
    tags: SharedTags,
    drop_sampled_out: bool,
}

/// Builds a [`LogExporter`]. All validation and reading of the environment happens in
/// [`build`](LogExporterBuilder::build).
#[derive(Debug, Default)]
#[must_use]
pub struct LogExporterBuilder {
    options: Options,
    drop_sampled_out: bool,
}

builder_options!(LogExporterBuilder);

impl LogExporterBuilder {
    /// Drops the log records of sampled-out traces: a record logged inside a span that the
    /// sampler did not keep (its trace flags say "not sampled") is not sent, so that a trace
    /// is kept or dropped with its logs. Records outside any span are always sent.
    ///
    /// Use it together with a sampler (see [`crate::sampling`]) when the logs of the traces
    /// that are dropped are not wanted either. The portal does not re-weight log records.
    ///
    /// Defaults to `false`: every record is sent.
    pub fn with_sampled_out_logs_dropped(mut self, enabled: bool) -> Self {
        self.drop_sampled_out = enabled;
        self
    }

    /// Builds the exporter and starts its delivery thread.
    ///
    /// # Errors
    ///
    /// [`BuildError`] when no connection string is set or it is malformed, when an option is out
    /// of range, or when the HTTP client or the delivery thread cannot be created.
    pub fn build(self) -> Result<LogExporter, BuildError> {
        Ok(LogExporter {
            core: self.options.resolve(transmit::encode::GZIP_LEVEL)?,
            tags: convert::shared_tags(&Resource::builder_empty().build()),
            drop_sampled_out: self.drop_sampled_out,
        })
    }
}

impl LogExporter {
    /// A builder with every option at its default.
    pub fn builder() -> LogExporterBuilder {
        LogExporterBuilder::default()
    }

    /// Converts a batch and encodes it, ready for delivery.
    fn encode(&self, batch: &LogBatch<'_>, now: SystemTime) -> EncodedItems {
        let cx = Context {
            ikey: &self.core.ikey,
            tags: &self.tags,
        };
        let sample_rate = self.core.sample_rate;
        let kept = |(record, _): &(&SdkLogRecord, &InstrumentationScope)| {
            !self.drop_sampled_out
                || record
                    .trace_context()
                    .and_then(|t| t.trace_flags)
                    .is_none_or(|flags| flags.is_sampled())
        };
        // `LogBatch`'s iterator does not tell its length: count first (cheap) to allocate once.
        let n = batch.iter().filter(kept).count();
        self.core.encode_counted(
            n,
            batch.iter().filter(kept).map(|(record, scope)| {
                let mut envelope = convert::log_to_envelope(record, scope, &cx, now);
                envelope.sample_rate = sample_rate;
                envelope
            }),
        )
    }

    /// A handle on what became of the telemetry this exporter is given: items accepted by the
    /// service, refused, dropped, waiting on disk, and the latest failure (see
    /// [`DeliveryReport`](crate::DeliveryReport)). Take it before handing the exporter to the
    /// SDK, and read it after the provider's `shutdown`:
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use opentelemetry_sdk::logs::SdkLoggerProvider;
    ///
    /// let exporter = opentelemetry_azure_monitor::LogExporter::builder().build()?;
    /// let report = exporter.delivery_report();
    /// let provider = SdkLoggerProvider::builder().with_batch_exporter(exporter).build();
    /// // ...
    /// provider.shutdown()?;
    /// println!("telemetry: {report}");
    /// # Ok(()) }
    /// ```
    pub fn delivery_report(&self) -> crate::DeliveryReport {
        self.core.delivery_report()
    }

    /// A log processor whose `force_flush` waits for this exporter's deliveries, also when
    /// the SDK's batch processor finds nothing left to export (after a full batch that was
    /// handed off while the endpoint was slow). Register it after the batch processor; see
    /// [`FlushProcessor`](crate::FlushProcessor). The one-call setup adds it on its own.
    pub fn flush_processor(&self) -> crate::FlushProcessor {
        crate::FlushProcessor::new(self.core.transmitter.flush_handle())
    }

    /// The gzip-compressed request bodies this exporter would send for `batch`, without sending
    /// them: for snapshot tests of your instrumentation and for benchmarks.
    #[cfg(feature = "testing")]
    pub fn request_bodies(&self, batch: LogBatch<'_>) -> Vec<Vec<u8>> {
        let items = self.encode(&batch, SystemTime::now());
        self.core.transmitter.request_bodies(&items)
    }
}

impl opentelemetry_sdk::logs::LogExporter for LogExporter {
    fn export(&self, batch: LogBatch<'_>) -> impl Future<Output = OTelSdkResult> + Send {
        self.core
            .export(transmit::Batch::Of(batch.iter().count()), &|| {
                self.encode(&batch, SystemTime::now())
            })
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.core.shutdown(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.tags = convert::shared_tags(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_sdk::error::OTelSdkError;

    const CONNECTION_STRING: &str = "InstrumentationKey=12345678-aaaa-4bbb-8ccc-1234567890ab;IngestionEndpoint=http://127.0.0.1:9";

    #[test]
    fn debug_hides_the_instrumentation_key() {
        let exporter = LogExporter::builder()
            .with_connection_string(CONNECTION_STRING)
            .with_offline_storage(false)
            .with_sample_rate(50.0)
            .build()
            .unwrap();
        let debug = format!("{exporter:?}");
        assert!(debug.starts_with("LogExporter"), "{debug}");
        assert!(debug.contains("50.0"), "{debug}");
        assert!(!debug.contains("12345678"), "{debug}");
        let _ = opentelemetry_sdk::logs::LogExporter::shutdown(&exporter);
    }

    #[test]
    fn build_errors_name_the_problem() {
        let err = LogExporter::builder()
            .with_connection_string(CONNECTION_STRING)
            .with_sample_rate(0.0)
            .build()
            .unwrap_err();
        assert!(matches!(err, BuildError::InvalidSampleRate(_)), "{err}");
        let err = LogExporter::builder()
            .with_connection_string("InstrumentationKey=")
            .build()
            .unwrap_err();
        assert!(matches!(err, BuildError::ConnectionString(_)), "{err}");
    }

    #[test]
    fn export_after_shutdown_fails() {
        use opentelemetry_sdk::logs::LogExporter as _;
        let exporter = LogExporter::builder()
            .with_connection_string(CONNECTION_STRING)
            .with_offline_storage(false)
            .build()
            .unwrap();
        exporter.shutdown().unwrap();
        let result = futures_executor::block_on(exporter.export(LogBatch::new(&[])));
        assert!(
            matches!(result, Err(OTelSdkError::AlreadyShutdown)),
            "{result:?}"
        );
        assert!(matches!(
            exporter.shutdown(),
            Err(OTelSdkError::AlreadyShutdown)
        ));
    }
}
