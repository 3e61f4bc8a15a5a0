//! The one-call setup: the three providers with the crate's exporters, the resource, the W3C
//! propagator and the sampler, installed globally, and a guard that shuts them down.
//!
//! [`AzureMonitorBuilder::install`] is the only place that wires them. The capabilities that
//! other modules add each plug in at one private function of the builder: the Azure host
//! detectors at `host_detectors`, the sampler chosen from the environment at `sampler`, the
//! standard metrics and Live Metrics processors at `processors`.

use std::fmt;

use opentelemetry::KeyValue;
use opentelemetry_sdk::error::OTelSdkError;
use opentelemetry_sdk::logs::{LoggerProviderBuilder, SdkLoggerProvider};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::resource::{
    EnvResourceDetector, ResourceDetector, SdkProvidedResourceDetector, TelemetryResourceDetector,
};
use opentelemetry_sdk::trace::{SdkTracerProvider, ShouldSample, TracerProviderBuilder};
use opentelemetry_sdk::Resource;

use crate::config::{builder_options, Options};
use crate::error::BuildError;
use crate::{LogExporter, MetricExporter, SpanExporter};

#[cfg(feature = "tracing")]
mod subscriber;

/// The environment variable that names the service (`service.name`), as in every OpenTelemetry
/// SDK. It beats a `service.name` in `OTEL_RESOURCE_ATTRIBUTES`.
const ENV_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";

/// Azure Monitor for the whole process, set up in one call: traces, logs and metrics go to
/// Application Insights until this value is dropped.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Reads APPLICATIONINSIGHTS_CONNECTION_STRING, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES.
/// let _azure_monitor = opentelemetry_azure_monitor::AzureMonitor::builder().install()?;
/// // ... the service runs; `tracing` spans and events (feature `tracing`), and everything made
/// // with the global OpenTelemetry API, are exported ...
/// # Ok(()) }
/// ```
///
/// [`install`](AzureMonitorBuilder::install) builds a tracer, a logger and a meter provider
/// with the crate's [`SpanExporter`], [`LogExporter`] and [`MetricExporter`] (batch processors,
/// a 60-second periodic reader), and sets:
///
/// - the tracer and meter providers as OpenTelemetry's global ones
///   ([`opentelemetry::global`]); OpenTelemetry has no global logger provider: log appenders
///   take [`logger_provider`](AzureMonitor::logger_provider);
/// - the W3C Trace Context propagator as the global propagator (`traceparent`, `tracestate`);
/// - with the feature `tracing`, a global `tracing` subscriber that sends `tracing` spans and
///   events through these providers (see [`AzureMonitorBuilder::with_tracing_filter`]).
///
/// Dropping it flushes and shuts the three providers down (within a few seconds: each
/// exporter delivers or stores what is pending); [`shutdown`](AzureMonitor::shutdown) does the
/// same and says what failed. Keep it alive until the end of `main`: `let _ = ...install()?`
/// drops it at once.
#[must_use = "dropping it shuts telemetry down: keep it alive until the end of `main`"]
pub struct AzureMonitor {
    tracer: SdkTracerProvider,
    logger: SdkLoggerProvider,
    meter: SdkMeterProvider,
    shut_down: bool,
    #[cfg(feature = "tracing")]
    tracing: subscriber::TracingFilter,
}

impl fmt::Debug for AzureMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureMonitor")
            .field("shut_down", &self.shut_down)
            .finish_non_exhaustive()
    }
}

/// Builds and installs [`AzureMonitor`]. All validation and reading of the environment happens
/// in [`install`](AzureMonitorBuilder::install).
///
/// The exporter options (`with_connection_string`, `with_export_timeout`, storage, ...) are
/// those of [`SpanExporterBuilder`](crate::SpanExporterBuilder) and apply to the three exporters.
#[must_use]
#[derive(Default)]
pub struct AzureMonitorBuilder {
    options: Options,
    service_name: Option<String>,
    resource_attributes: Vec<KeyValue>,
    resource_detectors: Vec<Box<dyn ResourceDetector>>,
    sampler: Option<Box<dyn ShouldSample>>,
    /// `None`: on (the default).
    standard_metrics: Option<bool>,
    /// `None`: on (the default), with the feature `live-metrics`.
    #[cfg(feature = "live-metrics")]
    live_metrics: Option<bool>,
    #[cfg(feature = "tracing")]
    tracing: subscriber::TracingOptions,
}

