//! [`FlushProcessor`]: makes `provider.force_flush()` wait for this exporter's deliveries even
//! when the SDK's batch processor finds nothing left to export.
//!
//! The SDK's batch processors never call their exporter's `force_flush`. The exporter keeps
//! "flushed means delivered" through the exports themselves (see `transmit::handoff`): the last
//! export of a flush is smaller than a full batch and waits for every export before it. One
//! case escapes that: a flush that finds the processor's queue empty, because the last full
//! batch (a burst of exactly 512 spans, say) was exported just before, makes no export at all;
//! if the endpoint was slow or failing, that batch was handed off (or written to disk at once)
//! and `force_flush` returns while its delivery is still under way. A host that freezes the
//! process right after the flush (Azure Functions) then keeps it on disk.
//!
//! A [`FlushProcessor`] registered after the batch processor closes that gap: the provider
//! flushes its processors in order, so when it is asked, the batch processor's export has
//! returned; it then waits for every export of its exporter to finish (each within its own
//! deadline) and, if the endpoint answers, for the files they wrote at once to be sent (within
//! one export timeout). It sees no spans or records. The one-call setup
//! ([`AzureMonitor`](crate::AzureMonitor)) adds it on its own.

use std::time::Duration;

use opentelemetry_sdk::error::OTelSdkResult;

use crate::error::TransmitError;
use crate::transmit::FlushHandle;

/// A span and log processor whose `force_flush` waits for one exporter's deliveries.
///
/// The SDK's batch processors never call their exporter's `force_flush`; the exporter keeps
/// "flushed means delivered" through its exports, the last of a flush waiting for every one
/// before it. A flush that finds the batch processor's queue empty (its last full batch was
/// exported just before, and handed off while the endpoint was slow or failing) makes no export
/// at all. Registered after the batch processor, this processor is asked next: it waits for
/// every export of its exporter to finish (each within its own deadline) and then, if the
/// endpoint answers, sends what they wrote to disk at once (within one export timeout). It
/// sees no spans or records.
///
/// Made by `SpanExporter::flush_processor` or `LogExporter::flush_processor`; register it
/// **after** the exporter's batch processor (the one-call setup does):
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use opentelemetry_azure_monitor::SpanExporter;
/// use opentelemetry_sdk::trace::SdkTracerProvider;
///
/// let exporter = SpanExporter::builder().build()?;
/// let flush = exporter.flush_processor();
/// let provider = SdkTracerProvider::builder()
///     .with_batch_exporter(exporter)
///     .with_span_processor(flush)
///     .build();
/// // ... at the end of each invocation:
/// provider.force_flush()?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct FlushProcessor {
    handle: FlushHandle,
}

impl FlushProcessor {
    pub(crate) fn new(handle: FlushHandle) -> Self {
        FlushProcessor { handle }
    }

    fn flush(&self) -> OTelSdkResult {
        match self.handle.flush_delivered() {
            Ok(()) => Ok(()),
            // The exporter's own shutdown says what became of its data.
            Err(TransmitError::AlreadyShutdown | TransmitError::WorkerStopped) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(feature = "trace")]
impl opentelemetry_sdk::trace::SpanProcessor for FlushProcessor {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, _span: opentelemetry_sdk::trace::SpanData) {}

    fn force_flush(&self) -> OTelSdkResult {
        self.flush()
    }

    /// Nothing to do: the exporter's batch processor shuts the exporter down, which drains.
    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

#[cfg(feature = "logs")]
impl opentelemetry_sdk::logs::LogProcessor for FlushProcessor {
    fn emit(
        &self,
        _record: &mut opentelemetry_sdk::logs::SdkLogRecord,
        _scope: &opentelemetry::InstrumentationScope,
    ) {
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.flush()
    }

    /// Nothing to do: the exporter's batch processor shuts the exporter down, which drains.
    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}
