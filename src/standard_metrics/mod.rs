//! The portal's standard metrics `requests/duration` and `dependencies/duration`, counted
//! from spans the .NET way (STANDARD-METRICS.md §4): see [`StandardMetricsProcessor`].
//!
//! - [`aggregate`]: the pure core: what a span counts as (computed by the same functions as
//!   its item's fields, in `convert::span`), the aggregation per dimension set, the envelopes;
//! - this module: the span processor, its timer thread and its delivery through the crate's
//!   transmit path (a `Core` of its own, flushed and shut down with the tracer provider).
//!
//! Why a `Core` of its own rather than the span exporter's: the tracer provider shuts its
//! processors down one after the other, in the order they were added; with a shared
//! transmitter, the last minute of metrics would be lost whenever the exporter's batch
//! processor came first. Its own delivery thread costs one idle thread.

mod aggregate;

use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Poll, Wake, Waker};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, SystemTime};

use opentelemetry::trace::Span as _;
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use opentelemetry_sdk::Resource;

use crate::config::{builder_options, Core, Options};
use crate::convert::{self, semconv::Key};
use crate::error::BuildError;
use crate::transmit::{self, EncodedItems};
use crate::wire::SharedTags;

use aggregate::{observe, series_envelope, Aggregator};

/// How often the aggregates are sent by default: the portal's grain (PT1M), as every
/// official exporter.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

/// Counts every ended span into the portal's standard metrics `requests/duration` (SERVER and
/// CONSUMER spans) and `dependencies/duration` (CLIENT, PRODUCER and INTERNAL spans), and
/// sends them pre-aggregated every 60 seconds, as the .NET exporter does
/// (STANDARD-METRICS.md §4).
///
/// The portal's "Server requests", "Server response time", "Failed requests" and "Dependency
/// calls" charts then count **every** request and dependency, also when the spans are
/// sampled: the processor sees each recording span, sampled or not, and marks the ones it
/// counted (`_MS.ProcessedByMetricExtractors`), so that the service does not count the items
/// it receives again.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use opentelemetry_azure_monitor::{
///     ApplicationInsightsSampler, SpanExporter, StandardMetricsProcessor,
/// };
/// use opentelemetry_sdk::trace::SdkTracerProvider;
///
/// let provider = SdkTracerProvider::builder()
///     // Sampled-out spans are recorded (not sent), so that the processor counts them.
///     .with_sampler(ApplicationInsightsSampler::new(0.1)?.with_record_only(true))
///     .with_span_processor(StandardMetricsProcessor::builder().build()?)
///     .with_batch_exporter(SpanExporter::builder().build()?)
///     .build();
/// # Ok(()) }
/// ```
///
/// - **With a sampler, use `RecordOnly`:** a span the sampler drops never reaches any span
///   processor, so it would be neither counted nor marked, and the charts would count only
///   the kept share (the items' `sampleRate` does not apply to pre-aggregated metrics).
///   [`ApplicationInsightsSampler::with_record_only`](crate::ApplicationInsightsSampler::with_record_only)
///   and [`RateLimitedSampler::with_record_only`](crate::RateLimitedSampler::with_record_only)
///   record sampled-out spans instead; the [`SpanExporter`](crate::SpanExporter) never sends
///   them.
/// - **Dimensions** are the items' own fields, computed by the same code: `Request.Success`,
///   `request/resultCode` (`"0"` without one), `Dependency.Success`, `Dependency.Type`,
///   `dependency/target`, `dependency/resultCode`, `operation/synthetic`, `cloud/roleName`
///   and `cloud/roleInstance` (from the tracer provider's resource). Durations in ms.
/// - At most 1000 dimension sets per interval; the spans of further ones are counted with
///   result code, type and target `Other`.
/// - One processor per process: it has its own delivery thread (like each exporter) and a
///   timer thread. The tracer provider's `force_flush` sends the current aggregates at once,
///   its `shutdown` sends them and stops both threads.
/// - Cost: each span is also cloned for this processor by the SDK, and its attributes are
///   read once more (see the crate's benches).
pub struct StandardMetricsProcessor {
    shared: Arc<Shared>,
    stop: Mutex<Option<mpsc::Sender<()>>>,
    timer: Mutex<Option<JoinHandle<()>>>,
}

/// What the processor and its timer thread share.
struct Shared {
    core: Core,
    aggregator: Mutex<Aggregator>,
    tags: RwLock<SharedTags>,
}

impl fmt::Debug for StandardMetricsProcessor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StandardMetricsProcessor")
            .field("core", &self.shared.core)
            .finish_non_exhaustive()
    }
}