impl fmt::Debug for AzureMonitorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("AzureMonitorBuilder");
        s.field("options", &self.options)
            .field("service_name", &self.service_name)
            .field("resource_attributes", &self.resource_attributes)
            .field("resource_detectors", &self.resource_detectors.len())
            .field("sampler", &self.sampler)
            .field("standard_metrics", &self.standard_metrics);
        #[cfg(feature = "tracing")]
        s.field("tracing", &self.tracing);
        s.finish()
    }
}

builder_options!(AzureMonitorBuilder);

impl AzureMonitor {
    /// A builder with every option at its default.
    pub fn builder() -> AzureMonitorBuilder {
        AzureMonitorBuilder::default()
    }

    /// The tracer provider (also installed as the global one).
    pub fn tracer_provider(&self) -> &SdkTracerProvider {
        &self.tracer
    }

    /// The logger provider, for log appenders: `opentelemetry-appender-log`, or
    /// `opentelemetry-appender-tracing` when you compose your own `tracing` subscriber.
    pub fn logger_provider(&self) -> &SdkLoggerProvider {
        &self.logger
    }

    /// The meter provider (also installed as the global one).
    pub fn meter_provider(&self) -> &SdkMeterProvider {
        &self.meter
    }

    /// Exports what the three providers hold now and waits until the exporters have delivered
    /// it, or stored it for later.
    ///
    /// # Errors
    ///
    /// [`ShutdownError`] with the providers whose flush failed.
    pub fn force_flush(&self) -> Result<(), ShutdownError> {
        ShutdownError::check([
            ("traces", self.tracer.force_flush()),
            ("logs", self.logger.force_flush()),
            ("metrics", self.meter.force_flush()),
        ])
    }

    /// Flushes and shuts the three providers down: what is still queued is delivered, or stored
    /// when the service cannot take it in time. Telemetry made afterwards is dropped. Dropping
    /// the value does the same and reports failures only through the crate's internal log.
    ///
    /// # Errors
    ///
    /// [`ShutdownError`] with the providers whose shutdown failed; the others are shut down all
    /// the same.
    pub fn shutdown(mut self) -> Result<(), ShutdownError> {
        self.shut_down()
    }

    fn shut_down(&mut self) -> Result<(), ShutdownError> {
        if std::mem::replace(&mut self.shut_down, true) {
            return Ok(());
        }
        // Spans first: their end may still emit logs and measurements.
        ShutdownError::check([
            ("traces", self.tracer.shutdown()),
            ("logs", self.logger.shutdown()),
            ("metrics", self.meter.shutdown()),
        ])
    }
}

impl Drop for AzureMonitor {
    fn drop(&mut self) {
        if let Err(e) = self.shut_down() {
            opentelemetry::otel_warn!(
                name: "AzureMonitor.Setup.ShutdownFailed",
                message = "shutting Azure Monitor down on drop failed; call AzureMonitor::shutdown() to handle the error",
                error = e.to_string()
            );
        }
    }
}

impl AzureMonitorBuilder {
    /// Sets the service name (`service.name`), the role of the service in the Application Map
    /// (`ai.cloud.role`, prefixed with `service.namespace` when there is one).
    ///
    /// Defaults to the `OTEL_SERVICE_NAME` environment variable, then a `service.name` in
    /// `OTEL_RESOURCE_ATTRIBUTES`, then what a host detector found, then
    /// `unknown_service:<executable name>`.
    pub fn with_service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// Adds resource attributes (`service.namespace`, `service.version`,
    /// `deployment.environment.name`, ...). They win over the same keys from the environment
    /// and from detectors; a later call wins over an earlier one.
    ///
    /// Defaults to none: the resource holds what the environment (`OTEL_RESOURCE_ATTRIBUTES`,
    /// `OTEL_SERVICE_NAME`) and the detectors give, plus the SDK's `telemetry.sdk.*`.
    pub fn with_resource_attributes(
        mut self,
        attributes: impl IntoIterator<Item = KeyValue>,
    ) -> Self {
        self.resource_attributes.extend(attributes);
        self
    }

    /// Adds a resource detector of your own. Detectors run at `install()`, after the
    /// environment, so what they find wins over `OTEL_RESOURCE_ATTRIBUTES`; attributes set with
    /// [`with_resource_attributes`](Self::with_resource_attributes) win over them.
    ///
    /// Defaults to none besides the SDK's environment detectors.
    pub fn with_resource_detector(mut self, detector: impl ResourceDetector + 'static) -> Self {
        self.resource_detectors.push(Box::new(detector));
        self
    }

    /// Sets the sampler of the tracer provider. Sampled-out spans are not exported.
    ///
    /// Defaults to the SDK's choice: `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` with the
    /// standard values (`always_on`, `traceidratio`, `parentbased_traceidratio`, ...), else
    /// parent-based always-on (every trace is kept, a remote parent's decision is followed).
    pub fn with_sampler(mut self, sampler: impl Into<Box<dyn ShouldSample>>) -> Self {
        self.sampler = Some(sampler.into());
        self
    }

    /// Sends the portal's standard metrics (`requests/duration`, `dependencies/duration`)
    /// pre-aggregated from every ended span, sampled or not, through a
    /// [`StandardMetricsProcessor`](crate::StandardMetricsProcessor), so that request and
    /// dependency counts, failure rates and durations stay exact under sampling. With it on, the
    /// samplers chosen through `OTEL_TRACES_SAMPLER` (`microsoft.fixed_percentage`,
    /// `microsoft.rate_limited`) record sampled-out spans without exporting them
    /// (`RecordOnly`); a sampler set with [`with_sampler`](Self::with_sampler) should do the
    /// same (for example `ApplicationInsightsSampler::new(0.1)?.with_record_only(true)`), or the
    /// standard metrics count only the sampled spans.
    ///
    /// Defaults to `true`.
    pub fn with_standard_metrics(mut self, enabled: bool) -> Self {
        self.standard_metrics = Some(enabled);
        self
    }

    /// Feeds the portal's Live Metrics page: one [`LiveMetrics`](crate::LiveMetrics) client for
    /// the process sees every recorded span and every log record, and sends only while a portal
    /// session watches (it pings every 5 seconds otherwise). It uses the exporters' connection
    /// string (its `LiveEndpoint`), HTTP client and Entra ID identity. Spans that a sampler
    /// drops (rather than records) are not seen: with standard metrics on, the `microsoft.*`
    /// samplers record them.
    ///
    /// Defaults to `true` (feature `live-metrics`, on by default).
    #[cfg(feature = "live-metrics")]
    pub fn with_live_metrics(mut self, enabled: bool) -> Self {
        self.live_metrics = Some(enabled);
        self
    }

    /// Builds the providers, installs them globally with the W3C propagator (and, with the
    /// feature `tracing`, the `tracing` subscriber), and returns the guard that shuts them down.
    ///
    /// # Errors
    ///
    /// [`SetupError::Build`] when an exporter cannot be built (no connection string, a malformed
    /// one, an option out of range); with the feature `tracing`,
    /// [`SetupError::InvalidTracingFilter`] and [`SetupError::SubscriberAlreadySet`]. Nothing is
    /// installed globally when it fails.
    pub fn install(self) -> Result<AzureMonitor, SetupError> {
        let spans = SpanExporter::builder()
            .with_options(self.options.clone())
            .build()?;
        let logs = LogExporter::builder()
            .with_options(self.options.clone())
            .build()?;
        let metrics = MetricExporter::builder()
            .with_options(self.options.clone())
            .build()?;
        #[cfg(feature = "tracing")]
        let tracing = self.tracing.filter()?;

        let resource = self.resource();
        let mut extras = self.processors(&resource)?;
        // After each batch processor, its exporter's flush processor: `force_flush` then also
        // waits for deliveries the batch processor's own flush did not (see `FlushProcessor`).
        let spans_flush = spans.flush_processor();
        let logs_flush = logs.flush_processor();
        let mut tracer = SdkTracerProvider::builder()
            .with_resource(resource.clone())
            .with_batch_exporter(spans)
            .with_span_processor(spans_flush);
        if let Some(sampler) = self.sampler()? {
            tracer = tracer.with_sampler(sampler);
        }
        let tracer = extras.span_processors(tracer).build();
        let logger = extras
            .log_processors(
                SdkLoggerProvider::builder()
                    .with_resource(resource.clone())
                    .with_batch_exporter(logs)
                    .with_log_processor(logs_flush),
            )
            .build();
        let meter = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_reader(PeriodicReader::builder(metrics).build())
            .build();
        let monitor = AzureMonitor {
            tracer,
            logger,
            meter,
            shut_down: false,
            #[cfg(feature = "tracing")]
            tracing,
        };

        // The only step that can fail comes first; on failure `monitor` is dropped, which
        // shuts its providers down, and nothing global has changed.
        #[cfg(feature = "tracing")]
        if self.tracing.install {
            subscriber::install(&monitor, self.tracing.stderr_warnings)?;
        }
        opentelemetry::global::set_tracer_provider(monitor.tracer.clone());
        opentelemetry::global::set_meter_provider(monitor.meter.clone());
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        Ok(monitor)
    }