/// Builds a [`StandardMetricsProcessor`]. All validation and reading of the environment
/// happens in [`build`](StandardMetricsProcessorBuilder::build). Set the same connection
/// string as on the exporters (or none, to read `APPLICATIONINSIGHTS_CONNECTION_STRING`).
///
/// The sample rate ([`with_sample_rate`](StandardMetricsProcessorBuilder::with_sample_rate))
/// does not apply: metrics are never sampled.
#[derive(Debug, Default)]
#[must_use]
pub struct StandardMetricsProcessorBuilder {
    options: Options,
    interval: Option<Duration>,
}

builder_options!(StandardMetricsProcessorBuilder);

impl StandardMetricsProcessorBuilder {
    /// Sets how often the aggregates are sent. The portal charts these metrics per minute.
    ///
    /// Defaults to 60 seconds. Zero makes `build()` fail.
    pub fn with_export_interval(mut self, interval: Duration) -> Self {
        self.interval = Some(interval);
        self
    }

    /// Builds the processor and starts its delivery and timer threads.
    ///
    /// # Errors
    ///
    /// [`BuildError`] when no connection string is set or it is malformed, when an option is
    /// out of range, or when the HTTP client or a thread cannot be created.
    pub fn build(self) -> Result<StandardMetricsProcessor, BuildError> {
        let interval = self.interval.unwrap_or(DEFAULT_INTERVAL);
        if interval.is_zero() {
            return Err(BuildError::InvalidExportInterval);
        }
        let core = self.options.resolve(transmit::encode::METRICS_GZIP_LEVEL)?;
        let shared = Arc::new(Shared {
            core,
            aggregator: Mutex::new(Aggregator::default()),
            tags: RwLock::new(convert::shared_tags(&Resource::builder_empty().build())),
        });
        let (stop, stopped) = mpsc::channel::<()>();
        let timer_shared = shared.clone();
        let timer = thread::Builder::new()
            .name("azure-monitor-standard-metrics".to_owned())
            .spawn(move || {
                // Until stopped (or the processor is gone).
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    if let Err(e) = block_on(timer_shared.export(SystemTime::now())) {
                        opentelemetry::otel_warn!(
                            name: "AzureMonitor.StandardMetrics.ExportFailed",
                            message = "the standard metrics of an interval could not be delivered",
                            error = e.to_string()
                        );
                    }
                }
            })
            .map_err(|e| BuildError::Transport(e.to_string()))?;
        Ok(StandardMetricsProcessor {
            shared,
            stop: Mutex::new(Some(stop)),
            timer: Mutex::new(Some(timer)),
        })
    }
}

impl StandardMetricsProcessor {
    /// A builder with every option at its default.
    pub fn builder() -> StandardMetricsProcessorBuilder {
        StandardMetricsProcessorBuilder::default()
    }

    /// Stops the timer thread (once) and waits for it.
    fn stop_timer(&self) {
        drop(
            self.stop
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        if let Some(timer) = self
            .timer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = timer.join();
        }
    }
}

impl Shared {
    /// Hands the aggregates counted so far to the delivery thread; the future resolves when
    /// they are delivered, stored or given up.
    fn export(&self, now: SystemTime) -> impl Future<Output = OTelSdkResult> + Send + 'static {
        let series = self
            .aggregator
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let tags = self.tags.read().unwrap_or_else(PoisonError::into_inner);
        let encode = || -> EncodedItems {
            let cx = convert::Context {
                ikey: &self.core.ikey,
                tags: &tags,
            };
            transmit::encode(series.iter().map(|s| series_envelope(s, &cx, now)))
        };
        self.core.export(transmit::Batch::Reading, &encode)
    }
}

impl SpanProcessor for StandardMetricsProcessor {
    /// Marks the span as counted: every recording span that starts here is counted when it
    /// ends, and the exporter turns the mark into `_MS.ProcessedByMetricExtractors` on its
    /// item.
    fn on_start(&self, span: &mut Span, _cx: &Context) {
        span.set_attribute(KeyValue::new(
            Key::MsProcessedByMetricExtractors.as_str(),
            true,
        ));
    }

    fn on_end(&self, span: SpanData) {
        let observation = observe(&span);
        self.shared
            .aggregator
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .add(&observation);
    }

    /// Sends the aggregates counted so far and waits until they are delivered or stored.
    fn force_flush(&self) -> OTelSdkResult {
        drop(self.shared.export(SystemTime::now()));
        self.shared.core.force_flush()
    }

    /// Sends the last aggregates, then stops the timer and delivery threads.
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        if self.shared.core.transmitter.is_shutdown() {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        self.stop_timer();
        drop(self.shared.export(SystemTime::now()));
        self.shared.core.shutdown(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        *self
            .shared
            .tags
            .write()
            .unwrap_or_else(PoisonError::into_inner) = convert::shared_tags(resource);
    }
}

impl Drop for StandardMetricsProcessor {
    fn drop(&mut self) {
        self.stop_timer();
    }
}

/// Wakes the thread that waits in [`block_on`].
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future to completion on this thread (the delivery futures need no runtime).
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        thread::park();
    }
}

#[cfg(test)]
mod tests;