    /// The resource: the SDK's defaults, then the Azure host detectors, then the environment,
    /// then the user's detectors and attributes; a later source wins on the same key
    /// (AZURE-HOSTS.md §1.6 **R**: user configuration wins over detection).
    fn resource(&self) -> Resource {
        let env_service_name = std::env::var(ENV_SERVICE_NAME)
            .ok()
            .filter(|name| !name.trim().is_empty());
        // `SdkProvidedResourceDetector` gives `unknown_service:<exe>` when the environment names
        // no service; it goes first so that a host detector's `service.name` replaces it.
        let mut resource = Resource::builder_empty()
            .with_detectors(&[
                Box::new(SdkProvidedResourceDetector),
                Box::new(TelemetryResourceDetector),
            ])
            .with_detectors(&self.host_detectors())
            .with_detector(Box::new(EnvResourceDetector::new()));
        if let Some(name) = env_service_name {
            resource = resource.with_service_name(name);
        }
        resource = resource
            .with_detectors(&self.resource_detectors)
            .with_attributes(self.resource_attributes.iter().cloned());
        if let Some(name) = &self.service_name {
            resource = resource.with_service_name(name.clone());
        }
        resource.build()
    }

    /// The detectors of the Azure host the process runs on (App Service, Functions, Container
    /// Apps, AKS, all from the environment), run before the environment's so that configuration
    /// wins. The VM detector (IMDS, a network call) is opt-in: add
    /// [`AzureVmResourceDetector`](crate::resource::AzureVmResourceDetector) with
    /// [`with_resource_detector`](Self::with_resource_detector).
    fn host_detectors(&self) -> Vec<Box<dyn ResourceDetector>> {
        vec![Box::new(crate::resource::AzureResourceDetector::new())]
    }

    fn standard_metrics(&self) -> bool {
        self.standard_metrics.unwrap_or(true)
    }

    /// The sampler: the builder's, else the Azure Monitor samplers of the environment
    /// (`OTEL_TRACES_SAMPLER=microsoft.fixed_percentage` / `microsoft.rate_limited` with
    /// `OTEL_TRACES_SAMPLER_ARG`), recording sampled-out spans when standard metrics are on.
    /// `None` leaves the SDK's choice (`OTEL_TRACES_SAMPLER` with its standard values, else
    /// parent-based always-on).
    fn sampler(&self) -> Result<Option<Box<dyn ShouldSample>>, SetupError> {
        if let Some(sampler) = &self.sampler {
            return Ok(Some(sampler.clone()));
        }
        let from_env = crate::sampling::sampler_from_env()?;
        Ok(from_env.map(|sampler| {
            Box::new(sampler.with_record_only(self.standard_metrics())) as Box<dyn ShouldSample>
        }))
    }

    /// The processors besides the exporters' batch processors: the standard metrics (unless
    /// turned off) and Live Metrics (feature `live-metrics`, unless turned off).
    fn processors(&self, resource: &Resource) -> Result<Processors, SetupError> {
        let standard_metrics = if self.standard_metrics() {
            Some(
                crate::StandardMetricsProcessor::builder()
                    .with_options(self.options.clone())
                    .build()?,
            )
        } else {
            None
        };
        #[cfg(feature = "live-metrics")]
        let live_metrics = if self.live_metrics.unwrap_or(true) {
            Some(
                crate::LiveMetrics::builder()
                    .with_exporter_options(&self.options)
                    .with_resource(resource.clone())
                    .build()?,
            )
        } else {
            None
        };
        #[cfg(not(feature = "live-metrics"))]
        let _ = resource;
        Ok(Processors {
            standard_metrics,
            #[cfg(feature = "live-metrics")]
            live_metrics,
        })
    }
}

/// The processors one install adds besides the exporters' batch processors.
struct Processors {
    standard_metrics: Option<crate::StandardMetricsProcessor>,
    #[cfg(feature = "live-metrics")]
    live_metrics: Option<crate::LiveMetrics>,
}

impl Processors {
    /// Adds the span processors to the tracer provider (the standard metrics processor moves
    /// into it).
    fn span_processors(&mut self, mut tracer: TracerProviderBuilder) -> TracerProviderBuilder {
        if let Some(processor) = self.standard_metrics.take() {
            tracer = tracer.with_span_processor(processor);
        }
        #[cfg(feature = "live-metrics")]
        if let Some(live) = &self.live_metrics {
            tracer = tracer.with_span_processor(live.span_processor());
        }
        tracer
    }

    /// Adds the log processors to the logger provider.
    #[cfg_attr(not(feature = "live-metrics"), allow(unused_mut))]
    fn log_processors(&self, mut logger: LoggerProviderBuilder) -> LoggerProviderBuilder {
        #[cfg(feature = "live-metrics")]
        if let Some(live) = &self.live_metrics {
            logger = logger.with_log_processor(live.log_processor());
        }
        logger
    }
}

/// Why [`AzureMonitorBuilder::install`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// An exporter could not be built: the connection string is missing or malformed, or an
    /// option is out of range.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// `OTEL_TRACES_SAMPLER` names an Azure Monitor sampler whose `OTEL_TRACES_SAMPLER_ARG` is
    /// not a number or out of range.
    #[error("OTEL_TRACES_SAMPLER_ARG: {0}")]
    Sampler(#[from] crate::SamplerError),
    /// The `tracing` filter set with
    /// [`with_tracing_filter`](AzureMonitorBuilder::with_tracing_filter) does not parse.
    #[cfg(feature = "tracing")]
    #[error("invalid tracing filter {directives:?} in with_tracing_filter: {reason}; use directives such as \"info,my_crate=debug\"")]
    InvalidTracingFilter {
        /// The directives as given.
        directives: String,
        /// What is wrong with them.
        reason: String,
    },
    /// A global `tracing` subscriber was set before `install()`.
    #[cfg(feature = "tracing")]
    #[error("a global tracing subscriber is already set: call with_tracing_subscriber(false) and add AzureMonitor::tracing_layer() to your own subscriber")]
    SubscriberAlreadySet,
}

/// Providers whose flush or shutdown failed ([`AzureMonitor::force_flush`],
/// [`AzureMonitor::shutdown`]).
#[derive(Debug)]
pub struct ShutdownError {
    failures: Vec<(&'static str, OTelSdkError)>,
}

impl ShutdownError {
    fn check<const N: usize>(
        results: [(&'static str, Result<(), OTelSdkError>); N],
    ) -> Result<(), Self> {
        let failures: Vec<_> = results
            .into_iter()
            .filter_map(|(signal, result)| result.err().map(|e| (signal, e)))
            .collect();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(ShutdownError { failures })
        }
    }

    /// Each failed provider (`"traces"`, `"logs"` or `"metrics"`) with its error.
    pub fn failures(&self) -> &[(&'static str, OTelSdkError)] {
        &self.failures
    }
}

impl fmt::Display for ShutdownError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("telemetry providers failed: ")?;
        for (i, (signal, error)) in self.failures.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{signal}: {error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ShutdownError {}
